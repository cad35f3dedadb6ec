//! Assemble stage: GPT disk with BIOS boot, ESP and ext4 root, GRUB for BIOS and UEFI —
//! written into a sparse file without loop devices or mounts.

pub mod esp;
pub mod ext4;
pub mod ext4_times;
pub mod fat_times;
pub mod gpt;
pub mod grub;

use crate::error::{Context, Result};
use crate::image::files::FileEntry;
use crate::image::layout;
use crate::profile::Image;
use crate::support::identity::Identity;
use crate::support::rootfs::Rootfs;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What assembly needs.
pub struct AssembleInput<'a> {
    /// The finished root tree.
    pub rootfs: &'a Rootfs,
    /// The profile's `[image]` table.
    pub image: &'a Image,
    /// Menu entry title.
    pub title: String,
    /// Disk identifiers.
    pub ids: Identity,
    /// Scratch directory for boot images.
    pub work: PathBuf,
}

/// The assembled raw disk.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// The raw image file.
    pub raw: PathBuf,
    /// Partition layout.
    pub layout: layout::Layout,
    /// Bytes of data in the root tree.
    pub rootfs_bytes: u64,
    /// Kernel command line after `root=... ro`.
    pub cmdline: String,
    /// Entries for `files.tsv` that assembly adds to the listed tree: grub.cfg, and the
    /// ESP as the node sees it mounted on /boot/efi (vfat `umask=0077`: mode 0700, root).
    pub files: Vec<FileEntry>,
}

/// The ESP's entries as a node lists them under /boot/efi.
fn esp_entries(efi_image: &Path) -> Result<Vec<FileEntry>> {
    use sha2::Digest;
    let efi = std::fs::read(efi_image).ctx(|| format!("read {}", efi_image.display()))?;
    let e = |path: &str, kind: char, size: u64, digest: String| FileEntry {
        path: path.into(),
        kind,
        mode: 0o700,
        uid: 0,
        gid: 0,
        size,
        digest,
    };
    Ok(vec![
        e("/boot/efi", 'd', 0, "-".into()),
        e("/boot/efi/EFI", 'd', 0, "-".into()),
        e("/boot/efi/EFI/BOOT", 'd', 0, "-".into()),
        e(
            "/boot/efi/EFI/BOOT/BOOTX64.EFI",
            'f',
            efi.len() as u64,
            hex::encode(sha2::Sha256::digest(&efi)),
        ),
    ])
}

/// Kernel command line arguments every image gets (serial and VGA consoles).
pub fn cmdline(image: &Image) -> Vec<String> {
    let mut v = vec!["console=tty1".to_string(), "console=ttyS0".to_string()];
    for a in &image.kernel_cmdline {
        if !v.contains(a) {
            v.push(a.clone());
        }
    }
    v
}

/// Build `raw` from the input.
pub fn run(input: &AssembleInput<'_>, raw: &Path) -> Result<Assembled> {
    let args = cmdline(input.image);
    // grub.cfg lives in the root filesystem, so write it before mkfs.
    input.rootfs.write(
        "/boot/grub/grub.cfg",
        grub::config(&input.ids, &input.title, &args).as_bytes(),
        0o644,
    )?;

    let mut files = crate::image::files::entries_of(input.rootfs, "/boot/grub/grub.cfg")?;
    let tree = ext4::tree_size(input.rootfs.host_path())?;
    let root_bytes = match input.image.size.as_str() {
        "auto" => ext4::plan_size(tree, input.image.headroom_percent, input.image.min_free_mib),
        s => {
            let total = crate::support::text::parse_size(s).unwrap_or(0);
            let fixed = (2 + layout::BIOS_BOOT_MIB + layout::SEED_MIB + input.image.esp_mib) << 20;
            let root = total.saturating_sub(fixed);
            let need = ext4::plan_size(tree, 0, 64);
            if root < need {
                return Err(crate::error::Error::config(format!(
                    "key `image.size`: {s} is too small: the root tree needs about {} MiB plus {} MiB for the other partitions",
                    need >> 20,
                    fixed >> 20
                )));
            }
            root & !((1 << 20) - 1)
        }
    };
    let layout = layout::plan(input.image.esp_mib, root_bytes);

    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(raw)
        .ctx(|| format!("create {}", raw.display()))?;
    f.set_len(layout.disk_bytes)
        .ctx(|| "size disk image".into())?;

    let boot = grub::make(
        &input.work,
        &input.ids,
        layout.bios.first_lba,
        layout.bios.bytes(),
    )?;
    ext4::make(
        raw,
        layout.root.offset(),
        layout.root.bytes(),
        input.rootfs.host_path(),
        &input.ids,
    )?;
    esp::make(
        raw,
        layout.esp.offset(),
        layout.esp.bytes(),
        input.ids.esp_volume_id,
        &boot.efi_image,
        &input.work,
    )?;

    files.extend(esp_entries(&boot.efi_image)?);
    let mut w = f.try_clone().ctx(|| "reopen disk".into())?;
    w.seek(SeekFrom::Start(layout.bios.offset()))
        .ctx(|| "seek".into())?;
    w.write_all(&boot.bios_core)
        .ctx(|| "write GRUB core image".into())?;
    // The seed partition is explicit zeros (allocated, so in the block map): flashing onto a
    // used disk must clear it, or old bytes there could look like a node's seed.
    w.seek(SeekFrom::Start(layout.seed.offset()))
        .ctx(|| "seek".into())?;
    w.write_all(&vec![0u8; layout.seed.bytes() as usize])
        .ctx(|| "write the empty seed partition".into())?;
    gpt::write(&f, &layout, &input.ids, boot.mbr_code)?;
    f.sync_all().ctx(|| "sync disk image".into())?;
    Ok(Assembled {
        raw: raw.to_path_buf(),
        layout,
        rootfs_bytes: tree.bytes,
        cmdline: args.join(" "),
        files,
    })
}
