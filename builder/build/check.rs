//! Everything a build settles before a stage runs: the profile and its inputs are checked
//! ([`check`], also used by `clawimg check` and `clawimg lock`), then the host and the
//! lock ([`prepare`]), so a bad input fails before anything is written.

use super::base::mmdebstrap::{self, BaseInput};
use super::base::{self, BaseStage};
use super::outputs::{reuse, staging};
use super::{input_hash, overlays, units, BuildOptions};
use crate::error::{Context as _, Error, Problems, Result};
use crate::profile::lock::{self, Lock};
use crate::profile::{self, catalog, Loaded};
use crate::support::cache::Cache;
use crate::support::identity::Identity;
use crate::support::progress::Progress;
use crate::support::repro::{self, EpochSource};
use crate::support::tools;
use std::path::PathBuf;
use std::time::Instant;

/// Everything checked before a byte is written: profile, keyring, host tools.
pub struct Checked {
    /// The loaded profile.
    pub loaded: Loaded,
    /// Keyring path (verified).
    pub keyring: PathBuf,
    /// Input hash.
    pub input_hash: String,
    /// Overlays loaded and rendered (templates and metadata already checked).
    pub overlays: Vec<overlays::Overlay>,
    /// Hardening sections, resolved and linted (hardening.rs).
    pub plan: crate::build::harden::Plan,
    /// Lint findings the profile acknowledged.
    pub acknowledged: Vec<crate::profile::lints::Finding>,
    /// Pinned container images (catalog entries that passed the lints).
    pub images: Vec<crate::profile::catalog::Pinned>,
}

/// Load and check the profile and its inputs (used by `check`, `build` and `lock`).
///
/// Every check runs even when an earlier one failed, and each pushes what it finds into
/// one [`Problems`] list: schema errors of each file, validation, the keyring pin, units,
/// overlays and their templates, hardening sections and lints, container pins. The error
/// lists them all, sorted by file and line (exit code 2).
pub fn check(opts: &BuildOptions) -> Result<Checked> {
    let mut problems = Problems::default();
    let loaded = profile::load_collecting(
        &opts.profile,
        &opts.profiles_dir,
        &opts.vars,
        &opts.sets,
        &mut problems,
    );
    let Some(loaded) = loaded else {
        problems.finish()?;
        return Err(Error::config(format!(
            "cannot load profile {}",
            opts.profile
        )));
    };
    let keyring = problems.take(mmdebstrap::check_keyring(&loaded.profile.base, &loaded.dir));
    problems.take(units::check(&loaded));
    let overlays = problems.take(overlays::load(&loaded));
    // Firewall CIDR list files are pinned by sha256 in the profile, so the hash covers them.
    let (plan, acknowledged) = crate::build::harden::check_collecting(&loaded, &mut problems);
    // Collection point: a check added here pushes into `problems` (or goes through
    // `problems.take`) and must not return early, so one run reports everything.
    let images = problems.take(catalog::resolve(&loaded));
    place(&loaded, &mut problems);
    problems.finish()?;
    let (Some(keyring), Some(overlays), Some(images)) = (keyring, overlays, images) else {
        return Err(Error::config(
            "a check failed without saying why".to_string(),
        ));
    };
    let ih = input_hash(&loaded, &loaded.profile.base.keyring_sha256)?;
    Ok(Checked {
        loaded,
        keyring,
        input_hash: ih,
        overlays,
        plan,
        acknowledged,
        images,
    })
}

/// Give problems that name a profile key but no line the line where the profile chain
/// writes that key (child first), so the list sorts by file and line.
fn place(loaded: &profile::Loaded, problems: &mut Problems) {
    let chain: Vec<String> = loaded
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    problems.locate(|file, key| {
        if !file.is_empty() && !chain.iter().any(|c| c == file) {
            return None;
        }
        profile::load::locate(&loaded.files, key)
    });
}

/// The build's private work directory under the cache; removed when the build ends.
pub struct WorkDir(pub PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What every stage reads: the checked profile, the host settled, the caches open.
pub struct Context<'a> {
    /// The options the build was started with.
    pub opts: &'a BuildOptions,
    /// When the build started.
    pub started: Instant,
    /// The checked profile and its inputs.
    pub checked: Checked,
    /// Profile name (the output directory's name).
    pub name: String,
    /// Stage progress and timings.
    pub progress: Progress,
    /// Disk and filesystem identifiers derived from the input hash.
    pub ids: Identity,
    /// The profile's lock file path.
    pub lock_path: PathBuf,
    /// The lock, if the profile has one (checked against the profile).
    pub locked: Option<Lock>,
    /// SOURCE_DATE_EPOCH of the build (also set in the environment for every tool).
    pub sde: u64,
    /// Where [`Context::sde`] came from.
    pub sde_source: EpochSource,
    /// The stage cache (shared lock held).
    pub cache: Cache,
    /// The build's work directory.
    pub work: WorkDir,
    /// Final output directory (`out/<profile>`).
    pub target: PathBuf,
    /// Cache key of the finished image.
    pub image_key: String,
}

impl Context<'_> {
    /// The profile being built.
    pub fn profile(&self) -> &crate::profile::Profile {
        &self.checked.loaded.profile
    }

    /// The base stage's inputs.
    pub fn base_stage(&self) -> BaseStage<'_> {
        let p = self.profile();
        BaseStage {
            input: BaseInput {
                base: p.base.clone(),
                keyring: self.checked.keyring.clone(),
                mirror: self.opts.mirror.clone(),
            },
            lock: self.locked.as_ref().map(|l| (l, self.lock_path.clone())),
            sde: self.sde,
        }
    }
}

/// Check the profile, the host (tools, root) and the lock; set SOURCE_DATE_EPOCH; open the
/// cache and make the work directory.
pub fn prepare(opts: &BuildOptions) -> Result<Context<'_>> {
    let started = Instant::now();
    let checked = check(opts)?;
    tools::check(tools::BUILD)?;
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::config(
            "the base stage runs mmdebstrap in root mode: run clawimg build as root".to_string(),
        ));
    }
    let name = checked.loaded.name.clone();
    let progress = Progress::new(opts.quiet);
    let ids = Identity::from_input_hash(&checked.input_hash);

    // Lock, SOURCE_DATE_EPOCH (every tool below reads it) and the stage cache.
    let lock_path = lock::path_for(&checked.loaded.files[0]);
    let locked = Lock::read(&lock_path)?;
    if let Some(l) = &locked {
        let p = &checked.loaded.profile;
        l.check_matches(
            &lock_path,
            &p.base.suite,
            &p.base.keyring_sha256,
            &p.base.packages,
        )?;
    }
    let (sde, sde_source) = repro::source_date_epoch(locked.as_ref().map(|l| l.source_date_epoch))?;
    std::env::set_var("SOURCE_DATE_EPOCH", sde.to_string());
    let cache = Cache::open(&opts.cache_dir)?;

    let work_root = opts.cache_dir.join("work");
    std::fs::create_dir_all(&work_root).ctx(|| format!("create {}", work_root.display()))?;
    staging::clean_stale(&work_root);
    let work = WorkDir(work_root.join(format!("work-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&work.0);
    std::fs::create_dir_all(&work.0).ctx(|| format!("create {}", work.0.display()))?;

    let target = opts.out_dir.join(&name);
    let mut cx = Context {
        opts,
        started,
        checked,
        name,
        progress,
        ids,
        lock_path,
        locked,
        sde,
        sde_source,
        cache,
        work,
        target,
        image_key: String::new(),
    };
    let base_key = base::key(&cx.base_stage());
    cx.image_key = reuse::image_key(&base_key, &cx.checked.input_hash, sde)?;
    Ok(cx)
}
