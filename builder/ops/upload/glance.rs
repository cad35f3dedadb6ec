//! Glance v2 image upload: find an image with the same name and digest (then nothing is
//! uploaded), else create one with its properties, send the data, wait for `active` and
//! check the checksum and hash Glance computed against ours.

use crate::error::{Error, Result};
use crate::ops::upload::http::{classify, percent_encode, retry, Attempt};
use crate::ops::upload::keystone::{self, AuthConfig};
use crate::ops::upload::target::{os_version, Digests, Image, UploadOptions};
use crate::support::progress::Progress;
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};

/// Image property holding clawimg's sha256 of the uploaded file.
pub const SHA256_PROPERTY: &str = "clawimg_sha256";

/// A Glance v2 client.
pub struct Glance {
    agent: ureq::Agent,
    /// Base URL ending in `/v2`.
    base: String,
    token: Option<crate::ops::upload::http::Secret>,
}

/// `…/v2` from a catalog or override URL that may or may not name the version.
pub fn v2_base(url: &str) -> String {
    let u = url.trim_end_matches('/');
    if u.ends_with("/v2") {
        u.to_string()
    } else {
        format!("{u}/v2")
    }
}

impl Glance {
    /// Authenticate (when configured) and find the image endpoint.
    pub fn connect(cfg: &AuthConfig) -> Result<Glance> {
        let agent = crate::ops::upload::http::agent();
        let session = keystone::authenticate(&agent, cfg)?;
        let url = match &cfg.image_url {
            Some(u) => u.clone(),
            None => session.endpoint("image", &cfg.interface, cfg.region_name.as_deref())?,
        };
        Ok(Glance {
            agent,
            base: v2_base(&url),
            token: session.token,
        })
    }

    fn req(&self, method: &str, path: &str) -> ureq::Request {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let r = self.agent.request(method, &url);
        match &self.token {
            Some(t) => r.set("X-Auth-Token", &t.0),
            None => r,
        }
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let what = format!("{method} {}{path}", self.base);
        let resp = retry(&what, || {
            let r = self.req(method, path);
            let res = match body {
                Some(b) => r
                    .set("Content-Type", "application/json")
                    .send_string(&b.to_string()),
                None => r.call(),
            };
            res.map_err(|e| classify(e, &what))
        })?;
        if resp.status() == 204 {
            return Ok(Value::Null);
        }
        let text = resp
            .into_string()
            .map_err(|e| Error::failed(format!("{what}: {e}")))?;
        serde_json::from_str(&text).map_err(|e| Error::failed(format!("{what}: bad JSON: {e}")))
    }

    /// Every image called `name` (all pages).
    pub fn find(&self, name: &str) -> Result<Vec<Value>> {
        let mut out = vec![];
        let mut next = format!("/images?name={}&limit=100", percent_encode(name, false));
        loop {
            let page = self.json("GET", &next, None)?;
            out.extend(page["images"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                // `next` is a path from the service root, starting with /v2.
                Some(n) => next = n.strip_prefix("/v2").unwrap_or(n).to_string(),
                None => return Ok(out),
            }
        }
    }

    /// One image.
    pub fn get(&self, id: &str) -> Result<Value> {
        self.json("GET", &format!("/images/{id}"), None)
    }

    /// Create an image record (status `queued`).
    pub fn create(&self, body: &Value) -> Result<Value> {
        self.json("POST", "/images", Some(body))
    }

    /// Delete an image.
    pub fn delete(&self, id: &str) -> Result<()> {
        self.json("DELETE", &format!("/images/{id}"), None)
            .map(|_| ())
    }

    /// Send the image data.
    pub fn put_file(&self, id: &str, img: &Image, bar: &indicatif::ProgressBar) -> Result<()> {
        let what = format!("PUT {}/images/{id}/file", self.base);
        retry(&what, || {
            // A failed PUT leaves the image queued again; anything else is final.
            let status = self.get(id)?["status"].as_str().unwrap_or("").to_string();
            if status != "queued" {
                return Err(Attempt::Fatal(Error::failed(format!(
                    "image {id} is {status}, cannot take data"
                ))));
            }
            bar.set_position(0);
            let f = std::fs::File::open(&img.path)
                .map_err(|e| Error::failed(format!("{}: {e}", img.path.display())))?;
            let reader = Counted { inner: f, bar };
            self.req("PUT", &format!("/images/{id}/file"))
                .set("Content-Type", "application/octet-stream")
                .set("Content-Length", &img.bytes.to_string())
                .send(reader)
                .map(|_| ())
                .map_err(|e| classify(e, &what))
        })
    }

    /// Poll until the image is `active` (error if it becomes `killed`/`deleted`).
    pub fn wait_active(&self, id: &str, timeout: Duration) -> Result<Value> {
        let start = Instant::now();
        loop {
            let v = self.get(id)?;
            match v["status"].as_str().unwrap_or("") {
                "active" => return Ok(v),
                s @ ("killed" | "deleted" | "pending_delete" | "deactivated") => {
                    return Err(Error::failed(format!("image {id} became {s}")))
                }
                s if start.elapsed() > timeout => {
                    return Err(Error::failed(format!(
                        "image {id} still {s} after {}s",
                        timeout.as_secs()
                    )))
                }
                _ => std::thread::sleep(Duration::from_secs(2)),
            }
        }
    }
}

struct Counted<'a, R> {
    inner: R,
    bar: &'a indicatif::ProgressBar,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Does Glance's record match our file? Checks size, `checksum` (md5) and the
/// multihash (`os_hash_algo`/`os_hash_value`) when Glance reports one we computed.
pub fn verify(v: &Value, img: &Image, d: &Digests) -> std::result::Result<(), String> {
    if v["size"].as_u64() != Some(img.bytes) {
        return Err(format!("size {} != {}", v["size"], img.bytes));
    }
    if v["checksum"].as_str() != Some(d.md5.as_str()) {
        return Err(format!("checksum {} != md5 {}", v["checksum"], d.md5));
    }
    match v["os_hash_algo"].as_str() {
        Some("sha512") if v["os_hash_value"].as_str() != Some(d.sha512.as_str()) => {
            Err("os_hash_value (sha512) differs".into())
        }
        Some("sha256") if v["os_hash_value"].as_str() != Some(d.sha256.as_str()) => {
            Err("os_hash_value (sha256) differs".into())
        }
        _ => Ok(()),
    }
}

/// The `POST /v2/images` body.
pub fn create_body(name: &str, o: &UploadOptions, img: &Image, d: &Digests) -> Value {
    json!({
        "name": name,
        "disk_format": img.format.name(),
        "container_format": "bare",
        "visibility": "private",
        // GiB the flavor's disk must have at least.
        "min_disk": img.virtual_bytes.div_ceil(1 << 30),
        "hw_firmware_type": o.firmware.name(),
        "os_distro": "ubuntu",
        "os_version": os_version(img.suite.as_deref()),
        "os_type": "linux",
        SHA256_PROPERTY: d.sha256,
    })
}

/// Upload to Glance; returns the image id.
pub fn upload(
    o: &UploadOptions,
    cfg: &AuthConfig,
    img: &Image,
    d: &Digests,
    progress: &Progress,
) -> Result<String> {
    let name = o.name.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            img.profile.as_deref().unwrap_or("clawimg"),
            &d.sha256[..12]
        )
    });
    let st = progress.stage("glance", "authenticating");
    let g = Glance::connect(cfg)?;
    st.msg(&format!("looking for {name}"));
    let same: Vec<Value> = g
        .find(&name)?
        .into_iter()
        .filter(|v| v[SHA256_PROPERTY].as_str() == Some(d.sha256.as_str()))
        .collect();
    if let Some(v) = same
        .iter()
        .find(|v| v["status"] == "active" && verify(v, img, d).is_ok())
    {
        let id = v["id"].as_str().unwrap_or("").to_string();
        st.done(&format!("{name} already there: {id}"));
        progress.println(&format!("image {name} with sha256 {} exists", d.sha256));
        return Ok(id);
    }
    // An image of ours left queued by an interrupted run takes the data; no duplicate.
    let rec = match same.iter().find(|v| v["status"] == "queued") {
        Some(v) => v.clone(),
        None => g.create(&create_body(&name, o, img, d))?,
    };
    let id = rec["id"]
        .as_str()
        .ok_or_else(|| Error::failed("Glance returned no image id"))?
        .to_string();
    st.done(&format!("{name}: {id}"));
    let bar = progress.bytes("upload", img.bytes);
    g.put_file(&id, img, &bar)?;
    bar.finish_and_clear();
    let st = progress.stage("glance", "waiting for active");
    let v = g.wait_active(&id, o.timeout)?;
    if let Err(why) = verify(&v, img, d) {
        // Never leave a damaged image that a later run could take for ours.
        let _ = g.delete(&id);
        return Err(Error::failed(format!(
            "image {id}: Glance's data differs from {}: {why}; deleted it",
            img.path.display()
        )));
    }
    st.done(&format!("active, checksum verified: {id}"));
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_urls() {
        assert_eq!(v2_base("http://g:9292/"), "http://g:9292/v2");
        assert_eq!(v2_base("http://g:9292/v2/"), "http://g:9292/v2");
        assert_eq!(
            crate::ops::upload::http::percent_encode("a b/ü", false),
            "a%20b%2F%C3%BC"
        );
    }
}
