//! `[sysctl]`: kernel parameters (seed 001 §2.6, seed 000 system tuning) written to
//! `/etc/sysctl.d/99-clawimg.conf`, applied by systemd-sysctl at boot.

use crate::error::{Error, Result};
use crate::probes::{Expect, Probe};
use crate::rootfs::Rootfs;
use std::collections::BTreeMap;

/// Path of the generated file.
pub const FILE: &str = "/etc/sysctl.d/99-clawimg.conf";

/// Whether a key has sysctl's dotted form (`net.ipv4.tcp_syncookies`).
pub fn valid_key(k: &str) -> bool {
    let parts: Vec<&str> = k.split('.').collect();
    parts.len() >= 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

/// A value as sysctl prints it (integers, or strings of words).
pub fn value(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::String(s) if !s.contains(['\n', '\r']) && !s.trim().is_empty() => Some(s.split_whitespace().collect::<Vec<_>>().join(" ")),
        _ => None,
    }
}

/// Render the file (keys in order).
pub fn render(table: &BTreeMap<String, toml::Value>) -> Result<String> {
    let mut s = String::from("# Written by clawimg from the profile's [sysctl] table.\n");
    for (k, v) in table {
        let val = value(v).ok_or_else(|| Error::config(format!("key `sysctl.\"{k}\"`: expected an integer or a one-line string")))?;
        s.push_str(&format!("{k} = {val}\n"));
    }
    Ok(s)
}

/// Write the file; returns the paths written.
pub fn apply(root: &Rootfs, table: &BTreeMap<String, toml::Value>) -> Result<Vec<String>> {
    root.write(FILE, render(table)?.as_bytes(), 0o644)?;
    Ok(vec![FILE.into()])
}

/// Probes: each key has the declared value in the running kernel.
pub fn probes(table: &BTreeMap<String, toml::Value>) -> Vec<Probe> {
    table
        .iter()
        .filter_map(|(k, v)| {
            let val = value(v)?;
            Some(Probe::new(&format!("sysctl {k}"), &format!("sysctl -n {k} | tr -s '\\t ' '  '"), Expect::Equals(val)))
        })
        .collect()
}
