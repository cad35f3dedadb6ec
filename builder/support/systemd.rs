//! systemd units enabled offline, exactly as `systemctl enable` would link them.

use crate::error::{Error, Result};
use crate::support::rootfs::Rootfs;

const SEARCH: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The `[Install]` section of a unit file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Install {
    /// `WantedBy=` targets.
    pub wanted_by: Vec<String>,
    /// `RequiredBy=` targets.
    pub required_by: Vec<String>,
    /// `Alias=` names.
    pub alias: Vec<String>,
    /// `Also=` units enabled together with this one.
    pub also: Vec<String>,
    /// `DefaultInstance=` of a template unit.
    pub default_instance: Option<String>,
}

/// Parse the `[Install]` section of a unit file.
pub fn parse_install(text: &str) -> Install {
    let mut inst = Install::default();
    let mut in_install = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_install = l == "[Install]";
            continue;
        }
        if !in_install || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let vals = v.split_whitespace().map(str::to_string);
        match k.trim() {
            "WantedBy" => inst.wanted_by.extend(vals),
            "RequiredBy" => inst.required_by.extend(vals),
            "Alias" => inst.alias.extend(vals),
            "Also" => inst.also.extend(vals),
            "DefaultInstance" => {
                inst.default_instance = Some(v.trim().to_string()).filter(|x| !x.is_empty())
            }
            _ => {}
        }
    }
    inst
}

/// Where a unit file lives in the image (first match in systemd's search order).
pub fn find(root: &Rootfs, unit: &str) -> Option<String> {
    SEARCH
        .iter()
        .map(|d| format!("{d}/{unit}"))
        .find(|p| root.exists(p))
}

/// Enable `unit` (and its `Also=` units); returns the symlinks created.
pub fn enable(root: &Rootfs, unit: &str) -> Result<Vec<String>> {
    let mut made = vec![];
    let mut seen = vec![];
    enable_inner(root, unit, &mut made, &mut seen)?;
    Ok(made)
}

/// Expand the specifiers systemctl expands in `[Install]` values for unit `name`.
fn specifiers(v: &str, name: &str) -> String {
    let stem = name.rsplit_once('.').map(|(a, _)| a).unwrap_or(name);
    let (prefix, instance) = stem.split_once('@').unwrap_or((stem, ""));
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push_str(name),
            Some('N') => out.push_str(stem),
            Some('p') => out.push_str(prefix),
            Some('i') => out.push_str(instance),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

fn enable_inner(
    root: &Rootfs,
    unit: &str,
    made: &mut Vec<String>,
    seen: &mut Vec<String>,
) -> Result<()> {
    if seen.iter().any(|s| s == unit) {
        return Ok(());
    }
    seen.push(unit.to_string());
    // `foo@bar.service` is an instance of the template file `foo@.service`.
    let (file_unit, mut instance) = match unit.split_once('@') {
        Some((pre, rest)) => {
            let (inst, suffix) = rest.rsplit_once('.').unwrap_or((rest, "service"));
            (
                format!("{pre}@.{suffix}"),
                Some(inst.to_string()).filter(|i| !i.is_empty()),
            )
        }
        None => (unit.to_string(), None),
    };
    let path = find(root, &file_unit).ok_or_else(|| {
        Error::config(format!(
            "unit `{unit}` not found in the image (looked in {})",
            SEARCH.join(", ")
        ))
    })?;
    let text = root.read_to_string(&path)?;
    let inst = parse_install(&text);
    let is_template = file_unit.contains("@.");
    let explicit_instance = instance.is_some();
    if is_template && instance.is_none() {
        instance = inst.default_instance.clone();
    }
    let (pre, suffix) = file_unit.split_once("@.").unwrap_or((&file_unit, ""));
    let link_name = match &instance {
        Some(i) if is_template => format!("{pre}@{i}.{suffix}"),
        _ => unit.to_string(),
    };
    for (targets, kind) in [(&inst.wanted_by, "wants"), (&inst.required_by, "requires")] {
        for t in targets {
            if is_template && instance.is_none() {
                return Err(Error::config(format!(
                    "cannot enable template `{unit}`: no instance given and no DefaultInstance= (systemctl refuses this too)"
                )));
            }
            let t = specifiers(t, &link_name);
            let link = format!("/etc/systemd/system/{t}.{kind}/{link_name}");
            root.symlink(&path, &link)?;
            made.push(link);
        }
    }
    for a in &inst.alias {
        let a = specifiers(a, &link_name);
        // A template alias names the instance only when one was asked for explicitly.
        let a = match (a.split_once("@."), &instance) {
            (Some((apre, asuf)), Some(i)) if explicit_instance => format!("{apre}@{i}.{asuf}"),
            _ => a,
        };
        let link = format!("/etc/systemd/system/{a}");
        if link != path {
            root.symlink(&path, &link)?;
            made.push(link);
        }
    }
    for also in &inst.also {
        enable_inner(root, &specifiers(also, &link_name), made, seen)?;
    }
    Ok(())
}

/// Mask a unit (link it to /dev/null).
pub fn mask(root: &Rootfs, unit: &str) -> Result<String> {
    let link = format!("/etc/systemd/system/{unit}");
    root.symlink("/dev/null", &link)?;
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_section() {
        let i = parse_install("[Unit]\nWantedBy=no\n[Install]\nWantedBy=multi-user.target a.target\nAlias=x.service\nAlso=y.socket\n");
        assert_eq!(i.wanted_by, vec!["multi-user.target", "a.target"]);
        assert_eq!(i.alias, vec!["x.service"]);
        assert_eq!(i.also, vec!["y.socket"]);
    }

    #[test]
    fn enable_links_like_systemctl() {
        let t = tempfile::tempdir().unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        r.write(
            "/usr/lib/systemd/system/a.service",
            b"[Install]\nWantedBy=multi-user.target\nAlso=b.socket\n",
            0o644,
        )
        .unwrap();
        r.write(
            "/usr/lib/systemd/system/b.socket",
            b"[Install]\nWantedBy=sockets.target\n",
            0o644,
        )
        .unwrap();
        let made = enable(&r, "a.service").unwrap();
        assert_eq!(made.len(), 2);
        let l = std::fs::read_link(
            t.path()
                .join("etc/systemd/system/multi-user.target.wants/a.service"),
        )
        .unwrap();
        assert_eq!(l.to_str(), Some("/usr/lib/systemd/system/a.service"));
        assert!(t
            .path()
            .join("etc/systemd/system/sockets.target.wants")
            .exists());
        assert!(enable(&r, "missing.service").is_err());
    }
}
