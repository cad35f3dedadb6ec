//! `clawimg upload`: put a built image where a cloud can boot it, OpenStack Glance
//! ([`crate::ops::upload::glance`]) or S3-compatible object storage ([`crate::ops::upload::s3`]). This module holds
//! what both share: the target, the image file and its digests (checked against the
//! build's SHA256SUMS before any request), the HTTP agent and retries.

pub mod glance;
pub mod http;
pub mod keystone;
pub mod s3;
pub mod target;

use target::{digests, resolve};
pub use target::{BootFirmware, Format, Target, UploadOptions};

use crate::error::Result;
use crate::support::progress::Progress;

/// Upload; returns what to print (a Glance image id or an s3:// URL).
pub fn upload(o: &UploadOptions) -> Result<String> {
    let img = resolve(&o.image, o.format)?;
    // Settings and credentials are checked before the file is read.
    enum Dest<'a> {
        Glance(Box<crate::ops::upload::keystone::AuthConfig>),
        S3(crate::ops::upload::s3::Config, &'a str, &'a str),
    }
    let dest = match &o.target {
        Target::Glance => Dest::Glance(Box::new(crate::ops::upload::keystone::AuthConfig::load(
            o.cloud.as_deref(),
            o.endpoint.as_deref(),
        )?)),
        Target::S3 { bucket, key } => Dest::S3(
            crate::ops::upload::s3::Config::load(o.endpoint.as_deref(), o.region.as_deref())?,
            bucket,
            key,
        ),
    };
    let progress = Progress::new(o.quiet);
    let st = progress.stage("digest", &img.path.display().to_string());
    let d = digests(&img.path, &progress)?;
    // The file must still be the build's before any byte leaves this machine.
    match crate::ops::integrity::recorded(&img.path)? {
        Some(r) if r.sha256 != d.sha256 => {
            return Err(crate::error::Error::config(format!(
                "{}: sha256 {}, but {} records {}: the image changed after the build (corrupted, truncated or edited); refusing it, nothing was uploaded",
                img.path.display(),
                d.sha256,
                r.source,
                r.sha256
            )));
        }
        Some(r) => {
            st.done(&format!(
                "sha256:{} (as {} records)",
                &d.sha256[..16],
                r.source
            ));
        }
        None => {
            crate::ops::integrity::note_unverified(&img.path);
            st.done(&format!("sha256:{}", &d.sha256[..16]));
        }
    }
    match dest {
        Dest::Glance(cfg) => crate::ops::upload::glance::upload(o, &cfg, &img, &d, &progress),
        Dest::S3(cfg, bucket, key) => {
            crate::ops::upload::s3::upload(o, &cfg, bucket, key, &img, &d, &progress)
        }
    }
}
