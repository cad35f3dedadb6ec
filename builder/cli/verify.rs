//! `clawimg verify`: compare a running node with its image.

use crate::error::Result;
use crate::ops::verify::{Change, Report};
use std::path::Path;

/// `verify IMAGE --against ssh://…`: exit 1 on drift.
pub(super) fn verify(image: &Path, against: &str, json: bool) -> Result<i32> {
    let r = crate::ops::verify::verify(image, against)?;
    let code = if r.drift.is_empty() { 0 } else { 1 };
    if json {
        let v = to_json(image, against, &r);
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

/// The report with stable field names (`verify --json`).
fn to_json(image: &Path, against: &str, r: &Report) -> serde_json::Value {
    let change = |c: &Change| match c {
        Change::Changed => "changed",
        Change::Missing => "missing",
        Change::Added => "added",
    };
    serde_json::json!({
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::verify::Drift;

    #[test]
    fn json_report_has_stable_fields() {
        let r = Report {
            checked: vec![("packages", 138), ("files", 5818)],
            node_local_skipped: 13,
            drift: vec![Drift {
                category: "files",
                change: Change::Changed,
                item: "/etc/issue.net".into(),
                detail: "sha256 e27392573720 -> 588a91d24e80".into(),
            }],
        };
        let v = to_json(Path::new("out/p"), "ssh://root@node", &r);
        assert_eq!(v["drift"], true);
        assert_eq!(v["checked"]["files"], 5818);
        assert_eq!(v["node_local_skipped"], 13);
        assert_eq!(v["differences"][0]["change"], "changed");
        assert_eq!(v["differences"][0]["item"], "/etc/issue.net");
        let clean = to_json(Path::new("out/p"), "ssh://n", &Report::default());
        assert_eq!(clean["drift"], false);
        assert_eq!(clean["differences"].as_array().unwrap().len(), 0);
    }
}
