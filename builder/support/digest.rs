//! Content digests of files.

use crate::error::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).ctx(|| format!("read {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}
