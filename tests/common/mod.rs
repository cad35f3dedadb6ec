//! Shared helpers for the integration tests: run the real `clawimg` binary, build the test
//! profile once per test binary, and boot images with `clawimg test`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The package store every test binary shares (`CLAWIMG_PACKAGE_STORE`): the downloaded
/// .debs and the base-stage trees, content-addressed and guarded by the cache's file locks.
/// Image entries, work directories and container blobs stay in each test's `--cache-dir`.
pub fn package_store() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("clawimg-package-store")
}

/// A `clawimg` command run from the repository root, using the shared package store.
pub fn clawimg() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clawimg"));
    c.current_dir(repo());
    c.env_remove("CLAWIMG_OUT").env_remove("CLAWIMG_PROFILES");
    c.env("CLAWIMG_PACKAGE_STORE", package_store());
    c
}

/// A `clawimg` command whose `--cache-dir` holds everything itself, for tests of the cache
/// (a cold base stage, `cache gc`, an offline build from the cache's own .debs).
pub fn clawimg_own_cache() -> Command {
    let mut c = clawimg();
    c.env_remove("CLAWIMG_PACKAGE_STORE");
    c
}

/// Run and capture, printing both streams for the test log.
pub fn run(mut c: Command) -> Output {
    let o = c.output().expect("run clawimg");
    eprintln!(
        "--- {:?}\n{}{}",
        c,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Scratch directory under cargo's target tmp dir (kept small; removed by the OS/CI).
pub fn scratch(name: &str) -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Build `profile` into a fresh out dir and cache dir (the package store is shared);
/// returns the image directory.
pub fn build(profile: &str, extra: &[&str]) -> PathBuf {
    let base = scratch(&format!("build-{profile}"));
    let out = base.join("out");
    let mut c = clawimg();
    c.arg("build")
        .arg(profile)
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(base.join("cache"))
        .args(extra);
    let o = run(c);
    assert!(o.status.success(), "build {profile} failed");
    out.join(profile)
}

/// The test profile, built once per test binary.
pub fn test_image() -> &'static Path {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| build("test", &[]))
}

/// Boot `image` with `clawimg test` and the given flags; asserts every probe passed.
pub fn boot(image: &Path, flags: &[&str]) -> String {
    let mut c = clawimg();
    c.arg("test").arg(image).args(flags);
    let o = run(c);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "clawimg test {flags:?} failed:\n{text}");
    text
}

/// Make an ed25519 key pair at `path` (public half at `path.pub`); returns the public key.
pub fn keygen(path: &Path, comment: &str) -> String {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
    std::fs::read_to_string(format!("{}.pub", path.display())).expect("read public key")
}

/// A `profiles/` directory in `dir` with the pinned keyring and the named repository profiles.
pub fn profiles_copy(dir: &Path, files: &[&str]) -> PathBuf {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(profiles.join("keyrings")).unwrap();
    for f in std::iter::once("keyrings/ubuntu-archive-keyring.gpg").chain(files.iter().copied()) {
        std::fs::copy(repo().join("profiles").join(f), profiles.join(f)).unwrap();
    }
    profiles
}

pub mod gateway;
pub mod registry;

/// Copy the repository's `subdirs` (recursively) into `dir`, e.g. profiles, images, overlays
/// and units for a build whose catalog may be rewritten by `clawimg lock`; returns `dir`.
pub fn repo_copy(dir: &Path, subdirs: &[&str]) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let (src, dst) = (e.path(), to.join(e.file_name()));
            if e.file_type().unwrap().is_dir() {
                copy(&src, &dst);
            } else {
                std::fs::copy(&src, &dst).unwrap();
            }
        }
    }
    for sub in subdirs {
        copy(&repo().join(sub), &dir.join(sub));
    }
    dir.to_path_buf()
}

/// A real sshd on 127.0.0.1 (test-owned config and host key): the "rescue system".
pub struct Sshd {
    child: Child,
    /// Port it listens on.
    pub port: u16,
    /// Private key it accepts (for any user, root included).
    pub key: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start an sshd on a free port of 127.0.0.1 with its own host key and config in `dir`,
/// accepting one fresh client key.
pub fn start_sshd(dir: &Path) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    keygen(&dir.join("host_key"), "rescue-host");
    keygen(&dir.join("client_key"), "rescue-client");
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
         PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         UsePAM no\nStrictModes no\nPidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\n",
        d = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), cfg).unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Sshd {
        child,
        port,
        key: dir.join("client_key"),
    }
}

/// `CLAWIMG_SSH_OPTS` for a throwaway host: this key only, no known-hosts checks.
pub fn ssh_opts_for(key: &Path) -> String {
    format!(
        "-F /dev/null -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        key.display()
    )
}

/// `CLAWIMG_SSH_OPTS` for the test sshd.
pub fn ssh_opts(s: &Sshd) -> String {
    ssh_opts_for(&s.key)
}

/// sha256 of `len` bytes of `p` from `off`.
pub fn sha256_range(p: &Path, off: u64, len: u64) -> String {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f.take(len), &mut h).unwrap();
    hex::encode(h.finalize())
}

/// (offset, bytes) of the partition named `name` in the image's manifest.
pub fn partition_range(dir: &Path, name: &str) -> (u64, u64) {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let r = m["partitions"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("partition {name} in the manifest"))
        .clone();
    (r["offset"].as_u64().unwrap(), r["bytes"].as_u64().unwrap())
}

/// Fill `len` bytes of `p` (created or overwritten from offset 0) with pseudo-random bytes:
/// a used disk, whose old contents must not survive where the image has none.
pub fn random_fill(p: &Path, len: u64, seed: u64) {
    use std::io::Write;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(p)
        .unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for c in buf.chunks_exact_mut(8) {
            // xorshift64: fast, and never a run of zeros.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}

/// Every partition of the image in `dir` and the partition table (first 34 sectors) are
/// byte-identical on `target` (sha256 of each range, computed here).
pub fn assert_partitions_equal(dir: &Path, raw: &Path, target: &Path) {
    assert_partitions_equal_but(dir, raw, target, &[]);
}

/// [`assert_partitions_equal`] except the partitions named in `skip` (a node's seed).
pub fn assert_partitions_equal_but(dir: &Path, raw: &Path, target: &Path, skip: &[&str]) {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut ranges = vec![("partition table".to_string(), 0u64, 34 * 512u64)];
    for p in m["partitions"]["partitions"].as_array().unwrap() {
        if skip.contains(&p["name"].as_str().unwrap_or("")) {
            continue;
        }
        ranges.push((
            p["name"].as_str().unwrap_or("?").to_string(),
            p["offset"].as_u64().unwrap(),
            p["bytes"].as_u64().unwrap(),
        ));
    }
    assert!(ranges.len() >= 3, "{ranges:?}");
    for (name, off, len) in ranges {
        assert_eq!(
            sha256_range(target, off, len),
            sha256_range(raw, off, len),
            "{}: {name} ({off}+{len}) differs from the image's",
            target.display()
        );
    }
}

/// `e2fsck -fn` on the root partition of `target` (a read-only loop device over its
/// range); asserts it is clean.
pub fn assert_root_fsck_clean(dir: &Path, target: &Path) {
    let (off, len) = partition_range(dir, "root");
    let o = Command::new("losetup")
        .args([
            "-r",
            "-f",
            "--show",
            "-o",
            &off.to_string(),
            "--sizelimit",
            &len.to_string(),
        ])
        .arg(target)
        .output()
        .expect("losetup");
    assert!(
        o.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let fsck = Command::new("e2fsck")
        .args(["-fn", &dev])
        .output()
        .expect("e2fsck");
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    assert!(
        fsck.status.success(),
        "e2fsck -fn on the root of {}: {}{}",
        target.display(),
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}

/// The venv holding CycloneDX's Python library with its schema validation (.ci/setup):
/// `$CLAWIMG_CYCLONEDX_VENV`, else /opt/clawimg-ci/cyclonedx.
pub fn cyclonedx_venv() -> PathBuf {
    let v = std::env::var_os("CLAWIMG_CYCLONEDX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/clawimg-ci/cyclonedx"));
    assert!(
        v.join("bin/python").exists(),
        "{}: CycloneDX venv missing: run .ci/setup",
        v.display()
    );
    v
}

/// Validate a file against the CycloneDX 1.5 JSON schema (strict: no unknown properties)
/// with cyclonedx-python-lib. Ok, or the validator's first lines of complaint.
pub fn cyclonedx_validate(file: &Path) -> Result<(), String> {
    const SCRIPT: &str = "import sys\n\
        from cyclonedx.schema import SchemaVersion\n\
        from cyclonedx.validation.json import JsonStrictValidator\n\
        e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
        if e is not None:\n    print(str(e)[:2000]); sys.exit(1)\n\
        print('valid')\n";
    let o = Command::new(cyclonedx_venv().join("bin/python"))
        .arg("-c")
        .arg(SCRIPT)
        .arg(file)
        .output()
        .expect("run the CycloneDX validator");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    match (o.status.success(), out.trim() == "valid") {
        (true, true) => Ok(()),
        _ => Err(out.lines().take(3).collect::<Vec<_>>().join("\n")),
    }
}
