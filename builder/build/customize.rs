//! Customize stage: the host settings every clawimg image has (identity, mounts, network,
//! first-boot SSH keys, root growth). Profile modules (users, ssh, firewall, ...) add theirs.

use crate::error::Result;
use crate::profile::Profile;
use crate::support::identity::Identity;
use crate::support::rootfs::Rootfs;
use crate::support::systemd;

/// Unit that generates SSH host keys on first boot.
pub const SSH_KEYGEN_UNIT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/units/clawimg-ssh-keygen.service"
));
/// systemd-repart definition that grows the root partition.
pub const REPART_ROOT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/units/50-clawimg-root.conf"
));
/// systemd-networkd DHCP configuration for ethernet interfaces.
pub const DHCP_NETWORK: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/units/80-clawimg-dhcp.network"
));

/// What the customize stage changed (paths, for `--explain` and the manifest).
#[derive(Debug, Default, Clone)]
pub struct Customized {
    /// Paths written or linked, in order.
    pub paths: Vec<String>,
}

/// FAT volume id as shown in `/dev/disk/by-uuid` (`ABCD-1234`).
pub fn fat_uuid(id: u32) -> String {
    format!("{:04X}-{:04X}", id >> 16, id & 0xffff)
}

/// Paths this module's first-boot setup makes differ per node (for `clawimg verify`).
pub const NODE_LOCAL: &[(&str, &str)] = &[
    (
        "/etc/ssh/ssh_host_*",
        "SSH host keys, made on first boot by clawimg-ssh-keygen.service",
    ),
    (
        "/etc/.updated",
        "stamp systemd-update-done.service writes on the image's first boot",
    ),
];

/// Apply the base customizations.
pub fn run(root: &Rootfs, profile: &Profile, ids: &Identity) -> Result<Customized> {
    let mut c = Customized::default();
    let mut written: Vec<String> = vec![];
    let mut w = |p: &str, data: String, mode: u32| -> Result<()> {
        root.write(p, data.as_bytes(), mode)?;
        written.push(p.to_string());
        Ok(())
    };
    let host = &profile.image.hostname;
    w("/etc/hostname", format!("{host}\n"), 0o644)?;
    w(
        "/etc/hosts",
        format!(
            "127.0.0.1 localhost\n127.0.1.1 {host}\n\n::1 localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
        ),
        0o644,
    )?;
    let growfs = if profile.image.grow_root {
        ",x-systemd.growfs"
    } else {
        ""
    };
    w(
        "/etc/fstab",
        format!(
            "# Written by clawimg. Root grows to the whole disk on boot when enabled.\n\
             UUID={} / ext4 defaults,discard,errors=remount-ro{growfs} 0 1\n\
             UUID={} /boot/efi vfat umask=0077,nofail 0 1\n",
            ids.root_fs,
            fat_uuid(ids.esp_volume_id)
        ),
        0o644,
    )?;
    let made_esp_mount = !root.is_dir("/boot/efi");
    root.mkdir_all("/boot/efi")?;
    w(
        "/etc/systemd/network/80-clawimg-dhcp.network",
        DHCP_NETWORK.to_string(),
        0o644,
    )?;
    let mut links = systemd::enable(root, "systemd-networkd.service")?;
    if root.exists("/usr/lib/systemd/system/systemd-resolved.service") {
        links.extend(systemd::enable(root, "systemd-resolved.service")?);
    }
    if profile.image.grow_root {
        w(
            "/usr/lib/repart.d/50-clawimg-root.conf",
            REPART_ROOT.to_string(),
            0o644,
        )?;
    }
    w(
        "/usr/lib/systemd/system/clawimg-ssh-keygen.service",
        SSH_KEYGEN_UNIT.to_string(),
        0o644,
    )?;
    links.extend(systemd::enable(root, "clawimg-ssh-keygen.service")?);
    // apt sources as mmdebstrap wrote them, without repeated lines (apt warns about them).
    if let Ok(src) = root.read_to_string("/etc/apt/sources.list") {
        let mut seen = std::collections::BTreeSet::new();
        let dedup: Vec<&str> = src
            .lines()
            .filter(|l| l.trim().is_empty() || seen.insert(l.trim()))
            .collect();
        w("/etc/apt/sources.list", dedup.join("\n") + "\n", 0o644)?;
    }
    c.paths = written;
    c.paths.extend(links);
    if made_esp_mount {
        c.paths.push("/boot/efi".to_string());
    }
    Ok(c)
}
