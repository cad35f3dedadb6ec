//! `clawimg upload`: Glance or S3.

use super::args::{Global, UploadArgs};
use crate::error::Result;
use crate::ops::upload;
use std::time::Duration;

/// `upload IMAGE --to glance|s3://BUCKET/KEY`: prints what was uploaded (or reused).
pub(super) fn upload(g: &Global, a: UploadArgs) -> Result<i32> {
    let o = upload::UploadOptions {
        target: upload::Target::parse(&a.to)?,
        image: a.image,
        format: a.format,
        name: a.name,
        cloud: a.cloud,
        endpoint: a.endpoint,
        region: a.region,
        firmware: a.firmware,
        part_size: a.part_size << 20,
        jobs: a.jobs,
        cache_dir: super::cache_dir(g),
        timeout: Duration::from_secs(a.timeout),
        quiet: g.quiet,
    };
    println!("{}", upload::upload(&o)?);
    Ok(0)
}
