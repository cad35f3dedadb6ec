//! `clawimg init NAME --from PARENT`: an operator's own profile, extending a shipped one,
//! with the settings only the operator can decide written out (from flags) or left as
//! commented lines that say what to fill in. The admin key is what the lockout lints ask
//! for first, so it is offered from `~/.ssh/*.pub` when there is one.

use crate::error::{Context, Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the operator chose on the command line; `None` leaves the setting commented.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// New profile name (`profiles/NAME.toml`).
    pub name: String,
    /// Profile it extends.
    pub from: String,
    /// Directory with the profiles.
    pub profiles_dir: PathBuf,
    /// Public key file for the admin user (`--admin-key`).
    pub admin_key: Option<PathBuf>,
    /// Look for `~/.ssh/*.pub` when no key file was given.
    pub find_key: bool,
    /// Public name of the gateway (`vars.domain`).
    pub domain: Option<String>,
    /// `tunnel`, `caddy` or `none` (`vars.reverse_proxy`).
    pub reverse_proxy: Option<String>,
    /// Address or CIDR the SSH rule admits instead of any (`firewall.rules.ssh.from`).
    pub admin_cidr: Option<String>,
    /// Gateway CPU limit (`vars.gateway_cpus`).
    pub gateway_cpus: Option<String>,
    /// Gateway memory limit, Docker's syntax (`vars.gateway_memory`).
    pub gateway_memory: Option<String>,
    /// Replace an existing file.
    pub force: bool,
}

/// What `init` wrote.
#[derive(Debug, Clone)]
pub struct Initialized {
    /// The profile file.
    pub path: PathBuf,
    /// Where the admin key came from (`None`: left as a placeholder).
    pub key_from: Option<PathBuf>,
    /// Settings left commented, by key.
    pub open: Vec<&'static str>,
}

/// Reverse proxies the production overlay renders.
const PROXIES: &[&str] = &["tunnel", "caddy", "none"];

/// Write the profile: every value checked first, then written atomically (never over an
/// existing file unless `force`).
pub fn init(o: &InitOptions) -> Result<Initialized> {
    let bad = |key: &str, msg: String| Error::config(format!("--{key}: {msg}"));
    if o.name.is_empty()
        || !o
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::config(format!(
            "profile name `{}`: use letters, digits, '-' and '_' (it becomes profiles/NAME.toml)",
            o.name
        )));
    }
    if o.name == o.from {
        return Err(Error::config(format!(
            "profile `{}` cannot extend itself: choose another name",
            o.name
        )));
    }
    let parent = o.profiles_dir.join(format!("{}.toml", o.from));
    if !parent.is_file() {
        return Err(Error::config(format!(
            "--from {}: no profile {} to extend",
            o.from,
            parent.display()
        )));
    }
    let path = o.profiles_dir.join(format!("{}.toml", o.name));
    if path.exists() && !o.force {
        return Err(Error::config(format!(
            "{} exists: edit it, or pass --force to replace it",
            path.display()
        )));
    }
    let (key, key_from) = match &o.admin_key {
        Some(f) => (Some(read_public_key(f)?), Some(f.clone())),
        None if o.find_key => match default_key() {
            Some(f) => (Some(read_public_key(&f)?), Some(f)),
            None => (None, None),
        },
        None => (None, None),
    };
    if let Some(p) = &o.reverse_proxy {
        if !PROXIES.contains(&p.as_str()) {
            return Err(bad(
                "reverse-proxy",
                format!("expected one of {}, found {p:?}", PROXIES.join(", ")),
            ));
        }
    }
    if let Some(d) = &o.domain {
        let ok = d.contains('.')
            && d.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            return Err(bad(
                "domain",
                format!("expected a DNS name like gw.example.org, found {d:?}"),
            ));
        }
    }
    if let Some(c) = &o.admin_cidr {
        if !is_cidr(c) {
            return Err(bad(
                "admin-cidr",
                format!("expected an address or CIDR like 203.0.113.0/24, found {c:?}"),
            ));
        }
    }
    if let Some(c) = &o.gateway_cpus {
        if !c.parse::<f64>().is_ok_and(|v| v > 0.0) {
            return Err(bad(
                "gateway-cpus",
                format!("expected a positive number of CPUs like 2.0, found {c:?}"),
            ));
        }
    }
    if let Some(m) = &o.gateway_memory {
        let digits = m.trim_end_matches(['b', 'k', 'm', 'g', 'B', 'K', 'M', 'G']);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad(
                "gateway-memory",
                format!("expected a size in Docker's syntax like 8G or 512M, found {m:?}"),
            ));
        }
    }
    let (text, open) = render(o, key.as_deref(), key_from.as_deref());
    write_atomic(&path, text.as_bytes(), o.force)?;
    Ok(Initialized {
        path,
        key_from,
        open,
    })
}

/// The profile's text, and the settings left commented.
fn render(
    o: &InitOptions,
    key: Option<&str>,
    key_from: Option<&Path>,
) -> (String, Vec<&'static str>) {
    let mut open = vec![];
    let mut t = String::new();
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let _ = writeln!(
        t,
        "# Site profile made by `clawimg init {} --from {}`. Everything not set here comes\n\
         # from {}.toml; arrays add to the parent's (\"!x\" removes x).\n\
         # `clawimg check {}` lists whatever is still missing.",
        o.name, o.from, o.from, o.name
    );
    let _ = writeln!(t, "extends = {}", q(&o.from));
    let _ = writeln!(
        t,
        "description = {}",
        q(&format!("{} (site profile)", o.name))
    );

    t.push_str(
        "\n# The admin's public SSH key: the only way in (password and root logins are off),\n\
         # so the build refuses to make an image without one.\n[users.admin]\n",
    );
    match key {
        Some(k) => {
            if let Some(f) = key_from {
                let _ = writeln!(t, "# from {}", f.display());
            }
            let _ = writeln!(t, "authorized_keys = [{}]", q(k));
        }
        None => {
            open.push("users.admin.authorized_keys");
            t.push_str("# authorized_keys = [\"ssh-ed25519 AAAA... you@laptop\"]\n");
        }
    }

    t.push_str(
        "\n# Who may reach SSH. The parent admits any address; a fixed admin network is a\n\
         # smaller target (brute force is still rate-limited by fail2ban).\n\
         [firewall.rules.ssh]\n",
    );
    match &o.admin_cidr {
        Some(c) => {
            let _ = writeln!(t, "from = [\"!any\", {}]", q(c));
        }
        None => {
            open.push("firewall.rules.ssh.from");
            t.push_str("# from = [\"!any\", \"203.0.113.0/24\"]\n");
        }
    }
    if o.reverse_proxy.as_deref() == Some("caddy") {
        t.push_str(
            "\n# Caddy answers on 80 (certificate challenges, redirect) and 443.\n\
             [firewall.rules.web]\naction = \"allow\"\nports = [80, 443]\nproto = \"tcp\"\nfrom = [\"any\"]\n",
        );
    }

    t.push_str("\n[vars]\n");
    let mut var =
        |t: &mut String, name: &'static str, v: &Option<String>, why: &str, example: &str| {
            let _ = writeln!(t, "# {why}");
            match v {
                Some(v) => {
                    let _ = writeln!(t, "{name} = {}", q(v));
                }
                None => {
                    open.push(match name {
                        "reverse_proxy" => "vars.reverse_proxy",
                        "domain" => "vars.domain",
                        "gateway_cpus" => "vars.gateway_cpus",
                        _ => "vars.gateway_memory",
                    });
                    let _ = writeln!(t, "# {name} = {}", q(example));
                }
            }
        };
    var(
        &mut t,
        "reverse_proxy",
        &o.reverse_proxy,
        "How the gateway is reached: \"tunnel\" (outbound Cloudflare Tunnel, no open port),\n# \"caddy\" (HTTPS on 80/443 for the domain below) or \"none\".",
        "tunnel",
    );
    var(
        &mut t,
        "domain",
        &o.domain,
        "Public name of the gateway (Caddy's site address; a tunnel routes it at Cloudflare).",
        "openclaw.example.org",
    );
    var(
        &mut t,
        "gateway_cpus",
        &o.gateway_cpus,
        "Gateway CPU limit: Docker refuses a limit above the host's CPU count.",
        "4.0",
    );
    var(
        &mut t,
        "gateway_memory",
        &o.gateway_memory,
        "Gateway memory limit (Docker's syntax); leave room for LiteLLM, Redis and the host.",
        "8G",
    );
    (t, open)
}

/// The first of `~/.ssh/id_ed25519.pub`, `id_ecdsa.pub`, `id_rsa.pub`, else any `*.pub`.
fn default_key() -> Option<PathBuf> {
    let ssh = PathBuf::from(std::env::var_os("HOME")?).join(".ssh");
    for n in ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"] {
        if ssh.join(n).is_file() {
            return Some(ssh.join(n));
        }
    }
    let mut any: Vec<PathBuf> = std::fs::read_dir(&ssh)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        .collect();
    any.sort();
    any.into_iter().next()
}

/// One public key line from `file`; a private key is refused (it must never enter a
/// profile, an image or a repository).
fn read_public_key(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::config(format!("--admin-key {}: {e}", file.display())))?;
    if text.contains("PRIVATE KEY") {
        return Err(Error::config(format!(
            "--admin-key {}: this is a private key; give the .pub file beside it",
            file.display()
        )));
    }
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let kind = line.split_whitespace().next().unwrap_or("");
    let known = kind.starts_with("ssh-")
        || kind.starts_with("ecdsa-sha2-")
        || kind.starts_with("sk-ssh-")
        || kind.starts_with("sk-ecdsa-");
    if !known || line.split_whitespace().count() < 2 {
        return Err(Error::config(format!(
            "--admin-key {}: expected an OpenSSH public key line (ssh-ed25519 AAAA… comment)",
            file.display()
        )));
    }
    Ok(line.to_string())
}

/// An IPv4/IPv6 address with an optional prefix length.
fn is_cidr(s: &str) -> bool {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let max = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    len.is_none_or(|l| l.parse::<u8>().is_ok_and(|n| n <= max))
}

/// Write through a temporary file in the same directory, renamed into place: readers see
/// the old file or the whole new one. Without `replace`, an existing file is never
/// overwritten, even one that appeared since the check.
fn write_atomic(path: &Path, data: &[u8], replace: bool) -> Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .ctx(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .ctx(|| format!("write {}", path.display()))?;
    // Profiles are meant to be read and committed: the temporary file's 0600 is too tight.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .ctx(|| format!("chmod {}", tmp.path().display()))?;
    if replace {
        tmp.persist(path)
            .map_err(|e| e.error)
            .ctx(|| format!("rename into {}", path.display()))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            Error::config(format!(
                "{}: {} (pass --force to replace it)",
                path.display(),
                e.error
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_profiles(dir: &Path) -> PathBuf {
        let p = dir.join("profiles");
        std::fs::create_dir_all(p.join("keyrings")).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        for f in [
            "base.toml",
            "hardened.toml",
            "production.toml",
            "keyrings/ubuntu-archive-keyring.gpg",
        ] {
            std::fs::copy(src.join(f), p.join(f)).unwrap();
        }
        // The overlays and units beside the profiles: the slot-use lint reads them.
        for d in ["overlays", "units"] {
            std::os::unix::fs::symlink(src.parent().unwrap().join(d), dir.join(d)).unwrap();
        }
        p
    }

    #[test]
    fn writes_a_loadable_profile_with_the_chosen_settings() {
        let d = tempfile::tempdir().unwrap();
        let profiles = repo_profiles(d.path());
        let key = d.path().join("me.pub");
        std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK me@laptop\n").unwrap();
        let o = InitOptions {
            name: "site".into(),
            from: "production".into(),
            profiles_dir: profiles.clone(),
            admin_key: Some(key),
            domain: Some("gw.example.org".into()),
            reverse_proxy: Some("caddy".into()),
            admin_cidr: Some("198.51.100.0/24".into()),
            gateway_cpus: Some("2.0".into()),
            gateway_memory: Some("6G".into()),
            ..Default::default()
        };
        let r = init(&o).unwrap();
        assert!(r.open.is_empty(), "{:?}", r.open);
        // The file is a profile: it loads with its parents, and the lints that need an
        // operator's decision are satisfied.
        let l = crate::profile::load("site", &profiles, &[]).unwrap();
        let p = &l.profile;
        let admin = p.users.as_ref().unwrap().admin.as_ref().unwrap();
        assert_eq!(
            admin.authorized_keys,
            vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK me@laptop".to_string()]
        );
        let fw = p.firewall.as_ref().unwrap();
        assert_eq!(fw.rules["ssh"].from, vec!["198.51.100.0/24".to_string()]);
        assert_eq!(fw.rules["web"].ports, vec![80, 443]);
        assert_eq!(p.vars["domain"].as_str(), Some("gw.example.org"));
        assert_eq!(p.vars["reverse_proxy"].as_str(), Some("caddy"));
        assert_eq!(p.vars["gateway_cpus"].as_str(), Some("2.0"));
        assert_eq!(p.vars["gateway_memory"].as_str(), Some("6G"));
        let open: Vec<_> = crate::profile::lints::run(p)
            .into_iter()
            .filter(|f| f.acknowledged.is_none())
            .map(|f| f.id)
            .collect();
        assert!(open.is_empty(), "{open:?}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&r.path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o644);

        // Never over an existing file without --force; with it, replaced whole.
        let before = std::fs::read(&r.path).unwrap();
        let again = InitOptions {
            domain: Some("other.example.org".into()),
            ..o.clone()
        };
        let e = init(&again).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("--force"), "{}", e.message);
        assert_eq!(std::fs::read(&r.path).unwrap(), before);
        init(&InitOptions {
            force: true,
            ..again
        })
        .unwrap();
        let text = std::fs::read_to_string(&r.path).unwrap();
        assert!(text.contains("other.example.org"), "{text}");
        let leftovers = std::fs::read_dir(&profiles)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                n.to_string_lossy().starts_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn without_a_key_the_placeholder_is_what_the_lints_flag() {
        let d = tempfile::tempdir().unwrap();
        let profiles = repo_profiles(d.path());
        let r = init(&InitOptions {
            name: "site".into(),
            from: "production".into(),
            profiles_dir: profiles.clone(),
            ..Default::default()
        })
        .unwrap();
        assert!(r.key_from.is_none());
        assert!(r.open.contains(&"users.admin.authorized_keys"));
        let text = std::fs::read_to_string(&r.path).unwrap();
        assert!(text.contains("# authorized_keys = ["), "{text}");
        let l = crate::profile::load("site", &profiles, &[]).unwrap();
        let ids: Vec<_> = crate::profile::lints::run(&l.profile)
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert!(ids.contains(&"ssh-allowusers-no-key"), "{ids:?}");
    }

    #[test]
    fn bad_values_are_refused_before_anything_is_written() {
        let d = tempfile::tempdir().unwrap();
        let profiles = repo_profiles(d.path());
        let base = InitOptions {
            name: "site".into(),
            from: "production".into(),
            profiles_dir: profiles.clone(),
            ..Default::default()
        };
        let private = d.path().join("id");
        std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n").unwrap();
        let cases = [
            InitOptions {
                admin_key: Some(private),
                ..base.clone()
            },
            InitOptions {
                admin_cidr: Some("10.0.0.0/33".into()),
                ..base.clone()
            },
            InitOptions {
                reverse_proxy: Some("nginx".into()),
                ..base.clone()
            },
            InitOptions {
                gateway_cpus: Some("lots".into()),
                ..base.clone()
            },
            InitOptions {
                from: "nope".into(),
                ..base.clone()
            },
            InitOptions {
                name: "../x".into(),
                ..base.clone()
            },
        ];
        for c in cases {
            let e = init(&c).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{}", e.message);
        }
        assert!(!profiles.join("site.toml").exists());
        assert!(is_cidr("2001:db8::/32") && is_cidr("203.0.113.7") && !is_cidr("x/8"));
    }
}
