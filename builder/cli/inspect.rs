//! `clawimg inspect`: print a built image's manifest.

use crate::error::Result;
use crate::image::manifest::Manifest;
use crate::image::provenance::Provenance;
use std::path::Path;

/// `inspect IMAGE [--json | --explain PATH]`.
pub(super) fn inspect(image: &Path, json: bool, explain: Option<&str>) -> Result<i32> {
    let m = Manifest::read(image)?;
    if let Some(path) = explain {
        println!("{}", Provenance::explain(m.extra.provenance.as_ref(), path));
    } else if json {
        println!("{}", m.to_json().unwrap_or_default());
    } else {
        print_summary(&m);
    }
    Ok(0)
}

fn print_summary(m: &Manifest) {
    println!("profile      {}", m.profile);
    println!("input hash   {}", m.input_hash);
    println!("clawimg      {}", m.tool_version);
    println!("suite        {}", m.suite);
    println!("cmdline      {}", m.kernel_cmdline);
    for a in &m.artifacts {
        println!(
            "artifact     {:<24} {:>6} MiB  sha256:{}",
            a.file,
            a.bytes >> 20,
            a.sha256
        );
    }
    for p in &m.partitions.partitions {
        println!(
            "partition    {} {:<11} {:>6} MiB  {}",
            p.number,
            p.name,
            p.bytes >> 20,
            p.guid
        );
    }
    crate::image::declared::print_summary(m);
    for i in m.extra.images.iter().flatten() {
        println!(
            "image        {:<16} {}@{} {:>6} KiB",
            i.name,
            i.reference,
            i.digest,
            i.bytes >> 10
        );
    }
    println!("packages     {}", m.packages.len());
    for p in &m.packages {
        println!("  {} {}", p.name, p.version);
    }
}
