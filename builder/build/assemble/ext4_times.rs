//! Normalize inode timestamps of a finished ext4 filesystem.
//!
//! e2fsprogs 1.47.0 (`mkfs.ext4 -d`) copies each source file's ctime into the new inode,
//! and ctime cannot be set on the host. So after mkfs we rewrite, for every in-use inode,
//! atime, ctime and crtime to SOURCE_DATE_EPOCH, clamp mtime to it, zero the nanoseconds,
//! and recompute the inode checksum (metadata_csum). The superblock's own times come from
//! `E2FSPROGS_FAKE_TIME` (see `ext4::make`). `e2fsck -fn` proves the result consistent.

use crate::error::{Context, Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SB_OFFSET: u64 = 1024;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
const BG_INODE_UNINIT: u16 = 0x1;

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// crc32c as ext4 uses it: no pre/post inversion (the crate inverts both).
fn crc_raw(crc: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!crc, data)
}

/// What the pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Normalized {
    /// In-use inodes visited.
    pub inodes: u64,
    /// Inodes whose bytes changed.
    pub changed: u64,
}

/// Normalize one inode record in place; returns whether it changed.
fn fix_inode(raw: &mut [u8], inum: u32, sde: u32, csum_seed: Option<u32>) -> bool {
    let before = raw.to_vec();
    let extra = if raw.len() > 128 {
        u16le(raw, 0x80) as usize
    } else {
        0
    };
    let fits = |off: usize| off + 4 <= 128 + extra;
    // atime, ctime; mtime clamped (a package file keeps its older mtime).
    raw[0x08..0x0C].copy_from_slice(&sde.to_le_bytes());
    raw[0x0C..0x10].copy_from_slice(&sde.to_le_bytes());
    let mtime = u32le(raw, 0x10) as i32 as i64;
    let mtime_hi = if fits(0x88) {
        (u32le(raw, 0x88) & 3) as i64
    } else {
        0
    };
    if mtime + (mtime_hi << 32) > sde as i64 || mtime < 0 {
        raw[0x10..0x14].copy_from_slice(&sde.to_le_bytes());
    }
    for off in [0x84usize, 0x88, 0x8C, 0x94] {
        if fits(off) {
            raw[off..off + 4].copy_from_slice(&0u32.to_le_bytes());
        }
    }
    if fits(0x90) {
        raw[0x90..0x94].copy_from_slice(&sde.to_le_bytes());
    }
    if let Some(seed) = csum_seed {
        raw[0x7C..0x7E].copy_from_slice(&[0, 0]);
        let has_hi = extra >= 4;
        if has_hi {
            raw[0x82..0x84].copy_from_slice(&[0, 0]);
        }
        let gen = u32le(raw, 0x64);
        let mut c = crc_raw(seed, &inum.to_le_bytes());
        c = crc_raw(c, &gen.to_le_bytes());
        c = crc_raw(c, raw);
        raw[0x7C..0x7E].copy_from_slice(&(c as u16).to_le_bytes());
        if has_hi {
            raw[0x82..0x84].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
        }
    }
    raw != before.as_slice()
}

/// Normalize every in-use inode of the ext4 filesystem at `offset` in `disk`.
pub fn normalize(disk: &Path, offset: u64, sde: u64) -> Result<Normalized> {
    let sde = u32::try_from(sde)
        .map_err(|_| Error::config(format!("SOURCE_DATE_EPOCH {sde} is past 2106")))?;
    let f = File::options()
        .read(true)
        .write(true)
        .open(disk)
        .ctx(|| format!("open {}", disk.display()))?;
    let mut sb = vec![0u8; 1024];
    f.read_exact_at(&mut sb, offset + SB_OFFSET)
        .ctx(|| "read ext4 superblock".into())?;
    if u16le(&sb, 0x38) != 0xEF53 {
        return Err(Error::failed(
            "no ext4 superblock at the root partition".to_string(),
        ));
    }
    let block = 1024u64 << u32le(&sb, 0x18);
    let inodes_count = u32le(&sb, 0x00) as u64;
    let ipg = u32le(&sb, 0x28) as u64;
    let first_data_block = u32le(&sb, 0x14) as u64;
    let inode_size = if u32le(&sb, 0x4C) == 0 {
        128
    } else {
        u16le(&sb, 0x58) as u64
    };
    let incompat = u32le(&sb, 0x60);
    let ro_compat = u32le(&sb, 0x64);
    let desc_size = if incompat & INCOMPAT_64BIT != 0 {
        u16le(&sb, 0xFE) as u64
    } else {
        32
    };
    let csum_seed = (ro_compat & RO_COMPAT_METADATA_CSUM != 0).then(|| {
        if incompat & INCOMPAT_CSUM_SEED != 0 {
            u32le(&sb, 0x270)
        } else {
            crc_raw(!0, &sb[0x68..0x78])
        }
    });
    let groups = inodes_count.div_ceil(ipg);
    let mut gdt = vec![0u8; (groups * desc_size) as usize];
    f.read_exact_at(&mut gdt, offset + (first_data_block + 1) * block)
        .ctx(|| "read group descriptors".into())?;
    let mut n = Normalized::default();
    for g in 0..groups {
        let d = &gdt[(g * desc_size) as usize..((g + 1) * desc_size) as usize];
        if u16le(d, 0x12) & BG_INODE_UNINIT != 0 {
            continue;
        }
        let hi = |o: usize| {
            if desc_size >= 64 {
                (u32le(d, o) as u64) << 32
            } else {
                0
            }
        };
        let bitmap_blk = u32le(d, 0x04) as u64 | hi(0x24);
        let table_blk = u32le(d, 0x08) as u64 | hi(0x28);
        let mut bitmap = vec![0u8; ipg.div_ceil(8) as usize];
        f.read_exact_at(&mut bitmap, offset + bitmap_blk * block)
            .ctx(|| "read inode bitmap".into())?;
        let mut table = vec![0u8; (ipg * inode_size) as usize];
        f.read_exact_at(&mut table, offset + table_blk * block)
            .ctx(|| "read inode table".into())?;
        let mut dirty = false;
        for i in 0..ipg {
            if bitmap[(i / 8) as usize] & (1 << (i % 8)) == 0 {
                continue;
            }
            let rec = &mut table[(i * inode_size) as usize..((i + 1) * inode_size) as usize];
            if rec.iter().all(|&b| b == 0) {
                continue; // reserved inode never written
            }
            n.inodes += 1;
            if fix_inode(rec, (g * ipg + i + 1) as u32, sde, csum_seed) {
                n.changed += 1;
                dirty = true;
            }
        }
        if dirty {
            f.write_all_at(&table, offset + table_blk * block)
                .ctx(|| "write inode table".into())?;
        }
    }
    f.sync_data().ctx(|| "sync disk".into())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc_raw_matches_known_vector() {
        // crc32c("123456789") = 0xE3069283 with the standard inversions.
        assert_eq!(!super::crc_raw(!0, b"123456789"), 0xE306_9283);
    }
}
