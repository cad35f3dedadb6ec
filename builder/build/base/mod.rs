//! The base stage with its cache and lock: the mmdebstrap tree is stored in the stage
//! cache under the hash of exactly its inputs; with a lock, the locked versions are
//! installed (from a local archive of cached .debs when all are present, else from the
//! archive with apt pins) and every .deb digest is checked before the tree is cached.

pub mod mmdebstrap;

use crate::error::{Context, Error, Result};
use crate::profile::lock::{self, Export, Lock, Resolved};
use crate::support::cache::{Cache, KeyHasher};
use crate::support::dpkg::Package;
use crate::support::exec;
use mmdebstrap::{BaseInput, BaseRootfs};
use std::path::{Path, PathBuf};

/// What the base stage needs beyond [`BaseInput`].
pub struct BaseStage<'a> {
    /// mmdebstrap inputs.
    pub input: BaseInput,
    /// The profile's lock and its path, if it has one.
    pub lock: Option<(&'a Lock, PathBuf)>,
    /// SOURCE_DATE_EPOCH of the build.
    pub sde: u64,
}

/// The base stage's result.
pub struct BaseOutcome {
    /// The tree (hard links to the cached tree, in the work directory) and its packages.
    pub rootfs: BaseRootfs,
    /// Cache key of the stage.
    pub key: String,
    /// Whether the cache had it.
    pub hit: bool,
    /// Installed packages with .deb digests.
    pub resolved: Vec<Resolved>,
    /// Date of the archive index (for `clawimg lock`).
    pub index_date: Option<u64>,
    /// Whether it was installed from cached .debs only.
    pub offline: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    packages: Vec<Package>,
    resolved: Vec<(String, String, String, String)>,
    index_date: Option<u64>,
    offline: bool,
}

/// Cache key of the base stage: suite, components, variant, packages, keyring, mirror,
/// lock, SOURCE_DATE_EPOCH, mmdebstrap version and the stage's own code.
pub fn key(st: &BaseStage<'_>) -> String {
    let b = &st.input.base;
    let mut k = KeyHasher::new("base");
    k.add(&b.suite)
        .add(b.components.join(","))
        .add(&b.variant)
        .add(b.packages.join("\n"));
    k.add(b.keyring_sha256.to_lowercase())
        .add(st.input.mirror.as_deref().unwrap_or(""));
    k.add(st.sde.to_string());
    match &st.lock {
        Some((l, _)) => {
            for p in &l.packages {
                k.add(format!("{} {} {} {}", p.name, p.version, p.arch, p.sha256));
            }
        }
        None => {
            k.add("unlocked");
        }
    }
    k.add(crate::support::tools::version(
        &crate::support::tools::BUILD[0],
    ));
    k.add(include_str!("mmdebstrap.rs"))
        .add(include_str!("mod.rs"))
        .add(include_str!("../../profile/lock.rs"));
    k.finish()
}

/// Where an unlocked build keeps what it resolved (an implicit lock), by stage key: the next
/// build of the same inputs with a cold stage cache installs exactly that from the .deb
/// store, without the network, as the stage cache itself would have reused the tree.
fn resolution_path(store: &Path, key: &str) -> PathBuf {
    store.join(format!("resolved-{key}.lock"))
}

fn save_resolution(st: &BaseStage<'_>, store: &Path, key: &str, resolved: &[Resolved]) {
    let mut packages: Vec<lock::LockedPackage> =
        resolved.iter().map(lock::LockedPackage::from).collect();
    packages.sort();
    let l = Lock {
        lock_version: lock::LOCK_VERSION,
        profile: "(unlocked build)".into(),
        suite: st.input.base.suite.clone(),
        keyring_sha256: st.input.base.keyring_sha256.to_lowercase(),
        source_date_epoch: st.sde,
        containers: vec![],
        packages,
    };
    // Best effort: without it the next cold build just downloads again.
    let _ = l.write(&resolution_path(store, key));
}

/// Build the base tree into `dir`. `key` is set for builds (not for `clawimg lock`, which
/// always resolves afresh): an unlocked build then reuses the resolution stored under it.
fn produce(st: &BaseStage<'_>, cache: &Cache, dir: &Path, key: Option<&str>) -> Result<()> {
    let store = cache.debs();
    let export = Export {
        dir: dir.join("export"),
    };
    let mut input = st.input.clone();
    let mut extra: Vec<String> = vec![];
    let mut offline = false;
    let implicit = match (&st.lock, key) {
        (None, Some(k)) => Lock::read(&resolution_path(&store, k))
            .ok()
            .flatten()
            .filter(|l| lock::all_cached(l, &store))
            .map(|l| (l, resolution_path(&store, k))),
        _ => None,
    };
    let lock_used = st
        .lock
        .as_ref()
        .map(|(l, p)| (*l, p.clone()))
        .or(implicit.as_ref().map(|(l, p)| (l, p.clone())));
    extra.extend(unsafe_io_hooks());
    if let Some((l, _)) = &lock_used {
        if lock::all_cached(l, &store) {
            input.mirror = Some(lock::local_repo(l, &store, &dir.join("repo"))?);
            offline = true;
            // The image keeps the archive's sources list, never the local one.
            extra.push(format!(
                "--customize-hook=cp {} \"$1\"/etc/apt/sources.list",
                lock::shell_quote(&store.join("sources.list").display().to_string())
            ));
        } else {
            let pins = dir.join("pins.pref");
            std::fs::write(&pins, l.apt_preferences()).ctx(|| "write apt pins".into())?;
            extra.push(format!(
                "--setup-hook=mkdir -p \"$1\"/etc/apt/preferences.d && cp {} \"$1\"/etc/apt/preferences.d/clawimg-lock.pref",
                lock::shell_quote(&pins.display().to_string())
            ));
            extra.push(
                "--customize-hook=rm -f \"$1\"/etc/apt/preferences.d/clawimg-lock.pref".to_string(),
            );
        }
    }
    extra.extend(export.mmdebstrap_args());
    let out = mmdebstrap::run_with(&input, &dir.join("rootfs"), &extra)?;
    let resolved = export.import(&out.packages, &store)?;
    if let Some((l, path)) = &lock_used {
        l.verify(path, &resolved, &store)?;
    }
    if let (None, None, Some(k)) = (&st.lock, &implicit, key) {
        save_resolution(st, &store, k, &resolved);
    }
    let meta = Meta {
        packages: out.packages,
        resolved: resolved
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.version.clone(),
                    r.arch.clone(),
                    r.sha256.clone(),
                )
            })
            .collect(),
        index_date: export.index_date(),
        offline,
    };
    std::fs::write(
        dir.join("meta.json"),
        serde_json::to_vec(&meta).map_err(|e| Error::failed(e.to_string()))?,
    )
    .ctx(|| "write base meta".into())?;
    let _ = std::fs::remove_dir_all(&export.dir);
    let _ = std::fs::remove_dir_all(dir.join("repo"));
    Ok(())
}

/// dpkg without fsync while mmdebstrap installs (the tree is written once and then copied,
/// so a crash only loses a cache entry that was never complete). The option lives in a
/// dpkg.cfg.d file that exists only during the run: the image's files stay the same.
fn unsafe_io_hooks() -> Vec<String> {
    let f = "\"$1\"/etc/dpkg/dpkg.cfg.d/00clawimg-unsafe-io";
    vec![
        format!("--setup-hook=mkdir -p \"$1\"/etc/dpkg/dpkg.cfg.d && echo force-unsafe-io > {f}"),
        format!("--customize-hook=rm -f {f}"),
    ]
}

/// Run (or reuse) the base stage and put the tree at `target` (hard links into the cache).
pub fn run(st: &BaseStage<'_>, cache: &Cache, target: &Path) -> Result<BaseOutcome> {
    let key = key(st);
    let (entry, hit) =
        cache.get_or_make("base", &key, |dir| produce(st, cache, dir, Some(&key)))?;
    let meta: Meta = serde_json::from_slice(
        &std::fs::read(entry.join("meta.json")).ctx(|| "read base meta".into())?,
    )
    .map_err(|e| Error::failed(format!("cache entry {}: {e}", entry.display())))?;
    // Hard links, not a copy (a one-file rebuild spent most of its time copying 1 GiB):
    // every later stage changes the tree through `Rootfs`, which replaces files with new
    // inodes and copies a shared one up before changing its mode or owner, so nothing
    // reaches the cached tree.
    let sh = exec::shell()?;
    exec::run(
        sh.cmd("cp")
            .args(["-a", "--link"])
            .arg(entry.join("rootfs"))
            .arg(target),
    )?;
    Ok(BaseOutcome {
        rootfs: BaseRootfs {
            path: target.to_path_buf(),
            packages: meta.packages,
        },
        key,
        hit,
        resolved: meta
            .resolved
            .into_iter()
            .map(|(name, version, arch, sha256)| Resolved {
                name,
                version,
                arch,
                sha256,
            })
            .collect(),
        index_date: meta.index_date,
        offline: meta.offline,
    })
}

/// One resolved package: name, version, architecture, .deb sha256.
pub type ResolvedPackage = (String, String, String, String);

/// Resolve the newest versions of the stage's packages (no lock applied) in a scratch
/// tree: every package, and the archive index's date.
pub fn resolve_versions(
    st: &BaseStage<'_>,
    cache: &Cache,
) -> Result<(Vec<ResolvedPackage>, Option<u64>)> {
    let tmp = cache.temp_path("stages", "lock");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    let res = produce(st, cache, &tmp, None);
    let meta = res.and_then(|_| {
        serde_json::from_slice::<Meta>(
            &std::fs::read(tmp.join("meta.json")).ctx(|| "read base meta".into())?,
        )
        .map_err(|e| Error::failed(e.to_string()))
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let meta = meta?;
    Ok((meta.resolved, meta.index_date))
}
