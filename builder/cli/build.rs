//! `clawimg check` and `clawimg build`.

use super::args::{Global, ProfileArgs};
use super::options;
use crate::build::{self, BuildResult};
use crate::error::Result;
use crate::support::{exec, tools};

/// `check PROFILE`: load and lint the profile, check the host tools.
pub(super) fn check(g: &Global, p: &ProfileArgs) -> Result<i32> {
    let c = build::check(&options(g, p))?;
    let found = tools::check(tools::BUILD)?;
    println!(
        "profile {} ok ({})",
        c.loaded.name,
        c.loaded
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" <- ")
    );
    println!("  input hash  {}", c.input_hash);
    println!("  keyring     {} (sha256 pinned)", c.keyring.display());
    println!("  packages    {}", c.loaded.profile.base.packages.join(" "));
    println!("  lints       ok ({} acknowledged)", c.acknowledged.len());
    for f in &c.acknowledged {
        println!("  warning{f}");
    }
    if let Some(note) = crate::profile::secrets::console_recovery(&c.loaded.profile) {
        println!("  console     {note}");
    }
    for i in &c.images {
        println!(
            "  image       {} {}@{} ({})",
            i.name, i.reference, i.digest, i.platform
        );
    }
    if g.verbose {
        for (t, v) in found {
            println!("  tool        {t}: {v}");
        }
    }
    Ok(0)
}

/// `build PROFILE [--locked]`.
pub(super) fn build(g: &Global, p: &ProfileArgs, locked: bool) -> Result<i32> {
    let opts = build::BuildOptions {
        locked,
        ..options(g, p)
    };
    let r = build::build(&opts)?;
    print_summary(&r);
    Ok(0)
}

/// What a build made: artifacts, input hash and stage timings.
pub(super) fn print_summary(r: &BuildResult) {
    let m = &r.manifest;
    println!(
        "built {} in {:.1}s -> {}",
        m.profile,
        r.total.as_secs_f64(),
        r.dir.display()
    );
    for a in &m.artifacts {
        println!(
            "  {:<20} {:>8.1} MiB  sha256:{}",
            a.file,
            a.bytes as f64 / 1048576.0,
            a.sha256
        );
    }
    println!("  packages             {}", m.packages.len());
    println!("  input hash           {}", m.input_hash);
    for (name, d) in &r.timings {
        println!("  {:<20} {:>6.1}s", name, d.as_secs_f64());
    }
    if exec::timings() {
        print!(
            "{}",
            crate::support::progress::report(&r.timings, &exec::calls(), r.total)
        );
    }
}
