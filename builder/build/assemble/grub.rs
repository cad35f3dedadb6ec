//! GRUB for both firmware types, without grub-install:
//! - BIOS: `boot.img` in the MBR with the core image's first sector patched in, and a
//!   `grub-mkimage -O i386-pc` core image (whose first sector lists the rest) in the BIOS boot
//!   partition;
//! - UEFI: a `grub-mkimage -O x86_64-efi` image as `EFI/BOOT/BOOTX64.EFI` on the ESP.
//!
//! Both embed an early config that finds the root filesystem by UUID and reads
//! `/boot/grub/grub.cfg` from it, so kernel updates only need the `/boot/vmlinuz` links.

use crate::error::{Context, Error, Result};
use crate::support::exec;
use crate::support::identity::Identity;
use std::path::{Path, PathBuf};

const PC_DIR: &str = "/usr/lib/grub/i386-pc";
const EFI_DIR: &str = "/usr/lib/grub/x86_64-efi";

/// Offset of the 8-byte LBA of the core image's first sector in boot.img.
const KERNEL_SECTOR: usize = 0x5c;
/// Offset of the boot-drive check jump in boot.img (NOP'd for hard disks, like grub-setup).
const DRIVE_CHECK: usize = 0x66;

/// Modules both core images embed, so nothing has to be loaded from disk at boot.
const COMMON_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "ext2",
    "search",
    "search_fs_uuid",
    "configfile",
    "normal",
    "linux",
    "boot",
    "echo",
    "test",
    "serial",
    "terminal",
    "sleep",
    "gzio",
    "minicmd",
    "halt",
    "reboot",
];
const BIOS_MODULES: &[&str] = &["biosdisk"];
const EFI_MODULES: &[&str] = &["fat", "efi_gop", "all_video"];

/// Boot images made for one disk.
#[derive(Debug, Clone)]
pub struct BootImages {
    /// First 440 bytes of the MBR (patched boot.img).
    pub mbr_code: [u8; 440],
    /// The i386-pc core image, patched with its own block list.
    pub bios_core: Vec<u8>,
    /// Path of the x86_64-efi image (BOOTX64.EFI).
    pub efi_image: PathBuf,
}

/// The early config embedded in both core images.
pub fn early_config(ids: &Identity) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {uuid}\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n",
        uuid = ids.root_fs
    )
}

/// `/boot/grub/grub.cfg` for the image.
pub fn config(ids: &Identity, title: &str, cmdline_extra: &[String]) -> String {
    let extra = cmdline_extra.join(" ");
    format!(
        "# Written by clawimg; the image is immutable, so this file is too.\n\
         set default=0\n\
         set timeout=1\n\
         set timeout_style=hidden\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         menuentry '{title}' --id clawimg {{\n\
         \tsearch --no-floppy --fs-uuid --set=root {fs}\n\
         \tlinux /boot/vmlinuz root=PARTUUID={part} ro {extra}\n\
         \tinitrd /boot/initrd.img\n\
         }}\n",
        fs = ids.root_fs,
        part = ids.root_part,
    )
}

/// Patch boot.img for a core image starting at `core_lba`; returns the MBR code area.
pub fn patch_boot_img(boot_img: &[u8], core_lba: u64) -> Result<[u8; 440]> {
    if boot_img.len() != 512 {
        return Err(Error::failed(format!(
            "boot.img is {} bytes, expected 512",
            boot_img.len()
        )));
    }
    let mut b = boot_img.to_vec();
    b[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    // Some BIOSes pass a wrong drive number; for a hard disk grub-setup NOPs the check.
    b[DRIVE_CHECK] = 0x90;
    b[DRIVE_CHECK + 1] = 0x90;
    let mut code = [0u8; 440];
    code.copy_from_slice(&b[..440]);
    Ok(code)
}

/// Fill the block list at the end of the core image's first sector (diskboot.img):
/// the remaining sectors follow contiguously at `core_lba + 1`.
pub fn patch_core(core: &mut [u8], core_lba: u64) -> Result<()> {
    if core.len() < 1024 {
        return Err(Error::failed(
            "GRUB core image is implausibly small".to_string(),
        ));
    }
    let sectors = core.len().div_ceil(512) as u64;
    // struct { u64 start; u16 len; u16 segment; } at the end of sector 0.
    let off = 512 - 12;
    let len = u16::from_le_bytes([core[off + 8], core[off + 9]]) as u64;
    if len != sectors - 1 {
        return Err(Error::failed(format!(
            "GRUB core image block list says {len} sectors, image has {}",
            sectors - 1
        )));
    }
    core[off..off + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    Ok(())
}

/// Make both boot images in `work`.
pub fn make(work: &Path, ids: &Identity, core_lba: u64, max_core_bytes: u64) -> Result<BootImages> {
    let early = work.join("grub-early.cfg");
    std::fs::write(&early, early_config(ids)).ctx(|| format!("write {}", early.display()))?;
    let sh = exec::shell()?;
    let core_path = work.join("core.img");
    exec::run(
        sh.cmd("grub-mkimage")
            .args(["-O", "i386-pc", "-d", PC_DIR, "-p", "/boot/grub", "-c"])
            .arg(&early)
            .arg("-o")
            .arg(&core_path)
            .args(COMMON_MODULES)
            .args(BIOS_MODULES),
    )?;
    let efi_path = work.join("BOOTX64.EFI");
    exec::run(
        sh.cmd("grub-mkimage")
            .args(["-O", "x86_64-efi", "-d", EFI_DIR, "-p", "/boot/grub", "-c"])
            .arg(&early)
            .arg("-o")
            .arg(&efi_path)
            .args(COMMON_MODULES)
            .args(EFI_MODULES),
    )?;
    let mut core = std::fs::read(&core_path).ctx(|| "read core.img".into())?;
    if core.len() as u64 > max_core_bytes {
        return Err(Error::failed(format!(
            "GRUB core image is {} bytes, the BIOS boot partition holds {max_core_bytes}",
            core.len()
        )));
    }
    patch_core(&mut core, core_lba)?;
    let boot_img =
        std::fs::read(Path::new(PC_DIR).join("boot.img")).ctx(|| "read boot.img".into())?;
    let mbr_code = patch_boot_img(&boot_img, core_lba)?;
    Ok(BootImages {
        mbr_code,
        bios_core: core,
        efi_image: efi_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_img_gets_core_sector() {
        let img = vec![0u8; 512];
        let code = patch_boot_img(&img, 2048).unwrap();
        assert_eq!(
            u64::from_le_bytes(code[0x5c..0x64].try_into().unwrap()),
            2048
        );
        assert_eq!(&code[0x66..0x68], &[0x90, 0x90]);
        assert!(patch_boot_img(&[0u8; 100], 1).is_err());
    }

    #[test]
    fn core_block_list() {
        let mut core = vec![0u8; 512 * 5];
        core[512 - 4..512 - 2].copy_from_slice(&4u16.to_le_bytes());
        patch_core(&mut core, 2048).unwrap();
        assert_eq!(u64::from_le_bytes(core[500..508].try_into().unwrap()), 2049);
        let mut bad = vec![0u8; 512 * 5];
        assert!(patch_core(&mut bad, 2048).is_err());
    }
}
