//! `clawimg audit`: scan a built image for what must not ship.

use crate::error::Result;
use crate::profile::secrets::SecretsFile;
use std::path::Path;

/// `audit IMAGE [--secrets FILE]`: exit 1 with one line per finding.
pub(super) fn audit(image: &Path, secrets: Option<&Path>) -> Result<i32> {
    let raw = crate::ops::seal::raw_image(image)?;
    let s = secrets.map(SecretsFile::load).transpose()?;
    let r = crate::image::audit::audit_image(&raw, s.as_ref())?;
    if !r.skipped.is_empty() {
        println!(
            "audit: {} not scanned in {}:\n{}",
            r.skipped.len(),
            raw.display(),
            r.render_skipped()
        );
    }
    if r.findings.is_empty() {
        println!(
            "audit: {} clean ({} files scanned)",
            raw.display(),
            r.files_scanned
        );
        Ok(0)
    } else {
        println!(
            "audit: {} findings in {}:\n{}",
            r.findings.len(),
            raw.display(),
            r.render()
        );
        Ok(1)
    }
}
