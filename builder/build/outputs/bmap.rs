//! Block map of a sparse image (like bmaptool's): the allocated byte ranges, found with
//! SEEK_DATA/SEEK_HOLE, and a sha256 over their contents. Flashing writes only these.

use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Ranges are aligned to this many bytes.
pub const BLOCK: u64 = 4096;

/// The block map of one image file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockMap {
    /// Image size in bytes.
    pub image_bytes: u64,
    /// Alignment of the ranges.
    pub block_size: u64,
    /// Bytes covered by the ranges.
    pub mapped_bytes: u64,
    /// `[offset, length]` pairs in bytes, sorted, non-overlapping.
    pub ranges: Vec<[u64; 2]>,
    /// sha256 of the mapped ranges' contents, concatenated in order.
    pub sha256: String,
    /// sha256 of each range on its own (as bmaptool records them), so a reader can check
    /// every range as it reads it. Absent in maps written by older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub range_sha256: Vec<String>,
}

/// Where the block map of `image` is stored (`NAME.raw` → `NAME.bmap.json`).
pub fn path_for(image: &Path) -> PathBuf {
    image.with_extension("bmap.json")
}

/// Allocated ranges of a file (aligned outwards to [`BLOCK`]).
pub fn ranges(f: &File) -> Result<Vec<[u64; 2]>> {
    let len = f.metadata().ctx(|| "stat image".into())?.len();
    let fd = f.as_raw_fd();
    let mut out: Vec<[u64; 2]> = vec![];
    let mut pos: i64 = 0;
    while (pos as u64) < len {
        // SAFETY: lseek on an fd we own; errors are returned as -1 and handled.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no more data
        }
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let hole = if hole < 0 { len as i64 } else { hole };
        let start = (data as u64) / BLOCK * BLOCK;
        let end = ((hole as u64).div_ceil(BLOCK) * BLOCK).min(len);
        match out.last_mut() {
            Some(last) if last[0] + last[1] >= start => {
                last[1] = end.max(last[0] + last[1]) - last[0]
            }
            _ => out.push([start, end - start]),
        }
        pos = hole;
    }
    Ok(out)
}

/// Feed the contents of `ranges` of `f` to `sink`, in order.
pub fn read_ranges(
    f: &mut File,
    ranges: &[[u64; 2]],
    mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for [off, len] in ranges {
        f.seek(SeekFrom::Start(*off)).ctx(|| "seek".into())?;
        let mut left = *len;
        let mut at = *off;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..n])
                .ctx(|| format!("read {n} bytes at {at}"))?;
            sink(at, &buf[..n])?;
            left -= n as u64;
            at += n as u64;
        }
    }
    Ok(())
}

/// sha256 over the given ranges of a file.
pub fn hash_ranges(path: &Path, ranges: &[[u64; 2]]) -> Result<String> {
    Ok(hash_each(path, ranges)?.0)
}

/// sha256 over the given ranges of a file, and of each range on its own.
pub fn hash_each(path: &Path, ranges: &[[u64; 2]]) -> Result<(String, Vec<String>)> {
    let mut f = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let (mut all, mut one) = (Sha256::new(), Sha256::new());
    let mut each = Vec::with_capacity(ranges.len());
    for r in ranges {
        read_ranges(&mut f, std::slice::from_ref(r), |_, b| {
            all.update(b);
            one.update(b);
            Ok(())
        })?;
        each.push(hex::encode(one.finalize_reset()));
    }
    Ok((hex::encode(all.finalize()), each))
}

/// sha256 of a whole file, holes included, without reading the holes: their zeros come
/// from memory instead of the kernel zero-filling pages (a 1.3 GiB image is half holes).
/// `progress` gets the bytes hashed as they go.
pub fn sha256_sparse(path: &Path, mut progress: impl FnMut(u64)) -> Result<String> {
    let mut f = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let len = f.metadata().ctx(|| "stat".into())?.len();
    let map = ranges(&f)?;
    let zeros = vec![0u8; 1 << 20];
    let zero_fill = |h: &mut Sha256, progress: &mut dyn FnMut(u64), mut n: u64| {
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            h.update(&zeros[..k]);
            progress(k as u64);
            n -= k as u64;
        }
    };
    let mut h = Sha256::new();
    let mut pos = 0u64;
    read_ranges(&mut f, &map, |at, buf| {
        zero_fill(&mut h, &mut progress, at - pos);
        h.update(buf);
        progress(buf.len() as u64);
        pos = at + buf.len() as u64;
        Ok(())
    })?;
    zero_fill(&mut h, &mut progress, len - pos);
    Ok(hex::encode(h.finalize()))
}

/// Compute the block map of an image.
pub fn compute(image: &Path) -> Result<BlockMap> {
    let f = File::open(image).ctx(|| format!("open {}", image.display()))?;
    let image_bytes = f.metadata().ctx(|| "stat".into())?.len();
    let ranges = ranges(&f)?;
    let (sha256, range_sha256) = hash_each(image, &ranges)?;
    Ok(BlockMap {
        image_bytes,
        block_size: BLOCK,
        mapped_bytes: ranges.iter().map(|r| r[1]).sum(),
        ranges,
        sha256,
        range_sha256,
    })
}

/// Write `NAME.bmap.json` beside the image.
pub fn write(image: &Path, map: &BlockMap) -> Result<PathBuf> {
    let p = path_for(image);
    let json = serde_json::to_string(map).ctx(|| "serialize block map".into())?;
    std::fs::write(&p, json + "\n").ctx(|| format!("write {}", p.display()))?;
    Ok(p)
}

/// Load the stored block map, checking it belongs to this image (size); compute it if absent.
pub fn load_or_compute(image: &Path) -> Result<BlockMap> {
    let p = path_for(image);
    let size = std::fs::metadata(image)
        .map_err(|e| Error::config(format!("image {}: {e}", image.display())))?
        .len();
    if let Ok(text) = std::fs::read_to_string(&p) {
        let m: BlockMap = serde_json::from_str(&text)
            .map_err(|e| Error::config(format!("{}: {e}", p.display())))?;
        if m.image_bytes != size {
            return Err(Error::config(format!(
                "{} is for a {}-byte image, {} has {size} (truncated, or not the image of this build); nothing was written",
                p.display(),
                m.image_bytes,
                image.display()
            )));
        }
        return Ok(m);
    }
    compute(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn finds_data_and_skips_holes() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.raw");
        let mut f = File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&[1u8; 10]).unwrap();
        f.seek(SeekFrom::Start(40 << 20)).unwrap();
        f.write_all(&[2u8; 8192]).unwrap();
        f.sync_all().unwrap();
        let m = compute(&p).unwrap();
        assert_eq!(m.image_bytes, 64 << 20);
        assert!(m.ranges.len() >= 2, "{:?}", m.ranges);
        assert!(m.mapped_bytes < 2 << 20, "{}", m.mapped_bytes);
        assert!(m
            .ranges
            .iter()
            .any(|r| r[0] <= 1 << 20 && r[0] + r[1] >= (1 << 20) + 10));
        assert!(m
            .ranges
            .iter()
            .any(|r| r[0] <= 40 << 20 && r[0] + r[1] >= (40 << 20) + 8192));
        for r in &m.ranges {
            assert_eq!(r[0] % BLOCK, 0);
        }
        assert_eq!(m.range_sha256.len(), m.ranges.len());
        assert_eq!(m.range_sha256[0], hash_ranges(&p, &m.ranges[..1]).unwrap());
        // The sparse hash equals a plain read of every byte, with a tail hole too.
        let mut seen = 0;
        let sparse = sha256_sparse(&p, |n| seen += n).unwrap();
        assert_eq!(sparse, crate::support::digest::sha256_file(&p).unwrap());
        assert_eq!(seen, 64 << 20);
    }
}
