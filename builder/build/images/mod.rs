//! Pinned container images: the `images/*.toml` catalog, the profile's `[containers]`
//! section, lints (no digest, `:latest`), pulling into the blob cache, `clawimg lock`, and
//! baking archives plus the first-boot loader (`clawimg-images.service`) into the image.
//!
//! Baked layout (documented in the README):
//! - `/var/lib/clawimg/images/NAME.tar`: one archive per image that is at the same time a
//!   docker-archive (`manifest.json`, read by `docker load` of Docker 24, Ubuntu noble's
//!   docker.io) and an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/*`, read
//!   by Docker 25+ with the containerd image store), exactly like `docker save` of Docker 25+;
//! - `/var/lib/clawimg/images/images.list`: one line per image, tab separated: name,
//!   reference, archive, archive sha256, image id (config digest), manifest digest, pinned
//!   digest. Docker reports one of the three digests as the loaded image's id, depending
//!   on its image store (classic: config; containerd: the pinned index or manifest).

pub mod blobs;
pub mod oci;
pub mod spec;

use crate::build::images::blobs::BlobCache;
use crate::error::{Context, Error, Result};
use crate::image::provenance::Provenance;
use crate::profile::catalog::resolve;
use crate::profile::catalog::Pinned;
use crate::profile::catalog::{select, selection};
use crate::profile::Loaded;
use crate::support::progress::Progress;
use crate::support::reference::{valid_digest, Reference};
use crate::support::rootfs::Rootfs;
use crate::support::systemd;
use oci::{Client, Mirrors};
use sha2::{Digest, Sha256};
use spec::{Descriptor, ManifestDoc};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// First-boot unit that loads and verifies the baked images.
pub const LOAD_UNIT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/units/clawimg-images.service"
));
/// The script the unit runs.
pub const LOAD_SCRIPT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/units/clawimg-load-images"
));
/// Unit name; services that need the images order themselves `After=` and `Requires=` it.
pub const UNIT_NAME: &str = "clawimg-images.service";
/// Where the archives live in the image.
pub const IMAGES_DIR: &str = "/var/lib/clawimg/images";

/// The images' part of the input hash: every pinned value plus the loader's unit and script.
pub fn input_part(loaded: &Loaded) -> Result<String> {
    let mut s = String::new();
    for p in resolve(loaded)? {
        s.push_str(&format!(
            "{}\0{}\0{}\0{}\0",
            p.name, p.reference, p.digest, p.platform
        ));
    }
    if !s.is_empty() {
        s.push_str(LOAD_UNIT);
        s.push_str(LOAD_SCRIPT);
    }
    Ok(s)
}

/// An image whose blobs are all in the cache.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The catalog entry.
    pub pinned: Pinned,
    /// The pinned index, when the digest names one.
    pub index: Option<Descriptor>,
    /// The platform manifest (the pinned digest itself, or the entry of the pinned index).
    pub manifest: Descriptor,
    /// Image config (its digest is Docker's image id).
    pub config: Descriptor,
    /// Layers, in order.
    pub layers: Vec<Descriptor>,
}

/// Pull every image into the cache: manifests first, then missing blobs in parallel with a
/// progress bar. With everything cached no request is made.
pub fn fetch(
    images: &[Pinned],
    cache: &BlobCache,
    client: &Client,
    progress: &Progress,
) -> Result<Vec<Fetched>> {
    let mut out = vec![];
    for p in images {
        let wrap = |e: Error| Error {
            kind: e.kind,
            message: format!(
                "image `{}` ({}): {}: {}",
                p.name, p.reference, p.origin, e.message
            ),
            source: e.source,
        };
        let what = format!("{}@{}", p.reference, p.digest);
        let top = client.manifest(cache, &p.parsed, &p.digest).map_err(wrap)?;
        let doc = ManifestDoc::parse(&top, &what).map_err(wrap)?;
        let index = doc.is_index().then(|| Descriptor {
            media_type: doc.media_type.clone(),
            digest: p.digest.clone(),
            size: top.len() as u64,
            platform: None,
        });
        let (manifest, doc) = if doc.is_index() {
            let sel = doc.select(&p.platform, &what).map_err(wrap)?;
            let body = client
                .manifest(cache, &p.parsed, &sel.digest)
                .map_err(wrap)?;
            let d = ManifestDoc::parse(&body, &what).map_err(wrap)?;
            if d.is_index() {
                return Err(wrap(Error::failed(format!(
                    "{what}: nested index for {} is not supported",
                    p.platform
                ))));
            }
            (
                Descriptor {
                    media_type: d.media_type.clone(),
                    digest: sel.digest,
                    size: body.len() as u64,
                    platform: sel.platform,
                },
                d,
            )
        } else {
            (
                Descriptor {
                    media_type: doc.media_type.clone(),
                    digest: p.digest.clone(),
                    size: top.len() as u64,
                    platform: None,
                },
                doc,
            )
        };
        let config = doc
            .config
            .clone()
            .ok_or_else(|| wrap(Error::failed(format!("{what}: manifest without config"))))?;
        for d in std::iter::once(&config).chain(&doc.layers) {
            if !valid_digest(&d.digest) {
                return Err(wrap(Error::failed(format!(
                    "{what}: unsupported digest {}",
                    d.digest
                ))));
            }
        }
        out.push(Fetched {
            pinned: p.clone(),
            index,
            manifest,
            config,
            layers: doc.layers.clone(),
        });
    }
    // Blobs still missing, each once.
    let mut todo: Vec<(Reference, Descriptor)> = vec![];
    for f in &out {
        for d in std::iter::once(&f.config).chain(&f.layers) {
            if !cache.has(&d.digest) && !todo.iter().any(|(_, t)| t.digest == d.digest) {
                todo.push((f.pinned.parsed.clone(), d.clone()));
            }
        }
    }
    if !todo.is_empty() {
        let total: u64 = todo.iter().map(|(_, d)| d.size).sum();
        let bar = progress.bytes("pull", total);
        let workers = todo.len().min(4);
        let queue = Mutex::new(todo);
        let failed = AtomicBool::new(false);
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some((r, d)) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                        return;
                    };
                    if let Err(e) = client.blob(cache, &r, &d, &bar) {
                        failed.store(true, Ordering::Relaxed);
                        if let Ok(mut fe) = first_err.lock() {
                            fe.get_or_insert(e);
                        }
                        return;
                    }
                });
            }
        });
        bar.finish_and_clear();
        if let Some(e) = first_err.into_inner().ok().flatten() {
            return Err(e);
        }
    }
    // The config says which platform the image really is.
    for f in &out {
        let cfg: serde_json::Value =
            serde_json::from_slice(&cache.read(&f.config.digest)?).unwrap_or_default();
        let (os, arch) = (
            cfg["os"].as_str().unwrap_or(""),
            cfg["architecture"].as_str().unwrap_or(""),
        );
        if os != f.pinned.platform.os || arch != f.pinned.platform.architecture {
            return Err(Error::failed(format!(
                "image `{}` ({}): {}: the pinned image is {os}/{arch}, not {}",
                f.pinned.name, f.pinned.reference, f.pinned.origin, f.pinned.platform
            )));
        }
    }
    Ok(out)
}

/// One image baked into the disk image (also its manifest entry).
pub use crate::image::manifest::ImageEntry as Baked;

struct HashWrite<W> {
    inner: W,
    h: Sha256,
    n: u64,
}

impl<W: Write> Write for HashWrite<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.h.update(&b[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashRead<R> {
    inner: R,
    h: Sha256,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.h.update(&b[..n]);
        Ok(n)
    }
}

fn epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header(size: u64, mode: u32, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(epoch());
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

/// Write one image archive (docker-archive + OCI layout) into the image, re-verifying every
/// blob from the cache on the way.
fn write_archive(root: &Rootfs, cache: &BlobCache, f: &Fetched) -> Result<Baked> {
    let archive = format!("{}.tar", f.pinned.name);
    let path = format!("{IMAGES_DIR}/{archive}");
    let file = root.create(&path, 0o600)?;
    let mut t = tar::Builder::new(HashWrite {
        inner: std::io::BufWriter::new(file),
        h: Sha256::new(),
        n: 0,
    });
    t.mode(tar::HeaderMode::Deterministic);
    let werr = |e: std::io::Error| Error::failed(format!("write {path}: {e}"));
    let add = |t: &mut tar::Builder<_>, name: &str, data: &[u8]| -> Result<()> {
        t.append_data(&mut header(data.len() as u64, 0o644, false), name, data)
            .map_err(werr)
    };
    add(&mut t, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for d in ["blobs/", "blobs/sha256/"] {
        t.append_data(&mut header(0, 0o755, true), d, std::io::empty())
            .map_err(werr)?;
    }
    for d in f
        .index
        .iter()
        .chain([&f.manifest, &f.config])
        .chain(&f.layers)
    {
        let src = cache.path(&d.digest)?;
        let file = std::fs::File::open(&src).ctx(|| format!("open cached blob {}", d.digest))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut r = HashRead {
            inner: file,
            h: Sha256::new(),
        };
        t.append_data(
            &mut header(size, 0o644, false),
            format!("blobs/sha256/{}", &d.digest[7..]),
            &mut r,
        )
        .map_err(werr)?;
        let actual = format!("sha256:{}", hex::encode(r.h.finalize()));
        if actual != d.digest || size != d.size {
            return Err(Error::failed(format!(
                "cached blob {} is corrupted ({actual}, {size} bytes): delete {} and build again",
                d.digest,
                src.display()
            )));
        }
    }
    let full = Reference::parse(&f.pinned.reference)
        .map(|r| format!("{}:{}", r.name(), r.tag.unwrap_or_default()))
        .unwrap_or_default();
    // The OCI side names the pinned digest (an index keeps only the platform's manifest:
    // Docker's containerd store imports such partial indexes), so the loaded image's id is
    // the pinned digest and `name:tag@digest` resolves locally.
    let top = f.index.as_ref().unwrap_or(&f.manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": spec::OCI_INDEX,
        "manifests": [{
            "mediaType": top.media_type, "digest": top.digest, "size": top.size,
            "annotations": {
                "io.containerd.image.name": full,
                "org.opencontainers.image.ref.name": f.pinned.parsed.tag.clone().unwrap_or_default(),
            },
        }],
    });
    let docker = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", &f.config.digest[7..]),
        "RepoTags": [f.pinned.reference],
        "Layers": f.layers.iter().map(|l| format!("blobs/sha256/{}", &l.digest[7..])).collect::<Vec<_>>(),
    }]);
    add(
        &mut t,
        "index.json",
        serde_json::to_string(&index).unwrap_or_default().as_bytes(),
    )?;
    add(
        &mut t,
        "manifest.json",
        serde_json::to_string(&docker)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let mut hw = t.into_inner().map_err(werr)?;
    hw.flush().map_err(werr)?;
    Ok(Baked {
        name: f.pinned.name.clone(),
        reference: f.pinned.reference.clone(),
        digest: f.pinned.digest.clone(),
        manifest_digest: f.manifest.digest.clone(),
        image_id: f.config.digest.clone(),
        platform: f.pinned.platform.to_string(),
        archive: path,
        archive_sha256: hex::encode(hw.h.finalize()),
        bytes: hw.n,
    })
}

/// Bake the images: archives, `images.list`, the loader script and its unit (enabled);
/// every path written is recorded in `prov`.
pub fn bake(
    root: &Rootfs,
    cache: &BlobCache,
    fetched: &[Fetched],
    prov: &mut Provenance,
) -> Result<Vec<Baked>> {
    if fetched.is_empty() {
        return Ok(vec![]);
    }
    root.mkdir_all(IMAGES_DIR)?;
    let mut baked = vec![];
    let mut list = String::from("# name\treference\tarchive\tarchive sha256\timage id\tmanifest digest\tpinned digest (written by clawimg)\n");
    for f in fetched {
        let b = write_archive(root, cache, f)?;
        prov.record(
            &b.archive,
            format!("module images (image {}, {})", b.name, b.reference),
        );
        let file = b.archive.rsplit('/').next().unwrap_or("");
        list.push_str(&format!(
            "{}\t{}\t{file}\t{}\t{}\t{}\t{}\n",
            b.name, b.reference, b.archive_sha256, b.image_id, b.manifest_digest, b.digest
        ));
        baked.push(b);
    }
    let list_path = format!("{IMAGES_DIR}/images.list");
    root.write(&list_path, list.as_bytes(), 0o644)?;
    root.write(
        "/usr/lib/clawimg/clawimg-load-images",
        LOAD_SCRIPT.as_bytes(),
        0o755,
    )?;
    let unit = format!("/usr/lib/systemd/system/{UNIT_NAME}");
    root.write(&unit, LOAD_UNIT.as_bytes(), 0o644)?;
    let mut paths = vec![
        list_path,
        "/usr/lib/clawimg/clawimg-load-images".to_string(),
        unit,
    ];
    paths.extend(systemd::enable(root, UNIT_NAME)?);
    prov.record_all(&paths, "module images");
    Ok(baked)
}

/// One change made by `clawimg lock` or the build's pinning.
#[derive(Debug, Clone)]
pub struct Locked {
    /// Entry name.
    pub name: String,
    /// Reference.
    pub reference: String,
    /// Digest before (empty when none).
    pub old: String,
    /// Digest now.
    pub new: String,
    /// The catalog file holding the entry.
    pub file: PathBuf,
}

/// Resolve an entry's tag at its registry: the digest of the manifest or index the tag
/// names now, checked to offer the entry's platform.
fn resolve_tag(client: &Client, p: &Pinned) -> Result<(String, Vec<u8>)> {
    let tag = p.parsed.tag.clone().unwrap_or_default();
    let wrap = |e: Error| Error {
        kind: e.kind,
        message: format!("image `{}` ({}): {}", p.name, p.reference, e.message),
        source: e.source,
    };
    let (digest, body) = client.resolve_tag(&p.parsed, &tag).map_err(wrap)?;
    let doc = ManifestDoc::parse(&body, &p.reference).map_err(wrap)?;
    if doc.is_index() {
        doc.select(&p.platform, &p.reference).map_err(wrap)?;
    }
    Ok((digest, body))
}

/// Resolve the tags of the profile's images to digests and write them into the catalog:
/// the entries without a digest, or with `update` every entry (moving its pin).
pub fn lock(loaded: &Loaded, client: &Client, update: bool) -> Result<Vec<Locked>> {
    let mut out = vec![];
    for (c, p) in select(loaded, false)? {
        let digest = if p.digest.is_empty() || update {
            resolve_tag(client, &p)?.0
        } else {
            p.digest.clone()
        };
        out.push(Locked {
            name: p.name,
            reference: p.reference,
            old: p.digest,
            new: digest,
            file: c.file,
        });
    }
    write_pins(&out)?;
    Ok(out)
}

/// Pin on first build, like cargo's lock file: the profile's catalog entries without a
/// digest are resolved at their registry (the index digest when the tag names an index)
/// and written into their catalog files, one line on stderr each. With `locked` nothing is
/// resolved or written: the entries without a digest are refused, every one named.
///
/// Runs only when the catalog entries have no other problem; the check reports those
/// together with the missing digests.
pub fn pin(
    loaded: &Loaded,
    mirrors: &[String],
    cache_dir: &Path,
    locked: bool,
    quiet: bool,
) -> Result<Vec<Locked>> {
    let Ok(sel) = selection(loaded) else {
        return Ok(vec![]);
    };
    if !sel.problems.is_empty() || sel.unpinned.is_empty() {
        return Ok(vec![]);
    }
    if locked {
        let list: Vec<String> = sel
            .images
            .iter()
            .filter(|(_, p)| p.digest.is_empty())
            .map(|(_, p)| format!("  {}: missing ({})", p.origin, p.reference))
            .collect();
        return Err(Error::config(format!(
            "--locked: {} image(s) of profile {} have no digest in the catalog, and --locked does not pin them:\n{}\nbuild without --locked to pin them (or run `clawimg lock {} --images-only`), then commit the catalog",
            list.len(),
            loaded.name,
            list.join("\n"),
            loaded.name
        )));
    }
    let client = client(mirrors)?;
    let blobs = BlobCache::open(cache_dir)?;
    let mut out = vec![];
    for (c, p) in sel.images.iter().filter(|(_, p)| p.digest.is_empty()) {
        let (digest, body) = resolve_tag(&client, p)?;
        // Verified by construction (the digest is the body's hash): the pull needs no
        // second request for it.
        blobs.insert_bytes(&digest, &body)?;
        out.push(Locked {
            name: p.name.clone(),
            reference: p.reference.clone(),
            old: String::new(),
            new: digest,
            file: c.file.clone(),
        });
    }
    write_pins(&out)?;
    if !quiet {
        for l in &out {
            eprintln!("pinned {}@{} in {}", l.reference, l.new, l.file.display());
        }
    }
    Ok(out)
}

/// Write the changed digests into their catalog files in place: only the `digest` values
/// change (comments, order and layout stay), each file through a temp file renamed over it
/// with the file's own permissions.
fn write_pins(changes: &[Locked]) -> Result<()> {
    let mut edits: BTreeMap<PathBuf, toml_edit::DocumentMut> = BTreeMap::new();
    for l in changes.iter().filter(|l| l.old != l.new) {
        let d = match edits.get_mut(&l.file) {
            Some(d) => d,
            None => {
                let text = std::fs::read_to_string(&l.file)
                    .ctx(|| format!("read {}", l.file.display()))?;
                let d: toml_edit::DocumentMut = text
                    .parse()
                    .map_err(|e| Error::config(format!("{}: {e}", l.file.display())))?;
                edits.entry(l.file.clone()).or_insert(d)
            }
        };
        let entry = &mut d[&l.name];
        match entry.get_mut("digest").and_then(|i| i.as_value_mut()) {
            Some(v) => {
                // Keep the spacing and a trailing comment around the old value.
                let decor = v.decor().clone();
                *v = toml_edit::Value::from(l.new.clone());
                *v.decor_mut() = decor;
            }
            None => entry["digest"] = toml_edit::value(l.new.clone()),
        }
    }
    for (file, doc) in edits {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .ctx(|| format!("temp file in {}", dir.display()))?;
        tmp.write_all(doc.to_string().as_bytes())
            .ctx(|| format!("write {}", file.display()))?;
        if let Ok(m) = std::fs::metadata(&file) {
            tmp.as_file()
                .set_permissions(m.permissions())
                .ctx(|| format!("permissions of {}", file.display()))?;
        }
        tmp.persist(&file)
            .map_err(|e| Error::failed(format!("write {}: {}", file.display(), e.error)))?;
    }
    Ok(())
}

/// The client for a set of `HOST=URL` mirror settings, with the docker `config.json`
/// credentials and the token services trusted in [`oci::TOKEN_REALM_ENV`].
pub fn client(mirrors: &[String]) -> Result<Client> {
    let realms = oci::parse_token_realms(&std::env::var(oci::TOKEN_REALM_ENV).unwrap_or_default())?;
    Ok(Client::with(
        Mirrors::parse(mirrors)?,
        oci::Credentials::load(),
        realms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Pins land in the catalog file in place: only the digest values change; comments,
    /// order, spacing and the file's mode stay.
    #[test]
    fn pins_are_written_in_place_keeping_comments() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("apps.toml");
        let text = "# Our images.\n\n[app]   # the app\nreference = \"ghcr.io/o/app:1\"\ndigest = \"\"   # filled on first build\nplatform = \"linux/amd64\"\n\n# no digest key at all\n[db]\nreference = \"postgres:16\"\n\n[kept]\nreference = \"quay.io/o/k:2\"\ndigest = \"sha256:1111111111111111111111111111111111111111111111111111111111111111\"\n";
        std::fs::write(&f, text).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let change = |name: &str, old: &str, new: &str| Locked {
            name: name.into(),
            reference: String::new(),
            old: old.into(),
            new: new.into(),
            file: f.clone(),
        };
        let kept = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        write_pins(&[
            change("app", "", &a),
            change("db", "", &b),
            change("kept", kept, kept),
        ])
        .unwrap();
        let got = std::fs::read_to_string(&f).unwrap();
        let want = text
            .replace("digest = \"\"   #", &format!("digest = \"{a}\"   #"))
            .replace(
                "reference = \"postgres:16\"\n",
                &format!("reference = \"postgres:16\"\ndigest = \"{b}\"\n"),
            );
        assert_eq!(got, want);
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // Nothing else in the directory (the temp file was renamed over the catalog).
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
