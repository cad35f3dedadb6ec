//! The image stage of the cache: the finished outputs (raw, qcow2, manifest, file list),
//! stored under a key over the base stage's key and every other input, and re-linked into
//! a new output directory on a hit after checking their digests.

use crate::error::{Context, Error, Result};
use crate::image::manifest::Manifest;
use crate::support::cache::{Cache, KeyHasher};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files of an output directory that the cache keeps.
pub const FILES: &[&str] = &[
    "manifest.json",
    "SHA256SUMS",
    crate::image::files::FILE_LIST,
];

/// Key of the image stage: the base key plus the input hash, SOURCE_DATE_EPOCH, the
/// clawimg binary itself and the versions of the assembly tools.
pub fn image_key(base_key: &str, input_hash: &str, sde: u64) -> Result<String> {
    let mut k = KeyHasher::new("image");
    k.add(base_key).add(input_hash).add(sde.to_string());
    let exe = std::env::current_exe().ctx(|| "locate clawimg binary".into())?;
    k.add(crate::support::digest::sha256_file(&exe)?);
    for t in crate::support::tools::BUILD.iter().skip(1) {
        k.add(t.name).add(crate::support::tools::version(t));
    }
    Ok(k.finish())
}

fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    let _ = std::fs::remove_file(dst);
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst).ctx(|| format!("copy {} to {}", src.display(), dst.display()))?;
    }
    Ok(())
}

fn names(m: &Manifest) -> Vec<String> {
    let mut v: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    v.extend(m.artifacts.iter().map(|a| a.file.clone()));
    v
}

/// On a hit, link the cached outputs into `dir` after checking each artifact: unchanged
/// since it was stored (inode, size, mtime), else size and sha256 against the cached
/// manifest; a damaged entry is an error naming it.
pub fn reuse(cache: &Cache, key: &str, dir: &Path) -> Result<Option<Manifest>> {
    let Some(entry) = cache.lookup("image", key) else {
        return Ok(None);
    };
    let m = Manifest::read(&entry.join("manifest.json"))?;
    // Files whose inode, size and mtime are those recorded when the entry was stored were
    // not written since (an in-place edit of an output, which shares the inode, changes its
    // mtime); anything else is re-hashed (in parallel) before it is handed out again.
    let unchanged = read_stamps(&entry).is_some_and(|st| {
        m.artifacts
            .iter()
            .all(|a| st.get(&a.file) == stamp(&entry.join(&a.file)).as_ref())
    });
    let ok: Vec<bool> = if unchanged {
        vec![true; m.artifacts.len()]
    } else {
        std::thread::scope(|sc| {
            let hs: Vec<_> = m
                .artifacts
                .iter()
                .map(|a| {
                    let p = entry.join(&a.file);
                    sc.spawn(move || {
                        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(u64::MAX);
                        len == a.bytes
                            && crate::support::digest::sha256_file(&p).is_ok_and(|h| h == a.sha256)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(false)).collect()
        })
    };
    if let Some(i) = ok.iter().position(|o| !o) {
        return Err(Error::failed(format!(
            "cache entry {} is damaged ({} changed); remove it (or run `clawimg cache gc --keep 0`) and build again",
            entry.display(),
            m.artifacts[i].file
        )));
    }
    for n in names(&m) {
        if entry.join(&n).exists() {
            link_or_copy(&entry.join(&n), &dir.join(&n))?;
        }
    }
    Ok(Some(m))
}

/// Store the outputs in `dir` (just written) as the image stage entry for `key`.
pub fn store(cache: &Cache, key: &str, dir: &Path, m: &Manifest) -> Result<()> {
    cache.get_or_make("image", key, |e| {
        for n in names(m) {
            if dir.join(&n).exists() {
                link_or_copy(&dir.join(&n), &e.join(&n))?;
            }
        }
        let stamps: BTreeMap<String, Stamp> = m
            .artifacts
            .iter()
            .filter_map(|a| stamp(&e.join(&a.file)).map(|s| (a.file.clone(), s)))
            .collect();
        let json = serde_json::to_vec(&stamps).map_err(|e| Error::failed(e.to_string()))?;
        std::fs::write(e.join(STAMPS), json).ctx(|| "write artifact stamps".into())
    })?;
    Ok(())
}

fn pointer(cache: &Cache, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache.root().join("previous").join(safe)
}

/// Note that the image entry `key` is the latest build of profile `name` (best effort: a
/// lost note only means the next build compresses every cluster).
pub fn remember(cache: &Cache, name: &str, key: &str) {
    let p = pointer(cache, name);
    if let Some(d) = p.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let tmp = p.with_extension(format!("tmp-{}", std::process::id()));
    if std::fs::write(&tmp, key).is_ok() && std::fs::rename(&tmp, &p).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The raw and qcow2 images of the latest build of profile `name`, if its cache entry is
/// still there and neither file was written since it was stored (the qcow2 writer takes
/// unchanged clusters' compressed bytes from them).
pub fn previous(cache: &Cache, name: &str) -> Option<(PathBuf, PathBuf)> {
    let key = std::fs::read_to_string(pointer(cache, name)).ok()?;
    let entry = cache.lookup("image", key.trim())?;
    let m = Manifest::read(&entry.join("manifest.json")).ok()?;
    let stamps = read_stamps(&entry)?;
    let file = |ext: &str| {
        let a = m.artifacts.iter().find(|a| a.file.ends_with(ext))?;
        let p = entry.join(&a.file);
        (stamps.get(&a.file) == stamp(&p).as_ref()).then_some(p)
    };
    Some((file(".raw")?, file(".qcow2")?))
}

/// Inode, size and modification time (ns) of a file: unchanged means not written since.
type Stamp = (u64, u64, i128);

const STAMPS: &str = "stamps.json";

fn stamp(p: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(p).ok()?;
    Some((
        md.ino(),
        md.len(),
        md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
    ))
}

fn read_stamps(entry: &Path) -> Option<BTreeMap<String, Stamp>> {
    serde_json::from_slice(&std::fs::read(entry.join(STAMPS)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::stamp;

    #[test]
    fn in_place_write_through_an_output_link_changes_the_stamp() {
        let t = tempfile::tempdir().unwrap();
        let cached = t.path().join("a.raw");
        let out = t.path().join("out.raw");
        std::fs::write(&cached, b"image").unwrap();
        let before = stamp(&cached).unwrap();
        std::fs::hard_link(&cached, &out).unwrap();
        assert_eq!(stamp(&cached), Some(before), "linking is not a change");
        std::thread::sleep(std::time::Duration::from_millis(20));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
        f.write_all(b"IMAGE").unwrap();
        drop(f);
        assert_ne!(stamp(&cached), Some(before), "an in-place edit must show");
    }
}
