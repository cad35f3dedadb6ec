//! Secret slots as a profile declares them (`[secrets.NAME]`) and the per-node values file
//! that fills them (`--secrets FILE`). A slot names a destination (a whole file, or one
//! `KEY=value` line of an env file), its owner, group and mode, whether a value is `required`
//! or may be generated on the node, and the units that must not start before it is filled.
//! Values reach a node as a *bundle* (text, values base64-encoded) written into the seed
//! partition by `clawimg seal`, or handed over as cloud-init user data.

use crate::error::{Error, Result};
pub use crate::profile::sections::secrets::{Slot, Slots};
use crate::profile::Loaded;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// First line of a bundle.
pub const BUNDLE_MAGIC: &str = "#clawimg-secrets v1";
/// Last line of a bundle (a truncated bundle is ignored by the node).
pub const BUNDLE_END: &str = "#end";

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_env_key(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Check a generate spec; returns an error text.
pub fn check_generate(spec: &str) -> std::result::Result<(), String> {
    if spec == "uuid" {
        return Ok(());
    }
    let Some((kind, n)) = spec.split_once(':') else {
        return Err(format!(
            "expected \"hex:N\", \"base64:N\", \"alnum:N\" or \"uuid\", found {spec:?}"
        ));
    };
    if !matches!(kind, "hex" | "base64" | "alnum") {
        return Err(format!(
            "unknown recipe {kind:?}: expected hex, base64, alnum or uuid"
        ));
    }
    match n.parse::<u32>() {
        Ok(n) if (8..=4096).contains(&n) => Ok(()),
        _ => Err(format!(
            "expected a length of 8..=4096 after `{kind}:`, found {n:?}"
        )),
    }
}

/// Semantic checks on the merged profile's slots; errors name the file and key.
pub fn validate(l: &Loaded) -> Result<()> {
    let file = l.files[0].display();
    let bad = |key: String, msg: String| Err(Error::config(format!("{file}: key `{key}`: {msg}")));
    let mut by_file: BTreeMap<&str, Vec<(&String, &Slot)>> = BTreeMap::new();
    for (name, s) in &l.profile.secrets {
        let k = |f: &str| format!("secrets.{name}.{f}");
        if !is_name(name) {
            return bad(
                format!("secrets.{name}"),
                "slot names are lowercase letters, digits and '_'".into(),
            );
        }
        if let Some(user) = &s.password_of {
            let mut names = account_names(&l.profile);
            names.push("root");
            if !names.contains(&user.as_str()) {
                return bad(
                    k("password_of"),
                    format!(
                        "expected a user the image has ({}), found {user:?}",
                        names.join(", ")
                    ),
                );
            }
            let conflicting = [
                ("file", !s.file.is_empty()),
                ("env", s.env.is_some()),
                ("generate", s.generate.is_some()),
            ];
            if let Some((f, _)) = conflicting.iter().find(|(_, set)| *set) {
                return bad(
                    k(f),
                    "a password slot (`password_of`) sets the user's password in /etc/shadow: it takes no `file`, `env` or `generate` (a generated password nobody knows would not help at the console)".into(),
                );
            }
            continue;
        }
        let clean = s.file.starts_with('/')
            && !s.file.ends_with('/')
            && !s.file.contains(['|', '\n', '\\', ' '])
            && s.file.split('/').all(|c| c != ".." && c != ".");
        if !clean {
            return bad(
                k("file"),
                format!(
                    "expected an absolute file path without '..', spaces or '|', found {:?}",
                    s.file
                ),
            );
        }
        if ["/proc/", "/sys/", "/dev/", "/run/", "/tmp/"]
            .iter()
            .any(|p| s.file.starts_with(p))
        {
            return bad(
                k("file"),
                format!(
                    "{:?} does not survive a reboot: use a path on the root filesystem",
                    s.file
                ),
            );
        }
        if let Some(e) = &s.env {
            if !is_env_key(e) {
                return bad(
                    k("env"),
                    format!("expected an environment variable name (A-Z, 0-9, _), found {e:?}"),
                );
            }
        }
        if !is_user(&s.owner) {
            return bad(
                k("owner"),
                format!("expected a user name, found {:?}", s.owner),
            );
        }
        if !is_user(&s.group) {
            return bad(
                k("group"),
                format!("expected a group name, found {:?}", s.group),
            );
        }
        if s.mode > 0o777 {
            return bad(
                k("mode"),
                format!("expected permission bits like 0o600, found {:#o}", s.mode),
            );
        }
        if s.mode & 0o007 != 0 {
            return bad(k("mode"), format!("{:#o} lets every user on the node read or change the secret: use 0o600 or 0o640", s.mode));
        }
        if s.required && s.generate.is_some() {
            return bad(
                k("generate"),
                "a slot is either `required` (the operator supplies it) or generated, not both"
                    .into(),
            );
        }
        if let Some(g) = &s.generate {
            if let Err(m) = check_generate(g) {
                return bad(k("generate"), m);
            }
        }
        for u in &s.units {
            let ok = u.contains('.') && !u.contains(['/', ' ', '|']) && !u.starts_with('.');
            if !ok {
                return bad(
                    k("units"),
                    format!("expected unit names like \"openclaw.service\", found {u:?}"),
                );
            }
        }
        by_file.entry(s.file.as_str()).or_default().push((name, s));
    }
    // Slots sharing a file must agree on how that file looks.
    for (path, slots) in by_file {
        if slots.len() < 2 {
            continue;
        }
        let (n0, s0) = slots[0];
        for (n, s) in &slots[1..] {
            if s.env.is_none() || s0.env.is_none() {
                return bad(format!("secrets.{n}.file"), format!("{path} is also slot `{n0}`: only env-line slots (`env = \"KEY\"`) can share a file"));
            }
            if (&s.owner, &s.group, s.mode) != (&s0.owner, &s0.group, s0.mode) {
                return bad(
                    format!("secrets.{n}.mode"),
                    format!(
                        "{path} is shared with slot `{n0}`: owner, group and mode must be the same"
                    ),
                );
            }
            if s.env == s0.env {
                return bad(
                    format!("secrets.{n}.env"),
                    format!(
                        "{path} {} is already slot `{n0}`",
                        s.env.as_deref().unwrap_or("")
                    ),
                );
            }
        }
    }
    Ok(())
}

/// A secrets file: slot values for one node. Holds the values; never print or log it.
pub struct SecretsFile {
    /// Where it was read from.
    pub path: std::path::PathBuf,
    /// Slot name -> value (empty strings dropped: the template's placeholders).
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a value must never reach a log through Debug.
        f.debug_struct("SecretsFile")
            .field("path", &self.path)
            .field("slots", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsToml {
    #[serde(default)]
    slots: BTreeMap<String, String>,
}

impl SecretsFile {
    /// Read a secrets file; refuses one readable or writable by group or others. Errors name
    /// the file, line and key, never a value.
    pub fn load(path: &Path) -> Result<SecretsFile> {
        use std::os::unix::fs::PermissionsExt;
        let md = std::fs::metadata(path)
            .map_err(|e| Error::config(format!("--secrets {}: {e}", path.display())))?;
        if !md.is_file() {
            return Err(Error::config(format!(
                "--secrets {}: not a regular file",
                path.display()
            )));
        }
        let mode = md.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::config(format!(
                "--secrets {}: mode {mode:04o} lets group or others read it; refusing to use it (chmod 600 {})",
                path.display(),
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("--secrets {}: {e}", path.display())))?;
        let de = toml::Deserializer::parse(&text).map_err(|e| Self::err(path, &text, &e))?;
        let parsed: SecretsToml = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let (line, col) = inner
                .span()
                .map(|s| crate::support::text::line_col(&text, s.start))
                .unwrap_or((1, 1));
            // toml's message can quote the offending value: keep only the kind of problem.
            let what = if inner.message().contains("unknown field") {
                "unknown key: expected only the table [slots]".to_string()
            } else {
                "expected a string value (slot = \"...\")".to_string()
            };
            Error::config(format!(
                "{}:{line}:{col}: key `{key}`: {what}",
                path.display()
            ))
        })?;
        let values = parsed
            .slots
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Ok(SecretsFile {
            path: path.to_path_buf(),
            values,
        })
    }

    fn err(path: &Path, text: &str, e: &toml::de::Error) -> Error {
        let (line, col) = e
            .span()
            .map(|s| crate::support::text::line_col(text, s.start))
            .unwrap_or((1, 1));
        // The parser's own message may echo the bad line; say where only.
        Error::config(format!(
            "{}:{line}:{col}: not valid TOML (see the format: clawimg secrets template PROFILE)",
            path.display()
        ))
    }

    /// Slot names that have a value.
    pub fn names(&self) -> Vec<&str> {
        self.values.keys().map(String::as_str).collect()
    }

    /// The values (for the bundle and the audit's cross-check).
    pub fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Check the values against the image's slots: unknown names, missing required slots,
    /// values an env file cannot hold. Messages name slots, never values.
    pub fn check(&self, slots: &Slots) -> Result<()> {
        let unknown: Vec<&str> = self
            .values
            .keys()
            .filter(|k| !slots.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(Error::config(format!(
                "{}: unknown slot(s) {} (the image declares: {})",
                self.path.display(),
                unknown.join(", "),
                slots.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let missing: Vec<&str> = slots
            .iter()
            .filter(|(n, s)| s.required && !self.values.contains_key(*n))
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(Error::config(format!(
                "{}: missing required secret slot(s): {} (nothing was written)",
                self.path.display(),
                missing.join(", ")
            )));
        }
        for (n, v) in &self.values {
            if let Some(user) = &slots[n].password_of {
                if !Slot::is_crypt_hash(v) {
                    return Err(Error::config(format!(
                        "{}: slot `{n}` is the console password of {user}: expected a crypt(5) hash such as `mkpasswd -m yescrypt` or `openssl passwd -6` prints ($y$… or $6$…), not the password itself",
                        self.path.display()
                    )));
                }
            }
            if slots[n].env.is_some() && v.contains(['\n', '\r', '\'', '\0']) {
                return Err(Error::config(format!(
                    "{}: slot `{n}` goes into an env file: its value must be one line without single quotes",
                    self.path.display()
                )));
            }
        }
        Ok(())
    }
}

/// The login names of the profile's declared users (admin first).
fn account_names(p: &crate::profile::Profile) -> Vec<&str> {
    let Some(u) = &p.users else { return vec![] };
    [
        u.admin.as_ref().map(|a| a.name.as_str()),
        u.runtime.as_ref().map(|r| r.name.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What `check` says about console recovery: which accounts can get a console password
/// through a `password_of` slot, or how to enable it when none can (their passwords stay
/// locked, so a provider's web console cannot log in when SSH is broken).
pub fn console_recovery(p: &crate::profile::Profile) -> Option<String> {
    let users = account_names(p);
    if users.is_empty() {
        return None;
    }
    let slots: Vec<String> = p
        .secrets
        .iter()
        .filter_map(|(n, s)| s.password_of.as_ref().map(|u| format!("{u} (slot `{n}`)")))
        .collect();
    Some(if slots.is_empty() {
        format!(
            "off: the passwords of {} are locked, so a provider's web console cannot log in if SSH breaks. \
             To enable it, declare a slot per user, e.g. [secrets.admin_password_hash] password_of = \"{}\", \
             and give each node a crypt hash at seal time (SSH stays key-only)",
            users.join(", "),
            users[0]
        )
    } else {
        format!(
            "{} when the node's secrets carry a crypt hash; without one the password stays locked",
            slots.join(", ")
        )
    })
}

/// Check a node name (it becomes the host name).
pub fn check_node(node: &str) -> Result<()> {
    let ok = !node.is_empty()
        && node.len() <= 63
        && !node.starts_with('-')
        && node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "--node {node:?}: expected a host name (letters, digits, '-', at most 63)"
        )))
    }
}

/// The bundle a node reads: magic line, `node=NAME`, `slot.NAME=BASE64` lines, end line.
pub fn bundle(secrets: &SecretsFile, node: Option<&str>) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut s = format!("{BUNDLE_MAGIC}\n");
    if let Some(n) = node {
        s.push_str(&format!("node={n}\n"));
    }
    for (k, v) in &secrets.values {
        s.push_str(&format!("slot.{k}={}\n", b64.encode(v.as_bytes())));
    }
    s.push_str(BUNDLE_END);
    s.push('\n');
    s.into_bytes()
}

fn toml_comment(s: &str) -> String {
    s.replace('\n', " ")
}

/// An empty secrets file for these slots, documented inline.
pub fn template(profile: &str, slots: &Slots) -> String {
    let mut s = format!(
        "# Secrets for images of profile `{profile}`: one file per node.\n\
         # Keep it mode 0600 (clawimg refuses a file readable by group or others) and out of git.\n\
         # Use: clawimg seal IMAGE --secrets FILE --node NAME -o NODE.raw\n\
         #   or clawimg secrets bundle IMAGE --secrets FILE --node NAME -o user-data (cloud-init NoCloud)\n\
         # Values are TOML strings; an empty string means \"not supplied\".\n\
         # `generate` slots left empty are generated on the node at first boot.\n\n[slots]\n"
    );
    if slots.is_empty() {
        s.push_str("# this profile declares no secret slots\n");
    }
    for (name, slot) in slots {
        if !slot.description.is_empty() {
            s.push_str(&format!("# {}\n", toml_comment(&slot.description)));
        }
        if slot.password_of.is_some() {
            s.push_str(
                "# The value is a password HASH, never the password: make it with\n#   mkpasswd -m yescrypt          (Debian/Ubuntu package `whois`)\n#   openssl passwd -6             (SHA-512 crypt)\n# and paste the $y$… or $6$… line. Only the console accepts it: SSH stays key-only.\n",
            );
        }
        s.push_str(&format!(
            "# {} -> {} ({}:{} {:04o})\n{name} = \"\"\n\n",
            slot.kind(),
            slot.destination(),
            slot.owner,
            slot.group,
            slot.mode
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Slots {
        let t: BTreeMap<String, Slot> = toml::from_str(
            "[api]\nfile = \"/opt/x/.env\"\nenv = \"API\"\nrequired = true\n[tok]\nfile = \"/opt/x/.env\"\nenv = \"TOK\"\ngenerate = \"hex:32\"\n[pem]\nfile = \"/etc/x.pem\"\n",
        )
        .unwrap();
        t
    }

    fn secrets(text: &str, mode: u32) -> Result<SecretsFile> {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        SecretsFile::load(&p)
    }

    #[test]
    fn password_slots_take_only_crypt_hashes() {
        let mut sl = slots();
        sl.insert(
            "pw".into(),
            toml::from_str("password_of = \"adminclaw\"\n").unwrap(),
        );
        let base = "[slots]\napi = \"v\"\n";
        let plain = secrets(&format!("{base}pw = \"hunter2-correct-horse\"\n"), 0o600).unwrap();
        let e = plain.check(&sl).unwrap_err();
        assert!(
            e.message.contains("slot `pw`")
                && e.message.contains("crypt(5) hash")
                && !e.message.contains("hunter2"),
            "{}",
            e.message
        );
        let yes = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7";
        let sha = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/";
        for h in [yes, sha] {
            let ok = secrets(&format!("{base}pw = \"{h}\"\n"), 0o600).unwrap();
            ok.check(&sl).unwrap();
        }
        let t = template("x", &sl);
        assert!(
            t.contains("mkpasswd -m yescrypt") && t.contains("password of adminclaw (/etc/shadow)"),
            "{t}"
        );
    }

    #[test]
    fn template_parses_back_and_lacks_required() {
        let t = template("x", &slots());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.toml");
        std::fs::write(&p, &t).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let f = SecretsFile::load(&p).unwrap();
        assert!(f.names().is_empty());
        let e = f.check(&slots()).unwrap_err();
        assert!(
            e.message.contains("missing required secret slot(s): api"),
            "{e}"
        );
    }

    #[test]
    fn group_readable_file_is_refused() {
        let e = secrets("[slots]\napi = \"v\"\n", 0o640).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("group or others"), "{e}");
    }

    #[test]
    fn errors_never_echo_values() {
        let e = secrets("[slots]\napi = 12345678\n", 0o600).unwrap_err();
        assert!(
            !e.message.contains("12345678") && e.message.contains("slots.api"),
            "{e}"
        );
        let e = secrets("[slots]\napi = \"sk-verysecret\nx\"\n", 0o600).unwrap_err();
        assert!(!e.message.contains("verysecret"), "{e}");
        let f = secrets("[slots]\napi = \"it's-secret\"\n", 0o600).unwrap();
        let e = f.check(&slots()).unwrap_err();
        assert!(
            !e.message.contains("secret\"") && e.message.contains("`api`"),
            "{e}"
        );
        assert!(!format!("{f:?}").contains("it's"));
    }

    #[test]
    fn bundle_round_trip() {
        let f = secrets("[slots]\napi = \"a b=c\"\npem = \"-----x\\n\"\n", 0o600).unwrap();
        f.check(&slots()).unwrap();
        let b = String::from_utf8(bundle(&f, Some("node1"))).unwrap();
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines[0], BUNDLE_MAGIC);
        assert_eq!(lines[1], "node=node1");
        assert_eq!(lines[2], "slot.api=YSBiPWM=");
        assert_eq!(*lines.last().unwrap(), BUNDLE_END);
        assert!(!b.contains("a b=c"));
    }

    #[test]
    fn generate_specs() {
        assert!(check_generate("hex:32").is_ok());
        assert!(check_generate("uuid").is_ok());
        assert!(check_generate("hex:2").is_err());
        assert!(check_generate("pin:8").is_err());
    }

    #[test]
    fn production_slots_are_valid() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"));
        let l = crate::profile::load("production", dir, &[]).unwrap();
        assert!(l.profile.secrets.len() >= 8);
        validate(&l).unwrap();
        assert!(l.profile.secrets["anthropic_api_key"].required);
        assert_eq!(
            l.profile.secrets["litellm_master_key"].generate.as_deref(),
            Some("hex:32")
        );
        assert!(l.profile.secrets["anthropic_api_key"]
            .units
            .iter()
            .any(|u| u == "openclaw-stack.service"));
    }
}
