//! `clawimg diff A B`: explain the difference between two builds at the level of
//! artifacts, partitions (content digests read from the raw images), packages and files
//! (path, kind, size, mode, owner, content hash from each build's `files.tsv`).

use crate::error::{Context, Error, Result};
use crate::image::files::{FileEntry, FILE_LIST};
use crate::image::manifest::{Manifest, PartitionEntry};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The comparison result.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per difference, grouped by section.
    pub lines: Vec<String>,
    /// Whether anything differs.
    pub differs: bool,
    /// The differences by section (`artifacts`, `inputs`, `partitions`, `packages`,
    /// `files`), one entry per difference, as in [`Report::lines`] without the indent.
    pub sections: Vec<(String, Vec<String>)>,
    /// Artifacts whose sha256 is the same in both builds, as `EXT sha256`.
    pub identical: Vec<String>,
}

fn out_dir(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.to_path_buf()
    } else {
        p.parent().unwrap_or(Path::new(".")).to_path_buf()
    }
}

fn range_sha(file: &Path, offset: u64, len: u64) -> Result<String> {
    let mut f = std::fs::File::open(file).ctx(|| format!("open {}", file.display()))?;
    f.seek(SeekFrom::Start(offset)).ctx(|| "seek".into())?;
    let mut h = Sha256::new();
    std::io::copy(&mut f.take(len), &mut h).ctx(|| format!("read {}", file.display()))?;
    Ok(hex::encode(h.finalize()))
}

fn files(dir: &Path) -> Result<BTreeMap<String, FileEntry>> {
    let p = dir.join(FILE_LIST);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| Error::config(format!("{}: {e} (built by an older clawimg?)", p.display())))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(FileEntry::parse)
        .map(|e| (e.path.clone(), e))
        .collect())
}

/// Compare two builds (output directories, manifests or image files).
pub fn compare(a: &Path, b: &Path, max_files: usize) -> Result<Report> {
    let (da, db) = (out_dir(a), out_dir(b));
    let (ma, mb) = (Manifest::read(&da)?, Manifest::read(&db)?);
    let mut r = Report::default();
    let sec = |r: &mut Report, title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            r.differs = true;
            r.lines.push(format!("{title}:"));
            let name = title.split(' ').next().unwrap_or(title).to_string();
            r.sections
                .push((name, lines.iter().map(|l| l.trim().to_string()).collect()));
            r.lines.extend(lines);
        }
    };
    // Artifacts.
    let mut l = vec![];
    for x in &ma.artifacts {
        let ext = Path::new(&x.file).extension().map(|e| e.to_os_string());
        match mb
            .artifacts
            .iter()
            .find(|y| Path::new(&y.file).extension().map(|e| e.to_os_string()) == ext)
        {
            Some(y) if y.sha256 == x.sha256 => {
                let ext = ext.unwrap_or_default();
                r.identical
                    .push(format!("{} sha256:{}", ext.to_string_lossy(), x.sha256));
                r.lines
                    .push(format!("artifact {ext:?}: identical sha256:{}", x.sha256));
            }
            Some(y) => l.push(format!(
                "  {}: sha256 {} -> {}, {} -> {} bytes",
                x.file, x.sha256, y.sha256, x.bytes, y.bytes
            )),
            None => l.push(format!("  {}: only in A", x.file)),
        }
    }
    sec(&mut r, "artifacts", l);
    // Inputs.
    let mut l = vec![];
    if ma.input_hash != mb.input_hash {
        l.push(format!(
            "  input hash {} -> {}",
            ma.input_hash, mb.input_hash
        ));
    }
    if ma.kernel_cmdline != mb.kernel_cmdline {
        l.push(format!(
            "  kernel cmdline {:?} -> {:?}",
            ma.kernel_cmdline, mb.kernel_cmdline
        ));
    }
    if ma.identity != mb.identity {
        l.push(
            "  disk/filesystem identifiers differ (they derive from the input hash)".to_string(),
        );
    }
    let (ra, rb) = (&ma.extra.reproducibility, &mb.extra.reproducibility);
    if ra != rb {
        // Printed as the JSON the manifests hold (`null` when absent).
        let json = |r| serde_json::to_value(r).unwrap_or_default();
        l.push(format!("  reproducibility: {} -> {}", json(ra), json(rb)));
    }
    sec(&mut r, "inputs", l);
    // Partitions: table entries and content digests.
    let raw = |m: &Manifest, d: &Path| {
        m.artifacts
            .iter()
            .find(|x| x.file.ends_with(".raw"))
            .map(|x| d.join(&x.file))
    };
    let mut l = vec![];
    let (pa, pb) = (&ma.partitions.partitions, &mb.partitions.partitions);
    for (x, y) in pa.iter().zip(pb.iter()) {
        let name = &x.name;
        // Values printed as JSON, as the manifest holds them (strings quoted).
        let fields = |p: &PartitionEntry| {
            [
                ("type", serde_json::json!(p.type_guid)),
                ("guid", serde_json::json!(p.guid)),
                ("offset", serde_json::json!(p.offset)),
                ("bytes", serde_json::json!(p.bytes)),
            ]
        };
        for ((f, a), (_, b)) in fields(x).into_iter().zip(fields(y)) {
            if a != b {
                l.push(format!("  {name}: {f} {a} -> {b}"));
            }
        }
        if let (Some(ra), Some(rb)) = (raw(&ma, &da), raw(&mb, &db)) {
            if ra.exists() && rb.exists() {
                let ha = range_sha(&ra, x.offset, x.bytes)?;
                let hb = range_sha(&rb, y.offset, y.bytes)?;
                if ha != hb {
                    l.push(format!("  {name}: content sha256 {ha} -> {hb}"));
                }
            }
        }
    }
    if pa.len() != pb.len() {
        l.push(format!("  {} -> {} partitions", pa.len(), pb.len()));
    }
    sec(&mut r, "partitions", l);
    // Packages.
    let pk = |m: &Manifest| {
        m.packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let (ka, kb) = (pk(&ma), pk(&mb));
    let mut l = vec![];
    for (n, v) in &ka {
        match kb.get(n) {
            None => l.push(format!("  - {n} {v}")),
            Some(w) if w != v => l.push(format!("  ~ {n} {v} -> {w}")),
            _ => {}
        }
    }
    for (n, v) in &kb {
        if !ka.contains_key(n) {
            l.push(format!("  + {n} {v}"));
        }
    }
    sec(&mut r, "packages", l);
    // Files.
    let (fa, fb) = (files(&da)?, files(&db)?);
    let mut l = vec![];
    for (p, x) in &fa {
        match fb.get(p) {
            None => l.push(format!("  - {p}")),
            Some(y) if y != x => {
                let mut what = vec![];
                if x.kind != y.kind {
                    what.push(format!("kind {} -> {}", x.kind, y.kind));
                }
                if x.size != y.size {
                    what.push(format!("size {} -> {}", x.size, y.size));
                }
                if x.mode != y.mode {
                    what.push(format!("mode {:04o} -> {:04o}", x.mode, y.mode));
                }
                if (x.uid, x.gid) != (y.uid, y.gid) {
                    what.push(format!("owner {}:{} -> {}:{}", x.uid, x.gid, y.uid, y.gid));
                }
                if x.digest != y.digest {
                    what.push(format!(
                        "sha256 {} -> {}",
                        &x.digest[..x.digest.len().min(12)],
                        &y.digest[..y.digest.len().min(12)]
                    ));
                }
                l.push(format!("  ~ {p}: {}", what.join(", ")));
            }
            _ => {}
        }
    }
    for p in fb.keys() {
        if !fa.contains_key(p) {
            l.push(format!("  + {p}"));
        }
    }
    let n = l.len();
    if n > max_files {
        l.truncate(max_files);
        l.push(format!("  ... {} more (use --max-files)", n - max_files));
    }
    sec(&mut r, &format!("files ({n} differ)"), l);
    if !r.differs {
        r.lines.push("identical".to_string());
    }
    Ok(r)
}
