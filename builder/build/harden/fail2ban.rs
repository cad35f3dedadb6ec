//! `[fail2ban]`: `/etc/fail2ban/jail.local` from the profile: defaults plus per-jail
//! overrides; the sshd jail covers the `[ssh]` port unless it names its own.

use super::{Checking, Module, Needs, Plan};
use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::fail2ban::Fail2ban;
use crate::support::rootfs::Rootfs;

/// Path of the generated jail file.
pub const JAIL_LOCAL: &str = "/etc/fail2ban/jail.local";

/// The `[fail2ban]` module.
pub struct Fail2banModule;

impl Module for Fail2banModule {
    type Section = Fail2ban;
    const NAME: &'static str = "fail2ban";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Fail2ban> {
        plan.fail2ban.as_ref()
    }

    fn packages(&self, f: &Fail2ban) -> Needs {
        let mut v: Needs = vec![("fail2ban", &["fail2ban"])];
        if f.backend == "systemd" {
            v.push(("fail2ban.backend", &["python3-systemd"]));
        }
        v
    }

    fn validate(&self, f: &Fail2ban, _: &mut Checking) -> Result<()> {
        f.validate()
    }

    fn apply(&self, root: &Rootfs, f: &Fail2ban, plan: &Plan) -> Result<Vec<String>> {
        if !root.exists("/etc/fail2ban") {
            return Err(Error::config(
                "the fail2ban section needs package `fail2ban` in base.packages",
            ));
        }
        let text = render(f, plan.ssh.as_ref().map(|s| s.port));
        root.write(JAIL_LOCAL, text.as_bytes(), 0o644)?;
        Ok(vec![JAIL_LOCAL.into()])
    }

    /// The server answers for each enabled jail with the declared limits.
    fn probes(&self, f: &Fail2ban, _: &Plan) -> Vec<Probe> {
        let mut v = vec![];
        for (name, j) in f.jails.iter().filter(|(_, j)| j.enabled) {
            v.push(Probe {
                name: format!("fail2ban jail {name}"),
                command: format!("sudo -n fail2ban-client status {name}"),
                expect: Expect::Contains(format!("Status for the jail: {name}")),
                on_failure: Some("sudo -n journalctl -b -u fail2ban --no-pager | tail -20".into()),
            });
            let maxretry = j.maxretry.unwrap_or(f.maxretry);
            v.push(Probe::new(
                &format!("fail2ban {name} maxretry"),
                &format!("sudo -n fail2ban-client get {name} maxretry"),
                Expect::Equals(maxretry.to_string()),
            ));
            if let Some(b) = seconds(j.bantime.as_deref().unwrap_or(&f.bantime)) {
                v.push(Probe::new(
                    &format!("fail2ban {name} bantime"),
                    &format!("sudo -n fail2ban-client get {name} bantime"),
                    Expect::Equals(b.to_string()),
                ));
            }
        }
        v
    }
}

/// fail2ban's own parsing of `1h`, `10m`, `3600` to seconds (for probes).
pub fn seconds(v: &str) -> Option<i64> {
    let idx = v
        .find(|c: char| !c.is_ascii_digit() && c != '-')
        .unwrap_or(v.len());
    let n: i64 = v[..idx].parse().ok()?;
    let mul = match &v[idx..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 604800,
        _ => return None,
    };
    Some(n * mul)
}

/// jail.local for a validated section; `ssh_port` fills the sshd jail's port.
pub fn render(f: &Fail2ban, ssh_port: Option<u16>) -> String {
    let mut s = format!(
        "# Written by clawimg from the profile's [fail2ban] section.\n[DEFAULT]\nbantime = {}\nfindtime = {}\nmaxretry = {}\nbackend = {}\n",
        f.bantime, f.findtime, f.maxretry, f.backend
    );
    for (name, j) in &f.jails {
        s.push_str(&format!("\n[{name}]\nenabled = {}\n", j.enabled));
        let port = j.port.clone().or_else(|| {
            (name == "sshd")
                .then(|| ssh_port.map(|p| p.to_string()))
                .flatten()
        });
        if let Some(p) = port {
            s.push_str(&format!("port = {p}\n"));
        }
        if let Some(m) = j.maxretry {
            s.push_str(&format!("maxretry = {m}\n"));
        }
        for (k, v) in [("bantime", &j.bantime), ("findtime", &j.findtime)] {
            if let Some(v) = v {
                s.push_str(&format!("{k} = {v}\n"));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::sections::fail2ban::Jail;

    #[test]
    fn sshd_jail_takes_the_ssh_port() {
        let mut f = Fail2ban::default();
        f.jails.insert(
            "sshd".into(),
            Jail {
                maxretry: Some(3),
                bantime: Some("24h".into()),
                ..Default::default()
            },
        );
        let s = render(&f, Some(222));
        assert!(
            s.contains("[sshd]\nenabled = true\nport = 222\nmaxretry = 3\nbantime = 24h\n"),
            "{s}"
        );
        assert!(s.contains("backend = systemd"));
        assert_eq!(seconds("24h"), Some(86400));
    }
}
