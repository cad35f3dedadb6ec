//! What an upload is: the target (Glance or S3), the image file with its format, firmware
//! and digests, and the options of `clawimg upload`.

use crate::error::{Error, Result};
use crate::image::manifest::Manifest;
use crate::support::progress::Progress;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The Glance v2 image service of an OpenStack cloud.
    Glance,
    /// An object in an S3-compatible bucket.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
    },
}

impl Target {
    /// Parse `glance` or `s3://BUCKET/KEY`.
    pub fn parse(s: &str) -> Result<Target> {
        if s == "glance" {
            return Ok(Target::Glance);
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            if let Some((bucket, key)) = rest.split_once('/') {
                if !bucket.is_empty() && !key.is_empty() {
                    return Ok(Target::S3 {
                        bucket: bucket.into(),
                        key: key.into(),
                    });
                }
            }
            return Err(Error::config(format!(
                "--to {s}: an S3 target is s3://BUCKET/KEY"
            )));
        }
        Err(Error::config(format!(
            "--to {s}: unknown provider (use `glance` or s3://BUCKET/KEY)"
        )))
    }
}

/// Disk format of the uploaded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// Plain raw disk.
    Raw,
}

impl Format {
    /// Glance `disk_format` name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Raw => "raw",
        }
    }
}

/// Firmware the cloud should boot the image with (Glance `hw_firmware_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BootFirmware {
    /// UEFI (OVMF).
    Uefi,
    /// Legacy BIOS (SeaBIOS).
    Bios,
}

impl BootFirmware {
    /// Property value.
    pub fn name(self) -> &'static str {
        match self {
            BootFirmware::Uefi => "uefi",
            BootFirmware::Bios => "bios",
        }
    }
}

/// The file to upload and what is known about it.
#[derive(Debug, Clone)]
pub struct Image {
    /// The file.
    pub path: PathBuf,
    /// Its format (from its header, not its name).
    pub format: Format,
    /// File size in bytes.
    pub bytes: u64,
    /// Disk size the guest sees.
    pub virtual_bytes: u64,
    /// Profile name from the manifest beside it, if any.
    pub profile: Option<String>,
    /// Ubuntu suite from the manifest, if any.
    pub suite: Option<String>,
}

/// Digests of the whole file, hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// sha256 (clawimg's own identity of the file).
    pub sha256: String,
    /// md5 (Glance `checksum`).
    pub md5: String,
    /// sha512 (Glance's default `os_hash_algo`).
    pub sha512: String,
}

const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// Find the file to upload: IMAGE is a raw/qcow2 file or an image directory, where
/// `format` picks the artifact (qcow2 when not given).
pub fn resolve(image: &Path, format: Option<Format>) -> Result<Image> {
    let (path, manifest) = if image.is_dir() {
        let m = Manifest::read(image)?;
        let want = format.unwrap_or(Format::Qcow2);
        let ext = format!(".{}", want.name());
        let file = m
            .artifacts
            .iter()
            .find(|a| a.file.ends_with(&ext))
            .map(|a| image.join(&a.file))
            .ok_or_else(|| {
                Error::config(format!(
                    "{}: manifest lists no {} image",
                    image.display(),
                    want.name()
                ))
            })?;
        (file, Some(m))
    } else {
        (image.to_path_buf(), Manifest::read(image).ok())
    };
    let mut f = std::fs::File::open(&path)
        .map_err(|e| Error::config(format!("image {}: {e}", path.display())))?;
    let bytes = f
        .metadata()
        .map_err(|e| Error::config(format!("image {}: {e}", path.display())))?
        .len();
    let mut head = [0u8; 32];
    let n = f.read(&mut head).unwrap_or(0);
    let found = if n >= 32 && &head[..4] == QCOW2_MAGIC {
        Format::Qcow2
    } else {
        Format::Raw
    };
    if let Some(want) = format {
        if want != found {
            return Err(Error::config(format!(
                "{}: is {}, not {} (--format)",
                path.display(),
                found.name(),
                want.name()
            )));
        }
    }
    if bytes == 0 {
        return Err(Error::config(format!("{}: empty file", path.display())));
    }
    let virtual_bytes = match found {
        // qcow2 header: virtual size is a big-endian u64 at offset 24.
        Format::Qcow2 => u64::from_be_bytes(head[24..32].try_into().unwrap_or([0; 8])),
        Format::Raw => bytes,
    };
    Ok(Image {
        path,
        format: found,
        bytes,
        virtual_bytes,
        profile: manifest.as_ref().map(|m| m.profile.clone()),
        suite: manifest.map(|m| m.suite),
    })
}

/// Ubuntu release number for a suite name (Glance `os_version`).
pub fn os_version(suite: Option<&str>) -> String {
    match suite.unwrap_or("noble") {
        "noble" => "24.04".into(),
        "jammy" => "22.04".into(),
        other => other.into(),
    }
}

/// sha256, md5 and sha512 of a file in one pass, with a byte bar.
pub fn digests(path: &Path, progress: &Progress) -> Result<Digests> {
    let mut f =
        std::fs::File::open(path).map_err(|e| Error::failed(format!("{}: {e}", path.display())))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress.bytes("digest", total);
    let (mut a, mut b, mut c) = (Sha256::new(), Md5::new(), Sha512::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::failed(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        a.update(&buf[..n]);
        b.update(&buf[..n]);
        c.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(Digests {
        sha256: hex::encode(a.finalize()),
        md5: hex::encode(b.finalize()),
        sha512: hex::encode(c.finalize()),
    })
}

/// Everything `clawimg upload` was asked to do.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Image file or directory.
    pub image: PathBuf,
    /// Destination.
    pub target: Target,
    /// Format to upload (default qcow2 for a directory; a file's own format otherwise).
    pub format: Option<Format>,
    /// Glance image name.
    pub name: Option<String>,
    /// clouds.yaml entry.
    pub cloud: Option<String>,
    /// Service endpoint override (Glance or S3).
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// Glance `hw_firmware_type`.
    pub firmware: BootFirmware,
    /// S3 part size in bytes.
    pub part_size: u64,
    /// Parallel S3 part uploads.
    pub jobs: usize,
    /// Cache directory (S3 resume state).
    pub cache_dir: PathBuf,
    /// How long to wait for Glance to make the image active.
    pub timeout: Duration,
    /// No progress output.
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::upload::http::Secret;

    #[test]
    fn targets() {
        assert_eq!(Target::parse("glance").unwrap(), Target::Glance);
        assert_eq!(
            Target::parse("s3://b/dir/x.qcow2").unwrap(),
            Target::S3 {
                bucket: "b".into(),
                key: "dir/x.qcow2".into()
            }
        );
        for bad in ["s3://b", "s3:///k", "swift", "s3://b/"] {
            assert_eq!(Target::parse(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn format_is_read_from_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("x.img");
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(QCOW2_MAGIC);
        h[24..32].copy_from_slice(&(3u64 << 30).to_be_bytes());
        std::fs::write(&q, &h).unwrap();
        let i = resolve(&q, None).unwrap();
        assert_eq!(
            (i.format, i.virtual_bytes, i.bytes),
            (Format::Qcow2, 3 << 30, 512)
        );
        assert_eq!(resolve(&q, Some(Format::Raw)).unwrap_err().exit_code(), 2);
        let r = dir.path().join("y.raw");
        std::fs::write(&r, vec![1u8; 4096]).unwrap();
        assert_eq!(resolve(&r, None).unwrap().format, Format::Raw);
        let d = digests(&r, &Progress::new(true)).unwrap();
        assert_eq!(d.sha256, hex::encode(Sha256::digest(vec![1u8; 4096])));
    }

    #[test]
    fn a_directory_gives_its_qcow2_unless_raw_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = vec![0u8; 512];
        q[..4].copy_from_slice(QCOW2_MAGIC);
        q[24..32].copy_from_slice(&(2u64 << 30).to_be_bytes());
        std::fs::write(dir.path().join("p.qcow2"), &q).unwrap();
        std::fs::write(dir.path().join("p.raw"), vec![0u8; 1024]).unwrap();
        let art = |f: &str| serde_json::json!({"file": f, "bytes": 0, "sha256": ""});
        let mut m: serde_json::Value =
            serde_json::from_str(include_str!("../../image/testdata/manifest-v1.json")).unwrap();
        m["profile"] = "p".into();
        m["artifacts"] = serde_json::json!([art("p.raw"), art("p.qcow2")]);
        std::fs::write(dir.path().join("manifest.json"), m.to_string()).unwrap();
        let i = resolve(dir.path(), None).unwrap();
        assert_eq!((i.format, i.profile.as_deref()), (Format::Qcow2, Some("p")));
        assert_eq!(os_version(i.suite.as_deref()), "24.04");
        let r = resolve(dir.path(), Some(Format::Raw)).unwrap();
        assert_eq!((r.format, r.bytes), (Format::Raw, 1024));
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "<redacted>");
    }
}
