//! Content-addressed blob cache (`CACHE/blobs/sha256/<hex>`), shared by every build.
//! A blob only appears under its name after its content was verified against the digest:
//! writes go to a temp file in the same directory and are renamed into place, so an
//! interrupted download or a concurrent build never leaves a wrong or partial blob.

use crate::build::images::spec::ManifestDoc;
use crate::error::{Context, Error, Result};
use crate::support::reference::valid_digest;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The blob store.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
}

fn hex_of(digest: &str) -> Result<&str> {
    if !valid_digest(digest) {
        return Err(Error::failed(format!("`{digest}` is not a sha256 digest")));
    }
    Ok(&digest[7..])
}

impl BlobCache {
    /// Open (create) the store under `cache_dir`.
    pub fn open(cache_dir: &Path) -> Result<BlobCache> {
        let dir = cache_dir.join("blobs/sha256");
        std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        // Temp files of killed runs; a day old is surely not a running download.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let stale = e
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok());
                if e.file_name().to_string_lossy().starts_with(".partial-")
                    && stale.is_some_and(|age| age.as_secs() > 86_400)
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(BlobCache { dir })
    }

    /// Path of a blob (whether or not it is present).
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join(hex_of(digest)?))
    }

    /// Whether the blob is present.
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Read a (small) blob, verifying it again.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.path(digest)?;
        let data = std::fs::read(&p).ctx(|| format!("read {}", p.display()))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        if actual != digest {
            return Err(Error::failed(format!(
                "cache blob {} is corrupted (content is {actual}): delete it and run again",
                p.display()
            )));
        }
        Ok(data)
    }

    /// Store bytes already verified by the caller... and verified again here.
    pub fn insert_bytes(&self, digest: &str, data: &[u8]) -> Result<()> {
        let mut w = self.writer(digest)?;
        w.write(data)?;
        w.finish(data.len() as u64)
    }

    /// A verifying writer for one blob.
    pub fn writer(&self, digest: &str) -> Result<Writer> {
        let dest = self.path(digest)?;
        let tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&self.dir)
            .ctx(|| format!("temp file in {}", self.dir.display()))?;
        Ok(Writer {
            tmp,
            hasher: Sha256::new(),
            len: 0,
            digest: digest.to_string(),
            dest,
        })
    }

    /// Seed the cache from an OCI archive (tar of an OCI image layout, e.g. from
    /// `skopeo copy --all ... oci-archive:FILE`) or an OCI layout directory. Every blob is
    /// verified; returns the image names and digests listed in its `index.json`.
    pub fn import(&self, archive: &Path) -> Result<Imported> {
        let mut out = Imported::default();
        let mut index = None;
        let mut take =
            |name: &str, r: &mut dyn Read, size: u64, out: &mut Imported| -> Result<()> {
                let name = name.trim_start_matches("./");
                if name == "index.json" {
                    let mut b = vec![];
                    r.read_to_end(&mut b).ctx(|| "read index.json".into())?;
                    index = Some(b);
                } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                    let digest = format!("sha256:{hex}");
                    if !valid_digest(&digest) {
                        return Err(Error::failed(format!(
                            "{}: unexpected entry {name}",
                            archive.display()
                        )));
                    }
                    out.blobs += 1;
                    if self.has(&digest) {
                        return Ok(());
                    }
                    let mut w = self.writer(&digest)?;
                    let mut buf = vec![0u8; 256 << 10];
                    loop {
                        let n = r.read(&mut buf).ctx(|| format!("read {name}"))?;
                        if n == 0 {
                            break;
                        }
                        w.write(&buf[..n])?;
                    }
                    w.finish(size).map_err(|e| {
                        Error::failed(format!("{}: {name}: {e}", archive.display()))
                    })?;
                    out.new_blobs += 1;
                }
                Ok(())
            };
        if archive.is_dir() {
            let blobs = archive.join("blobs/sha256");
            let mut names: Vec<_> = std::fs::read_dir(&blobs)
                .ctx(|| format!("{}: not an OCI layout", archive.display()))?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            names.sort();
            for n in names {
                let p = blobs.join(&n);
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                let mut f = std::fs::File::open(&p).ctx(|| format!("open {}", p.display()))?;
                take(&format!("blobs/sha256/{n}"), &mut f, size, &mut out)?;
            }
            let mut f = std::fs::File::open(archive.join("index.json"))
                .ctx(|| format!("{}: no index.json", archive.display()))?;
            take("index.json", &mut f, 0, &mut out)?;
        } else {
            let f = std::fs::File::open(archive)
                .map_err(|e| Error::config(format!("cannot open {}: {e}", archive.display())))?;
            let mut t = tar::Archive::new(f);
            for e in t
                .entries()
                .ctx(|| format!("{}: not a tar archive", archive.display()))?
            {
                let mut e = e.ctx(|| format!("{}: bad tar entry", archive.display()))?;
                if !e.header().entry_type().is_file() {
                    continue;
                }
                let name = e
                    .path()
                    .ctx(|| "tar path".into())?
                    .to_string_lossy()
                    .into_owned();
                let size = e.size();
                take(&name, &mut e, size, &mut out)?;
            }
        }
        let index = index.ok_or_else(|| {
            Error::config(format!(
                "{}: no index.json: not an OCI archive",
                archive.display()
            ))
        })?;
        let doc = ManifestDoc::parse(&index, &format!("{}: index.json", archive.display()))?;
        let v: serde_json::Value = serde_json::from_slice(&index).unwrap_or_default();
        for (i, d) in doc.manifests.iter().enumerate() {
            let ann = &v["manifests"][i]["annotations"];
            let name = ann["io.containerd.image.name"]
                .as_str()
                .or(ann["org.opencontainers.image.ref.name"].as_str())
                .unwrap_or("");
            out.images.push((name.to_string(), d.digest.clone()));
        }
        Ok(out)
    }
}

/// What an import brought.
#[derive(Debug, Default, Clone)]
pub struct Imported {
    /// Blobs in the archive.
    pub blobs: usize,
    /// Blobs that were not cached before.
    pub new_blobs: usize,
    /// (name annotation, digest) of each image in the archive's index.
    pub images: Vec<(String, String)>,
}

/// Writes one blob to a temp file, hashing as it goes; [`Writer::finish`] verifies and
/// renames it into place. Dropped unfinished, the temp file is removed.
pub struct Writer {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    len: u64,
    digest: String,
    dest: PathBuf,
}

impl Writer {
    /// Append bytes.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.tmp.write_all(data)?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far (the offset to resume from).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Discard what was written and start again.
    pub fn restart(&mut self) -> Result<()> {
        self.tmp
            .as_file_mut()
            .set_len(0)
            .ctx(|| "truncate temp blob".into())?;
        std::io::Seek::rewind(self.tmp.as_file_mut()).ctx(|| "rewind temp blob".into())?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Check size and digest, then publish the blob.
    pub fn finish(self, size: u64) -> Result<()> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        if actual != self.digest {
            return Err(Error::failed(format!(
                "blob {} failed verification: its content has digest {actual} ({} bytes): corrupted or substituted data; nothing was cached",
                self.digest, self.len
            )));
        }
        if self.len != size {
            return Err(Error::failed(format!(
                "blob {}: {} bytes, expected {size}",
                self.digest, self.len
            )));
        }
        self.tmp.as_file().sync_all().ctx(|| "sync blob".into())?;
        let mut perm = self
            .tmp
            .as_file()
            .metadata()
            .ctx(|| "stat blob".into())?
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
        let _ = std::fs::set_permissions(self.tmp.path(), perm);
        self.tmp
            .persist(&self.dest)
            .map_err(|e| Error::failed(format!("store {}: {}", self.dest.display(), e.error)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_verified_blobs_are_published() {
        let t = tempfile::tempdir().unwrap();
        let c = BlobCache::open(t.path()).unwrap();
        let d = format!("sha256:{}", hex::encode(Sha256::digest(b"hello")));
        assert!(c.insert_bytes(&d, b"hellO").is_err());
        assert!(!c.has(&d));
        c.insert_bytes(&d, b"hello").unwrap();
        assert_eq!(c.read(&d).unwrap(), b"hello");
        // No temp files are left behind.
        assert_eq!(
            std::fs::read_dir(t.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            1
        );
        assert!(c.path("sha256:../../etc").is_err());
    }
}
