//! `clawimg diff`: explain the differences between two builds.

use crate::error::Result;
use std::path::Path;

/// `diff A B`: exit 1 when they differ.
pub(super) fn diff(a: &Path, b: &Path, max_files: usize, json: bool) -> Result<i32> {
    let r = crate::ops::diff::compare(a, b, max_files)?;
    if json {
        let v = serde_json::json!({
            "a": a.display().to_string(),
            "b": b.display().to_string(),
            "differs": r.differs,
            "identical": r.identical,
            "sections": r.sections.iter().map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect::<serde_json::Map<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for l in &r.lines {
            println!("{l}");
        }
    }
    Ok(if r.differs { 1 } else { 0 })
}
