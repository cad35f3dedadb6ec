//! Scrub stage: remove everything node-specific or build-specific from the tree, so every
//! node gets its own identity on first boot and the image carries no host data.

use crate::error::Result;
use crate::rootfs::Rootfs;

/// What was removed, for the build log and manifest.
#[derive(Debug, Default, Clone)]
pub struct Scrubbed {
    /// Removed or emptied paths.
    pub removed: Vec<String>,
}

/// Run the scrub.
pub fn run(root: &Rootfs) -> Result<Scrubbed> {
    let mut s = Scrubbed::default();
    // Empty machine-id: systemd's first-boot semantics generate a fresh one per node.
    root.write("/etc/machine-id", b"", 0o444)?;
    s.removed.push("/etc/machine-id (emptied)".into());
    root.remove_file("/var/lib/dbus/machine-id")?;
    s.removed.extend(root.remove_matching("/etc/ssh", |n| n.starts_with("ssh_host_"))?);
    for p in ["/var/lib/systemd/random-seed", "/root/.bash_history", "/var/cache/ldconfig/aux-cache"] {
        if root.exists(p) {
            root.remove_file(p)?;
            s.removed.push(p.into());
        }
    }
    s.removed.extend(root.remove_matching("/var/lib/apt/lists", |n| n != "partial" && n != "lock")?);
    s.removed.extend(root.remove_matching("/var/cache/apt", |n| n.ends_with(".bin"))?);
    s.removed.extend(root.remove_matching("/var/cache/apt/archives", |n| n.ends_with(".deb"))?);
    s.removed.extend(root.remove_matching("/var/lib/dhcp", |n| n.ends_with(".leases"))?);
    s.removed.extend(root.remove_matching("/var/log", |n| {
        // Keep the directories and the tiny README; drop logs written during the build.
        n.ends_with(".log") || n == "journal" || n == "wtmp" || n == "btmp" || n == "lastlog" || n == "faillog"
    })?);
    s.removed.extend(root.remove_matching("/var/log/apt", |n| n.ends_with(".log") || n.ends_with(".gz"))?);
    root.mkdir_all("/var/log/journal")?;
    for d in ["/tmp", "/var/tmp"] {
        root.clear_dir(d)?;
    }
    Ok(s)
}
