//! Reproducibility, lock and cache crash-safety, with real builds of the test profile:
//! - build A: fresh cache, working dir and TMPDIR A, TZ=Pacific/Chatham, clock faked 400 days ahead;
//! - build B: fresh cache, other dirs, TZ=UTC, killed with SIGKILL during the base stage and
//!   again during assembly, then run to completion;
//! - A and B must have the same raw and qcow2 sha256, the same manifest and SBOM; e2fsck -fn is
//!   clean; `clawimg diff` says identical;
//! - builds D and E: one input changed, on A's cache (the qcow2 reuses A's compressed
//!   clusters) and on B's with no previous build noted (every cluster compressed): same
//!   bytes, `qemu-img check` clean, the qcow2 reads back as the raw image;
//! - build C: A's cache with every stage entry removed (only the .deb store kept), without
//!   network (own network namespace): the lock is served from cached .debs, same digests.

mod common;

use common::{repo, run, scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A copy of the repository's profiles with a lock made now by `clawimg lock test`: a lock
/// committed to the repository would go stale as soon as the archive moves on.
fn locked_profiles() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("repro-profiles");
        let o = Command::new("cp")
            .arg("-a")
            .arg(repo().join("profiles"))
            .arg(d.join("profiles"))
            .output()
            .unwrap();
        assert!(o.status.success());
        let profiles = d.join("profiles");
        let _ = std::fs::remove_file(profiles.join("test.lock"));
        let mut c = Command::new(env!("CARGO_BIN_EXE_clawimg"));
        c.current_dir(&d)
            .arg("--profiles-dir")
            .arg(&profiles)
            .arg("-q")
            .arg("lock")
            .arg("test")
            .arg("--packages-only")
            .arg("--cache-dir")
            .arg(d.join("cache"));
        let o = run(c);
        assert!(o.status.success(), "clawimg lock test failed");
        assert!(profiles.join("test.lock").is_file());
        profiles
    })
}

fn clawimg_in(dir: &Path, tz: &str) -> Command {
    clawimg_with(dir, tz, locked_profiles())
}

fn clawimg_with(dir: &Path, tz: &str, profiles: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clawimg"));
    c.current_dir(dir)
        .env("TZ", tz)
        .env("TMPDIR", dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CLAWIMG_OUT")
        .env_remove("CLAWIMG_CACHE")
        .env_remove("CLAWIMG_PROFILES")
        .arg("--profiles-dir")
        .arg(profiles);
    c
}

fn build_args(c: &mut Command, dir: &Path) {
    c.arg("-q")
        .arg("build")
        .arg("test")
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--cache-dir")
        .arg(dir.join("cache"));
}

fn sums(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("out/test/SHA256SUMS")).expect("SHA256SUMS")
}

/// Start a build and SIGKILL it once `ready()` holds; returns whether it was killed in time.
fn kill_when(dir: &Path, what: &str, ready: impl Fn() -> bool) {
    let mut c = clawimg_in(dir, "UTC");
    build_args(&mut c, dir);
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn build");
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("build finished ({st}) before it could be killed {what}");
        }
        if ready() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1200),
            "never reached {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    eprintln!(
        "killed build {what} after {:.1}s",
        start.elapsed().as_secs_f64()
    );
}

fn temp_entries(cache: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(cache.join("stages"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn root_partition(dir: &Path) -> (PathBuf, u64) {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/test/manifest.json")).unwrap())
            .unwrap();
    let root = m["partitions"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "root")
        .unwrap()
        .clone();
    (
        dir.join("out/test/test.raw"),
        root["offset"].as_u64().unwrap(),
    )
}

#[test]
fn reproducible_locked_offline_and_crash_safe() {
    let a = scratch("repro-a");
    let b = scratch("repro-b");

    // A: faked clock (400 days ahead), unusual time zone.
    let mut c = Command::new("faketime");
    c.current_dir(&a)
        .env("TZ", "Pacific/Chatham")
        .env("TMPDIR", &a)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CLAWIMG_CACHE")
        .arg("-f")
        .arg("+400d")
        .arg(env!("CARGO_BIN_EXE_clawimg"))
        .arg("--profiles-dir")
        .arg(locked_profiles());
    build_args(&mut c, &a);
    let o = run(c);
    assert!(o.status.success(), "build A failed");

    // B: SIGKILL during the base stage (mmdebstrap running in the cache's temp dir) ...
    let cache_b = b.join("cache");
    kill_when(&b, "during the base stage", || {
        temp_entries(&cache_b, ".tmp-")
            .iter()
            .any(|t| t.join("rootfs/usr/bin/bash").exists())
    });
    // ... and during assembly (the raw image is being written).
    let out_b = b.join("out");
    kill_when(&b, "during assembly", || {
        std::fs::read_dir(&out_b)
            .map(|rd| {
                rd.flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with(".test.tmp-")
                        && e.path().join("test.raw").exists()
                })
            })
            .unwrap_or(false)
    });
    assert!(
        !b.join("out/test").exists(),
        "a killed build must not leave an output"
    );
    let mut c = clawimg_in(&b, "UTC");
    build_args(&mut c, &b);
    let o = run(c);
    assert!(o.status.success(), "build B after the kills failed");
    assert!(
        temp_entries(&cache_b, ".tmp-").is_empty(),
        "temporary cache entries left behind"
    );

    // Same bytes, same manifest, same SBOM.
    assert_eq!(
        sums(&a),
        sums(&b),
        "raw/qcow2/SBOM digests differ between A and B"
    );
    let ma = std::fs::read_to_string(a.join("out/test/manifest.json")).unwrap();
    let mb = std::fs::read_to_string(b.join("out/test/manifest.json")).unwrap();
    assert_eq!(ma, mb, "manifests differ");
    let sa = std::fs::read(a.join("out/test/test.cdx.json")).expect("A wrote its SBOM");
    let sb = std::fs::read(b.join("out/test/test.cdx.json")).expect("B wrote its SBOM");
    assert!(
        sa.len() > 10_000,
        "SBOM of A is too small to list the packages"
    );
    assert!(sa == sb, "SBOMs differ between A and B");
    assert!(
        sums(&a).contains("  test.cdx.json\n"),
        "SHA256SUMS lacks the SBOM"
    );
    let (raw, off) = root_partition(&a);
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(format!("{}?offset={off}", raw.display()))
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let mut c = clawimg_in(&a, "UTC");
    c.arg("diff")
        .arg(a.join("out/test"))
        .arg(b.join("out/test"));
    let o = run(c);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("identical"),
        "clawimg diff reports a difference"
    );

    // D: one input changed, built on A's cache: the qcow2 takes the unchanged clusters'
    // compressed bytes from A's image. E: the same inputs on B's cache with its note of
    // the last build removed, so every cluster is compressed afresh. Same bytes.
    let changed = |dir: &Path, tz: &str| {
        let mut c = clawimg_in(dir, tz);
        c.args([
            "-q",
            "build",
            "test",
            "--timings",
            "--var",
            "repro_probe=changed",
        ])
        .arg("--out")
        .arg(dir.join("out-changed"))
        .arg("--cache-dir")
        .arg(dir.join("cache"));
        let o = run(c);
        assert!(o.status.success(), "build with a changed input failed");
        let timings =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        let line = timings
            .lines()
            .find(|l| l.contains("clawimg:qcow2"))
            .unwrap_or_else(|| panic!("no qcow2 line in --timings:\n{timings}"))
            .to_string();
        let sums = std::fs::read_to_string(dir.join("out-changed/test/SHA256SUMS")).unwrap();
        (line, sums)
    };
    let (line_d, sums_d) = changed(&a, "UTC");
    std::fs::remove_dir_all(b.join("cache/previous")).expect("B noted its last build");
    let (line_e, sums_e) = changed(&b, "Asia/Tokyo");
    assert!(!line_d.contains(" 0 reused"), "D reused nothing: {line_d}");
    assert!(
        line_e.contains(" 0 reused"),
        "E had nothing to reuse: {line_e}"
    );
    assert_ne!(sums_d, sums(&a), "the changed input changed nothing");
    assert_eq!(
        sums_d, sums_e,
        "reusing compressed clusters changed the image bytes"
    );
    let qcow = a.join("out-changed/test/test.qcow2");
    let check = Command::new("qemu-img")
        .arg("check")
        .arg(&qcow)
        .output()
        .unwrap();
    assert!(check.status.success(), "qemu-img check: {check:?}");
    let cmp = Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "qcow2"])
        .arg(a.join("out-changed/test/test.raw"))
        .arg(&qcow)
        .output()
        .unwrap();
    assert!(cmp.status.success(), "qcow2 and raw differ: {cmp:?}");

    // C: only A's .deb store, no network at all.
    let mut c = clawimg_in(&a, "UTC");
    c.arg("--cache-dir")
        .arg(a.join("cache"))
        .arg("cache")
        .arg("gc")
        .arg("--keep")
        .arg("0");
    assert!(run(c).status.success());
    assert!(temp_entries(&a.join("cache"), "base-").is_empty());
    let mut c = Command::new("unshare");
    c.current_dir(&a)
        .env("TZ", "Asia/Tokyo")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CLAWIMG_CACHE")
        .arg("-n")
        .arg(env!("CARGO_BIN_EXE_clawimg"));
    c.arg("--profiles-dir")
        .arg(locked_profiles())
        .arg("-q")
        .arg("build")
        .arg("test");
    c.arg("--out")
        .arg(a.join("out-offline"))
        .arg("--cache-dir")
        .arg(a.join("cache"));
    let o = run(c);
    assert!(
        o.status.success(),
        "offline build from the lock's cached .debs failed"
    );
    let off = std::fs::read_to_string(a.join("out-offline/test/SHA256SUMS")).unwrap();
    assert_eq!(off, sums(&a), "the offline build differs");
}

/// A locked version the archive no longer serves (and the cache lacks) is a clear error that
/// says how to refresh the lock, and nothing reaches the output directory.
#[test]
fn stale_lock_is_a_clear_error() {
    let d = scratch("stale-lock");
    let profiles = d.join("profiles");
    std::fs::create_dir_all(profiles.join("keyrings")).unwrap();
    for f in [
        "base.toml",
        "test.toml",
        "keyrings/ubuntu-archive-keyring.gpg",
    ] {
        std::fs::copy(repo().join("profiles").join(f), profiles.join(f)).unwrap();
    }
    let lock = std::fs::read_to_string(locked_profiles().join("test.lock")).unwrap();
    let start = lock.find("name = \"less\"").expect("less in the lock");
    let vline = start + lock[start..].find("version = ").unwrap();
    let vend = vline + lock[vline..].find('\n').unwrap();
    let stale = format!(
        "{}version = \"1:0.0-gone\"{}",
        &lock[..vline],
        &lock[vend..]
    );
    std::fs::write(profiles.join("test.lock"), stale).unwrap();
    let mut c = clawimg_with(&d, "UTC", &profiles);
    build_args(&mut c, &d);
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("less: locked version 1:0.0-gone is no longer served"),
        "{err}"
    );
    assert!(err.contains("clawimg lock test --update"), "{err}");
    assert!(!d.join("out/test").exists());
    assert!(
        temp_entries(&d.join("cache"), "base-").is_empty(),
        "a failed lock check must not be cached"
    );
}
