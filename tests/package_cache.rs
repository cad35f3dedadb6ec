//! Performance features that can be checked without timing anything:
//! - `--timings` reports every stage and every external tool call;
//! - a no-change rebuild is a cache hit with the same outputs, and an output edited in place
//!   (it is a hard link into the cache) is refused on the next hit;
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
    let mut c = clawimg_own_cache();
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

    // Nothing changed: a hit, trusted by its stamps; an in-place edit of the output (a hard
    // link into the cache) is found on the next hit.
    let hit = |out: &str| {
        let mut c = clawimg_own_cache();
        c.arg("--profiles-dir")
            .arg(&profiles)
            .args(["-q", "build", "test", "--out"])
            .arg(d.join(out))
            .arg("--cache-dir")
            .arg(&cache);
        run(c)
    };
    let o = hit("out-hit");
    assert!(o.status.success(), "no-change rebuild failed");
    let first = std::fs::read_to_string(d.join("out/test/SHA256SUMS")).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.join("out-hit/test/SHA256SUMS")).unwrap(),
        first
    );
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("out-hit/test/test.raw"))
            .unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"tampered").unwrap();
    }
    let o = hit("out-hit2");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is damaged (test.raw changed)"),
        "an edited cached image must be refused: {err}"
    );

    let mut c = clawimg_own_cache();
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
