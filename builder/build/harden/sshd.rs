//! `[ssh]`: an sshd drop-in with the settings of seed 001 §2.3, plus the Ubuntu `ssh.socket`
//! override with the same port: Ubuntu 24.04 starts sshd through socket activation, so a port
//! set only in sshd_config changes nothing.

use crate::error::Result;
use crate::image::probes::{Expect, Probe};
use crate::support::rootfs::Rootfs;
use serde::{Deserialize, Serialize};

/// The drop-in; sorted early because sshd keeps the first value it reads.
pub const DROPIN: &str = "/etc/ssh/sshd_config.d/10-clawimg-hardening.conf";
/// The socket override (seed 001 §2.3).
pub const SOCKET_OVERRIDE: &str = "/etc/systemd/system/ssh.socket.d/override.conf";

/// The `[ssh]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ssh {
    /// Listening port (sshd and ssh.socket).
    pub port: u16,
    /// Listen addresses for ssh.socket (`0.0.0.0`, `::` or specific addresses).
    pub listen: Vec<String>,
    /// Write the ssh.socket override (needed on Ubuntu 24.04 whenever the port is not 22).
    pub socket_override: bool,
    /// `PermitRootLogin`.
    pub permit_root_login: String,
    /// `PasswordAuthentication`.
    pub password_authentication: bool,
    /// `KbdInteractiveAuthentication` (the old `ChallengeResponseAuthentication`).
    pub kbd_interactive_authentication: bool,
    /// `UsePAM`: must stay on for Ubuntu.
    pub use_pam: bool,
    /// `AllowUsers` (empty: no restriction).
    pub allow_users: Vec<String>,
    /// `MaxAuthTries`.
    pub max_auth_tries: u32,
    /// `MaxSessions`.
    pub max_sessions: u32,
    /// `LoginGraceTime`, seconds.
    pub login_grace_time: u32,
    /// `X11Forwarding`.
    pub x11_forwarding: bool,
    /// `AllowTcpForwarding`.
    pub allow_tcp_forwarding: bool,
    /// `AllowAgentForwarding`.
    pub allow_agent_forwarding: bool,
    /// `ClientAliveInterval`, seconds (seed 000).
    pub client_alive_interval: u32,
    /// `ClientAliveCountMax` (seed 000).
    pub client_alive_count_max: u32,
    /// `KexAlgorithms`.
    pub kex_algorithms: Vec<String>,
    /// `Ciphers`.
    pub ciphers: Vec<String>,
    /// `MACs`.
    pub macs: Vec<String>,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            port: 222,
            listen: vec!["0.0.0.0".into(), "::".into()],
            socket_override: true,
            permit_root_login: "no".into(),
            password_authentication: false,
            kbd_interactive_authentication: false,
            use_pam: true,
            allow_users: vec![],
            max_auth_tries: 3,
            max_sessions: 3,
            login_grace_time: 30,
            x11_forwarding: false,
            allow_tcp_forwarding: false,
            allow_agent_forwarding: false,
            client_alive_interval: 300,
            client_alive_count_max: 2,
            kex_algorithms: vec![
                "curve25519-sha256@libssh.org".into(),
                "diffie-hellman-group16-sha512".into(),
            ],
            ciphers: vec![
                "chacha20-poly1305@openssh.com".into(),
                "aes256-gcm@openssh.com".into(),
            ],
            macs: vec![
                "hmac-sha2-512-etm@openssh.com".into(),
                "hmac-sha2-256-etm@openssh.com".into(),
            ],
        }
    }
}

fn yn(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

impl Ssh {
    /// The settings as (sshd keyword, value), in the order written; `sshd -T` prints each
    /// keyword lowercased with the same value.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("Port", self.port.to_string()),
            ("PermitRootLogin", self.permit_root_login.clone()),
            ("PasswordAuthentication", yn(self.password_authentication)),
            (
                "KbdInteractiveAuthentication",
                yn(self.kbd_interactive_authentication),
            ),
            ("PubkeyAuthentication", "yes".into()),
            ("UsePAM", yn(self.use_pam)),
        ];
        if !self.allow_users.is_empty() {
            v.push(("AllowUsers", self.allow_users.join(" ")));
        }
        v.extend([
            ("MaxAuthTries", self.max_auth_tries.to_string()),
            ("MaxSessions", self.max_sessions.to_string()),
            ("LoginGraceTime", self.login_grace_time.to_string()),
            ("X11Forwarding", yn(self.x11_forwarding)),
            ("AllowTcpForwarding", yn(self.allow_tcp_forwarding)),
            ("AllowAgentForwarding", yn(self.allow_agent_forwarding)),
            (
                "ClientAliveInterval",
                self.client_alive_interval.to_string(),
            ),
            (
                "ClientAliveCountMax",
                self.client_alive_count_max.to_string(),
            ),
        ]);
        for (k, list) in [
            ("KexAlgorithms", &self.kex_algorithms),
            ("Ciphers", &self.ciphers),
            ("MACs", &self.macs),
        ] {
            if !list.is_empty() {
                v.push((k, list.join(",")));
            }
        }
        v
    }

    /// The drop-in text.
    pub fn dropin(&self) -> String {
        let mut s = String::from(
            "# Written by clawimg from the profile's [ssh] section (seed 001 §2.3).\n",
        );
        for (k, v) in self.settings() {
            s.push_str(&format!("{k} {v}\n"));
        }
        s
    }

    /// The ssh.socket override text.
    pub fn socket_override_text(&self) -> String {
        let mut s = String::from("# Written by clawimg: Ubuntu starts sshd by socket activation, so the port lives here too.\n[Socket]\nListenStream=\n");
        for a in &self.listen {
            let a = if a.contains(':') && !a.starts_with('[') {
                format!("[{a}]")
            } else {
                a.clone()
            };
            s.push_str(&format!("ListenStream={a}:{}\n", self.port));
        }
        // Separate v4 and v6 sockets on the same port, as Ubuntu's own ssh.socket does.
        s.push_str("BindIPv6Only=ipv6-only\n");
        s
    }
}

/// Write the drop-in and the socket override; returns the paths written.
pub fn apply(root: &Rootfs, ssh: &Ssh) -> Result<Vec<String>> {
    root.write(DROPIN, ssh.dropin().as_bytes(), 0o644)?;
    let mut paths = vec![DROPIN.to_string()];
    if ssh.socket_override {
        root.write(
            SOCKET_OVERRIDE,
            ssh.socket_override_text().as_bytes(),
            0o644,
        )?;
        paths.push(SOCKET_OVERRIDE.into());
    }
    Ok(paths)
}

/// Probes: every setting as `sshd -T` reports it, the socket on the declared port and
/// nothing on 22 (when moved).
pub fn probes(ssh: &Ssh) -> Vec<Probe> {
    let mut v: Vec<Probe> = ssh
        .settings()
        .into_iter()
        // sshd -T prints one `allowusers` line per user.
        .flat_map(|(k, val)| {
            if k == "AllowUsers" {
                val.split(' ').map(|u| (k, u.to_string())).collect()
            } else {
                vec![(k, val)]
            }
        })
        .map(|(k, val)| {
            let line = format!("{} {val}", k.to_lowercase());
            Probe::new(
                &format!("sshd -T {line}")
                    .chars()
                    .take(40)
                    .collect::<String>(),
                &format!("sudo -n sshd -T | grep -Fxi '{line}'"),
                Expect::Contains(line.clone()),
            )
        })
        .collect();
    v.push(Probe::new(
        &format!("ssh listens on {}", ssh.port),
        &format!("ss -Htln '( sport = :{} )' | wc -l", ssh.port),
        Expect::AtLeast(1),
    ));
    if ssh.port != 22 {
        v.push(Probe::new(
            "nothing listens on 22",
            "ss -Htln '( sport = :22 )' | wc -l",
            Expect::Equals("0".into()),
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropin_and_socket_share_the_port() {
        let s = Ssh {
            allow_users: vec!["adminclaw".into()],
            ..Default::default()
        };
        let d = s.dropin();
        assert!(
            d.contains("Port 222\n")
                && d.contains("UsePAM yes\n")
                && d.contains("AllowUsers adminclaw\n")
        );
        assert!(d.contains(
            "KexAlgorithms curve25519-sha256@libssh.org,diffie-hellman-group16-sha512\n"
        ));
        let o = s.socket_override_text();
        assert!(
            o.contains("ListenStream=\nListenStream=0.0.0.0:222\nListenStream=[::]:222\n"),
            "{o}"
        );
    }
}
