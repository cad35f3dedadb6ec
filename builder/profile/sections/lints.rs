//! `[lints]`: acknowledged lint findings, each with the reason it is accepted.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[lints]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LintConfig {
    /// Lint id → why the finding is accepted for this profile (non-empty).
    pub acknowledge: BTreeMap<String, String>,
}
