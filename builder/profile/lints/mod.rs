//! Lints: lockouts and misconfigurations found on the merged profile, before anything is
//! built. `clawimg check` prints them; `clawimg build` refuses on any finding before writing
//! anything. A finding whose lint is acknowledgeable can be accepted in the profile with a
//! reason:
//!
//! ```toml
//! [lints.acknowledge]
//! firewall-inactive = "the provider's network firewall admits only the bastion"
//! ```
//!
//! Each lint is one [`Lint`] item (id, whether it may be acknowledged, why it matters, and
//! its check) in the file of the section it is about; [`LINTS`] lists them in the order
//! findings are reported.

mod docker;
mod fail2ban;
mod firewall;
mod gateway;
mod secrets;
mod ssh;
mod sysctl;

use crate::error::{Error, Problem, Problems, Result};
pub use crate::profile::sections::lints::LintConfig;
use crate::profile::Profile;

/// What a lint's check reports: the profile key concerned and what is wrong there.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Profile key the finding is about.
    pub key: String,
    /// What is wrong, with the values involved.
    pub message: String,
}

impl Hit {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Hit {
        Hit {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A lint: id, whether a profile may acknowledge it, why it matters, and its check.
#[derive(Debug, Clone, Copy)]
pub struct Lint {
    /// Stable id used in messages and in `[lints.acknowledge]`.
    pub id: &'static str,
    /// Whether `[lints.acknowledge]` may accept it.
    pub acknowledgeable: bool,
    /// Why it matters, shown under every finding.
    pub why: &'static str,
    /// The check: one hit per problem found in the merged profile.
    pub check: fn(&Profile) -> Vec<Hit>,
}

/// Every lint clawimg knows, in the order findings are reported.
pub const LINTS: &[Lint] = &[
    firewall::SSH_PORT_NOT_ALLOWED,
    firewall::SSH_PORT_22_OPEN,
    ssh::SOCKET_PORT,
    ssh::USEPAM_NO,
    ssh::ALLOWUSERS_UNKNOWN,
    ssh::ALLOWUSERS_NO_KEY,
    ssh::ROOT_LOGIN,
    ssh::PASSWORD_AUTH,
    firewall::FIREWALL_INACTIVE,
    fail2ban::SSH_PORT,
    sysctl::KEY_FORMAT,
    docker::UNKNOWN_KEY,
    gateway::UNKNOWN_KEY,
    gateway::WEAKENED,
    secrets::SLOT_UNUSED,
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
    /// `FILE:LINE` of the key (or of the nearest table holding it), when known.
    pub at: Option<String>,
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
        match &self.at {
            Some(at) => write!(
                f,
                "[{}] {at}: key `{}`: {}",
                self.id, self.key, self.message
            )?,
            None => write!(f, "[{}] key `{}`: {}", self.id, self.key, self.message)?,
        }
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
    LINTS
        .iter()
        .flat_map(|l| {
            (l.check)(p).into_iter().map(|h| Finding {
                id: l.id,
                at: None,
                key: h.key,
                message: h.message,
                acknowledged: p.lints.acknowledge.get(l.id).cloned(),
            })
        })
        .collect()
}

/// Line (1-based) of a dotted key in a TOML text: the line setting it, else the line of the
/// longest part of it that is set (an inline table) or opened as a table.
pub fn locate(text: &str, key: &str) -> Option<usize> {
    let want: Vec<&str> = key.split('.').collect();
    let split = |s: &str| -> Vec<String> {
        let mut out = vec![];
        let mut cur = String::new();
        let mut quote = None;
        for c in s.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '.') => out.push(std::mem::take(&mut cur).trim().to_string()),
                _ => cur.push(c),
            }
        }
        out.push(cur.trim().to_string());
        out
    };
    let mut table: Vec<String> = vec![];
    let mut best: Option<(usize, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        let path = if let Some(h) = t.strip_prefix('[') {
            let h = h.trim_start_matches('[');
            let h = h.split(']').next().unwrap_or("");
            table = split(h);
            table.clone()
        } else if let Some((k, _)) = t.split_once('=').filter(|_| !t.starts_with('#')) {
            let mut p = table.clone();
            p.extend(split(k));
            p
        } else {
            continue;
        };
        let common = path
            .iter()
            .zip(&want)
            .take_while(|(a, b)| a.as_str() == **b)
            .count();
        if common == path.len() && best.is_none_or(|(n, _)| common > n) {
            best = Some((common, i + 1));
        }
    }
    best.map(|(_, l)| l)
}

/// Check the acknowledgements and run the lints; every bad acknowledgement and every
/// finding not acknowledged is recorded in `problems` (key `key`, file `file`). Returns
/// the acknowledged findings (for `clawimg check` to show).
pub fn collect(p: &Profile, file: &str, problems: &mut Problems) -> Vec<Finding> {
    let mut bad = |id: &str, msg: String| {
        problems.push(Problem::at_key(
            file,
            format!("lints.acknowledge.{id}"),
            msg,
        ))
    };
    for (id, reason) in &p.lints.acknowledge {
        match lint(id) {
            None => {
                let ids: Vec<&str> = LINTS
                    .iter()
                    .filter(|l| l.acknowledgeable)
                    .map(|l| l.id)
                    .collect();
                bad(
                    id,
                    format!("no such lint (acknowledgeable: {})", ids.join(", ")),
                );
            }
            Some(l) if !l.acknowledgeable => {
                bad(id, format!("lint {id} cannot be acknowledged ({})", l.why));
            }
            _ if reason.trim().is_empty() => {
                bad(id, "give the reason the finding is accepted".into());
            }
            _ => {}
        }
    }
    let (acked, open): (Vec<Finding>, Vec<Finding>) =
        run(p).into_iter().partition(|f| f.acknowledged.is_some());
    for f in open {
        let text = f.to_string();
        // The finding's own rendering starts with its id and key; the problem carries the
        // key, so only the id stays in front of the message.
        let msg = text
            .split_once(&format!(" key `{}`: ", f.key))
            .map(|(id, rest)| format!("{id} {rest}"))
            .unwrap_or(text);
        problems.push(Problem::at_key(file, f.key.clone(), msg));
    }
    acked
}

/// [`collect`] as a result: fails on any finding not acknowledged (every one listed).
pub fn enforce(p: &Profile, file: &str) -> Result<Vec<Finding>> {
    let mut problems = Problems::default();
    let acked = collect(p, file, &mut problems);
    let n = problems.len();
    match problems.finish() {
        Ok(()) => Ok(acked),
        Err(e) => Err(Error::config(format!(
            "{file}: {n} lint error(s), nothing was built:\n{}",
            e.problems()
                .iter()
                .map(|p| if p.message.starts_with('[') {
                    format!("  error{}", p.message)
                } else {
                    format!("  {p}")
                })
                .collect::<Vec<_>>()
                .join("\n")
        ))
        .with_source(crate::error::ProblemList(e.problems()))),
    }
}

/// Fixtures shared by the lint tests.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::profile::sections::firewall::{Firewall, Rule};
    use crate::profile::sections::ssh::Ssh;
    use crate::profile::sections::users::{Admin, Users};
    use crate::profile::Profile;

    /// The hardened shape: SSH on 222 for a user with a key, admitted by UFW. No lint fires.
    pub fn good() -> Profile {
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

    /// The ids of the open findings of every lint.
    pub fn ids(p: &Profile) -> Vec<&'static str> {
        super::run(p)
            .into_iter()
            .filter(|f| f.acknowledged.is_none())
            .map(|f| f.id)
            .collect()
    }

    /// The SSH rule's ports in [`good`]'s firewall.
    pub fn ssh_rule_ports(p: &mut Profile) -> &mut Vec<u16> {
        &mut p
            .firewall
            .as_mut()
            .unwrap()
            .rules
            .get_mut("ssh")
            .unwrap()
            .ports
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{good, ids};
    use super::*;

    #[test]
    fn locate_finds_keys_tables_and_inline_tables() {
        let t = "a = 1\n[vars.g.gateway.auth]\nmode = \"none\"\n[vars.g.\"x.y\"]\nz = { q = 1 }\n";
        assert_eq!(locate(t, "vars.g.gateway.auth.mode"), Some(3));
        assert_eq!(locate(t, "vars.g.gateway.auth.allowTailscale"), Some(2));
        assert_eq!(locate(t, "vars.g.x.y.z.q"), None);
        assert_eq!(locate(t, "a"), Some(1));
        assert_eq!(locate(t, "b"), None);
    }

    #[test]
    fn good_profile_is_clean() {
        assert!(ids(&good()).is_empty(), "{:?}", run(&good()));
        assert!(enforce(&good(), "p.toml").is_ok());
    }

    #[test]
    fn ids_are_unique_and_reasons_self_contained() {
        for (i, l) in LINTS.iter().enumerate() {
            assert!(LINTS[..i].iter().all(|o| o.id != l.id), "{}", l.id);
            assert!(!l.why.is_empty() && !l.why.contains('§'), "{}", l.id);
            assert!(!l.why.to_lowercase().contains("seed"), "{}", l.id);
            assert!(!l.why.contains("Step ") && !l.why.contains('"'), "{}", l.id);
        }
    }

    #[test]
    fn acknowledgement_accepts_a_finding_with_a_reason() {
        let mut p = good();
        p.ssh.as_mut().unwrap().permit_root_login = "yes".into();
        let e = enforce(&p, "p.toml").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.message
                .contains("p.toml: 1 lint error(s), nothing was built")
                && e.message.contains("[lints.acknowledge] ssh-root-login"),
            "{}",
            e.message
        );
        p.lints
            .acknowledge
            .insert("ssh-root-login".into(), "console-only host".into());
        let acked = enforce(&p, "p.toml").unwrap();
        assert_eq!(acked.len(), 1);
        assert_eq!(acked[0].acknowledged.as_deref(), Some("console-only host"));
    }

    #[test]
    fn unknown_empty_or_forbidden_acknowledgement() {
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
        let mut p = good();
        p.lints
            .acknowledge
            .insert("ssh-usepam-no".into(), "because".into());
        assert!(enforce(&p, "p.toml")
            .unwrap_err()
            .message
            .contains("cannot be acknowledged"));
    }
}
