//! `[time]`: systemd-timesyncd enabled (with the profile's NTP servers, if any), or masked
//! when sync is off.

use super::{Checking, Module, Needs, Plan};
use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::time::Time;
use crate::support::rootfs::Rootfs;
use crate::support::systemd;

/// timesyncd drop-in path.
pub const TIMESYNCD: &str = "/etc/systemd/timesyncd.conf.d/50-clawimg.conf";

/// The `[time]` module.
pub struct TimeModule;

impl Module for TimeModule {
    type Section = Time;
    const NAME: &'static str = "time";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Time> {
        plan.time.as_ref()
    }

    fn packages(&self, t: &Time) -> Needs {
        if t.sync {
            vec![("time.sync", &["systemd-timesyncd"])]
        } else {
            vec![]
        }
    }

    fn validate(&self, t: &Time, _: &mut Checking) -> Result<()> {
        t.validate()
    }

    fn apply(&self, root: &Rootfs, t: &Time, _: &Plan) -> Result<Vec<String>> {
        let mut paths = vec![];
        if !t.sync {
            paths.push(systemd::mask(root, "systemd-timesyncd.service")?);
            return Ok(paths);
        }
        if systemd::find(root, "systemd-timesyncd.service").is_none() {
            return Err(Error::config(
                "time.sync needs package `systemd-timesyncd` in base.packages",
            ));
        }
        if !t.servers.is_empty() {
            root.write(
                TIMESYNCD,
                format!(
                    "# Written by clawimg.\n[Time]\nNTP={}\n",
                    t.servers.join(" ")
                )
                .as_bytes(),
                0o644,
            )?;
            paths.push(TIMESYNCD.into());
        }
        paths.extend(systemd::enable(root, "systemd-timesyncd.service")?);
        Ok(paths)
    }

    fn probes(&self, t: &Time, _: &Plan) -> Vec<Probe> {
        if !t.sync {
            return vec![Probe::new(
                "time sync off",
                "timedatectl show -p NTP --value",
                Expect::Equals("no".into()),
            )];
        }
        vec![
            Probe::new(
                "time sync service active",
                "systemctl is-active systemd-timesyncd",
                Expect::Equals("active".into()),
            ),
            Probe::new(
                "time sync (NTP) on",
                "timedatectl show -p NTP --value",
                Expect::Equals("yes".into()),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_go_to_a_drop_in_and_off_masks() {
        let t = tempfile::tempdir().unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        r.write(
            "/usr/lib/systemd/system/systemd-timesyncd.service",
            b"[Install]\nWantedBy=sysinit.target\n",
            0o644,
        )
        .unwrap();
        let time = Time {
            servers: vec!["a.example".into(), "b.example".into()],
            ..Default::default()
        };
        let paths = TimeModule.apply(&r, &time, &Plan::default()).unwrap();
        assert_eq!(paths[0], TIMESYNCD);
        assert_eq!(
            r.read_to_string(TIMESYNCD).unwrap(),
            "# Written by clawimg.\n[Time]\nNTP=a.example b.example\n"
        );
        assert!(r.exists("/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"));
        let off = Time {
            sync: false,
            ..Default::default()
        };
        TimeModule.apply(&r, &off, &Plan::default()).unwrap();
        assert_eq!(
            std::fs::read_link(
                t.path()
                    .join("etc/systemd/system/systemd-timesyncd.service")
            )
            .unwrap(),
            std::path::Path::new("/dev/null")
        );
    }
}
