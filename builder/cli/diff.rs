//! `clawimg diff`: explain the differences between two builds.

use crate::error::Result;
use std::path::Path;

/// `diff A B`: exit 1 when they differ.
pub(super) fn diff(a: &Path, b: &Path, max_files: usize) -> Result<i32> {
    let r = crate::ops::diff::compare(a, b, max_files)?;
    for l in &r.lines {
        println!("{l}");
    }
    Ok(if r.differs { 1 } else { 0 })
}
