//! The audit's content rules, and the walk through container archives: what a file's bytes
//! must not contain (key blocks, token shapes, credential files, the values of secret
//! slots), applied to whole files, to files too large to hold (in overlapping windows), and
//! to every file of every layer of a baked OCI/docker archive (gzip, zstd or plain tar).
//!
//! Rules report a kind of thing, never the matched bytes.

use crate::profile::secrets::SecretsFile;
use base64::Engine;
use md5::Digest as _;
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use sha2::Sha256;
use std::collections::{BTreeSet, HashMap};
use std::io::Read;

/// The slot table the image ships (one slot per line, `|`-separated, no values).
pub const SLOTS_PATH: &str = "/usr/lib/clawimg/secrets.slots";

/// Files up to this size are read whole; larger ones are scanned in windows of this size.
pub const WINDOW: usize = 64 << 20;
/// Bytes each window repeats from the one before, so a match across the seam is seen.
const OVERLAP: usize = 64 << 10;

/// Token shapes: (regex, what). Anything matching is a `token-shape` finding.
const TOKEN_RULES: &[(&str, &str)] = &[
    (
        r"\bsk-ant-[A-Za-z0-9_-]{20,}",
        "Anthropic API key shape (sk-ant-)",
    ),
    (
        r"\bsk-(?:proj-)?[A-Za-z0-9][A-Za-z0-9_-]{31,}",
        "OpenAI-style API key shape (sk-)",
    ),
    (
        r"\bgh[pousr]_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{60,}",
        "GitHub token shape (ghp_)",
    ),
    (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "AWS access key id shape"),
    (
        r"\b[0-9]{8,10}:AA[A-Za-z0-9_-]{33}(?:[^A-Za-z0-9_-]|$)",
        "Telegram bot token shape",
    ),
    (
        r"\bxox[abpr]-[0-9]{6,}-[A-Za-z0-9-]{10,}",
        "Slack token shape (xoxb-/xoxp-/xoxa-/xoxr-)",
    ),
    (
        r"\bxapp-[0-9]-[A-Z0-9]{6,}-[0-9]{6,}-[A-Za-z0-9]{20,}",
        "Slack app token shape (xapp-)",
    ),
    (r"\bAIza[0-9A-Za-z_-]{35}", "Google API key shape (AIza)"),
    (
        r"\b(?:sk|rk)_live_[0-9A-Za-z]{20,}",
        "Stripe live key shape (sk_live_/rk_live_)",
    ),
    (
        r#"(?i)aws_?secret_?access_?key["']?[ \t]*[:=][ \t]*["']?[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+=]|$)"#,
        "AWS secret access key (aws_secret_access_key)",
    ),
    (
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}[^A-Za-z0-9/+]{1,80}[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+=]|$)",
        "AWS secret access key (40 base64 characters next to an access key id)",
    ),
];

/// What one rule found in one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    /// Rule name (see `audit::Finding::rule`).
    pub rule: &'static str,
    /// What kind of thing (never the value).
    pub what: String,
    /// A shape rule: public when the file is exactly as its package ships it.
    pub shape: bool,
}

/// The hits in one file, and the file's digests when a shape rule fired (to ask whether a
/// package ships exactly these bytes).
#[derive(Debug, Default)]
pub struct Scanned {
    /// Every hit, deduplicated.
    pub hits: Vec<Hit>,
    /// md5 (hex) of the whole file, when a shape rule fired.
    pub md5: Option<String>,
    /// sha256 (unpadded base64url, as in a Python wheel's RECORD), when a shape rule fired.
    pub sha256_b64: Option<String>,
}

impl Scanned {
    /// Drop the shape hits when `shipped` says the bytes are a package's own.
    pub fn exempt(&mut self, shipped: bool) {
        if shipped {
            self.hits.retain(|h| !h.shape);
        }
    }
}

/// One slot of the image's slot table.
#[derive(Debug, Clone)]
pub struct SlotSpec {
    /// Slot name.
    pub name: String,
    /// Destination file.
    pub file: String,
    /// Env key, when the slot is one line of `file`.
    pub env: Option<String>,
    /// `required`, `optional` or a generate recipe (`hex:32`, `base64:N`, `alnum:N`, `uuid`).
    pub kind: String,
    /// The value is written into `file` as it is (no other column says how it is applied).
    pub verbatim: bool,
}

/// Parse the slot table (`name|file|env|owner|group|mode|kind[|apply]`). A slot with an
/// `apply` other than `-` is applied by a tool (a password hash through chpasswd), so its
/// file holding other content is no finding.
pub fn parse_slots(text: &str) -> Vec<SlotSpec> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.len() >= 7).then(|| SlotSpec {
                name: f[0].into(),
                file: f[1].into(),
                env: (f[2] != "-").then(|| f[2].to_string()),
                kind: f[6].into(),
                verbatim: f.get(7).is_none_or(|a| a.trim() == "-"),
            })
        })
        .collect()
}

/// The value format a generate recipe produces, as a regex (none for supplied slots).
pub fn value_format(kind: &str) -> Option<String> {
    if kind == "uuid" {
        return Some(
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}".into(),
        );
    }
    let (k, n) = kind.split_once(':')?;
    let n: usize = n.parse().ok()?;
    match k {
        "hex" => Some(format!("[0-9a-fA-F]{{{}}}", 2 * n)),
        "alnum" => Some(format!("[A-Za-z0-9]{{{n}}}")),
        "base64" => {
            let chars = (4 * n).div_ceil(3);
            let pad = (3 - n % 3) % 3;
            Some(format!("[A-Za-z0-9+/]{{{chars}}}={{0,{pad}}}"))
        }
        _ => None,
    }
}

struct SlotRule {
    name: String,
    file: String,
    key: Option<String>,
    /// `KEY=` with any value, for the slot's own destination.
    assigned: Option<Regex>,
    /// `KEY=` with a value of the slot's format, in any file.
    formatted: Option<Regex>,
}

/// The `--secrets` cross-check: one regex over every value, and (slot, value) to name a match.
type ValueMatcher = (Regex, Vec<(String, Vec<u8>)>);

/// Every content rule, compiled once.
pub struct Rules {
    private_key: Regex,
    tokens: RegexSet,
    jwt: Regex,
    env_hex: Regex,
    netrc: Regex,
    git_credentials: Regex,
    slot_keys: Option<Regex>,
    slots: Vec<SlotRule>,
    values: Option<ValueMatcher>,
}

fn assignment(key: &str, value: &str) -> Regex {
    // `KEY=v`, `export KEY=v`, `KEY: v` (YAML), `"KEY": "v"` (JSON), quoted or not.
    RegexBuilder::new(&format!(
        r#"(?m)^[ \t]*(?:export[ \t]+)?["']?{}["']?[ \t]*[=:][ \t]*["']?{value}["']?[ \t]*,?\r?$"#,
        regex::escape(key)
    ))
    .unicode(false)
    .build()
    .expect("slot regex")
}

impl Rules {
    /// The rules, with the image's slot table and, optionally, a node's secrets file.
    pub fn new(secrets: Option<&SecretsFile>, slots: &[SlotSpec]) -> Self {
        let private_key = RegexBuilder::new(
            r"-----BEGIN (?:(?:[A-Z0-9]+ )*PRIVATE KEY|PGP PRIVATE KEY BLOCK)-----\r?\n(?:[A-Za-z0-9-]+:[^\n]*\r?\n|\r?\n){0,6}[A-Za-z0-9+/=]{40,}",
        )
        .unicode(false)
        .build()
        .expect("private key regex");
        // ASCII word boundaries: a Unicode `\b` sends every binary file (non-ASCII bytes)
        // to the slow NFA engine; the token shapes are ASCII anyway.
        let tokens = RegexSetBuilder::new(TOKEN_RULES.iter().map(|(r, _)| *r))
            .unicode(false)
            .build()
            .expect("token regexes");
        let jwt =
            RegexBuilder::new(r"\beyJ[A-Za-z0-9_-]{6,}\.eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{16,}")
                .unicode(false)
                .build()
                .expect("jwt regex");
        let env_hex = Regex::new(
            r#"(?m)^[ \t]*(?:export[ \t]+)?[A-Za-z_][A-Za-z0-9_]*=["']?[0-9a-fA-F]{64}["']?[ \t]*\r?$"#,
        )
        .expect("env regex");
        let netrc = Regex::new(r"(?m)(?:^|[ \t])password[ \t]+\S").expect("netrc regex");
        let git_credentials =
            Regex::new(r"(?m)^[ \t]*[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@").expect("git regex");
        let slots: Vec<SlotRule> = slots
            .iter()
            .filter(|s| s.verbatim)
            .map(|s| SlotRule {
                name: s.name.clone(),
                file: s.file.clone(),
                key: s.env.clone(),
                assigned: s
                    .env
                    .as_deref()
                    .map(|k| assignment(k, r#"[^\s$'"`{][^'"\r\n]*?"#)),
                formatted: match (&s.env, value_format(&s.kind)) {
                    (Some(k), Some(f)) => Some(assignment(k, &format!("(?:{f})"))),
                    _ => None,
                },
            })
            .collect();
        let keys: BTreeSet<String> = slots
            .iter()
            .filter(|s| s.formatted.is_some())
            .filter_map(|s| s.key.as_deref().map(regex::escape))
            .collect();
        // A fast literal pre-check: the per-slot regexes run only where a key occurs.
        let slot_keys = (!keys.is_empty()).then(|| {
            RegexBuilder::new(&keys.into_iter().collect::<Vec<_>>().join("|"))
                .unicode(false)
                .build()
                .expect("slot key regex")
        });
        // Values shorter than 8 bytes would match by accident everywhere.
        let vals: Vec<(String, Vec<u8>)> = secrets
            .map(|s| {
                s.values()
                    .filter(|(_, v)| v.trim().len() >= 8)
                    .map(|(k, v)| (k.to_string(), v.trim().as_bytes().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let values = (!vals.is_empty()).then(|| {
            let alt: Vec<String> = vals
                .iter()
                .map(|(_, v)| regex::escape(&String::from_utf8_lossy(v)))
                .collect();
            let re = RegexBuilder::new(&alt.join("|"))
                .size_limit(64 << 20)
                .build()
                .expect("value regex");
            (re, vals)
        });
        Rules {
            private_key,
            tokens,
            jwt,
            env_hex,
            netrc,
            git_credentials,
            slot_keys,
            slots,
            values,
        }
    }
}

/// Whether `path` is an env file (`.env`, `*.env`, /etc/environment, /etc/default/*).
pub fn is_env_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    name == ".env"
        || name.ends_with(".env")
        || path == "/etc/environment"
        || path.starts_with("/etc/default/")
}

/// A JWT: three base64url segments whose first decodes to a JSON object naming an `alg`.
fn is_jwt(m: &[u8]) -> bool {
    let Some(header) = m.split(|&b| b == b'.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|v| v.get("alg").is_some())
}

/// A Docker client config whose `auths` hold a credential (`auth`, `identitytoken`,
/// `password`).
fn docker_auths(data: &[u8]) -> bool {
    if !data.windows(7).any(|w| w == b"\"auths\"") {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return false;
    };
    v.get("auths").and_then(|a| a.as_object()).is_some_and(|a| {
        a.values().any(|e| {
            ["auth", "identitytoken", "password"].iter().any(|k| {
                e.get(k)
                    .and_then(|x| x.as_str())
                    .is_some_and(|s| !s.is_empty())
            })
        })
    })
}

fn hit(rule: &'static str, what: impl Into<String>, shape: bool) -> Hit {
    Hit {
        rule,
        what: what.into(),
        shape,
    }
}

impl Rules {
    /// The content rules on `data`: the whole file when `whole`, else one window of it.
    fn hits(&self, path: &str, data: &[u8], whole: bool, out: &mut BTreeSet<Hit>) {
        if let Some(m) = self.private_key.find(data) {
            let what = if m.as_bytes().starts_with(b"-----BEGIN PGP") {
                "PGP private key block"
            } else {
                "PEM/OpenSSH private key block"
            };
            out.insert(hit("private-key", what, true));
        }
        for i in self.tokens.matches(data).iter() {
            out.insert(hit("token-shape", TOKEN_RULES[i].1, true));
        }
        if self.jwt.find_iter(data).any(|m| is_jwt(m.as_bytes())) {
            out.insert(hit("jwt", "JSON Web Token (header names an alg)", true));
        }
        let name = path.rsplit('/').next().unwrap_or("");
        if matches!(name, ".netrc" | "_netrc") && self.netrc.is_match(data) {
            out.insert(hit("credentials", ".netrc with a password", false));
        }
        if name == ".git-credentials" && self.git_credentials.is_match(data) {
            out.insert(hit(
                "credentials",
                ".git-credentials with a user and password",
                false,
            ));
        }
        if name == "config.json" && whole && docker_auths(data) {
            out.insert(hit(
                "credentials",
                "Docker config.json with registry credentials in `auths`",
                false,
            ));
        }
        if is_env_file(path) && self.env_hex.is_match(data) {
            out.insert(hit(
                "env-hex-token",
                "64-hex-digit value in an env file",
                false,
            ));
        }
        for s in self.slots.iter().filter(|s| s.file == path) {
            let filled = match &s.assigned {
                Some(re) => re.is_match(data),
                None => whole && !data.trim_ascii().is_empty(),
            };
            if filled {
                out.insert(hit(
                    "secret-slot",
                    format!(
                        "the destination of slot `{}` holds a value (each node's own, installed on first boot)",
                        s.name
                    ),
                    false,
                ));
            }
        }
        if self.slot_keys.as_ref().is_some_and(|k| k.is_match(data)) {
            for s in &self.slots {
                if s.formatted.as_ref().is_some_and(|re| re.is_match(data)) {
                    out.insert(hit(
                        "secret-slot",
                        format!(
                            "a value in the format of slot `{}` assigned to its key",
                            s.name
                        ),
                        false,
                    ));
                }
            }
        }
        if let Some((re, vals)) = &self.values {
            if let Some(m) = re.find(data) {
                let slot = vals
                    .iter()
                    .find(|(_, v)| v.as_slice() == m.as_bytes())
                    .map(|(k, _)| k.as_str())
                    .unwrap_or("?");
                let how = if whole && data.trim_ascii() == m.as_bytes() {
                    "equals"
                } else {
                    "contains"
                };
                out.insert(hit(
                    "secret-value",
                    format!("{how} the value of slot `{slot}` from --secrets"),
                    false,
                ));
            }
        }
    }

    /// Scan a whole file held in memory.
    pub fn scan_bytes(&self, path: &str, data: &[u8]) -> Scanned {
        let mut set = BTreeSet::new();
        self.hits(path, data, true, &mut set);
        let shape = set.iter().any(|h| h.shape);
        Scanned {
            hits: set.into_iter().collect(),
            md5: shape.then(|| hex::encode(md5::Md5::digest(data))),
            sha256_b64: shape.then(|| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data))
            }),
        }
    }

    /// Scan everything `r` yields: whole when it fits one window, else in overlapping
    /// windows (nothing is skipped for its size).
    pub fn scan_reader(&self, path: &str, r: impl Read) -> std::io::Result<Scanned> {
        self.scan_windows(path, r, WINDOW)
    }

    fn scan_windows(
        &self,
        path: &str,
        mut r: impl Read,
        window: usize,
    ) -> std::io::Result<Scanned> {
        let mut buf = Vec::new();
        (&mut r).take(window as u64 + 1).read_to_end(&mut buf)?;
        if buf.len() <= window {
            return Ok(self.scan_bytes(path, &buf));
        }
        let mut set = BTreeSet::new();
        let (mut md5, mut sha) = (md5::Md5::new(), Sha256::new());
        let mut fresh = 0;
        loop {
            md5.update(&buf[fresh..]);
            sha.update(&buf[fresh..]);
            self.hits(path, &buf, false, &mut set);
            buf = buf.split_off(buf.len() - OVERLAP.min(buf.len()));
            fresh = buf.len();
            let n = (&mut r)
                .take((window - fresh) as u64)
                .read_to_end(&mut buf)?;
            if n == 0 {
                break;
            }
        }
        let shape = set.iter().any(|h| h.shape);
        Ok(Scanned {
            hits: set.into_iter().collect(),
            md5: shape.then(|| hex::encode(md5.finalize())),
            sha256_b64: shape
                .then(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha.finalize())),
        })
    }
}

/// What the walk through one archive found.
#[derive(Debug, Default)]
pub struct ArchiveScan {
    /// (path, hit): paths are `ARCHIVE!ENTRY` for the archive's own entries and
    /// `ARCHIVE!LAYER!/PATH` for files inside a layer.
    pub hits: Vec<(String, Hit)>,
    /// (path, why) of what could not be scanned.
    pub skipped: Vec<(String, String)>,
    /// Files scanned inside the archive.
    pub files: u64,
}

#[derive(Default)]
struct Walk {
    out: ArchiveScan,
    /// (path inside the container filesystem, display path, hits), judged at the end.
    pending: Vec<(String, String, Scanned)>,
    /// Path -> md5 from the layers' `/var/lib/dpkg/info/*.md5sums`.
    dpkg: HashMap<String, String>,
    /// Path -> sha256 (base64url) from Python wheels' `*.dist-info/RECORD`.
    wheels: HashMap<String, String>,
}

#[derive(Debug, PartialEq)]
enum Format {
    Gzip,
    Zstd,
    Tar,
    Other(&'static str),
    Plain,
}

fn sniff(h: &[u8]) -> Format {
    if h.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else if h.len() >= 262 && &h[257..262] == b"ustar" {
        Format::Tar
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Format::Other("xz")
    } else if h.starts_with(b"BZh") {
        Format::Other("bzip2")
    } else {
        Format::Plain
    }
}

/// `a/b/../c` -> `a/c` (absolute paths).
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

impl Walk {
    /// Learn which files a package manager installed, with their digests.
    fn learn(&mut self, path: &str, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        if path.starts_with("/var/lib/dpkg/info/") && path.ends_with(".md5sums") {
            for l in text.lines() {
                if let Some((sum, p)) = l.split_once("  ") {
                    self.dpkg.insert(normalize(p), sum.to_string());
                }
            }
        } else if path.ends_with("/RECORD")
            && path
                .rsplit('/')
                .nth(1)
                .is_some_and(|d| d.ends_with(".dist-info"))
        {
            let base = path.rsplitn(3, '/').nth(2).unwrap_or("");
            for l in text.lines() {
                let f: Vec<&str> = l.rsplitn(3, ',').collect();
                if let [_, hash, rel] = f[..] {
                    if let Some(h) = hash.strip_prefix("sha256=") {
                        self.wheels
                            .insert(normalize(&format!("{base}/{rel}")), h.to_string());
                    }
                }
            }
        }
    }
}

impl Rules {
    /// Walk a baked image archive (docker-archive / OCI layout in one tar): its own entries
    /// are scanned, its layers decompressed (gzip, zstd) and every file in them scanned.
    /// A file exactly as a package in the same archive installed it (dpkg md5sums, a Python
    /// wheel's RECORD) is public, as on the root filesystem.
    pub fn scan_archive(&self, name: &str, mut r: impl Read) -> ArchiveScan {
        let mut w = Walk::default();
        if let Err(e) = self.walk_tar(name, &mut r, true, &mut w) {
            w.out.skipped.push((
                name.to_string(),
                format!("not readable as a tar archive past this point ({e})"),
            ));
        }
        for (inner, display, mut s) in std::mem::take(&mut w.pending) {
            let shipped = (s.md5.is_some() && w.dpkg.get(&inner) == s.md5.as_ref())
                || (s.sha256_b64.is_some() && w.wheels.get(&inner) == s.sha256_b64.as_ref());
            s.exempt(shipped);
            w.out
                .hits
                .extend(s.hits.into_iter().map(|h| (display.clone(), h)));
        }
        w.out
    }

    // `dyn Read`: a generic reader would nest a type per level of recursion.
    fn walk_tar(
        &self,
        prefix: &str,
        r: &mut dyn Read,
        outer: bool,
        w: &mut Walk,
    ) -> std::io::Result<()> {
        let mut ar = tar::Archive::new(r);
        for ent in ar.entries()? {
            let mut ent = ent?;
            if !ent.header().entry_type().is_file() {
                continue;
            }
            let name = String::from_utf8_lossy(&ent.path_bytes()).into_owned();
            let name = name
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_string();
            let mut head = Vec::with_capacity(512);
            (&mut ent).take(512).read_to_end(&mut head)?;
            let mut body = std::io::Cursor::new(head.clone()).chain(&mut ent);
            if !outer {
                let inner = normalize(&name);
                let display = format!("{prefix}!{inner}");
                w.out.files += 1;
                if inner.starts_with("/var/lib/dpkg/info/") || inner.ends_with("/RECORD") {
                    let mut data = vec![];
                    body.take(WINDOW as u64).read_to_end(&mut data)?;
                    w.learn(&inner, &data);
                    let s = self.scan_bytes(&inner, &data);
                    if !s.hits.is_empty() {
                        w.pending.push((inner, display, s));
                    }
                    continue;
                }
                let s = self.scan_reader(&inner, body)?;
                if !s.hits.is_empty() {
                    w.pending.push((inner, display, s));
                }
                continue;
            }
            let path = format!("{prefix}!{name}");
            let res = match sniff(&head) {
                Format::Gzip => self.walk_tar(
                    &path,
                    &mut flate2::read::MultiGzDecoder::new(body),
                    false,
                    w,
                ),
                Format::Zstd => zstd::Decoder::new(body)
                    .and_then(|mut d| self.walk_tar(&path, &mut d, false, w)),
                Format::Tar => self.walk_tar(&path, &mut body, false, w),
                Format::Other(kind) => {
                    w.out.skipped.push((
                        path.clone(),
                        format!(
                            "{kind}-compressed layer: not decompressed, its files are not scanned"
                        ),
                    ));
                    Ok(())
                }
                Format::Plain => {
                    w.out.files += 1;
                    self.scan_reader(&name, body).map(|s| {
                        w.out
                            .hits
                            .extend(s.hits.into_iter().map(|h| (path.clone(), h)))
                    })
                }
            };
            if let Err(e) = res {
                w.out.skipped.push((
                    path,
                    format!("not readable as a compressed tar layer ({e}): the rest of it is not scanned"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Shapes the tests plant; none of them is a real credential.
    pub(crate) const TELEGRAM: &str = "123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0";
    pub(crate) const PGP: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nComment: test\n\nlQOYBGVkZXYBCADG8xkzNqwF1pP3p0m8Tz9ZtqXkV7m5mJQz3nq0W1R2sA9b8c7d\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----\n";

    /// A signed-looking JWT whose header is `{"alg":"HS256","typ":"JWT"}`.
    pub(crate) fn jwt() -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.{}",
            b(r#"{"alg":"HS256","typ":"JWT"}"#),
            b(r#"{"sub":"node","iat":1700000000}"#),
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        )
    }

    fn rules_of(r: &Rules, path: &str, data: &[u8]) -> Vec<(&'static str, String)> {
        r.scan_bytes(path, data)
            .hits
            .into_iter()
            .map(|h| (h.rule, h.what))
            .collect()
    }

    #[test]
    fn content_rules() {
        let r = Rules::new(None, &[]);
        let pem = b"x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(r.private_key.is_match(pem));
        let enc = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,AB\n\nMIIEowIBAAKCAQEAx7y0l3b4Zs0h5yq9ZQmF1nq6cFzqJ8k2v0m4d8cQy5k3Jq1H\n";
        assert!(r.private_key.is_match(enc));
        // A binary carrying only the marker string (like ssh-keygen) is not a key.
        assert!(!r
            .private_key
            .is_match(b"\0-----BEGIN OPENSSH PRIVATE KEY-----\0%s\n\0"));
        assert!(r
            .tokens
            .is_match(b"ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz"));
        assert!(r
            .tokens
            .is_match(b"token: ghp_0123456789abcdefghijABCDEFGHIJ012345"));
        assert!(r.tokens.is_match(b"aws=AKIAIOSFODNN7EXAMPLE;"));
        assert!(!r
            .tokens
            .is_match(b"task-schedulerqueuelengthlimitforall and ask-me"));
        assert!(r
            .env_hex
            .is_match(format!("A=1\nTOKEN={}\n", "ab".repeat(32)).as_bytes()));
        assert!(!r
            .env_hex
            .is_match(format!("SUM={}0\n", "ab".repeat(32)).as_bytes()));
    }

    #[test]
    fn token_shapes_of_every_provider() {
        let r = Rules::new(None, &[]);
        let secret40 = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for (data, what) in [
            (format!("TELEGRAM_BOT_TOKEN={TELEGRAM}\n"), "Telegram"),
            (
                "slack: xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp".into(),
                "Slack token",
            ),
            (
                "xapp-1-A0123456789-1234567890123-abcdef0123456789abcdef0123456789".into(),
                "Slack app",
            ),
            (
                "key=AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW;".into(),
                "Google",
            ),
            ("STRIPE=sk_live_51H8abcdefghijklmnopqrstuv".into(), "Stripe"),
            ("rk_live_51H8abcdefghijklmnopqrstuv".into(), "Stripe"),
            (
                format!("[default]\naws_secret_access_key = {secret40}\n"),
                "aws_secret_access_key",
            ),
            (
                format!("AKIAIOSFODNN7EXAMPLE,{secret40}\n"),
                "next to an access key id",
            ),
        ] {
            let got = rules_of(&r, "/opt/x/conf", data.as_bytes());
            assert!(
                got.iter()
                    .any(|(rule, w)| *rule == "token-shape" && w.contains(what)),
                "{what} not found in {data:?}: {got:?}"
            );
        }
        // Look-alikes stay quiet: a URL port, a short key, a test-mode Stripe key, a PGP
        // public key, a dotted base64 run that is no JWT.
        for data in [
            "http://10.0.0.1:8080/AAfoo",
            "AIzaShort",
            "sk_test_51H8abcdefghijklmnopqrstuv",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBGVkZXYBCADG8xkzNqwF1pP3p0m8Tz9ZtqXkV7m5mJQz3nq0W1R2sA9b8c7d\n",
            "eyJzb21ldGhpbmc.eyJub3Rqc29u.aaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(rules_of(&r, "/opt/x/conf", data.as_bytes()), vec![], "{data}");
        }
        assert_eq!(
            rules_of(&r, "/root/key.asc", PGP.as_bytes()),
            vec![("private-key", "PGP private key block".to_string())]
        );
        assert_eq!(
            rules_of(
                &r,
                "/opt/app/session",
                format!("token: {}\n", jwt()).as_bytes()
            ),
            vec![("jwt", "JSON Web Token (header names an alg)".to_string())]
        );
    }

    #[test]
    fn credential_files_by_name_and_content() {
        let r = Rules::new(None, &[]);
        let cred = |p: &str, d: &str| {
            rules_of(&r, p, d.as_bytes())
                .iter()
                .any(|(rule, _)| *rule == "credentials")
        };
        assert!(cred(
            "/root/.netrc",
            "machine api.example.com\n  login me\n  password hunter22\n"
        ));
        assert!(!cred("/root/.netrc", "machine api.example.com login me\n"));
        assert!(cred(
            "/home/a/.git-credentials",
            "https://me:s3cretvalue@git.example.com\n"
        ));
        assert!(!cred(
            "/home/a/.git-credentials",
            "https://git.example.com\n"
        ));
        assert!(cred(
            "/root/.docker/config.json",
            r#"{"auths": {"registry.example.com": {"auth": "bWU6c2VjcmV0"}}}"#
        ));
        assert!(!cred(
            "/root/.docker/config.json",
            r#"{"auths": {"registry.example.com": {}}, "credsStore": "pass"}"#
        ));
        // The same text under another name is no credentials file.
        assert!(!cred("/usr/share/doc/x/netrc.txt", "password hunter22\n"));
    }

    #[test]
    fn slot_destinations_and_value_formats() {
        let slots = parse_slots(
            "# header\n\
             gateway_token|/opt/demo/.env|GATEWAY_TOKEN|root|root|0600|hex:32\n\
             api_key|/opt/demo/.env|API_KEY|root|root|0600|required\n\
             db_password|/etc/demo/db-password|-|daemon|daemon|0440|required\n\
             grafana|/opt/demo/.env|GRAFANA_PW|root|root|0600|alnum:32\n\
             admin_hash|/etc/shadow|-|root|root|0600|optional|passwd:adminclaw\n",
        );
        assert_eq!(slots.len(), 5);
        let r = Rules::new(None, &slots);
        let slot_hits = |p: &str, d: &str| -> Vec<String> {
            rules_of(&r, p, d.as_bytes())
                .into_iter()
                .filter(|(rule, _)| *rule == "secret-slot")
                .map(|(_, w)| w)
                .collect()
        };
        let hex = "0123456789abcdef".repeat(4);
        // A generated slot's format under its key, anywhere.
        let h = slot_hits("/etc/app.conf", &format!("x=1\nGATEWAY_TOKEN: \"{hex}\"\n"));
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h[0].contains("format of slot `gateway_token`"));
        let h = slot_hits(
            "/etc/app.conf",
            &format!("export GRAFANA_PW={}\n", "aB3".repeat(10) + "xy"),
        );
        assert!(h[0].contains("`grafana`"), "{h:?}");
        // References and placeholders are not values.
        assert!(slot_hits(
            "/opt/demo/docker-compose.yml",
            "      GATEWAY_TOKEN: \"${GATEWAY_TOKEN:-}\"\n      API_KEY: ${API_KEY}\n"
        )
        .is_empty());
        assert!(slot_hits("/opt/demo/.env", "API_KEY=\nGATEWAY_TOKEN=''\n").is_empty());
        // The destination itself holding any value.
        let h = slot_hits("/opt/demo/.env", "PORT=1\nAPI_KEY=whatever-was-typed\n");
        assert!(h[0].contains("destination of slot `api_key`"), "{h:?}");
        let h = slot_hits("/etc/demo/db-password", "pw\n");
        assert!(h[0].contains("destination of slot `db_password`"), "{h:?}");
        assert!(slot_hits("/etc/demo/db-password", "\n").is_empty());
        // Applied by a tool, not written as is: the file's own content is no value.
        assert!(slot_hits("/etc/shadow", "root:*:19000:0:99999:7:::\n").is_empty());
        assert_eq!(
            value_format("base64:32").unwrap(),
            "[A-Za-z0-9+/]{43}={0,1}"
        );
    }

    #[test]
    fn large_files_are_scanned_in_windows_across_the_seams() {
        let r = Rules::new(None, &[]);
        let window = 1 << 20;
        // Tokens straddling the first seam and at the very end of a 3.5-window file.
        let mut data = vec![b'.'; window * 7 / 2];
        let t = TELEGRAM.as_bytes();
        data[window - 10..window - 10 + t.len()].copy_from_slice(t);
        let j = jwt();
        let end = data.len() - j.len() - 1;
        data[end..end + j.len()].copy_from_slice(j.as_bytes());
        let s = r
            .scan_windows("/var/lib/big.db", &data[..], window)
            .unwrap();
        let rules: Vec<&str> = s.hits.iter().map(|h| h.rule).collect();
        assert_eq!(rules, vec!["jwt", "token-shape"], "{:?}", s.hits);
        assert_eq!(
            s.md5.unwrap(),
            hex::encode(md5::Md5::digest(&data)),
            "digest over the whole stream, each byte once"
        );
    }

    /// Append a regular file to a tar builder.
    pub(crate) fn tar_file(b: &mut tar::Builder<impl Write>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    }

    /// A layer: a tar of `files`.
    pub(crate) fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(vec![]);
        for (p, d) in files {
            tar_file(&mut b, p, d);
        }
        b.into_inner().unwrap()
    }

    /// An image archive as the build bakes it (OCI layout in a tar): a gzip layer holding a
    /// Telegram token and a packaged file with a token shape (with its dpkg md5sums), a
    /// zstd layer with a JWT, an xz "layer", and a config blob. Returns (archive, blob names).
    pub(crate) fn oci_archive() -> (Vec<u8>, [String; 3]) {
        use sha2::Digest as _;
        let shipped = b"example: ghp_0123456789abcdefghijABCDEFGHIJ012345\n";
        let md5sums = format!(
            "{}  usr/share/doc/tool/example.txt\n",
            hex::encode(md5::Md5::digest(shipped))
        );
        let l1 = layer(&[
            ("etc/bot.conf", format!("token={TELEGRAM}\n").as_bytes()),
            ("usr/share/doc/tool/example.txt", shipped),
            ("var/lib/dpkg/info/tool.md5sums", md5sums.as_bytes()),
        ]);
        let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        gz.write_all(&l1).unwrap();
        let l1 = gz.finish().unwrap();
        let l2 = zstd::encode_all(&layer(&[("app/session.txt", jwt().as_bytes())])[..], 3).unwrap();
        let l3 = [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3].to_vec();
        let name = |d: &[u8]| format!("blobs/sha256/{}", hex::encode(sha2::Sha256::digest(d)));
        let names = [name(&l1), name(&l2), name(&l3)];
        let mut b = tar::Builder::new(vec![]);
        tar_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        tar_file(&mut b, &names[0], &l1);
        tar_file(&mut b, &names[1], &l2);
        tar_file(&mut b, &names[2], &l3);
        tar_file(
            &mut b,
            "blobs/sha256/cfg",
            br#"{"config":{"Env":["PATH=/usr/bin"]}}"#,
        );
        (b.into_inner().unwrap(), names)
    }

    #[test]
    fn container_layers_are_decompressed_and_scanned() {
        let r = Rules::new(None, &[]);
        let (ar, names) = oci_archive();
        let a = r.scan_archive("/var/lib/clawimg/images/app.tar", &ar[..]);
        let got: Vec<(String, &str)> = a.hits.iter().map(|(p, h)| (p.clone(), h.rule)).collect();
        let img = "/var/lib/clawimg/images/app.tar";
        assert_eq!(
            got,
            vec![
                (format!("{img}!{}!/etc/bot.conf", names[0]), "token-shape"),
                (format!("{img}!{}!/app/session.txt", names[1]), "jwt"),
            ],
            "the packaged example is exempt, the rest is named by layer and path"
        );
        assert_eq!(a.skipped.len(), 1, "{:?}", a.skipped);
        assert_eq!(a.skipped[0].0, format!("{img}!{}", names[2]));
        assert!(a.skipped[0].1.contains("xz"));
        assert_eq!(a.files, 6);
        // Not a tar at all: said so.
        let a = r.scan_archive(
            "/x.tar",
            &b"not a tar archive, just text of some length"[..],
        );
        assert!(a.hits.is_empty());
    }
}
