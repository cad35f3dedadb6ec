//! `[journald]`: a journald drop-in with the profile's size and age caps.

use super::{Checking, Module, Plan};
use crate::error::Result;
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::journald::Journald;
use crate::support::rootfs::Rootfs;

/// journald drop-in path.
pub const JOURNALD: &str = "/etc/systemd/journald.conf.d/50-clawimg.conf";

/// The `[journald]` module.
pub struct JournaldModule;

impl Module for JournaldModule {
    type Section = Journald;
    const NAME: &'static str = "journald";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Journald> {
        plan.journald.as_ref()
    }

    fn validate(&self, j: &Journald, _: &mut Checking) -> Result<()> {
        j.validate()
    }

    fn apply(&self, root: &Rootfs, j: &Journald, _: &Plan) -> Result<Vec<String>> {
        root.write(JOURNALD, render(j).as_bytes(), 0o644)?;
        Ok(vec![JOURNALD.into()])
    }

    /// The effective configuration has the caps.
    fn probes(&self, j: &Journald, _: &Plan) -> Vec<Probe> {
        let mut v = vec![];
        for (k, val) in [
            ("SystemMaxUse", &j.system_max_use),
            ("RuntimeMaxUse", &j.runtime_max_use),
        ] {
            if !val.is_empty() {
                v.push(Probe::new(
                    &format!("journald {k}"),
                    &format!(
                        "systemd-analyze cat-config systemd/journald.conf | grep -E '^{k}=' | tail -1"
                    ),
                    Expect::Equals(format!("{k}={val}")),
                ));
            }
        }
        v
    }
}

/// The drop-in text for a validated section (empty values are left out).
pub fn render(j: &Journald) -> String {
    let mut s =
        String::from("# Written by clawimg from the profile's [journald] section.\n[Journal]\n");
    for (k, _, v) in j.settings() {
        if !v.is_empty() {
            s.push_str(&format!("{k}={v}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_order_and_empty_ones_left_out() {
        let j = Journald {
            max_retention: String::new(),
            ..Default::default()
        };
        assert_eq!(
            render(&j),
            "# Written by clawimg from the profile's [journald] section.\n[Journal]\n\
             SystemMaxUse=500M\nSystemKeepFree=1G\nRuntimeMaxUse=100M\n"
        );
    }
}
