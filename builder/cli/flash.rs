//! `clawimg flash`: write an image (sealed first when secrets are given) to a target.

use super::args::Global;
use crate::error::{Error, Result};
use crate::ops::{flash, seal};
use crate::support::progress::Progress;
use std::path::{Path, PathBuf};

/// `flash IMAGE --to TARGET [--secrets FILE --node NAME]`.
pub(super) fn flash(
    g: &Global,
    image: &Path,
    to: &str,
    yes: bool,
    seal_with: Option<(PathBuf, String)>,
) -> Result<i32> {
    let image = seal::raw_image(image)?;
    let target = flash::parse_target(to)?;
    // With secrets, the node's copy is sealed first (every secrets check runs there,
    // before the target is touched) in a private temp dir beside the image.
    let _sealed_dir;
    let image = match seal_with {
        Some((secrets, node)) => {
            let dir = tempfile::Builder::new()
                .prefix(".clawimg-flash-")
                .tempdir_in(image.parent().unwrap_or(Path::new(".")))
                .map_err(|e| Error::failed(format!("temp dir beside the image: {e}")))?;
            let req = seal::SealRequest {
                image: image.clone(),
                secrets,
                node: node.clone(),
                output: dir.path().join(format!("{node}.raw")),
            };
            let sealed = seal::seal(&req)?;
            _sealed_dir = dir;
            sealed
        }
        None => image,
    };
    let o = flash::FlashOptions {
        image,
        target,
        yes,
        progress: Progress::new(g.quiet),
    };
    let r = flash::flash(&o)?;
    let secs = r.write_time.as_secs_f64().max(0.001);
    println!(
        "flashed {} ({} ranges, {:.1} MiB) to {to} in {secs:.1}s ({:.1} MiB/s)",
        o.image.display(),
        r.ranges,
        r.bytes as f64 / 1048576.0,
        r.bytes as f64 / 1048576.0 / secs
    );
    if let Some(w) = r.wire_bytes {
        println!("  on the wire: {:.1} MiB (zstd)", w as f64 / 1048576.0);
    }
    if r.zeroed > 0 {
        println!(
            "  zeroed: {:.1} MiB between the ranges (left empty by the image)",
            r.zeroed as f64 / 1048576.0
        );
    }
    let against = if r.checked_against.is_empty() {
        "no recorded checksums to check it against".to_string()
    } else {
        format!("checked against {}", r.checked_against.join(" and "))
    };
    println!(
        "  read-back verified: the target equals the image (sha256 {}, {against})",
        r.image_sha256
    );
    Ok(0)
}
