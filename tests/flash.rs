//! Flash: to a local file and over SSH into a real sshd on 127.0.0.1 (a test-owned "rescue
//! system"), sparse, zstd on the wire, read-back verified; unsafe targets refused before a
//! byte is written.

mod common;
use common::*;
use std::path::Path;

fn root_range(dir: &Path) -> (u64, u64) {
    partition_range(dir, "root")
}

fn seed_range(dir: &Path) -> (u64, u64) {
    partition_range(dir, "clawimg-seed")
}

fn flash(image: &Path, to: &str, opts: Option<&str>) -> std::process::Output {
    let mut c = clawimg();
    c.arg("flash").arg(image).args(["--to", to]);
    if let Some(o) = opts {
        c.env("CLAWIMG_SSH_OPTS", o);
    }
    run(c)
}

#[test]
fn flash_over_ssh_to_two_targets_and_refuse_unsafe_ones() {
    let img = test_image();
    let raw = img.join("test.raw");
    let dir = scratch("flash");
    let sshd = start_sshd(&dir);
    let opts = ssh_opts(&sshd);
    let (off, len) = root_range(img);
    let image_root = sha256_range(&raw, off, len);
    // Two "disks" on the rescue system, larger than the image and full of old data.
    for name in ["primary.img", "standby.img"] {
        let p = dir.join(name);
        std::fs::write(&p, vec![0xA5u8; 1 << 20]).unwrap();
        // Old bytes where the seed partition will be, too.
        {
            use std::os::unix::fs::FileExt;
            let (soff, slen) = seed_range(img);
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(&vec![0xA5u8; slen as usize], soff).unwrap();
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        let to = format!("ssh://root@127.0.0.1:{}{}", sshd.port, p.display());
        let o = flash(&raw, &to, Some(&opts));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out}");
        assert!(
            out.contains("read-back verified") && out.contains("zstd"),
            "{out}"
        );
        // The root partition on the target is byte-identical to the image's.
        assert_eq!(sha256_range(&p, off, len), image_root, "{name}");
        // Old bytes in the seed partition are cleared (it is explicit zeros in the image).
        let (soff, slen) = seed_range(img);
        assert_eq!(
            sha256_range(&p, soff, slen),
            sha256_range(&raw, soff, slen),
            "{name}"
        );
        assert!(
            std::fs::read(&p).unwrap()[soff as usize..(soff + slen) as usize]
                .iter()
                .all(|&b| b == 0)
        );
    }
    // Too small: refused before writing; the target is unchanged.
    let small = dir.join("small.img");
    std::fs::write(&small, vec![7u8; 64 << 20]).unwrap();
    let before = sha256_range(&small, 0, 64 << 20);
    let o = flash(
        &raw,
        &format!("ssh://root@127.0.0.1:{}{}", sshd.port, small.display()),
        Some(&opts),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was written"));
    assert_eq!(sha256_range(&small, 0, 64 << 20), before);
    // The same check for a local file target.
    let o = flash(&raw, small.to_str().unwrap(), None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(sha256_range(&small, 0, 64 << 20), before);
    // A missing remote target and a bad URL are usage errors.
    let o = flash(
        &raw,
        &format!(
            "ssh://root@127.0.0.1:{}{}/nope.img",
            sshd.port,
            dir.display()
        ),
        Some(&opts),
    );
    assert_eq!(o.status.code(), Some(2));
    let o = flash(&raw, "ssh://root@127.0.0.1:notaport/dev/sda", Some(&opts));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn flash_to_a_new_local_file_is_verified_and_sparse() {
    let img = test_image();
    let raw = img.join("test.raw");
    let dir = scratch("flash-local");
    let target = dir.join("node.raw");
    let o = flash(&raw, target.to_str().unwrap(), None);
    assert!(o.status.success());
    let (off, len) = root_range(img);
    assert_eq!(
        sha256_range(&target, off, len),
        sha256_range(&raw, off, len)
    );
    // Holes stay holes: the new file allocates about what the block map says, not the full size.
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&target).unwrap();
    assert_eq!(m.len(), std::fs::metadata(&raw).unwrap().len());
    let map: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(img.join("test.bmap.json")).unwrap())
            .unwrap();
    assert!(m.blocks() * 512 <= map["mapped_bytes"].as_u64().unwrap() + (1 << 20));
}

#[test]
fn flash_with_secrets_seals_the_node_copy_only() {
    let img = test_image();
    let raw = img.join("test.raw");
    let image_sum = sha256_range(&raw, 0, std::fs::metadata(&raw).unwrap().len());
    let dir = scratch("flash-secrets");
    let secrets = dir.join("node1.toml");
    std::fs::write(&secrets, "[slots]\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    let target = dir.join("node1.img");
    let flash_node1 = || {
        let mut c = clawimg();
        c.arg("flash")
            .arg(&raw)
            .arg("--to")
            .arg(&target)
            .args(["--node", "node1", "--secrets"])
            .arg(&secrets);
        run(c)
    };
    // A secrets file readable by others is refused before anything is written.
    let o = flash_node1();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        !target.exists(),
        "nothing may be written before the secrets check passes"
    );
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = flash_node1();
    assert!(o.status.success());
    let (soff, slen) = seed_range(img);
    let seed = std::fs::read(&target).unwrap()[soff as usize..(soff + slen) as usize].to_vec();
    assert!(
        String::from_utf8_lossy(&seed).contains("node=node1"),
        "the node's seed is on the target"
    );
    let (off, len) = root_range(img);
    assert_eq!(
        sha256_range(&target, off, len),
        sha256_range(&raw, off, len)
    );
    // The image itself is unchanged and no sealed copy is left beside it.
    assert_eq!(
        sha256_range(&raw, 0, std::fs::metadata(&raw).unwrap().len()),
        image_sum
    );
    assert!(std::fs::read_dir(img).unwrap().flatten().all(|e| !e
        .file_name()
        .to_string_lossy()
        .starts_with(".clawimg-flash-")));
}
