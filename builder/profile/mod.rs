//! Profiles: TOML files with `extends` inheritance, `[vars]` and `--var` overrides.
//!
//! Merge rules (documented in the README):
//! - tables merge key by key, recursively; the child's value wins for scalars;
//! - arrays are concatenated, parent first, duplicates dropped; an element written as
//!   `"!x"` removes `x` from what was inherited (e.g. `packages = ["!fail2ban"]`).
//!
//! Every file is first checked on its own against the schema, so an unknown key or a wrong
//! type is reported with the file, line, column and key path where it was written.

pub mod catalog;
pub mod lints;
pub mod lock;
pub mod secrets;
pub mod sections;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    pub secrets: BTreeMap<String, crate::profile::secrets::Slot>,
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
    #[serde(skip_serializing_if = "crate::profile::lints_default")]
    pub lints: crate::profile::lints::LintConfig,
    /// Pinned container images baked into the image (names from the `images/` catalog).
    pub containers: crate::profile::catalog::Containers,
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
pub fn lints_default(l: &crate::profile::lints::LintConfig) -> bool {
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

/// Resolve a profile argument: a name in `profiles_dir`, or a path to a `.toml` file.
pub fn resolve(arg: &str, profiles_dir: &Path) -> PathBuf {
    if arg.ends_with(".toml") || arg.contains('/') {
        PathBuf::from(arg)
    } else {
        profiles_dir.join(format!("{arg}.toml"))
    }
}

/// Load a profile with its parents and apply `--var` overrides (`key=value`).
pub fn load(arg: &str, profiles_dir: &Path, overrides: &[String]) -> Result<Loaded> {
    load_with_sets(arg, profiles_dir, overrides, &[])
}

/// [`load`], plus `--set dotted.key=TOML_VALUE` overrides applied to the merged table.
pub fn load_with_sets(
    arg: &str,
    profiles_dir: &Path,
    overrides: &[String],
    sets: &[String],
) -> Result<Loaded> {
    let path = resolve(arg, profiles_dir);
    let mut chain: Vec<(PathBuf, toml::Table)> = Vec::new();
    let mut next = Some((path.clone(), None::<(PathBuf, String)>));
    while let Some((file, from)) = next.take() {
        let canon = file.canonicalize().unwrap_or_else(|_| file.clone());
        if let Some(pos) = chain
            .iter()
            .position(|(p, _)| p.canonicalize().unwrap_or_else(|_| p.clone()) == canon)
        {
            let mut names: Vec<String> = chain[pos..]
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            names.push(file.display().to_string());
            let (src, loc) = from.unwrap_or_default();
            return Err(Error::config(format!(
                "{}:{loc}: key `extends`: extends cycle: {}",
                src.display(),
                names.join(" -> ")
            )));
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                let what = match &from {
                    Some((src, loc)) => format!("{}:{loc}: key `extends`: ", src.display()),
                    None => String::new(),
                };
                return Err(Error::config(format!(
                    "{what}profile `{}` not found: cannot read {}: {e} (profiles live in {})",
                    file.file_stem().unwrap_or_default().to_string_lossy(),
                    file.display(),
                    profiles_dir.display()
                )));
            }
        };
        let table = check_file(&file, &text)?;
        if let Some(parent) = table.get("extends").and_then(|v| v.as_str()) {
            let base_dir = file.parent().unwrap_or(Path::new("."));
            let parent_path = resolve_relative(parent, base_dir);
            let loc = locate_key(&text, "extends");
            next = Some((parent_path, Some((file.clone(), loc))));
        }
        chain.push((file, table));
    }
    // Merge parent first.
    let mut merged = toml::Table::new();
    for (_, t) in chain.iter().rev() {
        merge_table(&mut merged, t);
    }
    merged.remove("extends");
    for ov in overrides {
        apply_var(&mut merged, ov)?;
    }
    for set in sets {
        apply_set(&mut merged, set)?;
    }
    let profile: Profile =
        serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
            let key = e.path().to_string();
            Error::config(format!(
                "{}: key `{key}`: after merging and overrides: {}",
                path.display(),
                e.inner().message().trim()
            ))
        })?;
    let loaded = Loaded {
        name: path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        dir: path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        files: chain.into_iter().map(|(p, _)| p).collect(),
        profile,
    };
    validate(&loaded)?;
    Ok(loaded)
}

fn resolve_relative(name: &str, dir: &Path) -> PathBuf {
    if name.ends_with(".toml") || name.contains('/') {
        dir.join(name)
    } else {
        dir.join(format!("{name}.toml"))
    }
}

/// Parse one file and check it against the schema, reporting file:line:col and key path.
fn check_file(path: &Path, text: &str) -> Result<toml::Table> {
    let table: toml::Table = toml::from_str(text).map_err(|e| located(path, text, &e, None))?;
    let de = toml::Deserializer::parse(text).map_err(|e| located(path, text, &e, None))?;
    let checked: std::result::Result<Profile, _> = serde_path_to_error::deserialize(de);
    if let Err(e) = checked {
        let key = e.path().to_string();
        return Err(located(path, text, e.inner(), Some(&key)));
    }
    Ok(table)
}

fn located(path: &Path, text: &str, e: &toml::de::Error, key: Option<&str>) -> Error {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let msg = e
        .message()
        .trim()
        .replace('\n', " ")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected i64", "expected an integer");
    let key_part = match key {
        Some(k) if !k.is_empty() && k != "." => format!("key `{k}`: "),
        _ => String::new(),
    };
    let snippet = text.lines().nth(line - 1).unwrap_or("").trim_end();
    Error::config(format!(
        "{}:{line}:{col}: {key_part}{msg}\n  {line:>4} | {snippet}",
        path.display()
    ))
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// `line:col` of a top-level key, for messages about keys that parsed fine.
fn locate_key(text: &str, key: &str) -> String {
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return format!("{}:{}", i + 1, l.len() - t.len() + 1);
        }
    }
    "1:1".into()
}

/// Deep-merge `over` into `into` following the module's rules.
pub fn merge_table(into: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge_table(a, b),
            (Some(toml::Value::Array(a)), toml::Value::Array(b)) => merge_array(a, b),
            _ => {
                let mut v = v.clone();
                if let toml::Value::Array(arr) = &mut v {
                    // A removal with nothing inherited removes nothing.
                    arr.retain(|e| !e.as_str().is_some_and(|s| s.starts_with('!')));
                }
                into.insert(k.clone(), v);
            }
        }
    }
}

fn merge_array(into: &mut Vec<toml::Value>, over: &[toml::Value]) {
    for v in over {
        if let Some(name) = v.as_str().and_then(|s| s.strip_prefix('!')) {
            into.retain(|e| e.as_str() != Some(name));
        } else if !into.contains(v) {
            into.push(v.clone());
        }
    }
}

/// Apply one `--var key=value` (value parsed as TOML if it is valid TOML, else a string).
fn apply_var(t: &mut toml::Table, ov: &str) -> Result<()> {
    let (k, v) = ov.split_once('=').ok_or_else(|| {
        Error::config(format!(
            "--var {ov}: expected key=value, e.g. --var ssh_port=222"
        ))
    })?;
    let k = k.trim();
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::config(format!(
            "--var {ov}: variable name `{k}` must be letters, digits, '_' or '-'"
        )));
    }
    let value = toml::from_str::<toml::Table>(&format!("x = {v}"))
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()));
    let vars = t
        .entry("vars")
        .or_insert_with(|| toml::Value::Table(Default::default()));
    match vars {
        toml::Value::Table(vt) => {
            vt.insert(k.to_string(), value);
            Ok(())
        }
        _ => Err(Error::config("`vars` must be a table")),
    }
}

/// Apply one `--set dotted.key=TOML_VALUE` to the merged table (tables on the way are created).
pub fn apply_set(t: &mut toml::Table, set: &str) -> Result<()> {
    let (k, v) = set.split_once('=').ok_or_else(|| {
        Error::config(format!(
            "--set {set}: expected dotted.key=TOML_VALUE, e.g. --set ssh.port=2222"
        ))
    })?;
    let k = k.trim();
    let parts: Vec<&str> = k.split('.').collect();
    if parts.iter().any(|p| {
        p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(Error::config(format!(
            "--set {set}: key `{k}` must be dot-separated names of letters, digits, '_' or '-'"
        )));
    }
    let value = toml::from_str::<toml::Table>(&format!("x = {v}")).ok().and_then(|mut t| t.remove("x")).ok_or_else(|| {
        Error::config(format!("--set {set}: key `{k}`: `{v}` is not a TOML value (strings need quotes: --set '{k}=\"text\"')"))
    })?;
    let mut cur = t;
    for (i, p) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        cur = match entry {
            toml::Value::Table(tt) => tt,
            _ => {
                return Err(Error::config(format!(
                    "--set {set}: key `{}` is not a table",
                    parts[..=i].join(".")
                )))
            }
        };
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Parse a size such as `3GiB`, `512MiB`, `1G` or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let idx = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(idx);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Semantic checks on the merged profile (errors name the key and the file chain).
fn validate(l: &Loaded) -> Result<()> {
    let p = &l.profile;
    let file = l.files[0].display();
    let bad = |key: &str, msg: String| Err(Error::config(format!("{file}: key `{key}`: {msg}")));
    if p.base.suite != "noble" {
        return bad(
            "base.suite",
            format!(
                "expected \"noble\" (Ubuntu 24.04), found {:?}",
                p.base.suite
            ),
        );
    }
    if p.base.keyring.is_empty() {
        return bad(
            "base.keyring",
            "expected the path of the archive keyring (relative to the profiles directory)".into(),
        );
    }
    if p.base.keyring_sha256.len() != 64
        || !p.base.keyring_sha256.chars().all(|c| c.is_ascii_hexdigit())
    {
        return bad(
            "base.keyring_sha256",
            "expected 64 hex digits (sha256 of the keyring file)".into(),
        );
    }
    if p.base
        .packages
        .iter()
        .any(|x| x.trim().is_empty() || x.contains(char::is_whitespace))
    {
        return bad(
            "base.packages",
            "expected package names without spaces".into(),
        );
    }
    if !p
        .base
        .packages
        .iter()
        .any(|x| x.starts_with("linux-image-"))
    {
        return bad(
            "base.packages",
            "expected a kernel package (linux-image-virtual or linux-image-generic)".into(),
        );
    }
    if p.image.size != "auto" && parse_size(&p.image.size).is_none() {
        return bad(
            "image.size",
            format!(
                "expected \"auto\" or a size like \"3GiB\", found {:?}",
                p.image.size
            ),
        );
    }
    if !(32..=4096).contains(&p.image.esp_mib) {
        return bad(
            "image.esp_mib",
            format!("expected 32..=4096 (MiB), found {}", p.image.esp_mib),
        );
    }
    let h = &p.image.hostname;
    if h.is_empty()
        || h.len() > 63
        || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        || h.starts_with('-')
    {
        return bad(
            "image.hostname",
            format!("expected a host name (letters, digits, '-'), found {h:?}"),
        );
    }
    crate::profile::secrets::validate(l)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_append_and_remove() {
        let mut a: toml::Table = toml::from_str("p = [\"a\", \"b\"]\n[t]\nx = 1").unwrap();
        let b: toml::Table = toml::from_str("p = [\"!a\", \"c\", \"b\"]\n[t]\ny = 2").unwrap();
        merge_table(&mut a, &b);
        assert_eq!(a["p"].as_array().unwrap().len(), 2);
        assert_eq!(a["p"][0].as_str(), Some("b"));
        assert_eq!(a["p"][1].as_str(), Some("c"));
        assert_eq!(a["t"]["x"].as_integer(), Some(1));
        assert_eq!(a["t"]["y"].as_integer(), Some(2));
    }

    #[test]
    fn set_overrides_nested_keys() {
        let mut t: toml::Table = toml::from_str("[ssh]\nport = 222\n").unwrap();
        apply_set(&mut t, "ssh.port=2222").unwrap();
        apply_set(
            &mut t,
            "users.admin.authorized_keys=[\"ssh-ed25519 AAAA x\"]",
        )
        .unwrap();
        assert_eq!(t["ssh"]["port"].as_integer(), Some(2222));
        assert_eq!(
            t["users"]["admin"]["authorized_keys"][0].as_str(),
            Some("ssh-ed25519 AAAA x")
        );
        let e = apply_set(&mut t, "ssh.port.x=1").unwrap_err();
        assert!(
            e.message.contains("`ssh.port` is not a table"),
            "{}",
            e.message
        );
        let e = apply_set(&mut t, "swap.size=8GiB").unwrap_err();
        assert!(
            e.message.contains("`swap.size`") && e.message.contains("not a TOML value"),
            "{}",
            e.message
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("3GiB"), Some(3 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("3 parsecs"), None);
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc", 3), (2, 2));
    }
}
