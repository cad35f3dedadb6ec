//! `[journald]`: size and age caps so logs cannot fill the disk.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The `[journald]` section: size caps so logs cannot fill the disk.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Journald {
    /// `SystemMaxUse`.
    pub system_max_use: String,
    /// `SystemKeepFree`.
    pub system_keep_free: String,
    /// `RuntimeMaxUse`.
    pub runtime_max_use: String,
    /// `MaxRetentionSec` (empty: none).
    pub max_retention: String,
}

impl Default for Journald {
    fn default() -> Self {
        Journald {
            system_max_use: "500M".into(),
            system_keep_free: "1G".into(),
            runtime_max_use: "100M".into(),
            max_retention: "1month".into(),
        }
    }
}

impl Journald {
    /// The settings as (journald keyword, profile key, value), in the order written.
    pub fn settings(&self) -> [(&'static str, &'static str, &str); 4] {
        [
            ("SystemMaxUse", "system_max_use", &self.system_max_use),
            ("SystemKeepFree", "system_keep_free", &self.system_keep_free),
            ("RuntimeMaxUse", "runtime_max_use", &self.runtime_max_use),
            ("MaxRetentionSec", "max_retention", &self.max_retention),
        ]
    }

    /// Each value must be a size or time in journald's syntax (letters, digits, '.').
    pub fn validate(&self) -> Result<()> {
        for (_, key, v) in self.settings() {
            if !v.is_empty() && !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return Err(Error::config(format!(
                    "key `journald.{key}`: expected a size or time such as \"500M\", found {v:?}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_sizes_or_times() {
        assert!(Journald::default().validate().is_ok());
        let j = Journald {
            runtime_max_use: "100 M".into(),
            max_retention: String::new(),
            ..Default::default()
        };
        assert!(j
            .validate()
            .unwrap_err()
            .message
            .contains("journald.runtime_max_use"));
    }
}
