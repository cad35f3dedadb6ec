//! The build pipeline: profile → base → customize → scrub → assemble → outputs.

use crate::assemble::{self, AssembleInput};
use crate::base::{self, BaseInput};
use crate::blobcache::BlobCache;
use crate::error::{Context, Error, Result};
use crate::identity::Identity;
use crate::manifest::{self, Artifact, Manifest};
use crate::output::{self, Staging};
use crate::profile::{self, Loaded};
use crate::progress::Progress;
use crate::rootfs::Rootfs;
use crate::{customize, exec, images, qcow2, scrub, tools};
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
    /// Package mirror override.
    pub mirror: Option<String>,
    /// No progress output.
    pub quiet: bool,
    /// Container registry mirrors, `HOST=URL` (see [`crate::oci::Mirrors`]).
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
    for part in [
        customize::SSH_KEYGEN_UNIT,
        customize::REPART_ROOT,
        customize::DHCP_NETWORK,
    ] {
        h.update(b"\0");
        h.update(part.as_bytes());
    }
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
    /// Pinned container images (catalog entries that passed the lints).
    pub images: Vec<images::Pinned>,
}

/// Load and check the profile and environment (used by `check` and `build`).
pub fn check(opts: &BuildOptions) -> Result<Checked> {
    let loaded = profile::load(&opts.profile, &opts.profiles_dir, &opts.vars)?;
    let keyring = base::check_keyring(&loaded.profile.base, &loaded.dir)?;
    let images = images::resolve(&loaded)?;
    let ih = input_hash(&loaded, &loaded.profile.base.keyring_sha256)?;
    Ok(Checked {
        loaded,
        keyring,
        input_hash: ih,
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
    let mut f = std::fs::File::open(p).ctx(|| format!("open {}", p.display()))?;
    let mut h = Sha256::new();
    let mut w = bar.wrap_write(&mut h);
    std::io::copy(&mut f, &mut w).ctx(|| format!("hash {}", p.display()))?;
    Ok(hex::encode(h.finalize()))
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

    let work_root = opts.cache_dir.join("work");
    std::fs::create_dir_all(&work_root).ctx(|| format!("create {}", work_root.display()))?;
    output::clean_stale(&work_root);
    let work = WorkDir(work_root.join(format!("work-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&work.0);
    std::fs::create_dir_all(&work.0).ctx(|| format!("create {}", work.0.display()))?;

    // Container images first: a bad pin fails before the long stages.
    let blobs = BlobCache::open(&opts.cache_dir)?;
    let fetched = if checked.images.is_empty() {
        vec![]
    } else {
        let st = progress.stage(
            "images",
            &format!("{} pinned container images", checked.images.len()),
        );
        let f = images::fetch(
            &checked.images,
            &blobs,
            &images::client(&opts.registry_mirrors)?,
            &progress,
        )?;
        st.done(&format!("{} images in the cache", f.len()));
        f
    };

    // base
    let st = progress.stage(
        "base",
        &format!(
            "mmdebstrap {} ({} packages requested)",
            p.base.suite,
            p.base.packages.len()
        ),
    );
    let rootfs_path = work.0.join("rootfs");
    let base_in = BaseInput {
        base: p.base.clone(),
        keyring: checked.keyring.clone(),
        mirror: opts.mirror.clone(),
    };
    let base_out = base::run(&base_in, &rootfs_path)?;
    st.done(&format!("{} packages installed", base_out.packages.len()));

    // customize + scrub
    let st = progress.stage("customize", "hostname, fstab, network, first-boot units");
    let root = Rootfs::open(&base_out.path)?;
    let c = customize::run(&root, p, &ids)?;
    st.done(&format!("{} paths", c.paths.len()));
    let baked = images::bake(&root, &blobs, &fetched)?;
    let st = progress.stage("scrub", "machine-id, host keys, caches, logs");
    let s = scrub::run(&root)?;
    st.done(&format!("{} entries removed", s.removed.len()));

    // assemble
    let target = opts.out_dir.join(&name);
    let staging = Staging::new(&target)?;
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
    // The tree is no longer needed; free the space before conversion.
    drop(root);
    let _ = std::fs::remove_dir_all(&rootfs_path);

    // qcow2 and checksums in parallel.
    let st = progress.stage("outputs", "qcow2 + sha256");
    let qcow = staging.path().join(format!("{name}.qcow2"));
    let bar = progress.bytes("sha256", asm.layout.disk_bytes);
    let (raw_sum, conv) = std::thread::scope(|s| {
        let conv = s.spawn(|| qcow2::convert(&raw, &qcow, p.image.qcow2_compress));
        let sum = sha256_file(&raw, &bar);
        (sum, conv.join())
    });
    bar.finish_and_clear();
    let raw_sum = raw_sum?;
    conv.map_err(|_| Error::failed("qcow2 conversion thread panicked"))??;
    let qcow_sum = sha256_file(&qcow, &indicatif::ProgressBar::hidden())?;
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
    let mut manifest = Manifest {
        manifest_version: 1,
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
        identity: serde_json::to_value(ids).ctx(|| "identity".into())?,
        partitions: manifest::partitions_json(&asm.layout, &ids),
        packages: base_out.packages.clone(),
        artifacts,
        rootfs_bytes: asm.rootfs_bytes,
        extra: Default::default(),
    };
    if !baked.is_empty() {
        manifest.extra.insert(
            "images".into(),
            serde_json::to_value(&baked).ctx(|| "images".into())?,
        );
    }
    manifest.write(staging.path())?;
    st.done("manifest.json, SHA256SUMS");
    let dir = staging.commit()?;
    let mut timings = progress.timings();
    if exec::verbose() {
        for c in exec::calls() {
            timings.push((format!("  tool: {}", c.command), c.took));
        }
    }
    Ok(BuildResult {
        dir,
        manifest,
        timings,
        total: started.elapsed(),
    })
}
