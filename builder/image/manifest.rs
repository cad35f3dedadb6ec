//! `manifest.json` and `SHA256SUMS`: what an image is, from which inputs.
//!
//! The manifest is the only way commands learn about a build, so every section is typed
//! here. The identity, partitions and `extra` sections have always been written with their
//! keys sorted (they went through `serde_json::Value`); [`sorted_keys`] keeps that, so a
//! manifest reads back and writes out byte for byte as earlier versions wrote it.

use crate::error::{Context, Error, Result};
use crate::image::expect::Expectations;
use crate::image::layout::{Extent, Layout, SEED_LABEL, SEED_TYPE};
use crate::image::provenance::Provenance;
use crate::profile::secrets::Slots;
use crate::support::dpkg::Package;
use crate::support::identity::Identity;
use crate::support::repro::EpochSource;
use serde::{Deserialize, Serialize, Serializer};
use std::path::Path;
use uuid::Uuid;

/// Format version this clawimg writes (and the newest it reads).
pub const MANIFEST_VERSION: u32 = 1;

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
    /// Format version of this file ([`MANIFEST_VERSION`]).
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
    #[serde(serialize_with = "sorted_keys")]
    pub identity: Identity,
    /// Partition table.
    #[serde(serialize_with = "sorted_keys")]
    pub partitions: PartitionTable,
    /// Installed packages.
    pub packages: Vec<Package>,
    /// raw and qcow2 outputs, and the SBOM.
    pub artifacts: Vec<Artifact>,
    /// Bytes of data in the root tree.
    pub rootfs_bytes: u64,
    /// Sections added by the stages after the base (provenance, units, images, ...).
    #[serde(default, serialize_with = "sorted_keys")]
    pub extra: Extra,
}

/// The GPT as built.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionTable {
    /// Always `gpt`.
    pub table: String,
    /// Disk GUID.
    pub disk_guid: Uuid,
    /// Size of the whole disk.
    pub disk_bytes: u64,
    /// The partitions, by number.
    pub partitions: Vec<PartitionEntry>,
}

/// One partition of [`PartitionTable`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionEntry {
    /// Partition number (1-based).
    pub number: u32,
    /// GPT partition name.
    pub name: String,
    /// Partition type GUID, upper case as the specifications spell it.
    #[serde(rename = "type")]
    pub type_guid: String,
    /// Unique partition GUID.
    pub guid: Uuid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// The sections the stages after the base add. Each is optional: older manifests lack
/// some, and `hardening` and `images` are only written when the profile has any.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Extra {
    /// Which overlay or module wrote each path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Overlay names, in the order they were applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlays: Option<Vec<String>>,
    /// What the units stage installed, enabled and masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<UnitsSection>,
    /// Overlay paths with a declared owner, group and mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_files: Option<Vec<Declared>>,
    /// Secret slot declarations (never values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Slots>,
    /// The resolved hardening plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardening: Option<HardeningSection>,
    /// SOURCE_DATE_EPOCH and whether a lock file pinned the packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducibility: Option<Reproducibility>,
    /// What `clawimg verify` compares a node with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Expectations>,
    /// Container images baked into the disk image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<ImageEntry>>,
    /// The software bill of materials beside the manifest (absent in images built before
    /// clawimg wrote one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<SbomRef>,
}

/// Where the build's SBOM is and what it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SbomRef {
    /// File name in the output directory (also listed in `artifacts` and SHA256SUMS).
    pub file: String,
    /// `CycloneDX`.
    pub format: String,
    /// Specification version, `1.5`.
    pub spec_version: String,
    /// sha256 of the file.
    pub sha256: String,
}

/// A path whose owner, group and mode the metadata declares (for probes and the manifest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Declared {
    /// Image path.
    pub path: String,
    /// User name (or uid) as declared, default root.
    pub owner: String,
    /// Group name (or gid) as declared, default root.
    pub group: String,
    /// Final mode, octal digits as `stat -c %a` prints them.
    pub mode: String,
}

/// What the units stage did (for the manifest and the probes).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct UnitsSection {
    /// Installed files, relative to /usr/lib/systemd/system.
    pub installed: Vec<String>,
    /// Units enabled.
    pub enabled: Vec<String>,
    /// Units masked.
    pub masked: Vec<String>,
    /// Symlinks made by enable and mask.
    pub links: Vec<String>,
    /// How `systemd-analyze verify` went (or why it did not run).
    pub verify: String,
}

/// The hardening plan as the hardening stage serialized it. Its types belong to the build
/// pipeline, a layer above this one, so it is kept as a document here and turned back into
/// the plan by `build::harden::from_manifest`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct HardeningSection(pub serde_json::Value);

/// Where the build's timestamps came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reproducibility {
    /// SOURCE_DATE_EPOCH of the build.
    pub source_date_epoch: u64,
    /// Where it came from.
    pub source_date_epoch_from: EpochSource,
    /// Whether the profile had a lock file.
    pub locked: bool,
}

/// One container image baked into the disk image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageEntry {
    /// Catalog name.
    pub name: String,
    /// Reference the image is tagged with after loading.
    pub reference: String,
    /// Pinned digest (manifest or index).
    pub digest: String,
    /// Digest of the platform manifest.
    pub manifest_digest: String,
    /// Docker image id (config digest).
    pub image_id: String,
    /// Platform.
    pub platform: String,
    /// Archive path in the image.
    pub archive: String,
    /// sha256 of the archive.
    pub archive_sha256: String,
    /// Archive size in bytes.
    pub bytes: u64,
}

/// Serialize through `serde_json::Value`, whose maps keep their keys sorted (see the
/// module documentation).
fn sorted_keys<T: Serialize, S: Serializer>(v: &T, s: S) -> std::result::Result<S::Ok, S::Error> {
    serde_json::to_value(v)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

impl PartitionTable {
    /// The table of a disk laid out as `layout` with the identifiers `ids`.
    pub fn new(layout: &Layout, ids: &Identity) -> PartitionTable {
        let p = |number: u32, name: &str, ty: &str, e: &Extent, guid: &Uuid| PartitionEntry {
            number,
            name: name.to_string(),
            type_guid: ty.to_string(),
            guid: *guid,
            first_lba: e.first_lba,
            last_lba: e.last_lba,
            offset: e.offset(),
            bytes: e.bytes(),
        };
        PartitionTable {
            table: "gpt".to_string(),
            disk_guid: ids.disk_guid,
            disk_bytes: layout.disk_bytes,
            partitions: vec![
                p(
                    1,
                    "BIOS boot",
                    "21686148-6449-6E6F-744E-656564454649",
                    &layout.bios,
                    &ids.bios_part,
                ),
                p(
                    2,
                    "EFI System",
                    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                    &layout.esp,
                    &ids.esp_part,
                ),
                p(
                    3,
                    "root",
                    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
                    &layout.root,
                    &ids.root_part,
                ),
                p(4, SEED_LABEL, SEED_TYPE, &layout.seed, &ids.seed_part),
            ],
        }
    }
}

impl Extra {
    /// The secret slots the image declares (none when the section is absent).
    pub fn secret_slots(&self) -> Slots {
        self.secrets.clone().unwrap_or_default()
    }
}

impl Manifest {
    /// The manifest as written to `manifest.json`.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).ctx(|| "serialize manifest".into())
    }

    /// Write `manifest.json` and `SHA256SUMS` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::write(dir.join("manifest.json"), self.to_json()? + "\n")
            .ctx(|| "write manifest.json".into())?;
        let mut sums = String::new();
        for a in &self.artifacts {
            sums.push_str(&format!("{}  {}\n", a.sha256, a.file));
        }
        std::fs::write(dir.join("SHA256SUMS"), sums).ctx(|| "write SHA256SUMS".into())?;
        Ok(())
    }

    /// Parse a manifest's text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Manifest> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| {
            Error::config(format!("{}: not a clawimg manifest: {e}", file.display())).with_source(e)
        })?;
        if m.manifest_version > MANIFEST_VERSION {
            return Err(Error::config(format!(
                "{}: manifest version {} is newer than this clawimg reads ({MANIFEST_VERSION}): use a newer clawimg",
                file.display(),
                m.manifest_version
            )));
        }
        Ok(m)
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
            Error::config(format!("cannot read {}: {e}", file.display())).with_source(e)
        })?;
        Manifest::parse(&text, &file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as the build wrote it before the sections were typed (lists shortened).
    const V1: &str = include_str!("testdata/manifest-v1.json");

    #[test]
    fn old_manifest_round_trips_byte_for_byte() {
        let m = Manifest::parse(V1, Path::new("manifest-v1.json")).unwrap();
        assert_eq!(m.to_json().unwrap() + "\n", V1);
        let x = &m.extra;
        assert_eq!(x.overlays.as_deref(), Some(&["swarm".to_string()][..]));
        assert_eq!(
            x.units.as_ref().unwrap().enabled,
            vec!["clawimg-swarm.service"]
        );
        assert_eq!(x.images.as_ref().unwrap().len(), 2);
        assert!(x.secret_slots().contains_key("swarm_join_token"));
        assert_eq!(
            x.reproducibility.as_ref().unwrap().source_date_epoch_from,
            EpochSource::Default
        );
        assert_eq!(m.partitions.partitions[3].name, SEED_LABEL);
        assert!(x.hardening.as_ref().unwrap().0["sysctl"].is_object());
    }

    #[test]
    fn sections_are_optional_and_versions_checked() {
        let mut v: serde_json::Value = serde_json::from_str(V1).unwrap();
        v["extra"] = serde_json::json!({});
        let m = Manifest::parse(&v.to_string(), Path::new("m.json")).unwrap();
        assert_eq!(m.extra, Extra::default());
        assert!(m.to_json().unwrap().contains("\"extra\": {}"));
        v["manifest_version"] = serde_json::json!(MANIFEST_VERSION + 1);
        let e = Manifest::parse(&v.to_string(), Path::new("m.json")).unwrap_err();
        assert!(
            e.to_string()
                .contains("m.json: manifest version 2 is newer"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
        let e = Manifest::parse("{}", Path::new("m.json")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("m.json: not a clawimg manifest: "),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
