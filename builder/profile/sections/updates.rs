//! `[updates]`: unattended-upgrades: allowed origins, cleanup, automatic reboot on/off and
//! time, and the APT periodic settings.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The `[updates]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Updates {
    /// `Unattended-Upgrade::Allowed-Origins` (`${distro_id}` etc. are expanded by u-u).
    pub allowed_origins: Vec<String>,
    /// `AutoFixInterruptedDpkg`.
    pub auto_fix_interrupted_dpkg: bool,
    /// `Remove-Unused-Kernel-Packages`.
    pub remove_unused_kernel_packages: bool,
    /// `Remove-Unused-Dependencies`.
    pub remove_unused_dependencies: bool,
    /// `Automatic-Reboot` (off by default: an operator chooses when the host restarts).
    pub automatic_reboot: bool,
    /// `Automatic-Reboot-Time` (HH:MM).
    pub automatic_reboot_time: String,
    /// `APT::Periodic::AutocleanInterval`, days.
    pub autoclean_interval_days: u32,
}

impl Default for Updates {
    fn default() -> Self {
        Updates {
            allowed_origins: vec![
                "${distro_id}:${distro_codename}".into(),
                "${distro_id}:${distro_codename}-security".into(),
                "${distro_id}ESMApps:${distro_codename}-apps-security".into(),
                "${distro_id}ESM:${distro_codename}-infra-security".into(),
            ],
            auto_fix_interrupted_dpkg: true,
            remove_unused_kernel_packages: true,
            remove_unused_dependencies: true,
            automatic_reboot: false,
            automatic_reboot_time: "05:00".into(),
            autoclean_interval_days: 7,
        }
    }
}

impl Updates {
    /// The reboot time must be HH:MM and origins must not break out of their quotes in
    /// APT's configuration syntax.
    pub fn validate(&self) -> Result<()> {
        let t = &self.automatic_reboot_time;
        let ok_time = t.len() == 5
            && t.as_bytes()[2] == b':'
            && t[..2].parse::<u8>().is_ok_and(|h| h < 24)
            && t[3..].parse::<u8>().is_ok_and(|m| m < 60);
        if !ok_time {
            return Err(Error::config(format!(
                "key `updates.automatic_reboot_time`: expected HH:MM, found {t:?}"
            )));
        }
        if let Some(o) = self
            .allowed_origins
            .iter()
            .find(|o| o.contains(['"', '\n', ';']))
        {
            return Err(Error::config(format!(
                "key `updates.allowed_origins`: {o:?} may not contain quotes, ';' or newlines"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_time_and_origins_are_checked() {
        assert!(Updates::default().validate().is_ok());
        for t in ["5:00", "24:00", "05:60", "0500x"] {
            let u = Updates {
                automatic_reboot_time: t.into(),
                ..Default::default()
            };
            assert!(u.validate().is_err(), "{t}");
        }
        let u = Updates {
            allowed_origins: vec!["a\";b".into()],
            ..Default::default()
        };
        assert!(u
            .validate()
            .unwrap_err()
            .message
            .contains("updates.allowed_origins"));
    }
}
