//! The host-hardening stage: checks every hardening section before a build starts and writes
//! them into the rootfs after `customize`, offline (no service runs at build time).
//!
//! Each module is one file implementing [`Module`] for one profile section (whose type lives
//! in `profile/sections/`); [`MODULES`] lists them in the order they are applied and probed.
//! Adding a module means: its section type (and the field in `Profile` and [`Plan`]), one
//! file here, and one line in [`MODULES`].

pub mod directories;
pub mod docker;
pub mod fail2ban;
pub mod firewall;
pub mod journald;
pub mod shell;
pub mod sshd;
pub mod swap;
pub mod sysctl;
pub mod time;
pub mod updates;
pub mod users;

use crate::error::{Error, Problem, Problems, Result};
use crate::image::probes::Probe;
use crate::profile::lints::{self, Finding};
use crate::profile::sections::directories::Directory;
use crate::profile::sections::docker::Docker;
use crate::profile::sections::fail2ban::Fail2ban;
use crate::profile::sections::firewall::{Firewall, UfwRule};
use crate::profile::sections::journald::Journald;
use crate::profile::sections::shell::Shell;
use crate::profile::sections::ssh::Ssh;
use crate::profile::sections::swap::Swap;
use crate::profile::sections::time::Time;
use crate::profile::sections::updates::Updates;
use crate::profile::sections::users::Users;
use crate::profile::{Loaded, Profile};
use crate::support::rootfs::Rootfs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

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
    /// Users a node may give a console password (a `password_of` secret slot): their
    /// password is locked, or set on first boot from the node's secrets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub console_passwords: Vec<String>,
}

impl Plan {
    /// The profile's hardening sections, not yet resolved.
    fn sections(p: &Profile) -> Plan {
        Plan {
            users: p.users.clone(),
            ssh: p.ssh.clone(),
            firewall: p.firewall.clone(),
            ufw_rules: vec![],
            fail2ban: p.fail2ban.clone(),
            sysctl: p.sysctl.clone(),
            docker: p.docker.clone(),
            updates: p.updates.clone(),
            swap: p.swap.clone(),
            time: p.time.clone(),
            journald: p.journald.clone(),
            shell: p.shell.clone(),
            directories: p.directories.clone(),
            acknowledged: vec![],
            console_passwords: p
                .secrets
                .values()
                .filter_map(|s| s.password_of.clone())
                .collect(),
        }
    }

    /// Whether the profile declares any hardening section.
    pub fn is_empty(&self) -> bool {
        *self
            == Plan {
                acknowledged: self.acknowledged.clone(),
                ..Default::default()
            }
    }
}

/// Packages a module needs: (profile key that needs them, any one of these packages).
pub type Needs = Vec<(&'static str, &'static [&'static str])>;

/// What a module's check may add to the plan (resolved data derived from its section).
pub struct Checking<'a> {
    /// Directory holding the profiles (list files are relative to it).
    pub dir: &'a Path,
    /// The firewall rules, once `[firewall]` has been resolved.
    pub ufw_rules: Vec<UfwRule>,
}

/// One hardening module: the profile section it reads, the packages it needs, its checks,
/// what it writes into the image, how a booted image shows it, and which of its paths each
/// node makes for itself.
pub trait Module: Sync {
    /// The profile section.
    type Section;
    /// Name recorded as the origin of every path the module writes (`module <name>`).
    const NAME: &'static str;
    /// The module's section in the plan, if the profile declares it.
    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Self::Section>;
    /// Packages the section needs in `base.packages`.
    fn packages(&self, _s: &Self::Section) -> Needs {
        vec![]
    }
    /// Checks that need no image (errors name the profile key).
    fn validate(&self, s: &Self::Section, cx: &mut Checking) -> Result<()>;
    /// Write the section into the image; returns the paths written, in order.
    fn apply(&self, root: &Rootfs, s: &Self::Section, plan: &Plan) -> Result<Vec<String>>;
    /// Checks run inside the booted image.
    fn probes(&self, s: &Self::Section, plan: &Plan) -> Vec<Probe>;
    /// Paths the node makes for itself at boot (path, why), never shipped in the image.
    fn node_local(&self, _s: &Self::Section) -> Vec<(String, String)> {
        vec![]
    }
}

/// A [`Module`] seen through its plan, so modules with different sections share one list.
pub trait Registered: Sync {
    /// The module's name.
    fn name(&self) -> &'static str;
    /// Packages needed, if the section is declared.
    fn needs(&self, plan: &Plan) -> Needs;
    /// Check the section, if declared.
    fn check(&self, plan: &Plan, cx: &mut Checking) -> Result<()>;
    /// Apply the section, if declared.
    fn write(&self, root: &Rootfs, plan: &Plan) -> Result<Vec<String>>;
    /// The section's probes, if declared.
    fn probe(&self, plan: &Plan) -> Vec<Probe>;
    /// The section's node-local paths, if declared.
    fn local(&self, plan: &Plan) -> Vec<(String, String)>;
}

impl<M: Module> Registered for M {
    fn name(&self) -> &'static str {
        M::NAME
    }
    fn needs(&self, plan: &Plan) -> Needs {
        self.section(plan)
            .map(|s| self.packages(s))
            .unwrap_or_default()
    }
    fn check(&self, plan: &Plan, cx: &mut Checking) -> Result<()> {
        match self.section(plan) {
            Some(s) => self.validate(s, cx),
            None => Ok(()),
        }
    }
    fn write(&self, root: &Rootfs, plan: &Plan) -> Result<Vec<String>> {
        match self.section(plan) {
            Some(s) => self.apply(root, s, plan),
            None => Ok(vec![]),
        }
    }
    fn probe(&self, plan: &Plan) -> Vec<Probe> {
        self.section(plan)
            .map(|s| self.probes(s, plan))
            .unwrap_or_default()
    }
    fn local(&self, plan: &Plan) -> Vec<(String, String)> {
        self.section(plan)
            .map(|s| self.node_local(s))
            .unwrap_or_default()
    }
}

/// Every module, in the order it is applied and probed (later modules may rely on earlier
/// ones: directories can be owned by the users made first).
pub const MODULES: &[&dyn Registered] = &[
    &users::UsersModule,
    &sshd::SshModule,
    &firewall::FirewallModule,
    &fail2ban::Fail2banModule,
    &sysctl::SysctlModule,
    &docker::DockerModule,
    &updates::UpdatesModule,
    &swap::SwapModule,
    &time::TimeModule,
    &journald::JournaldModule,
    &shell::ShellModule,
    &directories::DirectoriesModule,
];

/// Validate every hardening section and run the lints; nothing is written.
/// Returns the plan and the acknowledged findings.
pub fn check(l: &Loaded) -> Result<(Plan, Vec<Finding>)> {
    let mut problems = Problems::default();
    let r = check_collecting(l, &mut problems);
    problems.finish()?;
    Ok(r)
}

/// [`check`] that records every problem (a missing package, a section a module refuses,
/// each lint finding) in `problems` and goes on; the plan is only usable when none was
/// recorded.
pub fn check_collecting(l: &Loaded, problems: &mut Problems) -> (Plan, Vec<Finding>) {
    let p = &l.profile;
    let file = l.files[0].display().to_string();
    let mut plan = Plan::sections(p);
    for (key, pkgs) in MODULES.iter().flat_map(|m| m.needs(&plan)) {
        if !pkgs.iter().any(|x| p.base.packages.iter().any(|y| y == x)) {
            problems.push(Problem::at_key(
                file.clone(),
                "base.packages",
                format!(
                    "[{key}] needs package {} (add it to base.packages)",
                    pkgs.iter()
                        .map(|x| format!("`{x}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ));
        }
    }
    let mut cx = Checking {
        dir: &l.dir,
        ufw_rules: vec![],
    };
    for m in MODULES {
        if let Err(e) = m.check(&plan, &mut cx) {
            problems.push_error(Error::config(format!("{file}: {}", e.message)));
        }
    }
    plan.ufw_rules = cx.ufw_rules;
    let acked = lints::collect(p, &file, problems);
    plan.acknowledged = acked
        .iter()
        .map(|f| format!("{}: {}", f.id, f.acknowledged.clone().unwrap_or_default()))
        .collect();
    (plan, acked)
}

/// Write every declared section into the image; returns each path written with the name of
/// the module that wrote it (a path written twice appears twice, in write order).
pub fn apply(root: &Rootfs, plan: &Plan) -> Result<Vec<(String, &'static str)>> {
    let mut paths = vec![];
    for m in MODULES {
        paths.extend(m.write(root, plan)?.into_iter().map(|p| (p, m.name())));
    }
    Ok(paths)
}

/// The probes of every declared module, module by module.
pub fn probes(plan: &Plan) -> Vec<Probe> {
    MODULES.iter().flat_map(|m| m.probe(plan)).collect()
}

/// Paths each node makes for itself at boot: (path, module, why).
pub fn node_local(plan: &Plan) -> Vec<(String, &'static str, String)> {
    MODULES
        .iter()
        .flat_map(|m| m.local(plan).into_iter().map(|(p, why)| (p, m.name(), why)))
        .collect()
}

/// The plan recorded in a manifest, if any.
pub fn from_manifest(extra: &BTreeMap<String, serde_json::Value>) -> Option<Plan> {
    serde_json::from_value(extra.get("hardening")?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_has_one_module_with_its_own_name() {
        let mut names: Vec<&str> = MODULES.iter().map(|m| m.name()).collect();
        let plan = Plan {
            users: Some(Users {
                admin: Some(Default::default()),
                runtime: None,
            }),
            ssh: Some(Default::default()),
            firewall: Some(Default::default()),
            fail2ban: Some(Fail2ban {
                jails: [("sshd".to_string(), Default::default())].into(),
                ..Default::default()
            }),
            sysctl: [("vm.swappiness".to_string(), toml::Value::Integer(10))].into(),
            docker: Some(Default::default()),
            updates: Some(Default::default()),
            swap: Some(Default::default()),
            time: Some(Default::default()),
            journald: Some(Default::default()),
            shell: Some(Default::default()),
            directories: [("/opt/x".to_string(), Default::default())].into(),
            ..Default::default()
        };
        // Each declared section yields probes from exactly one module.
        for m in MODULES {
            assert!(!m.probe(&plan).is_empty(), "{} has no probes", m.name());
            assert!(m.probe(&Plan::default()).is_empty(), "{}", m.name());
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), MODULES.len());
        let local = node_local(&plan);
        assert_eq!(local.len(), 1);
        assert_eq!((local[0].0.as_str(), local[0].1), ("/swapfile", "swap"));
    }

    #[test]
    fn apply_names_the_module_of_every_path() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let l =
            crate::profile::load_with_sets("hardened", &dir, &[], &[golden::KEY.into()]).unwrap();
        let (plan, _) = check(&l).unwrap();
        let (_t, r) = golden::fixture();
        let written = apply(&r, &plan).unwrap();
        for (path, module) in [
            (sshd::DROPIN, "ssh"),
            (sshd::SOCKET_OVERRIDE, "ssh"),
            (sysctl::FILE, "sysctl"),
            ("/etc/ufw/sysctl.conf", "sysctl"),
            ("/etc/ufw/user.rules", "firewall"),
            ("/etc/sudoers.d/50-clawimg-adminclaw", "users"),
            (fail2ban::JAIL_LOCAL, "fail2ban"),
            (docker::DAEMON_JSON, "docker"),
        ] {
            assert!(
                written.iter().any(|(p, m)| p == path && *m == module),
                "{path} not recorded as {module}: {written:?}"
            );
            assert!(r.exists(path), "{path}");
        }
    }
}

#[cfg(test)]
mod golden {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    pub(super) const KEY: &str = "users.admin.authorized_keys=[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t\"]";

    /// A tree with the package files the modules read or require.
    pub(super) fn fixture() -> (tempfile::TempDir, Rootfs) {
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
    /// tree it left), recorded from the code before the module trait existed and updated on
    /// purpose since (fixed uids for the hardened users).
    const GOLDEN: &[(&str, &str, &str)] = &[
        (
            "base",
            "a85bf73736be69cc5ef1821575c988fc020ad749e13e9af4973e223521b1e210",
            "8f87393edc3b9e9665e9d16017d1d1e2e53e5de5c7f34bbdb02a14abe10736fe",
        ),
        (
            "compose-host",
            "675e038db3aae77d1fe92b67b327b266bca08684a0247dbde57aaf2ded5a082b",
            "5aeb12210ace80bd849c484114be360a60c92553fbbf716301fa71cb7cf3bec2",
        ),
        (
            "hardened",
            "c4ca157de1bf8000fee0e9c40b83e1128fed8dd5e44a8dc7b369512937e70bdb",
            "5dbe69c2d0a217926dd6f649ebbdaeb3ee6e557c2f91754640adbeea84dc427e",
        ),
        (
            "production",
            "38d1871366334f1154c1a63b9a5e48cad7f1d348548cd6e98814394c595a419e",
            "cc8c9fd70b4246845d890dbe13e7f0f3dbbabe09677c46a8d696afeb3c3eb738",
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
            "3e058f23dfbe4703863b2bef56abb07f80ceaf34c1c852bce59099635bba342d",
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
            let paths: Vec<String> = apply(&r, &plan)
                .unwrap()
                .into_iter()
                .map(|(p, _)| p)
                .collect();
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
