//! `[updates]`: unattended-upgrades with the profile's origins, cleanup and reboot policy,
//! and the APT periodic settings that make it run daily.

use super::{Checking, Module, Needs, Plan};
use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::updates::Updates;
use crate::support::rootfs::Rootfs;
use crate::support::systemd;

/// unattended-upgrades configuration file (replaces the package's).
pub const UNATTENDED: &str = "/etc/apt/apt.conf.d/50unattended-upgrades";
/// APT periodic settings.
pub const PERIODIC: &str = "/etc/apt/apt.conf.d/20auto-upgrades";

/// The `[updates]` module.
pub struct UpdatesModule;

impl Module for UpdatesModule {
    type Section = Updates;
    const NAME: &'static str = "updates";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Updates> {
        plan.updates.as_ref()
    }

    fn packages(&self, _: &Updates) -> Needs {
        // Ubuntu's `required` variant has no apt; unattended-upgrades needs it.
        vec![("updates", &["unattended-upgrades"]), ("updates", &["apt"])]
    }

    fn validate(&self, u: &Updates, _: &mut Checking) -> Result<()> {
        u.validate()
    }

    /// Write both files and enable the service.
    fn apply(&self, root: &Rootfs, up: &Updates, _: &Plan) -> Result<Vec<String>> {
        if systemd::find(root, "unattended-upgrades.service").is_none() {
            return Err(Error::config(
                "the updates section needs package `unattended-upgrades` in base.packages",
            ));
        }
        let (u, p) = render(up);
        root.write(UNATTENDED, u.as_bytes(), 0o644)?;
        root.write(PERIODIC, p.as_bytes(), 0o644)?;
        let mut paths = vec![UNATTENDED.to_string(), PERIODIC.to_string()];
        paths.extend(systemd::enable(root, "unattended-upgrades.service")?);
        Ok(paths)
    }

    /// APT sees the declared settings, the service is enabled.
    fn probes(&self, up: &Updates, _: &Plan) -> Vec<Probe> {
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
}

/// Both files (50unattended-upgrades, 20auto-upgrades) for a validated section.
pub fn render(up: &Updates) -> (String, String) {
    let b = |v: bool| if v { "true" } else { "false" };
    let mut u = String::from("// Written by clawimg from the profile's [updates] section.\nUnattended-Upgrade::Allowed-Origins {\n");
    for o in &up.allowed_origins {
        u.push_str(&format!("    \"{o}\";\n"));
    }
    u.push_str("};\n");
    u.push_str(&format!(
        "Unattended-Upgrade::AutoFixInterruptedDpkg \"{}\";\n",
        b(up.auto_fix_interrupted_dpkg)
    ));
    u.push_str(&format!(
        "Unattended-Upgrade::Remove-Unused-Kernel-Packages \"{}\";\n",
        b(up.remove_unused_kernel_packages)
    ));
    u.push_str(&format!(
        "Unattended-Upgrade::Remove-Unused-Dependencies \"{}\";\n",
        b(up.remove_unused_dependencies)
    ));
    u.push_str(&format!(
        "Unattended-Upgrade::Automatic-Reboot \"{}\";\n",
        b(up.automatic_reboot)
    ));
    u.push_str(&format!(
        "Unattended-Upgrade::Automatic-Reboot-Time \"{}\";\n",
        up.automatic_reboot_time
    ));
    let p = format!(
        "// Written by clawimg.\nAPT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Download-Upgradeable-Packages \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\nAPT::Periodic::AutocleanInterval \"{}\";\n",
        up.autoclean_interval_days
    );
    (u, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_reboot_policy_are_written() {
        let (u, p) = render(&Updates::default());
        assert!(
            u.contains("    \"${distro_id}:${distro_codename}-security\";\n"),
            "{u}"
        );
        assert!(u.contains("Unattended-Upgrade::Automatic-Reboot \"false\";\n"));
        assert!(u.contains("Unattended-Upgrade::Automatic-Reboot-Time \"05:00\";\n"));
        assert!(p.contains("APT::Periodic::AutocleanInterval \"7\";\n"));
    }
}
