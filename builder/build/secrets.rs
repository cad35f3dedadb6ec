//! The secrets stage: ships the slot table, the first-boot unit `clawimg-secrets.service`
//! and its script, and a drop-in per unit that needs a slot. No value ever enters the image.

use crate::error::Result;
use crate::profile::secrets::Slots;
use crate::profile::Profile;
use crate::support::rootfs::Rootfs;
use crate::support::systemd;

/// First-boot unit that installs the slots.
pub const UNIT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/units/clawimg-secrets.service"
));
/// The script that unit runs.
pub const SCRIPT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/units/clawimg-secrets.sh"
));
/// Where the script lives in the image.
pub const SCRIPT_PATH: &str = "/usr/lib/clawimg/clawimg-secrets";
/// The slot table the script reads (one slot per line, `|`-separated, no values).
pub const SLOTS_PATH: &str = crate::image::scan::SLOTS_PATH;
/// The slot table shipped in the image: `name|file|env|owner|group|mode|kind|apply`, where
/// `apply` is `passwd:USER` for a console password (set with `chpasswd -e`) and `-` else.
pub fn slot_table(slots: &Slots) -> String {
    let mut s = String::from(
        "# Written by clawimg: secret slots (no values). name|file|env|owner|group|mode|kind|apply\n",
    );
    for (name, slot) in slots {
        let kind = match (&slot.generate, slot.required) {
            (Some(g), _) => g.clone(),
            (None, true) => "required".into(),
            (None, false) => "optional".into(),
        };
        let apply = match &slot.password_of {
            Some(u) => format!("passwd:{u}"),
            None => "-".into(),
        };
        s.push_str(&format!(
            "{name}|{}|{}|{}|{}|{:04o}|{kind}|{apply}\n",
            slot.path(),
            slot.env.as_deref().unwrap_or("-"),
            slot.owner,
            slot.group,
            slot.mode
        ));
    }
    s
}

/// Paths the first-boot unit rewrites on every node (for `clawimg verify`; each slot's
/// destination is added from the profile).
pub const NODE_LOCAL: &[(&str, &str)] = &[
    (
        "/etc/hostname",
        "the node name from the seed (clawimg-secrets.service)",
    ),
    (
        "/etc/hosts",
        "the node name on the 127.0.1.1 line (clawimg-secrets.service)",
    ),
    (
        "/**/.clawimg-secret.*",
        "a slot being installed (clawimg-secrets.service)",
    ),
];

/// Drop-in that keeps a unit from starting before the slots are installed.
pub const DROP_IN: &str = "# Written by clawimg: this unit needs secret slots installed on first boot.\n[Unit]\nRequires=clawimg-secrets.service\nAfter=clawimg-secrets.service\n";

/// Install the slot table, the first-boot unit, its script and the drop-ins into the image.
/// Images without slots still get the unit: it names the node from the seed.
pub fn install(root: &Rootfs, profile: &Profile) -> Result<Vec<String>> {
    let mut paths = vec![];
    root.write(SCRIPT_PATH, SCRIPT.as_bytes(), 0o755)?;
    root.write(SLOTS_PATH, slot_table(&profile.secrets).as_bytes(), 0o644)?;
    root.write(
        "/usr/lib/systemd/system/clawimg-secrets.service",
        UNIT.as_bytes(),
        0o644,
    )?;
    paths.extend([
        SCRIPT_PATH.to_string(),
        SLOTS_PATH.to_string(),
        "/usr/lib/systemd/system/clawimg-secrets.service".to_string(),
    ]);
    paths.extend(systemd::enable(root, "clawimg-secrets.service")?);
    let mut needing: Vec<&str> = profile
        .secrets
        .values()
        .flat_map(|s| s.units.iter().map(String::as_str))
        .collect();
    needing.sort();
    needing.dedup();
    for u in needing {
        let p = format!("/usr/lib/systemd/system/{u}.d/50-clawimg-secrets.conf");
        root.write(&p, DROP_IN.as_bytes(), 0o644)?;
        paths.push(p);
    }
    Ok(paths)
}

/// Each slot destination with what `--explain` says about it: the slots that fill it at
/// first boot (several env-line slots may share one file). Nothing is written there at build.
pub fn destinations(slots: &Slots) -> Vec<(String, String)> {
    let mut by_file: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (name, slot) in slots {
        by_file.entry(slot.path()).or_default().push(name);
    }
    by_file
        .into_iter()
        .map(|(file, names)| {
            let s = if names.len() > 1 { "s" } else { "" };
            (
                file.to_string(),
                format!(
                    "secret slot{s} {}, installed at first boot",
                    names.join(", ")
                ),
            )
        })
        .collect()
}

/// The slot declarations as recorded in the manifest (`extra.secrets`): no values.
pub fn manifest_json(slots: &Slots) -> serde_json::Value {
    serde_json::to_value(slots).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Slots {
        toml::from_str(
            "[api]\nfile = \"/opt/x/.env\"\nenv = \"API\"\nrequired = true\n[tok]\nfile = \"/opt/x/.env\"\nenv = \"TOK\"\ngenerate = \"hex:32\"\n[pem]\nfile = \"/etc/x.pem\"\n[pw]\npassword_of = \"adminclaw\"\n",
        )
        .unwrap()
    }

    #[test]
    fn destinations_name_every_slot_of_a_file() {
        let d = destinations(&slots());
        assert_eq!(
            d,
            vec![
                (
                    "/etc/shadow".to_string(),
                    "secret slot pw, installed at first boot".to_string()
                ),
                (
                    "/etc/x.pem".to_string(),
                    "secret slot pem, installed at first boot".to_string()
                ),
                (
                    "/opt/x/.env".to_string(),
                    "secret slots api, tok, installed at first boot".to_string()
                ),
            ]
        );
    }

    #[test]
    fn slot_table_lines() {
        let t = slot_table(&slots());
        assert!(
            t.contains("api|/opt/x/.env|API|root|root|0600|required|-\n"),
            "{t}"
        );
        assert!(
            t.contains("tok|/opt/x/.env|TOK|root|root|0600|hex:32|-\n"),
            "{t}"
        );
        assert!(
            t.contains("pem|/etc/x.pem|-|root|root|0600|optional|-\n"),
            "{t}"
        );
        assert!(
            t.contains("pw|/etc/shadow|-|root|root|0600|optional|passwd:adminclaw\n"),
            "{t}"
        );
    }
}
