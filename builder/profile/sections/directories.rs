//! `[directories]`: declared paths with owner, group and mode (e.g. `/opt/openclaw` 700),
//! keyed by path.

use crate::error::{Error, Result};
use crate::profile::sections::users::parse_mode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One directory (`[directories."/opt/openclaw"]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Directory {
    /// Owner (user name in the image, including users from `[users]`).
    pub owner: String,
    /// Group; default: the owner's primary group.
    pub group: Option<String>,
    /// Octal mode.
    pub mode: String,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            owner: "root".into(),
            group: None,
            mode: "0755".into(),
        }
    }
}

fn valid_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && !p.split('/').any(|c| c == ".." || c == ".")
        && !p.contains(['\n', '\'', '"', ' '])
}

/// Validate the table (paths and modes) without an image.
pub fn validate(dirs: &BTreeMap<String, Directory>) -> Result<()> {
    for (p, d) in dirs {
        if !valid_path(p) {
            return Err(Error::config(format!(
                "key `directories.\"{p}\"`: expected an absolute path without '..' or spaces"
            )));
        }
        if parse_mode(&d.mode).is_none() {
            return Err(Error::config(format!(
                "key `directories.\"{p}\".mode`: expected an octal mode like \"0700\", found {:?}",
                d.mode
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_modes_are_checked() {
        let mut d = BTreeMap::new();
        d.insert("/opt/openclaw".to_string(), Directory::default());
        assert!(validate(&d).is_ok());
        d.insert("/opt/../etc".to_string(), Directory::default());
        assert!(validate(&d).unwrap_err().message.contains("absolute path"));
        let mut d = BTreeMap::new();
        d.insert(
            "/srv".to_string(),
            Directory {
                mode: "rwx".into(),
                ..Default::default()
            },
        );
        assert!(validate(&d).unwrap_err().message.contains("mode"));
    }
}
