//! Base stage: an Ubuntu root filesystem from mmdebstrap, verified with the pinned keyring.

use crate::error::{Error, Result};
use crate::profile::Base;
use crate::support::digest::sha256_file;
use crate::support::dpkg::read_dpkg_status;
use crate::support::dpkg::Package;
use crate::support::exec;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the package mirror (same as `--mirror`).
pub const MIRROR_ENV: &str = "CLAWIMG_MIRROR";

/// Inputs of the base stage, checked before anything is written.
#[derive(Debug, Clone)]
pub struct BaseInput {
    /// The profile's `[base]` table.
    pub base: Base,
    /// Absolute path of the keyring file (already checked against its pin).
    pub keyring: PathBuf,
    /// Optional mirror override: an URL or a full sources line, passed to mmdebstrap as-is.
    pub mirror: Option<String>,
}

/// The base stage's output.
#[derive(Debug, Clone)]
pub struct BaseRootfs {
    /// Directory holding the tree.
    pub path: PathBuf,
    /// Installed packages, sorted by name.
    pub packages: Vec<Package>,
}

/// Resolve and verify the keyring against the profile's pin.
pub fn check_keyring(base: &Base, profiles_dir: &Path) -> Result<PathBuf> {
    let path = profiles_dir.join(&base.keyring);
    let got = sha256_file(&path).map_err(|_| {
        Error::config(format!(
            "key `base.keyring`: keyring {} not found (paths are relative to {})",
            path.display(),
            profiles_dir.display()
        ))
    })?;
    if !got.eq_ignore_ascii_case(&base.keyring_sha256) {
        return Err(Error::config(format!(
            "key `base.keyring_sha256`: keyring {} has sha256 {got}, the profile pins {}; \
             refusing to trust an archive keyring that changed",
            path.display(),
            base.keyring_sha256
        )));
    }
    Ok(path.canonicalize().unwrap_or(path))
}

/// Run mmdebstrap into `target` (which must not exist yet).
pub fn run(input: &BaseInput, target: &Path) -> Result<BaseRootfs> {
    run_with(input, target, &[])
}

/// [`run`] with extra mmdebstrap options (hooks of the cache and lock).
pub fn run_with(input: &BaseInput, target: &Path, extra: &[String]) -> Result<BaseRootfs> {
    let sh = exec::shell()?;
    let b = &input.base;
    let variant = format!("--variant={}", b.variant);
    let components = format!("--components={}", b.components.join(","));
    let keyring = format!("--keyring={}", input.keyring.display());
    let include = format!("--include={}", b.packages.join(","));
    let mut mirrors: Vec<String> = vec![];
    if let Some(m) = &input.mirror {
        mirrors.push(m.clone());
    }
    let suite = &b.suite;
    // setpriv: mmdebstrap dies with clawimg (SIGKILL included) instead of running on
    // into a cache directory that the next build cleans up.
    let mut cmd = sh
        .cmd("setpriv")
        .args(["--pdeathsig", "KILL", "--", "mmdebstrap"])
        .args([
            "--mode=root",
            "--format=directory",
            variant.as_str(),
            components.as_str(),
            keyring.as_str(),
            "--aptopt=Acquire::Retries \"3\"",
            // Keep the image free of documentation we never read on a server.
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-include=/usr/share/locale/locale.alias",
            include.as_str(),
        ]);
    cmd = cmd.args(extra);
    cmd = cmd.arg(suite).arg(target).args(&mirrors);
    if let Ok(sde) = std::env::var("SOURCE_DATE_EPOCH") {
        cmd = cmd.env("SOURCE_DATE_EPOCH", sde);
    }
    exec::run(cmd)?;
    let packages = read_dpkg_status(&target.join("var/lib/dpkg/status"))?;
    Ok(BaseRootfs {
        path: target.to_path_buf(),
        packages,
    })
}
