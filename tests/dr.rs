//! The disaster-recovery drill, end to end: build the image once; from a real sshd on
//! 127.0.0.1 (the provider's "rescue system") flash it into a primary and a standby disk full
//! of old random data, each with its own secrets; every partition but the seed is
//! byte-identical to the image's and the root filesystem checks clean; boot both (the only two
//! boots); `clawimg verify` finds no drift on either; a managed file changed on the standby is
//! reported, and only that one. Flashes that must fail do so before writing a byte.

mod common;
use clawimg::ops::test::harness::throwaway_key;
use clawimg::ops::test::qemu::{Accel, DiskBus, Firmware, Vm, VmSpec};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

fn secrets(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn flash(raw: &Path, to: &str, secrets: &Path, node: &str, opts: &str) -> Output {
    let mut c = clawimg();
    c.arg("flash")
        .arg(raw)
        .args(["--to", to, "--node", node, "--secrets"])
        .arg(secrets)
        .env("CLAWIMG_SSH_OPTS", opts);
    run(c)
}

fn verify(image: &Path, port: u16, key: &Path) -> (i32, String) {
    let mut c = clawimg();
    c.arg("verify")
        .arg(image)
        .args(["--against", &format!("ssh://root@127.0.0.1:{port}")])
        .env("CLAWIMG_SSH_OPTS", ssh_opts_for(key));
    let o = run(c);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// The difference lines of a verify report.
fn drift_lines(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|l| {
            ["changed ", "missing ", "added "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect()
}

/// A used disk on the rescue system: `bytes` of old (random) data.
fn old_disk(p: &Path, bytes: u64, seed: u64) -> String {
    random_fill(p, bytes, seed);
    sha256_range(p, 0, bytes)
}

#[test]
fn dr_drill_flash_standby_boot_and_verify() {
    let img = build("test-secrets", &[]);
    let raw = img.join("test-secrets.raw");
    let image_bytes = std::fs::metadata(&raw).unwrap().len();
    let dir = scratch("dr");
    let rescue = dir.join("rescue");
    std::fs::create_dir_all(&rescue).unwrap();
    let sshd = start_sshd(&rescue);
    let opts = ssh_opts(&sshd);
    let url = |p: &Path| format!("ssh://root@127.0.0.1:{}{}", sshd.port, p.display());
    let primary_secrets = secrets(
        &dir,
        "primary",
        "[slots]\napi_key = \"primary-api-key\"\ndb_password = \"primary-db-pass\"\n",
    );
    let standby_secrets = secrets(
        &dir,
        "standby",
        "[slots]\napi_key = \"standby-api-key\"\ndb_password = \"standby-db-pass\"\n",
    );

    // Refused before the first byte: a required secret missing, a target too small.
    let target = rescue.join("refused.img");
    let before = old_disk(&target, image_bytes + (64 << 20), 1);
    let incomplete = secrets(&dir, "incomplete", "[slots]\napi_key = \"only-this\"\n");
    let o = flash(&raw, &url(&target), &incomplete, "nodex", &opts);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("db_password"));
    assert_eq!(
        sha256_range(&target, 0, image_bytes + (64 << 20)),
        before,
        "a refused flash wrote to the target"
    );
    let small = rescue.join("small.img");
    let before = old_disk(&small, 64 << 20, 2);
    let o = flash(&raw, &url(&small), &primary_secrets, "primary", &opts);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was written"));
    assert_eq!(sha256_range(&small, 0, 64 << 20), before);

    // Primary and standby: the same image, each node with its own secrets and name.
    let disks: Vec<(PathBuf, &str)> = vec![
        (rescue.join("primary.img"), "primary"),
        (rescue.join("standby.img"), "standby"),
    ];
    for (i, (disk, node)) in disks.iter().enumerate() {
        old_disk(disk, image_bytes + (256 << 20), 3 + i as u64);
        let s = if *node == "primary" {
            &primary_secrets
        } else {
            &standby_secrets
        };
        let o = flash(&raw, &url(disk), s, node, &opts);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "flash {node}: {out}");
        assert!(out.contains("read-back verified"), "{out}");
    }
    // The whole partition table (MBR, GPT header, 128 entries) replaced the old bytes.
    for (disk, node) in &disks {
        assert_eq!(
            sha256_range(disk, 0, 34 * 512),
            sha256_range(&raw, 0, 34 * 512),
            "{node}: partition table"
        );
    }
    // Every partition but the seed is byte-identical to the image's over the old data,
    // and the root filesystem checks clean.
    for (disk, _) in &disks {
        assert_partitions_equal_but(&img, &raw, disk, &["clawimg-seed"]);
        assert_root_fsck_clean(&img, disk);
    }
    let (soff, slen) = partition_range(&img, "clawimg-seed");
    assert_ne!(
        sha256_range(&disks[0].0, soff, slen),
        sha256_range(&disks[1].0, soff, slen),
        "each node carries its own sealed secrets"
    );

    // Boot both (QEMU writes to throwaway overlays; the disks stay as flashed).
    let (key, public) = throwaway_key(&dir).unwrap();
    let mut vms: Vec<Vm> = disks
        .iter()
        .zip([Firmware::Bios, Firmware::Uefi])
        .map(|((disk, node), firmware)| {
            let spec = VmSpec {
                image: disk.clone(),
                firmware,
                bus: DiskBus::Virtio,
                disk_size: None,
                accel: Accel::Auto,
                memory_mib: 1536,
                authorized_key: public.clone(),
                guest_ssh_port: 22,
                work: dir.join(format!("vm-{node}")),
            };
            Vm::start(&spec, &key, "root").unwrap()
        })
        .collect();
    for (vm, (_, node)) in vms.iter_mut().zip(&disks) {
        vm.wait_ssh(Duration::from_secs(900))
            .unwrap_or_else(|e| panic!("{node}: {e}\n{}", vm.serial_tail(40)));
        // First boot done (secrets installed, host keys made), then the node's name.
        let o = vm
            .ssh(
                "systemctl is-system-running --wait >/dev/null; hostname; systemctl is-active clawimg-secrets.service",
                Duration::from_secs(600),
            )
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>(),
            [*node, "active"],
            "{node}"
        );
    }

    // No drift on either node.
    for (vm, (_, node)) in vms.iter().zip(&disks) {
        let (code, report) = verify(&img, vm.ssh_port, &key);
        assert_eq!(code, 0, "{node}: verify found drift:\n{report}");
        assert!(report.contains("no drift"), "{report}");
        assert!(drift_lines(&report).is_empty());
    }

    // One managed file changed on the standby: verify names exactly that path.
    let standby = &vms[1];
    let o = standby
        .ssh(
            "echo 'edited by hand' >> /etc/issue.net",
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(o.status.success());
    let (code, report) = verify(&img, standby.ssh_port, &key);
    assert_eq!(code, 1, "{report}");
    let lines = drift_lines(&report);
    assert_eq!(lines.len(), 1, "{report}");
    assert!(
        lines[0].starts_with("changed  files     /etc/issue.net  (sha256 "),
        "{report}"
    );
    // What an intruder would touch to stay: one more root key, the kernel, the ESP.
    let o = standby
        .ssh(
            "echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIntruderKeyForTheDrillOnly intruder' >> /root/.ssh/authorized_keys \
             && echo rootkit >> \"$(readlink -f /boot/vmlinuz)\" && readlink -f /boot/vmlinuz \
             && echo bootkit >> /boot/efi/EFI/BOOT/BOOTX64.EFI",
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let kernel = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (code, report) = verify(&img, standby.ssh_port, &key);
    assert_eq!(code, 1, "{report}");
    for want in [
        "added    files     /root/.ssh/authorized_keys".to_string(),
        format!("changed  files     {kernel}  (sha256 "),
        "changed  files     /boot/efi/EFI/BOOT/BOOTX64.EFI  (sha256 ".to_string(),
    ] {
        assert!(
            drift_lines(&report).iter().any(|l| l.starts_with(&want)),
            "{want:?} not reported:\n{report}"
        );
    }

    // An unreachable node is a usage error, not drift.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _) = verify(&img, closed, &key);
    assert_eq!(code, 2);
    for vm in &mut vms {
        vm.kill();
    }
}
