//! Scrub stage: remove everything node-specific or build-specific from the tree, so every
//! node gets its own identity on first boot and the image carries no host data.

use crate::error::{Error, Result};
use crate::image::audit::HISTORY;
use crate::support::rootfs::Rootfs;
use cap_std::fs::Dir;
use std::path::Path;

/// What was removed, for the build log and manifest.
#[derive(Debug, Default, Clone)]
pub struct Scrubbed {
    /// Removed or emptied paths.
    pub removed: Vec<String>,
    /// Files left in place but emptied, with why (for `--explain`).
    pub emptied: Vec<(String, String)>,
}

fn remove_logs(root: &Rootfs, dir: &str, removed: &mut Vec<String>) -> Result<()> {
    for name in root.list(dir)? {
        let p = format!("{dir}/{name}");
        if root.is_dir(&p) {
            remove_logs(root, &p, removed)?;
        } else if root.file_len(&p).is_some_and(|n| n > 0) {
            root.remove_file(&p)?;
            removed.push(p);
        }
    }
    Ok(())
}

/// Paths the scrub leaves for each node to create (for `clawimg verify`).
pub const NODE_LOCAL: &[(&str, &str)] = &[(
    "/etc/machine-id",
    "emptied in the image; systemd writes the node's own on first boot",
)];

/// Run the scrub.
pub fn run(root: &Rootfs) -> Result<Scrubbed> {
    let mut s = Scrubbed::default();
    // Empty machine-id: systemd's first-boot semantics generate a fresh one per node.
    root.write("/etc/machine-id", b"", 0o444)?;
    s.removed.push("/etc/machine-id (emptied)".into());
    s.emptied.push((
        "/etc/machine-id".into(),
        "module scrub (emptied: systemd writes the node's own on first boot)".into(),
    ));
    root.remove_file("/var/lib/dbus/machine-id")?;
    s.removed
        .extend(root.remove_matching("/etc/ssh", |n| n.starts_with("ssh_host_"))?);
    for p in [
        "/var/lib/systemd/random-seed",
        "/var/lib/systemd/credential.secret",
        "/var/cache/ldconfig/aux-cache",
    ] {
        if root.exists(p) {
            root.remove_file(p)?;
            s.removed.push(p.into());
        }
    }
    s.removed
        .extend(root.remove_matching("/var/lib/apt/lists", |n| n != "partial" && n != "lock")?);
    s.removed
        .extend(root.remove_matching("/var/cache/apt", |n| n.ends_with(".bin"))?);
    s.removed
        .extend(root.remove_matching("/var/cache/apt/archives", |n| n.ends_with(".deb"))?);
    s.removed
        .extend(root.remove_matching("/var/lib/dhcp", |n| n.ends_with(".leases"))?);
    s.removed
        .extend(root.remove_matching("/var/lib/dhclient", |n| n.contains("lease"))?);
    // Shell and tool histories of root and every home directory.
    let mut homes = vec!["/root".to_string()];
    homes.extend(
        root.list("/home")?
            .into_iter()
            .map(|h| format!("/home/{h}"))
            .filter(|h| root.is_dir(h)),
    );
    for h in homes {
        s.removed
            .extend(root.remove_matching(&h, |n| HISTORY.contains(&n))?);
    }
    s.removed.extend(root.remove_matching("/var/log", |n| {
        // Keep the directories and the tiny README; drop logs written during the build.
        n.ends_with(".log")
            || n == "journal"
            || n == "wtmp"
            || n == "btmp"
            || n == "lastlog"
            || n == "faillog"
    })?);
    s.removed.extend(root.remove_matching("/var/log/apt", |n| {
        n.ends_with(".log") || n.ends_with(".gz")
    })?);
    s.removed.extend(root.remove_matching("/var/log/apt", |n| {
        n.ends_with(".log") || n.ends_with(".gz")
    })?);
    // Whatever else the build logged, in any subdirectory (directories and links stay).
    remove_logs(root, "/var/log", &mut s.removed)?;
    root.mkdir_all("/var/log/journal")?;
    s.emptied.push((
        "/var/log/journal".into(),
        "module scrub (emptied: the node's journal starts empty)".into(),
    ));
    for d in ["/tmp", "/var/tmp"] {
        root.clear_dir(d)?;
        s.emptied
            .push((d.into(), "module scrub (emptied of build leftovers)".into()));
    }
    Ok(s)
}

/// Build-time caches and build-host leftovers; the node rebuilds caches when needed.
const CACHE_FILES: &[&str] = &[
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "etc/resolv.conf.mmdebstrap",
    // systemd-resolved's postinst backs up the build host's resolv.conf here.
    "etc/.resolv.conf.systemd-resolved.bak",
];
const CACHE_DIRS: &[&str] = &["var/cache/man"];

fn remove_pycache(dir: &Dir, rel: &Path, out: &mut Vec<String>, depth: u32) -> Result<()> {
    if depth > 64 {
        return Ok(());
    }
    let mut names: Vec<(String, bool)> = vec![];
    for ent in dir
        .entries()
        .map_err(|e| Error::failed(format!("list /{}: {e}", rel.display())))?
    {
        let ent = ent.map_err(|e| Error::failed(format!("list /{}: {e}", rel.display())))?;
        let is_dir = ent.file_type().map(|t| t.is_dir()).unwrap_or(false);
        names.push((ent.file_name().to_string_lossy().into_owned(), is_dir));
    }
    names.sort();
    for (name, is_dir) in names {
        if !is_dir {
            continue;
        }
        if name == "__pycache__" {
            dir.remove_dir_all(&name)
                .map_err(|e| Error::failed(format!("remove /{}/{name}: {e}", rel.display())))?;
            out.push(format!("/{}/{name}", rel.display()));
        } else if let Ok(sub) = dir.open_dir(&name) {
            remove_pycache(&sub, &rel.join(&name), out, depth + 1)?;
        }
    }
    Ok(())
}

/// Remove caches written during the build (ldconfig aux cache, man-db, dpkg/debconf
/// backups, `__pycache__`); returns what was removed, sorted.
pub fn scrub_caches(root: &Rootfs) -> Result<Vec<String>> {
    let mut out = vec![];
    for f in CACHE_FILES {
        if root.exists(f) {
            root.remove_file(f)?;
            out.push(format!("/{f}"));
        }
    }
    for d in CACHE_DIRS {
        if root.exists(d) {
            root.clear_dir(d)?;
            out.push(format!("/{d}/*"));
        }
    }
    for top in ["usr", "etc", "var", "opt"] {
        if let Ok(sub) = root.cap_dir().open_dir(top) {
            remove_pycache(&sub, Path::new(top), &mut out, 0)?;
        }
    }
    out.sort();
    Ok(out)
}

/// Caches removed from the image that a node rebuilds (for `clawimg verify`).
pub const CACHES_NODE_LOCAL: &[(&str, &str)] = &[
    (
        "/usr/**/__pycache__",
        "Python byte code, removed at build, rebuilt on the node",
    ),
    (
        "/usr/**/__pycache__/**",
        "Python byte code, removed at build, rebuilt on the node",
    ),
];
