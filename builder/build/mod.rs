//! The build pipeline. [`check`] settles every input first; then the stages run in order,
//! each on the previous one's output (see [`stages`]): base → customize → harden →
//! overlays → units → secrets → images → scrub → assemble → outputs, and the manifest.

pub mod assemble;
pub mod base;
pub mod check;
pub mod customize;
pub mod harden;
pub mod images;
pub mod outputs;
pub mod overlays;
pub mod scrub;
pub mod secrets;
pub mod stages;
pub mod units;

use crate::image::manifest::Extra;
use crate::image::manifest::HardeningSection;
use crate::image::manifest::PartitionTable;
use crate::image::manifest::Reproducibility;
use crate::image::manifest::SbomRef;
use crate::image::sbom;
pub use check::{check, Checked};

use crate::build::outputs::reuse;
use crate::error::{Context, Result};
use crate::image::manifest::{self, Artifact, Manifest};
use crate::profile::lock;
use crate::profile::Loaded;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Refuse catalog entries without a digest instead of pinning them (`build --locked`).
    pub locked: bool,
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

/// Run the whole build: the catalog's missing pins (see [`images::pin`]), the checks, then
/// each stage on the previous one's output.
pub fn build(opts: &BuildOptions) -> Result<BuildResult> {
    // A profile that does not load is reported by the check, with everything else.
    if let Ok(loaded) =
        crate::profile::load_with_sets(&opts.profile, &opts.profiles_dir, &opts.vars, &opts.sets)
    {
        let (m, c) = (&opts.registry_mirrors, &opts.cache_dir);
        images::pin(&loaded, m, c, opts.locked, opts.quiet)?;
    }
    let cx = check::prepare(opts)?;
    if let Some(done) = stages::reuse(&cx)? {
        return Ok(done);
    }
    let based = stages::base(&cx)?;
    let customized = stages::customize(&cx, based)?;
    let hardened = stages::harden(&cx, customized)?;
    let overlaid = stages::overlays(&cx, hardened)?;
    let units_installed = stages::units(&cx, overlaid)?;
    let secrets_installed = stages::secrets(&cx, units_installed)?;
    let images_baked = stages::images(&cx, secrets_installed)?;
    let scrubbed = stages::scrub(&cx, images_baked)?;
    let assembled = stages::assemble(&cx, scrubbed)?;
    let outputs = stages::outputs(&cx, assembled)?;

    // The manifest: what every command learns about this build.
    let (name, checked, ids) = (&cx.name, &cx.checked, cx.ids);
    let p = &checked.loaded.profile;
    let (sde, sde_source, locked) = (cx.sde, cx.sde_source, &cx.locked);
    let stages::Outputs {
        assembled,
        qcow,
        raw_sum,
        qcow_sum,
        qstats,
        stage: st,
    } = outputs;
    let stages::Assembled {
        staging,
        raw,
        asm,
        report,
        expect,
    } = assembled;
    let stages::Report {
        prov,
        base_out,
        resolved,
        applied,
        units_done,
        baked,
    } = report;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    // The SBOM: made from the same inputs as the image, so it is as reproducible.
    let sbom_file = sbom::file_name(name);
    let sbom_text = sbom::render(&sbom::SbomInput {
        profile: name,
        input_hash: &checked.input_hash,
        source_date_epoch: sde,
        tool_version: env!("CARGO_PKG_VERSION"),
        debs: &resolved,
        images: &baked,
    })?;
    let sbom_path = staging.path().join(&sbom_file);
    std::fs::write(&sbom_path, &sbom_text).ctx(|| format!("write {}", sbom_path.display()))?;
    let sbom_sum = hex::encode(Sha256::digest(sbom_text.as_bytes()));
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
        Artifact {
            file: sbom_file.clone(),
            bytes: sbom_text.len() as u64,
            sha256: sbom_sum.clone(),
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
            sbom: Some(SbomRef {
                file: sbom_file,
                format: "CycloneDX".to_string(),
                spec_version: sbom::SPEC_VERSION.to_string(),
                sha256: sbom_sum,
            }),
        },
    };
    manifest.write(staging.path())?;
    reuse::store(&cx.cache, &cx.image_key, staging.path(), &manifest)?;
    reuse::remember(&cx.cache, name, &cx.image_key);
    st.done(&if qstats.clusters > 0 {
        format!(
            "manifest.json, SHA256SUMS, SBOM; qcow2: {} clusters compressed, {} reused",
            qstats.compressed, qstats.reused
        )
    } else {
        "manifest.json, SHA256SUMS, SBOM".to_string()
    });
    let dir = staging.commit()?;
    Ok(BuildResult {
        dir,
        manifest,
        timings: cx.progress.timings(),
        total: cx.started.elapsed(),
    })
}
