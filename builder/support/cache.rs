//! Content-addressed stage cache.
//!
//! Each stage's output lives in `CACHE/stages/STAGE-KEY/`, where KEY is the sha256 of
//! exactly the stage's inputs (for later stages: the previous stage's key plus their own
//! inputs). An entry is produced in a private temporary directory and renamed into place
//! when complete, under a per-key file lock, so two builds never half-read an entry and a
//! build killed at any point (SIGINT, SIGKILL) leaves only a temporary directory, which
//! the next run removes. Builds hold the cache's shared lock; `cache gc` takes it
//! exclusively. A second backend (object storage) would implement the same
//! lookup/produce pair over keys.
//!
//! The package store (`debs/` and the base stage's entries, which depend only on the
//! package set) may live elsewhere: with `CLAWIMG_PACKAGE_STORE=DIR`, several cache
//! directories share one store (the integration tests do), while the image entries, the
//! work directories and the container blobs stay in each cache directory. The store must
//! be on the same filesystem as the cache directories (trees are hard-linked from it).

use crate::error::{Context, Error, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Marker file written last into an entry before it is renamed into place.
const COMPLETE: &str = ".complete";
/// Touched on every hit; `gc` keeps the most recently used entries.
const USED: &str = ".used";

/// Environment variable naming a package store shared by several cache directories.
pub const STORE_ENV: &str = "CLAWIMG_PACKAGE_STORE";

/// Stages whose entries live in the package store.
const STORE_STAGES: &[&str] = &["base"];

/// A held `flock`; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    fn take(path: &Path, exclusive: bool, wait: bool) -> Result<Option<FileLock>> {
        let f = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .ctx(|| format!("open lock {}", path.display()))?;
        let mut op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        if !wait {
            op |= libc::LOCK_NB;
        }
        loop {
            // SAFETY: flock on a valid open fd.
            let rc = unsafe { libc::flock(f.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Some(FileLock(f)));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if !wait => return Ok(None),
                _ => return Err(Error::failed(format!("lock {}: {e}", path.display()))),
            }
        }
    }
}

/// Hash builder for stage keys: every input is length-prefixed, so fields cannot run together.
#[derive(Clone)]
pub struct KeyHasher(Sha256);

impl KeyHasher {
    /// Start a key for `stage` (the name is part of the key).
    pub fn new(stage: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"clawimg-stage-v1\0");
        let mut k = KeyHasher(h);
        k.add(stage);
        k
    }
    /// Add one input.
    pub fn add(&mut self, part: impl AsRef<[u8]>) -> &mut Self {
        let b = part.as_ref();
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
        self
    }
    /// The key, hex.
    pub fn finish(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }
}

/// One entry as `cache du` shows it.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    /// `STAGE-KEY`.
    pub name: String,
    /// Stage name.
    pub stage: String,
    /// Bytes on disk (allocated blocks, hardlinks counted once per entry).
    pub bytes: u64,
    /// Last use.
    pub used: SystemTime,
    /// Where it is (in the cache directory or the store).
    pub path: PathBuf,
}

/// The cache rooted at a directory; holds the shared lock while alive.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    /// Where `debs/` and the [`STORE_STAGES`] entries live: `root` unless [`STORE_ENV`] is set.
    store: PathBuf,
    _locks: Vec<FileLock>,
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl Cache {
    /// Open (creating) the cache for a build: takes the shared lock, removes temporary
    /// directories of dead processes. The package store is `$CLAWIMG_PACKAGE_STORE` when
    /// set, else `root` itself.
    pub fn open(root: &Path) -> Result<Cache> {
        Self::open_with(root, store_from_env(root), false)
    }

    /// Open for maintenance (gc): waits for running builds to finish.
    pub fn open_exclusive(root: &Path) -> Result<Cache> {
        Self::open_with(root, store_from_env(root), true)
    }

    /// Open `root` with its package store at `store` (may be `root`).
    pub fn open_with(root: &Path, store: PathBuf, exclusive: bool) -> Result<Cache> {
        let mut dirs = vec![root.to_path_buf()];
        if store != root {
            dirs.push(store.clone());
        }
        let mut locks = vec![];
        for dir in &dirs {
            for d in ["stages", "locks", "debs"] {
                std::fs::create_dir_all(dir.join(d))
                    .ctx(|| format!("create {}", dir.join(d).display()))?;
            }
            let lock_path = dir.join("locks/cache.lock");
            let lock = match FileLock::take(&lock_path, exclusive, false)? {
                Some(l) => l,
                None => {
                    if exclusive {
                        eprintln!(
                            "cache: waiting for running builds to release {}",
                            dir.display()
                        );
                    }
                    FileLock::take(&lock_path, exclusive, true)?
                        .ok_or_else(|| Error::failed("cache lock".to_string()))?
                }
            };
            locks.push(lock);
        }
        let c = Cache {
            root: root.to_path_buf(),
            store,
            _locks: locks,
        };
        c.clean_temporaries();
        Ok(c)
    }

    /// Cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The package store (`debs/` and the base stage's entries).
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// Directory of downloaded .debs (`SHA256.deb`).
    pub fn debs(&self) -> PathBuf {
        self.store.join("debs")
    }

    /// The cache directory and, when elsewhere, the store.
    fn dirs(&self) -> Vec<&Path> {
        if self.store == self.root {
            vec![&self.root]
        } else {
            vec![&self.root, &self.store]
        }
    }

    /// The directory holding `stage`'s entries and locks.
    fn home(&self, stage: &str) -> &Path {
        if STORE_STAGES.contains(&stage) {
            &self.store
        } else {
            &self.root
        }
    }

    fn clean_temporaries(&self) {
        for sub in self
            .dirs()
            .into_iter()
            .flat_map(|d| [d.join("stages"), d.join("debs")])
        {
            let Ok(rd) = std::fs::read_dir(&sub) else {
                continue;
            };
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(".tmp-") else {
                    continue;
                };
                let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !pid_alive(p)) {
                    let p = ent.path();
                    if p.is_dir() {
                        let _ = std::fs::remove_dir_all(&p);
                    } else {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
    }

    fn entry(&self, stage: &str, key: &str) -> PathBuf {
        self.home(stage)
            .join("stages")
            .join(format!("{stage}-{key}"))
    }

    /// The complete entry for `stage`/`key`, if present (marks it used).
    pub fn lookup(&self, stage: &str, key: &str) -> Option<PathBuf> {
        let e = self.entry(stage, key);
        if e.join(COMPLETE).is_file() {
            let _ = std::fs::write(e.join(USED), b"");
            Some(e)
        } else {
            None
        }
    }

    /// A temporary path inside the cache (same filesystem as the entries, for renames);
    /// removed by the next `open` if this process dies.
    pub fn temp_path(&self, sub: &str, what: &str) -> PathBuf {
        self.root
            .join(sub)
            .join(format!(".tmp-{}-{what}", std::process::id()))
    }

    /// Return the entry for `stage`/`key`, producing it with `make(dir)` if absent.
    /// `make` fills a fresh temporary directory; on success it is renamed into place.
    /// The bool is true on a hit.
    pub fn get_or_make(
        &self,
        stage: &str,
        key: &str,
        make: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<(PathBuf, bool)> {
        if let Some(e) = self.lookup(stage, key) {
            return Ok((e, true));
        }
        let home = self.home(stage);
        let _lock = FileLock::take(
            &home.join("locks").join(format!("{stage}-{key}.lock")),
            true,
            true,
        )?;
        // Another build may have produced it while we waited.
        if let Some(e) = self.lookup(stage, key) {
            return Ok((e, true));
        }
        // Next to the entry, so the rename is atomic.
        let tmp = home.join("stages").join(format!(
            ".tmp-{}-{stage}-{}",
            std::process::id(),
            &key[..16.min(key.len())]
        ));
        remove_any(&tmp);
        std::fs::create_dir_all(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        let res = make(&tmp);
        if let Err(e) = res {
            remove_any(&tmp);
            return Err(e);
        }
        std::fs::write(tmp.join(COMPLETE), format!("{stage}\n{key}\n"))
            .ctx(|| "write cache marker".into())?;
        std::fs::write(tmp.join(USED), b"").ctx(|| "write cache marker".into())?;
        sync_path(&tmp);
        let dst = self.entry(stage, key);
        remove_any(&dst); // an incomplete leftover (no marker) from an older layout
        std::fs::rename(&tmp, &dst).ctx(|| format!("rename into {}", dst.display()))?;
        sync_path(&home.join("stages"));
        Ok((dst, false))
    }

    /// All complete entries (of the cache directory and the store), newest use first.
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        let mut v = vec![];
        for dir in self.dirs() {
            self.entries_in(&dir.join("stages"), &mut v)?;
        }
        v.sort_by(|a, b| b.used.cmp(&a.used).then(a.name.cmp(&b.name)));
        Ok(v)
    }

    fn entries_in(&self, dir: &Path, v: &mut Vec<EntryInfo>) -> Result<()> {
        for ent in std::fs::read_dir(dir)
            .ctx(|| format!("list {}", dir.display()))?
            .flatten()
        {
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !ent.path().join(COMPLETE).is_file() {
                continue;
            }
            let used = std::fs::metadata(ent.path().join(USED))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let stage = name
                .rsplit_once('-')
                .map(|(s, _)| s.to_string())
                .unwrap_or_default();
            v.push(EntryInfo {
                bytes: disk_usage(&ent.path()),
                path: ent.path(),
                name,
                stage,
                used,
            });
        }
        Ok(())
    }

    /// Bytes used by cached .debs.
    pub fn debs_bytes(&self) -> u64 {
        disk_usage(&self.debs())
    }

    /// Keep the `keep` most recently used entries of each stage, remove the rest
    /// (and incomplete leftovers). Returns the removed entries.
    pub fn gc(&self, keep: usize) -> Result<Vec<EntryInfo>> {
        let mut removed = vec![];
        let mut per_stage: std::collections::BTreeMap<String, usize> = Default::default();
        for e in self.entries()? {
            let n = per_stage.entry(e.stage.clone()).or_default();
            *n += 1;
            if *n > keep {
                // Rename first so a concurrent reader never sees a half-deleted entry.
                let src = &e.path;
                let home = src.parent().and_then(Path::parent).unwrap_or(&self.root);
                let tmp =
                    home.join("stages")
                        .join(format!(".tmp-{}-gc-{}", std::process::id(), e.name));
                std::fs::rename(src, &tmp).ctx(|| format!("remove {}", src.display()))?;
                remove_any(&tmp);
                let _ = std::fs::remove_file(home.join("locks").join(format!("{}.lock", e.name)));
                removed.push(e);
            }
        }
        for dir in self.dirs() {
            let dir = dir.join("stages");
            for ent in std::fs::read_dir(&dir)
                .ctx(|| format!("list {}", dir.display()))?
                .flatten()
            {
                let n = ent.file_name().to_string_lossy().into_owned();
                if !n.starts_with('.') && !ent.path().join(COMPLETE).is_file() {
                    remove_any(&ent.path());
                }
            }
        }
        Ok(removed)
    }
}

/// The package store for `root`: `$CLAWIMG_PACKAGE_STORE` when set (and not empty), else
/// `root`.
fn store_from_env(root: &Path) -> PathBuf {
    std::env::var_os(STORE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root.to_path_buf())
}

/// Detach every mount below `p` (deepest first): a SIGKILLed mmdebstrap leaves its
/// /proc, /sys and /dev mounts in the tree, and deleting must never descend into them.
fn unmount_below(p: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", p.display());
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        if let Ok(c) = std::ffi::CString::new(m) {
            // SAFETY: valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(((b[i + 1] - b'0') << 6) | ((b[i + 2] - b'0') << 3) | (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn remove_any(p: &Path) {
    unmount_below(p);
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

fn sync_path(p: &Path) {
    if let Ok(f) = File::open(p) {
        let _ = f.sync_all();
    }
}

/// Allocated bytes under `p` (no symlink following; each inode counted once).
pub fn disk_usage(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if seen.insert((md.dev(), md.ino())) {
            total += md.blocks() * 512;
        }
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_hit_and_failed_make_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(t.path()).unwrap();
        let r = c
            .get_or_make("s", "k1", |_| Err(Error::failed("boom")))
            .map(|_| ());
        assert!(r.is_err());
        assert!(c.lookup("s", "k1").is_none());
        let (p, hit) = c
            .get_or_make("s", "k1", |d| Ok(std::fs::write(d.join("x"), "1")?))
            .unwrap();
        assert!(!hit);
        assert_eq!(std::fs::read_to_string(p.join("x")).unwrap(), "1");
        let (_, hit) = c
            .get_or_make("s", "k1", |_| panic!("must not run"))
            .unwrap();
        assert!(hit);
        // A dead process's temporary dir is cleaned on open; an entry without marker is not a hit.
        std::fs::create_dir_all(t.path().join("stages/.tmp-999999999-s-x")).unwrap();
        std::fs::create_dir_all(t.path().join("stages/s-k2")).unwrap();
        drop(c);
        let c = Cache::open(t.path()).unwrap();
        assert!(!t.path().join("stages/.tmp-999999999-s-x").exists());
        assert!(c.lookup("s", "k2").is_none());
        c.get_or_make("s", "k3", |_| Ok(())).unwrap();
        drop(c);
        let c = Cache::open_exclusive(t.path()).unwrap();
        let gone = c.gc(1).unwrap();
        assert_eq!(gone.len(), 1);
        assert!(!t.path().join("stages/s-k2").exists());
        assert_eq!(c.entries().unwrap().len(), 1);
    }

    #[test]
    fn store_holds_debs_and_base_entries_and_is_shared() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, store) = (t.path().join("a"), t.path().join("b"), t.path().join("s"));
        let ca = Cache::open_with(&a, store.clone(), false).unwrap();
        let cb = Cache::open_with(&b, store.clone(), false).unwrap();
        assert_eq!(ca.debs(), store.join("debs"));
        let (base, hit) = ca
            .get_or_make("base", "k", |d| Ok(std::fs::write(d.join("x"), "1")?))
            .unwrap();
        assert!(!hit && base.starts_with(&store), "{}", base.display());
        // The other cache directory finds the base entry in the store ...
        let (again, hit) = cb.get_or_make("base", "k", |_| panic!("must hit")).unwrap();
        assert!(hit && again == base);
        // ... but not the first one's image entries.
        let (img, _) = ca.get_or_make("image", "k", |_| Ok(())).unwrap();
        assert!(img.starts_with(&a), "{}", img.display());
        assert!(cb.lookup("image", "k").is_none());
        assert_eq!(ca.entries().unwrap().len(), 2);
        drop((ca, cb));
        let c = Cache::open_with(&a, store.clone(), true).unwrap();
        assert_eq!(c.gc(0).unwrap().len(), 2);
        assert!(!base.exists() && !img.exists());
    }

    #[test]
    fn keys_are_length_prefixed() {
        let a = KeyHasher::new("s").add("ab").add("c").finish();
        let b = KeyHasher::new("s").add("a").add("bc").finish();
        assert_ne!(a, b);
    }
}
