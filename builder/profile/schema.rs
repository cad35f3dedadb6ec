//! The profile schema: the merged description of one image, section by section, and a
//! loaded profile with the files it came from.

use crate::profile::sections;
use crate::profile::sections::lints::LintConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The complete, merged description of one image.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Name of the parent profile (same directory), or a relative path to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// One line saying what this image is for.
    pub description: String,
    /// Base root filesystem (mmdebstrap) settings.
    pub base: Base,
    /// Disk layout and boot settings.
    pub image: Image,
    /// Free-form variables for templates; `--var key=value` overrides them.
    pub vars: BTreeMap<String, toml::Value>,
    /// Secret slots by name (declared only: values arrive per node, see `secrets.rs`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::profile::sections::secrets::Slot>,
    /// File trees copied into the image, in order (see `overlay.rs`).
    pub overlays: Overlays,
    /// systemd units shipped from `units/`: installed, enabled, masked (see `unitset.rs`).
    pub units: Units,
    /// Admin and runtime users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<sections::users::Users>,
    /// sshd drop-in and ssh.socket override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<sections::ssh::Ssh>,
    /// UFW, active on first boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall: Option<sections::firewall::Firewall>,
    /// fail2ban jail.local.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail2ban: Option<sections::fail2ban::Fail2ban>,
    /// Kernel parameters, `"dotted.key" = value`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, toml::Value>,
    /// Docker daemon.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker: Option<sections::docker::Docker>,
    /// unattended-upgrades.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updates: Option<sections::updates::Updates>,
    /// Swap file made at first boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<sections::swap::Swap>,
    /// Time sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<sections::time::Time>,
    /// journald size caps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journald: Option<sections::journald::Journald>,
    /// Shell environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<sections::shell::Shell>,
    /// Directories with owner and mode, keyed by path.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub directories: BTreeMap<String, sections::directories::Directory>,
    /// Lint acknowledgements (see `lints/`).
    #[serde(skip_serializing_if = "lints_default")]
    pub lints: LintConfig,
    /// Pinned container images baked into the image (names from the `images/` catalog).
    pub containers: crate::profile::sections::containers::Containers,
    /// Source text of what the profile ships, for lints that look at who reads what:
    /// overlay files by image path (`/opt/x/compose.yml`, template suffix dropped) and
    /// installed units by name. Filled by the loader; not part of the profile's data.
    #[serde(skip)]
    pub sources: BTreeMap<String, String>,
}

/// The `[overlays]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Overlays {
    /// Overlay names (`overlays/<name>/`), applied in order; later ones override earlier.
    pub list: Vec<String>,
}

/// The `[units]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Units {
    /// Files from `units/` installed into /usr/lib/systemd/system: unit names, or
    /// `NAME.d/FILE.conf` for drop-ins.
    pub install: Vec<String>,
    /// Units enabled offline as `systemctl enable` would.
    pub enable: Vec<String>,
    /// Units masked (linked to /dev/null).
    pub mask: Vec<String>,
}

/// Whether the `[lints]` section is empty (kept out of the input hash then).
pub fn lints_default(l: &LintConfig) -> bool {
    l.acknowledge.is_empty()
}

/// The base stage: what mmdebstrap installs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Base {
    /// Ubuntu suite; clawimg supports `noble` (24.04).
    pub suite: String,
    /// Archive components.
    pub components: Vec<String>,
    /// mmdebstrap variant (`required` is Ubuntu's minbase).
    pub variant: String,
    /// Archive keyring, relative to the profiles directory.
    pub keyring: String,
    /// sha256 of the keyring file; a mismatch refuses the build.
    pub keyring_sha256: String,
    /// Packages installed on top of the variant.
    pub packages: Vec<String>,
}

impl Default for Base {
    fn default() -> Self {
        Base {
            suite: "noble".into(),
            components: vec![],
            variant: "required".into(),
            keyring: String::new(),
            keyring_sha256: String::new(),
            packages: vec![],
        }
    }
}

/// Disk image layout and boot configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Image {
    /// Host name baked into /etc/hostname until a node gets its own.
    pub hostname: String,
    /// Total disk size (`"3GiB"`, `"2048MiB"`) or `"auto"`: content plus headroom.
    pub size: String,
    /// With `size = "auto"`: free space added to the root filesystem, in percent of content.
    pub headroom_percent: u64,
    /// With `size = "auto"`: at least this much free space in the root filesystem, MiB.
    pub min_free_mib: u64,
    /// EFI system partition size in MiB.
    pub esp_mib: u64,
    /// Extra kernel command line arguments (after `root=` and `ro`).
    pub kernel_cmdline: Vec<String>,
    /// Grow the root partition and filesystem to the whole disk on first boot.
    pub grow_root: bool,
    /// Compress the qcow2 output (zstd clusters).
    pub qcow2_compress: bool,
}

impl Default for Image {
    fn default() -> Self {
        Image {
            hostname: "clawimg".into(),
            size: "auto".into(),
            headroom_percent: 30,
            min_free_mib: 512,
            esp_mib: 64,
            kernel_cmdline: vec![],
            grow_root: true,
            qcow2_compress: true,
        }
    }
}

/// A loaded profile with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Profile name (file stem of the requested profile).
    pub name: String,
    /// Directory holding the profiles (keyrings are relative to it).
    pub dir: PathBuf,
    /// Files read, child first.
    pub files: Vec<PathBuf>,
    /// The merged profile.
    pub profile: Profile,
}
