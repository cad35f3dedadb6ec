//! `clawimg cache du|gc`.

use super::args::Global;
use crate::error::Result;
use crate::support::cache::Cache;

/// `cache du`: size of each entry and of the .deb store.
pub(super) fn du(g: &Global) -> Result<i32> {
    let dir = super::cache_dir(g);
    let cache = Cache::open(&dir)?;
    let mut total = cache.debs_bytes();
    for e in cache.entries()? {
        println!("{:>10.1} MiB  {}", e.bytes as f64 / 1048576.0, e.name);
        total += e.bytes;
    }
    println!("{:>10.1} MiB  debs/", cache.debs_bytes() as f64 / 1048576.0);
    println!(
        "{:>10.1} MiB  total ({})",
        total as f64 / 1048576.0,
        dir.display()
    );
    Ok(0)
}

/// `cache gc --keep N`.
pub(super) fn gc(g: &Global, keep: usize) -> Result<i32> {
    let cache = Cache::open_exclusive(&super::cache_dir(g))?;
    let gone = cache.gc(keep)?;
    let freed: u64 = gone.iter().map(|e| e.bytes).sum();
    for e in &gone {
        println!("removed {}", e.name);
    }
    println!(
        "freed {:.1} MiB, kept {} entries",
        freed as f64 / 1048576.0,
        cache.entries()?.len()
    );
    Ok(0)
}
