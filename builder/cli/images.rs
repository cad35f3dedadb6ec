//! `clawimg images pull|import`: the container image blob cache.

use super::args::{Global, ProfileArgs};
use super::options;
use crate::build::{self, images, images::blobs::BlobCache};
use crate::error::Result;
use crate::support::progress::Progress;
use std::path::Path;

/// `images pull PROFILE`: the profile's pinned images into the blob cache.
pub(super) fn pull(g: &Global, p: &ProfileArgs) -> Result<i32> {
    let opts = options(g, p);
    let c = build::check(&opts)?;
    let client = images::client(&g.registry_mirrors)?;
    let cache = BlobCache::open(&opts.cache_dir)?;
    let fetched = images::fetch(&c.images, &cache, &client, &Progress::new(g.quiet))?;
    for f in &fetched {
        let bytes: u64 = f.layers.iter().map(|l| l.size).sum();
        println!(
            "{:<16} {}@{} -> image id {} ({} layers, {} bytes)",
            f.pinned.name,
            f.pinned.reference,
            f.manifest.digest,
            f.config.digest,
            f.layers.len(),
            bytes
        );
    }
    println!(
        "{} images in {}, {} registry requests",
        fetched.len(),
        opts.cache_dir.display(),
        client.requests()
    );
    Ok(0)
}

/// `images import ARCHIVE`: seed the blob cache from an OCI archive, offline.
pub(super) fn import(g: &Global, archive: &Path) -> Result<i32> {
    let cache_dir = super::cache_dir(g);
    let r = BlobCache::open(&cache_dir)?.import(archive)?;
    for (name, d) in &r.images {
        println!(
            "{:<40} {d}",
            if name.is_empty() { "(unnamed)" } else { name }
        );
    }
    println!(
        "{} blobs verified, {} new, into {}",
        r.blobs,
        r.new_blobs,
        cache_dir.display()
    );
    Ok(0)
}
