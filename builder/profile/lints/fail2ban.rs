//! Lints on `[fail2ban]`.

use super::{Hit, Lint};

/// The sshd jail watches a port SSH does not listen on.
pub const SSH_PORT: Lint = Lint {
    id: "fail2ban-ssh-port",
    acknowledgeable: true,
    why: "fail2ban blocks an offender only on the ports its jail names; an sshd jail on a port \
          SSH does not use leaves the real port open to password guessing and key scanning",
    check: |p| {
        let (Some(ssh), Some(f)) = (&p.ssh, &p.fail2ban) else {
            return vec![];
        };
        let Some(port) = f.jails.get("sshd").and_then(|j| j.port.as_ref()) else {
            return vec![];
        };
        if port.split(',').any(|x| x.trim() == ssh.port.to_string()) {
            return vec![];
        }
        vec![Hit::new(
            "fail2ban.jails.sshd.port",
            format!(
                "the sshd jail watches port {port}, SSH listens on {}",
                ssh.port
            ),
        )]
    },
};

#[cfg(test)]
mod tests {
    use super::super::fixture::{good, ids};
    use super::*;
    use crate::profile::sections::fail2ban::{Fail2ban, Jail};

    #[test]
    fn fail2ban_ssh_port() {
        let mut p = good();
        let mut f = Fail2ban::default();
        f.jails.insert(
            "sshd".into(),
            Jail {
                port: Some("22".into()),
                ..Default::default()
            },
        );
        p.fail2ban = Some(f.clone());
        assert_eq!(ids(&p), ["fail2ban-ssh-port"]);
        f.jails.get_mut("sshd").unwrap().port = Some("22, 222".into());
        p.fail2ban = Some(f.clone());
        assert!((SSH_PORT.check)(&p).is_empty());
        // No port: the jail takes the SSH port when written.
        f.jails.get_mut("sshd").unwrap().port = None;
        p.fail2ban = Some(f);
        assert!(ids(&p).is_empty());
    }
}
