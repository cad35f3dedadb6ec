//! `clawimg check` and `clawimg build`.

use super::args::{Global, ProfileArgs};
use super::options;
use crate::build::{self, BuildResult};
use crate::error::Result;
use crate::support::{exec, tools};

/// `check PROFILE`: load and lint the profile, check the host tools. Every problem is
/// listed (sorted by file and line) before the exit code 2.
pub(super) fn check(g: &Global, p: &ProfileArgs, json: bool) -> Result<i32> {
    let c = match build::check(&options(g, p)).and_then(|c| Ok((c, tools::check(tools::BUILD)?))) {
        Ok(c) => c,
        Err(e) if json => return Ok(refused(&p.profile, &e)),
        Err(e) => return Err(e),
    };
    let (c, found) = c;
    if json {
        let v = serde_json::json!({
            "ok": true,
            "profile": c.loaded.name,
            "files": c.loaded.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "input_hash": c.input_hash,
            "keyring": c.keyring.display().to_string(),
            "packages": c.loaded.profile.base.packages,
            "acknowledged": c.acknowledged.iter().map(|f| serde_json::json!({
                "id": f.id,
                "key": f.key,
                "message": f.message,
                "reason": f.acknowledged,
            })).collect::<Vec<_>>(),
            "images": c.images.iter().map(|i| serde_json::json!({
                "name": i.name,
                "reference": i.reference,
                "digest": i.digest,
                "platform": i.platform.to_string(),
            })).collect::<Vec<_>>(),
            "tools": found.iter().map(|(t, v)| serde_json::json!({"name": t, "version": v})).collect::<Vec<_>>(),
            "problems": [],
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
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

/// With `--json`, a refused check or build: the problems as JSON on stdout, the message on
/// stderr, and the error's exit code.
fn refused(profile: &str, e: &crate::error::Error) -> i32 {
    let v = serde_json::json!({
        "ok": false,
        "profile": profile,
        "exit_code": e.exit_code(),
        "problems": e.problems(),
    });
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    eprintln!("error: {e}");
    e.exit_code()
}

/// `build PROFILE [--locked] [--json]`.
pub(super) fn build(g: &Global, p: &ProfileArgs, locked: bool, json: bool) -> Result<i32> {
    let opts = build::BuildOptions {
        locked,
        ..options(g, p)
    };
    let r = match build::build(&opts) {
        Ok(r) => r,
        Err(e) if json && e.exit_code() == 2 => return Ok(refused(&p.profile, &e)),
        Err(e) => return Err(e),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary_json(&r)).unwrap_or_default()
        );
    } else {
        print_summary(&r);
    }
    Ok(0)
}

/// The build summary with stable field names (`build --json`).
fn summary_json(r: &BuildResult) -> serde_json::Value {
    let m = &r.manifest;
    serde_json::json!({
        "ok": true,
        "profile": m.profile,
        "dir": r.dir.display().to_string(),
        "seconds": r.total.as_secs_f64(),
        "input_hash": m.input_hash,
        "tool_version": m.tool_version,
        "artifacts": m.artifacts,
        "packages": m.packages.len(),
        "images": m.extra.images.as_ref().map_or(0, Vec::len),
        "sbom": m.extra.sbom.as_ref().map(|s| &s.file),
        "stages": r.timings.iter().map(|(n, d)| serde_json::json!({
            "name": n,
            "seconds": d.as_secs_f64(),
        })).collect::<Vec<_>>(),
    })
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
