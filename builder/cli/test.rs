//! `clawimg test`: boot an image in QEMU and run the probes.

use super::args::{Global, ProfileArgs, TestArgs};
use super::options;
use crate::error::{Error, Result};
use crate::image::manifest::Manifest;
use crate::image::probes::{Expect, Probe};
use crate::ops::test::harness::{self, TestRun};
use crate::{build, profile, support::tools};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Find the image file for TARGET: a file, an output directory, or a profile to build.
fn resolve_image(g: &Global, t: &TestArgs) -> Result<PathBuf> {
    let p = Path::new(&t.target);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    if p.is_dir() {
        return crate::ops::seal::raw_image(p);
    }
    if profile::resolve(&t.target, &g.profiles_dir).is_file() {
        let opts = options(
            g,
            &ProfileArgs {
                profile: t.target.clone(),
                vars: t.vars.clone(),
                sets: t.sets.clone(),
                mirror: std::env::var("CLAWIMG_MIRROR").ok(),
            },
        );
        let r = build::build(&opts)?;
        super::build::print_summary(&r);
        return Ok(r.dir.join(format!("{}.raw", r.manifest.profile)));
    }
    Err(Error::config(format!(
        "test target `{}` is neither an image file, an image directory, nor a profile in {}",
        t.target,
        g.profiles_dir.display()
    )))
}

/// Probes that follow from what the image's manifest declares.
fn manifest_probes(m: &Manifest) -> Vec<Probe> {
    // The hardening plan's types live in build/harden, which reads its section back.
    let hardening: BTreeMap<String, serde_json::Value> = m
        .extra
        .hardening
        .iter()
        .map(|h| ("hardening".to_string(), h.0.clone()))
        .collect();
    let mut probes: Vec<Probe> = build::harden::from_manifest(&hardening)
        .map(|plan| build::harden::probes(&plan))
        .unwrap_or_default();
    // What the image's manifest declares (units, timers, owners and modes) is probed too.
    probes.extend(crate::image::declared::probes(m));
    probes
}

/// `test TARGET`: boot with each firmware; exit 1 when a probe failed.
pub(super) fn test(g: &Global, t: TestArgs) -> Result<i32> {
    tools::check(tools::TEST)?;
    let disk_size =
        match &t.resize {
            Some(s) => Some(crate::support::text::parse_size(s).ok_or_else(|| {
                Error::config(format!("--resize {s}: expected a size like 20GiB"))
            })?),
            None => None,
        };
    let image = resolve_image(g, &t)?;
    let mut extra: Vec<Probe> = Manifest::read(&image)
        .ok()
        .map(|m| manifest_probes(&m))
        .unwrap_or_default();
    extra.extend(t.probes.iter().map(|c| Probe::new(c, c, Expect::Success)));
    let mut all_ok = true;
    for fw in &t.firmware {
        let run = TestRun {
            image: image.clone(),
            firmware: *fw,
            bus: t.disk,
            disk_size,
            accel: t.accel,
            memory_mib: t.memory,
            ssh_timeout: Duration::from_secs(t.timeout),
            extra: extra.clone(),
            key: t.key.clone(),
            ssh_user: t.ssh_user.clone(),
            ssh_port: t.ssh_port,
            console_socket: t.console_socket.clone(),
        };
        let report = harness::run(&run)?;
        println!(
            "{}",
            crate::image::probes::table(&report.title, &report.outcomes)
        );
        println!("  time to SSH: {:.1}s\n", report.time_to_ssh.as_secs_f64());
        all_ok &= report.passed();
    }
    Ok(if all_ok { 0 } else { 1 })
}
