//! `[updates]`: unattended-upgrades (seed 001 §2.7, seed 000 §13.3): allowed origins,
//! cleanup, automatic reboot on/off and time, and the APT periodic settings.

use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::support::rootfs::Rootfs;
use crate::support::systemd;
use serde::{Deserialize, Serialize};

/// unattended-upgrades configuration file (replaces the package's).
pub const UNATTENDED: &str = "/etc/apt/apt.conf.d/50unattended-upgrades";
/// APT periodic settings.
pub const PERIODIC: &str = "/etc/apt/apt.conf.d/20auto-upgrades";

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
    /// `Automatic-Reboot` (seed 001: off, manual reboot preferred).
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
    /// Render both files (50unattended-upgrades, 20auto-upgrades).
    pub fn render(&self) -> Result<(String, String)> {
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
        let b = |v: bool| if v { "true" } else { "false" };
        let mut u = String::from("// Written by clawimg from the profile's [updates] section.\nUnattended-Upgrade::Allowed-Origins {\n");
        for o in &self.allowed_origins {
            u.push_str(&format!("    \"{o}\";\n"));
        }
        u.push_str("};\n");
        u.push_str(&format!(
            "Unattended-Upgrade::AutoFixInterruptedDpkg \"{}\";\n",
            b(self.auto_fix_interrupted_dpkg)
        ));
        u.push_str(&format!(
            "Unattended-Upgrade::Remove-Unused-Kernel-Packages \"{}\";\n",
            b(self.remove_unused_kernel_packages)
        ));
        u.push_str(&format!(
            "Unattended-Upgrade::Remove-Unused-Dependencies \"{}\";\n",
            b(self.remove_unused_dependencies)
        ));
        u.push_str(&format!(
            "Unattended-Upgrade::Automatic-Reboot \"{}\";\n",
            b(self.automatic_reboot)
        ));
        u.push_str(&format!(
            "Unattended-Upgrade::Automatic-Reboot-Time \"{t}\";\n"
        ));
        let p = format!(
            "// Written by clawimg.\nAPT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Download-Upgradeable-Packages \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\nAPT::Periodic::AutocleanInterval \"{}\";\n",
            self.autoclean_interval_days
        );
        Ok((u, p))
    }
}

/// Write the files and enable the service; returns the paths written.
pub fn apply(root: &Rootfs, up: &Updates) -> Result<Vec<String>> {
    if systemd::find(root, "unattended-upgrades.service").is_none() {
        return Err(Error::config(
            "the updates section needs package `unattended-upgrades` in base.packages",
        ));
    }
    let (u, p) = up.render()?;
    root.write(UNATTENDED, u.as_bytes(), 0o644)?;
    root.write(PERIODIC, p.as_bytes(), 0o644)?;
    let mut paths = vec![UNATTENDED.to_string(), PERIODIC.to_string()];
    paths.extend(systemd::enable(root, "unattended-upgrades.service")?);
    Ok(paths)
}

/// Probes: APT sees the declared settings, the service is enabled.
pub fn probes(up: &Updates) -> Vec<Probe> {
    vec![
        Probe::new("unattended-upgrades enabled", "systemctl is-enabled unattended-upgrades", Expect::Equals("enabled".into())),
        Probe::new(
            "unattended-upgrades reboot",
            "apt-config dump Unattended-Upgrade::Automatic-Reboot | head -1",
            Expect::Equals(format!("Unattended-Upgrade::Automatic-Reboot \"{}\";", up.automatic_reboot)),
        ),
        Probe::new(
            "unattended-upgrades origins",
            "apt-config dump Unattended-Upgrade::Allowed-Origins | grep -c '^Unattended-Upgrade::Allowed-Origins:: '",
            Expect::Equals(up.allowed_origins.len().to_string()),
        ),
        Probe::new("apt periodic upgrade", "apt-config dump APT::Periodic::Unattended-Upgrade", Expect::Contains("\"1\"".into())),
    ]
}
