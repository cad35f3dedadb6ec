//! `[containers]`: the pinned catalog images baked into the image.

use serde::{Deserialize, Serialize};

/// The `[containers]` profile section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Containers {
    /// Names of catalog entries (`images/*.toml`) baked into the image.
    pub images: Vec<String>,
}
