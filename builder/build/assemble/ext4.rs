//! The root filesystem: `mkfs.ext4 -d` straight from the rootfs directory into the disk
//! image at the root partition's offset (no loop device, no mount, no copy).

use crate::error::Result;
use crate::support::exec;
use crate::support::identity::Identity;
use std::path::Path;

/// Filesystem block size.
pub const BLOCK: u64 = 4096;

/// Space the tree needs on ext4: data blocks, directories and inodes, in bytes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TreeSize {
    /// Bytes of data blocks (files rounded to blocks, directories, long symlinks).
    pub bytes: u64,
    /// Number of inodes.
    pub inodes: u64,
}

/// Walk a tree without following symlinks and add up what ext4 will need.
pub fn tree_size(root: &Path) -> Result<TreeSize> {
    let mut s = TreeSize::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        s.inodes += 1;
        s.bytes += BLOCK;
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| crate::error::Error::failed(format!("read {}: {e}", dir.display())))?;
        for ent in rd {
            let ent = ent?;
            let md = ent.metadata()?;
            if md.is_dir() {
                stack.push(ent.path());
            } else {
                s.inodes += 1;
                if md.is_file() || (md.file_type().is_symlink() && md.len() > 59) {
                    s.bytes += md.len().div_ceil(BLOCK) * BLOCK;
                }
            }
        }
    }
    Ok(s)
}

/// Size of the root filesystem for a tree, following the profile's headroom rules.
pub fn plan_size(t: TreeSize, headroom_percent: u64, min_free_mib: u64) -> u64 {
    let data = t.bytes;
    let free = (data * headroom_percent / 100).max(min_free_mib << 20);
    // Inode tables (256 B per 16 KiB), journal, bitmaps and reserved blocks (5%).
    let total = data + free;
    let overhead = total / 64 + (64 << 20) + total / 20;
    (total + overhead).div_ceil(1 << 20) << 20
}

/// Make the filesystem in `disk` at `offset`, `size` bytes long, filled from `tree`.
pub fn make(disk: &Path, offset: u64, size: u64, tree: &Path, ids: &Identity) -> Result<()> {
    let sh = exec::shell()?;
    let ext = format!(
        "offset={offset},hash_seed={},root_owner=0:0,nodiscard,lazy_itable_init=1",
        ids.root_hash_seed
    );
    let blocks = (size / BLOCK).to_string();
    let uuid = ids.root_fs.to_string();
    let mut cmd = sh
        .cmd("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-L",
            "cloudimg-rootfs",
            "-U",
        ])
        .arg(&uuid)
        .arg("-E")
        .arg(&ext)
        .arg("-d")
        .arg(tree)
        .arg(disk)
        .arg(&blocks);
    if let Ok(sde) = std::env::var("SOURCE_DATE_EPOCH") {
        cmd = cmd.env("E2FSPROGS_FAKE_TIME", sde);
    }
    exec::run(cmd)?;
    // 1.47.0 copies host ctimes into the inodes: normalize them (see ext4_times).
    if let Some(sde) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        crate::build::assemble::ext4_times::normalize(disk, offset, sde)?;
    }
    Ok(())
}

/// `e2fsck -fn` on the filesystem inside the disk image.
pub fn check(disk: &Path, offset: u64) -> Result<String> {
    let sh = exec::shell()?;
    let spec = format!("{}?offset={offset}", disk.display());
    exec::run(sh.cmd("e2fsck").args(["-fn", &spec]))
}
