//! Every text a user reads (messages in the code, lint reasons, comments, profiles,
//! overlays, units, the README) explains itself: none points at a document the user does
//! not have (the hardening runbooks the project started from). No root, network or QEMU.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The reference patterns found in `text`, by line number.
fn references(text: &str) -> Vec<(usize, String)> {
    // "Step N" with a capital is how the runbooks number their parts; "step 2" of a
    // numbered list in the README is its own.
    let re = regex::Regex::new(
        r"(?i:\bseeds? 0\d\d|\bseed's reason|\brunbook\b)|§\s*\d|\bSteps? \d+(\.\d+)?\b",
    )
    .unwrap();
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| re.find(l).map(|m| (i + 1, m.as_str().to_string())))
        .collect()
}

#[test]
fn no_text_cites_an_outside_document() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut all = vec![root.join("README.md")];
    for d in ["builder", "profiles", "overlays", "units", "images"] {
        files(&root.join(d), &mut all);
    }
    let mut found = vec![];
    for f in all {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue; // binary (the keyring)
        };
        for (line, what) in references(&text) {
            found.push(format!(
                "{}:{line}: {what}",
                f.strip_prefix(&root).unwrap().display()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "texts citing outside documents:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_planted_reference() {
    assert_eq!(references("# per seed 001 §2.3").len(), 1);
    assert_eq!(references("x\n// see Step 11 of it").len(), 1);
    assert_eq!(references("as in the runbook").len(), 1);
    assert!(references("the seed partition; step 2 of the drill").is_empty());
}
