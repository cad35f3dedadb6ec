//! The container image catalog (`images/*.toml`: name, reference, digest, platform) and the
//! profile's `[containers]` section, checked against each other: every image the profile
//! bakes must be in the catalog, pinned by digest, with a version tag.

use crate::error::{Context, Error, Result};
pub use crate::profile::sections::containers::Containers;
use crate::profile::Loaded;
use crate::support::reference::Platform;
use crate::support::reference::{valid_digest, Reference};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One catalog entry as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Image reference with a version tag, e.g. `ghcr.io/org/app:1.2.3`.
    pub reference: String,
    /// `sha256:` digest of the manifest or index; `clawimg lock` fills it.
    #[serde(default)]
    pub digest: String,
    /// Platform resolved from an index.
    #[serde(default = "default_platform")]
    pub platform: String,
}

fn default_platform() -> String {
    "linux/amd64".into()
}

/// A catalog entry with where it was written.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// Entry name (its table name).
    pub name: String,
    /// The values.
    pub entry: Entry,
    /// Catalog file.
    pub file: PathBuf,
    text: String,
}

impl CatalogEntry {
    /// `file:line:col: key `name.key`: ` for messages.
    fn at(&self, key: &str) -> String {
        let (line, col) = locate(&self.text, &self.name, key);
        format!(
            "{}:{line}:{col}: key `{}.{key}`",
            self.file.display(),
            self.name
        )
    }
}

/// Line and column of `key` inside table `[name]` (or of the table header).
fn locate(text: &str, name: &str, key: &str) -> (usize, usize) {
    let mut in_table = false;
    let mut header = (1, 1);
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            let n = t
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .trim_matches('"');
            in_table = n == name;
            if in_table {
                header = (i + 1, 1);
            }
        } else if in_table && t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return (i + 1, l.len() - l.trim_start().len() + 1);
        }
    }
    header
}

/// The catalog directory for a profile: `images/` next to the profiles directory.
pub fn catalog_dir(loaded: &Loaded) -> PathBuf {
    loaded.dir.parent().unwrap_or(Path::new(".")).join("images")
}

/// Read every `*.toml` in the catalog directory (missing directory = empty catalog).
pub fn load_catalog(dir: &Path) -> Result<BTreeMap<String, CatalogEntry>> {
    let mut out: BTreeMap<String, CatalogEntry> = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).ctx(|| format!("read {}", file.display()))?;
        let at = |e: &toml::de::Error, key: Option<String>| {
            let (line, col) = e
                .span()
                .map(|s| crate::support::text::line_col(&text, s.start))
                .unwrap_or((1, 1));
            let key = key
                .filter(|k| !k.is_empty() && k != ".")
                .map(|k| format!("key `{k}`: "))
                .unwrap_or_default();
            Error::config(format!(
                "{}:{line}:{col}: {key}{}",
                file.display(),
                e.message().trim().replace('\n', " ")
            ))
        };
        let de = toml::Deserializer::parse(&text).map_err(|e| at(&e, None))?;
        let entries: BTreeMap<String, Entry> =
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                at(e.inner(), Some(key))
            })?;
        for (name, entry) in entries {
            let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
            if name.is_empty() || !name.chars().all(ok) {
                let (line, col) = locate(&text, &name, "");
                return Err(Error::config(format!(
                    "{}:{line}:{col}: image name `{name}`: use lowercase letters, digits, '-', '_' or '.'",
                    file.display()
                )));
            }
            if let Some(prev) = out.get(&name) {
                return Err(Error::config(format!(
                    "{}: image `{name}` is also defined in {}",
                    file.display(),
                    prev.file.display()
                )));
            }
            out.insert(
                name.clone(),
                CatalogEntry {
                    name,
                    entry,
                    file: file.clone(),
                    text: text.clone(),
                },
            );
        }
    }
    Ok(out)
}

/// A catalog entry that passed the lints: pinned by digest, with a version tag.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// Entry name.
    pub name: String,
    /// Reference as written (`name:tag`); the loaded image is tagged with it.
    pub reference: String,
    /// Parsed reference.
    pub parsed: Reference,
    /// Digest of the manifest or index.
    pub digest: String,
    /// Platform.
    pub platform: Platform,
    /// Where the entry came from, for messages.
    pub origin: String,
}

/// The profile's images checked against the catalog, every problem at once.
#[derive(Debug, Default)]
pub struct Selection {
    /// Entries that passed the lints (their digest may be empty: see `unpinned`).
    pub images: Vec<(CatalogEntry, Pinned)>,
    /// `file:line:col: key `NAME.digest`` of every entry without a digest.
    pub unpinned: Vec<String>,
    /// Every other problem, one message each, in the order of the profile's list.
    pub problems: Vec<String>,
}

/// Check the profile's `[containers] images` against the catalog, collecting every
/// problem instead of stopping at the first. An error only when the catalog can't be read.
pub fn selection(loaded: &Loaded) -> Result<Selection> {
    let mut sel = Selection::default();
    let wanted = &loaded.profile.containers.images;
    if wanted.is_empty() {
        return Ok(sel);
    }
    let dir = catalog_dir(loaded);
    let catalog = load_catalog(&dir)?;
    for name in wanted {
        let Some(c) = catalog.get(name) else {
            sel.problems.push(format!(
                "{}: key `containers.images`: no image `{name}` in the catalog {}/*.toml (known: {})",
                loaded.files[0].display(),
                dir.display(),
                catalog.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        let e = &c.entry;
        let before = sel.problems.len();
        let parsed = match Reference::parse(&e.reference) {
            Ok(p) => Some(p),
            Err(m) => {
                sel.problems.push(format!("{}: {m}", c.at("reference")));
                None
            }
        };
        if let Some(parsed) = &parsed {
            if parsed.digest.is_some() {
                sel.problems.push(format!(
                    "{}: write the digest in `digest`, and only a version tag in the reference",
                    c.at("reference")
                ));
            }
            match parsed.tag.as_deref() {
                None => sel.problems.push(format!(
                    "{}: {:?} has no tag, which means `latest`: pin a version tag (and its digest)",
                    c.at("reference"),
                    e.reference
                )),
                Some("latest") => sel.problems.push(format!(
                    "{}: {:?} uses the moving `latest` tag: pin a version tag (and its digest)",
                    c.at("reference"),
                    e.reference
                )),
                _ => {}
            }
        }
        if !e.digest.is_empty() && !valid_digest(&e.digest) {
            sel.problems.push(format!(
                "{}: expected \"sha256:\" and 64 lowercase hex digits",
                c.at("digest")
            ));
        }
        let platform = match Platform::parse(&e.platform) {
            Ok(p) => Some(p),
            Err(m) => {
                sel.problems.push(format!("{}: {m}", c.at("platform")));
                None
            }
        };
        if e.digest.is_empty() {
            sel.unpinned.push(c.at("digest"));
        }
        if let (true, Some(parsed), Some(platform)) =
            (sel.problems.len() == before, parsed, platform)
        {
            let pinned = Pinned {
                name: name.clone(),
                reference: e.reference.clone(),
                parsed,
                digest: e.digest.clone(),
                platform,
                origin: c.at("digest"),
            };
            sel.images.push((c.clone(), pinned));
        }
    }
    Ok(sel)
}

/// The profile's images checked against the catalog. With `need_digest` false (for
/// `clawimg lock` and the build's pinning) a missing digest is allowed. Every problem is
/// reported in one error, a line each.
pub fn select(loaded: &Loaded, need_digest: bool) -> Result<Vec<(CatalogEntry, Pinned)>> {
    let sel = selection(loaded)?;
    let mut problems = sel.problems;
    if need_digest {
        problems.extend(
            sel.unpinned
                .iter()
                .map(|at| unpinned_message(at, &loaded.name)),
        );
    }
    if !problems.is_empty() {
        return Err(Error::config(problems.join("\n")));
    }
    Ok(sel.images)
}

/// Why an entry without a digest is refused, and how it gets one.
pub fn unpinned_message(at: &str, profile: &str) -> String {
    format!(
        "{at}: missing: images are pinned by digest; `clawimg build {profile}` pins it (with a registry or mirror that serves the image), or run `clawimg lock {profile} --images-only`"
    )
}

/// Lint and resolve the profile's images (used by `check` and `build`).
pub fn resolve(loaded: &Loaded) -> Result<Vec<Pinned>> {
    Ok(select(loaded, true)?.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_keys_in_their_table() {
        let t = "# c\n[a]\nreference = \"x\"\n\n[b]\nreference = \"y\"\n  digest = \"\"\n";
        assert_eq!(locate(t, "b", "reference"), (6, 1));
        assert_eq!(locate(t, "b", "digest"), (7, 3));
        assert_eq!(locate(t, "b", "platform"), (5, 1));
    }
}
