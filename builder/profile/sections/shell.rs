//! `[shell]`: `HISTCONTROL` for login shells and system-wide environment variables (such as
//! `OPENCLAW_DISABLE_BONJOUR=1`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[shell]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Shell {
    /// `HISTCONTROL` for login shells (keeps commands typed with a leading space out of history).
    pub histcontrol: String,
    /// System-wide environment (`/etc/environment`, read by PAM for every session).
    pub environment: BTreeMap<String, String>,
}

impl Default for Shell {
    fn default() -> Self {
        Shell {
            histcontrol: "ignoreboth".into(),
            environment: BTreeMap::new(),
        }
    }
}

impl Shell {
    /// Names must be variable names and values must need no quoting: both are written into
    /// files that PAM and the shell read.
    pub fn validate(&self) -> Result<()> {
        super::plain("shell.histcontrol", &self.histcontrol)?;
        for (k, v) in &self.environment {
            if k.is_empty()
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || k.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(Error::config(format!(
                    "key `shell.environment.{k}`: not a valid variable name"
                )));
            }
            super::plain(&format!("shell.environment.{k}"), v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked() {
        let mut s = Shell::default();
        s.environment.insert("OPENCLAW_X".into(), "1".into());
        assert!(s.validate().is_ok());
        s.environment.insert("1BAD".into(), "1".into());
        assert!(s.validate().unwrap_err().message.contains("variable name"));
        let mut s = Shell::default();
        s.environment.insert("A".into(), "$(id)".into());
        assert!(s
            .validate()
            .unwrap_err()
            .message
            .contains("shell.environment.A"));
    }
}
