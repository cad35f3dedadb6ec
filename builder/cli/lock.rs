//! `clawimg lock`: pin container image digests and packages.

use super::args::{Global, ProfileArgs};
use super::options;
use crate::build::images;
use crate::error::Result;
use crate::profile;

/// `lock PROFILE [--update] [--images-only | --packages-only]`.
pub(super) fn lock(
    g: &Global,
    p: &ProfileArgs,
    update: bool,
    images_only: bool,
    packages_only: bool,
) -> Result<i32> {
    if !packages_only {
        let loaded = profile::load(&p.profile, &g.profiles_dir, &p.vars)?;
        let client = images::client(&g.registry_mirrors)?;
        let locked = images::lock(&loaded, &client, update)?;
        for l in &locked {
            if l.old == l.new {
                println!("unchanged  {:<16} {}@{}", l.name, l.reference, l.new);
            } else {
                let old = if l.old.is_empty() { "(none)" } else { &l.old };
                println!(
                    "changed    {:<16} {} {old} -> {}",
                    l.name, l.reference, l.new
                );
            }
        }
        println!(
            "{} images, {} changed",
            locked.len(),
            locked.iter().filter(|l| l.old != l.new).count()
        );
        if images_only {
            return Ok(0);
        }
    }
    let (l, path, changes) = crate::ops::lock::lock(&options(g, p), update)?;
    println!(
        "wrote {} ({} packages, SOURCE_DATE_EPOCH {})",
        path.display(),
        l.packages.len(),
        l.source_date_epoch
    );
    if changes.is_empty() {
        println!("  no changes");
    }
    for c in changes {
        println!("{c}");
    }
    Ok(0)
}
