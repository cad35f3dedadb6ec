//! `clawimg verify`: compare a running node with its image.

use crate::error::Result;
use std::path::Path;

/// `verify IMAGE --against ssh://…`: exit 1 on drift.
pub(super) fn verify(image: &Path, against: &str) -> Result<i32> {
    let r = crate::ops::verify::verify(image, against)?;
    println!("verify {} against {against}", image.display());
    print!("{}", r.render());
    if r.drift.is_empty() {
        println!("no drift");
        Ok(0)
    } else {
        println!("drift: {} differences", r.drift.len());
        Ok(1)
    }
}
