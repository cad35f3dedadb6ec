//! Lints on how the firewall and SSH fit together.

use super::{Hit, Lint};
use crate::profile::sections::firewall::Firewall;
use crate::profile::Profile;

/// The firewall, when it is active.
fn active(p: &Profile) -> Option<&Firewall> {
    p.firewall.as_ref().filter(|f| f.enabled)
}

/// An active firewall that does not admit the SSH port.
pub const SSH_PORT_NOT_ALLOWED: Lint = Lint {
    id: "ssh-port-not-allowed",
    acknowledgeable: true,
    why: "UFW is active from the first boot; if no rule admits the SSH port, no one can log in \
          to correct it and the host has to be rebuilt or repaired from a console",
    check: |p| {
        let (Some(ssh), Some(fw)) = (&p.ssh, active(p)) else {
            return vec![];
        };
        if fw.admits_tcp(ssh.port) {
            return vec![];
        }
        vec![Hit::new(
            "firewall.rules",
            format!(
                "no allow or limit rule admits TCP port {} (ssh.port); the first boot would lock everyone out",
                ssh.port
            ),
        )]
    },
};

/// SSH moved off 22, yet the firewall still admits 22.
pub const SSH_PORT_22_OPEN: Lint = Lint {
    id: "ssh-port-22-open",
    acknowledgeable: true,
    why: "moving SSH off port 22 keeps the bulk of automated scanning away only if 22 is closed \
          too; a rule that still admits it leaves the most probed port reachable",
    check: |p| {
        let (Some(ssh), Some(fw)) = (&p.ssh, active(p)) else {
            return vec![];
        };
        if ssh.port == 22 || !fw.admits_tcp(22) {
            return vec![];
        }
        vec![Hit::new(
            "firewall.rules",
            format!("SSH moved to {} but a rule still admits port 22", ssh.port),
        )]
    },
};

/// sshd reachable on every address with no active firewall.
pub const FIREWALL_INACTIVE: Lint = Lint {
    id: "firewall-inactive",
    acknowledgeable: true,
    why: "sshd listens on every address and nothing filters incoming traffic, so any port a \
          service opens later is reachable from the network; an active UFW denies by default \
          and admits only the declared rules",
    check: |p| {
        let Some(ssh) = &p.ssh else { return vec![] };
        let public = ssh
            .listen
            .iter()
            .any(|a| a == "0.0.0.0" || a == "::" || a == "[::]");
        if !public || active(p).is_some() {
            return vec![];
        }
        vec![Hit::new(
            "firewall.enabled",
            format!(
                "sshd listens on all addresses (port {}) and UFW is not active",
                ssh.port
            ),
        )]
    },
};

#[cfg(test)]
mod tests {
    use super::super::fixture::{good, ids, ssh_rule_ports};
    use super::*;

    #[test]
    fn ssh_port_not_allowed() {
        assert!((SSH_PORT_NOT_ALLOWED.check)(&good()).is_empty());
        let mut p = good();
        *ssh_rule_ports(&mut p) = vec![2222];
        assert_eq!(ids(&p), ["ssh-port-not-allowed"]);
        let hits = (SSH_PORT_NOT_ALLOWED.check)(&p);
        assert!(hits[0].message.contains("TCP port 222 "), "{hits:?}");
        let e = super::super::enforce(&p, "p.toml").unwrap_err();
        assert!(
            e.message
                .contains(&format!("why: {}", SSH_PORT_NOT_ALLOWED.why)),
            "{}",
            e.message
        );
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
    fn ssh_port_22_open() {
        assert!((SSH_PORT_22_OPEN.check)(&good()).is_empty());
        let mut p = good();
        *ssh_rule_ports(&mut p) = vec![22, 222];
        assert_eq!(ids(&p), ["ssh-port-22-open"]);
        // SSH on 22 itself: nothing moved, nothing to close.
        p.ssh.as_mut().unwrap().port = 22;
        assert!((SSH_PORT_22_OPEN.check)(&p).is_empty());
    }

    #[test]
    fn firewall_inactive() {
        assert!((FIREWALL_INACTIVE.check)(&good()).is_empty());
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
}
