//! What a node flashed from this image must look like beyond packages and files (the
//! manifest's `extra.verify`): the directories compared file by file, the paths that differ
//! per node by design, and the units the image enables. Built at build time, read by
//! `clawimg verify`.

use crate::image::files::FileEntry;
use crate::profile::Profile;
use crate::support::rootfs::Rootfs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// Directories whose files the image owns and `verify` hashes: the system's files, and
/// everything an intruder would touch to stay (README "What verify compares"). `*` stands
/// for one path component; the node adds `.ssh` and `.config/systemd` of every home in
/// its own /etc/passwd, and skips a directory reached through a symlink (merged /usr:
/// `/lib/systemd` is `/usr/lib/systemd`).
pub const SCOPE: &[&str] = &[
    "/etc",
    "/usr",
    "/opt",
    "/boot",
    "/boot/efi",
    "/root/.ssh",
    "/root/.config/systemd",
    "/home/*/.ssh",
    "/home/*/.config/systemd",
    "/lib/systemd",
    "/var/spool/cron",
    "/var/lib/clawimg/images",
];

/// The directories whose tmpfiles.d state is node-local: never the sensitive places
/// (`.ssh`, sudoers, units, cron, /boot), where a declared directory does not excuse its
/// contents.
const TMPFILES_SCOPE: &[&str] = &["/etc", "/usr", "/opt"];

/// Places where nothing is excused by a tmpfiles.d declaration.
fn sensitive(path: &str) -> bool {
    path.contains("/.ssh")
        || in_scope(
            path,
            &[
                "/etc/sudoers",
                "/etc/sudoers.d",
                "/etc/systemd",
                "/usr/lib/systemd",
                "/etc/cron.d",
                "/etc/crontab",
                "/etc/cron.hourly",
                "/etc/cron.daily",
                "/etc/cron.weekly",
                "/etc/cron.monthly",
                "/boot",
            ],
        )
}

/// Root's key file that systemd fills from the credential `ssh.authorized_keys.root`
/// (tmpfiles.d/provision.conf) on a node booted with one: `verify` skips it only while its
/// bytes equal that credential.
pub const CREDENTIAL_KEYS: &str = "/root/.ssh/authorized_keys";

/// A path (glob: `*` within one component, `**` across) that differs per node by design.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeLocal {
    /// Glob over absolute paths.
    pub path: String,
    /// Module that makes it node-specific.
    pub module: String,
    /// Why it differs.
    pub why: String,
}

/// What a node flashed from this image must look like, beyond packages and files
/// (manifest `extra.verify`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Expectations {
    /// Directories compared file by file.
    pub scope: Vec<String>,
    /// Paths skipped because they differ per node by design.
    pub node_local: Vec<NodeLocal>,
    /// Units the image enables (links in `/etc/systemd/system/*.wants|requires|upholds`).
    pub enabled_units: Vec<String>,
}

/// A node-local entry.
pub fn nl(path: &str, module: &str, why: &str) -> NodeLocal {
    NodeLocal {
        path: path.into(),
        module: module.into(),
        why: why.into(),
    }
}

/// Contents of the directories tmpfiles.d declares (`d`, `D`, `v`, `q`, `Q`) inside the
/// scope: state the node keeps there (backups, logs), not something the image ships.
pub fn tmpfiles_state(root: &Rootfs) -> Vec<NodeLocal> {
    let mut v = vec![];
    for dir in ["/usr/lib/tmpfiles.d", "/etc/tmpfiles.d"] {
        let Ok(names) = root.list(dir) else { continue };
        for name in names.iter().filter(|n| n.ends_with(".conf")) {
            let Ok(text) = root.read_to_string(&format!("{dir}/{name}")) else {
                continue;
            };
            for line in text.lines() {
                let mut f = line.split_whitespace();
                let (Some(ty), Some(path)) = (f.next(), f.next()) else {
                    continue;
                };
                let ty = ty.trim_end_matches(['!', '-', '+', '=', '~', '^']);
                if matches!(ty, "d" | "D" | "v" | "q" | "Q")
                    && in_scope(path, TMPFILES_SCOPE)
                    && !sensitive(path)
                    && !path.contains(['*', '?', '[', '%'])
                {
                    v.push(nl(
                        &format!("{}/**", path.trim_end_matches('/')),
                        "tmpfiles",
                        &format!("runtime state in a directory {dir}/{name} declares"),
                    ));
                }
            }
        }
    }
    v
}

/// The image's expectations, from the profile, the final tree and the node-local paths
/// each build module declares (`(module, [(glob, why)])`).
pub fn expectations(
    profile: &Profile,
    root: &Rootfs,
    files: &[FileEntry],
    declared: &[(&str, &[(&str, &str)])],
) -> Expectations {
    let mut node_local: Vec<NodeLocal> = tmpfiles_state(root);
    for (m, list) in declared {
        node_local.extend(list.iter().map(|(p, why)| nl(p, m, why)));
    }
    // Each slot's destination, and the directories the first-boot unit creates for it.
    let in_image: BTreeSet<&str> = files.iter().map(|e| e.path.as_str()).collect();
    let scope = scope_of(root);
    for (name, slot) in profile
        .secrets
        .iter()
        .filter(|(_, s)| in_scope(s.path(), &scope))
    {
        node_local.push(nl(
            slot.path(),
            "secrets",
            &format!("secret slot `{name}`, installed at first boot"),
        ));
        let mut dir = Path::new(slot.path()).parent();
        while let Some(d) = dir.and_then(|d| d.to_str()) {
            if d == "/" || in_image.contains(d) {
                break;
            }
            node_local.push(nl(
                d,
                "secrets",
                &format!("directory made for secret slot `{name}`"),
            ));
            dir = Path::new(d).parent();
        }
    }
    node_local.sort();
    node_local.dedup_by(|a, b| a.path == b.path);
    let enabled_units = files
        .iter()
        .filter(|e| e.kind == 'l')
        .filter_map(|e| enabled_link(&e.path))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Expectations {
        scope,
        node_local,
        enabled_units,
    }
}

/// The unit an enablement link names: `/etc/systemd/system/X.target.wants/U` gives `U`.
pub fn enabled_link(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/etc/systemd/system/")?;
    let (dir, unit) = rest.split_once('/')?;
    if unit.contains('/') {
        return None;
    }
    [".wants", ".requires", ".upholds"]
        .iter()
        .any(|s| dir.ends_with(s))
        .then(|| unit.to_string())
}

/// Whether `path` is one of `scope` or below one of them (`*` in a scope entry matches one
/// path component).
pub fn in_scope<S: AsRef<str>>(path: &str, scope: &[S]) -> bool {
    scope.iter().map(AsRef::as_ref).any(|s| {
        if !s.contains('*') {
            return path == s || path.strip_prefix(s).is_some_and(|r| r.starts_with('/'));
        }
        let mut p = path.split('/');
        s.split('/')
            .all(|c| p.next().is_some_and(|pc| c == "*" || c == pc))
    })
}

/// The scope of an image: [`SCOPE`] plus `.ssh` and `.config/systemd` of every home in the
/// image's /etc/passwd (system users' homes too: a key planted there is a way in).
pub fn scope_of(root: &Rootfs) -> Vec<String> {
    let mut v: Vec<String> = SCOPE.iter().map(|s| s.to_string()).collect();
    let passwd = root.read_to_string("/etc/passwd").unwrap_or_default();
    let homes: BTreeSet<&str> = passwd
        .lines()
        .filter_map(|l| l.split(':').nth(5))
        .map(|h| h.trim_end_matches('/'))
        .filter(|h| h.starts_with('/'))
        .collect();
    for h in homes {
        for sub in [".ssh", ".config/systemd"] {
            let d = format!("{h}/{sub}");
            if !v.contains(&d) && !in_scope(&d, SCOPE) {
                v.push(d);
            }
        }
    }
    v
}
