//! `[swap]`: a swap file of the declared size **created at first boot** by a unit (an 8 GiB
//! file never travels inside the image), and `vm.swappiness`.

use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::profile::parse_size;
use crate::support::rootfs::Rootfs;
use crate::support::systemd;
use serde::{Deserialize, Serialize};

/// The unit that creates and activates the swap file.
pub const UNIT: &str = "clawimg-swap.service";

/// The `[swap]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Swap {
    /// Size (`"8GiB"`, seed 000); must be a multiple of 1 MiB.
    pub size: String,
    /// Absolute path of the swap file.
    pub path: String,
    /// `vm.swappiness` (seed 000: 10, prefer RAM).
    pub swappiness: Option<u8>,
}

impl Default for Swap {
    fn default() -> Self {
        Swap {
            size: "8GiB".into(),
            path: "/swapfile".into(),
            swappiness: Some(10),
        }
    }
}

impl Swap {
    /// Size in bytes, validated.
    pub fn bytes(&self) -> Result<u64> {
        let b = parse_size(&self.size).filter(|b| *b >= 40 << 10 && b % (1 << 20) == 0);
        b.ok_or_else(|| {
            Error::config(format!(
                "key `swap.size`: expected a size in MiB or GiB such as \"8GiB\", found {:?}",
                self.size
            ))
        })
    }

    /// The unit text.
    pub fn unit(&self) -> Result<String> {
        let bytes = self.bytes()?;
        let p = &self.path;
        if !p.starts_with('/')
            || p.contains(['\'', '"', ' ', '\n', '\\', '$'])
            || p.contains("/../")
        {
            return Err(Error::config(format!(
                "key `swap.path`: expected a plain absolute path, found {p:?}"
            )));
        }
        Ok(format!(
            "# Written by clawimg: the swap file is made on the node, never shipped in the image.\n\
             [Unit]\nDescription=Create and enable the swap file {p}\n\
             After=local-fs.target systemd-growfs-root.service\nRequiresMountsFor={parent}\n\n\
             [Service]\nType=oneshot\nRemainAfterExit=yes\n\
             ExecStart=/bin/sh -ec 'if [ ! -f {p} ]; then umask 077; fallocate -l {bytes} {p}.new; mkswap {p}.new >/dev/null; mv {p}.new {p}; fi; swapon --show=NAME --noheadings | grep -qx {p} || swapon {p}'\n\
             ExecStop=/sbin/swapoff {p}\n\n[Install]\nWantedBy=multi-user.target\n",
            parent = std::path::Path::new(p).parent().map(|x| x.display().to_string()).unwrap_or_else(|| "/".into()),
        ))
    }
}

/// Write the unit and the swappiness drop-in; returns the paths written.
pub fn apply(root: &Rootfs, s: &Swap) -> Result<Vec<String>> {
    let path = format!("/etc/systemd/system/{UNIT}");
    root.write(&path, s.unit()?.as_bytes(), 0o644)?;
    let mut paths = vec![path];
    paths.extend(systemd::enable(root, UNIT)?);
    if let Some(sw) = s.swappiness {
        let f = "/etc/sysctl.d/60-clawimg-swap.conf";
        root.write(f, format!("vm.swappiness = {sw}\n").as_bytes(), 0o644)?;
        paths.push(f.into());
    }
    Ok(paths)
}

/// Probes: the file has the declared size and is the active swap; swappiness.
pub fn probes(s: &Swap) -> Vec<Probe> {
    let Ok(bytes) = s.bytes() else { return vec![] };
    let mut v = vec![
        Probe {
            name: "swap active".into(),
            command: "swapon --show=NAME --noheadings".into(),
            expect: Expect::Equals(s.path.clone()),
            on_failure: Some(format!(
                "sudo -n journalctl -b -u {UNIT} --no-pager | tail -20"
            )),
        },
        Probe::new(
            "swap size",
            &format!("sudo -n stat -c %s {}", s.path),
            Expect::Equals(bytes.to_string()),
        ),
        // /proc/swaps counts KiB without the header page.
        Probe::new(
            "swap size in kernel",
            "awk 'NR==2 {print $3 + 4}' /proc/swaps",
            Expect::Equals((bytes >> 10).to_string()),
        ),
    ];
    if let Some(sw) = s.swappiness {
        v.push(Probe::new(
            "swappiness",
            "sysctl -n vm.swappiness",
            Expect::Equals(sw.to_string()),
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_file_is_made_at_boot_not_in_the_image() {
        let t = tempfile::tempdir().unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        let s = Swap {
            size: "256MiB".into(),
            ..Default::default()
        };
        apply(&r, &s).unwrap();
        assert!(!r.exists("/swapfile"));
        let unit = r
            .read_to_string("/etc/systemd/system/clawimg-swap.service")
            .unwrap();
        assert!(
            unit.contains("fallocate -l 268435456 /swapfile.new"),
            "{unit}"
        );
        assert!(r.exists("/etc/systemd/system/multi-user.target.wants/clawimg-swap.service"));
        assert!(Swap {
            size: "8 parsecs".into(),
            ..Default::default()
        }
        .bytes()
        .is_err());
    }
}
