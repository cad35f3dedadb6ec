//! The EFI system partition: a FAT image made with `mkfs.vfat` and filled with mtools (no
//! mount: this host's kernel has no vfat), then copied sparsely into the disk image.
//! mtools' `file@@offset` addressing misreads FAT32 inside a larger file, hence the
//! separate image.

use crate::error::{Context, Result};
use crate::support::exec;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Make the FAT filesystem with `BOOTX64.EFI` at the removable-media path and write it
/// into `disk` at `offset`.
pub fn make(
    disk: &Path,
    offset: u64,
    size: u64,
    volume_id: u32,
    efi_image: &Path,
    work: &Path,
) -> Result<()> {
    let sh = exec::shell()?;
    let img = work.join("esp.img");
    let _ = std::fs::remove_file(&img);
    let kib = (size / 1024).to_string();
    let vol = format!("{volume_id:08x}");
    exec::run(
        sh.cmd("mkfs.vfat")
            .args(["-C", "-F", "32", "-S", "512", "-n", "ESP", "-i", &vol])
            .arg(&img)
            .arg(&kib),
    )?;
    let spec = img.display().to_string();
    exec::run(sh.cmd("mmd").env("MTOOLS_SKIP_CHECK", "1").args([
        "-i",
        &spec,
        "::/EFI",
        "::/EFI/BOOT",
    ]))?;
    exec::run(
        sh.cmd("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", &spec])
            .arg(efi_image)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    )?;
    // mtools stamps entries with the local wall clock: normalize them.
    if let Some(sde) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        crate::build::assemble::fat_times::normalize(&img, sde)?;
    }
    copy_sparse(&img, disk, offset)?;
    let _ = std::fs::remove_file(&img);
    Ok(())
}

/// Copy `src` into `dst` at `offset`, skipping all-zero blocks (they stay holes).
pub fn copy_sparse(src: &Path, dst: &Path, offset: u64) -> Result<u64> {
    let mut r = std::fs::File::open(src).ctx(|| format!("open {}", src.display()))?;
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(dst)
        .ctx(|| format!("open {}", dst.display()))?;
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = 0u64;
    let mut written = 0u64;
    loop {
        let n = r.read(&mut buf).ctx(|| format!("read {}", src.display()))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            w.seek(SeekFrom::Start(offset + pos))
                .ctx(|| "seek".into())?;
            w.write_all(&buf[..n])
                .ctx(|| format!("write {}", dst.display()))?;
            written += n as u64;
        }
        pos += n as u64;
    }
    Ok(written)
}
