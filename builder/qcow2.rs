//! qcow2 output: `qemu-img convert` of the raw image (holes stay holes).

use crate::error::Result;
use crate::exec;
use std::path::Path;

/// Convert `raw` into `out` (qcow2), optionally with zstd-compressed clusters.
pub fn convert(raw: &Path, out: &Path, compress: bool) -> Result<()> {
    let sh = exec::shell()?;
    let mut cmd = sh.cmd("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]);
    if compress {
        cmd = cmd.args(["-c", "-o", "compression_type=zstd"]);
    }
    exec::run(cmd.arg(raw).arg(out))?;
    Ok(())
}

/// `qemu-img check` output; fails if the image is not clean.
pub fn check(img: &Path) -> Result<String> {
    let sh = exec::shell()?;
    exec::run(sh.cmd("qemu-img").args(["check", "-q"]).arg(img))
}
