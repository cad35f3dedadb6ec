//! A small OCI distribution client (pull only) on `ureq`: image references, registry
//! mirrors, anonymous/basic/bearer auth with docker `config.json` credentials, manifests and
//! indexes resolved to a platform, and blob downloads verified against their digest while
//! streaming, with retries (429/5xx/transport) and resume by HTTP range.

use crate::build::images::blobs::{self, BlobCache};
use crate::build::images::spec::Descriptor;
use crate::error::{Error, Result};
use crate::support::reference::{Reference, DOCKER_HUB, DOCKER_HUB_LEGACY};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Environment variable with registry mirrors, `HOST=URL` separated by commas.
pub const MIRROR_ENV: &str = "CLAWIMG_REGISTRY_MIRROR";

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// Manifests larger than this are refused (they are JSON documents of a few KiB).
const MAX_MANIFEST: u64 = 4 << 20;
const ATTEMPTS: u32 = 5;

/// Docker Hub's registry API host: `docker.io/...` names are pulled from here, as the
/// Docker CLI does.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";
/// Docker Hub's token service; the realm its registry names in its challenges.
pub const DOCKER_HUB_AUTH: &str = "auth.docker.io";
/// The token service's name for Docker Hub's registry (the `service` of its challenges).
pub const DOCKER_HUB_SERVICE: &str = "registry.docker.io";
/// The key Docker Hub credentials are stored under in docker `config.json` and credential
/// helpers (what `docker login` writes).
pub const DOCKER_HUB_LOGIN: &str = "https://index.docker.io/v1/";
/// Environment variable with extra token services trusted with a registry's credentials,
/// `REGISTRY=TOKEN_HOST` separated by commas.
pub const TOKEN_REALM_ENV: &str = "CLAWIMG_REGISTRY_TOKEN_REALMS";

/// Where requests for one registry go: `scheme://host[:port]` and an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host` or `http://127.0.0.1:5000`.
    pub base: String,
    /// Repository prefix on the mirror (`docker.io` for `http://m/docker.io`), may be empty.
    pub prefix: String,
}

impl Endpoint {
    /// `host[:port]`: the key of its credentials.
    fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(&self.base)
    }
    fn repo(&self, repository: &str) -> String {
        if self.prefix.is_empty() {
            repository.to_string()
        } else {
            format!("{}/{repository}", self.prefix)
        }
    }
    /// The URL of a manifest (`kind` = `manifests`) or blob (`blobs`) of a repository.
    pub fn url(&self, repository: &str, kind: &str, id: &str) -> String {
        format!("{}/v2/{}/{kind}/{id}", self.base, self.repo(repository))
    }
    /// Human-readable form for messages.
    pub fn show(&self) -> String {
        if self.prefix.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, self.prefix)
        }
    }
}

/// Registry mirrors, like containerd's `hosts.toml`: requests for a registry go to its mirror
/// (only: no fallback to the upstream, so an air-gapped build never leaks a request).
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    map: Vec<(String, Endpoint)>,
}

impl Mirrors {
    /// Parse `HOST=URL` items (`*` matches every registry). URLs may carry a path prefix.
    pub fn parse(items: &[String]) -> Result<Mirrors> {
        let mut map = vec![];
        for item in items
            .iter()
            .flat_map(|i| i.split(','))
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let bad = || {
                Error::config(format!(
                    "registry mirror `{item}`: expected HOST=URL, e.g. docker.io=https://mirror.example or *=http://127.0.0.1:5000"
                ))
            };
            let (host, url) = item.split_once('=').ok_or_else(bad)?;
            let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
            if !(scheme == "http" || scheme == "https") || rest.is_empty() || host.is_empty() {
                return Err(bad());
            }
            let (authority, prefix) = match rest.split_once('/') {
                Some((a, p)) => (a, p.trim_matches('/')),
                None => (rest, ""),
            };
            // `index.docker.io` is Docker Hub's legacy name, as in image references.
            let host = if host == DOCKER_HUB_LEGACY {
                DOCKER_HUB
            } else {
                host
            };
            map.push((
                host.to_string(),
                Endpoint {
                    base: format!("{scheme}://{authority}"),
                    prefix: prefix.to_string(),
                },
            ));
        }
        Ok(Mirrors { map })
    }

    /// The endpoint for a registry: its mirror; else Docker Hub's registry API for
    /// `docker.io` (its names are not its API host); else the registry itself over HTTPS.
    pub fn endpoint(&self, registry: &str) -> Endpoint {
        if let Some((_, e)) = self
            .map
            .iter()
            .find(|(h, _)| h == registry)
            .or_else(|| self.map.iter().find(|(h, _)| h == "*"))
        {
            return e.clone();
        }
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_REGISTRY
        } else {
            registry
        };
        Endpoint {
            base: format!("https://{host}"),
            prefix: String::new(),
        }
    }
}

/// `(scheme, host)` of an `http(s)://` URL, the host lowercased and without port; `None`
/// for anything else, including URLs with user information.
fn scheme_host(url: &str) -> Option<(&str, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        format!("[{}]", v6.split(']').next().unwrap_or(""))
    } else {
        authority.split(':').next().unwrap_or("").to_string()
    };
    Some((scheme, host.to_ascii_lowercase()))
}

fn loopback(host: &str) -> bool {
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

/// Whether credentials may travel to `url` for a registry reached at `ep`: over HTTPS, or
/// plain HTTP when both are on this machine's loopback (a test or a local mirror).
fn transport_ok(ep: &Endpoint, url: &str) -> std::result::Result<(), String> {
    let (ep_scheme, ep_host) = scheme_host(&ep.base).unwrap_or(("https", String::new()));
    let Some((scheme, host)) = scheme_host(url) else {
        return Err(format!("`{url}` is not a plain http(s) URL"));
    };
    if scheme == "https" || (ep_scheme == "http" && loopback(&ep_host) && loopback(&host)) {
        Ok(())
    } else {
        Err(format!(
            "`{url}` is plain http (credentials go over https only, or over http on this machine's loopback)"
        ))
    }
}

/// Whether the token service `realm` named by the registry at `ep` may receive that
/// registry's credentials: HTTPS (see [`transport_ok`]) and the registry's own host, Docker
/// Hub's token service for Docker Hub's registry, or a pairing the user configured.
pub fn realm_trusted(
    ep: &Endpoint,
    realm: &str,
    configured: &[(String, String)],
) -> std::result::Result<(), String> {
    transport_ok(ep, realm)?;
    let ep_host = scheme_host(&ep.base).map(|s| s.1).unwrap_or_default();
    let realm_host = scheme_host(realm).map(|s| s.1).unwrap_or_default();
    let known = ep_host == DOCKER_HUB_REGISTRY && realm_host == DOCKER_HUB_AUTH;
    let user = configured.iter().any(|(r, t)| {
        let r = r.to_ascii_lowercase();
        (r == ep_host || r == ep.host().to_ascii_lowercase()) && *t == realm_host
    });
    if realm_host == ep_host || known || user {
        Ok(())
    } else {
        Err(format!(
            "the token service `{realm}` is not on {} itself (to trust it, set {TOKEN_REALM_ENV}={}={realm_host})",
            ep.host(),
            ep.host()
        ))
    }
}

/// Parse `REGISTRY=TOKEN_HOST` items of [`TOKEN_REALM_ENV`].
pub fn parse_token_realms(value: &str) -> Result<Vec<(String, String)>> {
    let mut out = vec![];
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let pair = item
            .split_once('=')
            .filter(|(r, t)| !r.is_empty() && !t.is_empty() && !t.contains(['/', ':', '@']));
        let Some((r, t)) = pair else {
            return Err(Error::config(format!(
                "{TOKEN_REALM_ENV}: `{item}`: expected REGISTRY=TOKEN_HOST, e.g. registry.example.com=auth.example.com"
            )));
        };
        out.push((r.to_string(), t.to_ascii_lowercase()));
    }
    Ok(out)
}

/// Where a registry's credentials are kept.
#[derive(Debug, Clone, PartialEq)]
enum Stored {
    /// `auths.HOST.auth`: base64 `user:password`.
    Inline(String),
    /// A credential helper program, `docker-credential-NAME`.
    Helper(String),
}

/// One docker `config.json` (or containers `auth.json`): entries keyed by registry host.
#[derive(Debug, Default)]
struct AuthFile {
    path: PathBuf,
    auths: HashMap<String, String>,
    helpers: HashMap<String, String>,
    store: Option<String>,
}

/// `https://index.docker.io/v1/` -> `index.docker.io`; `ghcr.io` stays.
fn config_key(k: &str) -> String {
    let h = k
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    h.split('/').next().unwrap_or(h).to_ascii_lowercase()
}

/// The hosts a registry's credentials may be stored under, and the server name credential
/// helpers are asked for (Docker Hub's is its legacy login URL).
fn login_keys(host: &str) -> (Vec<String>, String) {
    if host == DOCKER_HUB_REGISTRY {
        (
            vec![
                DOCKER_HUB_LEGACY.into(),
                DOCKER_HUB.into(),
                DOCKER_HUB_REGISTRY.into(),
            ],
            DOCKER_HUB_LOGIN.into(),
        )
    } else {
        (vec![host.to_ascii_lowercase()], host.to_string())
    }
}

/// Credentials from docker `config.json` files: `auths.HOST.auth` (base64 `user:password`),
/// and credential helpers (`credHelpers.HOST`, `credsStore`), which are run only when a
/// registry asks for credentials.
#[derive(Debug, Default)]
pub struct Credentials {
    files: Vec<AuthFile>,
    found: Mutex<HashMap<String, Option<String>>>,
}

impl Credentials {
    /// Read `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`, `$REGISTRY_AUTH_FILE` and
    /// `$XDG_RUNTIME_DIR/containers/auth.json` (the first file with an entry for a host wins).
    pub fn load() -> Credentials {
        let mut files: Vec<PathBuf> = vec![];
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            files.push(PathBuf::from(d).join("config.json"));
        }
        if let Some(h) = std::env::var_os("HOME") {
            files.push(PathBuf::from(h).join(".docker/config.json"));
        }
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
            files.push(PathBuf::from(f));
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
            files.push(PathBuf::from(d).join("containers/auth.json"));
        }
        Credentials::from_files(&files)
    }

    /// Read these files (missing or unreadable ones are skipped).
    pub fn from_files(paths: &[PathBuf]) -> Credentials {
        let mut files = vec![];
        for f in paths {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let mut af = AuthFile {
                path: f.clone(),
                ..Default::default()
            };
            if let Some(map) = v["auths"].as_object() {
                for (k, e) in map {
                    if let Some(a) = e["auth"].as_str().filter(|a| !a.is_empty()) {
                        af.auths
                            .entry(config_key(k))
                            .or_insert_with(|| a.to_string());
                    }
                }
            }
            if let Some(map) = v["credHelpers"].as_object() {
                for (k, h) in map {
                    if let Some(h) = h.as_str().filter(|h| !h.is_empty()) {
                        af.helpers
                            .entry(config_key(k))
                            .or_insert_with(|| h.to_string());
                    }
                }
            }
            af.store = v["credsStore"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            files.push(af);
        }
        Credentials {
            files,
            found: Mutex::new(HashMap::new()),
        }
    }

    /// Where the credentials for `host` (`host[:port]` of the endpoint) are kept, with the
    /// file that says so: `credHelpers` first, then `auths`, then `credsStore`, file by file.
    fn stored(&self, host: &str) -> Option<(Stored, &Path)> {
        let (keys, _) = login_keys(host);
        for f in &self.files {
            for k in &keys {
                if let Some(h) = f.helpers.get(k) {
                    return Some((Stored::Helper(h.clone()), &f.path));
                }
                if let Some(a) = f.auths.get(k) {
                    return Some((Stored::Inline(a.clone()), &f.path));
                }
            }
            if let Some(s) = &f.store {
                return Some((Stored::Helper(s.clone()), &f.path));
            }
        }
        None
    }

    /// `Basic ...` header value for a host, if credentials exist (a credential helper is run
    /// at most once per host).
    fn basic(&self, host: &str) -> Result<Option<String>> {
        if let Some(v) = self.found.lock().ok().and_then(|m| m.get(host).cloned()) {
            return Ok(v);
        }
        let v = match self.stored(host) {
            None => None,
            Some((Stored::Inline(a), _)) => Some(format!("Basic {a}")),
            Some((Stored::Helper(name), file)) => {
                let (_, server) = login_keys(host);
                helper_get(&name, &server, file)?
            }
        };
        if let Ok(mut m) = self.found.lock() {
            m.insert(host.to_string(), v.clone());
        }
        Ok(v)
    }
}

/// Ask a docker credential helper for a server's credentials (`docker-credential-NAME get`,
/// the server on stdin, JSON on stdout); `None` when it has none. Its output is never
/// logged: it holds the secret.
fn helper_get(name: &str, server: &str, file: &Path) -> Result<Option<String>> {
    use base64::Engine;
    let prog = format!("docker-credential-{name}");
    let origin = format!(
        "{} names the credential helper `{name}` for {server}",
        file.display()
    );
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(Error::config(format!("{origin}: not a helper name")));
    }
    let Some(path) = crate::support::tools::which(&prog) else {
        return Err(Error::config(format!(
            "{origin}, but `{prog}` is not installed: install it, or remove the entry (credHelpers/credsStore) to pull without credentials"
        )));
    };
    let sh = crate::support::exec::shell()?;
    let out = xshell::cmd!(sh, "{path} get")
        .stdin(server)
        .quiet()
        .ignore_status()
        .output()
        .map_err(|e| Error::failed(format!("{origin}: could not run {prog}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let why = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        return Err(Error::failed(format!(
            "{origin}: `{prog} get` failed ({}){}",
            out.status,
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )));
    }
    let v: serde_json::Value = serde_json::from_str(&stdout).map_err(|_| {
        Error::failed(format!(
            "{origin}: `{prog} get` did not print the expected JSON (Username, Secret)"
        ))
    })?;
    let (user, secret) = (
        v["Username"].as_str().unwrap_or(""),
        v["Secret"].as_str().unwrap_or(""),
    );
    if secret.is_empty() {
        return Ok(None);
    }
    if user == "<token>" {
        return Err(Error::config(format!(
            "{origin}: it holds an identity token, which clawimg cannot use: log in with a user name and a password or access token instead"
        )));
    }
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    Ok(Some(format!("Basic {b}")))
}

/// A registry client shared by the download threads.
pub struct Client {
    agent: ureq::Agent,
    mirrors: Mirrors,
    creds: Credentials,
    realms: Vec<(String, String)>,
    auth: Mutex<HashMap<(String, String), String>>,
    withheld: Mutex<HashMap<(String, String), String>>,
    requests: AtomicU64,
}

/// Why a request failed.
enum Fail {
    NotFound,
    Other(Error),
}

impl Client {
    /// A client with mirrors and credentials; makes no request until asked.
    pub fn new(mirrors: Mirrors) -> Client {
        Client::with(mirrors, Credentials::load(), vec![])
    }

    /// A client with these credentials and extra trusted token services
    /// (`(registry, token host)`, see [`realm_trusted`]).
    pub fn with(mirrors: Mirrors, creds: Credentials, realms: Vec<(String, String)>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(120))
            .user_agent(concat!("clawimg/", env!("CARGO_PKG_VERSION")))
            // Blob downloads are redirected to storage hosts: they get no Authorization.
            .redirect_auth_headers(ureq::RedirectAuthHeaders::Never)
            .build();
        Client {
            agent,
            mirrors,
            creds,
            realms,
            auth: Mutex::new(HashMap::new()),
            withheld: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// The endpoint used for a reference.
    pub fn endpoint(&self, r: &Reference) -> Endpoint {
        self.mirrors.endpoint(&r.registry)
    }

    /// Number of HTTP requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// GET with auth and retries. `range` asks for the bytes from an offset on.
    fn get(
        &self,
        r: &Reference,
        kind: &str,
        id: &str,
        accept: Option<&str>,
        range: u64,
    ) -> std::result::Result<ureq::Response, Fail> {
        let ep = self.endpoint(r);
        let repo = ep.repo(&r.repository);
        let url = ep.url(&r.repository, kind, id);
        let key = (ep.base.clone(), repo.clone());
        let mut authed = false;
        let mut attempt = 0;
        loop {
            let mut req = self.agent.get(&url);
            if let Some(a) = accept {
                req = req.set("Accept", a);
            }
            if range > 0 {
                req = req.set("Range", &format!("bytes={range}-"));
            }
            if let Some(h) = self.auth.lock().ok().and_then(|m| m.get(&key).cloned()) {
                req = req.set("Authorization", &h);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let wait = match req.call() {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if !authed => {
                    authed = true;
                    let challenge = resp.header("www-authenticate").unwrap_or("").to_string();
                    let header = self
                        .authorize(&ep, &repo, &challenge)
                        .map_err(Fail::Other)?;
                    if let Ok(mut m) = self.auth.lock() {
                        m.insert(key.clone(), header);
                    }
                    continue;
                }
                Err(ureq::Error::Status(401 | 403, _)) => {
                    let why = self
                        .withheld
                        .lock()
                        .ok()
                        .and_then(|m| m.get(&key).cloned())
                        .map(|w| format!(" (no credentials were sent: {w})"))
                        .unwrap_or_default();
                    return Err(Fail::Other(Error::failed(format!(
                        "{url}: access denied: check the credentials for {} in docker config.json{why}",
                        ep.host()
                    ))));
                }
                Err(ureq::Error::Status(404, _)) => return Err(Fail::NotFound),
                Err(ureq::Error::Status(code, resp)) if code == 429 || code >= 500 => {
                    let after = resp
                        .header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    (
                        format!("HTTP {code}"),
                        after.map(|s| Duration::from_secs(s.min(60))),
                    )
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let body: String = resp
                        .into_string()
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect();
                    return Err(Fail::Other(Error::failed(format!(
                        "{url}: HTTP {code}: {}",
                        body.trim()
                    ))));
                }
                Err(ureq::Error::Transport(t)) => (t.to_string(), None),
            };
            attempt += 1;
            if attempt >= ATTEMPTS {
                return Err(Fail::Other(Error::failed(format!(
                    "{url}: giving up after {ATTEMPTS} attempts: {}",
                    wait.0
                ))));
            }
            std::thread::sleep(wait.1.unwrap_or_else(|| backoff(attempt)));
        }
    }

    /// Answer a `WWW-Authenticate` challenge: Basic with stored credentials, or a Bearer
    /// token from the realm. The realm gets the registry's credentials only when it is
    /// trusted with them ([`realm_trusted`]); otherwise the token is asked for anonymously.
    fn authorize(&self, ep: &Endpoint, repo: &str, challenge: &str) -> Result<String> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let basic = self.creds.basic(ep.host())?.ok_or_else(|| {
                    Error::failed(format!(
                        "{} requires credentials: add them for `{}` to docker config.json (`docker login` or `skopeo login --authfile $DOCKER_CONFIG/config.json`)",
                        ep.show(),
                        ep.host()
                    ))
                })?;
                transport_ok(ep, &ep.base).map_err(|why| {
                    Error::failed(format!(
                        "{} asks for credentials, which are not sent to it: {why}",
                        ep.show()
                    ))
                })?;
                Ok(basic)
            }
            "bearer" => {
                let req = self.token_request(ep, repo, &params)?;
                let realm = req.url().split('?').next().unwrap_or("").to_string();
                self.requests.fetch_add(1, Ordering::Relaxed);
                let resp = req
                    .call()
                    .map_err(|e| Error::failed(format!("token request to {realm}: {e}")))?;
                let body = read_limited(resp, &realm)?;
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| Error::failed(format!("token response from {realm}: {e}")))?;
                let tok = v["token"]
                    .as_str()
                    .or(v["access_token"].as_str())
                    .ok_or_else(|| Error::failed(format!("{realm}: no token in response")))?;
                Ok(format!("Bearer {tok}"))
            }
            _ => Err(Error::failed(format!(
                "{}: unsupported authentication challenge {challenge:?}",
                ep.show()
            ))),
        }
    }

    /// The token request for a Bearer challenge's parameters: the realm with scope and
    /// service, and the registry's credentials only when the realm is trusted with them.
    fn token_request(
        &self,
        ep: &Endpoint,
        repo: &str,
        params: &HashMap<String, String>,
    ) -> Result<ureq::Request> {
        let realm = params.get("realm").ok_or_else(|| {
            Error::failed(format!("{}: bearer challenge without realm", ep.show()))
        })?;
        if scheme_host(realm).is_none() {
            return Err(Error::failed(format!(
                "{}: the token service `{realm}` is not an http(s) URL",
                ep.show()
            )));
        }
        let mut req = self
            .agent
            .get(realm)
            .query("scope", &format!("repository:{repo}:pull"));
        if let Some(s) = params.get("service") {
            req = req.query("service", s);
        }
        match realm_trusted(ep, realm, &self.realms) {
            Ok(()) => {
                if let Some(b) = self.creds.basic(ep.host())? {
                    req = req.set("Authorization", &b);
                }
            }
            Err(why) => {
                if let Ok(mut m) = self.withheld.lock() {
                    m.insert((ep.base.clone(), repo.to_string()), why);
                }
            }
        }
        Ok(req)
    }

    /// Resolve a tag to the digest of its manifest or index (for `clawimg lock`).
    pub fn resolve_tag(&self, r: &Reference, tag: &str) -> Result<(String, Vec<u8>)> {
        let what = format!("{}:{tag}", r.name());
        let resp = match self.get(r, "manifests", tag, Some(ACCEPT), 0) {
            Ok(resp) => resp,
            Err(Fail::NotFound) => {
                return Err(Error::failed(format!(
                    "{what}: tag not found at {}",
                    self.endpoint(r).show()
                )))
            }
            Err(Fail::Other(e)) => return Err(e),
        };
        let body = read_limited(resp, &what)?;
        Ok((
            format!("sha256:{}", hex::encode(Sha256::digest(&body))),
            body,
        ))
    }

    /// Fetch a manifest or index by digest: from the cache, else from the registry (verified
    /// and then cached).
    pub fn manifest(&self, cache: &BlobCache, r: &Reference, digest: &str) -> Result<Vec<u8>> {
        if cache.has(digest) {
            return cache.read(digest);
        }
        let what = format!("{}@{digest}", r.name());
        let resp = match self.get(r, "manifests", digest, Some(ACCEPT), 0) {
            Ok(resp) => resp,
            Err(Fail::NotFound) => {
                return Err(Error::failed(format!(
                    "{what}: manifest not found at {} (wrong digest?)",
                    self.endpoint(r).show()
                )))
            }
            Err(Fail::Other(e)) => return Err(e),
        };
        let body = read_limited(resp, &what)?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if actual != digest {
            return Err(Error::failed(format!(
                "{what}: the registry served a manifest with digest {actual}, not the pinned {digest}"
            )));
        }
        cache.insert_bytes(digest, &body)?;
        Ok(body)
    }

    /// Download a blob into the cache, verifying digest and size while streaming; resumes
    /// an interrupted transfer with an HTTP range request.
    pub fn blob(
        &self,
        cache: &BlobCache,
        r: &Reference,
        d: &Descriptor,
        progress: &indicatif::ProgressBar,
    ) -> Result<()> {
        if cache.has(&d.digest) {
            return Ok(());
        }
        let what = format!("blob {} of {}", d.digest, r.name());
        let mut w = cache.writer(&d.digest)?;
        let mut attempt = 0;
        loop {
            let offset = w.len();
            let res = match self.get(r, "blobs", &d.digest, None, offset) {
                Ok(resp) => {
                    if offset > 0 && resp.status() != 206 {
                        // The server ignored the range: start over.
                        progress.dec(offset);
                        w.restart()?;
                    }
                    let limit = d.size + 1 - w.len();
                    copy_counted(resp.into_reader().take(limit), &mut w, progress)
                }
                Err(Fail::NotFound) => {
                    return Err(Error::failed(format!(
                        "{what}: not found at {}",
                        self.endpoint(r).show()
                    )))
                }
                Err(Fail::Other(e)) => return Err(e),
            };
            match res {
                Ok(()) => break,
                Err(e) => {
                    attempt += 1;
                    if attempt >= ATTEMPTS {
                        return Err(Error::failed(format!(
                            "{what}: download failed after {ATTEMPTS} attempts: {e}"
                        )));
                    }
                    std::thread::sleep(backoff(attempt));
                }
            }
        }
        w.finish(d.size)
            .map_err(|e| Error::failed(format!("{}: {e}", r.name())))
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.min(6))
}

fn copy_counted(
    mut r: impl Read,
    w: &mut blobs::Writer,
    bar: &indicatif::ProgressBar,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        w.write(&buf[..n])?;
        bar.inc(n as u64);
    }
}

fn read_limited(resp: ureq::Response, what: &str) -> Result<Vec<u8>> {
    let mut body = vec![];
    resp.into_reader()
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::failed(format!("{what}: reading manifest: {e}")))?;
    if body.len() as u64 > MAX_MANIFEST {
        return Err(Error::failed(format!(
            "{what}: manifest larger than {MAX_MANIFEST} bytes"
        )));
    }
    Ok(body)
}

/// Split `Bearer realm="x",service="y"` into the scheme and its parameters.
pub fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut s = rest;
    while let Some((k, v)) = s.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, next) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (&v[..end], &v[end..])
        };
        params.insert(k, val.to_string());
        s = next;
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::images::spec::Descriptor;
    use crate::build::images::spec::ManifestDoc;
    use crate::support::reference::Platform;

    #[test]
    fn mirrors_and_prefixes() {
        let m = Mirrors::parse(&["docker.io=http://127.0.0.1:5000/hub,*=https://m.test".into()])
            .unwrap();
        let e = m.endpoint("docker.io");
        assert_eq!(
            (e.base.as_str(), e.repo("library/caddy").as_str()),
            ("http://127.0.0.1:5000", "hub/library/caddy")
        );
        assert_eq!(m.endpoint("registry.example").base, "https://m.test");
        assert!(Mirrors::parse(&["nohost".into()]).is_err());
        assert_eq!(
            Mirrors::default().endpoint("registry.example").base,
            "https://registry.example"
        );
        // A mirror for docker.io also serves the legacy name written in a mirror setting.
        let m = Mirrors::parse(&["index.docker.io=https://hub-mirror.test".into()]).unwrap();
        assert_eq!(m.endpoint("docker.io").base, "https://hub-mirror.test");
    }

    const HUB_CHALLENGE: &str = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#;

    /// A docker config.json in a temp dir; returns (dir, credentials).
    fn creds(config: serde_json::Value) -> (tempfile::TempDir, Credentials) {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("config.json");
        std::fs::write(&f, config.to_string()).unwrap();
        let c = Credentials::from_files(&[f]);
        (t, c)
    }

    /// With no mirror, Docker Hub names go to Docker Hub's registry API, its token service
    /// gets the credentials `docker login` stored for Docker Hub; no request is made.
    #[test]
    fn docker_hub_names_resolve_to_docker_hubs_registry_and_token_service() {
        use base64::Engine;
        let hub_auth = base64::engine::general_purpose::STANDARD.encode("hubuser:hubpass");
        let (_t, c) = creds(serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": hub_auth},
            "ghcr.io": {"auth": "Z2g6cGFzcw=="},
        }}));
        let client = Client::with(Mirrors::default(), c, vec![]);
        for name in [
            "ubuntu:24.04",
            "library/ubuntu:24.04",
            "docker.io/ubuntu:24.04",
            "docker.io/library/ubuntu:24.04",
            "index.docker.io/ubuntu:24.04",
        ] {
            let r = Reference::parse(name).unwrap();
            let ep = client.endpoint(&r);
            assert_eq!(
                ep.url(&r.repository, "manifests", "24.04"),
                "https://registry-1.docker.io/v2/library/ubuntu/manifests/24.04",
                "{name}"
            );
        }
        let r = Reference::parse("ubuntu:24.04").unwrap();
        let ep = client.endpoint(&r);
        let (_, params) = parse_challenge(HUB_CHALLENGE);
        let req = client
            .token_request(&ep, "library/ubuntu", &params)
            .unwrap();
        assert_eq!(
            req.url(),
            "https://auth.docker.io/token?scope=repository%3Alibrary%2Fubuntu%3Apull&service=registry.docker.io"
        );
        assert_eq!(
            req.header("Authorization"),
            Some(format!("Basic {hub_auth}").as_str())
        );
        // Other registries are their own hosts.
        for (name, url) in [
            (
                "ghcr.io/org/app:1",
                "https://ghcr.io/v2/org/app/manifests/1",
            ),
            (
                "quay.io/org/app:1",
                "https://quay.io/v2/org/app/manifests/1",
            ),
            (
                "localhost:5000/foo:1",
                "https://localhost:5000/v2/foo/manifests/1",
            ),
            (
                "registry.example:8443/a/b:1",
                "https://registry.example:8443/v2/a/b/manifests/1",
            ),
        ] {
            let r = Reference::parse(name).unwrap();
            assert_eq!(
                client.endpoint(&r).url(&r.repository, "manifests", "1"),
                url
            );
        }
        // Docker Hub's token service gets nothing meant for ghcr.io.
        let gh = client.endpoint(&Reference::parse("ghcr.io/org/app:1").unwrap());
        let req = client.token_request(&gh, "org/app", &params).unwrap();
        assert_eq!(req.header("Authorization"), None);
    }

    #[test]
    fn token_realms_get_credentials_only_when_they_belong_to_the_registry() {
        let ep = |b: &str| Endpoint {
            base: b.into(),
            prefix: String::new(),
        };
        let hub = ep("https://registry-1.docker.io");
        let gh = ep("https://ghcr.io");
        let local = ep("http://127.0.0.1:5000");
        let lan = ep("http://10.0.0.5:5000");
        let none: &[(String, String)] = &[];
        let ok = |e: &Endpoint, realm: &str, conf: &[(String, String)]| {
            realm_trusted(e, realm, conf).is_ok()
        };
        assert!(ok(&hub, "https://auth.docker.io/token", none));
        assert!(ok(&gh, "https://ghcr.io/token", none));
        assert!(ok(&gh, "https://GHCR.io:443/token", none));
        assert!(ok(&local, "http://127.0.0.1:5001/token", none));
        // Foreign hosts, plain http, user info, other schemes: no credentials.
        assert!(!ok(&gh, "https://auth.docker.io/token", none));
        assert!(!ok(&hub, "https://auth.docker.io.evil.example/token", none));
        assert!(!ok(&gh, "https://evil.example/token", none));
        assert!(!ok(&gh, "http://ghcr.io/token", none));
        assert!(!ok(&hub, "http://auth.docker.io/token", none));
        assert!(!ok(&gh, "https://ghcr.io@evil.example/token", none));
        assert!(!ok(&gh, "ftp://ghcr.io/token", none));
        assert!(!ok(&local, "http://127.0.0.2:5001/token", none));
        assert!(!ok(&local, "http://localhost:5001/token", none));
        assert!(!ok(&lan, "http://10.0.0.5:5001/token", none));
        assert!(!ok(&local, "http://evil.example/token", none));
        // A pairing the user configured.
        let conf = parse_token_realms("registry.gitlab.com=gitlab.com").unwrap();
        let gl = ep("https://registry.gitlab.com");
        assert!(!ok(&gl, "https://gitlab.com/jwt/auth", none));
        assert!(ok(&gl, "https://gitlab.com/jwt/auth", &conf));
        assert!(!ok(&gl, "http://gitlab.com/jwt/auth", &conf));
        assert!(parse_token_realms("nohost").is_err());
        assert!(parse_token_realms("a=https://b").is_err());
        let why = realm_trusted(&gh, "https://evil.example/token", none).unwrap_err();
        assert!(
            why.contains(TOKEN_REALM_ENV) && why.contains("evil.example"),
            "{why}"
        );
        // Basic credentials straight to a plain-http registry: loopback only.
        assert!(transport_ok(&local, &local.base).is_ok());
        assert!(transport_ok(&lan, &lan.base).is_err());
    }

    /// A fake `docker-credential-NAME` on PATH that records its stdin and answers.
    fn fake_helper(dir: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `credHelpers` and `credsStore` are run with the server on stdin (Docker Hub's login
    /// URL for Docker Hub); a missing helper is refused with its name.
    #[test]
    fn credential_helpers_are_asked_or_refused_by_name() {
        use base64::Engine;
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let asked = t.path().join("asked");
        fake_helper(
            &bin,
            "clawtest",
            &format!(
                "test \"$1\" = get || exit 9\ncat >> {}; echo >> {}\necho '{{\"ServerURL\":\"x\",\"Username\":\"u1\",\"Secret\":\"s1\"}}'",
                asked.display(),
                asked.display()
            ),
        );
        fake_helper(
            &bin,
            "empty",
            "cat >/dev/null; echo 'credentials not found in native keychain'; exit 1",
        );
        fake_helper(
            &bin,
            "idtoken",
            "cat >/dev/null; echo '{\"Username\":\"<token>\",\"Secret\":\"r\"}'",
        );
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let old = std::env::var_os("PATH");
        std::env::set_var("PATH", &path);
        let basic = |u: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(u)
            )
        };
        let (_a, c) = creds(serde_json::json!({
            "credHelpers": {"ghcr.io": "clawtest", "quay.io": "empty", "id.example": "idtoken", "gone.example": "nosuchhelper"},
            "credsStore": "clawtest",
            "auths": {"inline.example": {"auth": "aW46bGluZQ=="}},
        }));
        assert_eq!(c.basic("ghcr.io").unwrap(), Some(basic("u1:s1")));
        assert_eq!(c.basic("ghcr.io").unwrap(), Some(basic("u1:s1")), "cached");
        assert_eq!(c.basic(DOCKER_HUB_REGISTRY).unwrap(), Some(basic("u1:s1")));
        assert_eq!(c.basic("quay.io").unwrap(), None);
        assert_eq!(
            c.basic("inline.example").unwrap(),
            Some("Basic aW46bGluZQ==".into())
        );
        let e = c.basic("id.example").unwrap_err();
        assert!(e.message.contains("identity token"), "{}", e.message);
        let e = c.basic("gone.example").unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Config);
        assert!(
            e.message.contains("docker-credential-nosuchhelper")
                && e.message.contains("config.json"),
            "{}",
            e.message
        );
        match old {
            Some(p) => std::env::set_var("PATH", p),
            None => std::env::remove_var("PATH"),
        }
        // The helper was asked once per server, on stdin, with Docker Hub's login URL.
        assert_eq!(
            std::fs::read_to_string(&asked).unwrap(),
            "ghcr.io\nhttps://index.docker.io/v1/\n"
        );
    }

    /// Fault injection: a 503, then a connection cut mid-blob, then a range request that
    /// must continue where the cut happened.
    #[test]
    fn retries_5xx_and_resumes_a_cut_download() {
        use std::io::{BufRead, BufReader, Write};
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = body.clone();
        let server = std::thread::spawn(move || {
            let mut ranges = vec![];
            for (n, conn) in listener.incoming().take(3).enumerate() {
                let mut conn = conn.unwrap();
                let mut head = String::new();
                let mut r = BufReader::new(conn.try_clone().unwrap());
                while r.read_line(&mut head).unwrap() > 2 && !head.ends_with("\r\n\r\n") {}
                let range = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("range: bytes=")
                        .map(|v| v.trim_end_matches('-').parse::<usize>().unwrap())
                });
                ranges.push(range);
                let half = served.len() / 2;
                let _ = match n {
                    0 => conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                    1 => conn
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", served.len()).as_bytes())
                        .and_then(|_| conn.write_all(&served[..half])),
                    _ => {
                        let from = range.unwrap_or(0);
                        conn.write_all(
                            format!("HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", served.len() - from).as_bytes(),
                        )
                        .and_then(|_| conn.write_all(&served[from..]))
                    }
                };
            }
            ranges
        });
        let t = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(t.path()).unwrap();
        let client = Client::new(Mirrors::parse(&[format!("*=http://127.0.0.1:{port}")]).unwrap());
        let r = Reference::parse("clawimg.test/x:1").unwrap();
        let d = Descriptor {
            media_type: String::new(),
            digest: digest.clone(),
            size: body.len() as u64,
            platform: None,
        };
        client
            .blob(&cache, &r, &d, &indicatif::ProgressBar::hidden())
            .unwrap();
        assert_eq!(cache.read(&digest).unwrap(), body);
        assert_eq!(client.requests(), 3);
        assert_eq!(
            server.join().unwrap(),
            vec![None, None, Some(body.len() / 2)]
        );
    }

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.test/token",service="reg",scope="repository:a/b:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.test/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a/b:pull");
        assert_eq!(parse_challenge(r#"Basic realm="x""#).0, "Basic");
    }

    #[test]
    fn platform_selection() {
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":2,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let m = ManifestDoc::parse(idx, "t").unwrap();
        assert!(m.is_index());
        assert_eq!(
            m.select(&Platform::parse("linux/amd64").unwrap(), "t")
                .unwrap()
                .size,
            2
        );
        assert_eq!(
            m.select(&Platform::parse("linux/arm64").unwrap(), "t")
                .unwrap()
                .size,
            1
        );
        assert!(m
            .select(&Platform::parse("linux/s390x").unwrap(), "t")
            .is_err());
    }
}
