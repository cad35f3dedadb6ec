//! Disk and filesystem identifiers derived from the build's input hash, so the same inputs
//! always give the same GUIDs and UUIDs (and different inputs different ones).

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Every identifier the disk carries.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Identity {
    /// GPT disk GUID.
    pub disk_guid: Uuid,
    /// BIOS boot partition GUID.
    pub bios_part: Uuid,
    /// EFI system partition GUID.
    pub esp_part: Uuid,
    /// Root partition GUID (kernel `root=PARTUUID=`).
    pub root_part: Uuid,
    /// Secrets seed partition GUID.
    pub seed_part: Uuid,
    /// ext4 filesystem UUID of the root.
    pub root_fs: Uuid,
    /// ext4 directory hash seed.
    pub root_hash_seed: Uuid,
    /// FAT volume id of the ESP.
    pub esp_volume_id: u32,
}

/// A UUID (version 4 layout) derived from `seed` and a purpose label.
pub fn derive(seed: &str, label: &str) -> Uuid {
    let mut h = Sha256::new();
    h.update(seed.as_bytes());
    h.update([0]);
    h.update(label.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

impl Identity {
    /// All identifiers for a build whose input hash is `input_hash`.
    pub fn from_input_hash(input_hash: &str) -> Self {
        let vol = derive(input_hash, "esp-volume-id");
        Identity {
            disk_guid: derive(input_hash, "disk"),
            bios_part: derive(input_hash, "part-bios"),
            esp_part: derive(input_hash, "part-esp"),
            root_part: derive(input_hash, "part-root"),
            seed_part: derive(input_hash, "part-seed"),
            root_fs: derive(input_hash, "fs-root"),
            root_hash_seed: derive(input_hash, "fs-root-hash-seed"),
            esp_volume_id: u32::from_le_bytes(
                vol.as_bytes()[..4].try_into().unwrap_or([1, 2, 3, 4]),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_and_distinct() {
        let a = super::Identity::from_input_hash("abc");
        let b = super::Identity::from_input_hash("abc");
        let c = super::Identity::from_input_hash("abd");
        assert_eq!(a, b);
        assert_ne!(a.root_fs, c.root_fs);
        assert_ne!(a.root_fs, a.root_part);
    }
}
