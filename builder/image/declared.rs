//! Probes derived from what an image's manifest declares (units enabled and masked, timers,
//! owners and modes of overlay files), so `clawimg test` checks them in every booted image.

use crate::image::manifest::Manifest;
use crate::image::probes::{Expect, Probe};

pub use crate::image::manifest::Declared;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The probes for a manifest (none when it declares nothing).
pub fn probes(m: &Manifest) -> Vec<Probe> {
    let mut v = vec![];
    let units = m.extra.units.clone().unwrap_or_default();
    let (enabled, masked) = (units.enabled, units.masked);
    let mut states: Vec<(String, &str)> = enabled.iter().map(|u| (u.clone(), "enabled")).collect();
    states.extend(masked.iter().map(|u| (u.clone(), "masked")));
    if !states.is_empty() {
        let names: Vec<String> = states.iter().map(|(u, _)| quote(u)).collect();
        let expect: Vec<&str> = states.iter().map(|(_, s)| *s).collect();
        v.push(Probe {
            name: format!("{} declared units enabled/masked", states.len()),
            command: format!("systemctl is-enabled {}", names.join(" ")),
            expect: Expect::Equals(expect.join("\n")),
            on_failure: Some(format!(
                "for u in {}; do echo \"$u: $(systemctl is-enabled \"$u\")\"; done",
                names.join(" ")
            )),
        });
    }
    let timers: Vec<&String> = enabled.iter().filter(|u| u.ends_with(".timer")).collect();
    if !timers.is_empty() {
        let names: Vec<String> = timers.iter().map(|t| quote(t)).collect();
        v.push(Probe {
            name: format!("{} timers listed", timers.len()),
            command: format!(
                "t=$(systemctl list-timers --all --no-legend --no-pager); for x in {}; do printf '%s\\n' \"$t\" | grep -qF -- \" $x \" || echo \"missing $x\"; done; echo listed",
                names.join(" ")
            ),
            expect: Expect::Equals("listed".into()),
            on_failure: Some("systemctl list-timers --all --no-pager".into()),
        });
    }
    let files: &[Declared] = m.extra.declared_files.as_deref().unwrap_or_default();
    if !files.is_empty() {
        let paths: Vec<String> = files.iter().map(|f| quote(&f.path)).collect();
        let expect: Vec<String> = files
            .iter()
            .map(|f| format!("{} {}:{} {}", f.path, f.owner, f.group, f.mode))
            .collect();
        v.push(Probe {
            name: format!("{} overlay paths: owner, group, mode", files.len()),
            command: format!("stat -c '%n %U:%G %a' {}", paths.join(" ")),
            expect: Expect::Equals(expect.join("\n")),
            on_failure: Some(format!("stat -c '%n %U:%G %a' {} 2>&1", paths.join(" "))),
        });
    }
    v
}

/// `clawimg inspect` lines for the overlays and units sections of a manifest.
pub fn print_summary(m: &Manifest) {
    if let Some(o) = &m.extra.overlays {
        println!("overlays     {}", o.join(" "));
    }
    if let Some(u) = &m.extra.units {
        println!("units        installed: {}", u.installed.join(" "));
        println!("             enabled: {}", u.enabled.join(" "));
        println!("             masked: {}", u.masked.join(" "));
        println!("             verify: {}", u.verify);
    }
}
