//! Lints on `[ssh]` and the users it admits.

use super::{Hit, Lint};

/// The port moved but the ssh.socket override is off.
pub const SOCKET_PORT: Lint = Lint {
    id: "ssh-socket-port",
    acknowledgeable: false,
    why: "Ubuntu 24.04 starts sshd through ssh.socket, and the socket, not sshd_config, decides \
          which port accepts connections; a moved port needs both the sshd setting and the \
          socket override",
    check: |p| {
        let Some(ssh) = &p.ssh else { return vec![] };
        if ssh.port == 22 || ssh.socket_override {
            return vec![];
        }
        vec![Hit::new(
            "ssh.socket_override",
            format!(
                "ssh.port = {} but the ssh.socket override is off: ssh.socket would keep listening on 22 and sshd would never see {}",
                ssh.port, ssh.port
            ),
        )]
    },
};

/// `UsePAM no`.
pub const USEPAM_NO: Lint = Lint {
    id: "ssh-usepam-no",
    acknowledgeable: false,
    why: "the accounts clawimg creates have locked passwords, and without PAM sshd treats a \
          locked account as disabled: even key logins are refused and the host is unreachable",
    check: |p| match &p.ssh {
        Some(ssh) if !ssh.use_pam => vec![Hit::new("ssh.use_pam", "UsePAM no")],
        _ => vec![],
    },
};

/// `AllowUsers` names a user the profile does not create.
pub const ALLOWUSERS_UNKNOWN: Lint = Lint {
    id: "ssh-allowusers-unknown",
    acknowledgeable: false,
    why: "AllowUsers admits only the names it lists; a name the image does not create admits \
          no one, so nobody can log in",
    check: |p| {
        let Some(ssh) = &p.ssh else { return vec![] };
        let declared = p.users.as_ref().map(|x| x.names()).unwrap_or_default();
        ssh.allow_users
            .iter()
            .filter(|u| !declared.contains(u))
            .map(|u| {
                Hit::new(
                    "ssh.allow_users",
                    format!(
                        "AllowUsers names `{u}`, but [users] declares {}",
                        if declared.is_empty() {
                            "no user".to_string()
                        } else {
                            declared.join(", ")
                        }
                    ),
                )
            })
            .collect()
    },
};

/// `AllowUsers` names a declared user who has no key.
pub const ALLOWUSERS_NO_KEY: Lint = Lint {
    id: "ssh-allowusers-no-key",
    acknowledgeable: true,
    why: "password login is off, so a user SSH admits but who has no authorized key cannot log \
          in; on a remote host with no console that is a permanent lockout",
    check: |p| {
        let Some(ssh) = &p.ssh else { return vec![] };
        let users = p.users.as_ref();
        let declared = users.map(|x| x.names()).unwrap_or_default();
        let admin = users.and_then(|u| u.admin.as_ref());
        ssh.allow_users
            .iter()
            .filter(|u| declared.contains(u))
            .filter(|u| !admin.is_some_and(|a| &a.name == *u && !a.authorized_keys.is_empty()))
            .map(|u| Hit::new("ssh.allow_users", format!("AllowUsers names `{u}`, who has no authorized key in the profile (set users.admin.authorized_keys, e.g. --set 'users.admin.authorized_keys=[\"ssh-ed25519 AAAA... you\"]')")))
            .collect()
    },
};

/// Root may log in over SSH.
pub const ROOT_LOGIN: Lint = Lint {
    id: "ssh-root-login",
    acknowledgeable: true,
    why: "root exists on every Linux host, so it is the first account attackers try; logging in \
          as a named admin and then using sudo means the account name must be guessed too, and \
          leaves a record of who acted",
    check: |p| match &p.ssh {
        Some(ssh) if ssh.permit_root_login != "no" => vec![Hit::new(
            "ssh.permit_root_login",
            format!("PermitRootLogin {}", ssh.permit_root_login),
        )],
        _ => vec![],
    },
};

/// Password or keyboard-interactive login is on.
pub const PASSWORD_AUTH: Lint = Lint {
    id: "ssh-password-auth",
    acknowledgeable: true,
    why: "a host reachable from the internet receives password guesses within hours of coming \
          up; with key-only login there is nothing to guess",
    check: |p| match &p.ssh {
        Some(ssh) if ssh.password_authentication || ssh.kbd_interactive_authentication => {
            vec![Hit::new(
                "ssh.password_authentication",
                "password or keyboard-interactive login is enabled",
            )]
        }
        _ => vec![],
    },
};

#[cfg(test)]
mod tests {
    use super::super::enforce;
    use super::super::fixture::{good, ids, ssh_rule_ports};
    use super::*;

    #[test]
    fn ssh_socket_port() {
        assert!((SOCKET_PORT.check)(&good()).is_empty());
        let mut p = good();
        p.ssh.as_mut().unwrap().socket_override = false;
        assert_eq!(ids(&p), ["ssh-socket-port"]);
        p.ssh.as_mut().unwrap().port = 22;
        *ssh_rule_ports(&mut p) = vec![22];
        assert!(ids(&p).is_empty());
    }

    #[test]
    fn ssh_usepam_no() {
        assert!((USEPAM_NO.check)(&good()).is_empty());
        let mut p = good();
        p.ssh.as_mut().unwrap().use_pam = false;
        assert_eq!(ids(&p), ["ssh-usepam-no"]);
    }

    #[test]
    fn ssh_allowusers_unknown() {
        assert!((ALLOWUSERS_UNKNOWN.check)(&good()).is_empty());
        let mut p = good();
        p.ssh.as_mut().unwrap().allow_users = vec!["deploy".into()];
        assert_eq!(ids(&p), ["ssh-allowusers-unknown"]);
        assert!((ALLOWUSERS_UNKNOWN.check)(&p)[0]
            .message
            .contains("declares adminclaw"));
    }

    #[test]
    fn ssh_allowusers_no_key() {
        assert!((ALLOWUSERS_NO_KEY.check)(&good()).is_empty());
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
        assert!(e.message.contains("permanent lockout"), "{}", e.message);
        p.lints
            .acknowledge
            .insert("ssh-allowusers-no-key".into(), "key sealed per node".into());
        assert!(enforce(&p, "p.toml").is_ok());
    }

    #[test]
    fn ssh_root_login() {
        assert!((ROOT_LOGIN.check)(&good()).is_empty());
        let mut p = good();
        p.ssh.as_mut().unwrap().permit_root_login = "prohibit-password".into();
        assert_eq!(ids(&p), ["ssh-root-login"]);
    }

    #[test]
    fn ssh_password_auth() {
        assert!((PASSWORD_AUTH.check)(&good()).is_empty());
        let mut p = good();
        p.ssh.as_mut().unwrap().password_authentication = true;
        assert_eq!(ids(&p), ["ssh-password-auth"]);
        let mut p = good();
        p.ssh.as_mut().unwrap().kbd_interactive_authentication = true;
        assert_eq!(ids(&p), ["ssh-password-auth"]);
    }
}
