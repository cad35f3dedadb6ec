//! `[ssh]`: an sshd drop-in with the profile's settings, plus the Ubuntu `ssh.socket`
//! override with the same port: Ubuntu 24.04 starts sshd through socket activation, so a port
//! set only in sshd_config changes nothing.

use super::{Checking, Module, Plan};
use crate::error::Result;
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::ssh::Ssh;
use crate::support::rootfs::Rootfs;

/// The drop-in; sorted early because sshd keeps the first value it reads.
pub const DROPIN: &str = "/etc/ssh/sshd_config.d/10-clawimg-hardening.conf";
/// The socket override: without it ssh.socket keeps listening on 22.
pub const SOCKET_OVERRIDE: &str = "/etc/systemd/system/ssh.socket.d/override.conf";

/// The `[ssh]` module.
pub struct SshModule;

impl Module for SshModule {
    type Section = Ssh;
    const NAME: &'static str = "ssh";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Ssh> {
        plan.ssh.as_ref()
    }

    fn validate(&self, s: &Ssh, _: &mut Checking) -> Result<()> {
        s.validate()
    }

    fn apply(&self, root: &Rootfs, s: &Ssh, _: &Plan) -> Result<Vec<String>> {
        write(root, s)
    }

    fn probes(&self, s: &Ssh, _: &Plan) -> Vec<Probe> {
        ssh_probes(s)
    }
}

fn yn(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// The settings as (sshd keyword, value), in the order written; `sshd -T` prints each
/// keyword lowercased with the same value.
pub fn settings(s: &Ssh) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("Port", s.port.to_string()),
        ("PermitRootLogin", s.permit_root_login.clone()),
        ("PasswordAuthentication", yn(s.password_authentication)),
        (
            "KbdInteractiveAuthentication",
            yn(s.kbd_interactive_authentication),
        ),
        ("PubkeyAuthentication", "yes".into()),
        ("UsePAM", yn(s.use_pam)),
    ];
    if !s.allow_users.is_empty() {
        v.push(("AllowUsers", s.allow_users.join(" ")));
    }
    v.extend([
        ("MaxAuthTries", s.max_auth_tries.to_string()),
        ("MaxSessions", s.max_sessions.to_string()),
        ("LoginGraceTime", s.login_grace_time.to_string()),
        ("X11Forwarding", yn(s.x11_forwarding)),
        ("AllowTcpForwarding", yn(s.allow_tcp_forwarding)),
        ("AllowAgentForwarding", yn(s.allow_agent_forwarding)),
        ("ClientAliveInterval", s.client_alive_interval.to_string()),
        ("ClientAliveCountMax", s.client_alive_count_max.to_string()),
    ]);
    for (k, list) in [
        ("KexAlgorithms", &s.kex_algorithms),
        ("Ciphers", &s.ciphers),
        ("MACs", &s.macs),
    ] {
        if !list.is_empty() {
            v.push((k, list.join(",")));
        }
    }
    v
}

/// The drop-in text.
pub fn dropin(ssh: &Ssh) -> String {
    // Image content: kept byte-for-byte as every earlier image has it.
    let mut s = String::from("# Written by clawimg from the profile's [ssh] section.\n");
    for (k, v) in settings(ssh) {
        s.push_str(&format!("{k} {v}\n"));
    }
    s
}

/// The ssh.socket override text.
pub fn socket_override_text(ssh: &Ssh) -> String {
    let mut s = String::from("# Written by clawimg: Ubuntu starts sshd by socket activation, so the port lives here too.\n[Socket]\nListenStream=\n");
    for a in &ssh.listen {
        let a = if a.contains(':') && !a.starts_with('[') {
            format!("[{a}]")
        } else {
            a.clone()
        };
        s.push_str(&format!("ListenStream={a}:{}\n", ssh.port));
    }
    // Separate v4 and v6 sockets on the same port, as Ubuntu's own ssh.socket does.
    s.push_str("BindIPv6Only=ipv6-only\n");
    s
}

/// Write the drop-in and the socket override; returns the paths written.
fn write(root: &Rootfs, ssh: &Ssh) -> Result<Vec<String>> {
    root.write(DROPIN, dropin(ssh).as_bytes(), 0o644)?;
    let mut paths = vec![DROPIN.to_string()];
    if ssh.socket_override {
        root.write(SOCKET_OVERRIDE, socket_override_text(ssh).as_bytes(), 0o644)?;
        paths.push(SOCKET_OVERRIDE.into());
    }
    Ok(paths)
}

/// Probes: every setting as `sshd -T` reports it, the socket on the declared port and
/// nothing on 22 (when moved).
fn ssh_probes(ssh: &Ssh) -> Vec<Probe> {
    let mut v: Vec<Probe> = settings(ssh)
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
        let d = dropin(&s);
        assert!(
            d.contains("Port 222\n")
                && d.contains("UsePAM yes\n")
                && d.contains("AllowUsers adminclaw\n")
        );
        assert!(d.contains(
            "KexAlgorithms curve25519-sha256@libssh.org,diffie-hellman-group16-sha512\n"
        ));
        let o = socket_override_text(&s);
        assert!(
            o.contains("ListenStream=\nListenStream=0.0.0.0:222\nListenStream=[::]:222\n"),
            "{o}"
        );
    }
}
