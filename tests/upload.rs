//! `clawimg upload` against real servers on 127.0.0.1: Debian's glance-api (sqlite + file
//! store, no Keystone in its pipeline) and moto's S3 server with signature checking on.

mod common;

use common::{clawimg, run, scratch};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "server exited ({st}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "server on port {port} did not come up:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tool(name: &str) -> PathBuf {
    let p = Path::new("/usr/bin").join(name);
    assert!(p.exists(), "{} missing: run .ci/setup", p.display());
    p
}

/// A random-content raw file of `mib` MiB and its qcow2 conversion.
fn make_image(dir: &Path, mib: usize) -> (PathBuf, PathBuf) {
    let raw = dir.join("disk.raw");
    let mut data = vec![0u8; mib << 20];
    // Half random (incompressible parts), half zeros (sparse in qcow2).
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    f.read_exact(&mut data[..(mib << 19)]).unwrap();
    std::fs::write(&raw, &data).unwrap();
    let qcow2 = dir.join("disk.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2)
        .status()
        .unwrap();
    assert!(st.success());
    (raw, qcow2)
}

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

// ---------------------------------------------------------------- Glance

fn start_glance(dir: &Path) -> (Server, String) {
    let api = tool("glance-api");
    let manage = tool("glance-manage");
    let port = free_port();
    for d in ["images", "staging", "tasks", "lock", "cache"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let d = dir.display();
    let conf = dir.join("glance-api.conf");
    std::fs::write(
        &conf,
        format!(
            "[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = {port}\nworkers = 0\n\
             enabled_backends = fs:file\nimage_cache_dir = {d}/cache\n\
             [database]\nconnection = sqlite:///{d}/glance.sqlite\n\
             [glance_store]\ndefault_backend = fs\n\
             [fs]\nfilesystem_store_datadir = {d}/images\n\
             [os_glance_staging_store]\nfilesystem_store_datadir = {d}/staging\n\
             [os_glance_tasks_store]\nfilesystem_store_datadir = {d}/tasks\n\
             [oslo_concurrency]\nlock_path = {d}/lock\n\
             [paste_deploy]\nconfig_file = /etc/glance/glance-api-paste.ini\n"
        ),
    )
    .unwrap();
    let log = dir.join("glance.log");
    let st = Command::new(manage)
        .arg("--config-file")
        .arg(&conf)
        .arg("db_sync")
        .stdout(std::fs::File::create(dir.join("db_sync.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("db_sync.err")).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "glance-manage db_sync failed");
    let mut child = Command::new(api)
        .arg("--config-file")
        .arg(&conf)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("glance.err")).unwrap())
        .spawn()
        .unwrap();
    wait_port(port, &mut child, &dir.join("glance.err"));
    (Server(child), format!("http://127.0.0.1:{port}"))
}

fn get_json(url: &str) -> serde_json::Value {
    let body = ureq::get(url).call().unwrap().into_string().unwrap();
    serde_json::from_str(&body).unwrap()
}

#[test]
fn glance_upload_verified_and_idempotent() {
    let dir = scratch("upload-glance");
    let (_glance, url) = start_glance(&dir.join("glance"));
    let (raw, qcow2) = make_image(&dir, 24);
    let up = |file: &Path, extra: &[&str]| {
        let mut c = clawimg();
        c.arg("upload")
            .arg(file)
            .args(["--to", "glance", "--endpoint", &url, "--name", "openclaw-test"])
            .args(extra)
            .env_remove("OS_CLOUD")
            .env_remove("OS_AUTH_URL");
        run(c)
    };

    let o = up(&qcow2, &["--firmware", "bios"]);
    assert!(o.status.success(), "upload failed: {}", stderr(&o));
    let id = stdout(&o);
    let img = get_json(&format!("{url}/v2/images/{id}"));
    assert_eq!(img["status"], "active");
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(img["container_format"], "bare");
    assert_eq!(img["hw_firmware_type"], "bios");
    assert_eq!(img["os_distro"], "ubuntu");
    assert_eq!(img["os_version"], "24.04");
    assert_eq!(img["clawimg_sha256"], sha256(&qcow2).as_str());
    assert_eq!(img["min_disk"], 1);
    // The bytes Glance serves are the file's.
    let mut served = vec![];
    ureq::get(&format!("{url}/v2/images/{id}/file"))
        .call()
        .unwrap()
        .into_reader()
        .read_to_end(&mut served)
        .unwrap();
    assert_eq!(hex::encode(Sha256::digest(&served)), sha256(&qcow2));

    // Same name and digest: the same id, no second image, no second upload.
    let stored = || {
        std::fs::read_dir(dir.join("glance/images"))
            .unwrap()
            .count()
    };
    assert_eq!(stored(), 1);
    let o = up(&qcow2, &[]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), id);
    let same = get_json(&format!("{url}/v2/images?name=openclaw-test"));
    assert_eq!(same["images"].as_array().unwrap().len(), 1);
    assert_eq!(stored(), 1);

    // Other data under the same name is a new image (raw this time).
    let o = up(&raw, &["--format", "raw"]);
    assert!(o.status.success(), "raw upload: {}", stderr(&o));
    let id2 = stdout(&o);
    assert_ne!(id2, id);
    let img2 = get_json(&format!("{url}/v2/images/{id2}"));
    assert_eq!(img2["disk_format"], "raw");
    assert_eq!(img2["size"], 24 << 20);
    assert_eq!(stored(), 2);

    // A format that does not match the file is refused before any request.
    let o = up(&qcow2, &["--format", "raw"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is qcow2, not raw"), "{}", stderr(&o));
}

// ---------------------------------------------------------------- S3

fn venv() -> PathBuf {
    let v = std::env::var_os("CLAWIMG_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/clawimg-ci/moto"));
    assert!(
        v.join("bin/moto_server").exists(),
        "{}: moto venv missing: run .ci/setup",
        v.display()
    );
    v
}

/// moto's S3 with IAM signature checks from the 5th request on; the first four (made by
/// boto3 here) create a user, its key, an s3:* policy and the bucket.
fn start_s3(dir: &Path, bucket: &str) -> (Server, String, PathBuf, PathBuf) {
    let v = venv();
    let port = free_port();
    let log = dir.join("moto.log");
    let mut child = Command::new(v.join("bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
        .stdout(std::fs::File::create(dir.join("moto.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_port(port, &mut child, &log);
    let url = format!("http://127.0.0.1:{port}");
    let script = r#"
import boto3, json, sys
ep, bucket, out = sys.argv[1:4]
kw = dict(endpoint_url=ep, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="clawimg")
k = iam.create_access_key(UserName="clawimg")["AccessKey"]
iam.put_user_policy(UserName="clawimg", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
boto3.client("s3", **kw).create_bucket(Bucket=bucket)
with open(out, "w") as f:
    f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (k["AccessKeyId"], k["SecretAccessKey"]))
"#;
    let creds = dir.join("credentials");
    let st = Command::new(v.join("bin/python"))
        .args(["-c", script, &url, bucket])
        .arg(&creds)
        .status()
        .unwrap();
    assert!(st.success(), "moto setup failed");
    (Server(child), url, creds, log)
}

/// Check the stored object with boto3 (not clawimg's client): sha256 of its bytes and
/// its metadata.
fn s3_object(url: &str, creds: &Path, bucket: &str, key: &str) -> (String, String) {
    let script = r#"
import boto3, hashlib, sys
ep, bucket, key = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1")
o = s3.get_object(Bucket=bucket, Key=key)
h = hashlib.sha256()
for c in o["Body"].iter_chunks(1 << 20):
    h.update(c)
print(h.hexdigest(), o["Metadata"].get("sha256", ""))
"#;
    let o = Command::new(venv().join("bin/python"))
        .args(["-c", script, url, bucket, key])
        .env("AWS_SHARED_CREDENTIALS_FILE", creds)
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let (a, b) = s.split_once(' ').unwrap();
    (a.to_string(), b.to_string())
}

fn abort_all(url: &str, creds: &Path, bucket: &str) {
    let script = r#"
import boto3, sys
ep, bucket = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1")
for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
    s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    print("aborted", u["Key"])
"#;
    let st = Command::new(venv().join("bin/python"))
        .args(["-c", script, url, bucket])
        .env("AWS_SHARED_CREDENTIALS_FILE", creds)
        .env_remove("AWS_ACCESS_KEY_ID")
        .status()
        .unwrap();
    assert!(st.success());
}

fn part_puts(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("partNumber="))
        .count()
}

#[test]
fn s3_multipart_resumes_after_sigkill_and_verifies() {
    let dir = scratch("upload-s3");
    let (_s3, url, creds, log) = start_s3(&dir, "images");
    let raw = dir.join("big.raw");
    let mut data = vec![0u8; 160 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    std::fs::write(&raw, &data).unwrap();
    drop(data);
    let want = sha256(&raw);
    let cache = dir.join("cache");
    let cmd = |key: &str| {
        let mut c = clawimg();
        c.arg("upload")
            .arg(&raw)
            .args(["--to", &format!("s3://images/{key}"), "--endpoint", &url])
            .args(["--part-size", "5", "--jobs", "2", "--cache-dir"])
            .arg(&cache)
            .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_PROFILE");
        c
    };
    // Start, wait until the upload exists and parts are flowing, then SIGKILL.
    let interrupt = |key: &str| {
        let state = cache.join("upload");
        let _ = std::fs::remove_dir_all(&state);
        let mut child = cmd(key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let before = part_puts(&log);
        while part_puts(&log) < before + 4 {
            assert!(child.try_wait().unwrap().is_none(), "finished before the kill");
            assert!(start.elapsed() < Duration::from_secs(120));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(std::fs::read_dir(&state).unwrap().count() > 0, "no state file");
        child.kill().unwrap(); // SIGKILL
        let st = child.wait().unwrap();
        assert!(!st.success(), "clawimg finished before SIGKILL");
    };

    // 1. Interrupted, rerun: resumes from the parts the server holds.
    interrupt("a/disk.raw");
    let o = run(cmd("a/disk.raw"));
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    assert_eq!(stdout(&o), "s3://images/a/disk.raw");
    let err = stderr(&o);
    let resumed: usize = err
        .split("resuming upload: ")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("did not resume: {err}"));
    assert!(resumed >= 1 && resumed < 32, "resumed {resumed} of 32 parts");
    assert!(err.contains("/32 parts"), "{err}");
    assert_eq!(s3_object(&url, &creds, "images", "a/disk.raw"), (want.clone(), want.clone()));

    // 2. Same object again: HEAD finds the digest, no part is sent.
    let puts = part_puts(&log);
    let o = run(cmd("a/disk.raw"));
    assert!(o.status.success());
    assert_eq!(part_puts(&log), puts);

    // 3. Interrupted, then the server drops the upload: the rerun starts over cleanly.
    interrupt("b/disk.raw");
    abort_all(&url, &creds, "images");
    let o = run(cmd("b/disk.raw"));
    assert!(o.status.success(), "restart failed: {}", stderr(&o));
    assert!(stderr(&o).contains("starting over"), "{}", stderr(&o));
    assert_eq!(s3_object(&url, &creds, "images", "b/disk.raw"), (want.clone(), want));

    // 4. A wrong secret is refused by the server's signature check; it is never printed.
    let bad = dir.join("bad-credentials");
    let text = std::fs::read_to_string(&creds).unwrap();
    let secret = text.lines().last().unwrap().split(" = ").nth(1).unwrap().to_string();
    std::fs::write(&bad, text.replace(&secret, "wrongwrongwrong")).unwrap();
    let mut c = cmd("c/disk.raw");
    c.env("AWS_SHARED_CREDENTIALS_FILE", &bad);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("HTTP 403"), "{all}");
    assert!(!all.contains("wrongwrongwrong") && !all.contains(&secret));
}
