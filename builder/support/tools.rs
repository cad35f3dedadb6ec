//! Host tools: checked before any work starts, with the package that provides each.

use crate::error::{Error, Result};
use std::path::Path;
use std::process::Command;

/// A host program or data file clawimg needs.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Program name on PATH, or an absolute path for data files.
    pub name: &'static str,
    /// Debian/Ubuntu package that provides it.
    pub package: &'static str,
    /// Argument that prints the version, if the tool has one.
    pub version_arg: Option<&'static str>,
}

const fn t(name: &'static str, package: &'static str, version_arg: Option<&'static str>) -> Tool {
    Tool {
        name,
        package,
        version_arg,
    }
}

/// Tools `clawimg build` needs.
pub const BUILD: &[Tool] = &[
    t("mmdebstrap", "mmdebstrap", Some("--version")),
    t("mkfs.ext4", "e2fsprogs", Some("-V")),
    t("e2fsck", "e2fsprogs", Some("-V")),
    t("mkfs.vfat", "dosfstools", Some("--help")),
    t("mcopy", "mtools", Some("--version")),
    t("mmd", "mtools", None),
    t("grub-mkimage", "grub-common", Some("--version")),
    t("/usr/lib/grub/i386-pc/boot.img", "grub-pc-bin", None),
    t(
        "/usr/lib/grub/x86_64-efi/linux.mod",
        "grub-efi-amd64-bin",
        None,
    ),
    t("qemu-img", "qemu-utils", Some("--version")),
    t("setpriv", "util-linux", None),
    t("cp", "coreutils", None),
];

/// Tools `clawimg audit` (and the build's audit) needs: mtools reads the ESP.
pub const AUDIT: &[Tool] = &[t("mcopy", "mtools", Some("--version"))];

/// Tools `clawimg test` needs.
pub const TEST: &[Tool] = &[
    t("qemu-system-x86_64", "qemu-system-x86", Some("--version")),
    t("qemu-img", "qemu-utils", Some("--version")),
    t("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf", None),
    t("ssh", "openssh-client", Some("-V")),
    t("ssh-keygen", "openssh-client", None),
];

/// Find a program on PATH (also /usr/sbin and /sbin, which non-root PATHs often lack).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).exists().then(|| name.into());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// First line of a tool's version output (best effort). Asked once per process and tool:
/// the check, the base key and the image key all want it, and `mmdebstrap --version`
/// starts Perl.
pub fn version(tool: &Tool) -> String {
    static SEEN: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
        std::sync::Mutex::new(Vec::new());
    let Some(arg) = tool.version_arg else {
        return String::new();
    };
    let Some(path) = which(tool.name) else {
        return String::new();
    };
    if let Some((_, v)) = SEEN
        .lock()
        .ok()
        .and_then(|s| s.iter().find(|(p, _)| *p == path).cloned())
    {
        return v;
    }
    let v = ask_version(&path, arg);
    if let Ok(mut s) = SEEN.lock() {
        s.push((path, v.clone()));
    }
    v
}

fn ask_version(path: &Path, arg: &str) -> String {
    match Command::new(path).arg(arg).output() {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(_) => String::new(),
    }
}

/// Check that all tools exist; the error lists each missing one with its package.
pub fn check(tools: &[Tool]) -> Result<Vec<(String, String)>> {
    let mut missing = vec![];
    let mut found = vec![];
    for tool in tools {
        if which(tool.name).is_none() {
            missing.push(format!(
                "  {:<40} install package `{}`",
                tool.name, tool.package
            ));
        } else {
            found.push((tool.name.to_string(), version(tool)));
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        let mut pkgs: Vec<&str> = tools
            .iter()
            .filter(|t| which(t.name).is_none())
            .map(|t| t.package)
            .collect();
        pkgs.dedup();
        Err(Error::tool(format!(
            "missing host tools:\n{}\nfix: apt-get install {} (or run .ci/setup)",
            missing.join("\n"),
            pkgs.join(" ")
        )))
    }
}
