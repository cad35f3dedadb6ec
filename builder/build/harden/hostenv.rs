//! `[time]`, `[journald]` and `[shell]`: time sync on (systemd-timesyncd), journald size caps,
//! and the shell environment (`HISTCONTROL`, variables such as `OPENCLAW_DISABLE_BONJOUR=1`).

use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::support::rootfs::Rootfs;
use crate::support::systemd;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// journald drop-in path.
pub const JOURNALD: &str = "/etc/systemd/journald.conf.d/50-clawimg.conf";
/// timesyncd drop-in path.
pub const TIMESYNCD: &str = "/etc/systemd/timesyncd.conf.d/50-clawimg.conf";
/// Login-shell settings.
pub const PROFILE_D: &str = "/etc/profile.d/50-clawimg.sh";

/// The `[time]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Time {
    /// Keep the clock in sync with NTP (systemd-timesyncd).
    pub sync: bool,
    /// NTP servers; empty: the distribution's default pool.
    pub servers: Vec<String>,
}

impl Default for Time {
    fn default() -> Self {
        Time {
            sync: true,
            servers: vec![],
        }
    }
}

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

fn plain(key: &str, v: &str) -> Result<()> {
    if v.contains(['\n', '\r', '"', '\'', '\\', '$', '`']) {
        return Err(Error::config(format!(
            "key `{key}`: {v:?} may not contain quotes, '$', '`', '\\' or newlines"
        )));
    }
    Ok(())
}

impl Journald {
    /// The drop-in text.
    pub fn render(&self) -> Result<String> {
        let mut s = String::from(
            "# Written by clawimg from the profile's [journald] section.\n[Journal]\n",
        );
        for (k, key, v) in [
            ("SystemMaxUse", "system_max_use", &self.system_max_use),
            ("SystemKeepFree", "system_keep_free", &self.system_keep_free),
            ("RuntimeMaxUse", "runtime_max_use", &self.runtime_max_use),
            ("MaxRetentionSec", "max_retention", &self.max_retention),
        ] {
            if v.is_empty() {
                continue;
            }
            if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return Err(Error::config(format!(
                    "key `journald.{key}`: expected a size or time such as \"500M\", found {v:?}"
                )));
            }
            s.push_str(&format!("{k}={v}\n"));
        }
        Ok(s)
    }
}

/// Apply `[time]`; returns the paths written.
pub fn apply_time(root: &Rootfs, t: &Time) -> Result<Vec<String>> {
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
        for s in &t.servers {
            plain("time.servers", s)?;
        }
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

/// Apply `[journald]`.
pub fn apply_journald(root: &Rootfs, j: &Journald) -> Result<Vec<String>> {
    root.write(JOURNALD, j.render()?.as_bytes(), 0o644)?;
    Ok(vec![JOURNALD.into()])
}

/// Apply `[shell]`.
pub fn apply_shell(root: &Rootfs, s: &Shell) -> Result<Vec<String>> {
    plain("shell.histcontrol", &s.histcontrol)?;
    let mut text = String::from("# Written by clawimg from the profile's [shell] section.\n");
    if !s.histcontrol.is_empty() {
        text.push_str(&format!("export HISTCONTROL={}\n", s.histcontrol));
    }
    root.write(PROFILE_D, text.as_bytes(), 0o644)?;
    let mut env = root.read_to_string("/etc/environment").unwrap_or_default();
    for (k, v) in &s.environment {
        if k.is_empty()
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || k.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::config(format!(
                "key `shell.environment.{k}`: not a valid variable name"
            )));
        }
        plain(&format!("shell.environment.{k}"), v)?;
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

/// Probes for `[time]`.
pub fn time_probes(t: &Time) -> Vec<Probe> {
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

/// Probes for `[journald]`: the effective configuration has the caps.
pub fn journald_probes(j: &Journald) -> Vec<Probe> {
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

/// Probes for `[shell]`: variables reach a login session.
pub fn shell_probes(s: &Shell) -> Vec<Probe> {
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
