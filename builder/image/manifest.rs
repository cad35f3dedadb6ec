//! `manifest.json` and `SHA256SUMS`: what an image is, from which inputs.

use crate::error::{Context, Result};
use crate::image::layout::Layout;
use crate::support::dpkg::Package;
use crate::support::identity::Identity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One output file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Artifact {
    /// File name inside the output directory.
    pub file: String,
    /// Apparent size in bytes.
    pub bytes: u64,
    /// sha256, hex.
    pub sha256: String,
}

/// The manifest of one built image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Format version of this file.
    pub manifest_version: u32,
    /// Profile name.
    pub profile: String,
    /// Profile files, child first, relative to the repository.
    pub profile_files: Vec<String>,
    /// sha256 over every declared input.
    pub input_hash: String,
    /// clawimg version that built it.
    pub tool_version: String,
    /// Ubuntu suite.
    pub suite: String,
    /// Kernel command line (after root=).
    pub kernel_cmdline: String,
    /// Disk and filesystem identifiers.
    pub identity: serde_json::Value,
    /// Partition table.
    pub partitions: serde_json::Value,
    /// Installed packages.
    pub packages: Vec<Package>,
    /// raw and qcow2 outputs.
    pub artifacts: Vec<Artifact>,
    /// Bytes of data in the root tree.
    pub rootfs_bytes: u64,
    /// Extra sections added by later stages (images, secrets slots, units, ...).
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Partition table as JSON for the manifest.
pub fn partitions_json(layout: &Layout, ids: &Identity) -> serde_json::Value {
    let p = |n: u32, name: &str, ty: &str, e: &crate::image::layout::Extent, guid: &uuid::Uuid| {
        serde_json::json!({
            "number": n, "name": name, "type": ty, "guid": guid.to_string(),
            "first_lba": e.first_lba, "last_lba": e.last_lba, "offset": e.offset(), "bytes": e.bytes(),
        })
    };
    serde_json::json!({
        "table": "gpt",
        "disk_guid": ids.disk_guid.to_string(),
        "disk_bytes": layout.disk_bytes,
        "partitions": [
            p(1, "BIOS boot", "21686148-6449-6E6F-744E-656564454649", &layout.bios, &ids.bios_part),
            p(2, "EFI System", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", &layout.esp, &ids.esp_part),
            p(3, "root", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", &layout.root, &ids.root_part),
            p(4, crate::image::layout::SEED_LABEL, crate::image::layout::SEED_TYPE, &layout.seed, &ids.seed_part),
        ],
    })
}

impl Manifest {
    /// Write `manifest.json` and `SHA256SUMS` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).ctx(|| "serialize manifest".into())?;
        std::fs::write(dir.join("manifest.json"), json + "\n")
            .ctx(|| "write manifest.json".into())?;
        let mut sums = String::new();
        for a in &self.artifacts {
            sums.push_str(&format!("{}  {}\n", a.sha256, a.file));
        }
        std::fs::write(dir.join("SHA256SUMS"), sums).ctx(|| "write SHA256SUMS".into())?;
        Ok(())
    }

    /// Read a manifest from an image directory, or from the directory of an image file.
    pub fn read(path: &Path) -> Result<Manifest> {
        let file = if path.is_dir() {
            path.join("manifest.json")
        } else if path.file_name().is_some_and(|n| n == "manifest.json") {
            path.to_path_buf()
        } else {
            path.parent()
                .unwrap_or(Path::new("."))
                .join("manifest.json")
        };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            crate::error::Error::config(format!("cannot read {}: {e}", file.display()))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            crate::error::Error::config(format!("{}: not a clawimg manifest: {e}", file.display()))
        })
    }
}
