//! A small OCI distribution client (pull only) on `ureq`: image references, registry
//! mirrors, anonymous/basic/bearer auth with docker `config.json` credentials, manifests and
//! indexes resolved to a platform, and blob downloads verified against their digest while
//! streaming, with retries (429/5xx/transport) and resume by HTTP range.

use crate::build::images::blobs::{self, BlobCache};
use crate::build::images::spec::Descriptor;
use crate::error::{Error, Result};
use crate::support::reference::Reference;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Environment variable with registry mirrors, `HOST=URL` separated by commas.
pub const MIRROR_ENV: &str = "CLAWIMG_REGISTRY_MIRROR";

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// Manifests larger than this are refused (they are JSON documents of a few KiB).
const MAX_MANIFEST: u64 = 4 << 20;
const ATTEMPTS: u32 = 5;

/// Where requests for one registry go: `scheme://host[:port]` and an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host` or `http://127.0.0.1:5000`.
    pub base: String,
    /// Repository prefix on the mirror (`docker.io` for `http://m/docker.io`), may be empty.
    pub prefix: String,
}

impl Endpoint {
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

    /// The endpoint for a registry: its mirror, or the registry itself over HTTPS. Docker
    /// Hub's names (`docker.io/...`) are not its API host, and clawimg keeps no built-in
    /// endpoint for it: `docker.io` needs a configured mirror or endpoint.
    pub fn endpoint(&self, registry: &str) -> Result<Endpoint> {
        if let Some((_, e)) = self
            .map
            .iter()
            .find(|(h, _)| h == registry)
            .or_else(|| self.map.iter().find(|(h, _)| h == "*"))
        {
            return Ok(e.clone());
        }
        if registry == "docker.io" {
            return Err(Error::config(format!(
                "images on docker.io need a registry endpoint: set `--registry-mirror docker.io=URL` or {MIRROR_ENV}=docker.io=URL (a pull-through mirror, or the registry API endpoint your organisation uses; a path prefix is allowed, e.g. docker.io=https://mirror.example/docker.io)"
            )));
        }
        Ok(Endpoint {
            base: format!("https://{registry}"),
            prefix: String::new(),
        })
    }
}

/// Credentials from docker `config.json` files (`auths.HOST.auth`, base64 `user:password`).
#[derive(Debug, Default)]
pub struct Credentials {
    auths: HashMap<String, String>,
}

impl Credentials {
    /// Read `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`, `$REGISTRY_AUTH_FILE` and
    /// `$XDG_RUNTIME_DIR/containers/auth.json` (first entry for a host wins).
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
        let mut auths = HashMap::new();
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if let Some(map) = v["auths"].as_object() {
                for (k, e) in map {
                    let host = k
                        .trim_start_matches("https://")
                        .trim_start_matches("http://");
                    let host = host.split('/').next().unwrap_or(host).to_string();
                    if let Some(a) = e["auth"].as_str().filter(|a| !a.is_empty()) {
                        auths.entry(host).or_insert_with(|| a.to_string());
                    }
                }
            }
        }
        Credentials { auths }
    }

    /// `Basic ...` header value for a host, if credentials exist.
    fn basic(&self, host: &str) -> Option<String> {
        self.auths.get(host).map(|a| format!("Basic {a}"))
    }
}

/// A registry client shared by the download threads.
pub struct Client {
    agent: ureq::Agent,
    mirrors: Mirrors,
    creds: Credentials,
    auth: Mutex<HashMap<(String, String), String>>,
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
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(120))
            .user_agent(concat!("clawimg/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent,
            mirrors,
            creds: Credentials::load(),
            auth: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// The endpoint used for a reference.
    pub fn endpoint(&self, r: &Reference) -> Result<Endpoint> {
        self.mirrors.endpoint(&r.registry)
    }

    /// Fail before any request when a reference has no endpoint (docker.io without a mirror).
    pub fn check_endpoints<'a>(&self, refs: impl IntoIterator<Item = &'a Reference>) -> Result<()> {
        for r in refs {
            self.endpoint(r)
                .map_err(|e| Error::config(format!("{}: {}", r.name(), e.message)))?;
        }
        Ok(())
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
        let ep = self.endpoint(r).map_err(Fail::Other)?;
        let repo = ep.repo(&r.repository);
        let url = format!("{}/v2/{repo}/{kind}/{id}", ep.base);
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
                    return Err(Fail::Other(Error::failed(format!(
                        "{url}: access denied: check the credentials for {} in docker config.json",
                        ep.host()
                    ))))
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
    /// token from the realm (anonymous, or with the stored credentials).
    fn authorize(&self, ep: &Endpoint, repo: &str, challenge: &str) -> Result<String> {
        let basic = self.creds.basic(ep.host());
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => basic.ok_or_else(|| {
                Error::failed(format!(
                    "{} requires credentials: add them for `{}` to docker config.json (`docker login` or `skopeo login --authfile $DOCKER_CONFIG/config.json`)",
                    ep.show(),
                    ep.host()
                ))
            }),
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| Error::failed(format!("{}: bearer challenge without realm", ep.show())))?;
                let mut req = self.agent.get(realm).query("scope", &format!("repository:{repo}:pull"));
                if let Some(s) = params.get("service") {
                    req = req.query("service", s);
                }
                if let Some(b) = &basic {
                    req = req.set("Authorization", b);
                }
                self.requests.fetch_add(1, Ordering::Relaxed);
                let resp = req.call().map_err(|e| Error::failed(format!("token request to {realm}: {e}")))?;
                let body = read_limited(resp, realm)?;
                let v: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| Error::failed(format!("token response from {realm}: {e}")))?;
                let tok = v["token"].as_str().or(v["access_token"].as_str()).ok_or_else(|| Error::failed(format!("{realm}: no token in response")))?;
                Ok(format!("Bearer {tok}"))
            }
            _ => Err(Error::failed(format!("{}: unsupported authentication challenge {challenge:?}", ep.show()))),
        }
    }

    /// Resolve a tag to the digest of its manifest or index (for `clawimg lock`).
    pub fn resolve_tag(&self, r: &Reference, tag: &str) -> Result<(String, Vec<u8>)> {
        let what = format!("{}:{tag}", r.name());
        let resp = match self.get(r, "manifests", tag, Some(ACCEPT), 0) {
            Ok(resp) => resp,
            Err(Fail::NotFound) => {
                return Err(Error::failed(format!(
                    "{what}: tag not found at {}",
                    self.endpoint(r).map(|e| e.show()).unwrap_or_default()
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
                    self.endpoint(r).map(|e| e.show()).unwrap_or_default()
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
                        self.endpoint(r).map(|e| e.show()).unwrap_or_default()
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
        let e = m.endpoint("docker.io").unwrap();
        assert_eq!(
            (e.base.as_str(), e.repo("library/caddy").as_str()),
            ("http://127.0.0.1:5000", "hub/library/caddy")
        );
        assert_eq!(
            m.endpoint("registry.example").unwrap().base,
            "https://m.test"
        );
        assert!(Mirrors::parse(&["nohost".into()]).is_err());
        assert_eq!(
            Mirrors::default()
                .endpoint("registry.example")
                .unwrap()
                .base,
            "https://registry.example"
        );
        // No built-in Docker Hub endpoint: the error says what to set.
        let err = Mirrors::default().endpoint("docker.io").unwrap_err();
        assert_eq!(err.kind, crate::error::Kind::Config);
        assert!(
            err.message.contains("--registry-mirror docker.io=URL"),
            "{}",
            err.message
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
