//! The GPT partition table and protective MBR, written by clawimg itself (no sgdisk, no
//! loop device): BIOS boot, EFI system, secrets seed and root partitions with GUIDs from the
//! input hash. The seed sits *before* the root so systemd-repart can grow the root into the
//! free space after it; it keeps table number 4 so partitions 1-3 are numbered as before.

use crate::error::{Context, Error, Result};
use crate::image::layout::{Extent, Layout, SECTOR, SEED_LABEL, SEED_TYPE};
use crate::support::identity::Identity;
use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types;
use std::collections::BTreeMap;
use std::fs::File;

fn part(
    ty: partition_types::Type,
    guid: uuid::Uuid,
    e: Extent,
    name: &str,
    flags: u64,
) -> Partition {
    Partition {
        part_type_guid: ty,
        part_guid: guid,
        first_lba: e.first_lba,
        last_lba: e.last_lba,
        flags,
        name: name.into(),
    }
}

/// Write the protective MBR (with `bootcode` in its first 440 bytes) and both GPT headers.
/// The file must already have the full disk size.
pub fn write(file: &File, layout: &Layout, ids: &Identity, bootcode: [u8; 440]) -> Result<()> {
    let len = file.metadata().ctx(|| "stat disk image".into())?.len();
    if len != layout.disk_bytes {
        return Err(Error::failed(format!(
            "disk image is {len} bytes, layout needs {}",
            layout.disk_bytes
        )));
    }
    let mut dev = file.try_clone().ctx(|| "clone disk handle".into())?;
    let mut mbr = ProtectiveMBR::with_lb_size(
        u32::try_from(layout.disk_bytes / SECTOR - 1).unwrap_or(u32::MAX),
    );
    mbr.set_bootcode(bootcode);
    let sig = ids.disk_guid.as_bytes();
    mbr.set_disk_signature([sig[0], sig[1], sig[2], sig[3]]);
    mbr.overwrite_lba0(&mut dev)
        .ctx(|| "write protective MBR".into())?;

    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(dev, Some(ids.disk_guid))
        .ctx(|| "create GPT".into())?;
    let mut parts = BTreeMap::new();
    // Attribute bit 2: legacy BIOS bootable, as on Ubuntu's cloud images' ESP.
    parts.insert(
        1,
        part(
            partition_types::BIOS,
            ids.bios_part,
            layout.bios,
            "BIOS boot",
            0,
        ),
    );
    parts.insert(
        2,
        part(
            partition_types::EFI,
            ids.esp_part,
            layout.esp,
            "EFI System",
            0,
        ),
    );
    parts.insert(
        3,
        part(
            partition_types::LINUX_ROOT_X64,
            ids.root_part,
            layout.root,
            "root",
            0,
        ),
    );
    let seed_type = partition_types::Type {
        guid: SEED_TYPE
            .parse()
            .map_err(|e| Error::failed(format!("seed type GUID: {e}")))?,
        os: partition_types::OperatingSystem::Custom("clawimg".into()),
    };
    parts.insert(
        4,
        part(seed_type, ids.seed_part, layout.seed, SEED_LABEL, 0),
    );
    disk.update_partitions(parts)
        .ctx(|| "set GPT partitions".into())?;
    let dev = disk.write().ctx(|| "write GPT".into())?;
    dev.sync_data().ctx(|| "sync disk image".into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layout::plan;
    use crate::image::layout::MIB;

    #[test]
    fn layout_is_aligned_and_ordered() {
        let l = plan(64, 700 * MIB + 1);
        assert_eq!(l.bios.first_lba, 2048);
        assert_eq!(l.esp.first_lba, (5 * MIB) / SECTOR);
        assert_eq!(l.root.first_lba % 2048, 0);
        assert_eq!(l.root.bytes(), 701 * MIB);
        assert!(l.root.last_lba * SECTOR + 33 * SECTOR < l.disk_bytes);
    }

    #[test]
    fn writes_a_table_gpt_can_read_back() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d.raw");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let l = plan(32, 64 * MIB);
        f.set_len(l.disk_bytes).unwrap();
        let ids = Identity::from_input_hash("t");
        write(&f, &l, &ids, [0x90; 440]).unwrap();
        let d = gpt::GptConfig::new().open(&p).unwrap();
        assert_eq!(*d.guid(), ids.disk_guid);
        assert_eq!(d.partitions().len(), 4);
        assert_eq!(d.partitions()[&4].name, SEED_LABEL);
        assert!(d.partitions()[&4].last_lba < d.partitions()[&3].first_lba);
        assert_eq!(d.partitions()[&3].part_guid, ids.root_part);
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(&raw[510..512], &[0x55, 0xaa]);
        assert_eq!(raw[0], 0x90);
    }
}
