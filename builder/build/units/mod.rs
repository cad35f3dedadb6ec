//! The profile's `[units]`: files from `units/` installed into /usr/lib/systemd/system
//! (units, timers, `NAME.d/*.conf` drop-ins), enabled offline like `systemctl enable`,
//! masked, and checked: every `Exec*=` binary must exist in the image, and
//! `systemd-analyze verify --root` runs against the rootfs when the host has it.

use crate::build::overlays::repo_dir;
use crate::error::{Error, Result};
use crate::image::provenance::Provenance;
use crate::profile::Loaded;
use crate::support::rootfs::Rootfs;
use crate::support::systemd;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Where installed unit files go in the image.
pub const UNIT_DIR: &str = "/usr/lib/systemd/system";
/// Directories systemd searches for bare `Exec*=` program names.
const EXEC_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// What the units stage did (for the manifest and probes).
pub use crate::image::manifest::UnitsSection as UnitsApplied;

fn units_dir(loaded: &Loaded) -> PathBuf {
    repo_dir(loaded).join("units")
}

fn valid_name(s: &str) -> bool {
    let ok = |x: &str| {
        !x.is_empty()
            && !x.starts_with('.')
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@:\\".contains(c))
    };
    match s.split_once('/') {
        Some((unit, conf)) => {
            unit.ends_with(".d")
                && ok(unit)
                && ok(conf)
                && conf.ends_with(".conf")
                && !conf.contains('/')
        }
        None => ok(s) && s.contains('.'),
    }
}

/// Check the `[units]` section before building: names are valid and files exist.
pub fn check(loaded: &Loaded) -> Result<()> {
    let u = &loaded.profile.units;
    let file = loaded.files[0].display();
    let dir = units_dir(loaded);
    for i in &u.install {
        if !valid_name(i) {
            return Err(Error::config(format!("{file}: key `units.install`: {i:?} is not a unit file name or `NAME.d/FILE.conf` drop-in")));
        }
        if !dir.join(i).is_file() {
            return Err(Error::config(format!(
                "{file}: key `units.install`: {} does not exist",
                dir.join(i).display()
            )));
        }
    }
    for (key, list) in [("units.enable", &u.enable), ("units.mask", &u.mask)] {
        if let Some(bad) = list.iter().find(|n| n.contains('/') || !valid_name(n)) {
            return Err(Error::config(format!(
                "{file}: key `{key}`: {bad:?} is not a unit name"
            )));
        }
    }
    if let Some(both) = u.enable.iter().find(|n| u.mask.contains(n)) {
        return Err(Error::config(format!(
            "{file}: key `units.mask`: {both} is also in `units.enable`"
        )));
    }
    Ok(())
}

/// Feed the installed unit files to the input hash.
pub fn hash_into(h: &mut Sha256, loaded: &Loaded) -> Result<()> {
    let dir = units_dir(loaded);
    for i in &loaded.profile.units.install {
        let data = std::fs::read(dir.join(i))
            .map_err(|e| Error::config(format!("{}: {e}", dir.join(i).display())))?;
        h.update(format!("\0unit\0{i}\0{}\0", data.len()).as_bytes());
        h.update(&data);
    }
    Ok(())
}

/// Program paths named by the `Exec*=` lines of a unit file or drop-in.
pub fn exec_programs(text: &str) -> Vec<String> {
    let mut v = vec![];
    for line in text.lines() {
        let l = line.trim();
        let Some((k, val)) = l.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if !k.starts_with("Exec") || k == "ExecSearchPath" {
            continue;
        }
        let val = val
            .trim_start()
            .trim_start_matches(['@', '-', ':', '+', '!', '|']);
        if let Some(prog) = val.split_whitespace().next() {
            v.push(prog.to_string());
        }
    }
    v
}

/// Every `Exec*=` program of `text` must be an executable in the image.
pub fn check_exec(root: &Rootfs, what: &str, text: &str) -> Result<()> {
    for prog in exec_programs(text) {
        let found = if prog.starts_with('/') {
            root.is_executable(&prog)
        } else {
            EXEC_PATH
                .iter()
                .any(|d| root.is_executable(&format!("{d}/{prog}")))
        };
        if !found {
            return Err(Error::config(format!(
                "{what}: Exec program `{prog}` is not an executable in the image"
            )));
        }
    }
    Ok(())
}

/// Install, check, enable and mask the profile's units.
pub fn apply(root: &Rootfs, loaded: &Loaded, prov: &mut Provenance) -> Result<UnitsApplied> {
    let u = &loaded.profile.units;
    let dir = units_dir(loaded);
    let mut out = UnitsApplied::default();
    for i in &u.install {
        let src = dir.join(i);
        let data =
            std::fs::read(&src).map_err(|e| Error::config(format!("{}: {e}", src.display())))?;
        let dest = format!("{UNIT_DIR}/{i}");
        root.write(&dest, &data, 0o644)?;
        root.chmod(&dest, 0o644)?;
        prov.record(&dest, format!("units ({})", src.display()));
        out.installed.push(i.clone());
    }
    // Exec checks after everything is installed (overlays ran before: their scripts count).
    for i in &u.install {
        let text = root.read_to_string(&format!("{UNIT_DIR}/{i}"))?;
        check_exec(root, &dir.join(i).display().to_string(), &text)?;
    }
    for e in &u.enable {
        let links = systemd::enable(root, e).map_err(|err| {
            Error::config(format!(
                "{}: key `units.enable`: {}",
                loaded.files[0].display(),
                err.message
            ))
        })?;
        for l in &links {
            prov.record(l, format!("units (enable {e})"));
        }
        out.links.extend(links);
        out.enabled.push(e.clone());
    }
    for m in &u.mask {
        let l = systemd::mask(root, m)?;
        prov.record(&l, format!("units (mask {m})"));
        out.links.push(l);
        out.masked.push(m.clone());
    }
    let to_verify: Vec<String> = u
        .install
        .iter()
        .filter(|i| !i.contains('/'))
        .cloned()
        .collect();
    out.verify = verify(root, &to_verify)?;
    Ok(out)
}

/// `systemd-analyze verify --root=ROOTFS` on the installed units, when the host has it.
/// Dependencies that do not exist yet (`Wants=clawimg-images.service`) are not errors.
fn verify(root: &Rootfs, names: &[String]) -> Result<String> {
    if names.is_empty() {
        return Ok("no units installed".into());
    }
    if crate::support::tools::which("systemd-analyze").is_none() {
        return Ok("skipped: systemd-analyze not on the host".into());
    }
    let sh = crate::support::exec::shell()?;
    let rootarg = format!("--root={}", root.host_path().display());
    let cmd = sh
        .cmd("systemd-analyze")
        .args([
            "verify",
            &rootarg,
            "--man=no",
            "--generators=no",
            "--recursive-errors=no",
        ])
        .args(names);
    crate::support::exec::run(cmd).map_err(|e| {
        Error::config(format!(
            "systemd-analyze verify rejected the units: {}",
            e.message
        ))
    })?;
    Ok(format!(
        "systemd-analyze verify --root passed for {} units",
        names.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_lines() {
        let t = "[Service]\nExecStartPre=-/usr/bin/a x\nExecStart=@/usr/bin/b b\nExecStop=c --now\nExecStart=\nExecSearchPath=/x\n";
        assert_eq!(exec_programs(t), vec!["/usr/bin/a", "/usr/bin/b", "c"]);
    }

    #[test]
    fn names() {
        assert!(valid_name("openclaw-stack.service"));
        assert!(valid_name("docker.service.d/10-x.conf"));
        assert!(!valid_name("../x.service"));
        assert!(!valid_name("a/b/c.conf"));
        assert!(!valid_name("docker.service.d/x.txt"));
    }
}
