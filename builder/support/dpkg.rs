//! dpkg's status database: which packages a tree has installed.

use crate::error::{Context, Result};
use std::path::Path;

/// One installed Debian package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture (`amd64`, `all`).
    pub arch: String,
}

/// Installed packages from a dpkg status file, sorted by name.
pub fn read_dpkg_status(path: &Path) -> Result<Vec<Package>> {
    let text = std::fs::read_to_string(path).ctx(|| format!("read {}", path.display()))?;
    Ok(parse_dpkg_status(&text))
}

/// Parse dpkg's status database (only fully installed packages).
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = vec![];
    for para in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = (None, None, None, false);
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Architecture: ") {
                arch = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim() == "install ok installed";
            }
        }
        if let (Some(name), Some(version), true) = (name, version, installed) {
            out.push(Package {
                name,
                version,
                arch: arch.unwrap_or_default(),
            });
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dpkg_status() {
        let s = "Package: b\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n\n\
                 Package: a\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                 Package: c\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:3.0-1\n";
        let p = super::parse_dpkg_status(s);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "b");
        assert_eq!(p[1].version, "1:3.0-1");
    }
}
