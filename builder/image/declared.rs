//! Probes derived from what an image's manifest declares (units enabled and masked, timers,
//! owners and modes of overlay files), so `clawimg test` checks them in every booted image.

use crate::image::manifest::Manifest;
use crate::image::probes::{Expect, Probe};
use serde::{Deserialize, Serialize};

/// A path whose owner, group and mode the metadata declares (for probes and the manifest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Declared {
    /// Image path.
    pub path: String,
    /// User name (or uid) as declared, default root.
    pub owner: String,
    /// Group name (or gid) as declared, default root.
    pub group: String,
    /// Final mode, octal digits as `stat -c %a` prints them.
    pub mode: String,
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The probes for a manifest (none when it declares nothing).
pub fn probes(m: &Manifest) -> Vec<Probe> {
    let mut v = vec![];
    let units = m.extra.get("units").cloned().unwrap_or_default();
    let enabled = strings(&units["enabled"]);
    let masked = strings(&units["masked"]);
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
    let files: Vec<Declared> = m
        .extra
        .get("declared_files")
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .unwrap_or_default();
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
    let list = |v: &serde_json::Value| strings(v).join(" ");
    if let Some(o) = m.extra.get("overlays") {
        println!("overlays     {}", list(o));
    }
    if let Some(u) = m.extra.get("units") {
        println!("units        installed: {}", list(&u["installed"]));
        println!("             enabled: {}", list(&u["enabled"]));
        println!("             masked: {}", list(&u["masked"]));
        println!(
            "             verify: {}",
            u["verify"].as_str().unwrap_or("")
        );
    }
}
