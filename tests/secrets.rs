//! Secret slots, per-node identity and the audit: build profiles/test-secrets.toml once,
//! seal it for two nodes, boot both (one of them also gets cloud-init user data), and check
//! the audit's rules on planted files in a copy of the finished filesystem.

mod common;
use clawimg::ops::test::harness::throwaway_key;
use clawimg::ops::test::qemu::{Accel, DiskBus, Firmware, Vm, VmSpec};
use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn image() -> &'static Path {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| build("test-secrets", &[]))
}

fn raw() -> PathBuf {
    image().join("test-secrets.raw")
}

fn secrets_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn partition(name: &str) -> (u64, u64) {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(image().join("manifest.json")).unwrap())
            .unwrap();
    let p = m["partitions"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
        .clone();
    (p["offset"].as_u64().unwrap(), p["bytes"].as_u64().unwrap())
}

fn range_sha256(file: &Path, (off, len): (u64, u64)) -> String {
    use sha2::Digest;
    let mut f = std::fs::File::open(file).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f.take(len), &mut h).unwrap();
    hex::encode(h.finalize())
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn template_and_seal_refusals() {
    let o = run({
        let mut c = clawimg();
        c.args(["secrets", "template", "test-secrets"]);
        c
    });
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{t}");
    for slot in [
        "api_key = \"\"",
        "db_password = \"\"",
        "gateway_token = \"\"",
        "[slots]",
    ] {
        assert!(t.contains(slot), "template lacks {slot}:\n{t}");
    }

    let dir = scratch("seal-refusals");
    let node = dir.join("node.raw");
    // A required slot missing: refused with its name, nothing written.
    let s = secrets_file(
        &dir,
        "missing.toml",
        "[slots]\napi_key = \"value-one-xyz\"\n",
        0o600,
    );
    let o = run({
        let mut c = clawimg();
        c.arg("seal")
            .arg(image())
            .arg("--secrets")
            .arg(&s)
            .args(["--node", "n1", "-o"])
            .arg(&node);
        c
    });
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("missing required secret slot(s): db_password"),
        "{}",
        out(&o)
    );
    assert!(
        !out(&o).contains("value-one-xyz"),
        "a value leaked into the output"
    );
    // A group-readable secrets file: refused.
    let s2 = secrets_file(
        &dir,
        "open.toml",
        "[slots]\napi_key = \"v1234567\"\ndb_password = \"p1234567\"\n",
        0o644,
    );
    let o = run({
        let mut c = clawimg();
        c.arg("seal")
            .arg(image())
            .arg("--secrets")
            .arg(&s2)
            .args(["--node", "n1", "-o"])
            .arg(&node);
        c
    });
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("group or others"), "{}", out(&o));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 2, "seal left files behind: {left:?}");
}

/// Write files into a copy of the image's root filesystem with debugfs (no mount).
fn plant(disk: &Path, root_offset: u64, files: &[(&str, Vec<u8>)], work: &Path) {
    let mut cmds = String::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (i, (path, data)) in files.iter().enumerate() {
        let host = work.join(format!("plant-{i}"));
        std::fs::write(&host, data).unwrap();
        let mut d = Path::new(path).parent().unwrap();
        let mut chain = vec![];
        while d != Path::new("/") {
            chain.push(d.to_path_buf());
            d = d.parent().unwrap();
        }
        for d in chain.into_iter().rev() {
            if dirs.insert(d.clone()) {
                cmds.push_str(&format!("mkdir {}\n", d.display()));
            }
        }
        cmds.push_str(&format!("rm {path}\nwrite {} {path}\n", host.display()));
    }
    let cmdfile = work.join("debugfs.cmds");
    std::fs::write(&cmdfile, cmds).unwrap();
    let spec = format!("{}?offset={root_offset}", disk.display());
    let o = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmdfile)
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success(), "debugfs: {}", out(&o));
}

#[test]
fn audit_rules_fire_on_planted_files_and_stay_silent_on_the_clean_image() {
    let dir = scratch("audit");
    // The clean image passes (the build ran the same audit and would have failed).
    let o = run({
        let mut c = clawimg();
        c.arg("audit").arg(image());
        c
    });
    assert!(
        o.status.success() && out(&o).contains("clean"),
        "{}",
        out(&o)
    );

    let copy = dir.join("planted.raw");
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(raw())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("k"))
        .status()
        .unwrap();
    let key = std::fs::read(dir.join("k")).unwrap();
    let rsa = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ])
        .output();
    let hex64 = "0123456789abcdef".repeat(4);
    let planted_value = "correct-horse-battery-staple-42";
    let mut files: Vec<(&str, Vec<u8>, &str)> = vec![
        ("/root/.ssh/id_ed25519", key.clone(), "private-key"),
        ("/etc/ssh/ssh_host_ed25519_key", key, "ssh-host-key"),
        (
            "/etc/machine-id",
            b"0123456789abcdef0123456789abcdef\n".to_vec(),
            "machine-id",
        ),
        (
            "/opt/app/config.yaml",
            b"llm:\n  key: sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx\n".to_vec(),
            "token-shape",
        ),
        (
            "/opt/app/openai.json",
            b"{\"k\": \"sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\"}".to_vec(),
            "token-shape",
        ),
        (
            "/home/dev/notes.txt",
            b"token ghp_0123456789abcdefghijABCDEFGHIJ012345 here\n".to_vec(),
            "token-shape",
        ),
        (
            "/etc/aws.conf",
            b"aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n".to_vec(),
            "token-shape",
        ),
        (
            "/opt/app/.env",
            format!("PORT=8080\nGATEWAY_TOKEN={hex64}\n").into_bytes(),
            "env-hex-token",
        ),
        (
            "/etc/app/password",
            format!("{planted_value}\n").into_bytes(),
            "secret-value",
        ),
        ("/var/lib/systemd/random-seed", vec![7u8; 512], "node-state"),
        ("/root/.bash_history", b"ls\n".to_vec(), "node-state"),
        (
            "/var/log/syslog",
            b"Nov 25 build log\n".to_vec(),
            "node-state",
        ),
        (
            "/var/lib/apt/lists/archive_dists_noble_InRelease",
            b"Origin: Ubuntu\n".to_vec(),
            "node-state",
        ),
    ];
    if let Ok(o) = rsa {
        if o.status.success() {
            files.push(("/etc/ssl/private/service.key", o.stdout, "private-key"));
        }
    }
    let telegram = "123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0";
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let jwt = format!(
        "{}.{}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        b64(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64(r#"{"sub":"node"}"#)
    );
    files.extend([
        (
            "/opt/app/telegram.conf",
            format!("TELEGRAM_BOT_TOKEN={telegram}\n").into_bytes(),
            "token-shape",
        ),
        (
            "/root/.gnupg/backup.asc",
            b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGVkZXYBCADG8xkzNqwF1pP3p0m8Tz9ZtqXkV7m5mJQz3nq0W1R2sA9b8c7d\n-----END PGP PRIVATE KEY BLOCK-----\n".to_vec(),
            "private-key",
        ),
        ("/opt/app/session", format!("{jwt}\n").into_bytes(), "jwt"),
    ]);
    // A baked image archive whose gzip layer holds a token: named by archive, layer, path.
    let layer = {
        let mut b = tar::Builder::new(vec![]);
        let data = format!("bot={telegram}\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "etc/bot.conf", data.as_bytes())
            .unwrap();
        let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    };
    let blob = {
        use sha2::Digest;
        format!("blobs/sha256/{}", hex::encode(sha2::Sha256::digest(&layer)))
    };
    let archive = {
        let mut b = tar::Builder::new(vec![]);
        let mut h = tar::Header::new_gnu();
        h.set_size(layer.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, &blob, &layer[..]).unwrap();
        b.into_inner().unwrap()
    };
    let archive_path = "/var/lib/clawimg/images/planted.tar";
    let in_layer = format!("{archive_path}!{blob}!/etc/bot.conf");
    let (root_off, _) = partition("root");
    let mut plain: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, d, _)| (*p, d.clone())).collect();
    plain.push((archive_path, archive));
    plant(&copy, root_off, &plain, &dir);
    let s = secrets_file(
        &dir,
        "s.toml",
        &format!("[slots]\ndb_password = \"{planted_value}\"\n"),
        0o600,
    );
    let o = run({
        let mut c = clawimg();
        c.arg("audit").arg(&copy).arg("--secrets").arg(&s);
        c
    });
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    for (path, _, rule) in &files {
        assert!(
            text.lines().any(|l| l.contains(path) && l.contains(rule)),
            "rule {rule} did not fire on {path}:\n{text}"
        );
    }
    // Exactly the planted paths (plus nothing else from the clean image).
    let flagged: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with('/'))
        .collect();
    assert!(
        text.lines()
            .any(|l| l.contains(&in_layer) && l.contains("token-shape")),
        "the token in the container layer is not named:\n{text}"
    );
    let mut planted: std::collections::BTreeSet<&str> = files.iter().map(|(p, _, _)| *p).collect();
    planted.insert(&in_layer);
    assert_eq!(flagged, planted, "{text}");
    for secret in [
        planted_value,
        &hex64,
        "sk-ant-api03",
        "AKIAIOSFODNN7EXAMPLE",
        "BEGIN OPENSSH",
        telegram,
        &jwt,
    ] {
        assert!(
            !text.contains(secret),
            "the audit printed a value ({secret}):\n{text}"
        );
    }
}

/// Mode (octal permission bits) and owner ids of an inode in the built image's root
/// filesystem, read with debugfs (not from the manifest or files.tsv).
fn inode_mode(path: &str) -> (String, String, String) {
    let (root_off, _) = partition("root");
    let o = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(format!("{}?offset={root_off}", raw().display()))
        .output()
        .unwrap();
    let text = out(&o);
    assert!(o.status.success(), "debugfs: {text}");
    let field = |name: &str| {
        let i = text
            .find(name)
            .unwrap_or_else(|| panic!("no {name} for {path}: {text}"));
        text[i + name.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    (field("Mode:"), field("User:"), field("Group:"))
}

#[test]
fn overlay_setuid_setgid_and_sticky_bits_reach_the_image() {
    // overlays/test-modes/overlay.toml declares these; the owner change must not clear them.
    let daemon = "1";
    assert_eq!(
        inode_mode("/usr/local/bin/clawimg-setuid-probe"),
        ("04755".into(), "0".into(), "0".into())
    );
    assert_eq!(
        inode_mode("/usr/local/bin/clawimg-setgid-probe"),
        ("02755".into(), "0".into(), daemon.into())
    );
    assert_eq!(
        inode_mode("/opt/demo-shared"),
        ("03775".into(), daemon.into(), daemon.into())
    );
}

/// Run a command in the guest; must succeed.
fn sh(vm: &Vm, cmd: &str) -> String {
    let o = vm.ssh(cmd, Duration::from_secs(300)).unwrap();
    assert!(
        o.status.success(),
        "guest command failed: {cmd}\n{}\n--- serial ---\n{}",
        out(&o),
        vm.serial_tail(30)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Everything a node's identity and secrets consist of (hashes and metadata only).
const STATE: &str = "cd / && hostname && cat /etc/hostname && cat /etc/machine-id && \
    ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub && \
    for f in /opt/demo/.env /etc/demo/db-password /var/lib/demo/backup.key /etc/demo/tls.key /var/lib/clawimg/secrets.done; do \
      if [ -e $f ]; then echo \"$f $(stat -c '%U:%G %a %s' $f) $(sha256sum < $f | cut -c1-64)\"; else echo \"$f absent\"; fi; done";

fn boot_node(
    disk: &Path,
    extra: Vec<PathBuf>,
    work: &Path,
    fw: Firmware,
) -> (Vm, BTreeMap<&'static str, String>) {
    let (key, public) = throwaway_key(work).unwrap();
    let spec = VmSpec {
        image: disk.to_path_buf(),
        firmware: fw,
        bus: DiskBus::Virtio,
        disk_size: None,
        accel: Accel::Auto,
        memory_mib: 1536,
        authorized_key: public,
        work: work.join("vm"),
        guest_ssh_port: 22,
    };
    let mut vm = Vm::start_with(&spec, &key, "root", &extra).unwrap();
    vm.wait_ssh(Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{}: {e}", disk.display()));
    let mut r = BTreeMap::new();
    let running = vm
        .ssh(
            "timeout 300 systemctl is-system-running --wait",
            Duration::from_secs(320),
        )
        .unwrap();
    let failed = sh(
        &vm,
        "systemctl --failed --no-legend --plain; journalctl -b -u clawimg-secrets --no-pager",
    );
    assert_eq!(
        String::from_utf8_lossy(&running.stdout).trim(),
        "running",
        "{}: {failed}",
        disk.display()
    );
    r.insert("api_key", sh(&vm, "grep '^API_KEY=' /opt/demo/.env"));
    r.insert(
        "gateway_token",
        sh(&vm, "sed -n 's/^GATEWAY_TOKEN=//p' /opt/demo/.env"),
    );
    r.insert("db_password", sh(&vm, "cat /etc/demo/db-password"));
    r.insert("backup_key", sh(&vm, "cat /var/lib/demo/backup.key"));
    r.insert(
        "modes",
        sh(
            &vm,
            "stat -c '%n %U:%G %a' /opt/demo/.env /etc/demo/db-password /var/lib/demo/backup.key",
        ),
    );
    r.insert("tls_key", sh(&vm, "if [ -e /etc/demo/tls.key ]; then stat -c '%U:%G %a' /etc/demo/tls.key; cat /etc/demo/tls.key; else echo absent; fi"));
    r.insert("machine_id", sh(&vm, "cat /etc/machine-id"));
    r.insert(
        "host_key",
        sh(&vm, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"),
    );
    r.insert("hostname", sh(&vm, "hostname; cat /etc/hostname"));
    r.insert("seed_zeroed", sh(&vm, "d=/dev/disk/by-partlabel/clawimg-seed; cmp -n $(blockdev --getsize64 $d) $d /dev/zero && echo zeroed"));
    r.insert("dependent", sh(&vm, "systemctl is-active systemd-timesyncd; systemctl show -p Requires --value systemd-timesyncd"));
    r.insert("journal_values", sh(&vm, "journalctl -b --no-pager -o cat | grep -c -e alpha-api -e bravo-api -e 'alpha db' -e bravo-db -e charlie || true"));
    r.insert("state", sh(&vm, STATE));
    (vm, r)
}

#[test]
fn two_sealed_nodes_boot_with_their_own_secrets_and_identity() {
    let dir = scratch("nodes");
    let a = secrets_file(
        &dir,
        "a.toml",
        "[slots]\napi_key = \"alpha-api-key-1\"\ndb_password = \"alpha db pass\"\n",
        0o600,
    );
    let b = secrets_file(
        &dir,
        "b.toml",
        "[slots]\napi_key = \"bravo-api-key-2\"\ndb_password = \"bravo-db-pass\"\n",
        0o600,
    );
    // Node B also gets user data: its tls_key arrives that way; the sealed slots win.
    let c = secrets_file(
        &dir,
        "c.toml",
        "[slots]\napi_key = \"charlie-api-key-3\"\ndb_password = \"charlie-db\"\ntls_key = \"charlie-tls-key-material\"\n",
        0o600,
    );
    let seal = |s: &Path, node: &str| {
        let o = run({
            let mut c = clawimg();
            c.arg("seal")
                .arg(image())
                .arg("--secrets")
                .arg(s)
                .args(["--node", node, "-o"])
                .arg(dir.join(format!("{node}.raw")));
            c
        });
        assert!(o.status.success(), "{}", out(&o));
        let text = out(&o);
        assert!(
            !text.contains("alpha") && !text.contains("bravo"),
            "a value leaked: {text}"
        );
        dir.join(format!("{node}.raw"))
    };
    let na = seal(&a, "node-a");
    let nb = seal(&b, "node-b");
    let ud = dir.join("user-data");
    let o = run({
        let mut cmd = clawimg();
        cmd.args(["secrets", "bundle"])
            .arg(image())
            .arg("--secrets")
            .arg(&c)
            .arg("-o")
            .arg(&ud);
        cmd
    });
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        std::fs::metadata(&ud).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let cidata = dir.join("cidata.img");
    for cmd in [
        vec![
            "mkfs.vfat",
            "-n",
            "CIDATA",
            "-C",
            cidata.to_str().unwrap(),
            "2048",
        ],
        vec![
            "mcopy",
            "-i",
            cidata.to_str().unwrap(),
            ud.to_str().unwrap(),
            "::user-data",
        ],
    ] {
        let o = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
        assert!(o.status.success(), "{cmd:?}: {}", out(&o));
    }

    // Before any boot: root partitions byte-identical, seeds hold bundles, image seed empty.
    let root = partition("root");
    let seed = partition("clawimg-seed");
    let r0 = range_sha256(&raw(), root);
    assert_eq!(
        range_sha256(&na, root),
        r0,
        "node A's root differs from the image's"
    );
    assert_eq!(
        range_sha256(&nb, root),
        r0,
        "node B's root differs from the image's"
    );
    let zero_seed = range_sha256(&raw(), seed);
    assert_ne!(range_sha256(&na, seed), zero_seed);
    assert_ne!(range_sha256(&na, seed), range_sha256(&nb, seed));

    let (wa, wb) = (dir.join("vm-a"), dir.join("vm-b"));
    std::fs::create_dir_all(&wa).unwrap();
    std::fs::create_dir_all(&wb).unwrap();
    let (ra, rb) = std::thread::scope(|s| {
        // Node A: BIOS, sealed only; reboots once to show later boots change nothing and
        // then shows that a missing required slot holds the dependent unit back.
        let ha = s.spawn(|| {
            let (vm, first) = boot_node(&na, vec![], &wa, Firmware::Bios);
            let boot_id = sh(&vm, "cat /proc/sys/kernel/random/boot_id");
            let _ = vm.ssh("systemctl reboot", Duration::from_secs(30));
            let mut again = String::new();
            for _ in 0..300 {
                std::thread::sleep(Duration::from_secs(3));
                if let Ok(o) = vm.ssh("cat /proc/sys/kernel/random/boot_id", Duration::from_secs(20)) {
                    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
                    if o.status.success() && !id.is_empty() && id != boot_id {
                        again = id;
                        break;
                    }
                }
            }
            assert!(!again.is_empty(), "node A did not come back after reboot:\n{}", vm.serial_tail(40));
            sh(&vm, "timeout 300 systemctl is-system-running --wait || true");
            let second = sh(&vm, STATE);
            let cond = sh(&vm, "systemctl show -p ConditionResult --value clawimg-secrets; systemctl is-active systemd-timesyncd");
            let fail = sh(
                &vm,
                "rm /var/lib/clawimg/secrets.done /etc/demo/db-password && systemctl stop systemd-timesyncd && \
                 (systemctl restart clawimg-secrets && echo secrets-ok || echo secrets-failed); \
                 (systemctl start systemd-timesyncd && echo dependent-started || echo dependent-held); \
                 systemctl is-active systemd-timesyncd || true; \
                 journalctl -b -u clawimg-secrets --no-pager -o cat | grep 'missing required' || true",
            );
            (first, second, cond, fail)
        });
        // Node B: UEFI, sealed and with a NoCloud CIDATA volume.
        let hb = s.spawn(|| boot_node(&nb, vec![cidata.clone()], &wb, Firmware::Uefi).1);
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let (a1, a_state2, a_cond, a_fail) = ra;
    eprintln!("node A: {a1:#?}\nnode B: {rb:#?}");

    // Each slot holds its node's value, with the declared owner and mode.
    assert_eq!(a1["api_key"], "API_KEY=alpha-api-key-1");
    assert_eq!(
        rb["api_key"], "API_KEY=bravo-api-key-2",
        "the sealed value must win over user data"
    );
    assert_eq!(a1["db_password"], "alpha db pass");
    assert_eq!(rb["db_password"], "bravo-db-pass");
    for r in [&a1, &rb] {
        assert_eq!(
            r["modes"],
            "/opt/demo/.env root:root 600\n/etc/demo/db-password daemon:daemon 440\n/var/lib/demo/backup.key nobody:nogroup 400"
        );
        assert_eq!(r["gateway_token"].len(), 64, "{r:?}");
        assert!(r["gateway_token"].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(r["backup_key"].len(), 44, "base64 of 32 bytes: {r:?}");
        assert_eq!(r["seed_zeroed"], "zeroed");
        assert!(
            r["dependent"].starts_with("active\n")
                && r["dependent"].contains("clawimg-secrets.service"),
            "{r:?}"
        );
        assert_eq!(
            r["journal_values"], "0",
            "a secret value reached the journal"
        );
    }
    assert_eq!(a1["tls_key"], "absent");
    assert_eq!(
        rb["tls_key"], "root:root 600\ncharlie-tls-key-material",
        "user data slot"
    );
    // Generated slots and identity differ between the nodes.
    assert_ne!(a1["gateway_token"], rb["gateway_token"]);
    assert_ne!(a1["backup_key"], rb["backup_key"]);
    assert_ne!(a1["machine_id"], rb["machine_id"]);
    assert_ne!(a1["host_key"], rb["host_key"]);
    assert_eq!(a1["hostname"], "node-a\nnode-a");
    assert_eq!(rb["hostname"], "node-b\nnode-b");
    // A second boot changes nothing and skips the unit.
    assert_eq!(a1["state"], a_state2, "second boot changed the node");
    assert_eq!(a_cond, "no\nactive", "{a_cond}");
    // A missing required slot fails the unit with its name and holds the dependent unit.
    assert!(
        a_fail.contains("secrets-failed") && a_fail.contains("dependent-held"),
        "{a_fail}"
    );
    assert!(
        a_fail.contains("missing required secret slots: db_password"),
        "{a_fail}"
    );
}
