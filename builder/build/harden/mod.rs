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

#[cfg(test)]
mod golden {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    const KEY: &str = "users.admin.authorized_keys=[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t\"]";

    /// A tree with the package files the modules read or require.
    fn fixture() -> (tempfile::TempDir, Rootfs) {
        let t = tempfile::tempdir().unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        let files: &[(&str, &str, u32)] = &[
            ("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", 0o644),
            ("/etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640),
            ("/etc/group", "root:x:0:\nshadow:x:42:\ndocker:x:110:\nnogroup:x:65534:\n", 0o644),
            ("/etc/gshadow", "root:*::\nshadow:*::\ndocker:!::\n", 0o640),
            ("/etc/subuid", "", 0o644),
            ("/etc/skel/.bashrc", "# bashrc\n", 0o644),
            ("/etc/skel/.profile", "# profile\n", 0o644),
            ("/etc/environment", "PATH=\"/usr/sbin:/usr/bin\"\n", 0o644),
            ("/usr/share/ufw/iptables/user.rules", "*filter\n:ufw-user-input - [0:0]\n### RULES ###\n\n### LOGGING ###\nCOMMIT\n", 0o640),
            ("/usr/share/ufw/iptables/user6.rules", "*filter\n:ufw6-user-input - [0:0]\n### RULES ###\n\n### LOGGING ###\nCOMMIT\n", 0o640),
            ("/etc/ufw/ufw.conf", "# ufw.conf\nENABLED=no\nLOGLEVEL=low\n", 0o644),
            ("/etc/default/ufw", "IPV6=yes\nDEFAULT_INPUT_POLICY=\"DROP\"\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\"\n", 0o644),
            ("/etc/ufw/sysctl.conf", "# ufw\nnet/ipv4/conf/all/log_martians=0\nnet/ipv4/icmp_echo_ignore_broadcasts=1\n", 0o644),
            ("/etc/fail2ban/jail.conf", "[DEFAULT]\n", 0o644),
            ("/usr/bin/dockerd", "", 0o755),
            ("/usr/lib/systemd/system/ufw.service", "[Unit]\n[Install]\nWantedBy=multi-user.target\n", 0o644),
            ("/usr/lib/systemd/system/unattended-upgrades.service", "[Unit]\n[Install]\nWantedBy=multi-user.target\n", 0o644),
            ("/usr/lib/systemd/system/systemd-timesyncd.service", "[Unit]\n[Install]\nWantedBy=sysinit.target\nAlias=dbus-org.freedesktop.timesync1.service\n", 0o644),
        ];
        for (p, text, mode) in files {
            r.write(p, text.as_bytes(), *mode).unwrap();
        }
        (t, r)
    }

    /// Every entry under `dir`: path, type, mode, owner, content hash or link target.
    fn snapshot(dir: &Path, rel: &str, out: &mut String) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let r = format!("{rel}/{n}");
            let md = std::fs::symlink_metadata(&p).unwrap();
            let what = if md.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                "dir".to_string()
            } else {
                hex::encode(Sha256::digest(std::fs::read(&p).unwrap()))
            };
            let mode = if md.file_type().is_symlink() {
                0
            } else {
                md.mode() & 0o7777
            };
            out.push_str(&format!("{r} {mode:o} {}:{} {what}\n", md.uid(), md.gid()));
            if md.is_dir() {
                snapshot(&p, &r, out);
            }
        }
    }

    /// (profile, sha256 of the plan's JSON, sha256 of the paths `apply` returned plus the
    /// tree it left), recorded from the code before the module trait existed.
    const GOLDEN: &[(&str, &str, &str)] = &[
        (
            "base",
            "a85bf73736be69cc5ef1821575c988fc020ad749e13e9af4973e223521b1e210",
            "8f87393edc3b9e9665e9d16017d1d1e2e53e5de5c7f34bbdb02a14abe10736fe",
        ),
        (
            "compose-host",
            "0d5b17839682c851dc5e6dee810d6ba46e186099d527db1cb2cf95e936ede2d0",
            "80b967b8a3f878ae4b86e1aaacb2aa29672894cf9adee22d5d4584f224b91b1a",
        ),
        (
            "hardened",
            "689c45407a2b93e4ace2322f4219265fa5b9f21ecbe220c5e8d1b162ce1e5538",
            "7250e8598b44df23398c0b54fbda87ac1de58da89602008369e200f5fed4f974",
        ),
        (
            "production",
            "2774a7a9d14257228a73ff537c34f7d6a0cee8e1e71b389f2e31f4c3f2914358",
            "9988867b4627bba877fb0c2993694e46d7b50cb139b70e71cee021419e705f6b",
        ),
        (
            "test",
            "a85bf73736be69cc5ef1821575c988fc020ad749e13e9af4973e223521b1e210",
            "8f87393edc3b9e9665e9d16017d1d1e2e53e5de5c7f34bbdb02a14abe10736fe",
        ),
        (
            "test-images",
            "a85bf73736be69cc5ef1821575c988fc020ad749e13e9af4973e223521b1e210",
            "8f87393edc3b9e9665e9d16017d1d1e2e53e5de5c7f34bbdb02a14abe10736fe",
        ),
        (
            "test-secrets",
            "a85bf73736be69cc5ef1821575c988fc020ad749e13e9af4973e223521b1e210",
            "8f87393edc3b9e9665e9d16017d1d1e2e53e5de5c7f34bbdb02a14abe10736fe",
        ),
        (
            "peer",
            "a85bf73736be69cc5ef1821575c988fc020ad749e13e9af4973e223521b1e210",
            "8f87393edc3b9e9665e9d16017d1d1e2e53e5de5c7f34bbdb02a14abe10736fe",
        ),
    ];

    #[test]
    fn plans_and_written_trees_are_unchanged() {
        let mut got = vec![];
        for (dir, name) in crate::profile::sections::golden::shipped() {
            let mut l = crate::profile::load(&name, &dir, &[]).unwrap();
            if l.profile.users.is_some() {
                l = crate::profile::load_with_sets(&name, &dir, &[], &[KEY.into()]).unwrap();
            }
            let (plan, _) = check(&l).unwrap_or_else(|e| panic!("{name}: {e}"));
            let json = serde_json::to_string(&plan).unwrap();
            assert_eq!(
                from_manifest(
                    &[(
                        "hardening".to_string(),
                        serde_json::from_str(&json).unwrap()
                    )]
                    .into_iter()
                    .collect()
                )
                .as_ref(),
                Some(&plan)
            );
            let (t, r) = fixture();
            let paths = apply(&r, &plan).unwrap();
            let mut tree = paths.join("\n") + "\n--\n";
            snapshot(t.path(), "", &mut tree);
            got.push((
                name,
                hex::encode(Sha256::digest(json.as_bytes())),
                hex::encode(Sha256::digest(tree.as_bytes())),
            ));
            if std::env::var_os("CLAWIMG_GOLDEN_DUMP").is_some() {
                eprintln!("== {}\n{json}\n{tree}", got.last().unwrap().0);
            }
        }
        let want: Vec<(String, String, String)> = GOLDEN
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want, "hardening output changed:\n{got:#?}");
    }
}
