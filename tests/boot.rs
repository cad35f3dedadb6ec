//! The first-image acceptance: build profiles/test.toml, check the disk with the standard
//! tools, and boot it through real firmware and GRUB under SeaBIOS and OVMF, on virtio-blk
//! and NVMe, and on a disk enlarged to 20 GiB.

mod common;
use common::*;
use std::process::Command;

fn tool_ok(cmd: &mut Command) -> String {
    let o = cmd.output().expect("run tool");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn disk_is_clean_for_standard_tools() {
    let dir = test_image();
    let raw = dir.join("test.raw");
    let qcow = dir.join("test.qcow2");
    tool_ok(Command::new("qemu-img").arg("check").arg(&qcow));
    let v = tool_ok(Command::new("sgdisk").arg("-v").arg(&raw));
    assert!(v.contains("No problems found"), "{v}");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let root = &m["partitions"]["partitions"][2];
    assert_eq!(root["name"], "root");
    let spec = format!("{}?offset={}", raw.display(), root["offset"]);
    tool_ok(Command::new("e2fsck").args(["-fn", &spec]));
    // SHA256SUMS matches the files.
    let sums = tool_ok(Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(dir));
    assert!(sums.contains("test.raw: OK") && sums.contains("test.qcow2: OK"), "{sums}");
    assert!(m["packages"].as_array().unwrap().iter().any(|p| p["name"] == "openssh-server"));
}

#[test]
fn boots_bios_virtio_and_grows_root_to_20g() {
    let out = boot(&test_image().join("test.qcow2"), &["--firmware", "bios", "--disk", "virtio", "--resize", "20GiB"]);
    assert!(out.contains("root grown") && out.contains("firmware"), "{out}");
}

#[test]
fn boots_uefi_virtio_and_a_failing_probe_fails_the_run() {
    // One boot proves both: every base probe passes under OVMF, and the harness can fail —
    // an extra probe that cannot pass makes `clawimg test` exit 1 with a FAIL row.
    let mut c = clawimg();
    c.arg("test")
        .arg(test_image().join("test.raw"))
        .args(["--firmware", "uefi", "--disk", "virtio", "--probe", "test -e /etc/not-in-the-image"]);
    let o = run(c);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.contains(" FAIL ")).collect();
    assert_eq!(fails.len(), 1, "only the planted probe may fail:\n{out}");
    assert!(fails[0].contains("not-in-the-image"), "{out}");
    assert!(out.contains("uefi") && out.contains("system running"), "{out}");
}

#[test]
fn boots_bios_nvme() {
    let out = boot(&test_image().join("test.raw"), &["--firmware", "bios", "--disk", "nvme"]);
    assert!(out.contains("nvme0n1"), "{out}");
}
