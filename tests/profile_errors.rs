//! Bad profiles get one clear error naming file, line, column and key, exit code 2, and
//! leave `out/` untouched.

mod common;
use common::*;
use std::path::Path;

/// Write profiles into a temp dir (with the real keyring) and run `clawimg build`.
fn build_err(files: &[(&str, &str)], profile: &str) -> (i32, String, std::path::PathBuf) {
    let dir = scratch(&format!("bad-{profile}"));
    let profiles = profiles_copy(&dir, &["base.toml"]);
    for (name, text) in files {
        std::fs::write(profiles.join(name), text).unwrap();
    }
    let out = dir.join("out");
    let mut c = clawimg();
    c.arg("build")
        .arg(profile)
        .arg("--profiles-dir")
        .arg(&profiles)
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(dir.join("cache"));
    let o = run(c);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        out,
    )
}

fn assert_untouched(out: &Path) {
    assert!(!out.exists(), "out/ must not be created by a failed check");
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let (code, err, out) = build_err(
        &[(
            "p.toml",
            "extends = \"base\"\n\n[image]\nhostname = \"x\"\nsizee = \"3GiB\"\n",
        )],
        "p",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("p.toml:5:1"), "{err}");
    assert!(
        err.contains("image.sizee") || err.contains("`sizee`"),
        "{err}"
    );
    assert!(err.contains("unknown field"), "{err}");
    assert_untouched(&out);
}

#[test]
fn wrong_type_names_the_value_and_expected_type() {
    let (code, err, out) = build_err(
        &[("p.toml", "extends = \"base\"\n[image]\nesp_mib = \"big\"\n")],
        "p",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("p.toml:3:11"), "{err}");
    assert!(err.contains("image.esp_mib"), "{err}");
    assert!(err.contains("integer"), "{err}");
    assert_untouched(&out);
}

#[test]
fn extends_cycle_is_reported_with_the_chain() {
    let (code, err, out) = build_err(
        &[
            ("a.toml", "extends = \"b\"\n"),
            ("b.toml", "# b\nextends = \"a\"\n"),
        ],
        "a",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("extends cycle"), "{err}");
    assert!(err.contains("b.toml:2:1"), "{err}");
    assert!(
        err.contains("a.toml -> ") && err.contains("b.toml -> "),
        "{err}"
    );
    assert_untouched(&out);
}

#[test]
fn missing_profile_and_missing_parent() {
    let (code, err, out) = build_err(&[], "nope");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("profile `nope` not found"), "{err}");
    assert_untouched(&out);
    let (code, err, out) = build_err(
        &[("c.toml", "description = \"x\"\nextends = \"ghost\"\n")],
        "c",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("c.toml:2:1") && err.contains("profile `ghost` not found"),
        "{err}"
    );
    assert_untouched(&out);
}

#[test]
fn toml_syntax_error_points_at_the_spot() {
    let (code, err, out) = build_err(&[("s.toml", "extends = \"base\"\n[image\n")], "s");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("s.toml:2:"), "{err}");
    assert_untouched(&out);
}

#[test]
fn keyring_pin_mismatch_refuses_the_build() {
    let (code, err, out) = build_err(
        &[("k.toml", "extends = \"base\"\n[base]\nkeyring_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n")],
        "k",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("base.keyring_sha256") && err.contains("refusing"),
        "{err}"
    );
    assert_untouched(&out);
}

#[test]
fn bad_var_override_is_a_usage_error() {
    let dir = scratch("badvar");
    let mut c = clawimg();
    c.args(["check", "test", "--var", "novalue"])
        .arg("--out")
        .arg(dir.join("out"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected key=value"));
    assert!(!dir.join("out").exists());
}

#[test]
fn var_override_reaches_the_profile() {
    let mut c = clawimg();
    c.args([
        "check",
        "test",
        "--var",
        "purpose=\"override\"",
        "--var",
        "n=3",
    ]);
    let o = run(c);
    assert!(o.status.success());
}

#[test]
fn help_teaches_with_examples() {
    for sub in ["build", "check", "test", "inspect"] {
        let mut c = clawimg();
        c.args([sub, "--help"]);
        let o = run(c);
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && s.contains("Examples:"), "{sub}: {s}");
    }
}
