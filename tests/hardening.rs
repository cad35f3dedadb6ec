//! Hardening acceptance: profiles/hardened.toml built with a test key, the admin source set to
//! the QEMU user-network address and a small swap file, booted once; the module probes run
//! inside the VM as the admin user on port 222. And a lockout profile is refused by `build`.

mod common;
use common::*;

#[test]
fn lockout_profile_is_refused_before_anything_is_written() {
    let dir = scratch("lockout");
    let profiles = profiles_copy(&dir, &["base.toml", "hardened.toml"]);
    // SSH moved to 2222 while UFW still only admits 222: the first boot would lock everyone out.
    std::fs::write(
        profiles.join("lockout.toml"),
        "extends = \"hardened\"\n[ssh]\nport = 2222\n[fail2ban.jails.sshd]\nport = \"2222\"\n[users.admin]\nauthorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t\"]\n",
    )
    .unwrap();
    let out = dir.join("out");
    let mut c = clawimg();
    c.arg("build")
        .arg("lockout")
        .arg("--profiles-dir")
        .arg(&profiles)
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(dir.join("cache"));
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("[ssh-port-not-allowed]") && err.contains("TCP port 2222"),
        "{err}"
    );
    assert!(
        err.contains("if no rule admits the SSH port, no one can log in to correct it"),
        "{err}"
    );
    assert!(err.contains("nothing was built"), "{err}");
    assert!(!out.exists(), "out/ must stay untouched");
    assert!(
        !dir.join("cache/work").exists(),
        "no work tree may be started"
    );
}

#[test]
fn hardened_host_boots_with_every_module_in_effect() {
    let dir = scratch("hardened");
    let key = dir.join("id_ed25519");
    let public = keygen(&key, "clawimg-hardening-test");
    let out = dir.join("out");
    let mut c = clawimg();
    c.arg("test")
        .arg("hardened")
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args([
            "--firmware",
            "bios",
            "--ssh-user",
            "adminclaw",
            "--ssh-port",
            "222",
            "--key",
        ])
        .arg(&key)
        .arg("--set")
        .arg(format!(
            "users.admin.authorized_keys=[\"{}\"]",
            public.trim()
        ))
        // QEMU's user network: the guest sees host connections coming from 10.0.2.2.
        .args(["--set", "firewall.rules.ssh.from=[\"10.0.2.2\"]"])
        .args(["--set", "swap.size=\"256MiB\""]);
    let o = run(c);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let fails: Vec<&str> = text.lines().filter(|l| l.contains(" FAIL ")).collect();
    assert!(
        o.status.success() && fails.is_empty(),
        "failed probes: {fails:#?}\n{text}"
    );
    // Every module's probe set ran (and passed, above).
    for row in [
        "sshd -T port 222",
        "sshd -T permitrootlogin no",
        "sshd -T usepam yes",
        "sshd -T allowusers adminclaw",
        "sshd -T kexalgorithms",
        "nothing listens on 22",
        "root login refused (key)",
        "password login refused (adminclaw)",
        "ufw active",
        "ufw rules exactly as declared",
        "ufw rules live (iptables)",
        "sysctl kernel.kptr_restrict",
        "sysctl net.ipv4.tcp_syncookies",
        "docker live-restore",
        "docker log driver",
        "docker no-new-privileges",
        "fail2ban jail sshd",
        "swap active",
        "swap size",
        "time sync (NTP) on",
        "journald SystemMaxUse",
        "dir /home/openclaw/.openclaw",
        "user openclaw home mode",
        "user adminclaw sudo",
        "system running",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(row) && l.contains(" pass ")),
            "no passing row {row:?}:\n{text}"
        );
    }
    // The admin logged in on 222 with the key: every row above ran over that session.
    assert!(text.contains("time to SSH"), "{text}");
    // The swap file is made on the node: the image holds far less than its size would need.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("hardened/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["extra"]["hardening"]["swap"]["size"], "256MiB");
    assert_eq!(
        m["extra"]["hardening"]["ufw_rules"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only 222 from 10.0.2.2"
    );
}

#[test]
fn shipped_profiles_check_and_demand_a_key() {
    const KEY: &str = "users.admin.authorized_keys=[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t\"]";
    for p in ["hardened", "compose-host"] {
        let mut c = clawimg();
        c.args(["check", p]);
        let o = run(c);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("[ssh-allowusers-no-key]") && err.contains("permanent lockout"),
            "{err}"
        );
        let mut c = clawimg();
        c.args(["check", p, "--set", KEY]);
        let o = run(c);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("lints       ok"), "{out}");
        // Console recovery: offered through password slots, or explained when off.
        let console = out
            .lines()
            .find(|l| l.trim_start().starts_with("console "))
            .unwrap_or_else(|| panic!("no console line:\n{out}"));
        if p == "hardened" {
            assert!(
                console.contains("adminclaw (slot `admin_password_hash`)")
                    && console.contains("openclaw (slot `runtime_password_hash`)"),
                "{console}"
            );
        } else {
            assert!(
                console.contains("off: the passwords of") && console.contains("password_of = "),
                "{console}"
            );
        }
    }
    // A tampered CIDR list is refused by its pin.
    let dir = scratch("cidr-pin");
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(profiles.join("cidr")).unwrap();
    std::fs::create_dir_all(profiles.join("keyrings")).unwrap();
    std::fs::copy(
        repo().join("profiles/keyrings/ubuntu-archive-keyring.gpg"),
        profiles.join("keyrings/ubuntu-archive-keyring.gpg"),
    )
    .unwrap();
    for p in [
        "base.toml",
        "compose-host.toml",
        "cidr/cloudflare-v4.txt",
        "cidr/cloudflare-v6.txt",
    ] {
        std::fs::copy(repo().join("profiles").join(p), profiles.join(p)).unwrap();
    }
    let v4 = profiles.join("cidr/cloudflare-v4.txt");
    let text = std::fs::read_to_string(&v4).unwrap() + "0.0.0.0/0\n";
    std::fs::write(&v4, text).unwrap();
    let mut c = clawimg();
    c.arg("check")
        .arg("compose-host")
        .arg("--profiles-dir")
        .arg(&profiles)
        .args(["--set", KEY]);
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("firewall.lists.cloudflare-v4.sha256"), "{err}");
}
