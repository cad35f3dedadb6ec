//! Overlays: file trees under `overlays/<name>/` copied into the image in the order the
//! profile lists them. `*.tera` files are rendered with the profile's vars plus computed
//! values and lose the suffix; an undefined variable is an error naming the template, line
//! and variable. Owner, group and mode come from `overlays/<name>/overlay.toml`:
//!
//! ```toml
//! [[path]]
//! glob = "/opt/openclaw/monitoring/*.sh"   # image path; `*` stays in one directory, `**` crosses
//! owner = "root"                            # name (resolved in the image's /etc/passwd) or uid
//! group = "docker"                          # name (the image's /etc/group) or gid
//! mode = "0700"
//! ```
//!
//! Later rules win per field. Defaults: root:root, directories 0755, files 0644, or 0755 when
//! the source file is executable. Directories that already exist in the image keep their
//! owner and mode unless a rule names them. Symlinks are copied as links.

use crate::error::{Error, Result};
use crate::image::declared::Declared;
use crate::image::provenance::Provenance;
use crate::profile::Loaded;
use crate::support::rootfs::Rootfs;
use crate::support::text::line_col;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Name of the metadata file inside an overlay (never copied).
pub const META_FILE: &str = "overlay.toml";
const SUFFIX: &str = ".tera";

/// The metadata file of one overlay.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Meta {
    /// Ownership and mode rules, applied in order (later rules win per field).
    pub path: Vec<PathRule>,
}

/// Owner, group and mode for the image paths matching a glob.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PathRule {
    /// Glob over image paths (`/opt/openclaw/config/*.yaml`).
    pub glob: String,
    /// User name or numeric uid.
    pub owner: Option<String>,
    /// Group name or numeric gid.
    pub group: Option<String>,
    /// Octal mode, e.g. `"0640"`.
    pub mode: Option<String>,
}

/// What an overlay entry is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A file with its (rendered) contents; `exec` when the source has an x bit.
    File {
        /// Contents after rendering.
        data: Vec<u8>,
        /// Source file is executable.
        exec: bool,
    },
    /// A symlink with its target, copied verbatim.
    Symlink(String),
}

/// One path an overlay puts into the image.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Absolute image path (template suffix dropped).
    pub path: String,
    /// Source, relative to the repository (`overlays/<name>/...`).
    pub source: String,
    /// Rendered from a template.
    pub template: bool,
    /// Contents.
    pub kind: Kind,
    /// Explicit owner/group/mode from the metadata rules (None = default).
    pub owner: Option<String>,
    /// Explicit group.
    pub group: Option<String>,
    /// Explicit mode.
    pub mode: Option<u32>,
}

/// A loaded overlay: entries rendered and matched against the metadata, ready to apply.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// Name (directory under `overlays/`).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Entries in sorted traversal order (parents before children).
    pub entries: Vec<Entry>,
}

/// The repository directory holding `profiles/`, `overlays/` and `units/`.
pub fn repo_dir(loaded: &Loaded) -> PathBuf {
    match loaded.dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => loaded.dir.join(".."),
    }
}

/// Template context: the profile's vars at top level, plus computed values:
/// `clawimg.profile`, `clawimg.hostname`, `clawimg.version`, `images.<name>` for every
/// catalog image in `containers.images` (`reference@digest`, exactly what is baked), and
/// `image_digests.<key>` (the `sha256:...` part of each of `images.<key>`). Hand-written
/// `vars.images.<key>` references must be pinned and must not shadow a catalog image.
pub fn context(loaded: &Loaded) -> Result<tera::Context> {
    let p = &loaded.profile;
    let file = loaded.files[0].display();
    let mut digests = serde_json::Map::new();
    let mut refs = serde_json::Map::new();
    if let Some(images) = p.vars.get("images") {
        let t = images.as_table().ok_or_else(|| {
            Error::config(format!(
                "{file}: key `vars.images`: expected a table of image references"
            ))
        })?;
        for (k, v) in t {
            let r = v.as_str().unwrap_or_default();
            let digest = r.split_once('@').map(|(_, d)| d).unwrap_or("");
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64
                || !hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            {
                return Err(Error::config(format!(
                    "{file}: key `vars.images.{k}`: expected an image pinned by digest (`name@sha256:<64 hex>`), found {v}"
                )));
            }
            digests.insert(k.clone(), serde_json::Value::String(digest.to_string()));
            refs.insert(k.clone(), serde_json::Value::String(r.to_string()));
        }
    }
    for img in crate::profile::catalog::resolve(loaded)? {
        if refs.contains_key(&img.name) {
            return Err(Error::config(format!(
                "{file}: key `vars.images.{}`: `{}` is a catalog image in `containers.images`: its reference comes from the catalog (what is baked); remove it from vars.images",
                img.name, img.name
            )));
        }
        let r = format!("{}@{}", img.reference, img.digest);
        digests.insert(img.name.clone(), serde_json::Value::String(img.digest));
        refs.insert(img.name, serde_json::Value::String(r));
    }
    let mut ctx = tera::Context::from_serialize(&p.vars).map_err(|e| {
        Error::config(format!(
            "{file}: key `vars`: cannot be used as template context: {e}"
        ))
    })?;
    ctx.insert(
        "clawimg",
        &serde_json::json!({
            "profile": loaded.name,
            "hostname": p.image.hostname,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    );
    ctx.insert("image_digests", &digests);
    if !refs.is_empty() {
        ctx.insert("images", &refs);
    }
    Ok(ctx)
}

fn err_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// Tera's built-in functions that read the build host: their results would change the image
/// without changing the input hash. Templates get their values from the profile instead.
const HOST_FUNCTIONS: &[(&str, &str)] = &[
    (
        "get_env",
        "it reads the build host's environment; put the value under [vars] in the profile",
    ),
    (
        "now",
        "it reads the build host's clock; the build's time is SOURCE_DATE_EPOCH",
    ),
    (
        "get_random",
        "it differs on every build; put a fixed value under [vars] in the profile",
    ),
];

/// The error for a call of the host function `f` at byte `at` of `text`.
fn host_call_error(name: &str, text: &str, f: &str, at: usize) -> Error {
    let why = HOST_FUNCTIONS
        .iter()
        .find(|(n, _)| *n == f)
        .map_or("", |(_, w)| *w);
    let (line, col) = line_col(text, at);
    let snippet = text.lines().nth(line - 1).unwrap_or("").trim_end();
    Error::config(format!(
        "{name}:{line}:{col}: `{f}()` is not allowed in overlay templates: {why}\n  {line:>4} | {snippet}"
    ))
}

/// The first call of a [`HOST_FUNCTIONS`] function in a tag: (function, byte offset). Every
/// tag is searched, so a call in a branch the render does not take is found too.
fn host_call(text: &str) -> Option<(&'static str, usize)> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    tags(text)
        .flat_map(|(start, tag)| {
            HOST_FUNCTIONS.iter().filter_map(move |(f, _)| {
                tag.match_indices(f).find_map(|(pos, _)| {
                    let before = tag[..pos].chars().last();
                    let after = tag[pos + f.len()..].trim_start();
                    (!before.is_some_and(|c| is_ident(c) || c == '.') && after.starts_with('('))
                        .then_some((*f, start + pos))
                })
            })
        })
        .min_by_key(|(_, at)| *at)
}

/// Tera without autoescaping, its host functions replaced by ones that fail (should the
/// text scan ever miss a call, none reaches the host).
fn engine() -> tera::Tera {
    let mut t = tera::Tera::default();
    t.autoescape_on(vec![]);
    for (f, _) in HOST_FUNCTIONS {
        t.register_function(
            f,
            move |_: &std::collections::HashMap<String, tera::Value>| {
                Err::<tera::Value, _>(tera::Error::msg(format!("`{f}()` is not allowed")))
            },
        );
    }
    t
}

/// Render one template; errors name the file, line and (for undefined variables or calls of
/// host functions) the name.
pub fn render(source: &Path, text: &str, ctx: &tera::Context) -> Result<String> {
    let name = source.display().to_string();
    if let Some((f, at)) = host_call(text) {
        return Err(host_call_error(&name, text, f, at));
    }
    let mut t = engine();
    if let Err(e) = t.add_raw_template(&name, text) {
        // Parse errors carry their own `--> line:col` marker.
        return Err(Error::config(format!(
            "{name}: template syntax error: {}",
            err_chain(&e)
        )));
    }
    t.render(&name, ctx).map_err(|e| {
        let chain = err_chain(&e);
        if let Some(var) = undefined_variable(&chain) {
            let (line, col) = locate_var(text, &var);
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim_end();
            Error::config(format!(
                "{name}:{line}:{col}: undefined variable `{var}` (define it under [vars] in the profile or pass --var)\n  {line:>4} | {snippet}"
            ))
        } else {
            Error::config(format!("{name}: cannot render: {chain}"))
        }
    })
}

fn undefined_variable(chain: &str) -> Option<String> {
    let i = chain.find("Variable `")? + "Variable `".len();
    let rest = &chain[i..];
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

/// The `{{ }}` and `{% %}` tags of a template: (byte offset, tag text from its opening brace).
fn tags(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut search = 0;
    std::iter::from_fn(move || loop {
        let open = text[search..].find('{').map(|i| i + search)?;
        let close_pat = match text[open + 1..].chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                search = open + 1;
                continue;
            }
        };
        let end = text[open..]
            .find(close_pat)
            .map(|i| i + open)
            .unwrap_or(text.len());
        search = end.max(open + 1);
        return Some((open, &text[open..end]));
    })
}

/// Line and column of the first use of `var` inside a `{{ }}` or `{% %}` tag.
fn locate_var(text: &str, var: &str) -> (usize, usize) {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    for (open, tag) in tags(text) {
        let mut from = 0;
        while let Some(pos) = tag[from..].find(var).map(|i| i + from) {
            let before = tag[..pos].chars().last();
            let after = tag[pos + var.len()..].chars().next();
            if !before.is_some_and(is_ident) && !after.is_some_and(|c| is_ident(c) && c != '.') {
                return line_col(text, open + pos);
            }
            from = pos + var.len();
        }
    }
    (1, 1)
}

fn parse_mode(s: &str) -> Option<u32> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8).ok()?;
    (m <= 0o7777).then_some(m)
}

/// Load and check the metadata file of an overlay (errors name file:line:col and key).
pub fn load_meta(path: &Path) -> Result<Meta> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Meta::default()),
        Err(e) => {
            return Err(Error::config(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let de = toml::Deserializer::parse(&text).map_err(|e| {
        Error::config(format!(
            "{}:{}: {}",
            path.display(),
            span_loc(&text, e.span()),
            e.message().trim()
        ))
    })?;
    let meta: Meta = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.inner();
        Error::config(format!(
            "{}:{}: key `{key}`: {}",
            path.display(),
            span_loc(&text, inner.span()),
            inner.message().trim()
        ))
    })?;
    for (i, r) in meta.path.iter().enumerate() {
        let loc = rule_loc(&text, i);
        if !r.glob.starts_with('/') {
            return Err(Error::config(format!(
                "{}:{loc}: key `path[{i}].glob`: expected an absolute image path glob, found {:?}",
                path.display(),
                r.glob
            )));
        }
        if let Err(e) = globset::Glob::new(&r.glob) {
            return Err(Error::config(format!(
                "{}:{loc}: key `path[{i}].glob`: {e}",
                path.display()
            )));
        }
        if let Some(m) = &r.mode {
            if parse_mode(m).is_none() {
                return Err(Error::config(format!("{}:{loc}: key `path[{i}].mode`: expected an octal mode such as \"0640\", found {m:?}", path.display())));
            }
        }
    }
    Ok(meta)
}

fn span_loc(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let (l, c) = span.map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    format!("{l}:{c}")
}

/// `line:col` of the i-th `[[path]]` header.
fn rule_loc(text: &str, i: usize) -> String {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[path]]"))
        .nth(i)
        .map(|(n, _)| format!("{}:1", n + 1))
        .unwrap_or_else(|| "1:1".into())
}

fn matcher(glob: &str) -> globset::GlobMatcher {
    // Validated in load_meta.
    globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .unwrap_or_else(|_| globset::Glob::new("/__never__").unwrap().compile_matcher())
}

/// Load every overlay the profile lists: walk, render templates, match metadata rules.
/// Runs before anything is built, so template and metadata errors stop `check` too.
pub fn load(loaded: &Loaded) -> Result<Vec<Overlay>> {
    let repo = repo_dir(loaded);
    let file = loaded.files[0].display();
    let list = &loaded.profile.overlays.list;
    if list.is_empty() {
        return Ok(vec![]);
    }
    let ctx = context(loaded)?;
    let mut out = vec![];
    for name in list {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::config(format!(
                "{file}: key `overlays.list`: invalid overlay name {name:?}"
            )));
        }
        let dir = repo.join("overlays").join(name);
        if !dir.is_dir() {
            return Err(Error::config(format!(
                "{file}: key `overlays.list`: overlay `{name}` not found (expected directory {})",
                dir.display()
            )));
        }
        let meta_path = dir.join(META_FILE);
        let meta = load_meta(&meta_path)?;
        let rules: Vec<(globset::GlobMatcher, &PathRule)> =
            meta.path.iter().map(|r| (matcher(&r.glob), r)).collect();
        let mut used = vec![false; rules.len()];
        let mut entries = vec![];
        let walk = walkdir::WalkDir::new(&dir)
            .follow_links(false)
            .sort_by_file_name()
            .min_depth(1);
        for ent in walk {
            let ent = ent.map_err(|e| {
                Error::config(format!(
                    "overlay {name}: cannot read {}: {e}",
                    dir.display()
                ))
            })?;
            let relp = ent.path().strip_prefix(&dir).unwrap_or(ent.path());
            if relp == Path::new(META_FILE) {
                continue;
            }
            let rel_s = relp.to_string_lossy().into_owned();
            let source = ent.path().display().to_string();
            let ft = ent.file_type();
            let md = std::fs::symlink_metadata(ent.path())
                .map_err(|e| Error::config(format!("{source}: {e}")))?;
            let (kind, template, img_rel) = if ft.is_symlink() {
                let t = std::fs::read_link(ent.path())
                    .map_err(|e| Error::config(format!("{source}: {e}")))?;
                (
                    Kind::Symlink(t.to_string_lossy().into_owned()),
                    false,
                    rel_s.clone(),
                )
            } else if ft.is_dir() {
                (Kind::Dir, false, rel_s.clone())
            } else if ft.is_file() {
                let raw = std::fs::read(ent.path())
                    .map_err(|e| Error::config(format!("{source}: {e}")))?;
                let exec = md.permissions().mode() & 0o111 != 0;
                if let Some(stripped) = rel_s.strip_suffix(SUFFIX) {
                    let text = String::from_utf8(raw)
                        .map_err(|_| Error::config(format!("{source}: template is not UTF-8")))?;
                    let rendered = render(ent.path(), &text, &ctx)?;
                    (
                        Kind::File {
                            data: rendered.into_bytes(),
                            exec,
                        },
                        true,
                        stripped.to_string(),
                    )
                } else {
                    (Kind::File { data: raw, exec }, false, rel_s.clone())
                }
            } else {
                return Err(Error::config(format!(
                    "{source}: only files, directories and symlinks may be in an overlay"
                )));
            };
            let path = format!("/{img_rel}");
            let (mut owner, mut group, mut mode) = (None, None, None);
            for (i, (m, r)) in rules.iter().enumerate() {
                if m.is_match(&path) {
                    used[i] = true;
                    owner = r.owner.clone().or(owner);
                    group = r.group.clone().or(group);
                    mode = r.mode.as_deref().and_then(parse_mode).or(mode);
                }
            }
            if matches!(kind, Kind::Symlink(_)) {
                // Symlinks have no mode of their own; owner and group still apply.
                mode = None;
            }
            entries.push(Entry {
                path,
                source,
                template,
                kind,
                owner,
                group,
                mode,
            });
        }
        if let Some(i) = used.iter().position(|u| !u) {
            let text = std::fs::read_to_string(&meta_path).unwrap_or_default();
            return Err(Error::config(format!(
                "{}:{}: key `path[{i}].glob`: {:?} matches no path in overlay `{name}`",
                meta_path.display(),
                rule_loc(&text, i),
                meta.path[i].glob
            )));
        }
        out.push(Overlay {
            name: name.clone(),
            dir,
            entries,
        });
    }
    Ok(out)
}

/// Feed every overlay file (names, modes, link targets, raw contents, metadata) to the hash.
pub fn hash_into(h: &mut Sha256, loaded: &Loaded) -> Result<()> {
    let repo = repo_dir(loaded);
    for name in &loaded.profile.overlays.list {
        let dir = repo.join("overlays").join(name);
        h.update(format!("\0overlay\0{name}\0").as_bytes());
        for ent in walkdir::WalkDir::new(&dir)
            .follow_links(false)
            .sort_by_file_name()
        {
            let ent = ent.map_err(|e| Error::config(format!("overlay {name}: {e}")))?;
            let relp = ent.path().strip_prefix(&dir).unwrap_or(ent.path());
            let md = std::fs::symlink_metadata(ent.path())
                .map_err(|e| Error::config(format!("{}: {e}", ent.path().display())))?;
            h.update(format!("{}\0{:o}\0", relp.display(), md.permissions().mode()).as_bytes());
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(ent.path())
                    .map_err(|e| Error::config(format!("{}: {e}", ent.path().display())))?;
                h.update(t.as_os_str().as_encoded_bytes());
            } else if md.is_file() {
                let data = std::fs::read(ent.path())
                    .map_err(|e| Error::config(format!("{}: {e}", ent.path().display())))?;
                h.update((data.len() as u64).to_le_bytes());
                h.update(&data);
            }
            h.update(b"\0");
        }
    }
    Ok(())
}

/// User and group names of the image (its own /etc/passwd and /etc/group, not the host's).
#[derive(Debug, Default, Clone)]
pub struct Ids {
    users: BTreeMap<String, u32>,
    groups: BTreeMap<String, u32>,
}

impl Ids {
    /// Read the image's account databases.
    pub fn read(root: &Rootfs) -> Ids {
        let parse = |p: &str| -> BTreeMap<String, u32> {
            root.read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let id = f.nth(1)?.parse().ok()?;
                    Some((name.to_string(), id))
                })
                .collect()
        };
        Ids {
            users: parse("/etc/passwd"),
            groups: parse("/etc/group"),
        }
    }

    fn resolve(map: &BTreeMap<String, u32>, v: &str) -> Option<u32> {
        v.parse().ok().or_else(|| map.get(v).copied())
    }
}

/// What applying the overlays did.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// Paths written, in order.
    pub paths: Vec<String>,
    /// Paths with explicitly declared owner/group/mode, as they should be in the image.
    pub declared: Vec<Declared>,
}

/// Copy the overlays into the image in order, recording provenance.
pub fn apply(root: &Rootfs, overlays: &[Overlay], prov: &mut Provenance) -> Result<Applied> {
    let ids = Ids::read(root);
    let mut applied = Applied::default();
    let mut declared: BTreeMap<String, Declared> = BTreeMap::new();
    for ov in overlays {
        let meta_file = ov.dir.join(META_FILE);
        for e in &ov.entries {
            let uid_s = e.owner.clone().unwrap_or_else(|| "root".into());
            let gid_s = e.group.clone().unwrap_or_else(|| "root".into());
            let uid = Ids::resolve(&ids.users, &uid_s).ok_or_else(|| {
                Error::config(format!(
                    "{}: owner `{uid_s}` (for {}) is not a user in the image's /etc/passwd",
                    meta_file.display(),
                    e.path
                ))
            })?;
            let gid = Ids::resolve(&ids.groups, &gid_s).ok_or_else(|| {
                Error::config(format!(
                    "{}: group `{gid_s}` (for {}) is not a group in the image's /etc/group",
                    meta_file.display(),
                    e.path
                ))
            })?;
            let by = format!(
                "overlay {} ({}{})",
                ov.name,
                e.source,
                if e.template { ", rendered" } else { "" }
            );
            let mode = match &e.kind {
                Kind::Dir => {
                    let existed = root.lstat(&e.path).is_some_and(|m| m.is_dir());
                    root.mkdir_all(&e.path)?;
                    // Existing directories (/etc, /var/log, /tmp) keep theirs unless declared.
                    if existed && e.mode.is_none() && e.owner.is_none() && e.group.is_none() {
                        continue;
                    }
                    let mode = e.mode.unwrap_or(0o755);
                    // Owner first: a chown clears setuid/setgid set before it.
                    root.chown(&e.path, uid, gid)?;
                    root.chmod(&e.path, mode)?;
                    if !existed {
                        prov.record(&e.path, by.clone());
                    }
                    Some(mode)
                }
                Kind::File { data, exec } => {
                    if root.lstat(&e.path).is_some_and(|m| m.is_dir()) {
                        return Err(Error::config(format!("{}: {} is a directory in the image (from the base or an earlier overlay)", e.source, e.path)));
                    }
                    let mode = e.mode.unwrap_or(if *exec { 0o755 } else { 0o644 });
                    root.write(&e.path, data, mode)?;
                    // write() is subject to the umask; set the exact mode afterwards, and
                    // after the owner: a chown clears setuid/setgid.
                    root.chown(&e.path, uid, gid)?;
                    root.chmod(&e.path, mode)?;
                    prov.record(&e.path, by.clone());
                    Some(mode)
                }
                Kind::Symlink(target) => {
                    if root.lstat(&e.path).is_some_and(|m| m.is_dir()) {
                        return Err(Error::config(format!(
                            "{}: {} is a directory in the image, cannot replace it with a symlink",
                            e.source, e.path
                        )));
                    }
                    root.symlink(target, &e.path)?;
                    root.chown(&e.path, uid, gid)?;
                    prov.record(&e.path, by.clone());
                    None
                }
            };
            applied.paths.push(e.path.clone());
            if (e.owner.is_some() || e.group.is_some() || e.mode.is_some())
                && !matches!(e.kind, Kind::Symlink(_))
            {
                declared.insert(
                    e.path.clone(),
                    Declared {
                        path: e.path.clone(),
                        owner: uid_s,
                        group: gid_s,
                        mode: mode.map(|m| format!("{m:o}")).unwrap_or_default(),
                    },
                );
            } else {
                // A later overlay without rules resets an earlier declaration.
                declared.remove(&e.path);
            }
        }
    }
    applied.declared = declared.into_values().collect();
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_variables_in_tags_only() {
        let t = "images: x\nimage: {{ images.gateway }}\n{% if images.gatway %}x{% endif %}\n";
        assert_eq!(locate_var(t, "images.gatway"), (3, 7));
        assert_eq!(locate_var(t, "images.gateway"), (2, 11));
        assert_eq!(
            undefined_variable("Failed: Variable `a.b` not found in context"),
            Some("a.b".into())
        );
    }

    #[test]
    fn templates_cannot_reach_the_build_host() {
        let mut ctx = tera::Context::new();
        ctx.insert("now", "var");
        let p = Path::new("overlays/x/etc/motd.tera");
        for (text, f, line, col) in [
            ("a\nhome={{ get_env(name=\"HOME\") }}\n", "get_env", 2, 9),
            ("{% set t = now() %}{{ t }}", "now", 1, 12),
            (
                "x\ny\n{% if false %}{{ get_random (start=1, end=9) }}{% endif %}",
                "get_random",
                3,
                18,
            ),
        ] {
            let e = render(p, text, &ctx).unwrap_err();
            let m = e.to_string();
            assert!(
                m.starts_with(&format!("overlays/x/etc/motd.tera:{line}:{col}: `{f}()` is not allowed in overlay templates: ")),
                "{m}"
            );
            assert_eq!(e.exit_code(), 2);
        }
        // A variable of the same name, and other functions, still work.
        assert_eq!(
            render(
                p,
                "{{ now }} {% for i in range(end=2) %}{{ i }}{% endfor %}",
                &ctx
            )
            .unwrap(),
            "var 01"
        );
        // The engine itself refuses them too.
        for (f, _) in HOST_FUNCTIONS {
            let e = engine()
                .render_str(&format!("{{{{ {f}() }}}}"), &ctx)
                .unwrap_err();
            assert!(
                err_chain(&e).contains(&format!("`{f}()` is not allowed")),
                "{e}"
            );
        }
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0640"), Some(0o640));
        assert_eq!(parse_mode("2750"), Some(0o2750));
        assert_eq!(parse_mode("0999"), None);
        assert_eq!(parse_mode("77777"), None);
    }
}
