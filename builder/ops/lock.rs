//! `clawimg lock PROFILE`: resolve the profile's packages to exact versions and .deb digests
//! and write them, with SOURCE_DATE_EPOCH, into the profile's lock file.

use crate::build::base::mmdebstrap::BaseInput;
use crate::build::base::{self, BaseStage};
use crate::build::{self, BuildOptions};
use crate::error::{Error, Result};
use crate::profile::lock::{self, Lock};
use crate::support::cache::Cache;
use std::path::PathBuf;

/// `clawimg lock`: resolve the profile's packages against the archive (a fresh mmdebstrap
/// run, never the cache), keep the .debs in the store, and write `PROFILE.lock`.
/// Returns the lock, its path and the changes against the previous lock.
pub fn lock(opts: &BuildOptions, update: bool) -> Result<(Lock, PathBuf, Vec<String>)> {
    let checked = build::check(opts)?;
    crate::support::tools::check(crate::support::tools::BUILD)?;
    let path = lock::path_for(&checked.loaded.files[0]);
    let old = if update {
        Lock::read(&path).ok().flatten()
    } else {
        Lock::read(&path)?
    };
    if old.is_some() && !update {
        return Err(Error::config(format!(
            "{} exists; `clawimg lock {} --update` re-resolves it and shows what changed",
            path.display(),
            checked.loaded.name
        )));
    }
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::config(
            "clawimg lock runs mmdebstrap in root mode: run it as root".to_string(),
        ));
    }
    let p = &checked.loaded.profile;
    let (sde, _) = crate::support::repro::source_date_epoch(None)?;
    std::env::set_var("SOURCE_DATE_EPOCH", sde.to_string());
    let cache = Cache::open(&opts.cache_dir)?;
    let st = BaseStage {
        input: BaseInput {
            base: p.base.clone(),
            keyring: checked.keyring.clone(),
            mirror: opts.mirror.clone(),
        },
        lock: None,
        sde,
    };
    let (resolved, index_date) = base::resolve_versions(&st, &cache)?;
    let mut packages: Vec<lock::LockedPackage> = resolved
        .iter()
        .map(|(name, version, arch, sha256)| lock::LockedPackage {
            name: name.clone(),
            version: version.clone(),
            arch: arch.clone(),
            sha256: sha256.clone(),
        })
        .collect();
    packages.sort();
    let new = Lock {
        lock_version: lock::LOCK_VERSION,
        profile: checked.loaded.name.clone(),
        suite: p.base.suite.clone(),
        keyring_sha256: p.base.keyring_sha256.to_lowercase(),
        source_date_epoch: index_date.unwrap_or(crate::support::repro::DEFAULT_SOURCE_DATE_EPOCH),
        containers: old
            .as_ref()
            .map(|o| o.containers.clone())
            .unwrap_or_default(),
        packages,
    };
    let changes = lock::changes(old.as_ref(), &new);
    new.write(&path)?;
    Ok((new, path, changes))
}
