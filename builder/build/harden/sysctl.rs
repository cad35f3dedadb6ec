//! `[sysctl]`: kernel parameters written to `/etc/sysctl.d/99-clawimg.conf`, applied by
//! systemd-sysctl at boot, and carried over into UFW's own sysctl file when the firewall is
//! declared.

use super::{Checking, Module, Plan};
use crate::error::Result;
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::sysctl::{validate, value};
use crate::support::rootfs::Rootfs;
use std::collections::BTreeMap;

/// Path of the generated file.
pub const FILE: &str = "/etc/sysctl.d/99-clawimg.conf";

/// The table of kernel parameters.
type Table = BTreeMap<String, toml::Value>;

/// The `[sysctl]` module.
pub struct SysctlModule;

impl Module for SysctlModule {
    type Section = Table;
    const NAME: &'static str = "sysctl";

    /// An empty table declares nothing.
    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Table> {
        Some(&plan.sysctl).filter(|t| !t.is_empty())
    }

    fn validate(&self, t: &Table, _: &mut Checking) -> Result<()> {
        validate(t)
    }

    fn apply(&self, root: &Rootfs, t: &Table, plan: &Plan) -> Result<Vec<String>> {
        root.write(FILE, render(t).as_bytes(), 0o644)?;
        let mut paths = vec![FILE.to_string()];
        if plan.firewall.is_some() {
            paths.extend(align_ufw(root, t)?);
        }
        Ok(paths)
    }

    /// Each key has the declared value in the running kernel.
    fn probes(&self, t: &Table, _: &Plan) -> Vec<Probe> {
        t.iter()
            .filter_map(|(k, v)| {
                let val = value(v)?;
                Some(Probe::new(
                    &format!("sysctl {k}"),
                    &format!("sysctl -n {k} | tr -s '\\t ' '  '"),
                    Expect::Equals(val),
                ))
            })
            .collect()
    }
}

/// The file for a validated table (keys in order).
pub fn render(table: &Table) -> String {
    let mut s = String::from("# Written by clawimg from the profile's [sysctl] table.\n");
    for (k, v) in table {
        if let Some(val) = value(v) {
            s.push_str(&format!("{k} = {val}\n"));
        }
    }
    s
}

/// UFW applies `/etc/ufw/sysctl.conf` when it starts, after systemd-sysctl, and the
/// package's file sets e.g. `log_martians=0`: give its keys the profile's values.
pub fn align_ufw(root: &Rootfs, table: &Table) -> Result<Vec<String>> {
    const F: &str = "/etc/ufw/sysctl.conf";
    let Ok(text) = root.read_to_string(F) else {
        return Ok(vec![]);
    };
    let mut changed = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim().replace('/', ".");
            match (l.starts_with('#'), table.get(&key).and_then(value)) {
                (false, Some(v)) if l.contains('=') => {
                    changed = true;
                    format!("{}={v}", l.split('=').next().unwrap_or("").trim())
                }
                _ => l.to_string(),
            }
        })
        .collect();
    if !changed {
        return Ok(vec![]);
    }
    root.write(F, (out.join("\n") + "\n").as_bytes(), 0o644)?;
    Ok(vec![F.into()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ufw_sysctl_follows_the_profile() {
        let t = tempfile::tempdir().unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        r.write(
            "/etc/ufw/sysctl.conf",
            b"# c\nnet/ipv4/conf/all/log_martians=0\nnet/ipv4/icmp_echo_ignore_all=0\n",
            0o644,
        )
        .unwrap();
        let mut m = BTreeMap::new();
        m.insert(
            "net.ipv4.conf.all.log_martians".to_string(),
            toml::Value::Integer(1),
        );
        assert_eq!(align_ufw(&r, &m).unwrap().len(), 1);
        assert_eq!(
            r.read_to_string("/etc/ufw/sysctl.conf").unwrap(),
            "# c\nnet/ipv4/conf/all/log_martians=1\nnet/ipv4/icmp_echo_ignore_all=0\n"
        );
        assert!(render(&m).contains("net.ipv4.conf.all.log_martians = 1\n"));
    }
}
