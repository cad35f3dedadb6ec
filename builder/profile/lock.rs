//! Lock files (`profiles/PROFILE.lock`): every installed package with its exact version and
//! the sha256 of its .deb (from the archive's signed index), the keyring digest and the
//! build's SOURCE_DATE_EPOCH. Also the .deb store: downloaded packages kept in the cache by
//! sha256, so a rebuild from a lock needs no network.

use crate::error::{Context, Error, Result};
use crate::support::dpkg::Package;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Lock file format version.
pub const LOCK_VERSION: u32 = 1;

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// sha256 of the .deb as listed in the archive's signed index.
    pub sha256: String,
}

/// One pinned container image (filled in by the container images stage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedContainer {
    /// Name in the profile's image catalog.
    pub name: String,
    /// Image reference.
    pub reference: String,
    /// Manifest digest (`sha256:...`).
    pub digest: String,
}

/// The lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Format version.
    pub lock_version: u32,
    /// Profile it was made for.
    pub profile: String,
    /// Ubuntu suite.
    pub suite: String,
    /// sha256 of the archive keyring that verified the index.
    pub keyring_sha256: String,
    /// Every timestamp in the image (the archive index's `Date`).
    pub source_date_epoch: u64,
    /// Container image digests; written by the container images stage, empty until then.
    #[serde(default)]
    pub containers: Vec<LockedContainer>,
    /// Every installed package, sorted by name.
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// Lock file path for a profile file (`profiles/NAME.toml` -> `profiles/NAME.lock`).
pub fn path_for(profile_file: &Path) -> PathBuf {
    profile_file.with_extension("lock")
}

impl Lock {
    /// Read a lock file; `None` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<Lock>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::config(format!("{}: {e}", path.display()))),
        };
        let lock: Lock = toml::from_str(&text).map_err(|e| {
            Error::config(format!(
                "{}: {e}\nfix: regenerate it with `clawimg lock PROFILE --update`",
                path.display()
            ))
        })?;
        if lock.lock_version != LOCK_VERSION {
            return Err(Error::config(format!(
                "{}: key `lock_version`: {} is not supported (expected {LOCK_VERSION}); run `clawimg lock {} --update`",
                path.display(),
                lock.lock_version,
                lock.profile
            )));
        }
        Ok(Some(lock))
    }

    /// Write atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let body =
            toml::to_string(self).map_err(|e| Error::failed(format!("serialize lock: {e}")))?;
        let text = format!(
            "# Written by `clawimg lock {}`; do not edit. Refresh with `clawimg lock {} --update`.\n{body}",
            self.profile, self.profile
        );
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, text).ctx(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).ctx(|| format!("rename {}", path.display()))?;
        Ok(())
    }

    /// apt preferences pinning every locked version (priority above any archive's).
    pub fn apt_preferences(&self) -> String {
        let mut s = String::new();
        for p in &self.packages {
            s.push_str(&format!(
                "Package: {}\nPin: version {}\nPin-Priority: 1001\n\n",
                p.name, p.version
            ));
        }
        s
    }

    /// Check the profile against the lock before building.
    pub fn check_matches(
        &self,
        path: &Path,
        suite: &str,
        keyring_sha256: &str,
        requested: &[String],
    ) -> Result<()> {
        let stale = |what: String| {
            Error::config(format!(
                "{}: {what}; the lock is stale: refresh it with `clawimg lock {} --update`",
                path.display(),
                self.profile
            ))
        };
        if self.suite != suite {
            return Err(stale(format!(
                "key `suite` is {:?}, the profile says {suite:?}",
                self.suite
            )));
        }
        if !self.keyring_sha256.eq_ignore_ascii_case(keyring_sha256) {
            return Err(stale(
                "key `keyring_sha256` differs from the profile's keyring pin".to_string(),
            ));
        }
        for r in requested {
            let name = r.split(['=', ':']).next().unwrap_or(r);
            if !self.packages.iter().any(|p| p.name == name) {
                return Err(stale(format!(
                    "profile package `{name}` is not in the lock"
                )));
            }
        }
        Ok(())
    }

    /// Check the installed packages against the lock (exact set, versions, .deb digests).
    pub fn verify(&self, path: &Path, installed: &[Resolved], cache_debs: &Path) -> Result<()> {
        let want: BTreeMap<&str, &LockedPackage> =
            self.packages.iter().map(|p| (p.name.as_str(), p)).collect();
        let got: BTreeMap<&str, &Resolved> =
            installed.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut problems = vec![];
        for (name, l) in &want {
            match got.get(name) {
                None => problems.push(format!("  {name} {} is locked but was not installed", l.version)),
                Some(r) if r.version != l.version => problems.push(format!(
                    "  {name}: locked version {} is no longer served by the archive and is not in the cache ({}); the archive gave {}",
                    l.version,
                    cache_debs.display(),
                    r.version
                )),
                Some(r) if !r.sha256.eq_ignore_ascii_case(&l.sha256) => problems.push(format!(
                    "  {name} {}: .deb sha256 {} differs from the locked {}",
                    l.version, r.sha256, l.sha256
                )),
                _ => {}
            }
        }
        for name in got.keys() {
            if !want.contains_key(name) {
                problems.push(format!("  {name} was installed but is not in the lock"));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::failed(format!(
            "the installed packages do not match {}:\n{}\nfix: `clawimg lock {} --update` re-resolves against the archive \
             (review the changes it prints), then build again",
            path.display(),
            problems.join("\n"),
            self.profile
        )))
    }
}

/// An installed package with the sha256 of the .deb it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// sha256 of the .deb (from the index apt verified).
    pub sha256: String,
}

impl From<&Resolved> for LockedPackage {
    fn from(r: &Resolved) -> Self {
        LockedPackage {
            name: r.name.clone(),
            version: r.version.clone(),
            arch: r.arch.clone(),
            sha256: r.sha256.to_lowercase(),
        }
    }
}

/// Parse `apt-cache show` / Packages stanzas into (name, version, arch) -> (sha256, stanza).
/// Only records for which `keep(name, version, arch)` holds are kept.
pub fn parse_index(
    text: &str,
    keep: impl Fn(&str, &str, &str) -> bool,
) -> BTreeMap<(String, String, String), (String, String)> {
    let mut m = BTreeMap::new();
    for para in text.split("\n\n") {
        let field = |k: &str| {
            para.lines().find_map(|l| {
                l.strip_prefix(k)
                    .and_then(|v| v.strip_prefix(": "))
                    .map(str::trim)
            })
        };
        if let (Some(n), Some(v), Some(a)) =
            (field("Package"), field("Version"), field("Architecture"))
        {
            if !keep(n, v, a) {
                continue;
            }
            if let Some(s) = field("SHA256") {
                m.insert(
                    (n.to_string(), v.to_string(), a.to_string()),
                    (s.to_lowercase(), para.trim_matches('\n').to_string()),
                );
            }
        }
    }
    m
}

/// What a base run exported: the .debs apt downloaded, the index records of the installed
/// packages, the archive index date and the sources list.
pub struct Export {
    /// Directory the mmdebstrap hook wrote to.
    pub dir: PathBuf,
}

impl Export {
    /// mmdebstrap options that fill the export directory from inside the run.
    pub fn mmdebstrap_args(&self) -> Vec<String> {
        let d = shell_quote(&self.dir.display().to_string());
        vec![
            "--skip=essential/unlink".to_string(),
            format!(
                "--customize-hook=mkdir -p {d}/debs && \
                 find \"$1\"/var/cache/apt/archives -maxdepth 1 -name '*.deb' -exec cp {{}} {d}/debs/ \\; && \
                 cat \"$1\"/var/lib/apt/lists/*_Packages > {d}/index && \
                 (date -u -d \"$(sed -n 's/^Date: //p' \"$1\"/var/lib/apt/lists/*Release 2>/dev/null | sort | tail -n 1)\" +%s > {d}/date || true) && \
                 cp \"$1\"/etc/apt/sources.list {d}/sources.list"
            ),
        ]
    }

    /// Index date of the archive (seconds), if the hook found one.
    pub fn index_date(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("date"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Resolve installed packages to .deb digests and move the downloaded .debs into the
    /// store (checked against the index digests).
    pub fn import(&self, installed: &[Package], store: &Path) -> Result<Vec<Resolved>> {
        let text = std::fs::read_to_string(self.dir.join("index"))
            .ctx(|| "read exported package index".into())?;
        let wanted: std::collections::BTreeSet<(&str, &str, &str)> = installed
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.arch.as_str()))
            .collect();
        let index = parse_index(&text, |n, v, a| wanted.contains(&(n, v, a)));
        let mut by_sha: BTreeMap<String, String> = BTreeMap::new();
        let mut out = vec![];
        for p in installed {
            let k = (p.name.clone(), p.version.clone(), p.arch.clone());
            let (sha, stanza) = index.get(&k).ok_or_else(|| {
                Error::failed(format!(
                    "package {} {} ({}) is installed but not in the archive index",
                    p.name, p.version, p.arch
                ))
            })?;
            by_sha.insert(sha.clone(), stanza.clone());
            out.push(Resolved {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                sha256: sha.clone(),
            });
        }
        if let Some(text) = std::fs::read_to_string(self.dir.join("sources.list"))
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            atomic_write(&store.join("sources.list"), text.as_bytes())?;
        }
        let Ok(rd) = std::fs::read_dir(self.dir.join("debs")) else {
            return Ok(out);
        };
        for ent in rd.flatten() {
            let sha = crate::support::digest::sha256_file(&ent.path())?;
            if let Some(stanza) = by_sha.get(&sha) {
                let dst = store.join(format!("{sha}.deb"));
                if !dst.exists() {
                    let tmp = store.join(format!(".tmp-{}-{sha}.deb", std::process::id()));
                    std::fs::copy(ent.path(), &tmp)
                        .ctx(|| format!("store {}", ent.path().display()))?;
                    std::fs::rename(&tmp, &dst).ctx(|| format!("store {}", dst.display()))?;
                }
                atomic_write(&store.join(format!("{sha}.stanza")), stanza.as_bytes())?;
            }
        }
        Ok(out)
    }
}

fn atomic_write(p: &Path, data: &[u8]) -> Result<()> {
    let tmp = p.with_file_name(format!(
        ".tmp-{}-{}",
        std::process::id(),
        p.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, data).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, p).ctx(|| format!("write {}", p.display()))
}

/// Single-quote for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Whether every locked .deb (and the sources list) is in the store.
pub fn all_cached(lock: &Lock, store: &Path) -> bool {
    store.join("sources.list").is_file()
        && lock.packages.iter().all(|p| {
            store.join(format!("{}.deb", p.sha256)).is_file()
                && store.join(format!("{}.stanza", p.sha256)).is_file()
        })
}

/// A local archive holding exactly the locked .debs (hard links into the store), with a
/// Release file naming the suite so mmdebstrap's essential/priority selection works.
/// Returns the sources line for mmdebstrap. Each .deb is checked against its sha256.
pub fn local_repo(lock: &Lock, store: &Path, dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let mut packages = String::new();
    for p in &lock.packages {
        let deb = store.join(format!("{}.deb", p.sha256));
        let got = crate::support::digest::sha256_file(&deb)?;
        if got != p.sha256 {
            let _ = std::fs::remove_file(&deb);
            return Err(Error::failed(format!(
                "cached {} has sha256 {got}, expected {} ({} {}); removed it, build again to re-download",
                deb.display(),
                p.sha256,
                p.name,
                p.version
            )));
        }
        let name = format!("{}.deb", p.sha256);
        let _ = std::fs::remove_file(dir.join(&name));
        std::fs::hard_link(&deb, dir.join(&name))
            .or_else(|_| std::fs::copy(&deb, dir.join(&name)).map(|_| ()))
            .ctx(|| format!("link {}", deb.display()))?;
        let stanza = std::fs::read_to_string(store.join(format!("{}.stanza", p.sha256)))
            .ctx(|| "read stanza".into())?;
        for l in stanza.lines() {
            if l.starts_with("Filename: ") {
                packages.push_str(&format!("Filename: ./{name}\n"));
            } else {
                packages.push_str(l);
                packages.push('\n');
            }
        }
        packages.push('\n');
    }
    std::fs::write(dir.join("Packages"), &packages).ctx(|| "write Packages".into())?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(packages.as_bytes()));
    let release = format!(
        "Origin: clawimg-lock\nLabel: clawimg-lock\nSuite: {s}\nCodename: {s}\nArchitectures: amd64 all\nSHA256:\n {sha} {} Packages\n",
        packages.len(),
        s = lock.suite
    );
    std::fs::write(dir.join("Release"), release).ctx(|| "write Release".into())?;
    Ok(format!("deb [trusted=yes] copy://{} ./", dir.display()))
}

/// Human-readable changes between two locks (`name old -> new`, added, removed).
pub fn changes(old: Option<&Lock>, new: &Lock) -> Vec<String> {
    let o: BTreeMap<&str, &str> = old
        .map(|l| {
            l.packages
                .iter()
                .map(|p| (p.name.as_str(), p.version.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let n: BTreeMap<&str, &str> = new
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    let mut v = vec![];
    for (name, nv) in &n {
        match o.get(name) {
            None => v.push(format!("  + {name} {nv}")),
            Some(ov) if ov != nv => v.push(format!("  ~ {name} {ov} -> {nv}")),
            _ => {}
        }
    }
    for (name, ov) in &o {
        if !n.contains_key(name) {
            v.push(format!("  - {name} {ov}"));
        }
    }
    if let Some(old) = old {
        if old.source_date_epoch != new.source_date_epoch {
            v.push(format!(
                "  source_date_epoch {} -> {}",
                old.source_date_epoch, new.source_date_epoch
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(pkgs: &[(&str, &str)]) -> Lock {
        Lock {
            lock_version: 1,
            profile: "t".into(),
            suite: "noble".into(),
            keyring_sha256: "ab".into(),
            source_date_epoch: 1,
            containers: vec![],
            packages: pkgs
                .iter()
                .map(|(n, v)| LockedPackage {
                    name: n.to_string(),
                    version: v.to_string(),
                    arch: "amd64".into(),
                    sha256: "00".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn roundtrip_and_changes() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("t.lock");
        let a = lock(&[("a", "1"), ("b", "2")]);
        a.write(&p).unwrap();
        assert_eq!(Lock::read(&p).unwrap().unwrap(), a);
        let b = lock(&[("b", "3"), ("c", "1")]);
        assert_eq!(
            changes(Some(&a), &b),
            vec!["  ~ b 2 -> 3", "  + c 1", "  - a 1"]
        );
        assert!(a.check_matches(&p, "noble", "AB", &["a".into()]).is_ok());
        assert!(a.check_matches(&p, "noble", "AB", &["zz".into()]).is_err());
        let inst = vec![Resolved {
            name: "a".into(),
            version: "9".into(),
            arch: "amd64".into(),
            sha256: "00".into(),
        }];
        let e = a.verify(&p, &inst, t.path()).unwrap_err().to_string();
        assert!(
            e.contains("no longer served")
                && e.contains("lock t --update")
                && e.contains("b 2 is locked"),
            "{e}"
        );
    }

    #[test]
    fn index_parse() {
        let m = parse_index("Package: a\nVersion: 1\nArchitecture: all\nSHA256: AB\nFilename: pool/a.deb\n\nPackage: b\nVersion: 2\n", |_, _, _| true);
        assert_eq!(m.len(), 1);
        assert_eq!(m[&("a".into(), "1".into(), "all".into())].0, "ab");
    }
}
