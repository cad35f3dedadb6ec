//! `clawimg seal`: a node's copy of an image with its secrets bundle in the seed partition.
//!
//! The copy shares blocks with the image where the filesystem can (reflink) and stays sparse
//! otherwise; only the seed partition's bytes differ, so the root partition of every node is
//! byte-identical to the image's. Every check runs before the first byte is written, and
//! the copy is checked against the build's checksums before it is sealed.

use crate::build::outputs::bmap;
use crate::error::{Context, Error, Result};
use crate::image::layout::seed_partition;
use crate::image::layout::SECTOR;
use crate::image::manifest::Manifest;
use crate::ops::integrity;
use crate::profile::secrets::{self, SecretsFile};
use crate::support::progress::Progress;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What to seal.
#[derive(Debug, Clone)]
pub struct SealRequest {
    /// Built image: raw file or image directory.
    pub image: PathBuf,
    /// Secrets file (TOML, mode 0600).
    pub secrets: PathBuf,
    /// Node name (becomes the host name).
    pub node: String,
    /// Output raw file (must not exist).
    pub output: PathBuf,
}

/// Find the raw image for a path that is a raw file or an image directory.
pub fn raw_image(p: &Path) -> Result<PathBuf> {
    if p.is_dir() {
        let m = Manifest::read(p)?;
        let raw = m
            .artifacts
            .iter()
            .find(|a| a.file.ends_with(".raw"))
            .map(|a| p.join(&a.file));
        return raw
            .ok_or_else(|| Error::config(format!("{}: manifest lists no raw image", p.display())));
    }
    let mut magic = [0u8; 4];
    let mut f =
        std::fs::File::open(p).map_err(|e| Error::config(format!("image {}: {e}", p.display())))?;
    let _ = std::io::Read::read(&mut f, &mut magic);
    if &magic == b"QFI\xfb" {
        return Err(Error::config(format!(
            "{}: is qcow2; pass the raw image (same directory) or convert it with qemu-img convert -O raw",
            p.display()
        )));
    }
    Ok(p.to_path_buf())
}

/// Seal: check everything, then copy the image and write the bundle into the seed.
pub fn seal(req: &SealRequest) -> Result<PathBuf> {
    let raw = raw_image(&req.image)?;
    let manifest = Manifest::read(&raw)?;
    let slots = manifest.extra.secret_slots();
    secrets::check_node(&req.node)?;
    let values = SecretsFile::load(&req.secrets)?;
    values.check(&slots)?;
    let seed = seed_partition(&raw)?;
    let bundle = secrets::bundle(&values, Some(&req.node));
    if bundle.len() as u64 > seed.bytes() {
        return Err(Error::config(format!(
            "{}: the bundle is {} bytes, the seed partition holds {}",
            req.secrets.display(),
            bundle.len(),
            seed.bytes()
        )));
    }
    if req.output.exists() {
        return Err(Error::config(format!(
            "-o {}: already exists; refusing to overwrite",
            req.output.display()
        )));
    }
    if raw.canonicalize().ok() == req.output.canonicalize().ok() {
        return Err(Error::config("-o must not be the image itself".to_string()));
    }
    let recorded = integrity::recorded(&raw)?;
    let map_recorded = bmap::path_for(&raw).exists();
    let map = bmap::load_or_compute(&raw)?;

    // Checks done: write a temporary file beside the output, rename when complete.
    let dir = req
        .output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = req
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.clawimg-{}", std::process::id()));
    let guard = TmpFile(tmp.clone());
    // Owner-only from the start: the copy will hold secrets.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .ctx(|| format!("create {}", tmp.display()))?;
    copy_sparse(&raw, &tmp)?;
    // The copy, not the file it came from, is what gets sealed: check it against the
    // build's checksums before the seed is written and the output appears.
    let checked = integrity::check(
        &tmp,
        recorded.as_ref(),
        map_recorded.then_some(&map),
        &[],
        &Progress::new(true),
    )
    .map_err(|e| match e.exit_code() {
        2 => Error::config(
            e.to_string()
                .replace(&tmp.display().to_string(), &raw.display().to_string()),
        ),
        _ => e,
    })?;
    if checked.against.is_empty() {
        integrity::note_unverified(&raw);
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp)
        .ctx(|| format!("open {}", tmp.display()))?;
    let mut data = bundle;
    data.resize(seed.bytes() as usize, 0);
    f.seek(SeekFrom::Start(seed.first_lba * SECTOR))
        .ctx(|| "seek to the seed partition".into())?;
    f.write_all(&data)
        .ctx(|| "write the seed partition".into())?;
    data.fill(0);
    f.sync_all().ctx(|| "sync".into())?;
    std::fs::rename(&tmp, &req.output).ctx(|| format!("rename to {}", req.output.display()))?;
    std::mem::forget(guard);
    // The sparse copy turned the image's explicit zeros (unused GPT entries, the seed) into
    // holes; flashing the copy must still write them over a used disk: keep the image's map.
    let (sha256, range_sha256) = bmap::hash_each(&req.output, &map.ranges)?;
    let map = bmap::BlockMap {
        sha256,
        range_sha256,
        ..map
    };
    bmap::write(&req.output, &map)?;
    Ok(req.output.clone())
}

struct TmpFile(PathBuf);
impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Copy `src` over the existing (empty) `dst`: reflink when the filesystem can, else sparse.
fn copy_sparse(src: &Path, dst: &Path) -> Result<()> {
    let sh = crate::support::exec::shell()?;
    crate::support::exec::run(
        sh.cmd("cp")
            .args(["--reflink=auto", "--sparse=always"])
            .arg(src)
            .arg(dst),
    )?;
    Ok(())
}

/// `clawimg secrets bundle`: the same bundle as user data (cloud-init NoCloud / config drive).
pub fn write_bundle(
    image: &Path,
    secrets_path: &Path,
    node: Option<&str>,
    output: &Path,
) -> Result<()> {
    let raw = raw_image(image)?;
    let manifest = Manifest::read(&raw)?;
    let slots = manifest.extra.secret_slots();
    if let Some(n) = node {
        secrets::check_node(n)?;
    }
    let values = SecretsFile::load(secrets_path)?;
    values.check(&slots)?;
    let data = secrets::bundle(&values, node);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .map_err(|e| Error::config(format!("-o {}: {e}", output.display())))?;
    f.write_all(&data)
        .ctx(|| format!("write {}", output.display()))?;
    Ok(())
}
