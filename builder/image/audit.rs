//! The no-secrets audit: reads the *finished* root filesystem straight out of the disk image
//! (read-only ext4 reader, no mount, no extraction) and reports anything secret or
//! node-specific. Runs at the end of every build and as `clawimg audit IMAGE`.
//!
//! Findings name the path and the rule, never the matched bytes.

use crate::error::{Error, Result};
use crate::profile::secrets::SecretsFile;
use ext4_view::{Ext4, Ext4Read, PathBuf as ExtPath};
use md5::Digest as _;
use regex::bytes::{Regex, RegexSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// History files removed from /root and /home/* by the scrub; the audit refuses an image that still has one.
pub const HISTORY: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".python_history",
    ".lesshst",
    ".viminfo",
    ".mysql_history",
    ".psql_history",
    ".wget-hsts",
];

/// Partition type GUID of the root ("Linux root x86-64").
pub const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
/// Files larger than this are not content-scanned (kernel images, initrds, databases).
pub const MAX_SCAN: u64 = 64 << 20;

/// One thing the audit found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Path inside the root filesystem.
    pub path: String,
    /// Rule that fired: `private-key`, `ssh-host-key`, `machine-id`, `token-shape`,
    /// `env-hex-token`, `secret-value` or `node-state`.
    pub rule: &'static str,
    /// What kind of thing it is (never the value).
    pub what: String,
}

/// The audit's result.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Findings, sorted by path.
    pub findings: Vec<Finding>,
    /// Regular files whose contents were scanned.
    pub files_scanned: u64,
}

impl Report {
    /// One line per finding.
    pub fn render(&self) -> String {
        self.findings
            .iter()
            .map(|f| format!("  {:<14} {}  ({})\n", f.rule, f.path, f.what))
            .collect()
    }
}

/// A byte range of a file (the root partition of a disk image).
struct Range {
    file: std::fs::File,
    offset: u64,
}

impl Ext4Read for Range {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.file.seek(SeekFrom::Start(self.offset + start))?;
        self.file.read_exact(dst)?;
        Ok(())
    }
}

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
];

/// The `--secrets` cross-check: one regex over every value, and (slot, value) to name a match.
type ValueMatcher = (Regex, Vec<(String, Vec<u8>)>);

struct Rules {
    private_key: Regex,
    tokens: RegexSet,
    env_hex: Regex,
    values: Option<ValueMatcher>,
}

impl Rules {
    fn new(secrets: Option<&SecretsFile>) -> Self {
        let private_key = Regex::new(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9-]+:[^\n]*\r?\n|\r?\n){0,4}[A-Za-z0-9+/=]{40,}",
        )
        .expect("private key regex");
        // ASCII word boundaries: a Unicode `\b` sends every binary file (non-ASCII bytes)
        // to the slow NFA engine; the token shapes are ASCII anyway.
        let tokens = regex::bytes::RegexSetBuilder::new(TOKEN_RULES.iter().map(|(r, _)| *r))
            .unicode(false)
            .build()
            .expect("token regexes");
        let env_hex =
            Regex::new(r#"(?m)^[ \t]*(?:export[ \t]+)?[A-Za-z_][A-Za-z0-9_]*=["']?[0-9a-fA-F]{64}["']?[ \t]*\r?$"#).expect("env regex");
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
            let re = regex::bytes::RegexBuilder::new(&alt.join("|"))
                .size_limit(64 << 20)
                .build()
                .expect("value regex");
            (re, vals)
        });
        Rules {
            private_key,
            tokens,
            env_hex,
            values,
        }
    }
}

fn is_env_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    name == ".env"
        || name.ends_with(".env")
        || path == "/etc/environment"
        || path.starts_with("/etc/default/")
}

/// Node state by path alone (no contents needed).
fn node_state(path: &str, len: u64) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or("");
    if path.starts_with("/etc/ssh/") && name.starts_with("ssh_host_") {
        return None; // its own rule
    }
    if path == "/var/lib/systemd/random-seed" || path == "/var/lib/random-seed" {
        return Some("random seed");
    }
    if path == "/var/lib/systemd/credential.secret" {
        return Some("systemd credential host secret");
    }
    if (path.starts_with("/var/lib/dhcp/")
        || path.starts_with("/var/lib/dhclient/")
        || path.starts_with("/var/lib/systemd/network/"))
        && (name.contains("lease"))
    {
        return Some("DHCP lease");
    }
    if (path.starts_with("/root/") || path.starts_with("/home/")) && HISTORY.contains(&name) {
        return Some("shell or tool history");
    }
    if path.starts_with("/var/lib/apt/lists/")
        && name != "lock"
        && !path.starts_with("/var/lib/apt/lists/partial/")
    {
        return Some("apt package list");
    }
    if path.starts_with("/var/cache/apt/") && (name.ends_with(".bin") || name.ends_with(".deb")) {
        return Some("apt cache");
    }
    if path.starts_with("/var/log/") && len > 0 {
        return Some("log file");
    }
    None
}

/// Path → md5 of every file dpkg installed, from `/var/lib/dpkg/info/*.md5sums`.
fn package_md5sums(fs: &Ext4) -> std::collections::HashMap<String, String> {
    let mut map = std::collections::HashMap::new();
    let Ok(rd) = fs.read_dir("/var/lib/dpkg/info") else {
        return map;
    };
    for ent in rd.flatten() {
        let p = ent.path();
        if !p.display().to_string().ends_with(".md5sums") {
            continue;
        }
        let Ok(text) = fs.read(&p) else { continue };
        for line in String::from_utf8_lossy(&text).lines() {
            if let Some((sum, path)) = line.split_once("  ") {
                map.insert(
                    format!("/{}", path.trim_start_matches('/')),
                    sum.to_string(),
                );
            }
        }
    }
    map
}

/// Open the root ext4 filesystem inside a raw disk image (one reader per thread: the
/// reader is not `Send`).
fn open_root(raw: &Path, offset: u64) -> Result<Ext4> {
    let file =
        std::fs::File::open(raw).map_err(|e| Error::config(format!("{}: {e}", raw.display())))?;
    Ext4::load(Box::new(Range { file, offset })).map_err(|e| {
        Error::failed(format!(
            "{}: cannot read the root ext4 filesystem: {e}",
            raw.display()
        ))
    })
}

fn ext_err(p: &ExtPath, e: ext4_view::Ext4Error) -> Error {
    Error::failed(format!("audit: {}: {e}", p.display()))
}

/// Audit the root filesystem of a raw disk image: one walk for the rules that need only
/// paths, then the contents of the regular files, split over the cores.
pub fn audit_image(raw: &Path, secrets: Option<&SecretsFile>) -> Result<Report> {
    let root = crate::image::layout::find_partition(raw, ROOT_TYPE)?;
    let offset = root.extent.offset();
    let fs = open_root(raw, offset)?;
    let mut report = Report::default();
    // Regular files whose contents are scanned.
    let mut files: Vec<(ExtPath, String)> = vec![];
    let mut stack = vec![ExtPath::new("/")];
    while let Some(dir) = stack.pop() {
        for ent in fs.read_dir(&dir).map_err(|e| ext_err(&dir, e))? {
            let ent = ent.map_err(|e| ext_err(&dir, e))?;
            let name = ent.file_name();
            if name.as_ref() == b"." || name.as_ref() == b".." {
                continue;
            }
            let p = ent.path();
            let ps = p.display().to_string();
            let ft = ent.file_type().map_err(|e| ext_err(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let mut add = |rule: &'static str, what: &str| {
                report.findings.push(Finding {
                    path: ps.clone(),
                    rule,
                    what: what.to_string(),
                })
            };
            if ps.starts_with("/etc/ssh/")
                && ps.rsplit('/').next().unwrap_or("").starts_with("ssh_host_")
            {
                add(
                    "ssh-host-key",
                    "SSH host key (each node makes its own on first boot)",
                );
            }
            if !ft.is_regular_file() {
                continue;
            }
            let md = ent.metadata().map_err(|e| ext_err(&p, e))?;
            if let Some(what) = node_state(&ps, md.len()) {
                add("node-state", what);
            }
            if md.len() > 0 && md.len() <= MAX_SCAN {
                files.push((p, ps));
            }
        }
    }
    drop(fs);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let rules = Rules::new(secrets);
    let scanned: Vec<Result<Vec<Finding>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (files, rules) = (&files, &rules);
                s.spawn(move || {
                    let fs = open_root(raw, offset)?;
                    let shipped = std::cell::OnceCell::new();
                    let mut found = vec![];
                    for (p, ps) in files.iter().skip(t).step_by(threads) {
                        scan_file(&fs, p, ps, rules, &shipped, &mut found)?;
                    }
                    Ok(found)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::failed("an audit thread panicked")))
            })
            .collect()
    });
    for r in scanned {
        report.findings.extend(r?);
    }
    report.files_scanned = files.len() as u64;
    report
        .findings
        .sort_by(|a, b| (&a.path, a.rule).cmp(&(&b.path, b.rule)));
    Ok(report)
}

/// The content rules on one regular file.
fn scan_file(
    fs: &Ext4,
    p: &ExtPath,
    ps: &str,
    rules: &Rules,
    shipped: &std::cell::OnceCell<std::collections::HashMap<String, String>>,
    found: &mut Vec<Finding>,
) -> Result<()> {
    let data = fs.read(p).map_err(|e| ext_err(p, e))?;
    let mut add = |rule: &'static str, what: &str| {
        found.push(Finding {
            path: ps.to_string(),
            rule,
            what: what.to_string(),
        })
    };
    if (ps == "/etc/machine-id" || ps == "/var/lib/dbus/machine-id")
        && !data.trim_ascii().is_empty()
    {
        add(
            "machine-id",
            "non-empty machine-id (must be empty: systemd makes one per node)",
        );
    }
    // A usable password hash is a secret like any other: console passwords reach a node
    // through a secret slot at first boot, never through the image.
    if ps == "/etc/shadow" || ps == "/etc/gshadow" {
        for user in with_password_hash(&data) {
            add(
                "password-hash",
                &format!("usable password hash for `{user}` (set it per node with a `password_of` secret slot)"),
            );
        }
    }
    // A file exactly as its Ubuntu package ships it is public (e.g. a TLS library's
    // built-in test key); shape rules only judge what the build made or changed. The md5
    // is taken only for a file a shape rule matched (almost none).
    let key = rules.private_key.is_match(&data);
    let tokens = rules.tokens.matches(&data);
    let from_package = (key || tokens.matched_any())
        && shipped
            .get_or_init(|| package_md5sums(fs))
            .get(ps)
            .is_some_and(|sum| *sum == hex::encode(md5::Md5::digest(&data)));
    if !from_package && key {
        add("private-key", "PEM/OpenSSH private key block");
    }
    if !from_package {
        for i in tokens.iter() {
            add("token-shape", TOKEN_RULES[i].1);
        }
    }
    if is_env_file(ps) && rules.env_hex.is_match(&data) {
        add("env-hex-token", "64-hex-digit value in an env file");
    }
    if let Some((re, vals)) = &rules.values {
        if let Some(m) = re.find(&data) {
            let slot = vals
                .iter()
                .find(|(_, v)| v.as_slice() == m.as_bytes())
                .map(|(k, _)| k.as_str())
                .unwrap_or("?");
            let whole = data.trim_ascii() == m.as_bytes();
            add(
                "secret-value",
                &format!(
                    "{} the value of slot `{slot}` from --secrets",
                    if whole { "equals" } else { "contains" }
                ),
            );
        }
    }
    Ok(())
}

/// Accounts of a shadow file whose password field holds a crypt hash (not `!`, `*` or empty).
fn with_password_hash(shadow: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(shadow)
        .lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let user = f.next()?;
            f.next()?.starts_with('$').then(|| user.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_hashes_are_found_locked_accounts_are_not() {
        let s = b"root:*:19000:0:99999:7:::\nadminclaw:!:19000::::::\nopenclaw:$y$j9T$abc$def:19000::::::\nx::1::::::\n";
        assert_eq!(with_password_hash(s), vec!["openclaw".to_string()]);
    }

    #[test]
    fn content_rules() {
        let r = Rules::new(None);
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
    fn node_state_paths() {
        assert_eq!(
            node_state("/var/lib/systemd/random-seed", 512),
            Some("random seed")
        );
        assert_eq!(
            node_state("/root/.bash_history", 3),
            Some("shell or tool history")
        );
        assert_eq!(node_state("/var/lib/apt/lists/lock", 0), None);
        assert_eq!(node_state("/var/log/syslog", 10), Some("log file"));
        assert_eq!(node_state("/var/log/README", 0), None);
        assert_eq!(node_state("/etc/hostname", 10), None);
    }
}
