//! The EFI system partition: `mkfs.vfat --offset` into the disk image, files added with
//! mtools (no mount: this host's kernel has no vfat).

use crate::error::Result;
use crate::exec;
use std::path::Path;

/// Make the FAT filesystem and put `BOOTX64.EFI` at the removable-media path.
pub fn make(disk: &Path, offset: u64, size: u64, volume_id: u32, efi_image: &Path) -> Result<()> {
    let sh = exec::shell()?;
    let sectors = (offset / 512).to_string();
    let kib = (size / 1024).to_string();
    let vol = format!("{volume_id:08x}");
    exec::run(
        sh.cmd("mkfs.vfat")
            .args(["-F", "32", "-S", "512", "-n", "ESP", "-i", &vol])
            .arg(format!("--offset={sectors}"))
            .arg(disk)
            .arg(&kib),
    )?;
    let img = format!("{}@@{offset}", disk.display());
    exec::run(sh.cmd("mmd").env("MTOOLS_SKIP_CHECK", "1").args(["-i", &img, "::/EFI", "::/EFI/BOOT"]))?;
    exec::run(
        sh.cmd("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", &img])
            .arg(efi_image)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    )?;
    Ok(())
}
