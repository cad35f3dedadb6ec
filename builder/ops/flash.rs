//! `clawimg flash`: write an image to a file, a local block device, or a device on a remote
//! rescue system over SSH (`ssh://user@host:port/dev/X`). Only the block map's ranges are
//! sent (zstd-compressed on the wire for SSH), then read back and compared by sha256.
//! Every check runs before the first byte is written.

use crate::build::outputs::bmap::{self, BlockMap};
use crate::error::{Context, Error, Result};
use crate::support::progress::Progress;
use crate::support::ssh::{parse_authority, ssh_run, ssh_spawn};
use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

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
    /// Time spent writing.
    pub write_time: Duration,
    /// Bytes on the wire (SSH, after compression).
    pub wire_bytes: Option<u64>,
    /// sha256 of the mapped ranges, as read back from the target.
    pub readback_sha256: String,
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

fn block_size_of(p: &Path) -> Result<u64> {
    let f = File::open(p).ctx(|| format!("open {}", p.display()))?;
    let mut size: u64 = 0;
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    // SAFETY: the ioctl writes one u64 into `size`.
    let rc = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), BLKGETSIZE64, &mut size) };
    if rc != 0 {
        return Err(Error::failed(format!(
            "cannot read size of {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(size)
}

/// Refuse a local block device that is mounted, holds the running root, or a partition of it is.
fn check_not_in_use(dev: &Path) -> Result<()> {
    let real = dev
        .canonicalize()
        .ctx(|| format!("resolve {}", dev.display()))?;
    let name = real
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(src), Some(mnt)) = (f.next(), f.next()) else {
            continue;
        };
        let src_name = Path::new(src)
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        if let Some(sn) = src_name {
            let is_part = sn.starts_with(&name)
                && sn[name.len()..]
                    .trim_start_matches('p')
                    .chars()
                    .all(|c| c.is_ascii_digit());
            if sn == name || is_part {
                let what = if mnt == "/" {
                    "holds the running root filesystem"
                } else {
                    "is mounted"
                };
                return Err(Error::config(format!(
                    "refusing to flash {}: {src} {what} at {mnt}",
                    dev.display()
                )));
            }
        }
    }
    Ok(())
}

fn confirm(what: &str) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(Error::config(format!(
            "refusing to overwrite {what} without confirmation: pass --yes"
        )));
    }
    eprint!("This overwrites {what}. Type 'yes' to continue: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .ctx(|| "read answer".into())?;
    if line.trim() != "yes" {
        return Err(Error::config(
            "not confirmed; nothing was written".to_string(),
        ));
    }
    Ok(())
}

/// The remote target's facts, gathered before writing.
struct RemoteFacts {
    size: u64,
    zstd: bool,
}

fn remote_preflight(dest: &str, port: Option<u16>, path: &str) -> Result<RemoteFacts> {
    // Size of a block device or a regular file; refuse a mounted device.
    let script = format!(
        "set -e; p={path}; \
         if [ -b \"$p\" ]; then \
           r=$(readlink -f \"$p\"); n=$(basename \"$r\"); \
           if grep -Eq \"^(/dev/)?$n(p?[0-9]+)? \" /proc/mounts; then echo MOUNTED; exit 0; fi; \
           echo SIZE $(blockdev --getsize64 \"$p\"); \
         elif [ -f \"$p\" ]; then echo SIZE $(stat -c %s \"$p\"); \
         else echo MISSING; fi; \
         if command -v zstd >/dev/null 2>&1; then echo ZSTD; fi"
    );
    let out = ssh_run(dest, port, &script, None)?;
    if out.contains("MOUNTED") {
        return Err(Error::config(format!("refusing to flash ssh://{dest}{path}: it (or a partition of it) is mounted on the remote host")));
    }
    if out.contains("MISSING") {
        return Err(Error::config(format!(
            "ssh://{dest}{path}: no such block device or file on the remote host"
        )));
    }
    let size = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("SIZE ")
                .and_then(|s| s.trim().parse::<u64>().ok())
        })
        .ok_or_else(|| {
            Error::failed(format!(
                "ssh://{dest}{path}: could not read the target's size: {out}"
            ))
        })?;
    Ok(RemoteFacts {
        size,
        zstd: out.lines().any(|l| l.trim() == "ZSTD"),
    })
}

/// Range list as text lines `OFFSET_BLOCKS COUNT_BLOCKS` (4 KiB blocks).
fn range_lines(map: &BlockMap) -> String {
    map.ranges
        .iter()
        .map(|[o, l]| format!("{} {}\n", o / bmap::BLOCK, l / bmap::BLOCK))
        .collect()
}

/// Run the flash.
pub fn flash(o: &FlashOptions) -> Result<Report> {
    let map = bmap::load_or_compute(&o.image)?;
    if map.ranges.iter().any(|[off, len]| {
        off % bmap::BLOCK != 0 || (len % bmap::BLOCK != 0 && off + len != map.image_bytes)
    }) {
        return Err(Error::config(
            "block map ranges are not 4 KiB aligned".to_string(),
        ));
    }
    // Every check before the first byte.
    let too_small = |have: u64, what: &str| {
        Err(Error::config(format!(
            "refusing to flash: {what} has {have} bytes, the image needs {} ({} MiB); nothing was written",
            map.image_bytes,
            map.image_bytes.div_ceil(1 << 20)
        )))
    };
    match &o.target {
        Target::File(p) => {
            if let Ok(m) = std::fs::metadata(p) {
                if m.len() < map.image_bytes {
                    return too_small(m.len(), &p.display().to_string());
                }
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
            check_not_in_use(p)?;
            let size = block_size_of(p)?;
            if size < map.image_bytes {
                return too_small(size, &p.display().to_string());
            }
            if !o.yes {
                confirm(&format!(
                    "block device {} ({} MiB)",
                    p.display(),
                    size >> 20
                ))?;
            }
        }
        Target::Ssh { dest, port, path } => {
            let facts = remote_preflight(dest, *port, path)?;
            if facts.size < map.image_bytes {
                return too_small(facts.size, &format!("ssh://{dest}{path}"));
            }
            return flash_ssh(o, &map, dest, *port, path, facts.zstd);
        }
    }
    flash_local(o, &map)
}

fn flash_local(o: &FlashOptions, map: &BlockMap) -> Result<Report> {
    let path = match &o.target {
        Target::File(p) | Target::Block(p) => p.clone(),
        Target::Ssh { .. } => unreachable!("ssh handled separately"),
    };
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(matches!(o.target, Target::File(_)))
        .truncate(false)
        .open(&path)
        .ctx(|| format!("open {}", path.display()))?;
    if matches!(o.target, Target::File(_))
        && out.metadata().map(|m| m.len()).unwrap_or(0) < map.image_bytes
    {
        out.set_len(map.image_bytes)
            .ctx(|| "size target file".into())?;
    }
    let bar = o.progress.bytes("flash", map.mapped_bytes);
    let start = Instant::now();
    let mut img = File::open(&o.image).ctx(|| format!("open {}", o.image.display()))?;
    bmap::read_ranges(&mut img, &map.ranges, |at, buf| {
        out.write_all_at(buf, at)
            .ctx(|| format!("write {} at {at}", path.display()))?;
        bar.inc(buf.len() as u64);
        Ok(())
    })?;
    out.sync_all().ctx(|| format!("sync {}", path.display()))?;
    bar.finish_and_clear();
    let write_time = start.elapsed();
    let readback = bmap::hash_ranges(&path, &map.ranges)?;
    verify(map, &readback)?;
    Ok(Report {
        bytes: map.mapped_bytes,
        ranges: map.ranges.len(),
        write_time,
        wire_bytes: None,
        readback_sha256: readback,
    })
}

fn verify(map: &BlockMap, readback: &str) -> Result<()> {
    if readback != map.sha256 {
        return Err(Error::failed(format!(
            "read-back verification FAILED: target has sha256 {readback} over the written ranges, the image {}",
            map.sha256
        )));
    }
    Ok(())
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

fn flash_ssh(
    o: &FlashOptions,
    map: &BlockMap,
    dest: &str,
    port: Option<u16>,
    path: &str,
    zstd: bool,
) -> Result<Report> {
    // The receiver is plain POSIX sh + dd: one header line per range, then its blocks.
    let decode = if zstd { "zstd -dcq" } else { "cat" };
    let script = format!(
        "set -e; {decode} | {{ while read off cnt; do \
           dd of={path} bs=4096 seek=$off count=$cnt iflag=fullblock conv=notrunc,nocreat status=none; \
         done; }}; sync"
    );
    let mut child = ssh_spawn(dest, port, &script, Stdio::piped(), Stdio::null())?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::failed("ssh stdin"))?;
    let mut wire = Counting { inner: stdin, n: 0 };
    let bar = o.progress.bytes("flash", map.mapped_bytes);
    let start = Instant::now();
    let mut img = File::open(&o.image).ctx(|| format!("open {}", o.image.display()))?;
    let send = |w: &mut dyn Write, img: &mut File| -> Result<()> {
        for r in &map.ranges {
            let [off, len] = *r;
            // A final partial block (image size not a multiple of 4 KiB) is padded with zeros.
            let blocks = len.div_ceil(bmap::BLOCK);
            w.write_all(format!("{} {}\n", off / bmap::BLOCK, blocks).as_bytes())
                .ctx(|| "send".into())?;
            img.seek(SeekFrom::Start(off)).ctx(|| "seek".into())?;
            let mut left = len;
            let mut buf = vec![0u8; 1 << 20];
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                img.read_exact(&mut buf[..n]).ctx(|| "read image".into())?;
                w.write_all(&buf[..n])
                    .ctx(|| "send (did the remote side fail?)".into())?;
                bar.inc(n as u64);
                left -= n as u64;
            }
            let pad = (blocks * bmap::BLOCK - len) as usize;
            if pad > 0 {
                w.write_all(&vec![0u8; pad]).ctx(|| "send".into())?;
            }
        }
        Ok(())
    };
    let sent = if zstd {
        let mut enc = zstd::stream::Encoder::new(&mut wire, 3).ctx(|| "zstd".into())?;
        let r = send(&mut enc, &mut img);
        r.and_then(|_| enc.finish().map(|_| ()).ctx(|| "zstd finish".into()))
    } else {
        send(&mut wire, &mut img)
    };
    let wire_bytes = wire.n;
    drop(wire);
    let out = child.wait_with_output().ctx(|| "ssh".into())?;
    bar.finish_and_clear();
    if !out.status.success() || sent.is_err() {
        return Err(Error::failed(format!(
            "flash over ssh to {dest}:{path} failed ({}): {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            sent.err().map(|e| e.to_string()).unwrap_or_default()
        )));
    }
    let write_time = start.elapsed();
    // Read back the same ranges on the remote side and hash them there.
    let script = format!(
        "set -e; while read off cnt; do dd if={path} bs=4096 skip=$off count=$cnt iflag=fullblock status=none; done | sha256sum"
    );
    let lines = range_lines(map);
    let out = ssh_run(dest, port, &script, Some(lines.as_bytes()))?;
    let readback = out.split_whitespace().next().unwrap_or("").to_string();
    // Ranges are whole blocks remotely; hash the image the same way (pads a partial last block).
    let expected = if map.ranges.iter().all(|[_, l]| l % bmap::BLOCK == 0) {
        map.sha256.clone()
    } else {
        padded_hash(&o.image, map)?
    };
    let check = BlockMap {
        sha256: expected,
        ..map.clone()
    };
    verify(&check, &readback)?;
    Ok(Report {
        bytes: map.mapped_bytes,
        ranges: map.ranges.len(),
        write_time,
        wire_bytes: Some(wire_bytes),
        readback_sha256: readback,
    })
}

fn padded_hash(image: &Path, map: &BlockMap) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(image).ctx(|| "open image".into())?;
    let mut h = Sha256::new();
    for r in &map.ranges {
        bmap::read_ranges(&mut f, std::slice::from_ref(r), |_, b| {
            h.update(b);
            Ok(())
        })?;
        let pad = (r[1].div_ceil(bmap::BLOCK) * bmap::BLOCK - r[1]) as usize;
        h.update(vec![0u8; pad]);
    }
    Ok(hex::encode(h.finalize()))
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
}
