//! The host-hardening hook: checks every hardening section before a build starts and writes
//! them into the rootfs after `customize`, offline (no service runs at build time). Each
//! module lives in its own file; this one orders them and collects their probes.

pub mod directories;
pub mod docker;
pub mod fail2ban;
pub mod firewall;
pub mod hostenv;
pub mod sshd;
pub mod swap;
pub mod sysctl;
pub mod updates;
pub mod users;

use crate::error::{Error, Result};
use crate::image::probes::Probe;
use crate::profile::lints::{self, Finding};
use crate::profile::{Loaded, Profile};
use crate::support::rootfs::Rootfs;
use directories::Directory;
use docker::Docker;
use fail2ban::Fail2ban;
use firewall::{Firewall, UfwRule};
use hostenv::{Journald, Shell, Time};
use serde::{Deserialize, Serialize};
use sshd::Ssh;
use std::collections::BTreeMap;
use swap::Swap;
use updates::Updates;
use users::Users;

/// Everything the hardening stage writes, resolved (firewall lists read and verified).
/// Stored in the manifest (`extra.hardening`) so `clawimg test IMAGE` derives the probes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Plan {
    /// `[users]`.
    pub users: Option<Users>,
    /// `[ssh]`.
    pub ssh: Option<Ssh>,
    /// `[firewall]`.
    pub firewall: Option<Firewall>,
    /// The firewall rules as UFW stores them.
    pub ufw_rules: Vec<UfwRule>,
    /// `[fail2ban]`.
    pub fail2ban: Option<Fail2ban>,
    /// `[sysctl]`.
    pub sysctl: BTreeMap<String, toml::Value>,
    /// `[docker]`.
    pub docker: Option<Docker>,
    /// `[updates]`.
    pub updates: Option<Updates>,
    /// `[swap]`.
    pub swap: Option<Swap>,
    /// `[time]`.
    pub time: Option<Time>,
    /// `[journald]`.
    pub journald: Option<Journald>,
    /// `[shell]`.
    pub shell: Option<Shell>,
    /// `[directories]`.
    pub directories: BTreeMap<String, Directory>,
    /// Acknowledged lint findings (id: reason).
    pub acknowledged: Vec<String>,
}

impl Plan {
    /// Whether the profile declares any hardening section.
    pub fn is_empty(&self) -> bool {
        *self
            == Plan {
                acknowledged: self.acknowledged.clone(),
                ..Default::default()
            }
    }
}

/// Packages each declared module needs, with the key that needs them.
fn required_packages(p: &Profile) -> Vec<(&'static str, &'static [&'static str])> {
    let mut v: Vec<(&'static str, &'static [&'static str])> = vec![];
    if p.firewall.is_some() {
        v.push(("firewall", &["ufw"]));
    }
    if let Some(f) = &p.fail2ban {
        v.push(("fail2ban", &["fail2ban"]));
        if f.backend == "systemd" {
            v.push(("fail2ban.backend", &["python3-systemd"]));
        }
    }
    if p.docker.is_some() {
        v.push(("docker", &["docker.io", "docker-ce"]));
    }
    if p.updates.is_some() {
        v.push(("updates", &["unattended-upgrades"]));
        // Ubuntu's `required` variant has no apt; unattended-upgrades needs it.
        v.push(("updates", &["apt"]));
    }
    if p.time.as_ref().is_some_and(|t| t.sync) {
        v.push(("time.sync", &["systemd-timesyncd"]));
    }
    if p.users
        .as_ref()
        .and_then(|u| u.admin.as_ref())
        .is_some_and(|a| a.sudo_nopasswd)
    {
        v.push(("users.admin.sudo_nopasswd", &["sudo"]));
    }
    v
}

/// Validate every hardening section and run the lints; nothing is written.
/// Returns the plan and the acknowledged findings.
pub fn check(l: &Loaded) -> Result<(Plan, Vec<Finding>)> {
    let p = &l.profile;
    let file = l.files[0].display().to_string();
    let cfg = |e: Error| Error::config(format!("{file}: {}", e.message));
    for (key, pkgs) in required_packages(p) {
        if !pkgs.iter().any(|x| p.base.packages.iter().any(|y| y == x)) {
            return Err(Error::config(format!(
                "{file}: key `base.packages`: [{key}] needs package {} (add it to base.packages)",
                pkgs.iter()
                    .map(|x| format!("`{x}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
    }
    if let Some(u) = &p.users {
        u.accounts().map_err(cfg)?;
    }
    let ufw_rules = match &p.firewall {
        Some(fw) => fw.resolve(&l.dir).map_err(cfg)?,
        None => vec![],
    };
    if let Some(f) = &p.fail2ban {
        f.render(p.ssh.as_ref().map(|s| s.port)).map_err(cfg)?;
    }
    if let Some(s) = &p.swap {
        s.unit().map_err(cfg)?;
    }
    if let Some(u) = &p.updates {
        u.render().map_err(cfg)?;
    }
    if let Some(j) = &p.journald {
        j.render().map_err(cfg)?;
    }
    sysctl::render(&p.sysctl).map_err(cfg)?;
    directories::validate(&p.directories).map_err(cfg)?;
    if let Some(s) = &p.ssh {
        if s.listen.is_empty()
            || s.listen.iter().any(|a| {
                a.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_err()
            })
        {
            return Err(Error::config(format!(
                "{file}: key `ssh.listen`: expected addresses such as \"0.0.0.0\" and \"::\""
            )));
        }
        if s.port == 0 {
            return Err(Error::config(format!(
                "{file}: key `ssh.port`: expected 1-65535"
            )));
        }
    }
    let acked = lints::enforce(p, &file)?;
    let plan = Plan {
        users: p.users.clone(),
        ssh: p.ssh.clone(),
        firewall: p.firewall.clone(),
        ufw_rules,
        fail2ban: p.fail2ban.clone(),
        sysctl: p.sysctl.clone(),
        docker: p.docker.clone(),
        updates: p.updates.clone(),
        swap: p.swap.clone(),
        time: p.time.clone(),
        journald: p.journald.clone(),
        shell: p.shell.clone(),
        directories: p.directories.clone(),
        acknowledged: acked
            .iter()
            .map(|f| format!("{}: {}", f.id, f.acknowledged.clone().unwrap_or_default()))
            .collect(),
    };
    Ok((plan, acked))
}

/// Write every declared section into the image; returns the paths written.
pub fn apply(root: &Rootfs, plan: &Plan) -> Result<Vec<String>> {
    let mut paths = vec![];
    if let Some(u) = &plan.users {
        paths.extend(users::apply(root, u)?);
    }
    if let Some(s) = &plan.ssh {
        paths.extend(sshd::apply(root, s)?);
    }
    if let Some(fw) = &plan.firewall {
        paths.extend(firewall::apply(root, fw, &plan.ufw_rules)?);
    }
    if let Some(f) = &plan.fail2ban {
        paths.extend(fail2ban::apply(root, f, plan.ssh.as_ref().map(|s| s.port))?);
    }
    if !plan.sysctl.is_empty() {
        paths.extend(sysctl::apply(root, &plan.sysctl)?);
        if plan.firewall.is_some() {
            paths.extend(sysctl::align_ufw(root, &plan.sysctl)?);
        }
    }
    if let Some(d) = &plan.docker {
        paths.extend(docker::apply(root, d)?);
    }
    if let Some(u) = &plan.updates {
        paths.extend(updates::apply(root, u)?);
    }
    if let Some(s) = &plan.swap {
        paths.extend(swap::apply(root, s)?);
    }
    if let Some(t) = &plan.time {
        paths.extend(hostenv::apply_time(root, t)?);
    }
    if let Some(j) = &plan.journald {
        paths.extend(hostenv::apply_journald(root, j)?);
    }
    if let Some(s) = &plan.shell {
        paths.extend(hostenv::apply_shell(root, s)?);
    }
    if !plan.directories.is_empty() {
        paths.extend(directories::apply(root, &plan.directories)?);
    }
    Ok(paths)
}

/// The probes of every declared module, module by module.
pub fn probes(plan: &Plan) -> Vec<Probe> {
    let mut v = vec![];
    if let Some(u) = &plan.users {
        v.extend(users::probes(u));
    }
    if let Some(s) = &plan.ssh {
        v.extend(sshd::probes(s));
    }
    if let Some(fw) = &plan.firewall {
        v.extend(firewall::probes(fw, &plan.ufw_rules));
    }
    if let Some(f) = &plan.fail2ban {
        v.extend(fail2ban::probes(f));
    }
    v.extend(sysctl::probes(&plan.sysctl));
    if let Some(d) = &plan.docker {
        v.extend(docker::probes(d));
    }
    if let Some(u) = &plan.updates {
        v.extend(updates::probes(u));
    }
    if let Some(s) = &plan.swap {
        v.extend(swap::probes(s));
    }
    if let Some(t) = &plan.time {
        v.extend(hostenv::time_probes(t));
    }
    if let Some(j) = &plan.journald {
        v.extend(hostenv::journald_probes(j));
    }
    if let Some(s) = &plan.shell {
        v.extend(hostenv::shell_probes(s));
    }
    v.extend(directories::probes(&plan.directories));
    v
}

/// The plan recorded in a manifest, if any.
pub fn from_manifest(extra: &BTreeMap<String, serde_json::Value>) -> Option<Plan> {
    serde_json::from_value(extra.get("hardening")?.clone()).ok()
}
