//! `clawimg flash`: write an image to a file, a local block device, or a device on a remote
//! rescue system over SSH (`ssh://user@host:port/dev/X`).
//!
//! Every check runs before the first byte is written: the target is not in use (mounted,
//! swap, the running root, or held by device-mapper/md, through any stack of holders), is
//! large enough, a block device is confirmed (`--yes` or the device name typed on a
//! terminal), and the image is the build's (whole-file and per-range checksums). Then the
//! first MiB is replaced by a marker, the block map's ranges are written (zstd on the wire
//! for SSH) and the ranges the map skips are zeroed, everything is read back, and only then
//! the first MiB (MBR, GPT) is written: an interrupted flash leaves a disk that does not
//! look bootable, and the next attempt says so.

use crate::build::outputs::bmap::{self, BlockMap};
use crate::error::{Context, Error, Result};
use crate::ops::integrity::{self, Checked};
use crate::support::blockdev;
use crate::support::progress::Progress;
use crate::support::ssh::{parse_authority, ssh_run, ssh_spawn};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The head of the disk written last: protective MBR, GPT header and entries (partitions
/// start at 1 MiB).
pub const HEAD: u64 = 1 << 20;

/// First bytes of the head while a flash is under way (no MBR signature, no GPT).
pub const MARKER: &str = "CLAWIMG-FLASH-INCOMPLETE";

/// Where to flash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A regular file (created with the image's size if missing).
    File(PathBuf),
    /// A local block device.
    Block(PathBuf),
    /// A device or file on a host reached with the system `ssh` client.
    Ssh {
        /// `user@host` (user optional).
        dest: String,
        /// SSH port.
        port: Option<u16>,
        /// Absolute path on the remote side.
        path: String,
    },
}

/// Parse `--to`: `ssh://[user@]host[:port]/path`, or a local path.
pub fn parse_target(s: &str) -> Result<Target> {
    if let Some(rest) = s.strip_prefix("ssh://") {
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            Error::config(format!(
                "--to {s}: expected ssh://[user@]host[:port]/dev/DEVICE"
            ))
        })?;
        let path = format!("/{path}");
        if !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
            || path.contains("..")
        {
            return Err(Error::config(format!(
                "--to {s}: remote path may only contain letters, digits and / . _ -"
            )));
        }
        let (dest, port) = parse_authority(&format!("--to {s}"), authority)?;
        return Ok(Target::Ssh { dest, port, path });
    }
    let p = PathBuf::from(s);
    match std::fs::metadata(&p) {
        Ok(m) if m.file_type().is_block_device() => Ok(Target::Block(p)),
        Ok(m) if m.is_file() => Ok(Target::File(p)),
        Ok(_) => Err(Error::config(format!(
            "--to {s}: neither a regular file nor a block device"
        ))),
        Err(_) => Ok(Target::File(p)),
    }
}

/// What a flash did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Bytes of image data sent.
    pub bytes: u64,
    /// Ranges written.
    pub ranges: usize,
    /// Bytes zeroed between the ranges.
    pub zeroed: u64,
    /// Time spent writing.
    pub write_time: Duration,
    /// Bytes on the wire (SSH, after compression).
    pub wire_bytes: Option<u64>,
    /// sha256 of the image file, checked before writing.
    pub image_sha256: String,
    /// What the image was checked against (empty: nothing was recorded).
    pub checked_against: Vec<String>,
}

/// Options for one flash.
pub struct FlashOptions {
    /// Raw image.
    pub image: PathBuf,
    /// Target.
    pub target: Target,
    /// Skip the confirmation for block devices.
    pub yes: bool,
    /// Progress display.
    pub progress: Progress,
}

fn block_size_of(f: &File, p: &Path) -> Result<u64> {
    let mut size: u64 = 0;
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    // SAFETY: the ioctl writes one u64 into `size`.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKGETSIZE64, &mut size) };
    if rc != 0 {
        return Err(Error::failed(format!(
            "cannot read size of {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(size)
}

/// What the writer does, in offset order: the head last, the map's ranges, the gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// `[0, HEAD)` (or the whole image when smaller).
    head: [u64; 2],
    /// The map's ranges past the head.
    writes: Vec<[u64; 2]>,
    /// What neither covers, up to the image's end: zeroed.
    zeros: Vec<[u64; 2]>,
}

enum Op {
    Write(usize),
    Zero([u64; 2]),
}

impl Plan {
    fn new(map: &BlockMap) -> Plan {
        let h = HEAD.min(map.image_bytes);
        let writes: Vec<[u64; 2]> = map
            .ranges
            .iter()
            .filter(|[o, l]| o + l > h)
            .map(|&[o, l]| {
                let s = o.max(h);
                [s, o + l - s]
            })
            .collect();
        let mut zeros = vec![];
        let mut pos = h;
        for &[o, l] in &writes {
            if o > pos {
                zeros.push([pos, o - pos]);
            }
            pos = o + l;
        }
        if map.image_bytes > pos {
            zeros.push([pos, map.image_bytes - pos]);
        }
        Plan {
            head: [0, h],
            writes,
            zeros,
        }
    }

    /// The head and the writes: what the image check hashes on its own.
    fn segments(&self) -> Vec<[u64; 2]> {
        std::iter::once(self.head)
            .chain(self.writes.iter().copied())
            .collect()
    }

    /// Writes (by index into `writes`) and zeroings, by offset.
    fn ops(&self) -> Vec<Op> {
        let mut v: Vec<(u64, Op)> = self
            .writes
            .iter()
            .enumerate()
            .map(|(i, r)| (r[0], Op::Write(i)))
            .chain(self.zeros.iter().map(|&z| (z[0], Op::Zero(z))))
            .collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|x| x.1).collect()
    }

    fn zeroed(&self) -> u64 {
        self.zeros.iter().map(|z| z[1]).sum()
    }
}

/// The head written first: the marker line (why the disk is not bootable yet), then zeros.
fn marker_head(len: u64, image_sha256: &str) -> Vec<u8> {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut v =
        format!("{MARKER} image-sha256={image_sha256} started-unix={started}\n").into_bytes();
    v.resize(len as usize, 0);
    v
}

/// The marker line at the start of a target, if a previous flash left one.
fn marker_in(first: &[u8]) -> Option<String> {
    let line = first.split(|&b| b == b'\n').next()?;
    let text = String::from_utf8_lossy(line);
    text.starts_with(MARKER).then(|| text.trim().to_string())
}

fn note_interrupted(target: &str, line: &str) {
    eprintln!(
        "note: the previous flash of {target} was interrupted before it finished ({line}); the disk holds a partial image and has no partition table. Flashing it again."
    );
}

fn refuse_in_use(target: &str, why: &[String]) -> Error {
    Error::config(format!(
        "refusing to flash {target}: it is in use; nothing was written:\n  {}",
        why.join("\n  ")
    ))
}

/// Confirmation for a block device: `--yes`, or its name typed on a terminal.
fn confirm(label: &str, name: &str) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(Error::config(format!(
            "refusing to overwrite block device {label} without confirmation: stdin is not a terminal, pass --yes; nothing was written"
        )));
    }
    eprint!("This overwrites block device {label}; everything on it is lost.\nType the device name ({name}) to continue: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .ctx(|| "read answer".into())?;
    let answer = line.trim();
    if answer != name && answer.rsplit('/').next() != Some(name) {
        return Err(Error::config(
            "not confirmed; nothing was written".to_string(),
        ));
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

fn local_model(name: &str) -> String {
    let d = Path::new("/sys/class/block").join(name).join("device");
    ["vendor", "model"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(d.join(f)).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe(target: &str, size: u64, model: &str) -> String {
    if model.is_empty() {
        format!("{target} ({})", human(size))
    } else {
        format!("{target} ({}, {model})", human(size))
    }
}

/// The remote target's facts, gathered before writing.
struct RemoteFacts {
    kind: String,
    name: String,
    size: u64,
    model: String,
    head: Option<String>,
    zstd: bool,
    facts: blockdev::Facts,
}

fn remote_preflight(dest: &str, port: Option<u16>, path: &str) -> Result<RemoteFacts> {
    let script = format!(
        "p={path}\n\
         if [ -b \"$p\" ]; then r=$(readlink -f \"$p\"); n=${{r##*/}}; echo \"T block $n\"; \
           echo \"SIZE $(blockdev --getsize64 \"$p\")\"; \
           echo \"MODEL $(cat /sys/class/block/$n/device/vendor /sys/class/block/$n/device/model 2>/dev/null | tr -s ' \\n' '  ')\"; \
         elif [ -f \"$p\" ]; then echo \"T file\"; echo \"SIZE $(stat -c %s \"$p\")\"; \
         else echo \"T missing\"; fi\n\
         if [ -r \"$p\" ]; then echo \"H $(dd if=\"$p\" bs=512 count=1 status=none 2>/dev/null | head -n 1 | tr -cd '[:print:]')\"; fi\n\
         if command -v zstd >/dev/null 2>&1; then echo ZSTD; fi\n\
         {}",
        blockdev::FACTS_SCRIPT
    );
    let out = ssh_run(dest, port, &script, None)?;
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
    };
    let t = get("T ").unwrap_or_default();
    let (kind, name) = t.split_once(' ').unwrap_or((t.as_str(), ""));
    if kind == "missing" {
        return Err(Error::config(format!(
            "ssh://{dest}{path}: no such block device or file on the remote host"
        )));
    }
    let size = get("SIZE ")
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::failed(format!(
                "ssh://{dest}{path}: could not read the target's size: {out}"
            ))
        })?;
    Ok(RemoteFacts {
        kind: kind.to_string(),
        name: name.to_string(),
        size,
        model: get("MODEL ").unwrap_or_default(),
        head: get("H ").and_then(|h| marker_in(h.as_bytes())),
        zstd: out.lines().any(|l| l.trim() == "ZSTD"),
        facts: blockdev::parse_facts(&out),
    })
}

/// Run the flash.
pub fn flash(o: &FlashOptions) -> Result<Report> {
    let map_recorded = bmap::path_for(&o.image).exists();
    let map = bmap::load_or_compute(&o.image)?;
    if map.ranges.iter().any(|[off, len]| {
        off % bmap::BLOCK != 0 || (len % bmap::BLOCK != 0 && off + len != map.image_bytes)
    }) {
        return Err(Error::config(
            "block map ranges are not 4 KiB aligned".to_string(),
        ));
    }
    let plan = Plan::new(&map);
    // Every check before the first byte: the target first (cheap), then the image.
    let too_small = |have: u64, what: &str| {
        Err(Error::config(format!(
            "refusing to flash: {what} has {have} bytes, the image needs {} ({} MiB); nothing was written",
            map.image_bytes,
            map.image_bytes.div_ceil(1 << 20)
        )))
    };
    let mut previous = None;
    let mut confirm_as = None;
    let mut remote = None;
    match &o.target {
        Target::File(p) => {
            if let Ok(m) = std::fs::metadata(p) {
                if m.len() < map.image_bytes {
                    return too_small(m.len(), &p.display().to_string());
                }
                previous = read_first(p).and_then(|b| marker_in(&b));
            } else if !p
                .parent()
                .map(|d| d.as_os_str().is_empty() || d.is_dir())
                .unwrap_or(true)
            {
                return Err(Error::config(format!(
                    "--to {}: parent directory does not exist",
                    p.display()
                )));
            }
        }
        Target::Block(p) => {
            let name = device_name(p)?;
            let why = blockdev::local_facts(Path::new("/sys"), Path::new("/proc")).in_use(&name);
            if !why.is_empty() {
                return Err(refuse_in_use(&p.display().to_string(), &why));
            }
            let f = File::open(p).ctx(|| format!("open {}", p.display()))?;
            let size = block_size_of(&f, p)?;
            if size < map.image_bytes {
                return too_small(size, &p.display().to_string());
            }
            previous = read_first(p).and_then(|b| marker_in(&b));
            confirm_as = Some((
                describe(&p.display().to_string(), size, &local_model(&name)),
                name,
            ));
        }
        Target::Ssh { dest, port, path } => {
            let r = remote_preflight(dest, *port, path)?;
            let url = ssh_url(dest, *port, path);
            if r.kind == "block" {
                let why = r.facts.in_use(&r.name);
                if !why.is_empty() {
                    return Err(refuse_in_use(&url, &why));
                }
            }
            if r.size < map.image_bytes {
                return too_small(r.size, &url);
            }
            previous = r.head.clone();
            if r.kind == "block" {
                confirm_as = Some((describe(&url, r.size, &r.model), r.name.clone()));
            }
            remote = Some(r);
        }
    }
    let target_label = match &o.target {
        Target::File(p) | Target::Block(p) => p.display().to_string(),
        Target::Ssh { dest, port, path } => ssh_url(dest, *port, path),
    };
    let recorded = integrity::recorded(&o.image)?;
    let checked = integrity::check(
        &o.image,
        recorded.as_ref(),
        map_recorded.then_some(&map),
        &plan.segments(),
        &o.progress,
    )?;
    if checked.against.is_empty() {
        integrity::note_unverified(&o.image);
    }
    if let Some(line) = &previous {
        note_interrupted(&target_label, line);
    }
    if let Some((label, name)) = &confirm_as {
        if !o.yes {
            confirm(label, name)?;
        }
    }
    let w = Writer {
        o,
        plan: &plan,
        checked: &checked,
    };
    let written = match (&o.target, remote) {
        (Target::File(p), _) => w.local(p, false).map(|t| (t, None)),
        (Target::Block(p), _) => w.local(p, true).map(|t| (t, None)),
        (Target::Ssh { dest, port, path }, Some(r)) => {
            w.ssh(dest, *port, path, &r).map(|(t, n)| (t, Some(n)))
        }
        (Target::Ssh { .. }, None) => unreachable!("preflight ran"),
    };
    let (write_time, wire_bytes) = written.map_err(|e| {
        if e.exit_code() == 2 {
            e
        } else {
            Error::failed(format!(
                "{e}\n{target_label} may now hold a partial image without a partition table: it does not boot; run the flash again"
            ))
        }
    })?;
    Ok(Report {
        bytes: map.mapped_bytes,
        ranges: map.ranges.len(),
        zeroed: plan.zeroed(),
        write_time,
        wire_bytes,
        image_sha256: checked.sha256,
        checked_against: checked.against,
    })
}

/// The target as the user wrote it.
fn ssh_url(dest: &str, port: Option<u16>, path: &str) -> String {
    match port {
        Some(p) => format!("ssh://{dest}:{p}{path}"),
        None => format!("ssh://{dest}{path}"),
    }
}

/// Kernel name of a block device path (`/dev/disk/by-id/…` → `sda`).
fn device_name(p: &Path) -> Result<String> {
    let real = p
        .canonicalize()
        .ctx(|| format!("resolve {}", p.display()))?;
    Ok(real
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned())
}

fn read_first(p: &Path) -> Option<Vec<u8>> {
    let mut f = File::open(p).ok()?;
    let mut b = vec![0u8; 512];
    let n = f.read(&mut b).ok()?;
    b.truncate(n);
    Some(b)
}

fn changed(image: &Path, [o, l]: [u64; 2]) -> Error {
    Error::failed(format!(
        "{}: bytes {o}..{} changed while flashing; stopped before the partition table was written, so the target does not boot; flash again",
        image.display(),
        o + l
    ))
}

/// Zero `[off, off+len)`: BLKZEROOUT on a block device, a punched hole in a file, else
/// plain zeros.
fn zero_local(f: &File, [off, len]: [u64; 2], block: bool) -> Result<()> {
    let fd = f.as_raw_fd();
    let ok = if block {
        const BLKZEROOUT: libc::c_ulong = 0x127f;
        let range: [u64; 2] = [off, len];
        // SAFETY: the ioctl reads two u64 from `range`.
        unsafe { libc::ioctl(fd, BLKZEROOUT, range.as_ptr()) == 0 }
    } else {
        // SAFETY: fallocate on an fd we own; failure is handled below.
        unsafe {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off as libc::off_t,
                len as libc::off_t,
            ) == 0
        }
    };
    if ok {
        return Ok(());
    }
    let zeros = vec![0u8; 1 << 20];
    let mut at = off;
    while at < off + len {
        let n = (off + len - at).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], at)
            .ctx(|| format!("zero at {at}"))?;
        at += n as u64;
    }
    Ok(())
}

/// Drop the target's cached pages so the read-back reads the device.
fn drop_cache(f: &File) {
    // SAFETY: advice only; failure leaves the cache as it is.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

fn readback_failed(target: &str, [o, l]: [u64; 2]) -> Error {
    Error::failed(format!(
        "read-back verification FAILED: {target} bytes {o}..{} differ from the image",
        o + l
    ))
}

struct Writer<'a> {
    o: &'a FlashOptions,
    plan: &'a Plan,
    checked: &'a Checked,
}

impl Writer<'_> {
    /// Send the image's bytes of write `i` to `sink`, checking them against the sum the
    /// image check computed; `tail` gets them too.
    fn send_range(
        &self,
        img: &mut File,
        i: usize,
        tail: &mut Sha256,
        sink: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let r = self.plan.writes[i];
        let mut h = Sha256::new();
        bmap::read_ranges(img, &[r], |at, buf| {
            h.update(buf);
            tail.update(buf);
            sink(at, buf)
        })?;
        if hex::encode(h.finalize()) != self.checked.segment_sha256[i + 1] {
            return Err(changed(&self.o.image, r));
        }
        Ok(())
    }

    /// The image's head, checked like a range.
    fn head_bytes(&self, img: &mut File) -> Result<Vec<u8>> {
        let mut v = vec![];
        bmap::read_ranges(img, &[self.plan.head], |_, b| {
            v.extend_from_slice(b);
            Ok(())
        })?;
        if hex::encode(Sha256::digest(&v)) != self.checked.segment_sha256[0] {
            return Err(changed(&self.o.image, self.plan.head));
        }
        Ok(v)
    }

    fn local(&self, path: &Path, block: bool) -> Result<Duration> {
        let label = path.display().to_string();
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true);
        if block {
            // Exclusive: refused while anything (a mount in any namespace, swap, dm, md)
            // holds the device, and nothing can claim it while this flash runs.
            opts.custom_flags(libc::O_EXCL);
        } else {
            opts.create(true).truncate(false);
        }
        let out = opts.open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                refuse_in_use(
                    &label,
                    &[
                        "the kernel reports it busy (mounted, swap, or held by another device)"
                            .into(),
                    ],
                )
            } else {
                Error::failed(format!("open {label}: {e}"))
            }
        })?;
        let image_bytes = self
            .plan
            .zeros
            .last()
            .map(|z| z[0] + z[1])
            .unwrap_or(0)
            .max(self.plan.writes.last().map(|w| w[0] + w[1]).unwrap_or(0))
            .max(self.plan.head[1]);
        if !block && out.metadata().map(|m| m.len()).unwrap_or(0) < image_bytes {
            out.set_len(image_bytes).ctx(|| "size target file".into())?;
        }
        // First the marker: from here until the head is written the disk does not boot.
        out.write_all_at(&marker_head(self.plan.head[1], &self.checked.sha256), 0)
            .ctx(|| format!("write {label}"))?;
        out.sync_data().ctx(|| format!("sync {label}"))?;
        let total: u64 = self.plan.writes.iter().map(|w| w[1]).sum();
        let bar = self.o.progress.bytes("flash", total);
        let start = Instant::now();
        let mut img =
            File::open(&self.o.image).ctx(|| format!("open {}", self.o.image.display()))?;
        let mut tail = Sha256::new();
        for op in self.plan.ops() {
            match op {
                Op::Write(i) => self.send_range(&mut img, i, &mut tail, &mut |at, buf| {
                    out.write_all_at(buf, at)
                        .ctx(|| format!("write {label} at {at}"))?;
                    bar.inc(buf.len() as u64);
                    Ok(())
                })?,
                Op::Zero(z) => zero_local(&out, z, block)?,
            }
        }
        out.sync_all().ctx(|| format!("sync {label}"))?;
        bar.finish_and_clear();
        let write_time = start.elapsed();
        drop_cache(&out);
        let (_, sums) = bmap::hash_each(path, &self.plan.writes)?;
        for (i, s) in sums.iter().enumerate() {
            if *s != self.checked.segment_sha256[i + 1] {
                return Err(readback_failed(&label, self.plan.writes[i]));
            }
        }
        // Everything else is in place and verified: now the partition table.
        let head = self.head_bytes(&mut img)?;
        out.write_all_at(&head, 0)
            .ctx(|| format!("write {label}"))?;
        out.sync_all().ctx(|| format!("sync {label}"))?;
        drop_cache(&out);
        if bmap::hash_ranges(path, &[self.plan.head])? != self.checked.segment_sha256[0] {
            return Err(readback_failed(&label, self.plan.head));
        }
        Ok(write_time)
    }

    fn ssh(
        &self,
        dest: &str,
        port: Option<u16>,
        path: &str,
        r: &RemoteFacts,
    ) -> Result<(Duration, u64)> {
        let url = ssh_url(dest, port, path);
        let block = r.kind == "block";
        // The receiver is plain POSIX sh + dd. It first reports the device's facts again
        // and waits for GO (nothing may have claimed it since the preflight), then reads
        // one header line per operation: `W OFF LEN` and LEN bytes, or `Z OFF LEN`.
        let decode = if r.zstd { "zstd -dcq" } else { "cat" };
        let facts = if block { blockdev::FACTS_SCRIPT } else { "" };
        let script = format!(
            "p={path}\n{facts}\necho END\nread -r go; [ \"$go\" = GO ] || exit 3\n\
             zd() {{ dd if=/dev/zero of=\"$p\" bs=1M seek=\"$1\" count=\"$2\" oflag=seek_bytes iflag=count_bytes conv=notrunc,nocreat status=none; }}\n\
             if [ -b \"$p\" ]; then z() {{ blkdiscard -z -o \"$1\" -l \"$2\" \"$p\" 2>/dev/null || zd \"$1\" \"$2\"; }}\n\
             else z() {{ fallocate -p -o \"$1\" -l \"$2\" \"$p\" 2>/dev/null || zd \"$1\" \"$2\"; }}; fi\n\
             set -e\n\
             {decode} | {{ while read -r op off len; do case $op in \
               W) dd of=\"$p\" bs=1M seek=\"$off\" count=\"$len\" oflag=seek_bytes iflag=fullblock,count_bytes conv=notrunc,nocreat status=none ;; \
               Z) z \"$off\" \"$len\" </dev/null ;; \
               *) exit 4 ;; esac; done; }}\n\
             sync\necho DONE\n"
        );
        let mut child = ssh_spawn(dest, port, &script, Stdio::piped(), Stdio::piped())?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::failed("ssh stdin"))?;
        let mut stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| Error::failed("ssh stdout"))?,
        );
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).ctx(|| "ssh".into())? == 0 {
                let out = child.wait_with_output().ctx(|| "ssh".into())?;
                return Err(Error::failed(format!(
                    "{url}: the remote side ended before writing: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            if line.trim() == "END" {
                break;
            }
            seen.push_str(&line);
        }
        if block {
            let why = blockdev::parse_facts(&seen).in_use(&r.name);
            if !why.is_empty() {
                let _ = stdin.write_all(b"NO\n");
                drop(stdin);
                let _ = child.wait();
                return Err(refuse_in_use(&url, &why));
            }
        }
        stdin.write_all(b"GO\n").ctx(|| "send".into())?;
        let mut wire = Counting { inner: stdin, n: 0 };
        let total: u64 = self.plan.writes.iter().map(|w| w[1]).sum();
        let bar = self.o.progress.bytes("flash", total);
        let start = Instant::now();
        let mut img =
            File::open(&self.o.image).ctx(|| format!("open {}", self.o.image.display()))?;
        let mut tail = Sha256::new();
        let send = |w: &mut dyn Write, img: &mut File, tail: &mut Sha256| -> Result<()> {
            // The marker first: from here until the head is written the disk does not boot.
            let [_, hl] = self.plan.head;
            w.write_all(format!("W 0 {hl}\n").as_bytes())
                .ctx(|| "send".into())?;
            w.write_all(&marker_head(hl, &self.checked.sha256))
                .ctx(|| "send".into())?;
            for op in self.plan.ops() {
                match op {
                    Op::Write(i) => {
                        let [off, len] = self.plan.writes[i];
                        w.write_all(format!("W {off} {len}\n").as_bytes())
                            .ctx(|| "send".into())?;
                        self.send_range(img, i, tail, &mut |_, buf| {
                            w.write_all(buf)
                                .ctx(|| "send (did the remote side fail?)".into())?;
                            bar.inc(buf.len() as u64);
                            Ok(())
                        })?;
                    }
                    Op::Zero([off, len]) => {
                        w.write_all(format!("Z {off} {len}\n").as_bytes())
                            .ctx(|| "send".into())?;
                    }
                }
            }
            Ok(())
        };
        let sent = if r.zstd {
            let mut enc = zstd::stream::Encoder::new(&mut wire, 3).ctx(|| "zstd".into())?;
            let res = send(&mut enc, &mut img, &mut tail);
            res.and_then(|_| enc.finish().map(|_| ()).ctx(|| "zstd finish".into()))
        } else {
            send(&mut wire, &mut img, &mut tail)
        };
        let wire_bytes = wire.n;
        drop(wire);
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        let out = child.wait_with_output().ctx(|| "ssh".into())?;
        bar.finish_and_clear();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match sent {
            Err(e) if !out.status.success() => {
                return Err(Error::failed(format!(
                    "flash over ssh to {url} failed ({}): {} ({e})",
                    out.status,
                    stderr.trim()
                )))
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        if !out.status.success() || !rest.contains("DONE") {
            return Err(Error::failed(format!(
                "flash over ssh to {url} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
            )));
        }
        let write_time = start.elapsed();
        // Read back what was written, on the remote side, past the device's own cache.
        let script = format!(
            "p={path}; sync; if [ -b \"$p\" ]; then blockdev --flushbufs \"$p\" 2>/dev/null || true; fi; \
             while read -r off len; do dd if=\"$p\" bs=1M skip=\"$off\" count=\"$len\" iflag=skip_bytes,count_bytes status=none; done | sha256sum"
        );
        let lines: String = self
            .plan
            .writes
            .iter()
            .map(|[o, l]| format!("{o} {l}\n"))
            .collect();
        let got = ssh_run(dest, port, &script, Some(lines.as_bytes()))?;
        if got.split_whitespace().next() != Some(hex::encode(tail.finalize()).as_str()) {
            return Err(Error::failed(format!(
                "read-back verification FAILED: the ranges written to {url} differ from the image; its partition table was not written"
            )));
        }
        // Everything else is in place and verified: now the partition table.
        let head = self.head_bytes(&mut img)?;
        let script = format!(
            "set -e; p={path}; dd of=\"$p\" bs=1M count={} iflag=fullblock,count_bytes conv=notrunc,nocreat status=none; sync; \
             if [ -b \"$p\" ]; then blockdev --flushbufs \"$p\" 2>/dev/null || true; fi; \
             dd if=\"$p\" bs=1M count={} iflag=count_bytes status=none | sha256sum",
            head.len(),
            head.len()
        );
        let got = ssh_run(dest, port, &script, Some(&head))?;
        if got.split_whitespace().next() != Some(self.checked.segment_sha256[0].as_str()) {
            return Err(readback_failed(&url, self.plan.head));
        }
        Ok((write_time, wire_bytes))
    }
}

/// Counts bytes passing through a writer.
struct Counting<W> {
    inner: W,
    n: u64,
}
impl<W: Write> Write for Counting<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("ssh://root@10.0.0.5:2222/dev/sda").unwrap(),
            Target::Ssh {
                dest: "root@10.0.0.5".into(),
                port: Some(2222),
                path: "/dev/sda".into()
            }
        );
        assert_eq!(
            parse_target("ssh://rescue/dev/nvme0n1").unwrap(),
            Target::Ssh {
                dest: "rescue".into(),
                port: None,
                path: "/dev/nvme0n1".into()
            }
        );
        assert!(parse_target("ssh://host/dev/sda;rm").is_err());
        assert!(parse_target("ssh://host:xx/dev/sda").is_err());
        assert!(parse_target("ssh:///dev/sda").is_err());
        assert_eq!(
            parse_target("/nonexistent/x.img").unwrap(),
            Target::File("/nonexistent/x.img".into())
        );
    }

    #[test]
    fn the_plan_writes_the_head_last_and_zeroes_every_gap() {
        let map = BlockMap {
            image_bytes: 8 << 20,
            block_size: 4096,
            mapped_bytes: 0,
            ranges: vec![[0, 8192], [512 << 10, 1 << 20], [4 << 20, 4096]],
            sha256: String::new(),
            range_sha256: vec![],
        };
        let p = Plan::new(&map);
        assert_eq!(p.head, [0, 1 << 20]);
        assert_eq!(p.writes, [[1 << 20, 512 << 10], [4 << 20, 4096]]);
        assert_eq!(
            p.zeros,
            [
                [(3 << 20) / 2, (5 << 19)],
                [(4 << 20) + 4096, (4 << 20) - 4096]
            ]
        );
        // Head, writes and zeros cover the image exactly once.
        let mut all: Vec<[u64; 2]> = p.segments();
        all.extend(&p.zeros);
        all.sort();
        let mut pos = 0;
        for [o, l] in all {
            assert_eq!(o, pos);
            pos += l;
        }
        assert_eq!(pos, 8 << 20);
        assert_eq!(p.zeroed(), (8 << 20) - (1 << 20) - (512 << 10) - 4096);
        // An image smaller than the head is all head.
        let small = BlockMap {
            image_bytes: 64 << 10,
            ranges: vec![[0, 4096]],
            ..map
        };
        let p = Plan::new(&small);
        assert_eq!(
            (p.head, p.writes.len(), p.zeros.len()),
            ([0, 64 << 10], 0, 0)
        );
    }

    #[test]
    fn the_marker_is_recognised_and_is_not_a_boot_sector() {
        let h = marker_head(HEAD, "ab12");
        assert_eq!(h.len() as u64, HEAD);
        assert_ne!(&h[510..512], &[0x55, 0xaa]);
        assert_ne!(&h[512..520], b"EFI PART");
        assert!(marker_in(&h).unwrap().contains("image-sha256=ab12"));
        assert!(marker_in(&[0u8; 512]).is_none());
        assert!(marker_in(b"").is_none());
    }
}
