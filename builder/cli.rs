//! Command line interface.

use crate::blobcache::BlobCache;
use crate::build::{self, BuildOptions};
use crate::error::{Error, Result};
use crate::harness::{self, TestRun};
use crate::manifest::Manifest;
use crate::probes::{Expect, Probe};
use crate::progress::Progress;
use crate::qemu::{Accel, DiskBus, Firmware};
use crate::{exec, images, profile, tools};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// clawimg builds immutable, reproducible Ubuntu 24.04 disk images (raw + qcow2, BIOS and
/// UEFI) from declarative profiles, and proves them by booting them in QEMU.
#[derive(Parser, Debug)]
#[command(
    name = "clawimg",
    version,
    after_help = "Examples:\n  clawimg check base\n  clawimg build base\n  clawimg test out/base/base.raw\n  clawimg inspect out/base"
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// Directory holding the profiles.
    #[arg(
        long,
        global = true,
        default_value = "profiles",
        env = "CLAWIMG_PROFILES"
    )]
    profiles_dir: PathBuf,
    /// Output directory; each image goes to OUT/PROFILE/.
    #[arg(long, global = true, default_value = "out", env = "CLAWIMG_OUT")]
    out: PathBuf,
    /// Cache and scratch directory [default: $XDG_CACHE_HOME/clawimg].
    #[arg(long, global = true, env = "CLAWIMG_CACHE")]
    cache_dir: Option<PathBuf>,
    /// No progress output.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print every external command and its output, and per-tool timings.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Container registry mirror HOST=URL (repeatable; HOST `*` = every registry; the URL
    /// may end in a path prefix). Requests for HOST go only to the mirror.
    #[arg(
        long = "registry-mirror",
        global = true,
        value_name = "HOST=URL",
        env = "CLAWIMG_REGISTRY_MIRROR",
        value_delimiter = ','
    )]
    registry_mirrors: Vec<String>,
}

#[derive(Args, Debug, Clone)]
struct ProfileArgs {
    /// Profile name (profiles/NAME.toml) or path to a .toml file.
    profile: String,
    /// Override a profile variable: --var key=value (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    vars: Vec<String>,
    /// Package mirror for mmdebstrap (URL or sources line); default: the tool's own choice.
    #[arg(long, env = "CLAWIMG_MIRROR")]
    mirror: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build PROFILE into OUT/PROFILE/ (raw, qcow2, manifest.json, SHA256SUMS).
    ///
    /// Needs root (mmdebstrap in root mode). Nothing is written to OUT before the profile,
    /// keyring and host tools pass their checks; the previous output stays in place until the
    /// new one is complete.
    #[command(
        after_help = "Examples:\n  clawimg build base\n  clawimg build test --var hostname=lab1\n  CLAWIMG_MIRROR=http://mirror.example/ubuntu clawimg build base"
    )]
    Build(ProfileArgs),
    /// Validate PROFILE (schema, inheritance, keyring pin, host tools) without building.
    #[command(
        after_help = "Examples:\n  clawimg check base\n  clawimg check ./my-profile.toml --var ssh_port=2222"
    )]
    Check(ProfileArgs),
    /// Boot an image (or build PROFILE first) in QEMU and run the probes over SSH.
    ///
    /// The image is never modified: QEMU writes to a throwaway overlay. A fresh SSH key pair
    /// is made per run; its public half reaches the guest as the systemd credential
    /// `ssh.authorized_keys.root` (SMBIOS), so no key is baked into the image.
    #[command(
        after_help = "Examples:\n  clawimg test out/base/base.raw\n  clawimg test out/test --firmware uefi --disk nvme\n  clawimg test out/test/test.qcow2 --resize 20GiB\n  clawimg test test            # build profiles/test.toml, then boot it"
    )]
    Test(TestArgs),
    /// Resolve the tags of PROFILE's container images and pin their digests in images/*.toml.
    #[command(
        after_help = "Examples:\n  clawimg lock production\n  clawimg lock test --registry-mirror '*=http://127.0.0.1:5000'"
    )]
    Lock(ProfileArgs),
    /// Pinned container images: pull into the cache, import an OCI archive.
    #[command(subcommand)]
    Images(ImagesCmd),
    /// Print the manifest of a built image (directory, image file or manifest.json).
    #[command(
        after_help = "Examples:\n  clawimg inspect out/base\n  clawimg inspect out/base/base.qcow2 --json"
    )]
    Inspect {
        /// Image directory, image file or manifest.json.
        image: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ImagesCmd {
    /// Pull PROFILE's pinned images into the blob cache (what `build` does first).
    #[command(
        after_help = "Examples:\n  clawimg images pull production\n  CLAWIMG_REGISTRY_MIRROR=ghcr.io=https://mirror.example clawimg images pull production"
    )]
    Pull(ProfileArgs),
    /// Seed the blob cache from an OCI archive or layout directory, offline.
    #[command(
        after_help = "Examples:\n  skopeo copy --all docker://REF oci-archive:app.tar   # on a connected machine\n  clawimg images import app.tar"
    )]
    Import {
        /// OCI archive (tar of an OCI image layout) or OCI layout directory.
        archive: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
struct TestArgs {
    /// Image file, image directory (OUT/PROFILE) or profile name.
    target: String,
    /// Firmware(s) to boot with.
    #[arg(long, value_enum, default_values_t = [Firmware::Bios, Firmware::Uefi])]
    firmware: Vec<Firmware>,
    /// How the disk is attached.
    #[arg(long, value_enum, default_value_t = DiskBus::Virtio)]
    disk: DiskBus,
    /// Enlarge the virtual disk first (e.g. 20GiB) and check that the root grew.
    #[arg(long, value_name = "SIZE")]
    resize: Option<String>,
    /// Accelerator: auto uses KVM only when it can create a VM here.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    accel: Accel,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1536)]
    memory: u32,
    /// Seconds to wait for SSH.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Extra probe: a shell command that must exit 0 (repeatable).
    #[arg(long = "probe", value_name = "COMMAND")]
    probes: Vec<String>,
    /// Override a profile variable when TARGET is a profile.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    vars: Vec<String>,
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    exec::set_verbose(cli.global.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn options(g: &Global, p: &ProfileArgs) -> BuildOptions {
    BuildOptions {
        profile: p.profile.clone(),
        profiles_dir: g.profiles_dir.clone(),
        out_dir: g.out.clone(),
        cache_dir: g.cache_dir.clone().unwrap_or_else(build::default_cache_dir),
        vars: p.vars.clone(),
        mirror: p.mirror.clone().filter(|m| !m.is_empty()),
        quiet: g.quiet,
        registry_mirrors: g.registry_mirrors.clone(),
    }
}

fn run(cli: Cli) -> Result<i32> {
    let g = cli.global;
    match cli.command {
        Cmd::Check(p) => {
            let c = build::check(&options(&g, &p))?;
            let found = tools::check(tools::BUILD)?;
            println!(
                "profile {} ok ({})",
                c.loaded.name,
                c.loaded
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" <- ")
            );
            println!("  input hash  {}", c.input_hash);
            println!("  keyring     {} (sha256 pinned)", c.keyring.display());
            println!("  packages    {}", c.loaded.profile.base.packages.join(" "));
            for i in &c.images {
                println!(
                    "  image       {} {}@{} ({})",
                    i.name, i.reference, i.digest, i.platform
                );
            }
            if g.verbose {
                for (t, v) in found {
                    println!("  tool        {t}: {v}");
                }
            }
            Ok(0)
        }
        Cmd::Build(p) => {
            let r = build::build(&options(&g, &p))?;
            print_summary(&r);
            Ok(0)
        }
        Cmd::Inspect { image, json } => {
            let m = Manifest::read(&image)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
            } else {
                println!("profile      {}", m.profile);
                println!("input hash   {}", m.input_hash);
                println!("clawimg      {}", m.tool_version);
                println!("suite        {}", m.suite);
                println!("cmdline      {}", m.kernel_cmdline);
                for a in &m.artifacts {
                    println!(
                        "artifact     {:<24} {:>6} MiB  sha256:{}",
                        a.file,
                        a.bytes >> 20,
                        a.sha256
                    );
                }
                if let Some(parts) = m.partitions["partitions"].as_array() {
                    for p in parts {
                        println!(
                            "partition    {} {:<11} {:>6} MiB  {}",
                            p["number"],
                            p["name"].as_str().unwrap_or(""),
                            p["bytes"].as_u64().unwrap_or(0) >> 20,
                            p["guid"].as_str().unwrap_or("")
                        );
                    }
                }
                if let Some(imgs) = m.extra.get("images").and_then(|v| v.as_array()) {
                    for i in imgs {
                        let f = |k: &str| i[k].as_str().unwrap_or("").to_string();
                        println!(
                            "image        {:<16} {}@{} {:>6} KiB",
                            f("name"),
                            f("reference"),
                            f("digest"),
                            i["bytes"].as_u64().unwrap_or(0) >> 10
                        );
                    }
                }
                println!("packages     {}", m.packages.len());
                for p in &m.packages {
                    println!("  {} {}", p.name, p.version);
                }
            }
            Ok(0)
        }
        Cmd::Test(t) => test(&g, t),
        Cmd::Lock(p) => {
            let loaded = profile::load(&p.profile, &g.profiles_dir, &p.vars)?;
            let client = images::client(&g.registry_mirrors)?;
            let locked = images::lock(&loaded, &client)?;
            for l in &locked {
                if l.old == l.new {
                    println!("unchanged  {:<16} {}@{}", l.name, l.reference, l.new);
                } else {
                    let old = if l.old.is_empty() { "(none)" } else { &l.old };
                    println!(
                        "changed    {:<16} {} {old} -> {}",
                        l.name, l.reference, l.new
                    );
                }
            }
            println!(
                "{} images, {} changed",
                locked.len(),
                locked.iter().filter(|l| l.old != l.new).count()
            );
            Ok(0)
        }
        Cmd::Images(ImagesCmd::Pull(p)) => {
            let opts = options(&g, &p);
            let c = build::check(&opts)?;
            let client = images::client(&g.registry_mirrors)?;
            let cache = BlobCache::open(&opts.cache_dir)?;
            let fetched = images::fetch(&c.images, &cache, &client, &Progress::new(g.quiet))?;
            for f in &fetched {
                let bytes: u64 = f.layers.iter().map(|l| l.size).sum();
                println!(
                    "{:<16} {}@{} -> image id {} ({} layers, {} bytes)",
                    f.pinned.name,
                    f.pinned.reference,
                    f.manifest.digest,
                    f.config.digest,
                    f.layers.len(),
                    bytes
                );
            }
            println!(
                "{} images in {}, {} registry requests",
                fetched.len(),
                opts.cache_dir.display(),
                client.requests()
            );
            Ok(0)
        }
        Cmd::Images(ImagesCmd::Import { archive }) => {
            let cache_dir = g.cache_dir.clone().unwrap_or_else(build::default_cache_dir);
            let r = BlobCache::open(&cache_dir)?.import(&archive)?;
            for (name, d) in &r.images {
                println!(
                    "{:<40} {d}",
                    if name.is_empty() { "(unnamed)" } else { name }
                );
            }
            println!(
                "{} blobs verified, {} new, into {}",
                r.blobs,
                r.new_blobs,
                cache_dir.display()
            );
            Ok(0)
        }
    }
}

fn print_summary(r: &build::BuildResult) {
    let m = &r.manifest;
    println!(
        "built {} in {:.1}s -> {}",
        m.profile,
        r.total.as_secs_f64(),
        r.dir.display()
    );
    for a in &m.artifacts {
        println!(
            "  {:<20} {:>8.1} MiB  sha256:{}",
            a.file,
            a.bytes as f64 / 1048576.0,
            a.sha256
        );
    }
    println!("  packages             {}", m.packages.len());
    println!("  input hash           {}", m.input_hash);
    for (name, d) in &r.timings {
        println!("  {:<20} {:>6.1}s", name, d.as_secs_f64());
    }
}

/// Find the image file for TARGET: a file, an output directory, or a profile to build.
fn resolve_image(g: &Global, t: &TestArgs) -> Result<PathBuf> {
    let p = Path::new(&t.target);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    if p.is_dir() {
        let m = Manifest::read(p)?;
        let raw = m
            .artifacts
            .iter()
            .find(|a| a.file.ends_with(".raw"))
            .map(|a| p.join(&a.file));
        return raw
            .ok_or_else(|| Error::config(format!("{}: manifest lists no raw image", p.display())));
    }
    if profile::resolve(&t.target, &g.profiles_dir).is_file() {
        let opts = options(
            g,
            &ProfileArgs {
                profile: t.target.clone(),
                vars: t.vars.clone(),
                mirror: std::env::var("CLAWIMG_MIRROR").ok(),
            },
        );
        let r = build::build(&opts)?;
        print_summary(&r);
        return Ok(r.dir.join(format!("{}.raw", r.manifest.profile)));
    }
    Err(Error::config(format!(
        "test target `{}` is neither an image file, an image directory, nor a profile in {}",
        t.target,
        g.profiles_dir.display()
    )))
}

fn test(g: &Global, t: TestArgs) -> Result<i32> {
    tools::check(tools::TEST)?;
    let disk_size =
        match &t.resize {
            Some(s) => Some(profile::parse_size(s).ok_or_else(|| {
                Error::config(format!("--resize {s}: expected a size like 20GiB"))
            })?),
            None => None,
        };
    let image = resolve_image(g, &t)?;
    let extra: Vec<Probe> = t
        .probes
        .iter()
        .map(|c| Probe::new(c, c, Expect::Success))
        .collect();
    let mut all_ok = true;
    for fw in &t.firmware {
        let run = TestRun {
            image: image.clone(),
            firmware: *fw,
            bus: t.disk,
            disk_size,
            accel: t.accel,
            memory_mib: t.memory,
            ssh_timeout: Duration::from_secs(t.timeout),
            extra: extra.clone(),
        };
        let report = harness::run(&run)?;
        println!("{}", crate::probes::table(&report.title, &report.outcomes));
        println!("  time to SSH: {:.1}s\n", report.time_to_ssh.as_secs_f64());
        all_ok &= report.passed();
    }
    Ok(if all_ok { 0 } else { 1 })
}
