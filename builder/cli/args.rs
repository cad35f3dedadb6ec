//! The command line: clap types for every command, flag and default.

use crate::ops::test::qemu::{Accel, DiskBus, Firmware};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    pub(super) global: Global,
    #[command(subcommand)]
    pub(super) command: Cmd,
}

#[derive(Args, Debug, Clone)]
pub(super) struct Global {
    /// Directory holding the profiles.
    #[arg(
        long,
        global = true,
        default_value = "profiles",
        env = "CLAWIMG_PROFILES"
    )]
    pub(super) profiles_dir: PathBuf,
    /// Output directory; each image goes to OUT/PROFILE/.
    #[arg(long, global = true, default_value = "out", env = "CLAWIMG_OUT")]
    pub(super) out: PathBuf,
    /// Cache and scratch directory [default: $XDG_CACHE_HOME/clawimg].
    #[arg(long, global = true, env = "CLAWIMG_CACHE")]
    pub(super) cache_dir: Option<PathBuf>,
    /// No progress output.
    #[arg(short, long, global = true)]
    pub(super) quiet: bool,
    /// Print every external command and its output, and per-tool timings.
    #[arg(short, long, global = true)]
    pub(super) verbose: bool,
    /// At the end of a build, print each stage and each external tool call with its duration.
    #[arg(long, global = true)]
    pub(super) timings: bool,
    /// Container registry mirror HOST=URL (repeatable; HOST `*` = every registry; the URL
    /// may end in a path prefix). Requests for HOST go only to the mirror.
    #[arg(
        long = "registry-mirror",
        global = true,
        value_name = "HOST=URL",
        env = "CLAWIMG_REGISTRY_MIRROR",
        value_delimiter = ','
    )]
    pub(super) registry_mirrors: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub(super) struct ProfileArgs {
    /// Profile name (profiles/NAME.toml) or path to a .toml file.
    pub(super) profile: String,
    /// Override a profile variable: --var key=value (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub(super) vars: Vec<String>,
    /// Override any profile key after merging: --set dotted.key=TOML_VALUE (repeatable),
    /// e.g. --set ssh.port=2222 or --set 'users.admin.authorized_keys=["ssh-ed25519 AAAA… me"]'.
    #[arg(long = "set", value_name = "KEY=TOML")]
    pub(super) sets: Vec<String>,
    /// Package mirror for mmdebstrap (URL or sources line); default: the tool's own choice.
    #[arg(long, env = "CLAWIMG_MIRROR")]
    pub(super) mirror: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(super) enum Cmd {
    /// Build PROFILE into OUT/PROFILE/ (raw, qcow2, manifest.json, SHA256SUMS).
    ///
    /// Needs root (mmdebstrap in root mode). Nothing is written to OUT before the profile,
    /// keyring and host tools pass their checks; the previous output stays in place until the
    /// new one is complete. Container images the profile bakes whose catalog entry has no
    /// digest yet are pinned first: the tag is resolved at the registry and the digest
    /// written into images/*.toml (one line each on stderr); `--locked` refuses instead.
    #[command(
        after_help = "Examples:\n  clawimg build base\n  clawimg build test --var hostname=lab1\n  clawimg build production --locked   # CI: the catalog must be pinned\n  CLAWIMG_MIRROR=http://mirror.example/ubuntu clawimg build base"
    )]
    Build {
        #[command(flatten)]
        p: ProfileArgs,
        /// Refuse catalog images without a digest (naming each) instead of pinning them
        /// into images/*.toml; for CI, where the catalog is committed.
        #[arg(long)]
        locked: bool,
        /// Print the summary as JSON on stdout (progress stays on stderr); on bad input,
        /// the problems as JSON (exit 2).
        #[arg(long)]
        json: bool,
    },
    /// Validate PROFILE (schema, inheritance, lints, templates, keyring pin, container
    /// pins, host tools) without building.
    ///
    /// Every problem is reported in one run, sorted by file and line; exit status 2 when
    /// there is any.
    #[command(
        after_help = "Examples:\n  clawimg check base\n  clawimg check ./my-profile.toml --var ssh_port=2222\n  clawimg check production --json | jq '.problems[].message'"
    )]
    Check {
        #[command(flatten)]
        p: ProfileArgs,
        /// Print the result as JSON on stdout: {ok, profile, problems[{file, line, column,
        /// key, message}], …}.
        #[arg(long)]
        json: bool,
    },
    /// Write profiles/NAME.toml: a site profile extending another (production by default)
    /// with the settings an operator decides: admin SSH key, admin network, reverse proxy,
    /// domain, gateway CPU and memory. Unset ones are left as commented lines.
    ///
    /// The admin key is taken from --admin-key, else from ~/.ssh/*.pub when there is one.
    /// An existing file is never replaced without --force; the file appears whole or not
    /// at all.
    #[command(
        after_help = "Examples:\n  clawimg init mysite --from production\n  clawimg init mysite --admin-key ~/.ssh/id_ed25519.pub --admin-cidr 203.0.113.0/24 \\\n      --reverse-proxy caddy --domain gw.example.org --gateway-cpus 4 --gateway-memory 8G\n\nThen: clawimg check mysite && clawimg build mysite"
    )]
    Init(InitArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(
        after_help = "Examples:\n  clawimg completions bash > /etc/bash_completion.d/clawimg\n  clawimg completions zsh > \"${fpath[1]}/_clawimg\"\n  clawimg completions fish > ~/.config/fish/completions/clawimg.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these command definitions.
    #[command(
        after_help = "Examples:\n  clawimg man > /usr/local/share/man/man1/clawimg.1 && mandb -q\n  clawimg man | man -l -"
    )]
    Man,
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
        /// Re-resolve an existing lock and every image tag (moving the pins), and print
        /// what changed; without it only missing image digests are filled.
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
        /// Print the differences as JSON: {differs, sections: {NAME: [lines]}}.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or trim the stage cache.
    #[command(
        subcommand,
        after_help = "Examples:\n  clawimg cache du\n  clawimg cache gc --keep 2"
    )]
    Cache(CacheCmd),
    /// Write an image to a file, a block device, or a device on a rescue system over SSH.
    ///
    /// The image is first checked against the build's SHA256SUMS and block map. The block
    /// map's ranges are written (zstd-compressed on the wire for SSH), the ranges it skips
    /// are zeroed, everything is read back and compared, and the first MiB (partition table)
    /// is written last, so an interrupted flash leaves a disk that does not boot. A device
    /// that is mounted, active swap, holds the running root or is held by device-mapper/md
    /// (through any stack of holders), or is smaller than the image, is refused before
    /// anything is written; block devices, local or remote, need --yes or their name typed
    /// on a terminal.
    #[command(
        after_help = "Examples:\n  clawimg flash out/production/production.raw --to /dev/sdb\n  clawimg flash out/production --to ssh://root@203.0.113.7/dev/sda --yes\n  clawimg flash out/test/test.raw --to /var/tmp/node1.img\n\nSSH options (identity file, known hosts) come from ~/.ssh/config or CLAWIMG_SSH_OPTS."
    )]
    Flash {
        /// Raw image file or image directory.
        image: PathBuf,
        /// Target: a file path, /dev/DEVICE, or ssh://[user@]host[:port]/dev/DEVICE.
        #[arg(long)]
        to: String,
        /// Do not ask before overwriting a block device (needed without a terminal).
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
        /// Print the report as JSON: {drift, checked, node_local_skipped, differences[]}.
        #[arg(long)]
        json: bool,
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
pub(super) struct InitArgs {
    /// Name of the new profile (profiles/NAME.toml).
    pub(super) name: String,
    /// Profile it extends.
    #[arg(long, default_value = "production", value_name = "PROFILE")]
    pub(super) from: String,
    /// The admin's OpenSSH public key file [default: the first ~/.ssh/*.pub].
    #[arg(long, value_name = "FILE.pub")]
    pub(super) admin_key: Option<PathBuf>,
    /// Do not look in ~/.ssh: leave the key as a commented placeholder.
    #[arg(long, conflicts_with = "admin_key")]
    pub(super) no_key: bool,
    /// Address or CIDR allowed to reach SSH (instead of any).
    #[arg(long, value_name = "CIDR")]
    pub(super) admin_cidr: Option<String>,
    /// Public DNS name of the gateway.
    #[arg(long, value_name = "NAME")]
    pub(super) domain: Option<String>,
    /// How the gateway is reached: tunnel, caddy or none.
    #[arg(long, value_name = "KIND", value_parser = ["tunnel", "caddy", "none"])]
    pub(super) reverse_proxy: Option<String>,
    /// Gateway CPU limit (at most the host's CPU count), e.g. 4.0.
    #[arg(long, value_name = "N")]
    pub(super) gateway_cpus: Option<String>,
    /// Gateway memory limit, e.g. 8G.
    #[arg(long, value_name = "SIZE")]
    pub(super) gateway_memory: Option<String>,
    /// Replace an existing profile file.
    #[arg(long)]
    pub(super) force: bool,
}

#[derive(Args, Debug, Clone)]
pub(super) struct UploadArgs {
    /// Image file (raw or qcow2) or image directory (OUT/PROFILE).
    pub(super) image: PathBuf,
    /// Destination: `glance`, or s3://BUCKET/KEY.
    #[arg(long, value_name = "PROVIDER")]
    pub(super) to: String,
    /// Which image of a directory to upload, or the expected format of a file
    /// [default: qcow2 for a directory].
    #[arg(long, value_enum)]
    pub(super) format: Option<crate::ops::upload::Format>,
    /// Glance: entry of clouds.yaml [default: $OS_CLOUD, else the OS_* variables].
    #[arg(long, value_name = "NAME")]
    pub(super) cloud: Option<String>,
    /// Glance: image name [default: PROFILE-SHA256PREFIX].
    #[arg(long, value_name = "NAME")]
    pub(super) name: Option<String>,
    /// Glance: hw_firmware_type property. The image boots with both; bios is what every
    /// Nova host can do, uefi needs OVMF on the compute nodes.
    #[arg(long, value_enum, default_value_t = crate::ops::upload::BootFirmware::Bios)]
    pub(super) firmware: crate::ops::upload::BootFirmware,
    /// Glance: seconds to wait for the image to become active.
    #[arg(long, default_value_t = 1800, value_name = "SECS")]
    pub(super) timeout: u64,
    /// Service URL: the image endpoint for Glance (instead of the catalog's; also
    /// OS_IMAGE_URL), the S3 endpoint (also AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    pub(super) endpoint: Option<String>,
    /// S3: signing region [default: $AWS_REGION, else us-east-1].
    #[arg(long, value_name = "R")]
    pub(super) region: Option<String>,
    /// S3: part size in MiB (at least 5).
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub(super) part_size: u64,
    /// S3: parts uploaded in parallel.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub(super) jobs: usize,
}

#[derive(Args, Debug, Clone)]
pub(super) struct SealArgs {
    /// Raw image file or image directory (OUT/PROFILE).
    pub(super) image: PathBuf,
    /// Secrets file (TOML, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub(super) secrets: PathBuf,
    /// Node name: becomes the host name.
    #[arg(long, value_name = "NAME")]
    pub(super) node: String,
    /// Output raw disk for this node (must not exist).
    #[arg(short, long, value_name = "NODE.raw")]
    pub(super) output: PathBuf,
}

#[derive(Subcommand, Debug)]
pub(super) enum SecretsCmd {
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
pub(super) enum CacheCmd {
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
pub(super) enum ImagesCmd {
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
pub(super) struct TestArgs {
    /// Image file, image directory (OUT/PROFILE) or profile name.
    pub(super) target: String,
    /// Firmware(s) to boot with.
    #[arg(long, value_enum, default_values_t = [Firmware::Bios, Firmware::Uefi])]
    pub(super) firmware: Vec<Firmware>,
    /// How the disk is attached.
    #[arg(long, value_enum, default_value_t = DiskBus::Virtio)]
    pub(super) disk: DiskBus,
    /// Enlarge the virtual disk first (e.g. 20GiB) and check that the root grew.
    #[arg(long, value_name = "SIZE")]
    pub(super) resize: Option<String>,
    /// Accelerator: auto uses KVM only when it can create a VM here.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub(super) accel: Accel,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1536)]
    pub(super) memory: u32,
    /// Seconds to wait for SSH.
    #[arg(long, default_value_t = 600)]
    pub(super) timeout: u64,
    /// Extra probe: a shell command that must exit 0 (repeatable).
    #[arg(long = "probe", value_name = "COMMAND")]
    pub(super) probes: Vec<String>,
    /// Override a profile variable when TARGET is a profile.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub(super) vars: Vec<String>,
    /// Override a profile key when TARGET is a profile: --set dotted.key=TOML_VALUE.
    #[arg(long = "set", value_name = "KEY=TOML")]
    pub(super) sets: Vec<String>,
    /// Log in with this existing private key (public key at PATH.pub) instead of a throwaway one.
    #[arg(long, value_name = "PATH")]
    pub(super) key: Option<PathBuf>,
    /// User to log in as; non-root users run root probes through sudo.
    #[arg(long, default_value = "root", value_name = "NAME")]
    pub(super) ssh_user: String,
    /// Guest port sshd listens on (forwarded to a free port on 127.0.0.1).
    #[arg(long, default_value_t = 22, value_name = "N")]
    pub(super) ssh_port: u16,
    /// Expose the guest's serial console as a Unix socket at PATH while the test runs, e.g.
    /// to try a console login: `socat -,raw,echo=0 UNIX-CONNECT:PATH`.
    #[arg(long, value_name = "PATH")]
    pub(super) console_socket: Option<PathBuf>,
}
