//! `[sysctl]`: kernel parameters (seed 001 §2.6, seed 000 system tuning) written to
//! `/etc/sysctl.d/99-clawimg.conf`, applied by systemd-sysctl at boot.

use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::support::rootfs::Rootfs;
use std::collections::BTreeMap;

/// Path of the generated file.
pub const FILE: &str = "/etc/sysctl.d/99-clawimg.conf";

/// Whether a key has sysctl's dotted form (`net.ipv4.tcp_syncookies`).
pub fn valid_key(k: &str) -> bool {
    let parts: Vec<&str> = k.split('.').collect();
    parts.len() >= 2
        && parts[0]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// A value as sysctl prints it (integers, or strings of words).
pub fn value(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::String(s) if !s.contains(['\n', '\r']) && !s.trim().is_empty() => {
            Some(s.split_whitespace().collect::<Vec<_>>().join(" "))
        }
        _ => None,
    }
}

/// Render the file (keys in order).
pub fn render(table: &BTreeMap<String, toml::Value>) -> Result<String> {
    let mut s = String::from("# Written by clawimg from the profile's [sysctl] table.\n");
    for (k, v) in table {
        let val = value(v).ok_or_else(|| {
            Error::config(format!(
                "key `sysctl.\"{k}\"`: expected an integer or a one-line string"
            ))
        })?;
        s.push_str(&format!("{k} = {val}\n"));
    }
    Ok(s)
}

/// Write the file; returns the paths written.
pub fn apply(root: &Rootfs, table: &BTreeMap<String, toml::Value>) -> Result<Vec<String>> {
    root.write(FILE, render(table)?.as_bytes(), 0o644)?;
    Ok(vec![FILE.into()])
}

/// UFW applies `/etc/ufw/sysctl.conf` when it starts, after systemd-sysctl, and the
/// package's file sets e.g. `log_martians=0`: give its keys the profile's values.
pub fn align_ufw(root: &Rootfs, table: &BTreeMap<String, toml::Value>) -> Result<Vec<String>> {
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

/// Probes: each key has the declared value in the running kernel.
pub fn probes(table: &BTreeMap<String, toml::Value>) -> Vec<Probe> {
    table
        .iter()
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
        assert!(render(&m)
            .unwrap()
            .contains("net.ipv4.conf.all.log_martians = 1\n"));
    }
}
