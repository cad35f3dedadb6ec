//! Lints: the runbooks' lockouts and misconfigurations as checks on the merged profile.
//! `clawimg check` prints them; `clawimg build` refuses on any finding before writing
//! anything. A finding whose lint is acknowledgeable can be accepted in the profile with a
//! reason:
//!
//! ```toml
//! [lints.acknowledge]
//! firewall-inactive = "the provider's network firewall admits only the bastion"
//! ```

use crate::build::harden::docker;
use crate::build::harden::sysctl;
use crate::error::{Error, Result};
use crate::profile::Profile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[lints]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LintConfig {
    /// Lint id → why the finding is accepted for this profile (non-empty).
    pub acknowledge: BTreeMap<String, String>,
}

/// A lint: id, whether a profile may acknowledge it, and the seed's reason.
#[derive(Debug, Clone, Copy)]
pub struct Lint {
    /// Stable id used in messages and in `[lints.acknowledge]`.
    pub id: &'static str,
    /// Whether `[lints.acknowledge]` may accept it.
    pub acknowledgeable: bool,
    /// Why it matters, quoting the seed.
    pub why: &'static str,
}

/// Every lint clawimg knows.
pub const LINTS: &[Lint] = &[
    Lint { id: "ssh-port-not-allowed", acknowledgeable: true, why: "seed 001 §2.4: \"Changing SSH port before adding the UFW rule causes lockout.\"" },
    Lint { id: "ssh-socket-port", acknowledgeable: false, why: "seed 001 §6: \"Ubuntu systemd socket activation — SSH port change requires both sshd_config AND systemd socket override\"" },
    Lint { id: "ssh-usepam-no", acknowledgeable: false, why: "seed 001 §6: \"UsePAM must be yes on Ubuntu — Setting it to no breaks SSH authentication entirely\"" },
    Lint { id: "ssh-allowusers-unknown", acknowledgeable: false, why: "seed 001 §2.3: \"AllowUsers adminclaw — Only admin user can SSH\"; a name the image does not create admits nobody" },
    Lint { id: "ssh-allowusers-no-key", acknowledgeable: true, why: "seed 000 Step 1: \"A misconfigured sshd_config on a remote VPS means permanent lockout.\" With password login off, a user without a key cannot log in" },
    Lint { id: "ssh-root-login", acknowledgeable: true, why: "seed 001 §2.3: \"PermitRootLogin no — Prevent direct root SSH\"" },
    Lint { id: "ssh-password-auth", acknowledgeable: true, why: "seed 001 §2.3: \"PasswordAuthentication no — Key-only authentication\"; seed 000: \"A VPS gets brute-forced within hours of provisioning.\"" },
    Lint { id: "firewall-inactive", acknowledgeable: true, why: "seed 001 §2.4: \"Default policy: Deny incoming ... Only SSH is exposed.\" SSH listens publicly but UFW is not active" },
    Lint { id: "ssh-port-22-open", acknowledgeable: true, why: "seed 001 §2.3: \"Port 222 — Non-standard port avoids bot scanners\"; leaving 22 open after the move keeps the scanned port reachable" },
    Lint { id: "fail2ban-ssh-port", acknowledgeable: true, why: "seed 001 §2.5: \"SSH port 222 — Matches hardened SSH port\"; a jail on another port bans nothing" },
    Lint { id: "sysctl-key-format", acknowledgeable: false, why: "systemd-sysctl ignores a key it cannot parse, so the hardening silently does not apply" },
    Lint { id: "docker-unknown-key", acknowledgeable: true, why: "dockerd refuses to start with a daemon.json key it does not know" },
];

/// Look up a lint by id.
pub fn lint(id: &str) -> Option<&'static Lint> {
    LINTS.iter().find(|l| l.id == id)
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Lint id.
    pub id: &'static str,
    /// Profile key the finding is about.
    pub key: String,
    /// What is wrong and why.
    pub message: String,
    /// The profile's acknowledgement, if any.
    pub acknowledged: Option<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = lint(self.id);
        write!(f, "[{}] key `{}`: {}", self.id, self.key, self.message)?;
        if let Some(l) = l {
            write!(f, "\n    why: {}", l.why)?;
            if l.acknowledgeable && self.acknowledged.is_none() {
                write!(
                    f,
                    "\n    if this is intended: [lints.acknowledge] {} = \"<reason>\"",
                    self.id
                )?;
            }
        }
        if let Some(r) = &self.acknowledged {
            write!(f, "\n    acknowledged: {r}")?;
        }
        Ok(())
    }
}

/// Run every lint on a merged profile (acknowledgements applied).
pub fn run(p: &Profile) -> Vec<Finding> {
    let mut v: Vec<Finding> = vec![];
    let mut add = |id: &'static str, key: &str, message: String| {
        v.push(Finding {
            id,
            key: key.to_string(),
            message,
            acknowledged: None,
        })
    };
    let fw = p.firewall.as_ref().filter(|f| f.enabled);
    if let Some(ssh) = &p.ssh {
        if let Some(fw) = fw {
            if !fw.admits_tcp(ssh.port) {
                add("ssh-port-not-allowed", "firewall.rules", format!("no allow or limit rule admits TCP port {} (ssh.port); the first boot would lock everyone out", ssh.port));
            }
            if ssh.port != 22 && fw.admits_tcp(22) {
                add(
                    "ssh-port-22-open",
                    "firewall.rules",
                    format!("SSH moved to {} but a rule still admits port 22", ssh.port),
                );
            }
        }
        if ssh.port != 22 && !ssh.socket_override {
            add("ssh-socket-port", "ssh.socket_override", format!("ssh.port = {} but the ssh.socket override is off: ssh.socket would keep listening on 22 and sshd would never see {}", ssh.port, ssh.port));
        }
        if !ssh.use_pam {
            add("ssh-usepam-no", "ssh.use_pam", "UsePAM no".into());
        }
        let users = p.users.as_ref();
        let admin = users.and_then(|u| u.admin.as_ref());
        for u in &ssh.allow_users {
            let declared = users.map(|x| x.names()).unwrap_or_default();
            if !declared.contains(u) {
                add(
                    "ssh-allowusers-unknown",
                    "ssh.allow_users",
                    format!(
                        "AllowUsers names `{u}`, but [users] declares {}",
                        if declared.is_empty() {
                            "no user".to_string()
                        } else {
                            declared.join(", ")
                        }
                    ),
                );
            } else if !admin.is_some_and(|a| &a.name == u && !a.authorized_keys.is_empty()) {
                add("ssh-allowusers-no-key", "ssh.allow_users", format!("AllowUsers names `{u}`, who has no authorized key in the profile (set users.admin.authorized_keys, e.g. --set 'users.admin.authorized_keys=[\"ssh-ed25519 AAAA... you\"]')"));
            }
        }
        if ssh.permit_root_login != "no" {
            add(
                "ssh-root-login",
                "ssh.permit_root_login",
                format!("PermitRootLogin {}", ssh.permit_root_login),
            );
        }
        if ssh.password_authentication || ssh.kbd_interactive_authentication {
            add(
                "ssh-password-auth",
                "ssh.password_authentication",
                "password or keyboard-interactive login is enabled".into(),
            );
        }
        let public = ssh
            .listen
            .iter()
            .any(|a| a == "0.0.0.0" || a == "::" || a == "[::]");
        if public && fw.is_none() {
            add(
                "firewall-inactive",
                "firewall.enabled",
                format!(
                    "sshd listens on all addresses (port {}) and UFW is not active",
                    ssh.port
                ),
            );
        }
    }
    if let Some(f) = &p.fail2ban {
        if let (Some(ssh), Some(j)) = (&p.ssh, f.jails.get("sshd")) {
            if let Some(port) = &j.port {
                if !port.split(',').any(|x| x.trim() == ssh.port.to_string()) {
                    add(
                        "fail2ban-ssh-port",
                        "fail2ban.jails.sshd.port",
                        format!(
                            "the sshd jail watches port {port}, SSH listens on {}",
                            ssh.port
                        ),
                    );
                }
            }
        }
    }
    for k in p.sysctl.keys() {
        if !sysctl::valid_key(k) {
            add("sysctl-key-format", &format!("sysctl.\"{k}\""), format!("{k:?} is not a sysctl key (dotted lowercase words such as net.ipv4.tcp_syncookies)"));
        }
    }
    if let Some(d) = &p.docker {
        for k in d.extra.keys() {
            if !docker::KNOWN_KEYS.contains(&k.as_str()) {
                add(
                    "docker-unknown-key",
                    &format!("docker.extra.{k}"),
                    format!("daemon.json key `{k}` is not a key Docker knows"),
                );
            }
        }
    }
    for f in &mut v {
        f.acknowledged = p.lints.acknowledge.get(f.id).cloned();
    }
    v
}

/// Check the acknowledgements, run the lints and fail on any finding not acknowledged.
/// Returns the acknowledged findings (for `clawimg check` to show).
pub fn enforce(p: &Profile, file: &str) -> Result<Vec<Finding>> {
    for (id, reason) in &p.lints.acknowledge {
        match lint(id) {
            None => {
                let ids: Vec<&str> = LINTS
                    .iter()
                    .filter(|l| l.acknowledgeable)
                    .map(|l| l.id)
                    .collect();
                return Err(Error::config(format!(
                    "{file}: key `lints.acknowledge.{id}`: no such lint (acknowledgeable: {})",
                    ids.join(", ")
                )));
            }
            Some(l) if !l.acknowledgeable => {
                return Err(Error::config(format!(
                    "{file}: key `lints.acknowledge.{id}`: lint {id} cannot be acknowledged ({})",
                    l.why
                )));
            }
            _ if reason.trim().is_empty() => {
                return Err(Error::config(format!(
                    "{file}: key `lints.acknowledge.{id}`: give the reason the finding is accepted"
                )));
            }
            _ => {}
        }
    }
    let all = run(p);
    let open: Vec<&Finding> = all.iter().filter(|f| f.acknowledged.is_none()).collect();
    if !open.is_empty() {
        let list: Vec<String> = open.iter().map(|f| format!("  error{f}")).collect();
        return Err(Error::config(format!(
            "{file}: {} lint error(s), nothing was built:\n{}",
            open.len(),
            list.join("\n")
        )));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::harden::firewall::{Firewall, Rule};
    use crate::build::harden::sshd::Ssh;
    use crate::build::harden::users::{Admin, Users};

    /// The hardened shape: everything passes.
    fn good() -> Profile {
        let mut fw = Firewall::default();
        fw.rules.insert(
            "ssh".into(),
            Rule {
                ports: vec![222],
                ..Default::default()
            },
        );
        Profile {
            ssh: Some(Ssh {
                allow_users: vec!["adminclaw".into()],
                ..Default::default()
            }),
            firewall: Some(fw),
            users: Some(Users {
                admin: Some(Admin {
                    authorized_keys: vec!["ssh-ed25519 AAAA k".into()],
                    ..Default::default()
                }),
                runtime: None,
            }),
            ..Default::default()
        }
    }

    fn ids(p: &Profile) -> Vec<&'static str> {
        run(p)
            .into_iter()
            .filter(|f| f.acknowledged.is_none())
            .map(|f| f.id)
            .collect()
    }

    #[test]
    fn good_profile_is_clean() {
        assert!(ids(&good()).is_empty(), "{:?}", run(&good()));
        assert!(enforce(&good(), "p.toml").is_ok());
    }

    #[test]
    fn ssh_port_not_allowed() {
        let mut p = good();
        p.firewall
            .as_mut()
            .unwrap()
            .rules
            .get_mut("ssh")
            .unwrap()
            .ports = vec![2222];
        assert_eq!(ids(&p), ["ssh-port-not-allowed"]);
        // A limit rule admits too.
        let mut p = good();
        p.firewall
            .as_mut()
            .unwrap()
            .rules
            .get_mut("ssh")
            .unwrap()
            .action = "limit".into();
        assert!(ids(&p).is_empty());
    }

    #[test]
    fn ssh_socket_port() {
        let mut p = good();
        p.ssh.as_mut().unwrap().socket_override = false;
        assert_eq!(ids(&p), ["ssh-socket-port"]);
        let mut p = good();
        p.ssh.as_mut().unwrap().port = 22;
        p.ssh.as_mut().unwrap().socket_override = false;
        p.firewall
            .as_mut()
            .unwrap()
            .rules
            .get_mut("ssh")
            .unwrap()
            .ports = vec![22];
        assert!(ids(&p).is_empty());
    }

    #[test]
    fn ssh_usepam_no() {
        let mut p = good();
        p.ssh.as_mut().unwrap().use_pam = false;
        assert_eq!(ids(&p), ["ssh-usepam-no"]);
        p.lints
            .acknowledge
            .insert("ssh-usepam-no".into(), "because".into());
        assert!(enforce(&p, "p.toml")
            .unwrap_err()
            .message
            .contains("cannot be acknowledged"));
    }

    #[test]
    fn ssh_allowusers_unknown() {
        let mut p = good();
        p.ssh.as_mut().unwrap().allow_users = vec!["deploy".into()];
        assert_eq!(ids(&p), ["ssh-allowusers-unknown"]);
    }

    #[test]
    fn ssh_allowusers_no_key() {
        let mut p = good();
        p.users
            .as_mut()
            .unwrap()
            .admin
            .as_mut()
            .unwrap()
            .authorized_keys
            .clear();
        assert_eq!(ids(&p), ["ssh-allowusers-no-key"]);
        let e = enforce(&p, "p.toml").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("permanent lockout"), "{}", e.message);
        p.lints
            .acknowledge
            .insert("ssh-allowusers-no-key".into(), "key sealed per node".into());
        assert!(enforce(&p, "p.toml").is_ok());
    }

    #[test]
    fn ssh_root_login() {
        let mut p = good();
        p.ssh.as_mut().unwrap().permit_root_login = "prohibit-password".into();
        assert_eq!(ids(&p), ["ssh-root-login"]);
    }

    #[test]
    fn ssh_password_auth() {
        let mut p = good();
        p.ssh.as_mut().unwrap().password_authentication = true;
        assert_eq!(ids(&p), ["ssh-password-auth"]);
        let mut p = good();
        p.ssh.as_mut().unwrap().kbd_interactive_authentication = true;
        assert_eq!(ids(&p), ["ssh-password-auth"]);
    }

    #[test]
    fn firewall_inactive() {
        let mut p = good();
        p.firewall.as_mut().unwrap().enabled = false;
        assert_eq!(ids(&p), ["firewall-inactive"]);
        let mut p = good();
        p.firewall = None;
        assert_eq!(ids(&p), ["firewall-inactive"]);
        // Not public: listening on one private address only.
        p.ssh.as_mut().unwrap().listen = vec!["10.1.2.3".into()];
        assert!(ids(&p).is_empty());
    }

    #[test]
    fn ssh_port_22_open() {
        let mut p = good();
        p.firewall
            .as_mut()
            .unwrap()
            .rules
            .get_mut("ssh")
            .unwrap()
            .ports = vec![22, 222];
        assert_eq!(ids(&p), ["ssh-port-22-open"]);
    }

    #[test]
    fn fail2ban_ssh_port() {
        let mut p = good();
        let mut f = crate::build::harden::fail2ban::Fail2ban::default();
        f.jails.insert(
            "sshd".into(),
            crate::build::harden::fail2ban::Jail {
                port: Some("22".into()),
                ..Default::default()
            },
        );
        p.fail2ban = Some(f.clone());
        assert_eq!(ids(&p), ["fail2ban-ssh-port"]);
        f.jails.get_mut("sshd").unwrap().port = None;
        p.fail2ban = Some(f);
        assert!(ids(&p).is_empty());
    }

    #[test]
    fn sysctl_key_format() {
        let mut p = good();
        p.sysctl
            .insert("net.ipv4.tcp_syncookies".into(), toml::Value::Integer(1));
        assert!(ids(&p).is_empty());
        p.sysctl
            .insert("net ipv4/tcp syncookies".into(), toml::Value::Integer(1));
        assert_eq!(ids(&p), ["sysctl-key-format"]);
    }

    #[test]
    fn docker_unknown_key() {
        let mut p = good();
        let mut d = crate::build::harden::docker::Docker::default();
        d.extra.insert("icc".into(), toml::Value::Boolean(false));
        p.docker = Some(d.clone());
        assert!(ids(&p).is_empty());
        d.extra
            .insert("live_restore".into(), toml::Value::Boolean(true));
        p.docker = Some(d);
        assert_eq!(ids(&p), ["docker-unknown-key"]);
    }

    #[test]
    fn unknown_or_empty_acknowledgement() {
        let mut p = good();
        p.lints
            .acknowledge
            .insert("no-such-lint".into(), "x".into());
        assert!(enforce(&p, "p.toml")
            .unwrap_err()
            .message
            .contains("no such lint"));
        let mut p = good();
        p.lints
            .acknowledge
            .insert("ssh-root-login".into(), " ".into());
        assert!(enforce(&p, "p.toml")
            .unwrap_err()
            .message
            .contains("reason"));
    }
}
