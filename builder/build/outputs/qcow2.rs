//! qcow2 output. Compressed images are written here, not by `qemu-img convert -c`: the
//! clusters are compressed on every core yet written in order (so the bytes stay
//! reproducible, which `qemu-img convert -W` would give up), and a cluster whose raw bytes
//! equal the previous build's at the same place takes that build's compressed bytes instead
//! of being compressed again. Uncompressed output still goes through `qemu-img convert`.
//!
//! Layout (qcow2 version 3, 64 KiB clusters, 16-bit refcounts, zstd compression type):
//! header cluster, the data clusters in guest order (compressed ones packed at byte
//! granularity), the L2 tables in use, the L1 table, the refcount table and its blocks.

use crate::error::{Context, Error, Result};
use crate::support::exec;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// L2 entries per table (8-byte entries in one cluster).
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts: entries per refcount block.
const REFS_PER_BLOCK: u64 = CLUSTER / 2;
const MAGIC: &[u8; 4] = b"QFI\xfb";
/// Incompatible feature bit 3: the header's compression type field is in use.
const INCOMPAT_COMPRESSION_TYPE: u64 = 1 << 3;
const COMPRESSION_ZSTD: u8 = 1;
/// Header length with the compression type byte, padded to 8.
const HEADER_LEN: u32 = 112;
const L2_COMPRESSED: u64 = 1 << 62;
const OFLAG_COPIED: u64 = 1 << 63;
/// For 64 KiB clusters the compressed entry keeps the host offset in bits 0..54 and the
/// number of additional 512-byte sectors in bits 54..62.
const CSIZE_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);
const L2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Our header extension: names the compressor, so a later build reuses compressed bytes
/// only from an image whose bytes it would have written itself. QEMU ignores (and keeps)
/// header extensions it does not know.
const EXT_COMPRESSOR: u32 = 0x636c_6177; // "claw"
/// zstd level of the clusters (QEMU's default for `compression_type=zstd`).
const LEVEL: i32 = 3;
/// Clusters handed to the worker threads per round (64 MiB): bounds memory, keeps order.
const ROUND: u64 = 1024;

/// Compressor identity stored in the image: library version, level and cluster size.
fn compressor_id() -> String {
    format!(
        "clawimg-qcow2 zstd {} level {LEVEL} cluster {CLUSTER}",
        zstd::zstd_safe::version_string()
    )
}

/// What a compressed write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Guest clusters of the disk.
    pub clusters: u64,
    /// Clusters that are all zeros (left unallocated).
    pub zero: u64,
    /// Clusters compressed in this run.
    pub compressed: u64,
    /// Clusters whose compressed bytes came from the previous image.
    pub reused: u64,
    /// Clusters stored uncompressed (zstd did not make them smaller).
    pub stored: u64,
}

/// The previous build's raw image and its qcow2, to take unchanged clusters from.
pub struct Previous {
    raw: File,
    raw_len: u64,
    qcow: File,
    qcow_len: u64,
    /// L2 entry of every guest cluster (0 = unallocated).
    entries: Vec<u64>,
}

impl Previous {
    /// Open a previous pair; `None` when the qcow2 was not written by this compressor
    /// (another zstd version or level would give other bytes for the same cluster) or
    /// cannot be read.
    pub fn open(raw: &Path, qcow: &Path) -> Option<Previous> {
        let raw_f = File::open(raw).ok()?;
        let raw_len = raw_f.metadata().ok()?.len();
        let qcow_f = File::open(qcow).ok()?;
        let qcow_len = qcow_f.metadata().ok()?.len();
        let mut hdr = vec![0u8; 4096.min(qcow_len as usize)];
        qcow_f.read_exact_at(&mut hdr, 0).ok()?;
        let h = Header::parse(&hdr)?;
        if h.cluster_bits != CLUSTER_BITS
            || h.incompatible != INCOMPAT_COMPRESSION_TYPE
            || h.compression_type != COMPRESSION_ZSTD
            || h.compressor.as_deref() != Some(compressor_id().as_str())
        {
            return None;
        }
        let mut l1 = vec![0u8; h.l1_size as usize * 8];
        qcow_f.read_exact_at(&mut l1, h.l1_offset).ok()?;
        let clusters = h.size.div_ceil(CLUSTER);
        let mut entries = vec![0u64; clusters as usize];
        let mut table = vec![0u8; CLUSTER as usize];
        for (j, e) in l1.chunks_exact(8).enumerate() {
            let l2_off = be64(e) & L2_OFFSET_MASK;
            if l2_off == 0 {
                continue;
            }
            qcow_f.read_exact_at(&mut table, l2_off).ok()?;
            for (k, e) in table.chunks_exact(8).enumerate() {
                let i = j as u64 * L2_ENTRIES + k as u64;
                if i < clusters {
                    entries[i as usize] = be64(e);
                }
            }
        }
        Some(Previous {
            raw: raw_f,
            raw_len,
            qcow: qcow_f,
            qcow_len,
            entries,
        })
    }

    /// The previous image's cluster `i` if its raw bytes equal `data` (a whole cluster,
    /// of which the first `valid` bytes are the disk's; the rest are zeros past its end).
    fn same(&self, i: u64, data: &[u8], valid: usize) -> Result<Option<Cluster>> {
        let Some(&e) = self.entries.get(i as usize) else {
            return Ok(None);
        };
        let off = i * CLUSTER;
        if e == 0 || off + valid as u64 > self.raw_len {
            return Ok(None);
        }
        let mut old = vec![0u8; valid];
        self.raw
            .read_exact_at(&mut old, off)
            .ctx(|| "read the previous raw image".into())?;
        if old != data[..valid] {
            return Ok(None);
        }
        if e & L2_COMPRESSED == 0 {
            // Stored uncompressed before, so compressing again would not help either.
            return Ok(Some(Cluster::Stored(data.to_vec())));
        }
        let coff = e & ((1u64 << CSIZE_SHIFT) - 1);
        let nb = (e >> CSIZE_SHIFT) & ((1 << (CLUSTER_BITS - 8)) - 1);
        let csize = ((nb + 1) * 512 - (coff & 511)).min(self.qcow_len.saturating_sub(coff));
        let mut buf = vec![0u8; csize as usize];
        self.qcow
            .read_exact_at(&mut buf, coff)
            .ctx(|| "read the previous qcow2 image".into())?;
        // The entry does not record the exact length; the zstd frame does.
        let n = match zstd::zstd_safe::find_frame_compressed_size(&buf) {
            Ok(n) if n <= buf.len() => n,
            _ => return Ok(None),
        };
        if !matches!(
            zstd::zstd_safe::get_frame_content_size(&buf[..n]),
            Ok(Some(s)) if s == data.len() as u64
        ) {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some(Cluster::Compressed(buf, true)))
    }
}

/// One guest cluster, ready to be written.
enum Cluster {
    Zero,
    /// zstd frame; `true` when it came from the previous image.
    Compressed(Vec<u8>, bool),
    Stored(Vec<u8>),
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap_or_default())
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap_or_default())
}

/// The header fields this module reads back.
#[derive(Debug)]
struct Header {
    cluster_bits: u32,
    size: u64,
    l1_size: u32,
    l1_offset: u64,
    incompatible: u64,
    compression_type: u8,
    compressor: Option<String>,
}

impl Header {
    fn parse(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_LEN as usize || &b[0..4] != MAGIC || be32(&b[4..]) != 3 {
            return None;
        }
        let header_len = be32(&b[100..]) as usize;
        let mut h = Header {
            cluster_bits: be32(&b[20..]),
            size: be64(&b[24..]),
            l1_size: be32(&b[36..]),
            l1_offset: be64(&b[40..]),
            incompatible: be64(&b[72..]),
            compression_type: if header_len > 104 { b[104] } else { 0 },
            compressor: None,
        };
        let mut p = header_len;
        while p + 8 <= b.len() {
            let (ty, len) = (be32(&b[p..]), be32(&b[p + 4..]) as usize);
            if ty == 0 || p + 8 + len > b.len() {
                break;
            }
            if ty == EXT_COMPRESSOR {
                h.compressor = String::from_utf8(b[p + 8..p + 8 + len].to_vec()).ok();
            }
            p += 8 + len.div_ceil(8) * 8;
        }
        Some(h)
    }
}

/// Convert `raw` into `out` (qcow2). Compressed output is written by [`write_compressed`]
/// (taking unchanged clusters from `previous`); uncompressed output by `qemu-img convert`.
/// `bar` advances by the guest bytes done (a spinner is enough for `qemu-img`).
pub fn convert(
    raw: &Path,
    out: &Path,
    compress: bool,
    previous: Option<&Previous>,
    bar: &indicatif::ProgressBar,
) -> Result<Stats> {
    if compress {
        return write_compressed_with(raw, out, previous, bar);
    }
    let sh = exec::shell()?;
    let cmd = sh
        .cmd("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"]);
    exec::run(cmd.arg(raw).arg(out))?;
    Ok(Stats::default())
}

/// Guest clusters that hold data (from SEEK_DATA/SEEK_HOLE); the rest read as zeros.
fn data_clusters(f: &File, clusters: u64) -> Result<Vec<bool>> {
    let mut v = vec![false; clusters as usize];
    for [off, len] in crate::build::outputs::bmap::ranges(f)? {
        for i in off / CLUSTER..(off + len).div_ceil(CLUSTER).min(clusters) {
            v[i as usize] = true;
        }
    }
    Ok(v)
}

fn prepare(
    raw: &File,
    size: u64,
    i: u64,
    previous: Option<&Previous>,
    z: &mut zstd::bulk::Compressor<'static>,
) -> Result<Cluster> {
    let off = i * CLUSTER;
    let mut data = vec![0u8; CLUSTER.min(size - off) as usize];
    raw.read_exact_at(&mut data, off)
        .ctx(|| format!("read the raw image at {off}"))?;
    if data.iter().all(|&b| b == 0) {
        return Ok(Cluster::Zero);
    }
    // A short last cluster is compressed as a whole one (the guest sees zeros past the end).
    let valid = data.len();
    data.resize(CLUSTER as usize, 0);
    if let Some(prev) = previous {
        if let Some(c) = prev.same(i, &data, valid)? {
            return Ok(c);
        }
    }
    let mut buf = Vec::with_capacity(CLUSTER as usize);
    match z.compress_to_buffer(&data, &mut buf) {
        Ok(_) if (buf.len() as u64) < CLUSTER => Ok(Cluster::Compressed(buf, false)),
        _ => Ok(Cluster::Stored(data)),
    }
}

/// Write `raw` as a zstd-compressed qcow2 at `out`: clusters compressed on all cores,
/// written in guest order, unchanged ones taken from `previous`. Same input, same bytes.
pub fn write_compressed(raw: &Path, out: &Path, previous: Option<&Previous>) -> Result<Stats> {
    write_compressed_with(raw, out, previous, &indicatif::ProgressBar::hidden())
}

/// [`write_compressed`], advancing `bar` by the guest bytes of each round written.
pub fn write_compressed_with(
    raw: &Path,
    out: &Path,
    previous: Option<&Previous>,
    bar: &indicatif::ProgressBar,
) -> Result<Stats> {
    let started = Instant::now();
    let src = File::open(raw).ctx(|| format!("open {}", raw.display()))?;
    let size = src.metadata().ctx(|| "stat raw image".into())?.len();
    let clusters = size.div_ceil(CLUSTER);
    let has_data = data_clusters(&src, clusters)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16);
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(out)
        .ctx(|| format!("create {}", out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, &f);
    w.seek(SeekFrom::Start(CLUSTER))
        .ctx(|| "seek qcow2".into())?;
    let mut cursor = CLUSTER;
    let mut l2 = vec![0u64; clusters as usize];
    // Host clusters' refcounts; cluster 0 is the header.
    let mut refs: Vec<u16> = vec![1];
    let mut stats = Stats {
        clusters,
        ..Stats::default()
    };
    let add_ref = |refs: &mut Vec<u16>, hc: u64| {
        if refs.len() <= hc as usize {
            refs.resize(hc as usize + 1, 0);
        }
        refs[hc as usize] += 1;
    };
    let mut round_start = 0;
    while round_start < clusters {
        let round_end = (round_start + ROUND).min(clusters);
        let todo: Vec<u64> = (round_start..round_end)
            .filter(|&i| has_data[i as usize])
            .collect();
        bar.inc(((round_end - round_start) * CLUSTER).min(size.saturating_sub(bar.position())));
        round_start += ROUND;
        // Each worker takes every `threads`-th cluster of the round; results keep their slot.
        let mut results: Vec<Option<Result<Cluster>>> = (0..todo.len()).map(|_| None).collect();
        let mut failed = None;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (todo, src) = (&todo, &src);
                    s.spawn(move || {
                        let mut z = zstd::bulk::Compressor::new(LEVEL)
                            .map_err(|e| Error::failed(format!("zstd: {e}")))?;
                        let mut v = vec![];
                        for (k, &i) in todo.iter().enumerate().skip(t).step_by(threads) {
                            v.push((k, prepare(src, size, i, previous, &mut z)));
                        }
                        Ok::<_, Error>(v)
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(Ok(v)) => v.into_iter().for_each(|(k, r)| results[k] = Some(r)),
                    Ok(Err(e)) => failed = Some(e),
                    Err(_) => failed = Some(Error::failed("a qcow2 compression thread panicked")),
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        for (slot, r) in results.into_iter().enumerate() {
            let c = r.ok_or_else(|| Error::failed("qcow2: a cluster was skipped"))??;
            let i = todo[slot] as usize;
            match c {
                Cluster::Zero => stats.zero += 1,
                Cluster::Compressed(bytes, reused) => {
                    if reused {
                        stats.reused += 1;
                    } else {
                        stats.compressed += 1;
                    }
                    let len = bytes.len() as u64;
                    let extra_sectors = ((cursor + len - 1) >> 9) - (cursor >> 9);
                    l2[i] = cursor | L2_COMPRESSED | (extra_sectors << CSIZE_SHIFT);
                    // Each host cluster the entry's sectors touch counts one reference.
                    let end = ((cursor >> 9) + extra_sectors + 1) << 9;
                    for hc in cursor >> CLUSTER_BITS..=(end - 1) >> CLUSTER_BITS {
                        add_ref(&mut refs, hc);
                    }
                    w.write_all(&bytes).ctx(|| "write qcow2".into())?;
                    cursor += len;
                }
                Cluster::Stored(bytes) => {
                    stats.stored += 1;
                    let aligned = cursor.div_ceil(CLUSTER) * CLUSTER;
                    w.write_all(&vec![0u8; (aligned - cursor) as usize])
                        .ctx(|| "write qcow2".into())?;
                    cursor = aligned;
                    l2[i] = cursor | OFLAG_COPIED;
                    add_ref(&mut refs, cursor >> CLUSTER_BITS);
                    w.write_all(&bytes).ctx(|| "write qcow2".into())?;
                    cursor += CLUSTER;
                }
            }
        }
    }
    stats.zero += has_data.iter().filter(|d| !**d).count() as u64;
    // Metadata after the data, each table in clusters of its own.
    let pad = |w: &mut BufWriter<&File>, cursor: &mut u64| -> Result<()> {
        let aligned = cursor.div_ceil(CLUSTER) * CLUSTER;
        w.write_all(&vec![0u8; (aligned - *cursor) as usize])
            .ctx(|| "write qcow2".into())?;
        *cursor = aligned;
        Ok(())
    };
    pad(&mut w, &mut cursor)?;
    let l1_size = clusters.div_ceil(L2_ENTRIES);
    let mut l1 = vec![0u64; l1_size as usize];
    for (j, table) in l2.chunks(L2_ENTRIES as usize).enumerate() {
        if table.iter().all(|&e| e == 0) {
            continue;
        }
        l1[j] = cursor | OFLAG_COPIED;
        add_ref(&mut refs, cursor >> CLUSTER_BITS);
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_be_bytes()).collect();
        w.write_all(&bytes).ctx(|| "write qcow2".into())?;
        cursor += bytes.len() as u64;
        pad(&mut w, &mut cursor)?;
    }
    let l1_offset = cursor;
    let l1_bytes: Vec<u8> = l1.iter().flat_map(|e| e.to_be_bytes()).collect();
    w.write_all(&l1_bytes).ctx(|| "write qcow2".into())?;
    cursor += l1_bytes.len() as u64;
    pad(&mut w, &mut cursor)?;
    for hc in l1_offset >> CLUSTER_BITS..cursor >> CLUSTER_BITS {
        add_ref(&mut refs, hc);
    }
    // The refcount table and blocks count themselves too: grow until they cover it all.
    let used = cursor >> CLUSTER_BITS;
    let (mut table_clusters, mut blocks) = (1u64, 1u64);
    loop {
        let total = used + table_clusters + blocks;
        let b = total.div_ceil(REFS_PER_BLOCK);
        let t = (b * 8).div_ceil(CLUSTER);
        if (b, t) == (blocks, table_clusters) {
            break;
        }
        (blocks, table_clusters) = (b, t);
    }
    let rt_offset = cursor;
    let first_block = used + table_clusters;
    for hc in used..first_block + blocks {
        add_ref(&mut refs, hc);
    }
    let mut rt = vec![0u8; (table_clusters * CLUSTER) as usize];
    for k in 0..blocks {
        let off = (first_block + k) << CLUSTER_BITS;
        rt[k as usize * 8..k as usize * 8 + 8].copy_from_slice(&off.to_be_bytes());
    }
    w.write_all(&rt).ctx(|| "write qcow2".into())?;
    refs.resize((blocks * REFS_PER_BLOCK) as usize, 0);
    let rb: Vec<u8> = refs.iter().flat_map(|r| r.to_be_bytes()).collect();
    w.write_all(&rb).ctx(|| "write qcow2".into())?;
    // The header last, now that every offset is known.
    w.seek(SeekFrom::Start(0)).ctx(|| "seek qcow2".into())?;
    w.write_all(&header(size, l1_size, l1_offset, rt_offset, table_clusters))
        .ctx(|| "write qcow2 header".into())?;
    w.flush().ctx(|| "write qcow2".into())?;
    drop(w);
    f.sync_all().ctx(|| "sync qcow2".into())?;
    exec::record(
        format!(
            "clawimg:qcow2 (in-process) zstd, {threads} threads: {} clusters compressed, {} reused, {} stored, {} zero",
            stats.compressed, stats.reused, stats.stored, stats.zero
        ),
        started,
    );
    Ok(stats)
}

fn header(size: u64, l1_size: u64, l1_offset: u64, rt_offset: u64, rt_clusters: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(256);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&3u32.to_be_bytes()); // version
    h.extend_from_slice(&0u64.to_be_bytes()); // backing file offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing file size
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // no encryption
    h.extend_from_slice(&(l1_size as u32).to_be_bytes());
    h.extend_from_slice(&l1_offset.to_be_bytes());
    h.extend_from_slice(&rt_offset.to_be_bytes());
    h.extend_from_slice(&(rt_clusters as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // snapshots
    h.extend_from_slice(&0u64.to_be_bytes());
    h.extend_from_slice(&INCOMPAT_COMPRESSION_TYPE.to_be_bytes());
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear features
    h.extend_from_slice(&4u32.to_be_bytes()); // refcount order: 16 bits
    h.extend_from_slice(&HEADER_LEN.to_be_bytes());
    h.push(COMPRESSION_ZSTD);
    h.resize(HEADER_LEN as usize, 0);
    let id = compressor_id();
    h.extend_from_slice(&EXT_COMPRESSOR.to_be_bytes());
    h.extend_from_slice(&(id.len() as u32).to_be_bytes());
    h.extend_from_slice(id.as_bytes());
    h.resize(h.len().div_ceil(8) * 8, 0);
    h.extend_from_slice(&[0u8; 8]); // end of header extensions
    h
}

/// `qemu-img check` output; fails if the image is not clean.
pub fn check(img: &Path) -> Result<String> {
    let sh = exec::shell()?;
    exec::run(sh.cmd("qemu-img").args(["check", "-q"]).arg(img))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk with holes, zeros, text, random (incompressible) clusters and a short tail.
    fn disk(path: &Path, seed: u64, bytes: u64) {
        let f = File::create(path).unwrap();
        f.set_len(bytes).unwrap();
        let mut x = seed;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for c in 0..bytes.div_ceil(CLUSTER) {
            let kind = c % 7;
            let len = CLUSTER.min(bytes - c * CLUSTER) as usize;
            let data: Vec<u8> = match kind {
                0 | 1 => continue, // hole
                2 => vec![0u8; len],
                3 => (0..len).map(|_| rnd() as u8).collect(),
                _ => format!("cluster {c} line\n")
                    .bytes()
                    .cycle()
                    .take(len)
                    .collect(),
            };
            f.write_all_at(&data, c * CLUSTER).unwrap();
        }
    }

    fn qemu_img(args: &[&str]) -> std::process::Output {
        std::process::Command::new("qemu-img")
            .args(args)
            .output()
            .expect("qemu-img (qemu-utils) is needed for this test")
    }

    /// QEMU's own checker finds no error, and the image reads back as the raw disk.
    fn assert_valid(raw: &Path, qcow: &Path) {
        let check = qemu_img(&["check", qcow.to_str().unwrap()]);
        assert!(check.status.success(), "{check:?}");
        let cmp = qemu_img(&[
            "compare",
            "-f",
            "raw",
            "-F",
            "qcow2",
            raw.to_str().unwrap(),
            qcow.to_str().unwrap(),
        ]);
        assert!(cmp.status.success(), "{cmp:?}");
    }

    #[test]
    fn written_image_is_valid_and_reuse_gives_the_same_bytes() {
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        // 40 MiB and a partial last cluster, in one round (the next test takes several).
        let size = (40 << 20) + 4096;
        disk(&p("a.raw"), 7, size);
        let s = write_compressed(&p("a.raw"), &p("a.qcow2"), None).unwrap();
        assert_eq!(s.reused, 0);
        assert!(s.compressed > 0 && s.stored > 0 && s.zero > 0, "{s:?}");
        assert_valid(&p("a.raw"), &p("a.qcow2"));

        // Change one text cluster and one random one; write with and without reuse.
        std::fs::copy(p("a.raw"), p("b.raw")).unwrap();
        let b = File::options().write(true).open(p("b.raw")).unwrap();
        b.write_all_at(b"changed", 4 * CLUSTER + 100).unwrap();
        b.write_all_at(b"changed", 3 * CLUSTER).unwrap();
        drop(b);
        let prev = Previous::open(&p("a.raw"), &p("a.qcow2")).expect("own image reopens");
        let with = write_compressed(&p("b.raw"), &p("b-reuse.qcow2"), Some(&prev)).unwrap();
        let fresh = write_compressed(&p("b.raw"), &p("b-fresh.qcow2"), None).unwrap();
        assert_eq!(
            with.compressed, 1,
            "only the changed text cluster: {with:?}"
        );
        assert!(
            with.reused > 0 && with.reused + 1 == fresh.compressed,
            "{with:?} {fresh:?}"
        );
        assert_eq!(
            std::fs::read(p("b-reuse.qcow2")).unwrap(),
            std::fs::read(p("b-fresh.qcow2")).unwrap(),
            "reuse must not change a byte"
        );
        assert_valid(&p("b.raw"), &p("b-reuse.qcow2"));
    }

    #[test]
    fn multi_round_disk_with_an_l2_table_gap_checks_clean() {
        let t = tempfile::tempdir().unwrap();
        let (raw, q) = (t.path().join("big.raw"), t.path().join("big.qcow2"));
        // 1.5 GiB, data at the start and at the end only: three L2 tables' range, the middle
        // one unused; several rounds.
        let f = File::create(&raw).unwrap();
        f.set_len(3 << 29).unwrap();
        let text: Vec<u8> = b"abc\n".iter().cycle().take(70 << 20).copied().collect();
        f.write_all_at(&text, 0).unwrap();
        f.write_all_at(&text, (3 << 29) - text.len() as u64)
            .unwrap();
        drop(f);
        let s = write_compressed(&raw, &q, None).unwrap();
        assert_eq!(s.compressed, 2 * 70 * 16);
        assert_valid(&raw, &q);
        let info = qemu_img(&["info", q.to_str().unwrap()]);
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(info.contains("compression type: zstd"), "{info}");
    }

    #[test]
    fn a_foreign_qcow2_is_not_reused() {
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        disk(&p("a.raw"), 3, 4 << 20);
        let out = qemu_img(&[
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            "compression_type=zstd",
            p("a.raw").to_str().unwrap(),
            p("a.qcow2").to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{out:?}");
        assert!(Previous::open(&p("a.raw"), &p("a.qcow2")).is_none());
    }
}

#[cfg(test)]
mod profile {
    /// Manual profiling aid: `QCOW2_RAW=… [QCOW2_PREV=raw,qcow2] cargo test --release --lib
    /// qcow2::profile -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn write_from_env() {
        let raw = std::path::PathBuf::from(std::env::var("QCOW2_RAW").unwrap());
        let prev = std::env::var("QCOW2_PREV").ok().and_then(|v| {
            let (r, q) = v.split_once(',').unwrap();
            super::Previous::open(r.as_ref(), q.as_ref())
        });
        let out = raw.with_extension("profile.qcow2");
        let _ = std::fs::remove_file(&out);
        let t = std::time::Instant::now();
        let s = super::write_compressed(&raw, &out, prev.as_ref()).unwrap();
        eprintln!("{s:?} in {:?}", t.elapsed());
        let _ = std::fs::remove_file(&out);
    }
}
