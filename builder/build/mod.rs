//! The build pipeline: profile → base → customize → scrub → assemble → outputs.

pub mod assemble;
pub mod base;
pub mod customize;
pub mod harden;
pub mod images;
pub mod outputs;
pub mod overlays;
pub mod scrub;
pub mod secrets;
pub mod units;

use crate::build::base::mmdebstrap::{self, BaseInput};
use crate::build::images::blobs::BlobCache;
use crate::build::outputs::staging::{self, Staging};
use crate::error::{Context, Error, Result};
use crate::image::files;
use crate::image::manifest::{
    self, Artifact, Extra, HardeningSection, Manifest, PartitionTable, Reproducibility,
};
use crate::image::provenance::Provenance;
use crate::profile::catalog;
use crate::profile::lock::{self, Lock};
use crate::profile::{self, Loaded};
use crate::support::cache::Cache;
use crate::support::identity::Identity;
use crate::support::progress::Progress;
use crate::support::rootfs::Rootfs;
use crate::{
    build::outputs::qcow2, build::outputs::reuse, image::audit, support::repro, support::tools,
};
use assemble::AssembleInput;
use base::BaseStage;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where things are and how to behave.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Profile name or path.
    pub profile: String,
    /// Directory with the profiles.
    pub profiles_dir: PathBuf,
    /// Output root (`out/`); the image goes to `out/<profile>/`.
    pub out_dir: PathBuf,
    /// Cache and scratch root.
    pub cache_dir: PathBuf,
    /// `--var key=value` overrides.
    pub vars: Vec<String>,
    /// `--set dotted.key=TOML_VALUE` overrides of the merged profile.
    pub sets: Vec<String>,
    /// Package mirror override.
    pub mirror: Option<String>,
    /// No progress output.
    pub quiet: bool,
    /// Container registry mirrors, `HOST=URL` (see [`crate::build::images::oci::Mirrors`]).
    pub registry_mirrors: Vec<String>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// Output directory.
    pub dir: PathBuf,
    /// The manifest written there.
    pub manifest: Manifest,
    /// Per-stage timings.
    pub timings: Vec<(String, Duration)>,
    /// Total wall time.
    pub total: Duration,
}

/// Default cache directory: `$CLAWIMG_CACHE`, else `$XDG_CACHE_HOME/clawimg`, else `~/.cache/clawimg`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CLAWIMG_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("clawimg");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/clawimg")
}

/// Hash of every declared input of the image.
pub fn input_hash(loaded: &Loaded, keyring_sha256: &str) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"clawimg-input-v1\0");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(b"\0");
    let json = serde_json::to_string(&loaded.profile).ctx(|| "serialize profile".into())?;
    h.update(json.as_bytes());
    h.update(b"\0");
    h.update(keyring_sha256.as_bytes());
    // The lock (versions, SOURCE_DATE_EPOCH) and an explicit SOURCE_DATE_EPOCH override.
    if let Some(lock) = loaded
        .files
        .first()
        .and_then(|f| std::fs::read(lock::path_for(f)).ok())
    {
        h.update(b"\0lock\0");
        h.update(&lock);
    }
    if let Ok(sde) = std::env::var("SOURCE_DATE_EPOCH") {
        h.update(b"\0sde\0");
        h.update(sde.as_bytes());
    }
    for part in [
        customize::SSH_KEYGEN_UNIT,
        customize::REPART_ROOT,
        customize::DHCP_NETWORK,
        secrets::UNIT,
        secrets::SCRIPT,
    ] {
        h.update(b"\0");
        h.update(part.as_bytes());
    }
    overlays::hash_into(&mut h, loaded)?;
    units::hash_into(&mut h, loaded)?;
    h.update(b"\0");
    h.update(images::input_part(loaded)?.as_bytes());
    Ok(hex::encode(h.finalize()))
}

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

/// Load and check the profile and environment (used by `check` and `build`).
pub fn check(opts: &BuildOptions) -> Result<Checked> {
    let loaded =
        profile::load_with_sets(&opts.profile, &opts.profiles_dir, &opts.vars, &opts.sets)?;
    let keyring = mmdebstrap::check_keyring(&loaded.profile.base, &loaded.dir)?;
    units::check(&loaded)?;
    let overlays = overlays::load(&loaded)?;
    // Firewall CIDR list files are pinned by sha256 in the profile, so the hash covers them.
    let (plan, acknowledged) = crate::build::harden::check(&loaded)?;
    let images = catalog::resolve(&loaded)?;
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

struct WorkDir(PathBuf);
impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sha256_file(p: &Path, bar: &indicatif::ProgressBar) -> Result<String> {
    crate::build::outputs::bmap::sha256_sparse(p, |n| bar.inc(n))
}

/// Run `f` on this thread at a lower CPU priority (nice 10), then restore it. The audit
/// yields the cores to the qcow2 compression, the critical path of a cold build.
fn at_low_priority<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: plain syscalls on this thread's own id; failures only leave the priority as is.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    let old = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 10) };
    let r = f();
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, old) };
    r
}

/// Run the whole build.
pub fn build(opts: &BuildOptions) -> Result<BuildResult> {
    let started = Instant::now();
    let checked = check(opts)?;
    tools::check(tools::BUILD)?;
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::config(
            "the base stage runs mmdebstrap in root mode: run clawimg build as root".to_string(),
        ));
    }
    let name = checked.loaded.name.clone();
    let p = &checked.loaded.profile;
    let progress = Progress::new(opts.quiet);
    let ids = Identity::from_input_hash(&checked.input_hash);

    // Lock, SOURCE_DATE_EPOCH (every tool below reads it) and the stage cache.
    let lock_path = lock::path_for(&checked.loaded.files[0]);
    let locked = Lock::read(&lock_path)?;
    if let Some(l) = &locked {
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

    let base_in = BaseInput {
        base: p.base.clone(),
        keyring: checked.keyring.clone(),
        mirror: opts.mirror.clone(),
    };
    let bst = BaseStage {
        input: base_in,
        lock: locked.as_ref().map(|l| (l, lock_path.clone())),
        sde,
    };
    let base_key = base::key(&bst);
    let image_key = reuse::image_key(&base_key, &checked.input_hash, sde)?;
    let target = opts.out_dir.join(&name);
    {
        let st = progress.stage("cache", "look up the finished image");
        // Only a hit touches out/: a miss must leave it alone until the build succeeded.
        if cache.lookup("image", &image_key).is_some() {
            let staging = Staging::new(&target)?;
            if let Some(manifest) = reuse::reuse(&cache, &image_key, staging.path())? {
                st.done("hit: outputs verified and re-linked");
                let dir = staging.commit()?;
                return Ok(BuildResult {
                    dir,
                    manifest,
                    timings: progress.timings(),
                    total: started.elapsed(),
                });
            }
        }
        st.done("miss");
    }
    // Container images are pulled while the base stage runs (both mostly wait on the
    // network); endpoints are checked first so a missing mirror fails before either starts.
    let blobs = BlobCache::open(&opts.cache_dir)?;
    let client = if checked.images.is_empty() {
        None
    } else {
        let c = images::client(&opts.registry_mirrors)?;
        c.check_endpoints(
            checked
                .images
                .iter()
                .filter(|i| !blobs.has(&i.digest))
                .map(|i| &i.parsed),
        )?;
        Some(c)
    };
    let rootfs_path = work.0.join("rootfs");
    let (fetched, bo) = std::thread::scope(|s| {
        let pulls = client.as_ref().map(|c| {
            let (blobs, progress, images) = (&blobs, &progress, &checked.images);
            s.spawn(move || {
                let st = progress.stage(
                    "images",
                    &format!("{} pinned container images", images.len()),
                );
                let f = images::fetch(images, blobs, c, progress)?;
                st.done(&format!("{} images in the cache", f.len()));
                Ok::<_, Error>(f)
            })
        });
        let st = progress.stage(
            "base",
            &format!(
                "mmdebstrap {} ({} packages requested)",
                p.base.suite,
                p.base.packages.len()
            ),
        );
        let bo = base::run(&bst, &cache, &rootfs_path);
        if let Ok(b) = &bo {
            st.done(&format!(
                "{} packages installed{}",
                b.rootfs.packages.len(),
                if b.hit { " (cached)" } else { "" }
            ));
        }
        // A bad pin is reported even when the base stage failed too.
        let fetched = match pulls {
            Some(h) => h
                .join()
                .map_err(|_| Error::failed("the image pull thread panicked"))??,
            None => vec![],
        };
        Ok::<_, Error>((fetched, bo?))
    })?;
    let base_out = bo.rootfs.clone();

    // customize + scrub
    let st = progress.stage("customize", "hostname, fstab, network, first-boot units");
    let root = Rootfs::open(&base_out.path)?;
    let c = customize::run(&root, p, &ids)?;
    st.done(&format!("{} paths", c.paths.len()));
    if !checked.plan.is_empty() {
        let st = progress.stage(
            "harden",
            "users, ssh, firewall, fail2ban, sysctl, docker, updates, swap, …",
        );
        let hp = crate::build::harden::apply(&root, &checked.plan)?;
        st.done(&format!("{} paths", hp.len()));
    }
    let mut prov = Provenance::default();
    for path in &c.paths {
        prov.record(path, "module customize");
    }
    let st = progress.stage("overlays", &format!("{} overlays", checked.overlays.len()));
    let applied = overlays::apply(&root, &checked.overlays, &mut prov)?;
    st.done(&format!("{} paths", applied.paths.len()));
    let st = progress.stage(
        "units",
        &format!(
            "{} installed, {} enabled",
            p.units.install.len(),
            p.units.enable.len()
        ),
    );
    let units_done = units::apply(&root, &checked.loaded, &mut prov)?;
    st.done(&units_done.verify);
    let st = progress.stage("secrets", "secret slots (declared only), first-boot unit");
    let sp = secrets::install(&root, p)?;
    st.done(&format!("{} slots, {} paths", p.secrets.len(), sp.len()));
    let baked = images::bake(&root, &blobs, &fetched)?;
    let st = progress.stage("scrub", "machine-id, host keys, caches, logs");
    let s = scrub::run(&root)?;
    let caches = scrub::scrub_caches(&root)?;
    st.done(&format!(
        "{} entries removed",
        s.removed.len() + caches.len()
    ));
    let files = files::file_list(&root)?;
    let expect = crate::image::expect::expectations(
        p,
        &root,
        &files,
        &[
            ("customize", customize::NODE_LOCAL),
            ("scrub", scrub::NODE_LOCAL),
            ("repro", scrub::CACHES_NODE_LOCAL),
            ("secrets", secrets::NODE_LOCAL),
        ],
    );

    // assemble
    let staging = Staging::new(&target)?;
    files::write_file_list(&files, staging.path())?;
    let raw = staging.path().join(format!("{name}.raw"));
    let st = progress.stage("assemble", "GPT, ext4, ESP, GRUB (BIOS + UEFI)");
    let input = AssembleInput {
        rootfs: &root,
        image: &p.image,
        title: format!("Ubuntu 24.04 LTS (clawimg {name})"),
        ids,
        work: work.0.clone(),
    };
    let asm = assemble::run(&input, &raw)?;
    st.done(&format!("{} MiB disk", asm.layout.disk_bytes >> 20));
    // The tree is no longer needed; free the space while the image is read.
    drop(root);
    // The finished filesystem, not the tree, is audited: what ships is what is checked. The
    // qcow2, both checksums and the block map are made from the raw image at the same time;
    // a finding returns before anything is committed (the staging directory is dropped).
    let st = progress.stage(
        "outputs",
        "qcow2 + sha256 + block map (alongside the audit)",
    );
    let qcow = staging.path().join(format!("{name}.qcow2"));
    // The last build of this profile lends its compressed clusters where the raw bytes
    // are unchanged (a one-file change rewrites a few MiB of a 1 GiB disk).
    let previous = reuse::previous(&cache, &name).and_then(|(r, q)| qcow2::Previous::open(&r, &q));
    let bar = progress.bytes("sha256", asm.layout.disk_bytes);
    let (report, raw_sum, conv, bmap) = std::thread::scope(|s| {
        let conv = s.spawn(|| {
            let stats = qcow2::convert(&raw, &qcow, p.image.qcow2_compress, previous.as_ref())?;
            Ok::<_, Error>((
                stats,
                sha256_file(&qcow, &indicatif::ProgressBar::hidden())?,
            ))
        });
        let sum = s.spawn(|| sha256_file(&raw, &bar));
        let bmap = s.spawn(|| crate::build::outputs::bmap::compute(&raw));
        s.spawn(|| std::fs::remove_dir_all(&rootfs_path));
        let audit_st = progress.stage(
            "audit",
            "no keys, tokens or node state in the root filesystem",
        );
        let report = at_low_priority(|| audit::audit_image(&raw, None));
        audit_st.done(&match &report {
            Ok(r) => format!(
                "{} findings, {} files scanned",
                r.findings.len(),
                r.files_scanned
            ),
            Err(_) => "failed".into(),
        });
        (report, sum.join(), conv.join(), bmap.join())
    });
    bar.finish_and_clear();
    let report = report?;
    if !report.findings.is_empty() {
        return Err(Error::failed(format!(
            "audit: the image must not ship these ({} findings); nothing was written to {}:\n{}",
            report.findings.len(),
            target.display(),
            report.render()
        )));
    }
    let panicked = |what: &str| Error::failed(format!("{what} thread panicked"));
    let raw_sum = raw_sum.map_err(|_| panicked("sha256"))??;
    let (qstats, qcow_sum) = conv.map_err(|_| panicked("qcow2 conversion"))??;
    // The block map lets `flash` send only allocated ranges.
    crate::build::outputs::bmap::write(&raw, &bmap.map_err(|_| panicked("block map"))??)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let artifacts = vec![
        Artifact {
            file: format!("{name}.raw"),
            bytes: size(&raw),
            sha256: raw_sum,
        },
        Artifact {
            file: format!("{name}.qcow2"),
            bytes: size(&qcow),
            sha256: qcow_sum,
        },
    ];
    let hardening = if checked.plan.is_empty() {
        None
    } else {
        Some(HardeningSection(
            serde_json::to_value(&checked.plan).ctx(|| "hardening plan".into())?,
        ))
    };
    let manifest = Manifest {
        manifest_version: manifest::MANIFEST_VERSION,
        profile: name.clone(),
        profile_files: checked
            .loaded
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        input_hash: checked.input_hash.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        suite: p.base.suite.clone(),
        kernel_cmdline: asm.cmdline.clone(),
        identity: ids,
        partitions: PartitionTable::new(&asm.layout, &ids),
        packages: base_out.packages.clone(),
        artifacts,
        rootfs_bytes: asm.rootfs_bytes,
        extra: Extra {
            provenance: Some(prov),
            overlays: Some(p.overlays.list.clone()),
            units: Some(units_done),
            declared_files: Some(applied.declared),
            secrets: Some(p.secrets.clone()),
            hardening,
            reproducibility: Some(Reproducibility {
                source_date_epoch: sde,
                source_date_epoch_from: sde_source,
                locked: locked.is_some(),
            }),
            verify: Some(expect),
            images: (!baked.is_empty()).then_some(baked),
        },
    };
    manifest.write(staging.path())?;
    reuse::store(&cache, &image_key, staging.path(), &manifest)?;
    reuse::remember(&cache, &name, &image_key);
    st.done(&if qstats.clusters > 0 {
        format!(
            "manifest.json, SHA256SUMS; qcow2: {} clusters compressed, {} reused",
            qstats.compressed, qstats.reused
        )
    } else {
        "manifest.json, SHA256SUMS".to_string()
    });
    let dir = staging.commit()?;
    Ok(BuildResult {
        dir,
        manifest,
        timings: progress.timings(),
        total: started.elapsed(),
    })
}
