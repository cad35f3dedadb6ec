//! The software bill of materials written with every build: CycloneDX 1.5 JSON
//! (`NAME.cdx.json`) listing every installed .deb (name, version, architecture, the .deb's
//! sha256, a `pkg:deb/ubuntu/…` purl) and every baked container image (`pkg:oci/…` purl
//! with its pinned digest).
//!
//! It is made only from the build's inputs, so it is as reproducible as the disk image:
//! the timestamp is SOURCE_DATE_EPOCH, the serial number derives from the input hash, and
//! components are sorted.

use crate::error::{Context, Result};
use crate::image::manifest::ImageEntry;
use crate::profile::lock::Resolved;
use crate::support::reference::Reference;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// File name of the SBOM in an output directory.
pub fn file_name(profile: &str) -> String {
    format!("{profile}.cdx.json")
}

/// CycloneDX specification version written.
pub const SPEC_VERSION: &str = "1.5";

/// The `distro` qualifier of every .deb purl (the suite clawimg builds).
const DISTRO: &str = "ubuntu-24.04";

/// What the SBOM describes: the image and where its contents came from.
pub struct SbomInput<'a> {
    /// Profile name (the image's name).
    pub profile: &'a str,
    /// Input hash of the build.
    pub input_hash: &'a str,
    /// SOURCE_DATE_EPOCH of the build (the document's timestamp).
    pub source_date_epoch: u64,
    /// clawimg version.
    pub tool_version: &'a str,
    /// Installed packages with their .deb sha256.
    pub debs: &'a [Resolved],
    /// Baked container images.
    pub images: &'a [ImageEntry],
}

/// The SBOM document as pretty JSON (keys sorted, trailing newline).
pub fn render(i: &SbomInput) -> Result<String> {
    let mut debs: Vec<&Resolved> = i.debs.iter().collect();
    debs.sort_by(|a, b| (&a.name, &a.arch, &a.version).cmp(&(&b.name, &b.arch, &b.version)));
    debs.dedup_by(|a, b| (&a.name, &a.arch, &a.version) == (&b.name, &b.arch, &b.version));
    let mut images: Vec<&ImageEntry> = i.images.iter().collect();
    images.sort_by(|a, b| (&a.name, &a.digest).cmp(&(&b.name, &b.digest)));

    let mut components: Vec<Value> = debs.iter().map(|d| deb_component(d)).collect();
    components.extend(images.iter().map(|e| image_component(e)));
    let refs: Vec<Value> = components.iter().map(|c| c["bom-ref"].clone()).collect();
    let root = format!("image:{}", i.profile);
    let doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": format!("urn:uuid:{}", serial(i.input_hash)),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(i.source_date_epoch),
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "clawimg",
                    "version": i.tool_version,
                }],
            },
            "component": {
                "type": "operating-system",
                "bom-ref": root,
                "name": i.profile,
                "version": i.input_hash,
                "description": "Ubuntu 24.04 disk image built by clawimg (version: the input hash)",
            },
        },
        "components": components,
        "dependencies": [{
            "ref": root,
            "dependsOn": refs,
        }],
    });
    Ok(serde_json::to_string_pretty(&doc).ctx(|| "serialize the SBOM".into())? + "\n")
}

/// A .deb as a CycloneDX library component.
fn deb_component(d: &Resolved) -> Value {
    let purl = deb_purl(&d.name, &d.version, &d.arch);
    json!({
        "type": "library",
        "bom-ref": purl,
        "name": d.name,
        "version": d.version,
        "purl": purl,
        "hashes": [{"alg": "SHA-256", "content": d.sha256.to_lowercase()}],
        "properties": [{"name": "clawimg:arch", "value": d.arch}],
    })
}

/// A baked container image as a CycloneDX container component.
fn image_component(e: &ImageEntry) -> Value {
    let purl = oci_purl(&e.reference, &e.digest);
    let hex = e.digest.strip_prefix("sha256:").unwrap_or(&e.digest);
    json!({
        "type": "container",
        "bom-ref": purl,
        "name": e.name,
        "version": e.digest,
        "purl": purl,
        "hashes": [{"alg": "SHA-256", "content": hex}],
        "properties": [
            {"name": "clawimg:reference", "value": e.reference},
            {"name": "clawimg:platform", "value": e.platform},
            {"name": "clawimg:image_id", "value": e.image_id},
            {"name": "clawimg:archive", "value": e.archive},
            {"name": "clawimg:archive_sha256", "value": e.archive_sha256},
        ],
    })
}

/// `pkg:deb/ubuntu/NAME@VERSION?arch=ARCH&distro=ubuntu-24.04`.
pub fn deb_purl(name: &str, version: &str, arch: &str) -> String {
    format!(
        "pkg:deb/ubuntu/{}@{}?arch={}&distro={DISTRO}",
        pct(name, false),
        pct(version, false),
        pct(arch, false)
    )
}

/// `pkg:oci/NAME@sha256%3A…?repository_url=REGISTRY/REPOSITORY` (the name is the last
/// path segment of the repository).
pub fn oci_purl(reference: &str, digest: &str) -> String {
    let repo_url = match Reference::parse(reference) {
        Ok(r) => format!("{}/{}", r.registry, r.repository),
        // Not expected (catalog references are checked); keep what the image says.
        Err(_) => reference.split('@').next().unwrap_or(reference).to_string(),
    };
    let path = repo_url
        .rsplit_once(':')
        .map_or(repo_url.as_str(), |(p, tag)| {
            if tag.contains('/') {
                &repo_url
            } else {
                p
            }
        });
    let name = path.rsplit('/').next().unwrap_or(path).to_lowercase();
    format!(
        "pkg:oci/{}@{}?repository_url={}",
        pct(&name, false),
        pct(digest, false),
        pct(path, true)
    )
}

/// Percent-encode what a purl component must not contain raw (`/` kept in qualifier
/// values such as a repository URL).
fn pct(s: &str, keep_slash: bool) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'-' | b'_' | b'~')
            || (keep_slash && b == b'/');
        if keep {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// A UUID (version 5 layout, RFC 4122 variant) derived from the input hash: the same
/// inputs give the same serial number.
fn serial(input_hash: &str) -> uuid::Uuid {
    let mut h = Sha256::new();
    h.update(b"clawimg-sbom-serial\0");
    h.update(input_hash.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (UTC).
fn rfc3339(t: u64) -> String {
    let (year, month, day) = crate::support::text::civil((t / 86400) as i64);
    let secs = t % 86400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(name: &str, version: &str) -> Resolved {
        Resolved {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: "AB".repeat(32),
        }
    }

    fn image() -> ImageEntry {
        ImageEntry {
            name: "redis".into(),
            reference: "docker.io/redis/redis-stack-server:7.4.0-v1".into(),
            digest: format!("sha256:{}", "c".repeat(64)),
            manifest_digest: format!("sha256:{}", "d".repeat(64)),
            image_id: format!("sha256:{}", "e".repeat(64)),
            platform: "linux/amd64".into(),
            archive: "/var/lib/clawimg/images/redis.tar".into(),
            archive_sha256: "f".repeat(64),
            bytes: 1,
        }
    }

    #[test]
    fn purls_follow_the_spec() {
        assert_eq!(
            deb_purl("libstdc++6", "1:14.2.0-4ubuntu2~24.04", "amd64"),
            "pkg:deb/ubuntu/libstdc%2B%2B6@1%3A14.2.0-4ubuntu2~24.04?arch=amd64&distro=ubuntu-24.04"
        );
        let d = format!("sha256:{}", "c".repeat(64));
        assert_eq!(
            oci_purl("ghcr.io/openclaw/openclaw:2026.2.23", &d),
            format!(
                "pkg:oci/openclaw@sha256%3A{}?repository_url=ghcr.io/openclaw/openclaw",
                "c".repeat(64)
            )
        );
        assert!(oci_purl("localhost:5000/team/app:1", &d)
            .ends_with("?repository_url=localhost%3A5000/team/app"));
    }

    #[test]
    fn same_inputs_same_bytes_sorted_and_complete() {
        let debs = [deb("zlib1g", "1:1.3"), deb("bash", "5.2")];
        let imgs = [image()];
        let input = |debs: &[Resolved]| {
            render(&SbomInput {
                profile: "p",
                input_hash: &"1".repeat(64),
                source_date_epoch: 1_714_003_200,
                tool_version: "0.1.0",
                debs,
                images: &imgs,
            })
            .unwrap()
        };
        let a = input(&debs);
        let reversed: Vec<Resolved> = debs.iter().rev().cloned().collect();
        assert_eq!(a, input(&reversed), "order of the inputs must not matter");
        let v: Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["specVersion"], "1.5");
        assert_eq!(v["metadata"]["timestamp"], "2024-04-25T00:00:00Z");
        let serial = v["serialNumber"].as_str().unwrap();
        assert!(serial.starts_with("urn:uuid:") && serial.as_bytes()[23] == b'5');
        let c = v["components"].as_array().unwrap();
        let names: Vec<&str> = c.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["bash", "zlib1g", "redis"]);
        assert_eq!(c[0]["hashes"][0]["content"], "ab".repeat(32));
        assert_eq!(c[2]["type"], "container");
        assert_eq!(
            v["dependencies"][0]["dependsOn"].as_array().unwrap().len(),
            3
        );
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_827_696), "2000-02-29T12:34:56Z");
    }
}
