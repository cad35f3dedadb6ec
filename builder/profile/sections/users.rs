//! `[users]`: the two-user model. The admin user logs in with a key and has passwordless
//! sudo; the runtime user owns the application files and has neither SSH nor sudo.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The `[users]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Users {
    /// The SSH/sudo user (`[users.admin]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    /// The application user (`[users.runtime]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
}

/// The admin user: key-only SSH, passwordless sudo (default name `adminclaw`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Login name; not a well-known name, to shrink the brute-force surface.
    pub name: String,
    /// Fixed uid (and gid of the user's own group); default: first free from 1000.
    pub uid: Option<u32>,
    /// Supplementary groups (must exist in the image, e.g. `docker` from docker.io).
    pub groups: Vec<String>,
    /// Public keys (one OpenSSH public key per entry). Never private keys.
    pub authorized_keys: Vec<String>,
    /// Passwordless sudo through `/etc/sudoers.d/`.
    pub sudo_nopasswd: bool,
    /// Home directory mode, octal.
    pub home_mode: String,
    /// Login shell.
    pub shell: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            name: "adminclaw".into(),
            uid: None,
            groups: vec![],
            authorized_keys: vec![],
            sudo_nopasswd: true,
            home_mode: "0750".into(),
            shell: "/bin/bash".into(),
        }
    }
}

/// The runtime user: no SSH, no sudo (default name `openclaw`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Login name.
    pub name: String,
    /// Fixed uid (and gid); default: first free from 1000.
    pub uid: Option<u32>,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Home directory mode, octal (750 keeps the admin out of the application's files).
    pub home_mode: String,
    /// Login shell.
    pub shell: String,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            name: "openclaw".into(),
            uid: None,
            groups: vec![],
            home_mode: "0750".into(),
            shell: "/bin/bash".into(),
        }
    }
}

/// One account to create, whatever its role.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// Requested uid.
    pub uid: Option<u32>,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Public keys.
    pub keys: Vec<String>,
    /// Passwordless sudo.
    pub sudo: bool,
    /// Home mode.
    pub home_mode: u32,
    /// Shell.
    pub shell: String,
}

/// Parse an octal mode such as `"0750"` or `"750"`.
pub fn parse_mode(s: &str) -> Option<u32> {
    let t = s.trim();
    if t.is_empty() || t.len() > 4 {
        return None;
    }
    u32::from_str_radix(t, 8).ok().filter(|m| *m <= 0o7777)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

impl Users {
    /// The declared accounts, admin first, validated.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let mut v = vec![];
        if let Some(a) = &self.admin {
            v.push(Account {
                name: a.name.clone(),
                uid: a.uid,
                groups: a.groups.clone(),
                keys: a.authorized_keys.clone(),
                sudo: a.sudo_nopasswd,
                home_mode: mode_of("users.admin.home_mode", &a.home_mode)?,
                shell: a.shell.clone(),
            });
        }
        if let Some(r) = &self.runtime {
            v.push(Account {
                name: r.name.clone(),
                uid: r.uid,
                groups: r.groups.clone(),
                keys: vec![],
                sudo: false,
                home_mode: mode_of("users.runtime.home_mode", &r.home_mode)?,
                shell: r.shell.clone(),
            });
        }
        for (i, a) in v.iter().enumerate() {
            let role = if self.admin.is_some() && i == 0 {
                "admin"
            } else {
                "runtime"
            };
            if !valid_name(&a.name) {
                return Err(Error::config(format!("key `users.{role}.name`: {:?} is not a valid user name (lowercase letters, digits, '_', '-')", a.name)));
            }
            for k in &a.keys {
                if k.contains("PRIVATE KEY") {
                    return Err(Error::config(format!("key `users.{role}.authorized_keys`: a private key was given; only public keys belong in a profile")));
                }
                let parts: Vec<&str> = k.split_whitespace().collect();
                let known = parts.first().is_some_and(|t| {
                    t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-")
                });
                if parts.len() < 2 || !known || k.contains('\n') {
                    return Err(Error::config(format!("key `users.{role}.authorized_keys`: {k:?} is not an OpenSSH public key line (type, base64, comment)")));
                }
            }
        }
        if v.len() == 2 && v[0].name == v[1].name {
            return Err(Error::config(
                "key `users.runtime.name`: must differ from users.admin.name",
            ));
        }
        Ok(v)
    }

    /// Login names declared here.
    pub fn names(&self) -> Vec<String> {
        self.admin
            .iter()
            .map(|a| a.name.clone())
            .chain(self.runtime.iter().map(|r| r.name.clone()))
            .collect()
    }
}

fn mode_of(key: &str, s: &str) -> Result<u32> {
    parse_mode(s).ok_or_else(|| {
        Error::config(format!(
            "key `{key}`: expected an octal mode like \"0750\", found {s:?}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_and_bad_mode_are_config_errors() {
        let u = Users {
            admin: Some(Admin {
                authorized_keys: vec!["-----BEGIN OPENSSH PRIVATE KEY-----".into()],
                ..Default::default()
            }),
            runtime: None,
        };
        assert!(u.accounts().unwrap_err().message.contains("private key"));
        let u = Users {
            admin: None,
            runtime: Some(Runtime {
                home_mode: "0999".into(),
                ..Default::default()
            }),
        };
        assert!(u
            .accounts()
            .unwrap_err()
            .message
            .contains("users.runtime.home_mode"));
        assert_eq!(parse_mode("750"), Some(0o750));
    }
}
