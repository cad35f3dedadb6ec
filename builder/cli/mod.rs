//! Command line interface.

use crate::build::images::blobs::BlobCache;
use crate::build::{self, BuildOptions};
use crate::error::{Error, Result};
use crate::image::manifest::Manifest;
use crate::image::probes::{Expect, Probe};
use crate::ops::test::harness::{self, TestRun};
use crate::ops::test::qemu::{Accel, DiskBus, Firmware};
use crate::support::progress::Progress;
use crate::{build::images, profile, support::exec, support::tools};
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
    /// At the end of a build, print each stage and each external tool call with its duration.
    #[arg(long, global = true)]
    timings: bool,
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
    /// Override any profile key after merging: --set dotted.key=TOML_VALUE (repeatable),
    /// e.g. --set ssh.port=2222 or --set 'users.admin.authorized_keys=["ssh-ed25519 AAAA… me"]'.
    #[arg(long = "set", value_name = "KEY=TOML")]
    sets: Vec<String>,
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
    /// Pin every package of PROFILE (exact version + .deb sha256) into PROFILE.lock, and
    /// the digests of its container images into images/*.toml.
    ///
    /// Resolves against the archive with a fresh mmdebstrap run (needs root); the .debs are
    /// kept in the cache so a build from the lock needs no network. `build` then installs
    /// exactly the locked versions and checks each .deb's sha256.
    #[command(
        after_help = "Examples:\n  clawimg lock test\n  clawimg lock test --update   # shows name old -> new\n  clawimg lock production --images-only --registry-mirror '*=http://127.0.0.1:5000'"
    )]
    Lock {
        #[command(flatten)]
        p: ProfileArgs,
        /// Re-resolve an existing lock and print what changed.
        #[arg(long)]
        update: bool,
        /// Only pin the container image digests in images/*.toml (no package resolution).
        #[arg(long, conflicts_with = "packages_only")]
        images_only: bool,
        /// Only pin the packages into PROFILE.lock.
        #[arg(long)]
        packages_only: bool,
    },
    /// Explain the differences between two builds: artifacts, partitions, packages, files.
    ///
    /// Exit status 0 when identical, 1 when they differ.
    #[command(after_help = "Examples:\n  clawimg diff out-a/test out-b/test")]
    Diff {
        /// First build (output directory, manifest or image file).
        a: PathBuf,
        /// Second build.
        b: PathBuf,
        /// Show at most this many differing files.
        #[arg(long, default_value_t = 200)]
        max_files: usize,
    },
    /// Inspect or trim the stage cache.
    #[command(
        subcommand,
        after_help = "Examples:\n  clawimg cache du\n  clawimg cache gc --keep 2"
    )]
    Cache(CacheCmd),
    /// Write an image to a file, a block device, or a device on a rescue system over SSH.
    ///
    /// Only the allocated ranges (the block map NAME.bmap.json beside the image) are written,
    /// zstd-compressed on the wire for SSH, then read back and compared by sha256. A target
    /// that is mounted, holds the running root or is smaller than the image is refused before
    /// anything is written; block devices need confirmation or --yes.
    #[command(
        after_help = "Examples:\n  clawimg flash out/production/production.raw --to /dev/sdb\n  clawimg flash out/production --to ssh://root@203.0.113.7/dev/sda --yes\n  clawimg flash out/test/test.raw --to /var/tmp/node1.img\n\nSSH options (identity file, known hosts) come from ~/.ssh/config or CLAWIMG_SSH_OPTS."
    )]
    Flash {
        /// Raw image file or image directory.
        image: PathBuf,
        /// Target: a file path, /dev/DEVICE, or ssh://[user@]host[:port]/dev/DEVICE.
        #[arg(long)]
        to: String,
        /// Do not ask before overwriting a block device.
        #[arg(long)]
        yes: bool,
        /// Seal this node's secrets (TOML, mode 0600) into the seed partition of what is
        /// written; the image itself is not changed.
        #[arg(long, value_name = "FILE", requires = "node")]
        secrets: Option<PathBuf>,
        /// Node name for --secrets (becomes the host name).
        #[arg(long, requires = "secrets")]
        node: Option<String>,
    },
    /// Upload an image to an OpenStack cloud (Glance v2) or S3-compatible object storage.
    ///
    /// Glance: Keystone v3 password auth from clouds.yaml (--cloud / OS_CLOUD) or the OS_*
    /// variables; the image gets disk/container format, hw_firmware_type, os_distro,
    /// os_version and clawimg_sha256; the command waits for `active`, checks Glance's
    /// checksum and hash against the file and prints the image id. An active image with the
    /// same name and sha256 is reused: nothing is uploaded twice.
    ///
    /// S3: SigV4, multipart with parallel parts, each part checked by MD5, the object's
    /// sha256 stored as x-amz-meta-sha256 and checked with HEAD afterwards. Credentials come
    /// from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials (AWS_PROFILE). An
    /// interrupted upload resumes where it stopped when run again.
    #[command(
        after_help = "Examples:\n  OS_CLOUD=ovh clawimg upload out/production --to glance\n  clawimg upload out/production --to glance --cloud ovh --name openclaw-2026-11 --firmware bios\n  clawimg upload out/production/production.raw --to glance --format raw\n  clawimg upload out/production --to s3://images/openclaw/production.qcow2 --endpoint https://s3.gra.example --region gra\n\nPasswords and keys are read from the environment or the config files, never from the command line."
    )]
    Upload(UploadArgs),
    /// Compare a running node with the image it was flashed from: packages and versions,
    /// files under /etc, /usr and /opt (hashed on the node), enabled units, container images.
    ///
    /// Paths the image declares node-local (host name, machine-id, SSH host keys, secret
    /// slots, ...) are skipped. Exit status: 0 no drift, 1 drift, 2 usage or unreachable node,
    /// 3 missing tool. One SSH connection; a user other than root needs passwordless sudo.
    #[command(
        after_help = "Examples:\n  clawimg verify out/production --against ssh://root@standby.example\n  clawimg verify out/production --against ssh://adminclaw@203.0.113.7:222\n\nSSH options (identity file, known hosts) come from ~/.ssh/config or CLAWIMG_SSH_OPTS."
    )]
    Verify {
        /// Image directory, image file or manifest.json (files.tsv must be beside it).
        image: PathBuf,
        /// The node: ssh://[user@]host[:port].
        #[arg(long, value_name = "ssh://[USER@]HOST[:PORT]")]
        against: String,
    },
    /// Make a node's disk: copy IMAGE and write the secrets and node name into its seed
    /// partition (the root partition stays byte-identical). Checks everything first.
    #[command(
        after_help = "Examples:\n  clawimg seal out/production --secrets node1.toml --node node1 -o node1.raw\n\nThe secrets file must be mode 0600; see `clawimg secrets template PROFILE`."
    )]
    Seal(SealArgs),
    /// Secret slot helpers: an empty secrets file, or a user-data bundle.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Scan the root filesystem of a built image for keys, tokens, node state and secrets.
    ///
    /// Exit 0 when clean, 1 with one line per finding (path and rule, never the value).
    #[command(
        after_help = "Examples:\n  clawimg audit out/production\n  clawimg audit node1.raw --secrets node1.toml"
    )]
    Audit {
        /// Raw image file or image directory.
        image: PathBuf,
        /// Also report files containing a value from this secrets file.
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
    },
    /// Pinned container images: pull into the cache, import an OCI archive.
    #[command(subcommand)]
    Images(ImagesCmd),
    /// Print the manifest of a built image (directory, image file or manifest.json).
    #[command(
        after_help = "Examples:\n  clawimg inspect out/base\n  clawimg inspect out/base/base.qcow2 --json\n  clawimg inspect out/production --explain /opt/openclaw/docker-compose.yml"
    )]
    Inspect {
        /// Image directory, image file or manifest.json.
        image: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        /// Say which overlay or module produced PATH in the image.
        #[arg(long, value_name = "PATH")]
        explain: Option<String>,
    },
}

#[derive(Args, Debug, Clone)]
struct UploadArgs {
    /// Image file (raw or qcow2) or image directory (OUT/PROFILE).
    image: PathBuf,
    /// Destination: `glance`, or s3://BUCKET/KEY.
    #[arg(long, value_name = "PROVIDER")]
    to: String,
    /// Which image of a directory to upload, or the expected format of a file
    /// [default: qcow2 for a directory].
    #[arg(long, value_enum)]
    format: Option<crate::ops::upload::Format>,
    /// Glance: entry of clouds.yaml [default: $OS_CLOUD, else the OS_* variables].
    #[arg(long, value_name = "NAME")]
    cloud: Option<String>,
    /// Glance: image name [default: PROFILE-SHA256PREFIX].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Glance: hw_firmware_type property. The image boots with both; bios is what every
    /// Nova host can do, uefi needs OVMF on the compute nodes.
    #[arg(long, value_enum, default_value_t = crate::ops::upload::BootFirmware::Bios)]
    firmware: crate::ops::upload::BootFirmware,
    /// Glance: seconds to wait for the image to become active.
    #[arg(long, default_value_t = 1800, value_name = "SECS")]
    timeout: u64,
    /// Service URL: the image endpoint for Glance (instead of the catalog's; also
    /// OS_IMAGE_URL), the S3 endpoint (also AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// S3: signing region [default: $AWS_REGION, else us-east-1].
    #[arg(long, value_name = "R")]
    region: Option<String>,
    /// S3: part size in MiB (at least 5).
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    part_size: u64,
    /// S3: parts uploaded in parallel.
    #[arg(long, default_value_t = 4, value_name = "N")]
    jobs: usize,
}

#[derive(Args, Debug, Clone)]
struct SealArgs {
    /// Raw image file or image directory (OUT/PROFILE).
    image: PathBuf,
    /// Secrets file (TOML, mode 0600).
    #[arg(long, value_name = "FILE")]
    secrets: PathBuf,
    /// Node name: becomes the host name.
    #[arg(long, value_name = "NAME")]
    node: String,
    /// Output raw disk for this node (must not exist).
    #[arg(short, long, value_name = "NODE.raw")]
    output: PathBuf,
}

#[derive(Subcommand, Debug)]
enum SecretsCmd {
    /// Print an empty, documented secrets file for PROFILE.
    #[command(
        after_help = "Example:\n  clawimg secrets template production > node1.toml && chmod 600 node1.toml"
    )]
    Template {
        /// Profile name or path.
        profile: String,
    },
    /// Write the bundle for cloud-init NoCloud / config-drive user data (mode 0600).
    #[command(
        after_help = "Example:\n  clawimg secrets bundle out/production --secrets node1.toml --node node1 -o user-data"
    )]
    Bundle {
        /// Raw image file or image directory.
        image: PathBuf,
        /// Secrets file (TOML, mode 0600).
        #[arg(long, value_name = "FILE")]
        secrets: PathBuf,
        /// Node name (host name); optional for user data.
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// Output file (must not exist).
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CacheCmd {
    /// Size of each cache entry and of the .deb store.
    Du,
    /// Keep the N most recently used entries of each stage, remove the rest.
    Gc {
        /// Entries to keep per stage.
        #[arg(long, default_value_t = 2)]
        keep: usize,
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
    /// Override a profile key when TARGET is a profile: --set dotted.key=TOML_VALUE.
    #[arg(long = "set", value_name = "KEY=TOML")]
    sets: Vec<String>,
    /// Log in with this existing private key (public key at PATH.pub) instead of a throwaway one.
    #[arg(long, value_name = "PATH")]
    key: Option<PathBuf>,
    /// User to log in as; non-root users run root probes through sudo.
    #[arg(long, default_value = "root", value_name = "NAME")]
    ssh_user: String,
    /// Guest port sshd listens on (forwarded to a free port on 127.0.0.1).
    #[arg(long, default_value_t = 22, value_name = "N")]
    ssh_port: u16,
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
    exec::set_timings(cli.global.timings || cli.global.verbose);
    exec::epoch();
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
        sets: p.sets.clone(),
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
            println!("  lints       ok ({} acknowledged)", c.acknowledged.len());
            for f in &c.acknowledged {
                println!("  warning{f}");
            }
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
        Cmd::Inspect {
            image,
            json,
            explain,
        } => {
            let m = Manifest::read(&image)?;
            if let Some(path) = explain {
                println!(
                    "{}",
                    crate::image::provenance::Provenance::explain(&m.extra, &path)
                );
            } else if json {
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
                crate::image::declared::print_summary(&m);
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
        Cmd::Flash {
            image,
            to,
            yes,
            secrets,
            node,
        } => {
            let image = crate::ops::seal::raw_image(&image)?;
            let target = crate::ops::flash::parse_target(&to)?;
            // With secrets, the node's copy is sealed first (every secrets check runs there,
            // before the target is touched) in a private temp dir beside the image.
            let _sealed_dir;
            let image = match (secrets, node) {
                (Some(secrets), Some(node)) => {
                    let dir = tempfile::Builder::new()
                        .prefix(".clawimg-flash-")
                        .tempdir_in(image.parent().unwrap_or(Path::new(".")))
                        .map_err(|e| Error::failed(format!("temp dir beside the image: {e}")))?;
                    let req = crate::ops::seal::SealRequest {
                        image: image.clone(),
                        secrets,
                        node: node.clone(),
                        output: dir.path().join(format!("{node}.raw")),
                    };
                    let sealed = crate::ops::seal::seal(&req)?;
                    _sealed_dir = dir;
                    sealed
                }
                _ => image,
            };
            let o = crate::ops::flash::FlashOptions {
                image,
                target,
                yes,
                progress: crate::support::progress::Progress::new(g.quiet),
            };
            let r = crate::ops::flash::flash(&o)?;
            let secs = r.write_time.as_secs_f64().max(0.001);
            println!(
                "flashed {} ({} ranges, {:.1} MiB) to {to} in {secs:.1}s ({:.1} MiB/s)",
                o.image.display(),
                r.ranges,
                r.bytes as f64 / 1048576.0,
                r.bytes as f64 / 1048576.0 / secs
            );
            if let Some(w) = r.wire_bytes {
                println!("  on the wire: {:.1} MiB (zstd)", w as f64 / 1048576.0);
            }
            println!("  read-back verified: sha256 {}", r.readback_sha256);
            Ok(0)
        }
        Cmd::Upload(a) => {
            let o = crate::ops::upload::UploadOptions {
                target: crate::ops::upload::Target::parse(&a.to)?,
                image: a.image,
                format: a.format,
                name: a.name,
                cloud: a.cloud,
                endpoint: a.endpoint,
                region: a.region,
                firmware: a.firmware,
                part_size: a.part_size << 20,
                jobs: a.jobs,
                cache_dir: g.cache_dir.clone().unwrap_or_else(build::default_cache_dir),
                timeout: Duration::from_secs(a.timeout),
                quiet: g.quiet,
            };
            println!("{}", crate::ops::upload::upload(&o)?);
            Ok(0)
        }
        Cmd::Verify { image, against } => {
            let r = crate::ops::verify::verify(&image, &against)?;
            println!("verify {} against {against}", image.display());
            print!("{}", r.render());
            if r.drift.is_empty() {
                println!("no drift");
                Ok(0)
            } else {
                println!("drift: {} differences", r.drift.len());
                Ok(1)
            }
        }
        Cmd::Seal(a) => {
            let req = crate::ops::seal::SealRequest {
                image: a.image,
                secrets: a.secrets,
                node: a.node,
                output: a.output,
            };
            let out = crate::ops::seal::seal(&req)?;
            println!("sealed node {} -> {}", req.node, out.display());
            Ok(0)
        }
        Cmd::Secrets(SecretsCmd::Template { profile: name }) => {
            let l = profile::load(&name, &g.profiles_dir, &[])?;
            print!(
                "{}",
                crate::profile::secrets::template(&l.name, &l.profile.secrets)
            );
            Ok(0)
        }
        Cmd::Secrets(SecretsCmd::Bundle {
            image,
            secrets,
            node,
            output,
        }) => {
            crate::ops::seal::write_bundle(&image, &secrets, node.as_deref(), &output)?;
            println!("wrote {} (user data; mode 0600)", output.display());
            Ok(0)
        }
        Cmd::Audit { image, secrets } => {
            let raw = crate::ops::seal::raw_image(&image)?;
            let s = secrets
                .as_deref()
                .map(crate::profile::secrets::SecretsFile::load)
                .transpose()?;
            let r = crate::image::audit::audit_image(&raw, s.as_ref())?;
            if r.findings.is_empty() {
                println!(
                    "audit: {} clean ({} files scanned)",
                    raw.display(),
                    r.files_scanned
                );
                Ok(0)
            } else {
                println!(
                    "audit: {} findings in {}:\n{}",
                    r.findings.len(),
                    raw.display(),
                    r.render()
                );
                Ok(1)
            }
        }
        Cmd::Lock {
            p,
            update,
            images_only,
            packages_only,
        } => {
            if !packages_only {
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
                if images_only {
                    return Ok(0);
                }
            }
            let (l, path, changes) = crate::ops::lock::lock(&options(&g, &p), update)?;
            println!(
                "wrote {} ({} packages, SOURCE_DATE_EPOCH {})",
                path.display(),
                l.packages.len(),
                l.source_date_epoch
            );
            if changes.is_empty() {
                println!("  no changes");
            }
            for c in changes {
                println!("{c}");
            }
            Ok(0)
        }
        Cmd::Diff { a, b, max_files } => {
            let r = crate::ops::diff::compare(&a, &b, max_files)?;
            for l in &r.lines {
                println!("{l}");
            }
            Ok(if r.differs { 1 } else { 0 })
        }
        Cmd::Cache(c) => {
            let dir = g.cache_dir.clone().unwrap_or_else(build::default_cache_dir);
            match c {
                CacheCmd::Du => {
                    let cache = crate::support::cache::Cache::open(&dir)?;
                    let mut total = cache.debs_bytes();
                    for e in cache.entries()? {
                        println!("{:>10.1} MiB  {}", e.bytes as f64 / 1048576.0, e.name);
                        total += e.bytes;
                    }
                    println!("{:>10.1} MiB  debs/", cache.debs_bytes() as f64 / 1048576.0);
                    println!(
                        "{:>10.1} MiB  total ({})",
                        total as f64 / 1048576.0,
                        dir.display()
                    );
                }
                CacheCmd::Gc { keep } => {
                    let cache = crate::support::cache::Cache::open_exclusive(&dir)?;
                    let gone = cache.gc(keep)?;
                    let freed: u64 = gone.iter().map(|e| e.bytes).sum();
                    for e in &gone {
                        println!("removed {}", e.name);
                    }
                    println!(
                        "freed {:.1} MiB, kept {} entries",
                        freed as f64 / 1048576.0,
                        cache.entries()?.len()
                    );
                }
            }
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
    if exec::timings() {
        print!(
            "{}",
            crate::support::progress::report(&r.timings, &exec::calls(), r.total)
        );
    }
}

/// Find the image file for TARGET: a file, an output directory, or a profile to build.
fn resolve_image(g: &Global, t: &TestArgs) -> Result<PathBuf> {
    let p = Path::new(&t.target);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    if p.is_dir() {
        return crate::ops::seal::raw_image(p);
    }
    if profile::resolve(&t.target, &g.profiles_dir).is_file() {
        let opts = options(
            g,
            &ProfileArgs {
                profile: t.target.clone(),
                vars: t.vars.clone(),
                sets: t.sets.clone(),
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
            Some(s) => Some(crate::support::text::parse_size(s).ok_or_else(|| {
                Error::config(format!("--resize {s}: expected a size like 20GiB"))
            })?),
            None => None,
        };
    let image = resolve_image(g, &t)?;
    // The hardening probes follow from what the image's manifest says was declared.
    let manifest = Manifest::read(&image).ok();
    let mut extra: Vec<Probe> = manifest
        .as_ref()
        .and_then(|m| crate::build::harden::from_manifest(&m.extra))
        .map(|plan| crate::build::harden::probes(&plan))
        .unwrap_or_default();
    // What the image's manifest declares (units, timers, owners and modes) is probed too.
    if let Some(m) = &manifest {
        extra.extend(crate::image::declared::probes(m));
    }
    extra.extend(t.probes.iter().map(|c| Probe::new(c, c, Expect::Success)));
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
            key: t.key.clone(),
            ssh_user: t.ssh_user.clone(),
            ssh_port: t.ssh_port,
        };
        let report = harness::run(&run)?;
        println!(
            "{}",
            crate::image::probes::table(&report.title, &report.outcomes)
        );
        println!("  time to SSH: {:.1}s\n", report.time_to_ssh.as_secs_f64());
        all_ok &= report.passed();
    }
    Ok(if all_ok { 0 } else { 1 })
}
