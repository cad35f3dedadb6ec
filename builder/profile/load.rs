//! Loading a profile: each file checked against the schema on its own (errors name file,
//! line, column and key), parents merged in, `--var` and `--set` applied, then validated.

use crate::error::{Error, Problem, Problems, Result};
use crate::profile::schema::{Loaded, Profile};
use crate::support::text::{line_col, parse_size};
use std::path::{Path, PathBuf};

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
    let mut problems = Problems::default();
    let loaded = load_collecting(arg, profiles_dir, overrides, sets, &mut problems);
    problems.finish()?;
    loaded.ok_or_else(|| Error::config(format!("cannot load profile {arg}")))
}

/// [`load_with_sets`] that records every problem it finds in `problems` instead of stopping
/// at the first: each schema error of each file (the refused key is left out so the rest
/// is still checked) and each failed validation. Returns the profile whenever the files
/// could be read and parsed, even with problems recorded, so later checks (lints,
/// templates, pins) can add theirs; `None` when nothing further can be checked.
pub fn load_collecting(
    arg: &str,
    profiles_dir: &Path,
    overrides: &[String],
    sets: &[String],
    problems: &mut Problems,
) -> Option<Loaded> {
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
            problems.push_error(Error::config(format!(
                "{}:{loc}: key `extends`: extends cycle: {}",
                src.display(),
                names.join(" -> ")
            )));
            return None;
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                let what = match &from {
                    Some((src, loc)) => format!("{}:{loc}: key `extends`: ", src.display()),
                    None => String::new(),
                };
                problems.push_error(Error::config(format!(
                    "{what}profile `{}` not found: cannot read {}: {e} (profiles live in {})",
                    file.file_stem().unwrap_or_default().to_string_lossy(),
                    file.display(),
                    profiles_dir.display()
                )));
                return None;
            }
        };
        let table = check_file(&file, &text, problems)?;
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
        if let Err(e) = apply_var(&mut merged, ov) {
            problems.push_error(e);
        }
    }
    for set in sets {
        if let Err(e) = apply_set(&mut merged, set) {
            problems.push_error(e);
        }
    }
    // Each file passed the schema on its own; what the merge or an override broke is
    // reported the same way, one key at a time.
    let mut profile = None;
    for _ in 0..MAX_SCHEMA_PROBLEMS {
        match serde_path_to_error::deserialize::<_, Profile>(toml::Value::Table(merged.clone())) {
            Ok(p) => {
                profile = Some(p);
                break;
            }
            Err(e) => {
                let segs = segments(e.path());
                let msg = clean_message(e.inner().message());
                problems.push(Problem::at_key(
                    path.display().to_string(),
                    e.path().to_string(),
                    format!("after merging and overrides: {msg}"),
                ));
                if !remove_path(&mut merged, &segs, &msg) {
                    break;
                }
            }
        }
    }
    if let Some(p) = profile.as_mut() {
        if let Err(e) = apply_required_if(p, &path) {
            problems.push_error(e);
        }
        p.sources = read_sources(p, path.parent().unwrap_or(Path::new(".")));
    }
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
        profile: profile?,
    };
    validate(&loaded, problems);
    Some(loaded)
}

/// How many refused keys one file may report before the rest is left unchecked.
const MAX_SCHEMA_PROBLEMS: usize = 64;

/// A serde path as its segments: `Ok(name)` for a key, `Err(index)` for an array element.
fn segments(p: &serde_path_to_error::Path) -> Vec<std::result::Result<String, usize>> {
    use serde_path_to_error::Segment;
    p.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Ok(key.clone())),
            Segment::Enum { variant } => Some(Ok(variant.clone())),
            Segment::Seq { index } => Some(Err(*index)),
            Segment::Unknown => None,
        })
        .collect()
}

/// The field an `unknown field `X`` message names.
fn unknown_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("unknown field `")?.split('`').next()
}

/// Remove the value a schema error is about, so the rest of the table can be checked.
/// When the path ends at the table holding an unknown field, the field is removed.
/// Returns false when nothing could be removed (the error would repeat).
fn remove_path(
    t: &mut toml::Table,
    segs: &[std::result::Result<String, usize>],
    msg: &str,
) -> bool {
    fn at<'a>(
        v: &'a mut toml::Value,
        segs: &[std::result::Result<String, usize>],
    ) -> Option<&'a mut toml::Value> {
        let mut cur = v;
        for s in segs {
            cur = match (s, cur) {
                (Ok(k), toml::Value::Table(t)) => t.get_mut(k)?,
                (Err(i), toml::Value::Array(a)) => a.get_mut(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }
    let mut root = toml::Value::Table(std::mem::take(t));
    let removed = (|| {
        if let Some(f) = unknown_field(msg) {
            if let Some(toml::Value::Table(tt)) = at(&mut root, segs) {
                if tt.remove(f).is_some() {
                    return true;
                }
            }
        }
        let Some((last, parent)) = segs.split_last() else {
            return false;
        };
        match (last, at(&mut root, parent)) {
            (Ok(k), Some(toml::Value::Table(tt))) => tt.remove(k).is_some(),
            (Err(i), Some(toml::Value::Array(a))) if *i < a.len() => {
                a.remove(*i);
                true
            }
            _ => false,
        }
    })();
    if let toml::Value::Table(back) = root {
        *t = back;
    }
    removed
}

/// Where a key path is written in a TOML text: the key's line and column for an unknown
/// field (`at_key`), else the value's (the key's for a `[table]`).
fn span_of(
    text: &str,
    segs: &[std::result::Result<String, usize>],
    at_key: bool,
) -> Option<(usize, usize)> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut key_span = None;
    for s in segs {
        match s {
            Ok(k) => {
                let (key, it) = match item {
                    toml_edit::Item::Table(t) => t.get_key_value(k)?,
                    toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
                        t.get_key_value(k)?
                    }
                    _ => return None,
                };
                key_span = key.span();
                item = it;
            }
            Err(i) => {
                // An element's own span (or its table header's) is as close as it gets:
                // the path below an element is not followed.
                let span = match item {
                    toml_edit::Item::ArrayOfTables(a) => a.get(*i)?.span(),
                    toml_edit::Item::Value(toml_edit::Value::Array(a)) => a.get(*i)?.span(),
                    _ => None,
                };
                return span.map(|s| line_col(text, s.start));
            }
        }
    }
    let span = if at_key {
        key_span
    } else {
        item.span().or(key_span)
    };
    span.map(|s| line_col(text, s.start))
}

/// Where a dotted profile key is first written in a profile chain (child first):
/// (file, line, column). Used to place problems that name only a key.
pub fn locate(files: &[PathBuf], key: &str) -> Option<(String, usize, usize)> {
    let segs: Vec<std::result::Result<String, usize>> =
        key.split('.').map(|k| Ok(k.to_string())).collect();
    files.iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        // The longest prefix of the key the file writes: a lint about `firewall.rules`
        // of a profile that has no firewall section at all points nowhere.
        (1..=segs.len()).rev().find_map(|n| {
            span_of(&text, &segs[..n], false).map(|(l, c)| (f.display().to_string(), l, c))
        })
    })
}

fn resolve_relative(name: &str, dir: &Path) -> PathBuf {
    if name.ends_with(".toml") || name.contains('/') {
        dir.join(name)
    } else {
        dir.join(format!("{name}.toml"))
    }
}

/// Parse one file and check it against the schema: every refused key is one problem with
/// file:line:col and key path, and is left out of the returned table. `None` when the file
/// is not valid TOML.
fn check_file(path: &Path, text: &str, problems: &mut Problems) -> Option<toml::Table> {
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            problems.push_error(located(path, text, &e, None));
            return None;
        }
    };
    // The first error comes from the text itself (its span is exact); after a refused key
    // is removed, the rest is checked as a value and placed by its key path.
    let first = match toml::Deserializer::parse(text) {
        Ok(de) => serde_path_to_error::deserialize::<_, Profile>(de).err(),
        Err(e) => {
            problems.push_error(located(path, text, &e, None));
            return None;
        }
    };
    let Some(e) = first else {
        return Some(table);
    };
    problems.push_error(located(path, text, e.inner(), Some(&e.path().to_string())));
    let mut segs = segments(e.path());
    let mut msg = clean_message(e.inner().message());
    for _ in 0..MAX_SCHEMA_PROBLEMS {
        if !remove_path(&mut table, &segs, &msg) {
            break;
        }
        let Err(e) =
            serde_path_to_error::deserialize::<_, Profile>(toml::Value::Table(table.clone()))
        else {
            break;
        };
        segs = segments(e.path());
        msg = clean_message(e.inner().message());
        let at_key = unknown_field(&msg).is_some();
        let mut full = segs.clone();
        if let Some(f) = unknown_field(&msg) {
            if full.last() != Some(&Ok(f.to_string())) {
                full.push(Ok(f.to_string()));
            }
        }
        let (line, column) = span_of(text, &full, at_key).unzip();
        let key = e.path().to_string();
        problems.push(Problem {
            file: path.display().to_string(),
            line,
            column,
            key: (!key.is_empty() && key != ".").then_some(key),
            message: match line {
                Some(l) => format!(
                    "{msg}\n  {l:>4} | {}",
                    text.lines().nth(l - 1).unwrap_or("").trim_end()
                ),
                None => msg.clone(),
            },
        });
    }
    Some(table)
}

/// A deserializer's message on one line, in the words the profile's author uses.
fn clean_message(m: &str) -> String {
    m.trim()
        .replace('\n', " ")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected u16", "expected a non-negative integer")
        .replace("expected i64", "expected an integer")
}

fn located(path: &Path, text: &str, e: &toml::de::Error, key: Option<&str>) -> Error {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let msg = clean_message(e.message());
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

/// The source text of the profile's overlay files (by image path) and installed units (by
/// name), for the lints. Unreadable entries are left out: the overlay and unit stages
/// report those.
fn read_sources(p: &Profile, profiles_dir: &Path) -> std::collections::BTreeMap<String, String> {
    let repo = match profiles_dir.parent() {
        Some(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
        _ => profiles_dir.join(".."),
    };
    let mut out = std::collections::BTreeMap::new();
    for name in &p.overlays.list {
        let dir = repo.join("overlays").join(name);
        for e in walkdir::WalkDir::new(&dir)
            .sort_by_file_name()
            .into_iter()
            .flatten()
        {
            if !e.file_type().is_file() {
                continue;
            }
            let Ok(rel) = e.path().strip_prefix(&dir) else {
                continue;
            };
            let rel = rel.to_string_lossy();
            let image = format!("/{}", rel.strip_suffix(".tera").unwrap_or(&rel));
            if let Ok(t) = std::fs::read_to_string(e.path()) {
                out.insert(image, t);
            }
        }
    }
    for u in &p.units.install {
        if let Ok(t) = std::fs::read_to_string(repo.join("units").join(u)) {
            out.insert(u.clone(), t);
        }
    }
    out
}

/// Make a slot required when the feature its `required_if` names is on (after `--var`, so
/// `--var reverse_proxy=caddy` drops the tunnel token's requirement). A condition naming no
/// var is an error: a typo would silently leave the slot optional.
fn apply_required_if(p: &mut Profile, path: &Path) -> Result<()> {
    for (name, s) in p.secrets.iter_mut() {
        let Some(cond) = &s.required_if else { continue };
        let (var, want) = match cond.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (cond.trim(), None),
        };
        let Some(v) = p.vars.get(var) else {
            return Err(Error::config(format!(
                "{}: key `secrets.{name}.required_if`: no var `{var}` in [vars] (expected `VAR` or `VAR=VALUE`)",
                path.display()
            )));
        };
        let on = match (want, v) {
            (Some(w), toml::Value::String(x)) => x == w,
            (Some(w), other) => other.to_string() == w,
            (None, toml::Value::Boolean(b)) => *b,
            (None, toml::Value::String(x)) => !x.is_empty(),
            (None, _) => true,
        };
        if on && s.generate.is_none() {
            s.required = true;
        }
    }
    Ok(())
}

/// Semantic checks on the merged profile; each failed one is a problem naming the key.
fn validate(l: &Loaded, problems: &mut Problems) {
    let p = &l.profile;
    let file = l.files[0].display().to_string();
    let mut bad = |key: &str, msg: String| problems.push(Problem::at_key(file.clone(), key, msg));
    if p.base.suite != "noble" {
        bad(
            "base.suite",
            format!(
                "expected \"noble\" (Ubuntu 24.04), found {:?}",
                p.base.suite
            ),
        );
    }
    if p.base.keyring.is_empty() {
        bad(
            "base.keyring",
            "expected the path of the archive keyring (relative to the profiles directory)".into(),
        );
    }
    if p.base.keyring_sha256.len() != 64
        || !p.base.keyring_sha256.chars().all(|c| c.is_ascii_hexdigit())
    {
        bad(
            "base.keyring_sha256",
            "expected 64 hex digits (sha256 of the keyring file)".into(),
        );
    }
    if p.base
        .packages
        .iter()
        .any(|x| x.trim().is_empty() || x.contains(char::is_whitespace))
    {
        bad(
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
        bad(
            "base.packages",
            "expected a kernel package (linux-image-virtual or linux-image-generic)".into(),
        );
    }
    if p.image.size != "auto" && parse_size(&p.image.size).is_none() {
        bad(
            "image.size",
            format!(
                "expected \"auto\" or a size like \"3GiB\", found {:?}",
                p.image.size
            ),
        );
    }
    if !(32..=4096).contains(&p.image.esp_mib) {
        bad(
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
        bad(
            "image.hostname",
            format!("expected a host name (letters, digits, '-'), found {h:?}"),
        );
    }
    if let Err(e) = crate::profile::secrets::validate(l) {
        problems.push_error(e);
    }
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
    fn required_if_follows_the_feature_var() {
        let p = |vars: &str, cond: &str| -> (Profile, Result<()>) {
            let mut p: Profile = toml::from_str(&format!(
                "[vars]\n{vars}\n[secrets.t]\nfile = \"/x/.env\"\nenv = \"T\"\nrequired_if = \"{cond}\"\n"
            ))
            .unwrap();
            let r = apply_required_if(&mut p, Path::new("p.toml"));
            (p, r)
        };
        let on = |vars: &str, cond: &str| {
            let (p, r) = p(vars, cond);
            r.unwrap();
            p.secrets["t"].required
        };
        assert!(on("proxy = \"tunnel\"", "proxy=tunnel"));
        assert!(!on("proxy = \"caddy\"", "proxy=tunnel"));
        assert!(on("url = \"https://w\"", "url"));
        assert!(!on("url = \"\"", "url"));
        assert!(!on("flag = false", "flag"));
        let (_, r) = p("url = \"\"", "ulr");
        let e = r.unwrap_err();
        assert!(
            e.message.contains("secrets.t.required_if") && e.message.contains("no var `ulr`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn every_schema_error_of_a_file_is_reported_with_its_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.toml");
        let text = "[image]\nesp_mib = \"big\"\nsizee = \"3GiB\"\n\n[ssh]\nport = \"x\"\n\n[base]\nsuite = \"noble\"\n";
        std::fs::write(&f, text).unwrap();
        let mut problems = Problems::default();
        let table = check_file(&f, text, &mut problems).expect("the rest of the file");
        let got: Vec<(Option<usize>, Option<String>)> = problems
            .sorted()
            .into_iter()
            .map(|p| (p.line, p.key))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(2), Some("image.esp_mib".into())),
                (Some(3), Some("image.sizee".into())),
                (Some(6), Some("ssh.port".into())),
            ],
            "{:?}",
            problems.sorted()
        );
        // What the schema accepts is kept for the later checks.
        assert_eq!(table["base"]["suite"].as_str(), Some("noble"));
        assert!(table["image"].get("esp_mib").is_none());
        let e = problems.finish().unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.starts_with("3 problems found"), "{}", e.message);
        assert_eq!(e.problems().len(), 3);
    }

    #[test]
    fn keys_are_located_in_the_chain_child_first() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.toml"), d.path().join("b.toml"));
        std::fs::write(&a, "extends = \"b\"\n\n[ssh]\nport = 222\n").unwrap();
        std::fs::write(&b, "[ssh]\nport = 22\n[firewall]\nenabled = true\n").unwrap();
        let files = [a.clone(), b.clone()];
        let at = |k: &str| locate(&files, k).map(|(f, l, _)| (f, l));
        assert_eq!(at("ssh.port"), Some((a.display().to_string(), 4)));
        assert_eq!(at("firewall.rules"), Some((b.display().to_string(), 3)));
        assert_eq!(at("users.admin"), None);
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc", 3), (2, 2));
    }
}
