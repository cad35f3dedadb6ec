//! Performance features that can be checked without timing anything:
//! - `--timings` reports every stage and every external tool call;
//! - an unlocked build whose stage cache was emptied (`cache gc --keep 0`) but whose .deb
//!   store is warm builds without any network (own network namespace) and gives the same
//!   image, byte for byte.

mod common;
use common::*;
use std::process::Command;

#[test]
fn warm_package_cache_builds_offline_and_timings_list_tool_calls() {
    let d = scratch("package-cache");
    let profiles = profiles_copy(&d, &["base.toml", "test.toml"]);
    let cache = d.join("cache");
    let mut c = clawimg();
    c.arg("--profiles-dir")
        .arg(&profiles)
        .args(["build", "test", "--timings", "--out"])
        .arg(d.join("out"))
        .arg("--cache-dir")
        .arg(&cache);
    let o = run(c);
    assert!(o.status.success(), "first build failed");
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [
        "timings (total",
        "stage base",
        "stage outputs",
        "mkfs.ext4 -q",
        "per program:",
    ] {
        assert!(
            text.contains(want),
            "--timings output lacks {want:?}:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("mmdebstrap ")),
        "no per-program line for mmdebstrap:\n{text}"
    );

    let mut c = clawimg();
    c.args(["cache", "gc", "--keep", "0", "--cache-dir"])
        .arg(&cache);
    assert!(run(c).status.success());

    let mut c = Command::new("unshare");
    c.current_dir(repo())
        .arg("-n")
        .arg(env!("CARGO_BIN_EXE_clawimg"))
        .arg("--profiles-dir")
        .arg(&profiles)
        .args(["-q", "build", "test", "--out"])
        .arg(d.join("out-offline"))
        .arg("--cache-dir")
        .arg(&cache);
    let o = run(c);
    assert!(
        o.status.success(),
        "build with a cold stage cache and a warm .deb store needed the network"
    );
    let a = std::fs::read_to_string(d.join("out/test/SHA256SUMS")).unwrap();
    let b = std::fs::read_to_string(d.join("out-offline/test/SHA256SUMS")).unwrap();
    assert_eq!(a, b, "the offline build differs from the online one");
    let _ = std::fs::remove_dir_all(&d);
}
