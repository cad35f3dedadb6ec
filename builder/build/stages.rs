//! The stages of a build, all of one shape: a stage takes the [`Context`] and the previous
//! stage's output and returns its own. The tree moves from stage to stage inside those
//! outputs, and every path a stage writes into it is recorded in [`Tree::prov`] with its
//! origin (`clawimg inspect IMAGE --explain PATH`).

use super::assemble::{self, AssembleInput};
use super::base::mmdebstrap::BaseRootfs;
use super::check::Context;
use super::images::blobs::BlobCache;
use super::images::{self, Baked, Fetched};
use super::outputs::staging::Staging;
use super::outputs::{bmap, qcow2, reuse};
use super::units::UnitsApplied;
use super::{customize, harden, overlays, scrub, secrets, units, BuildResult};
use crate::error::{Error, Result};
use crate::image::audit;
use crate::image::expect::{self, Expectations};
use crate::image::files::{self, FileEntry};
use crate::image::provenance::Provenance;
use crate::profile::lock::Resolved;
use crate::support::progress;
use crate::support::rootfs::Rootfs;
use std::path::{Path, PathBuf};

/// The root filesystem between stages and what the stages reported so far.
pub struct Tree {
    /// The tree (hard links into the cached base tree, copied up on change).
    pub root: Rootfs,
    /// Who wrote each path (later writers replace earlier ones).
    pub prov: Provenance,
    /// What the base stage made: the tree's directory and its packages.
    pub base_out: BaseRootfs,
    /// The installed packages with the sha256 of their .debs (for the SBOM).
    pub resolved: Vec<Resolved>,
    /// Container images pulled while the base stage ran, and the cache holding their blobs.
    pub pulled: (BlobCache, Vec<Fetched>),
    /// What the overlays stage applied.
    pub applied: overlays::Applied,
    /// What the units stage installed, enabled and masked.
    pub units_done: UnitsApplied,
    /// The images baked into the tree.
    pub baked: Vec<Baked>,
}

/// After the base stage: the package tree.
pub struct Based(pub Tree);
/// After customize: identity, mounts, network, first-boot units.
pub struct Customized(pub Tree);
/// After the hardening modules.
pub struct Hardened(pub Tree);
/// After the overlays.
pub struct Overlaid(pub Tree);
/// After the profile's units.
pub struct UnitsInstalled(pub Tree);
/// After the secret slots' unit, script and drop-ins.
pub struct SecretsInstalled(pub Tree);
/// After the container images were baked.
pub struct ImagesBaked(pub Tree);

/// After the scrub: the final tree, its file list and what `verify` should expect.
pub struct Scrubbed {
    /// The final tree.
    pub tree: Tree,
    /// Every file of the tree.
    pub files: Vec<FileEntry>,
    /// Node-local paths and other expectations for `clawimg verify`.
    pub expect: Expectations,
}

/// After assembly: the raw disk in the staging directory; the tree is gone.
pub struct Assembled {
    /// The output directory being filled.
    pub staging: Staging,
    /// The raw disk image.
    pub raw: PathBuf,
    /// Partition layout, kernel command line, sizes.
    pub asm: assemble::Assembled,
    /// The tree's reports ([`Tree`] without the tree).
    pub report: Report,
    /// Node-local paths for `clawimg verify`.
    pub expect: Expectations,
}

/// What the stages reported, kept for the manifest once the tree is gone.
pub struct Report {
    /// Who wrote each path.
    pub prov: Provenance,
    /// The base tree's directory and packages.
    pub base_out: BaseRootfs,
    /// The installed packages with their .deb sha256.
    pub resolved: Vec<Resolved>,
    /// Overlays applied.
    pub applied: overlays::Applied,
    /// Units installed.
    pub units_done: UnitsApplied,
    /// Images baked.
    pub baked: Vec<Baked>,
}

/// After the outputs: the audited raw image, its qcow2, checksums and block map.
pub struct Outputs {
    /// Everything assembled.
    pub assembled: Assembled,
    /// The qcow2 image.
    pub qcow: PathBuf,
    /// sha256 of the raw image.
    pub raw_sum: String,
    /// sha256 of the qcow2 image.
    pub qcow_sum: String,
    /// qcow2 cluster statistics.
    pub qstats: qcow2::Stats,
    /// The outputs stage's progress, finished when the manifest is written.
    pub stage: progress::Stage,
}

/// A finished image of the same inputs in the cache, verified and re-linked into `out/`.
pub fn reuse(cx: &Context) -> Result<Option<BuildResult>> {
    let st = cx.progress.stage("cache", "look up the finished image");
    // Only a hit touches out/: a miss must leave it alone until the build succeeded.
    if cx.cache.lookup("image", &cx.image_key).is_some() {
        let staging = Staging::new(&cx.target)?;
        if let Some(manifest) = reuse::reuse(&cx.cache, &cx.image_key, staging.path())? {
            st.done("hit: outputs verified and re-linked");
            let dir = staging.commit()?;
            return Ok(Some(BuildResult {
                dir,
                manifest,
                timings: cx.progress.timings(),
                total: cx.started.elapsed(),
            }));
        }
    }
    st.done("miss");
    Ok(None)
}

/// The package tree (mmdebstrap, or the cache), with the pinned container images pulled at
/// the same time (both mostly wait on the network).
pub fn base(cx: &Context) -> Result<Based> {
    let p = cx.profile();
    let pinned = &cx.checked.images;
    // The client's configuration is checked before either starts.
    let blobs = BlobCache::open(&cx.opts.cache_dir)?;
    let client = if pinned.is_empty() {
        None
    } else {
        Some(images::client(&cx.opts.registry_mirrors)?)
    };
    let bst = cx.base_stage();
    let rootfs_path = cx.work.0.join("rootfs");
    let (fetched, bo) = std::thread::scope(|s| {
        let pulls = client.as_ref().map(|c| {
            let (blobs, progress) = (&blobs, &cx.progress);
            s.spawn(move || {
                let st = progress.stage(
                    "images",
                    &format!("{} pinned container images", pinned.len()),
                );
                let f = images::fetch(pinned, blobs, c, progress)?;
                st.done(&format!("{} images in the cache", f.len()));
                Ok::<_, Error>(f)
            })
        });
        let st = cx.progress.stage("base", &st_base_summary(p));
        let base_done = std::sync::atomic::AtomicBool::new(false);
        let (store, summary) = (cx.cache.store(), st_base_summary(p));
        let bo = std::thread::scope(|w| {
            w.spawn(|| watch_base(store, &st, &summary, &base_done));
            let bo = super::base::run(&bst, &cx.cache, &rootfs_path);
            base_done.store(true, std::sync::atomic::Ordering::Relaxed);
            bo
        });
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
    let base_out = bo.rootfs;
    Ok(Based(Tree {
        root: Rootfs::open(&base_out.path)?,
        prov: Provenance::default(),
        base_out,
        resolved: bo.resolved,
        pulled: (blobs, fetched),
        applied: Default::default(),
        units_done: Default::default(),
        baked: vec![],
    }))
}

/// What the base stage's spinner says before mmdebstrap reports anything.
fn st_base_summary(p: &crate::profile::Profile) -> String {
    format!(
        "mmdebstrap {} ({} packages requested)",
        p.base.suite,
        p.base.packages.len()
    )
}

/// While mmdebstrap runs (a minute or more on a cold cache), count in this build's
/// temporary base tree the .debs fetched and the packages unpacked, once a second, and
/// show them on the stage's spinner.
fn watch_base(
    store: &Path,
    st: &progress::Stage,
    summary: &str,
    done: &std::sync::atomic::AtomicBool,
) {
    let prefix = format!(".tmp-{}-base-", std::process::id());
    let count = |dir: &Path, ext: &str| {
        std::fs::read_dir(dir).map_or(0, |rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .count()
        })
    };
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let Ok(rd) = std::fs::read_dir(store.join("stages")) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let root = e.path().join("rootfs");
            let fetched = count(&root.join("var/cache/apt/archives"), "deb");
            let unpacked = count(&root.join("var/lib/dpkg/info"), "list");
            if fetched + unpacked > 0 {
                st.msg(&format!(
                    "{summary}: {fetched} .debs fetched, {unpacked} packages unpacked"
                ));
            }
        }
    }
}

/// Host name, fstab, network, first-boot SSH keys, root growth.
pub fn customize(cx: &Context, Based(mut t): Based) -> Result<Customized> {
    let st = cx
        .progress
        .stage("customize", "hostname, fstab, network, first-boot units");
    let c = customize::run(&t.root, cx.profile(), &cx.ids)?;
    t.prov.record_all(&c.paths, "module customize");
    st.done(&format!("{} paths", c.paths.len()));
    Ok(Customized(t))
}

/// How a hardening module's written path names its origin: a plain path says only
/// "harden"; a `(path, module)` pair names the module.
trait HardenWrite {
    fn origin(&self) -> (&str, String);
}

impl HardenWrite for String {
    fn origin(&self) -> (&str, String) {
        (self, "module harden".to_string())
    }
}

impl HardenWrite for (String, &'static str) {
    fn origin(&self) -> (&str, String) {
        (&self.0, format!("module {}", self.1))
    }
}

/// The profile's hardening modules (users, ssh, firewall, …), when it declares any.
pub fn harden(cx: &Context, Customized(mut t): Customized) -> Result<Hardened> {
    let plan = &cx.checked.plan;
    if !plan.is_empty() {
        let st = cx.progress.stage(
            "harden",
            "users, ssh, firewall, fail2ban, sysctl, docker, updates, swap, …",
        );
        let written = harden::apply(&t.root, plan)?;
        for w in &written {
            let (path, by) = w.origin();
            t.prov.record(path, by);
        }
        st.done(&format!("{} paths", written.len()));
    }
    Ok(Hardened(t))
}

/// The profile's overlays, in order.
pub fn overlays(cx: &Context, Hardened(mut t): Hardened) -> Result<Overlaid> {
    let ovs = &cx.checked.overlays;
    let st = cx
        .progress
        .stage("overlays", &format!("{} overlays", ovs.len()));
    t.applied = overlays::apply(&t.root, ovs, &mut t.prov)?;
    st.done(&format!("{} paths", t.applied.paths.len()));
    Ok(Overlaid(t))
}

/// The profile's own units: installed, checked, enabled, masked.
pub fn units(cx: &Context, Overlaid(mut t): Overlaid) -> Result<UnitsInstalled> {
    let u = &cx.profile().units;
    let st = cx.progress.stage(
        "units",
        &format!("{} installed, {} enabled", u.install.len(), u.enable.len()),
    );
    t.units_done = units::apply(&t.root, &cx.checked.loaded, &mut t.prov)?;
    st.done(&t.units_done.verify);
    Ok(UnitsInstalled(t))
}

/// The secret slots' table, first-boot unit, script and drop-ins (never a value); each
/// slot's destination is recorded as filled at first boot.
pub fn secrets(cx: &Context, UnitsInstalled(mut t): UnitsInstalled) -> Result<SecretsInstalled> {
    let p = cx.profile();
    let st = cx
        .progress
        .stage("secrets", "secret slots (declared only), first-boot unit");
    let sp = secrets::install(&t.root, p)?;
    t.prov.record_all(&sp, "module secrets");
    for (file, by) in secrets::destinations(&p.secrets) {
        t.prov.record(&file, by);
    }
    st.done(&format!("{} slots, {} paths", p.secrets.len(), sp.len()));
    Ok(SecretsInstalled(t))
}

/// The pulled container images, as archives the first boot loads.
pub fn images(cx: &Context, SecretsInstalled(mut t): SecretsInstalled) -> Result<ImagesBaked> {
    let (blobs, fetched) = &t.pulled;
    if fetched.is_empty() {
        return Ok(ImagesBaked(t));
    }
    let st = cx.progress.stage(
        "bake",
        &format!(
            "{} container images as archives for the first boot",
            fetched.len()
        ),
    );
    t.baked = images::bake(&t.root, blobs, fetched, &mut t.prov)?;
    let bytes: u64 = t.baked.iter().map(|b| b.bytes).sum();
    st.done(&format!(
        "{} images, {} MiB of archives",
        t.baked.len(),
        bytes >> 20
    ));
    Ok(ImagesBaked(t))
}

/// Node identity, host keys, caches and logs out of the tree; the file list and what
/// `verify` should expect are taken from the final tree.
pub fn scrub(cx: &Context, ImagesBaked(mut t): ImagesBaked) -> Result<Scrubbed> {
    let st = cx
        .progress
        .stage("scrub", "machine-id, host keys, caches, logs");
    let s = scrub::run(&t.root)?;
    let caches = scrub::scrub_caches(&t.root)?;
    for gone in s.removed.iter().chain(&caches) {
        t.prov.forget(gone.trim_end_matches("/*"));
    }
    for (path, by) in &s.emptied {
        t.prov.record(path, by.clone());
    }
    st.done(&format!(
        "{} entries removed",
        s.removed.len() + caches.len()
    ));
    let files = files::file_list(&t.root)?;
    let expect = expect::expectations(
        cx.profile(),
        &t.root,
        &files,
        &[
            ("customize", customize::NODE_LOCAL),
            ("scrub", scrub::NODE_LOCAL),
            ("repro", scrub::CACHES_NODE_LOCAL),
            ("secrets", secrets::NODE_LOCAL),
        ],
    );
    Ok(Scrubbed {
        tree: t,
        files,
        expect,
    })
}

/// GPT, ext4, ESP and GRUB into a raw disk in the staging directory; the tree is freed.
pub fn assemble(cx: &Context, s: Scrubbed) -> Result<Assembled> {
    let name = &cx.name;
    let p = cx.profile();
    let staging = Staging::new(&cx.target)?;
    let raw = staging.path().join(format!("{name}.raw"));
    let st = cx
        .progress
        .stage("assemble", "GPT, ext4, ESP, GRUB (BIOS + UEFI)");
    let input = AssembleInput {
        rootfs: &s.tree.root,
        image: &p.image,
        title: format!("Ubuntu 24.04 LTS (clawimg {name})"),
        ids: cx.ids,
        work: cx.work.0.clone(),
    };
    let asm = assemble::run(&input, &raw)?;
    let mut listed = s.files;
    files::merge(&mut listed, asm.files.clone());
    files::write_file_list(&listed, staging.path())?;
    st.done(&format!("{} MiB disk", asm.layout.disk_bytes >> 20));
    // The tree is no longer needed; free the space while the image is read.
    let Tree {
        root,
        prov,
        base_out,
        resolved,
        pulled: _,
        applied,
        units_done,
        baked,
    } = s.tree;
    drop(root);
    Ok(Assembled {
        staging,
        raw,
        asm,
        report: Report {
            prov,
            base_out,
            resolved,
            applied,
            units_done,
            baked,
        },
        expect: s.expect,
    })
}

fn sha256_file(p: &Path, bar: &indicatif::ProgressBar) -> Result<String> {
    bmap::sha256_sparse(p, |n| bar.inc(n))
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

/// The finished filesystem, not the tree, is audited: what ships is what is checked. The
/// qcow2, both checksums and the block map are made from the raw image at the same time;
/// a finding returns before anything is committed (the staging directory is dropped).
pub fn outputs(cx: &Context, a: Assembled) -> Result<Outputs> {
    let name = &cx.name;
    let p = cx.profile();
    let raw = &a.raw;
    let rootfs_path = &a.report.base_out.path;
    let st = cx.progress.stage(
        "outputs",
        "qcow2 + sha256 + block map (alongside the audit)",
    );
    let qcow = a.staging.path().join(format!("{name}.qcow2"));
    // The last build of this profile lends its compressed clusters where the raw bytes
    // are unchanged (a one-file change rewrites a few MiB of a 1 GiB disk).
    let previous =
        reuse::previous(&cx.cache, name).and_then(|(r, q)| qcow2::Previous::open(&r, &q));
    let bar = cx.progress.bytes("sha256", a.asm.layout.disk_bytes);
    let qbar = cx.progress.bytes("qcow2", a.asm.layout.disk_bytes);
    let (report, raw_sum, conv, map) = std::thread::scope(|s| {
        let conv = s.spawn(|| {
            let stats =
                qcow2::convert(raw, &qcow, p.image.qcow2_compress, previous.as_ref(), &qbar)?;
            Ok::<_, Error>((
                stats,
                sha256_file(&qcow, &indicatif::ProgressBar::hidden())?,
            ))
        });
        let sum = s.spawn(|| sha256_file(raw, &bar));
        let map = s.spawn(|| bmap::compute(raw));
        s.spawn(|| std::fs::remove_dir_all(rootfs_path));
        let audit_st = cx.progress.stage(
            "audit",
            "no keys, tokens or node state in the root filesystem, ESP and image layers",
        );
        let report = at_low_priority(|| audit::audit_image(raw, None));
        audit_st.done(&match &report {
            Ok(r) if r.skipped.is_empty() => format!(
                "{} findings, {} files scanned",
                r.findings.len(),
                r.files_scanned
            ),
            Ok(r) => format!(
                "{} findings, {} files scanned; not scanned:\n{}",
                r.findings.len(),
                r.files_scanned,
                r.render_skipped()
            ),
            Err(_) => "failed".into(),
        });
        (report, sum.join(), conv.join(), map.join())
    });
    bar.finish_and_clear();
    qbar.finish_and_clear();
    let report = report?;
    if !report.findings.is_empty() {
        return Err(Error::failed(format!(
            "audit: the image must not ship these ({} findings); nothing was written to {}:\n{}",
            report.findings.len(),
            cx.target.display(),
            report.render()
        )));
    }
    let panicked = |what: &str| Error::failed(format!("{what} thread panicked"));
    let raw_sum = raw_sum.map_err(|_| panicked("sha256"))??;
    let (qstats, qcow_sum) = conv.map_err(|_| panicked("qcow2 conversion"))??;
    // The block map lets `flash` send only allocated ranges.
    bmap::write(raw, &map.map_err(|_| panicked("block map"))??)?;
    Ok(Outputs {
        assembled: a,
        qcow,
        raw_sum,
        qcow_sum,
        qstats,
        stage: st,
    })
}
