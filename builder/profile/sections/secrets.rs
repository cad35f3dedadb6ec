//! `[secrets.NAME]`: secret slots as declared (destination, owner, mode, kind, units).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One secret slot, as declared in a profile.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Slot {
    /// What the secret is, for the template.
    pub description: String,
    /// Destination file (absolute path in the image).
    pub file: String,
    /// With `env`, the slot is the line `ENV=value` of `file` (other lines are kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Owner of the destination file.
    pub owner: String,
    /// Group of the destination file.
    pub group: String,
    /// Mode of the destination file (TOML octal, e.g. `0o600`).
    pub mode: u32,
    /// A node without a value for this slot refuses to start its units.
    pub required: bool,
    /// Generate the value on the node when none is supplied: `hex:N`, `base64:N` (N random
    /// bytes), `alnum:N` (N characters) or `uuid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate: Option<String>,
    /// Units that must not start before this slot is filled.
    pub units: Vec<String>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            description: String::new(),
            file: String::new(),
            env: None,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o600,
            required: false,
            generate: None,
            units: vec![],
        }
    }
}

impl Slot {
    /// `required`, `generate:SPEC` or `optional`.
    pub fn kind(&self) -> String {
        match (&self.generate, self.required) {
            (Some(g), _) => format!("generate:{g}"),
            (None, true) => "required".into(),
            (None, false) => "optional".into(),
        }
    }

    /// Where the value goes, for messages: `/etc/x` or `/opt/openclaw/.env KEY`.
    pub fn destination(&self) -> String {
        match &self.env {
            Some(k) => format!("{} {k}", self.file),
            None => self.file.clone(),
        }
    }
}

/// The slots of a profile, by name.
pub type Slots = BTreeMap<String, Slot>;
