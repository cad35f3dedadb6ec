//! `[fail2ban]`: `/etc/fail2ban/jail.local` from the profile (seed 001 §2.5, seed 000 Step 2):
//! defaults plus per-jail overrides, backend systemd (the journal; Ubuntu has no auth.log
//! without rsyslog).

use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::support::rootfs::Rootfs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Path of the generated jail file.
pub const JAIL_LOCAL: &str = "/etc/fail2ban/jail.local";

/// The `[fail2ban]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Fail2ban {
    /// Default ban duration (fail2ban time syntax: `1h`, `600`).
    pub bantime: String,
    /// Default look-back window.
    pub findtime: String,
    /// Default failures before a ban.
    pub maxretry: u32,
    /// Log backend.
    pub backend: String,
    /// Jails by name (e.g. `[fail2ban.jails.sshd]`).
    pub jails: BTreeMap<String, Jail>,
}

impl Default for Fail2ban {
    fn default() -> Self {
        Fail2ban {
            bantime: "1h".into(),
            findtime: "10m".into(),
            maxretry: 5,
            backend: "systemd".into(),
            jails: BTreeMap::new(),
        }
    }
}

/// One jail; unset values inherit the defaults.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Jail {
    /// Enabled.
    pub enabled: bool,
    /// Port(s) the ban covers; for `sshd`, default: the `[ssh]` port.
    pub port: Option<String>,
    /// Failures before a ban.
    pub maxretry: Option<u32>,
    /// Ban duration.
    pub bantime: Option<String>,
    /// Look-back window.
    pub findtime: Option<String>,
}

impl Default for Jail {
    fn default() -> Self {
        Jail {
            enabled: true,
            port: None,
            maxretry: None,
            bantime: None,
            findtime: None,
        }
    }
}

fn check_time(key: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && v.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!("key `{key}`: expected a fail2ban time such as \"1h\", \"10m\" or \"3600\", found {v:?}")))
    }
}

/// fail2ban's own parsing of `1h`, `10m`, `3600` to seconds (for probes).
pub fn seconds(v: &str) -> Option<i64> {
    let idx = v
        .find(|c: char| !c.is_ascii_digit() && c != '-')
        .unwrap_or(v.len());
    let n: i64 = v[..idx].parse().ok()?;
    let mul = match &v[idx..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 604800,
        _ => return None,
    };
    Some(n * mul)
}

impl Fail2ban {
    /// Validate and render jail.local; `ssh_port` fills the sshd jail's port.
    pub fn render(&self, ssh_port: Option<u16>) -> Result<String> {
        check_time("fail2ban.bantime", &self.bantime)?;
        check_time("fail2ban.findtime", &self.findtime)?;
        let mut s = format!(
            "# Written by clawimg from the profile's [fail2ban] section.\n[DEFAULT]\nbantime = {}\nfindtime = {}\nmaxretry = {}\nbackend = {}\n",
            self.bantime, self.findtime, self.maxretry, self.backend
        );
        for (name, j) in &self.jails {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(Error::config(format!(
                    "key `fail2ban.jails.{name}`: jail names are letters, digits, '-' and '_'"
                )));
            }
            s.push_str(&format!("\n[{name}]\nenabled = {}\n", j.enabled));
            let port = j.port.clone().or_else(|| {
                (name == "sshd")
                    .then(|| ssh_port.map(|p| p.to_string()))
                    .flatten()
            });
            if let Some(p) = port {
                s.push_str(&format!("port = {p}\n"));
            }
            if let Some(m) = j.maxretry {
                s.push_str(&format!("maxretry = {m}\n"));
            }
            for (k, v) in [("bantime", &j.bantime), ("findtime", &j.findtime)] {
                if let Some(v) = v {
                    check_time(&format!("fail2ban.jails.{name}.{k}"), v)?;
                    s.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
        Ok(s)
    }
}

/// Write jail.local; returns the paths written.
pub fn apply(root: &Rootfs, f: &Fail2ban, ssh_port: Option<u16>) -> Result<Vec<String>> {
    if !root.exists("/etc/fail2ban") {
        return Err(Error::config(
            "the fail2ban section needs package `fail2ban` in base.packages",
        ));
    }
    root.write(JAIL_LOCAL, f.render(ssh_port)?.as_bytes(), 0o644)?;
    Ok(vec![JAIL_LOCAL.into()])
}

/// Probes: the server answers for each enabled jail with the declared limits.
pub fn probes(f: &Fail2ban) -> Vec<Probe> {
    let mut v = vec![];
    for (name, j) in f.jails.iter().filter(|(_, j)| j.enabled) {
        v.push(Probe {
            name: format!("fail2ban jail {name}"),
            command: format!("sudo -n fail2ban-client status {name}"),
            expect: Expect::Contains(format!("Status for the jail: {name}")),
            on_failure: Some("sudo -n journalctl -b -u fail2ban --no-pager | tail -20".into()),
        });
        let maxretry = j.maxretry.unwrap_or(f.maxretry);
        v.push(Probe::new(
            &format!("fail2ban {name} maxretry"),
            &format!("sudo -n fail2ban-client get {name} maxretry"),
            Expect::Equals(maxretry.to_string()),
        ));
        if let Some(b) = seconds(j.bantime.as_deref().unwrap_or(&f.bantime)) {
            v.push(Probe::new(
                &format!("fail2ban {name} bantime"),
                &format!("sudo -n fail2ban-client get {name} bantime"),
                Expect::Equals(b.to_string()),
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_jail_takes_the_ssh_port() {
        let mut f = Fail2ban::default();
        f.jails.insert(
            "sshd".into(),
            Jail {
                maxretry: Some(3),
                bantime: Some("24h".into()),
                ..Default::default()
            },
        );
        let s = f.render(Some(222)).unwrap();
        assert!(
            s.contains("[sshd]\nenabled = true\nport = 222\nmaxretry = 3\nbantime = 24h\n"),
            "{s}"
        );
        assert!(s.contains("backend = systemd"));
        assert_eq!(seconds("24h"), Some(86400));
        f.bantime = "1 hour; rm".into();
        assert!(f.render(None).is_err());
    }
}
