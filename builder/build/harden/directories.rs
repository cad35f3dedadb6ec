//! `[directories]`: declared paths created in the image with their owner, group and mode
//! (after `[users]`, so they may belong to the users it makes).

use super::users::{lookup_group, lookup_user};
use super::{Checking, Module, Plan};
use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::directories::{validate, Directory};
use crate::profile::sections::users::parse_mode;
use crate::support::rootfs::Rootfs;
use std::collections::BTreeMap;

/// The table of directories, keyed by path.
type Dirs = BTreeMap<String, Directory>;

/// The `[directories]` module.
pub struct DirectoriesModule;

impl Module for DirectoriesModule {
    type Section = Dirs;
    const NAME: &'static str = "directories";

    /// An empty table declares nothing.
    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Dirs> {
        Some(&plan.directories).filter(|d| !d.is_empty())
    }

    fn validate(&self, d: &Dirs, _: &mut Checking) -> Result<()> {
        validate(d)
    }

    fn apply(&self, root: &Rootfs, d: &Dirs, _: &Plan) -> Result<Vec<String>> {
        create(root, d)
    }

    fn probes(&self, d: &Dirs, _: &Plan) -> Vec<Probe> {
        dir_probes(d)
    }
}

/// Create the directories (parents as root 0755) and set owner and mode.
fn create(root: &Rootfs, dirs: &Dirs) -> Result<Vec<String>> {
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
        root.chown(p, uid, gid)?;
        root.chmod(p, parse_mode(&d.mode).unwrap_or(0o755))?;
        paths.push(p.clone());
    }
    Ok(paths)
}

/// Probes: owner, group and mode of each directory.
fn dir_probes(dirs: &Dirs) -> Vec<Probe> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn owner_group_and_mode() {
        let t = tempfile::tempdir().unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        r.write(
            "/etc/passwd",
            b"root:x:0:0::/root:/bin/sh
app:x:1001:1001::/home/app:/bin/sh
",
            0o644,
        )
        .unwrap();
        r.write(
            "/etc/group",
            b"root:x:0:
app:x:1001:
adm:x:4:
",
            0o644,
        )
        .unwrap();
        let mut d = Dirs::new();
        d.insert(
            "/opt/app/data".into(),
            Directory {
                owner: "app".into(),
                group: Some("adm".into()),
                mode: "0700".into(),
            },
        );
        assert_eq!(create(&r, &d).unwrap(), ["/opt/app/data"]);
        let md = std::fs::metadata(t.path().join("opt/app/data")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1001, 4));
        assert_eq!(md.permissions().mode() & 0o7777, 0o700);
        d.get_mut("/opt/app/data").unwrap().owner = "nobody".into();
        assert!(create(&r, &d)
            .unwrap_err()
            .message
            .contains("no user `nobody`"));
    }
}
