//! Scrub stage: remove everything node-specific or build-specific from the tree, so every
//! node gets its own identity on first boot and the image carries no host data.

use crate::error::Result;
use crate::support::rootfs::Rootfs;

/// What was removed, for the build log and manifest.
#[derive(Debug, Default, Clone)]
pub struct Scrubbed {
    /// Removed or emptied paths.
    pub removed: Vec<String>,
}

/// History files removed from /root and /home/* (the audit checks the same names).
pub const HISTORY: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".python_history",
    ".lesshst",
    ".viminfo",
    ".mysql_history",
    ".psql_history",
    ".wget-hsts",
];

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
    for d in ["/tmp", "/var/tmp"] {
        root.clear_dir(d)?;
    }
    Ok(s)
}
