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
    /// What reads the value on the node: image paths of overlay files (`/opt/x/compose.yml`)
    /// or installed units (`x.service`). `check` refuses a slot nothing reads: each one
    /// named must mention the slot's `env` name (or, without `env`, its file's name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
    /// Required only when the profile enables the feature needing it: `VAR` (the var is
    /// `true` or a non-empty string) or `VAR=VALUE` (the var is that string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_if: Option<String>,
    /// A console-recovery password: the value is a crypt(5) hash (yescrypt or SHA-512
    /// crypt) set as this user's password on first boot (`chpasswd -e`). No file is
    /// written; SSH password login stays off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_of: Option<String>,
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
            used_by: vec![],
            required_if: None,
            password_of: None,
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
        if let Some(u) = &self.password_of {
            return format!("password of {u} (/etc/shadow)");
        }
        match &self.env {
            Some(k) => format!("{} {k}", self.file),
            None => self.file.clone(),
        }
    }

    /// The file the slot's value ends up in: `/etc/shadow` for a password slot.
    pub fn path(&self) -> &str {
        if self.password_of.is_some() {
            "/etc/shadow"
        } else {
            &self.file
        }
    }

    /// Whether a value has the shape of a crypt(5) hash `chpasswd -e` takes: yescrypt
    /// (`$y$`, `$gy$`, `$7$`), SHA-512/256 crypt (`$6$`, `$5$`) or bcrypt (`$2b$`...).
    pub fn is_crypt_hash(v: &str) -> bool {
        let Some(rest) = v.strip_prefix('$') else {
            return false;
        };
        let id = rest.split('$').next().unwrap_or("");
        ["y", "gy", "7", "6", "5", "2a", "2b", "2y"].contains(&id)
            && rest.split('$').count() >= 3
            && v.len() >= 20
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "$./=,-".contains(c))
    }
}

/// The slots of a profile, by name.
pub type Slots = BTreeMap<String, Slot>;
