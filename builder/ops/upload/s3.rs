//! S3-compatible upload: SigV4-signed requests (`aws-sigv4`), multipart with parallel parts
//! and retries, each part checked by its MD5 (`Content-MD5`, ETag), the object's sha256
//! stored as metadata and checked with HEAD. An interrupted upload resumes from a state file
//! in the cache (ListParts on the saved upload id) or, when the server forgot it, restarts.

use crate::error::{Error, Result};
use crate::ops::upload::http::{classify, env_var, percent_encode, retry, Attempt, Secret};
use crate::ops::upload::target::{Digests, Image, UploadOptions};
use crate::support::progress::Progress;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Object metadata key holding the sha256 of the whole object.
pub const SHA256_META: &str = "x-amz-meta-sha256";

/// S3 allows at most this many parts.
const MAX_PARTS: u64 = 10_000;
/// ... each at least this big (except the last).
pub const MIN_PART: u64 = 5 << 20;

/// Access key pair; the secret parts are never printed.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: Secret,
    /// Session token (temporary credentials).
    pub session_token: Option<Secret>,
}

/// Endpoint, region and credentials.
#[derive(Debug, Clone)]
pub struct Config {
    /// `scheme://host[:port]` of the service; `None` = AWS for the region.
    pub endpoint: Option<String>,
    /// Signing region.
    pub region: String,
    /// Credentials.
    pub creds: Credentials,
}

/// Read `[profile]` of an AWS credentials file (INI).
pub fn credentials_file(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_section = false;
    let mut kv = BTreeMap::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if let Some(sec) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let sec = sec.trim();
            in_section = sec == profile || sec == format!("profile {profile}");
            continue;
        }
        if in_section {
            if let Some((k, v)) = l.split_once('=') {
                kv.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    Some(Credentials {
        access_key: kv.get("aws_access_key_id")?.clone(),
        secret_key: Secret(kv.get("aws_secret_access_key")?.clone()),
        session_token: kv.get("aws_session_token").map(|t| Secret(t.clone())),
    })
}

impl Config {
    /// Endpoint: `--endpoint`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, else AWS. Region:
    /// `--region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, else us-east-1. Credentials:
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`), else the profile
    /// `AWS_PROFILE` (default `default`) of `AWS_SHARED_CREDENTIALS_FILE` or ~/.aws/credentials.
    pub fn load(endpoint: Option<&str>, region: Option<&str>) -> Result<Config> {
        let endpoint = endpoint
            .map(str::to_string)
            .or_else(|| env_var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env_var("AWS_ENDPOINT_URL"))
            .map(|e| e.trim_end_matches('/').to_string());
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Error::config(format!(
                    "--endpoint {e}: must start with http:// or https://"
                )));
            }
        }
        let region = region
            .map(str::to_string)
            .or_else(|| env_var("AWS_REGION"))
            .or_else(|| env_var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let creds = match (
            env_var("AWS_ACCESS_KEY_ID"),
            env_var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(a), Some(s)) => Credentials {
                access_key: a,
                secret_key: Secret(s),
                session_token: env_var("AWS_SESSION_TOKEN").map(Secret),
            },
            _ => {
                let file = env_var("AWS_SHARED_CREDENTIALS_FILE")
                    .map(PathBuf::from)
                    .or_else(|| env_var("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")));
                let profile = env_var("AWS_PROFILE").unwrap_or_else(|| "default".into());
                file.as_deref()
                    .and_then(|f| std::fs::read_to_string(f).ok())
                    .and_then(|t| credentials_file(&t, &profile))
                    .ok_or_else(|| {
                        Error::config(format!(
                            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile [{profile}] in {}",
                            file.map(|f| f.display().to_string()).unwrap_or_else(|| "~/.aws/credentials".into())
                        ))
                    })?
            }
        };
        Ok(Config {
            endpoint,
            region,
            creds,
        })
    }
}

/// What a HEAD of the object says.
#[derive(Debug, Clone)]
pub struct Head {
    /// Content-Length.
    pub bytes: u64,
    /// ETag without quotes.
    pub etag: String,
    /// The sha256 metadata, if any.
    pub sha256: Option<String>,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based.
    pub number: u32,
    /// ETag without quotes (MD5 of the part for plain uploads).
    pub etag: String,
    /// Bytes.
    pub size: u64,
}

/// A signing S3 client for one bucket.
pub struct Client {
    agent: ureq::Agent,
    cfg: Config,
    bucket: String,
}

impl Client {
    /// A client; makes no request.
    pub fn new(cfg: Config, bucket: &str) -> Client {
        Client {
            agent: crate::ops::upload::http::agent(),
            cfg,
            bucket: bucket.into(),
        }
    }

    /// Object URL (path-style with an endpoint, virtual-hosted on AWS) plus `query`.
    fn url(&self, key: &str, query: &str) -> String {
        let path = percent_encode(key, true);
        let base = match &self.cfg.endpoint {
            Some(e) => format!("{e}/{}/{path}", self.bucket),
            None => format!(
                "https://{}.s3.{}.amazonaws.com/{path}",
                self.bucket, self.cfg.region
            ),
        };
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    /// A signed request: SigV4 over the method, URL, `headers` and the body's sha256.
    fn signed(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<ureq::Request> {
        let payload = hex::encode(Sha256::digest(body));
        let identity = aws_credential_types::Credentials::new(
            &self.cfg.creds.access_key,
            &self.cfg.creds.secret_key.0,
            self.cfg.creds.session_token.as_ref().map(|t| t.0.clone()),
            None,
            "clawimg",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.cfg.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Error::failed(format!("SigV4 parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Precomputed(payload),
        )
        .map_err(|e| Error::failed(format!("SigV4: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Error::failed(format!("SigV4: {e}")))?
            .into_parts();
        let mut req = self.agent.request(method, url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        for (k, v) in instructions.headers() {
            req = req.set(k, v);
        }
        Ok(req)
    }

    /// Send a signed request with retries; `what` names it in messages.
    fn call(
        &self,
        what: &str,
        method: &str,
        key: &str,
        query: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<ureq::Response> {
        let url = self.url(key, query);
        retry(what, || {
            let req = self.signed(method, &url, headers, body)?;
            let res = if body.is_empty() {
                req.call()
            } else {
                req.send_bytes(body)
            };
            res.map_err(|e| classify(e, what))
        })
    }

    /// HEAD the object; `None` when it does not exist.
    pub fn head(&self, key: &str) -> Result<Option<Head>> {
        let url = self.url(key, "");
        let what = format!("HEAD s3://{}/{key}", self.bucket);
        let r = retry(&what, || {
            let req = self.signed("HEAD", &url, &[], b"")?;
            match req.call() {
                Ok(r) => Ok(Some(r)),
                Err(ureq::Error::Status(404, _)) => Ok(None),
                Err(e) => Err(classify(e, &what)),
            }
        })?;
        Ok(r.map(|r| Head {
            bytes: r
                .header("Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            etag: r.header("ETag").unwrap_or("").trim_matches('"').to_string(),
            sha256: r.header(SHA256_META).map(str::to_string),
        }))
    }

    /// Start a multipart upload carrying the sha256 metadata; returns the upload id.
    pub fn create(&self, key: &str, sha256: &str) -> Result<String> {
        let what = format!("CreateMultipartUpload s3://{}/{key}", self.bucket);
        let headers = [
            ("content-type", "application/octet-stream".to_string()),
            (SHA256_META, sha256.to_string()),
        ];
        let body = self
            .call(&what, "POST", key, "uploads=", &headers, b"")?
            .into_string()
            .map_err(|e| Error::failed(format!("{what}: {e}")))?;
        xml_text(&body, "UploadId").ok_or_else(|| Error::failed(format!("{what}: no UploadId")))
    }

    /// Upload one part (with its Content-MD5, so the server checks it); returns the ETag.
    pub fn put_part(&self, key: &str, id: &str, n: u32, data: &[u8]) -> Result<String> {
        let what = format!("UploadPart {n} of s3://{}/{key}", self.bucket);
        let md5 = Md5::digest(data);
        let headers = [(
            "content-md5",
            base64::engine::general_purpose::STANDARD.encode(md5),
        )];
        let q = format!("partNumber={n}&uploadId={}", percent_encode(id, false));
        let r = self.call(&what, "PUT", key, &q, &headers, data)?;
        let etag = r.header("ETag").unwrap_or("").trim_matches('"').to_string();
        // Content-MD5 made the server check the bytes; an MD5-shaped ETag must match too
        // (servers that encrypt answer other ETags).
        if is_md5(&etag) && etag != hex::encode(md5) {
            return Err(Error::failed(format!(
                "{what}: server ETag {etag} is not the part's MD5 {}",
                hex::encode(md5)
            )));
        }
        Ok(etag)
    }

    /// The parts the server holds for an upload; `None` when it does not know the upload.
    pub fn list_parts(&self, key: &str, id: &str) -> Result<Option<Vec<Part>>> {
        let what = format!("ListParts s3://{}/{key}", self.bucket);
        let mut parts = vec![];
        let mut marker = 0u32;
        loop {
            let q = format!(
                "part-number-marker={marker}&uploadId={}",
                percent_encode(id, false)
            );
            let url = self.url(key, &q);
            let body = retry(&what, || {
                let req = self.signed("GET", &url, &[], b"")?;
                match req.call() {
                    Ok(r) => r
                        .into_string()
                        .map(Some)
                        .map_err(|e| Attempt::Retry(format!("{what}: {e}"))),
                    Err(ureq::Error::Status(404, _)) => Ok(None),
                    Err(e) => Err(classify(e, &what)),
                }
            })?;
            let Some(body) = body else { return Ok(None) };
            let doc = roxmltree::Document::parse(&body)
                .map_err(|e| Error::failed(format!("{what}: bad XML: {e}")))?;
            for p in doc.descendants().filter(|n| n.has_tag_name("Part")) {
                let child = |name: &str| {
                    p.children()
                        .find(|c| c.has_tag_name(name))
                        .and_then(|c| c.text())
                        .unwrap_or("")
                        .to_string()
                };
                parts.push(Part {
                    number: child("PartNumber").parse().unwrap_or(0),
                    etag: child("ETag").trim_matches('"').to_string(),
                    size: child("Size").parse().unwrap_or(0),
                });
            }
            if xml_text(&body, "IsTruncated").as_deref() != Some("true") {
                return Ok(Some(parts));
            }
            let next: u32 = xml_text(&body, "NextPartNumberMarker")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if next <= marker {
                return Ok(Some(parts));
            }
            marker = next;
        }
    }

    /// Complete the upload from its parts (in order); returns the object's ETag.
    pub fn complete(&self, key: &str, id: &str, parts: &[Part]) -> Result<String> {
        let what = format!("CompleteMultipartUpload s3://{}/{key}", self.bucket);
        let mut xml = String::from("<CompleteMultipartUpload>");
        for p in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>",
                p.number, p.etag
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let q = format!("uploadId={}", percent_encode(id, false));
        let headers = [("content-type", "application/xml".to_string())];
        let body = self
            .call(&what, "POST", key, &q, &headers, xml.as_bytes())?
            .into_string()
            .map_err(|e| Error::failed(format!("{what}: {e}")))?;
        // S3 may answer 200 with an error document.
        if let Some(code) = xml_text(&body, "Code") {
            return Err(Error::failed(format!(
                "{what}: {code}: {}",
                xml_text(&body, "Message").unwrap_or_default()
            )));
        }
        Ok(xml_text(&body, "ETag")
            .unwrap_or_default()
            .trim_matches('"')
            .to_string())
    }

    /// Abort an upload (frees the parts).
    pub fn abort(&self, key: &str, id: &str) -> Result<()> {
        let what = format!("AbortMultipartUpload s3://{}/{key}", self.bucket);
        let q = format!("uploadId={}", percent_encode(id, false));
        self.call(&what, "DELETE", key, &q, &[], b"").map(|_| ())
    }
}

/// Text of the first element called `tag`.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(body).ok()?;
    doc.descendants()
        .find(|n| n.has_tag_name(tag))
        .and_then(|n| n.text())
        .map(str::to_string)
}

/// Is `s` 32 lowercase hex digits (a plain MD5 ETag)?
fn is_md5(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Part size: at least the asked size and [`MIN_PART`], and big enough for 10,000 parts.
pub fn part_size(bytes: u64, asked: u64) -> u64 {
    asked.max(MIN_PART).max(bytes.div_ceil(MAX_PARTS))
}

/// The multipart ETag S3 computes: md5 of the parts' binary MD5s, `-N`.
pub fn multipart_etag(parts: &[Part]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(hex::decode(&p.etag).unwrap_or_default());
    }
    format!("{}-{}", hex::encode(h.finalize()), parts.len())
}

/// Saved between runs so an interrupted upload resumes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct State {
    endpoint: String,
    bucket: String,
    key: String,
    sha256: String,
    part_size: u64,
    upload_id: String,
}

fn state_path(
    cache: &Path,
    cfg: &Config,
    bucket: &str,
    key: &str,
    d: &Digests,
    ps: u64,
) -> PathBuf {
    let id = Sha256::digest(format!(
        "{}\n{bucket}\n{key}\n{}\n{ps}",
        cfg.endpoint.as_deref().unwrap_or("aws"),
        d.sha256
    ));
    cache
        .join("upload")
        .join(format!("s3-{}.json", &hex::encode(id)[..24]))
}

fn read_part(img: &Image, n: u32, ps: u64) -> Result<Vec<u8>> {
    let off = (n as u64 - 1) * ps;
    let len = ps.min(img.bytes - off) as usize;
    let mut buf = vec![0u8; len];
    let f = std::fs::File::open(&img.path)
        .map_err(|e| Error::failed(format!("{}: {e}", img.path.display())))?;
    f.read_exact_at(&mut buf, off)
        .map_err(|e| Error::failed(format!("{}: {e}", img.path.display())))?;
    Ok(buf)
}

/// Upload `img` to `s3://bucket/key`; returns the object URL.
pub fn upload(
    o: &UploadOptions,
    cfg: &Config,
    bucket: &str,
    key: &str,
    img: &Image,
    d: &Digests,
    progress: &Progress,
) -> Result<String> {
    let url = format!("s3://{bucket}/{key}");
    let c = Client::new(cfg.clone(), bucket);
    let st = progress.stage("s3", &format!("checking {url}"));
    if let Some(h) = c.head(key)? {
        if h.sha256.as_deref() == Some(d.sha256.as_str()) && h.bytes == img.bytes {
            // A run killed after completing may have left its state behind.
            let _ = std::fs::remove_file(state_path(
                &o.cache_dir,
                cfg,
                bucket,
                key,
                d,
                part_size(img.bytes, o.part_size),
            ));
            st.done(&format!("{url} already holds sha256 {}", &d.sha256[..16]));
            return Ok(url);
        }
    }
    let ps = part_size(img.bytes, o.part_size);
    let count = img.bytes.div_ceil(ps) as u32;
    let sp = state_path(&o.cache_dir, cfg, bucket, key, d, ps);
    let endpoint = cfg.endpoint.clone().unwrap_or_else(|| "aws".into());

    // Resume: the saved upload's parts that match our data are kept.
    let mut done: BTreeMap<u32, Part> = BTreeMap::new();
    let saved: Option<State> = std::fs::read(&sp)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut upload_id = None;
    if let Some(s) = saved {
        match c.list_parts(key, &s.upload_id)? {
            Some(parts) => {
                for p in parts {
                    if p.number == 0 || p.number > count {
                        continue;
                    }
                    let data = read_part(img, p.number, ps)?;
                    if p.size == data.len() as u64 && p.etag == hex::encode(Md5::digest(&data)) {
                        done.insert(p.number, p);
                    }
                }
                eprintln!(
                    "resuming upload: {}/{count} parts already there",
                    done.len()
                );
                upload_id = Some(s.upload_id);
            }
            None => eprintln!("the saved upload is gone on the server; starting over"),
        }
    }
    let upload_id = match upload_id {
        Some(id) => id,
        None => {
            let id = c.create(key, &d.sha256)?;
            let s = State {
                endpoint,
                bucket: bucket.into(),
                key: key.into(),
                sha256: d.sha256.clone(),
                part_size: ps,
                upload_id: id.clone(),
            };
            if let Some(dir) = sp.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::failed(format!("{}: {e}", dir.display())))?;
            }
            let tmp = sp.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&s).unwrap_or_default())
                .and_then(|_| std::fs::rename(&tmp, &sp))
                .map_err(|e| Error::failed(format!("{}: {e}", sp.display())))?;
            id
        }
    };
    st.done(&format!("{url}: {count} parts of {} MiB", ps >> 20));

    let bar = progress.bytes("upload", img.bytes);
    bar.inc(done.values().map(|p| p.size).sum());
    let todo: Mutex<VecDeque<u32>> =
        Mutex::new((1..=count).filter(|n| !done.contains_key(n)).collect());
    let done = Mutex::new(done);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..o.jobs.max(1) {
            s.spawn(|| loop {
                if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                let Some(n) = todo.lock().ok().and_then(|mut q| q.pop_front()) else {
                    return;
                };
                let r = read_part(img, n, ps).and_then(|data| {
                    let etag = c.put_part(key, &upload_id, n, &data)?;
                    Ok(Part {
                        number: n,
                        etag,
                        size: data.len() as u64,
                    })
                });
                match r {
                    Ok(p) => {
                        bar.inc(p.size);
                        if let Ok(mut d) = done.lock() {
                            d.insert(n, p);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = failed.into_inner().ok().flatten() {
        // The state file stays: the next run resumes.
        return Err(e);
    }
    let parts: Vec<Part> = done
        .into_inner()
        .map_err(|_| Error::failed("part list poisoned"))?
        .into_values()
        .collect();
    let st = progress.stage("s3", "completing");
    let etag = c.complete(key, &upload_id, &parts)?;
    let want = multipart_etag(&parts);
    let h = c
        .head(key)?
        .ok_or_else(|| Error::failed(format!("{url}: not found after completing")))?;
    let bad = if h.bytes != img.bytes {
        Some(format!("size {} != {}", h.bytes, img.bytes))
    } else if h.sha256.as_deref() != Some(d.sha256.as_str()) {
        Some(format!("metadata sha256 {:?} != {}", h.sha256, d.sha256))
    } else if parts.iter().all(|p| is_md5(&p.etag))
        && (h.etag != want || (!etag.is_empty() && etag != want))
    {
        Some(format!("ETag {} != {want}", h.etag))
    } else {
        None
    };
    if let Some(why) = bad {
        return Err(Error::failed(format!("{url}: verification failed: {why}")));
    }
    let _ = std::fs::remove_file(&sp);
    st.done(&format!("verified: {} bytes, ETag {want}", h.bytes));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_profiles() {
        let t = "[default]\naws_access_key_id = A\naws_secret_access_key = S3CR3T\n\n[profile ci]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token=X\n";
        let d = credentials_file(t, "default").unwrap();
        assert_eq!(
            (d.access_key.as_str(), d.secret_key.0.as_str()),
            ("A", "S3CR3T")
        );
        let c = credentials_file(t, "ci").unwrap();
        assert_eq!(c.session_token.unwrap().0, "X");
        assert!(credentials_file(t, "none").is_none());
        assert!(!format!("{d:?}").contains("S3CR3T"));
    }

    #[test]
    fn part_sizes_and_etags() {
        assert_eq!(part_size(1 << 20, 1), MIN_PART);
        assert_eq!(part_size(100_000 << 20, 8 << 20), 10 << 20);
        let parts = [
            Part {
                number: 1,
                etag: hex::encode(Md5::digest(b"a")),
                size: 1,
            },
            Part {
                number: 2,
                etag: hex::encode(Md5::digest(b"b")),
                size: 1,
            },
        ];
        let mut h = Md5::new();
        h.update(Md5::digest(b"a"));
        h.update(Md5::digest(b"b"));
        assert_eq!(
            multipart_etag(&parts),
            format!("{}-2", hex::encode(h.finalize()))
        );
        assert_eq!(percent_encode("a b/c+d", true), "a%20b/c%2Bd");
        assert_eq!(percent_encode("x/y=", false), "x%2Fy%3D");
    }
}
