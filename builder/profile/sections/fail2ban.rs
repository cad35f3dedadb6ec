//! `[fail2ban]`: ban defaults plus per-jail overrides. The backend defaults to systemd (the
//! journal), because Ubuntu has no auth.log without rsyslog.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

impl Fail2ban {
    /// Times must use fail2ban's syntax and jail names must be plain words: both end up
    /// in jail.local as written.
    pub fn validate(&self) -> Result<()> {
        check_time("fail2ban.bantime", &self.bantime)?;
        check_time("fail2ban.findtime", &self.findtime)?;
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
            for (k, v) in [("bantime", &j.bantime), ("findtime", &j.findtime)] {
                if let Some(v) = v {
                    check_time(&format!("fail2ban.jails.{name}.{k}"), v)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_jail_names_are_checked() {
        let mut f = Fail2ban::default();
        f.jails.insert(
            "sshd".into(),
            Jail {
                bantime: Some("24h".into()),
                ..Default::default()
            },
        );
        assert!(f.validate().is_ok());
        f.jails.get_mut("sshd").unwrap().findtime = Some("ten minutes".into());
        let e = f.validate().unwrap_err();
        assert!(e.message.contains("fail2ban.jails.sshd.findtime"), "{e}");
        let mut f = Fail2ban::default();
        f.jails.insert("ssh d".into(), Jail::default());
        assert!(f.validate().unwrap_err().message.contains("jail names"));
        let f = Fail2ban {
            bantime: "1 hour; rm".into(),
            ..Default::default()
        };
        assert!(f
            .validate()
            .unwrap_err()
            .message
            .contains("fail2ban.bantime"));
    }
}
