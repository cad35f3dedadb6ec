//! `[directories]`: declared paths with owner, group and mode (e.g. `/opt/openclaw` 700,
//! seed 000 Step 3), created in the image with those attributes.

use crate::build::harden::users::{lookup_group, lookup_user, parse_mode};
use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::support::rootfs::Rootfs;
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

/// Create the directories (parents as root 0755) and set owner and mode.
pub fn apply(root: &Rootfs, dirs: &BTreeMap<String, Directory>) -> Result<Vec<String>> {
    validate(dirs)?;
    let mut paths = vec![];
    for (p, d) in dirs {
        let (uid, pgid) = lookup_user(root, &d.owner).ok_or_else(|| {
            Error::config(format!(
                "key `directories.\"{p}\".owner`: no user `{}` in the image",
                d.owner
            ))
        })?;
        let gid = match &d.group {
            Some(g) => lookup_group(root, g).ok_or_else(|| {
                Error::config(format!(
                    "key `directories.\"{p}\".group`: no group `{g}` in the image"
                ))
            })?,
            None => pgid,
        };
        root.mkdir_all(p)?;
        root.chmod(p, parse_mode(&d.mode).unwrap_or(0o755))?;
        root.chown(p, uid, gid)?;
        paths.push(p.clone());
    }
    Ok(paths)
}

/// Probes: owner, group and mode of each directory.
pub fn probes(dirs: &BTreeMap<String, Directory>) -> Vec<Probe> {
    dirs.iter()
        .map(|(p, d)| {
            let group = d.group.clone().unwrap_or_else(|| {
                if d.owner == "root" {
                    "root".into()
                } else {
                    d.owner.clone()
                }
            });
            let mode = parse_mode(&d.mode).unwrap_or(0);
            Probe::new(
                &format!("dir {p}"),
                &format!("sudo -n stat -c '%U:%G %a' '{p}'"),
                Expect::Equals(format!("{}:{group} {mode:o}", d.owner)),
            )
        })
        .collect()
}
