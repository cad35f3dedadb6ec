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

/// `clawimg check` on a profile with three kinds of problem: a schema error, a lockout
/// (the admin has no key) and an undefined template variable. One run names all three,
/// sorted by file and line, exits 2 and writes nothing; `--json` lists the same problems.
#[test]
fn check_reports_every_problem_in_one_run() {
    let dir = scratch("three-problems");
    let profiles = profiles_copy(&dir, &["base.toml", "hardened.toml"]);
    std::fs::write(
        profiles.join("site.toml"),
        "extends = \"hardened\"\n\n[image]\nesp_mib = \"big\"\n\n[overlays]\nlist = [\"motd\"]\n",
    )
    .unwrap();
    let motd = dir.join("overlays/motd/etc");
    std::fs::create_dir_all(&motd).unwrap();
    std::fs::write(motd.join("motd.tera"), "Welcome to\n{{ site_name }}\n").unwrap();
    let out = dir.join("out");
    let cmd = |json: bool| {
        let mut c = clawimg();
        c.arg("check")
            .arg("site")
            .arg("--profiles-dir")
            .arg(&profiles)
            .arg("--out")
            .arg(&out)
            .arg("--cache-dir")
            .arg(dir.join("cache"));
        if json {
            c.arg("--json");
        }
        run(c)
    };
    let o = cmd(false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let schema = err.find("site.toml:4:11: key `image.esp_mib`");
    let lockout = err.find("[ssh-allowusers-no-key]");
    let var = err.find("motd.tera:2");
    assert!(
        schema.is_some() && lockout.is_some() && var.is_some(),
        "all three problems expected:\n{err}"
    );
    assert!(err.contains("site_name"), "{err}");
    // Sorted by file, then line: the template's problem (overlays/…) before the profile's.
    assert!(var < schema, "{err}");
    assert_untouched(&out);

    let o = cmd(true);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("check --json is JSON");
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().expect("a problems array");
    let keys: Vec<&str> = problems.iter().filter_map(|p| p["key"].as_str()).collect();
    assert!(keys.contains(&"image.esp_mib"), "{v}");
    assert!(
        problems.iter().any(|p| p["message"]
            .as_str()
            .unwrap_or("")
            .contains("ssh-allowusers-no-key")),
        "{v}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["file"].as_str().unwrap_or("").ends_with("motd.tera") && p["line"] == 2),
        "{v}"
    );
    assert_untouched(&out);
}

/// Shell completions and the man page come from the clap definitions: the bash script
/// completes the subcommands, the page documents each of them (and `man -l` renders it
/// when man is installed).
#[test]
fn completions_and_man_page_name_the_commands() {
    let subcommands = [
        "build",
        "check",
        "init",
        "verify",
        "diff",
        "inspect",
        "completions",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let mut c = clawimg();
        c.args(["completions", shell]);
        let o = run(c);
        assert!(o.status.success(), "completions {shell}");
        let s = String::from_utf8_lossy(&o.stdout);
        for sub in subcommands {
            assert!(s.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let mut c = clawimg();
    c.arg("completions").arg("tcsh");
    assert_eq!(
        run(c).status.code(),
        Some(2),
        "unknown shell is a usage error"
    );

    let mut c = clawimg();
    c.arg("man");
    let o = run(c);
    assert!(o.status.success());
    let page = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        page.starts_with(".ie") || page.contains(".TH clawimg"),
        "not roff"
    );
    for sub in subcommands {
        assert!(
            page.contains(&format!(".SH \"CLAWIMG {}\"", sub.to_uppercase())),
            "man page lacks a section for {sub}"
        );
    }
    assert!(
        page.contains("\\-\\-admin\\-key"),
        "init's flags are documented"
    );
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok()
    {
        let dir = scratch("man");
        let f = dir.join("clawimg.1");
        std::fs::write(&f, &page).unwrap();
        let o = std::process::Command::new("man")
            .arg("-l")
            .arg(&f)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "man -l failed");
        assert!(
            text.contains("CLAWIMG INIT") && text.contains("clawimg init"),
            "{text}"
        );
    }
}

/// `init` writes a site profile that passes every lint when given a key, refuses to
/// overwrite it, and prints the next commands.
#[test]
fn init_writes_a_site_profile_check_accepts() {
    let dir = scratch("init-site");
    let profiles = profiles_copy(&dir, &["base.toml", "hardened.toml", "production.toml"]);
    // The overlays, units and catalog beside the profiles, as in a checkout (the slot-use
    // lint reads the overlays and units).
    for d in ["overlays", "units", "images"] {
        std::os::unix::fs::symlink(repo().join(d), dir.join(d)).unwrap();
    }
    let key = dir.join("me.pub");
    keygen(&dir.join("me"), "me@test");
    let mut c = clawimg();
    c.arg("init")
        .arg("site")
        .arg("--profiles-dir")
        .arg(&profiles)
        .arg("--admin-key")
        .arg(&key)
        .args(["--admin-cidr", "198.51.100.7", "--reverse-proxy", "caddy"]);
    let o = run(c);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("next: clawimg check site"), "{text}");
    let written = std::fs::read_to_string(profiles.join("site.toml")).unwrap();
    let pubkey = std::fs::read_to_string(&key).unwrap();
    assert!(written.contains(pubkey.trim()), "{written}");
    assert!(written.contains("# domain = "), "{written}");

    // Refuses to overwrite: exit 2, file unchanged.
    let mut c = clawimg();
    c.arg("init")
        .arg("site")
        .arg("--profiles-dir")
        .arg(&profiles)
        .arg("--no-key");
    assert_eq!(run(c).status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(profiles.join("site.toml")).unwrap(),
        written
    );

    // check: no lint or schema problem in the site profile (only the catalog's missing
    // pins may remain: the committed catalog has no digests).
    let mut c = clawimg();
    c.arg("check")
        .arg("site")
        .arg("--json")
        .arg("--profiles-dir")
        .arg(&profiles)
        .arg("--cache-dir")
        .arg(dir.join("cache"));
    let o = run(c);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    for p in v["problems"].as_array().unwrap() {
        let msg = p["message"].as_str().unwrap_or("");
        assert!(
            !msg.starts_with('[') && !p["file"].as_str().unwrap_or("").ends_with("site.toml"),
            "{p}"
        );
    }
}
