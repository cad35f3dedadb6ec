//! Is this file still the build's image? `flash`, `seal` and `upload` check it against what
//! the build recorded (`SHA256SUMS` and the manifest beside it; per range, the block map)
//! while they read it, and refuse a corrupted or truncated file before a target or a cloud
//! is touched. Read-back verification alone only proves the target equals the file.

use crate::build::outputs::bmap::{self, BlockMap};
use crate::error::{Context, Error, Result};
use crate::image::manifest::Manifest;
use crate::support::progress::Progress;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// A whole-file sha256 the build recorded, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Hex sha256.
    pub sha256: String,
    /// `SHA256SUMS` and/or `manifest.json`.
    pub source: String,
}

/// The sha256 the build recorded for `image`: its line in `SHA256SUMS` beside it and its
/// artifact in `manifest.json`; when both exist they must agree. `None` when neither lists
/// the file (a sealed node copy, a file from elsewhere).
pub fn recorded(image: &Path) -> Result<Option<Recorded>> {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = image
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let sums_path = dir.join("SHA256SUMS");
    let from_sums = match std::fs::read_to_string(&sums_path) {
        Ok(text) => text.lines().find_map(|l| {
            let (sum, file) = l.split_once(char::is_whitespace)?;
            let file = file.trim_start().trim_start_matches('*');
            (file == name).then(|| sum.to_ascii_lowercase())
        }),
        Err(_) => None,
    };
    let from_manifest = if dir.join("manifest.json").exists() {
        Manifest::read(image)?
            .artifacts
            .iter()
            .find(|a| a.file == name)
            .map(|a| a.sha256.to_ascii_lowercase())
    } else {
        None
    };
    Ok(match (from_sums, from_manifest) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::config(format!(
                "{}: SHA256SUMS says {a}, manifest.json says {b}: the image directory was altered after the build; nothing was written",
                dir.display()
            )))
        }
        (Some(a), Some(_)) => Some(Recorded {
            sha256: a,
            source: "SHA256SUMS and manifest.json".into(),
        }),
        (Some(a), None) => Some(Recorded {
            sha256: a,
            source: "SHA256SUMS".into(),
        }),
        (None, Some(b)) => Some(Recorded {
            sha256: b,
            source: "manifest.json".into(),
        }),
        (None, None) => None,
    })
}

/// What a check found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// sha256 of the whole file (holes read as zeros).
    pub sha256: String,
    /// sha256 of each of the requested segments, in order.
    pub segment_sha256: Vec<String>,
    /// What the file was checked against (empty: nothing recorded, nothing checked).
    pub against: Vec<String>,
}

/// Hashes consecutive ranges of a stream that is fed in order from offset 0.
struct Ranges<'a> {
    ranges: &'a [[u64; 2]],
    idx: usize,
    cur: Sha256,
    all: Sha256,
    sums: Vec<String>,
}

impl<'a> Ranges<'a> {
    fn new(ranges: &'a [[u64; 2]]) -> Self {
        Ranges {
            ranges,
            idx: 0,
            cur: Sha256::new(),
            all: Sha256::new(),
            sums: vec![],
        }
    }

    /// Feed `buf` at `at`; bytes outside every range go to `outside`.
    fn feed(
        &mut self,
        mut at: u64,
        mut buf: &[u8],
        outside: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        loop {
            let Some(&[s, l]) = self.ranges.get(self.idx) else {
                return if buf.is_empty() {
                    Ok(())
                } else {
                    outside(at, buf)
                };
            };
            let end = s + l;
            if at < s {
                let k = ((s - at) as usize).min(buf.len());
                outside(at, &buf[..k])?;
                (at, buf) = (at + k as u64, &buf[k..]);
                if buf.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let k = ((end - at) as usize).min(buf.len());
            self.cur.update(&buf[..k]);
            self.all.update(&buf[..k]);
            (at, buf) = (at + k as u64, &buf[k..]);
            if at == end {
                self.sums.push(hex::encode(self.cur.finalize_reset()));
                self.idx += 1;
            }
            if buf.is_empty() {
                return Ok(());
            }
        }
    }

    fn complete(&self) -> bool {
        self.idx == self.ranges.len()
    }
}

fn corrupt(file: &Path, what: String) -> Error {
    Error::config(format!(
        "{}: {what}: the image changed after the build (corrupted, truncated or edited); refusing it, nothing was written",
        file.display()
    ))
}

/// Takes the file's bytes in order: offset, bytes, whether they are a hole.
type Feed<'f> = dyn FnMut(u64, &[u8], bool) -> Result<()> + 'f;

/// Read `file` once, holes as zeros: its whole sha256 against `recorded`; each range of
/// `map` (when it is the build's recorded block map) against the map's sums, and no data
/// outside its ranges; and the sha256 of each of `segments`, which a writer checks again
/// as it reads them a second time.
pub fn check(
    file: &Path,
    recorded: Option<&Recorded>,
    map: Option<&BlockMap>,
    segments: &[[u64; 2]],
    progress: &Progress,
) -> Result<Checked> {
    let mut f = File::open(file).map_err(|e| Error::config(format!("{}: {e}", file.display())))?;
    let size = f
        .metadata()
        .ctx(|| format!("stat {}", file.display()))?
        .len();
    if let Some(m) = map {
        if m.image_bytes != size {
            return Err(corrupt(
                file,
                format!("{size} bytes, the block map says {}", m.image_bytes),
            ));
        }
    }
    let data = bmap::ranges(&f)?;
    let no_ranges: [[u64; 2]; 0] = [];
    let mut mapped = Ranges::new(map.map(|m| m.ranges.as_slice()).unwrap_or(&no_ranges));
    let mut segs = Ranges::new(segments);
    let mut whole = Sha256::new();
    let bar = progress.bytes("verify image", size);
    let zeros = vec![0u8; 1 << 20];
    let mut buf = vec![0u8; 1 << 20];
    let check_map = map.is_some();
    let mut feed = |at: u64, b: &[u8], hole: bool| -> Result<()> {
        whole.update(b);
        let mut outside = |o: u64, x: &[u8]| -> Result<()> {
            if check_map && !hole {
                if let Some(i) = x.iter().position(|&c| c != 0) {
                    return Err(corrupt(
                        file,
                        format!(
                            "data at byte {} lies outside every range of the block map",
                            o + i as u64
                        ),
                    ));
                }
            }
            Ok(())
        };
        mapped.feed(at, b, &mut outside)?;
        segs.feed(at, b, &mut |_, _| Ok(()))?;
        bar.inc(b.len() as u64);
        Ok(())
    };
    let zero_fill = |from: u64, to: u64, feed: &mut Feed| {
        let mut at = from;
        while at < to {
            let n = (to - at).min(zeros.len() as u64) as usize;
            feed(at, &zeros[..n], true)?;
            at += n as u64;
        }
        Ok::<_, Error>(())
    };
    let mut pos = 0u64;
    for [off, len] in data {
        zero_fill(pos, off, &mut feed)?;
        f.seek(SeekFrom::Start(off)).ctx(|| "seek".into())?;
        let mut at = off;
        let end = (off + len).min(size);
        while at < end {
            let n = (end - at).min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..n])
                .map_err(|e| corrupt(file, format!("read at byte {at}: {e}")))?;
            feed(at, &buf[..n], false)?;
            at += n as u64;
        }
        pos = end;
    }
    zero_fill(pos, size, &mut feed)?;
    bar.finish_and_clear();
    let sha256 = hex::encode(whole.finalize());
    let mut against = vec![];
    if let Some(r) = recorded {
        if r.sha256 != sha256 {
            return Err(corrupt(
                file,
                format!("sha256 {sha256}, but {} records {}", r.source, r.sha256),
            ));
        }
        against.push(r.source.clone());
    }
    if let Some(m) = map {
        if !mapped.complete() || !segs.complete() {
            return Err(corrupt(file, "shorter than its block map".into()));
        }
        if !m.range_sha256.is_empty() {
            if m.range_sha256.len() != m.ranges.len() {
                return Err(Error::config(format!(
                    "{}: block map lists {} ranges but {} range checksums",
                    bmap::path_for(file).display(),
                    m.ranges.len(),
                    m.range_sha256.len()
                )));
            }
            if let Some(i) = (0..m.ranges.len()).find(|&i| m.range_sha256[i] != mapped.sums[i]) {
                let [o, l] = m.ranges[i];
                return Err(corrupt(
                    file,
                    format!(
                        "bytes {o}..{} differ from the block map's checksum for that range",
                        o + l
                    ),
                ));
            }
        }
        let all = hex::encode(mapped.all.clone().finalize());
        if all != m.sha256 {
            return Err(corrupt(
                file,
                "the block map's ranges do not hash to its recorded sha256".into(),
            ));
        }
        against.push(format!("block map ({} ranges)", m.ranges.len()));
    } else if !segs.complete() {
        return Err(corrupt(file, "shorter than the ranges to write".into()));
    }
    Ok(Checked {
        sha256,
        segment_sha256: segs.sums,
        against,
    })
}

/// Where a check found nothing to compare with: say so, once, on stderr.
pub fn note_unverified(file: &Path) {
    eprintln!(
        "note: {} has no recorded checksums (no SHA256SUMS or manifest entry, no block map beside it): not verified against its build",
        file.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    /// A sparse image with two data ranges, its block map and SHA256SUMS, like a build's.
    fn image(dir: &Path) -> (std::path::PathBuf, BlockMap) {
        let p = dir.join("x.raw");
        let mut f = File::create(&p).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&[7u8; 8192], 1 << 20).unwrap();
        f.write_all_at(&[9u8; 4096], 6 << 20).unwrap();
        f.flush().unwrap();
        let m = bmap::compute(&p).unwrap();
        bmap::write(&p, &m).unwrap();
        let sum = bmap::sha256_sparse(&p, |_| ()).unwrap();
        std::fs::write(dir.join("SHA256SUMS"), format!("{sum}  x.raw\n")).unwrap();
        (p, m)
    }

    #[test]
    fn a_clean_image_passes_and_gives_segment_sums() {
        let t = tempfile::tempdir().unwrap();
        let (p, m) = image(t.path());
        let r = recorded(&p).unwrap().unwrap();
        assert_eq!(r.source, "SHA256SUMS");
        let segs = [[0, 1 << 20], [1 << 20, 8192]];
        let c = check(&p, Some(&r), Some(&m), &segs, &Progress::new(true)).unwrap();
        assert_eq!(c.sha256, r.sha256);
        assert_eq!(c.segment_sha256[1], m.range_sha256[0]);
        assert_eq!(
            c.segment_sha256[0],
            hex::encode(Sha256::digest(vec![0u8; 1 << 20]))
        );
        assert_eq!(c.against.len(), 2);
    }

    #[test]
    fn changed_truncated_or_extended_images_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let (p, m) = image(t.path());
        let r = recorded(&p).unwrap().unwrap();
        let q = Progress::new(true);
        // One byte inside a mapped range: both the whole sum and the range sum catch it.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[8u8], (1 << 20) + 5).unwrap();
        let e = check(&p, Some(&r), Some(&m), &[], &q).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("SHA256SUMS"), "{e}");
        let e = check(&p, None, Some(&m), &[], &q).unwrap_err();
        assert!(e.to_string().contains("block map's checksum"), "{e}");
        f.write_all_at(&[7u8], (1 << 20) + 5).unwrap();
        check(&p, Some(&r), Some(&m), &[], &q).unwrap();
        // Data planted in a hole the map skips.
        f.write_all_at(&[1u8], 4 << 20).unwrap();
        let e = check(&p, None, Some(&m), &[], &q).unwrap_err();
        assert!(e.to_string().contains("outside every range"), "{e}");
        assert!(check(&p, Some(&r), None, &[], &q).is_err());
        // Truncated.
        f.set_len(7 << 20).unwrap();
        assert!(check(&p, None, Some(&m), &[], &q).is_err());
        assert!(check(&p, Some(&r), None, &[], &q).is_err());
    }

    #[test]
    fn sums_and_manifest_must_agree() {
        let t = tempfile::tempdir().unwrap();
        let (p, _) = image(t.path());
        let mut m: serde_json::Value =
            serde_json::from_str(include_str!("../image/testdata/manifest-v1.json")).unwrap();
        m["artifacts"] =
            serde_json::json!([{"file": "x.raw", "bytes": 0, "sha256": "ab".repeat(32)}]);
        std::fs::write(t.path().join("manifest.json"), m.to_string()).unwrap();
        assert_eq!(recorded(&p).unwrap_err().exit_code(), 2);
        std::fs::remove_file(t.path().join("SHA256SUMS")).unwrap();
        assert_eq!(recorded(&p).unwrap().unwrap().source, "manifest.json");
    }
}
