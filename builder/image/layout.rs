//! The disk layout every clawimg image has: BIOS boot, EFI system, secrets seed and root
//! partitions, their sizes and type GUIDs, and how to find one in an image's own GPT.

use crate::error::{Error, Result};
use std::path::Path;

/// Sector size of the image.
pub const SECTOR: u64 = 512;
/// One MiB in bytes.
pub const MIB: u64 = 1 << 20;
/// Size of the BIOS boot partition (holds GRUB's core image).
pub const BIOS_BOOT_MIB: u64 = 4;
/// Size of the secrets seed partition (see `seed.rs`).
pub const SEED_MIB: u64 = 1;
/// GPT partition name of the seed partition (`/dev/disk/by-partlabel/clawimg-seed`).
pub const SEED_LABEL: &str = "clawimg-seed";
/// Partition type GUID of the seed partition (clawimg's own).
pub const SEED_TYPE: &str = "13930FA3-6C38-4A27-8059-5D2EC4C41F30";

/// One partition's place on the disk (LBA ranges are inclusive, like GPT's).
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq, Eq)]
pub struct Extent {
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
}

impl Extent {
    /// Byte offset of the partition.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * SECTOR
    }
}

/// The disk layout.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq, Eq)]
pub struct Layout {
    /// Total image size in bytes.
    pub disk_bytes: u64,
    /// Partition 1: BIOS boot (GRUB core image).
    pub bios: Extent,
    /// Partition 2: EFI system partition (FAT).
    pub esp: Extent,
    /// Partition 3: ext4 root.
    pub root: Extent,
    /// Partition 4: secrets seed, between the ESP and the root on disk.
    pub seed: Extent,
}

/// Plan a layout: 1 MiB alignment, partitions in order, 1 MiB tail for the backup GPT.
pub fn plan(esp_mib: u64, root_bytes: u64) -> Layout {
    let root_mib = root_bytes.div_ceil(MIB);
    let ext = |start_mib: u64, mib: u64| Extent {
        first_lba: start_mib * MIB / SECTOR,
        last_lba: (start_mib + mib) * MIB / SECTOR - 1,
    };
    let bios = ext(1, BIOS_BOOT_MIB);
    let esp = ext(1 + BIOS_BOOT_MIB, esp_mib);
    let seed = ext(1 + BIOS_BOOT_MIB + esp_mib, SEED_MIB);
    let root = ext(1 + BIOS_BOOT_MIB + esp_mib + SEED_MIB, root_mib);
    let disk_bytes = (1 + BIOS_BOOT_MIB + esp_mib + SEED_MIB + root_mib + 1) * MIB;
    Layout {
        disk_bytes,
        bios,
        esp,
        root,
        seed,
    }
}

/// A partition found in an image's own GPT.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    /// Its place on the disk.
    pub extent: Extent,
}

/// Find a partition by type GUID in the image's GPT (not trusting the manifest).
pub fn find_partition(raw: &Path, type_guid: &str) -> Result<Found> {
    let want: uuid::Uuid = type_guid
        .parse()
        .map_err(|e| Error::failed(format!("type GUID {type_guid}: {e}")))?;
    let disk = gpt::GptConfig::new()
        .writable(false)
        .open(raw)
        .map_err(|e| Error::config(format!("{}: no readable GPT: {e}", raw.display())))?;
    let p = disk
        .partitions()
        .values()
        .find(|p| p.part_type_guid.guid == want)
        .ok_or_else(|| {
            Error::config(format!(
                "{}: no partition of type {type_guid} in its GPT",
                raw.display()
            ))
        })?;
    Ok(Found {
        extent: Extent {
            first_lba: p.first_lba,
            last_lba: p.last_lba,
        },
    })
}

/// The seed partition of an image (by type GUID; its name must be `clawimg-seed`).
pub fn seed_partition(raw: &Path) -> Result<Extent> {
    let f = find_partition(raw, SEED_TYPE).map_err(|e| {
        Error::config(format!(
            "{e}: the image has no {SEED_LABEL} partition (built by an older clawimg?)"
        ))
    })?;
    Ok(f.extent)
}
