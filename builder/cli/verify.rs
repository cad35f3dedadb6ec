//! `clawimg verify`: compare a running node with its image.

use crate::error::Result;
use crate::ops::verify::Change;
use std::path::Path;

/// `verify IMAGE --against ssh://…`: exit 1 on drift.
pub(super) fn verify(image: &Path, against: &str, json: bool) -> Result<i32> {
    let r = crate::ops::verify::verify(image, against)?;
    let code = if r.drift.is_empty() { 0 } else { 1 };
    if json {
        let change = |c: &Change| match c {
            Change::Changed => "changed",
            Change::Missing => "missing",
            Change::Added => "added",
        };
        let v = serde_json::json!({
            "image": image.display().to_string(),
            "against": against,
            "drift": !r.drift.is_empty(),
            "checked": r.checked.iter().map(|(c, n)| (c.to_string(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "node_local_skipped": r.node_local_skipped,
            "differences": r.drift.iter().map(|d| serde_json::json!({
                "category": d.category,
                "change": change(&d.change),
                "item": d.item,
                "detail": d.detail,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(code);
    }
    println!("verify {} against {against}", image.display());
    print!("{}", r.render());
    if r.drift.is_empty() {
        println!("no drift");
    } else {
        println!("drift: {} differences", r.drift.len());
    }
    Ok(code)
}
