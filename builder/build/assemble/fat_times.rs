//! Normalize the timestamps in a FAT32 image: mtools stamps directory entries with the
//! current local time and ignores SOURCE_DATE_EPOCH, so after filling the ESP we set every
//! entry's create/access/write time to SOURCE_DATE_EPOCH (UTC).

use crate::error::{Context, Error, Result};
use crate::support::text::civil;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// DOS (date, time) words for a Unix time, in UTC.
pub fn dos_datetime(t: u64) -> (u16, u16) {
    let (y, m, d) = civil((t / 86_400) as i64);
    let s = t % 86_400;
    let y = (y - 1980).clamp(0, 127) as u16;
    let date = (y << 9) | ((m as u16) << 5) | d as u16;
    let time =
        (((s / 3600) as u16) << 11) | ((((s / 60) % 60) as u16) << 5) | ((s % 60) / 2) as u16;
    (date, time)
}

struct Fat {
    f: File,
    cluster_bytes: u64,
    fat_off: u64,
    data_off: u64,
}

impl Fat {
    fn chain(&self, first: u32) -> Result<Vec<u32>> {
        let mut v = vec![];
        let mut c = first;
        while (2..0x0FFF_FFF8).contains(&c) && v.len() < 1 << 20 {
            v.push(c);
            let mut b = [0u8; 4];
            self.f
                .read_exact_at(&mut b, self.fat_off + c as u64 * 4)
                .ctx(|| "read FAT".into())?;
            c = u32::from_le_bytes(b) & 0x0FFF_FFFF;
        }
        Ok(v)
    }

    /// Rewrite the entries of the directory starting at `first`, recursing into subdirs.
    fn walk(&self, first: u32, date: u16, time: u16, depth: u32, n: &mut u64) -> Result<()> {
        if depth > 32 {
            return Err(Error::failed("FAT directory tree too deep".to_string()));
        }
        let mut subdirs = vec![];
        'chain: for c in self.chain(first)? {
            let off = self.data_off + (c as u64 - 2) * self.cluster_bytes;
            let mut buf = vec![0u8; self.cluster_bytes as usize];
            self.f
                .read_exact_at(&mut buf, off)
                .ctx(|| "read FAT directory".into())?;
            let mut end = false;
            for e in buf.chunks_mut(32) {
                if e[0] == 0 {
                    end = true;
                    break;
                }
                if e[0] == 0xE5 || e[11] == 0x0F {
                    continue;
                }
                e[13] = 0;
                e[14..16].copy_from_slice(&time.to_le_bytes());
                e[16..18].copy_from_slice(&date.to_le_bytes());
                e[18..20].copy_from_slice(&date.to_le_bytes());
                e[22..24].copy_from_slice(&time.to_le_bytes());
                e[24..26].copy_from_slice(&date.to_le_bytes());
                *n += 1;
                let dot = e[0] == b'.';
                if e[11] & 0x10 != 0 && !dot {
                    subdirs.push(((u16le(e, 20) as u32) << 16) | u16le(e, 26) as u32);
                }
            }
            self.f
                .write_all_at(&buf, off)
                .ctx(|| "write FAT directory".into())?;
            if end {
                break 'chain;
            }
        }
        for d in subdirs {
            self.walk(d, date, time, depth + 1, n)?;
        }
        Ok(())
    }
}

/// Set every directory entry's times in the FAT32 image `img` to `sde`; returns the count.
pub fn normalize(img: &Path, sde: u64) -> Result<u64> {
    let f = File::options()
        .read(true)
        .write(true)
        .open(img)
        .ctx(|| format!("open {}", img.display()))?;
    let mut bs = [0u8; 512];
    f.read_exact_at(&mut bs, 0)
        .ctx(|| "read FAT boot sector".into())?;
    let bps = u16le(&bs, 11) as u64;
    let spc = bs[13] as u64;
    let reserved = u16le(&bs, 14) as u64;
    let fats = bs[16] as u64;
    let fat_sz = u32le(&bs, 36) as u64;
    if u16le(&bs, 22) != 0 || fat_sz == 0 || bps == 0 || spc == 0 {
        return Err(Error::failed(format!(
            "{}: not a FAT32 filesystem",
            img.display()
        )));
    }
    let fat = Fat {
        f,
        cluster_bytes: bps * spc,
        fat_off: reserved * bps,
        data_off: (reserved + fats * fat_sz) * bps,
    };
    let (date, time) = dos_datetime(sde);
    let mut n = 0;
    fat.walk(u32le(&bs, 44), date, time, 0, &mut n)?;
    fat.f.sync_data().ctx(|| "sync ESP".into())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dos_time() {
        // 2024-04-25 00:00:00 UTC
        let (d, t) = super::dos_datetime(1_714_003_200);
        assert_eq!(d, (44 << 9) | (4 << 5) | 25);
        assert_eq!(t, 0);
        // 2023-11-14 22:13:20 UTC
        let (d, t) = super::dos_datetime(1_700_000_000);
        assert_eq!(d, (43 << 9) | (11 << 5) | 14);
        assert_eq!(t, (22 << 11) | (13 << 5) | 10);
    }
}
