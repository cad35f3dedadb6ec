//! `[shell]`: `HISTCONTROL` for login shells (`/etc/profile.d`) and variables in
//! `/etc/environment`, which PAM reads for every session.

use super::{Checking, Module, Plan};
use crate::error::Result;
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::shell::Shell;
use crate::support::rootfs::Rootfs;

/// Login-shell settings.
pub const PROFILE_D: &str = "/etc/profile.d/50-clawimg.sh";

/// The `[shell]` module.
pub struct ShellModule;

impl Module for ShellModule {
    type Section = Shell;
    const NAME: &'static str = "shell";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Shell> {
        plan.shell.as_ref()
    }

    fn validate(&self, s: &Shell, _: &mut Checking) -> Result<()> {
        s.validate()
    }

    /// Write the profile.d script and set each variable in /etc/environment (a variable
    /// already there is replaced, others are kept).
    fn apply(&self, root: &Rootfs, s: &Shell, _: &Plan) -> Result<Vec<String>> {
        let mut text = String::from("# Written by clawimg from the profile's [shell] section.\n");
        if !s.histcontrol.is_empty() {
            text.push_str(&format!("export HISTCONTROL={}\n", s.histcontrol));
        }
        root.write(PROFILE_D, text.as_bytes(), 0o644)?;
        let mut env = root.read_to_string("/etc/environment").unwrap_or_default();
        for (k, v) in &s.environment {
            let kept: Vec<&str> = env
                .lines()
                .filter(|l| !l.starts_with(&format!("{k}=")))
                .collect();
            env = kept.join("\n");
            if !env.is_empty() {
                env.push('\n');
            }
            env.push_str(&format!("{k}=\"{v}\"\n"));
        }
        root.write("/etc/environment", env.as_bytes(), 0o644)?;
        Ok(vec![PROFILE_D.into(), "/etc/environment".into()])
    }

    /// Variables reach a login session.
    fn probes(&self, s: &Shell, _: &Plan) -> Vec<Probe> {
        let mut v = vec![];
        if !s.histcontrol.is_empty() {
            v.push(Probe::new(
                "shell HISTCONTROL",
                "bash -lc 'echo $HISTCONTROL'",
                Expect::Equals(s.histcontrol.clone()),
            ));
        }
        for (k, val) in &s.environment {
            v.push(Probe::new(
                &format!("env {k}"),
                &format!("printenv {k}"),
                Expect::Equals(val.clone()),
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_keeps_other_lines_and_replaces_its_own() {
        let t = tempfile::tempdir().unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        r.write("/etc/environment", b"PATH=\"/usr/bin\"\nA=\"old\"\n", 0o644)
            .unwrap();
        let mut s = Shell::default();
        s.environment.insert("A".into(), "1".into());
        s.environment.insert("B".into(), "2".into());
        ShellModule.apply(&r, &s, &Plan::default()).unwrap();
        assert_eq!(
            r.read_to_string("/etc/environment").unwrap(),
            "PATH=\"/usr/bin\"\nA=\"1\"\nB=\"2\"\n"
        );
        assert_eq!(
            r.read_to_string(PROFILE_D).unwrap(),
            "# Written by clawimg from the profile's [shell] section.\nexport HISTCONTROL=ignoreboth\n"
        );
    }
}
