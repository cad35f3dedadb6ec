//! `[swap]`: a unit that makes the swap file of the declared size **at first boot** (an
//! 8 GiB file never travels inside the image), and `vm.swappiness`.

use super::{Checking, Module, Plan};
use crate::error::Result;
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::swap::Swap;
use crate::support::rootfs::Rootfs;
use crate::support::systemd;

/// The unit that creates and activates the swap file.
pub const UNIT: &str = "clawimg-swap.service";

/// The `[swap]` module.
pub struct SwapModule;

impl Module for SwapModule {
    type Section = Swap;
    const NAME: &'static str = "swap";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Swap> {
        plan.swap.as_ref()
    }

    fn validate(&self, s: &Swap, _: &mut Checking) -> Result<()> {
        s.validate()
    }

    /// Write the unit and the swappiness drop-in.
    fn apply(&self, root: &Rootfs, s: &Swap, _: &Plan) -> Result<Vec<String>> {
        let path = format!("/etc/systemd/system/{UNIT}");
        root.write(&path, unit(s, s.bytes()?).as_bytes(), 0o644)?;
        let mut paths = vec![path];
        paths.extend(systemd::enable(root, UNIT)?);
        if let Some(sw) = s.swappiness {
            let f = "/etc/sysctl.d/60-clawimg-swap.conf";
            root.write(f, format!("vm.swappiness = {sw}\n").as_bytes(), 0o644)?;
            paths.push(f.into());
        }
        Ok(paths)
    }

    fn probes(&self, s: &Swap, _: &Plan) -> Vec<Probe> {
        swap_probes(s)
    }

    fn node_local(&self, s: &Swap) -> Vec<(String, String)> {
        vec![(
            s.path.clone(),
            format!("swap file made at first boot by {UNIT}"),
        )]
    }
}

/// The unit text for a validated section of `bytes` bytes.
pub fn unit(s: &Swap, bytes: u64) -> String {
    let p = &s.path;
    format!(
        "# Written by clawimg: the swap file is made on the node, never shipped in the image.\n\
         [Unit]\nDescription=Create and enable the swap file {p}\n\
         After=local-fs.target systemd-growfs-root.service\nRequiresMountsFor={parent}\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\n\
         ExecStart=/bin/sh -ec 'if [ ! -f {p} ]; then umask 077; fallocate -l {bytes} {p}.new; mkswap {p}.new >/dev/null; mv {p}.new {p}; fi; swapon --show=NAME --noheadings | grep -qx {p} || swapon {p}'\n\
         ExecStop=/sbin/swapoff {p}\n\n[Install]\nWantedBy=multi-user.target\n",
        parent = std::path::Path::new(p).parent().map(|x| x.display().to_string()).unwrap_or_else(|| "/".into()),
    )
}

/// Probes: the file has the declared size and is the active swap; swappiness.
fn swap_probes(s: &Swap) -> Vec<Probe> {
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
        SwapModule.apply(&r, &s, &Plan::default()).unwrap();
        assert!(!r.exists("/swapfile"));
        let unit = r
            .read_to_string("/etc/systemd/system/clawimg-swap.service")
            .unwrap();
        assert!(
            unit.contains("fallocate -l 268435456 /swapfile.new"),
            "{unit}"
        );
        assert!(r.exists("/etc/systemd/system/multi-user.target.wants/clawimg-swap.service"));
    }
}
