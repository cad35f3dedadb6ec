//! `[ssh]`: the sshd settings and the port and addresses ssh.socket listens on.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

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
    /// `ClientAliveInterval`, seconds.
    pub client_alive_interval: u32,
    /// `ClientAliveCountMax`.
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

impl Ssh {
    /// Listen addresses must be IP addresses (the socket unit takes nothing else) and the
    /// port must be usable.
    pub fn validate(&self) -> Result<()> {
        if self.listen.is_empty()
            || self.listen.iter().any(|a| {
                a.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_err()
            })
        {
            return Err(Error::config(
                "key `ssh.listen`: expected addresses such as \"0.0.0.0\" and \"::\"",
            ));
        }
        if self.port == 0 {
            return Err(Error::config("key `ssh.port`: expected 1-65535"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_and_port_are_checked() {
        assert!(Ssh::default().validate().is_ok());
        let s = Ssh {
            listen: vec!["[::1]".into(), "10.0.0.1".into()],
            ..Default::default()
        };
        assert!(s.validate().is_ok());
        let s = Ssh {
            listen: vec!["eth0".into()],
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().message.contains("ssh.listen"));
        let s = Ssh {
            listen: vec![],
            ..Default::default()
        };
        assert!(s.validate().is_err());
        let s = Ssh {
            port: 0,
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().message.contains("ssh.port"));
    }
}
