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

/// glance-api on a free port; with `keystone` = (identity URL, admin password) its
/// pipeline validates tokens against that Keystone, else it runs without auth.
fn start_glance(dir: &Path, keystone: Option<(&str, &str)>) -> (Server, String) {
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
             [paste_deploy]\nconfig_file = /etc/glance/glance-api-paste.ini\n{}",
            match keystone {
                Some((url, pw)) => format!(
                    "flavor = keystone\n[keystone_authtoken]\nwww_authenticate_uri = {url}\n\
                     auth_url = {url}\nauth_type = password\ninterface = public\n\
                     username = admin\npassword = {pw}\nproject_name = admin\n\
                     user_domain_name = Default\nproject_domain_name = Default\n"
                ),
                None => String::new(),
            }
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

/// GET `url` with a Keystone token; the JSON body.
fn get_json_auth(url: &str, token: &str) -> serde_json::Value {
    let body = ureq::get(url)
        .set("X-Auth-Token", token)
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

#[test]
fn glance_upload_verified_and_idempotent() {
    let dir = scratch("upload-glance");
    let (_glance, url) = start_glance(&dir.join("glance"), None);
    let (raw, qcow2) = make_image(&dir, 24);
    let up = |file: &Path, extra: &[&str]| {
        let mut c = clawimg();
        c.arg("upload")
            .arg(file)
            .args([
                "--to",
                "glance",
                "--endpoint",
                &url,
                "--name",
                "openclaw-test",
            ])
            .args(extra)
            .env_remove("OS_CLOUD")
            .env_remove("OS_AUTH_URL");
        run(c)
    };

    let o = up(&qcow2, &["--firmware", "uefi"]);
    assert!(o.status.success(), "upload failed: {}", stderr(&o));
    let id = stdout(&o);
    let img = get_json(&format!("{url}/v2/images/{id}"));
    assert_eq!(img["status"], "active");
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(img["container_format"], "bare");
    assert_eq!(img["hw_firmware_type"], "uefi");
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

// ---------------------------------------------------------------- Keystone

/// Debian's Keystone (sqlite, fernet tokens) bootstrapped with an admin user, served by
/// its wsgiref test server on a free port. Returns the server, its URL and the password.
fn start_keystone(dir: &Path) -> (Server, String, String) {
    let manage = tool("keystone-manage");
    let wsgi = tool("keystone-wsgi-public");
    for d in ["fernet", "credential"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let d = dir.display();
    let conf = dir.join("keystone.conf");
    std::fs::write(
        &conf,
        format!(
            "[DEFAULT]\nlog_file = {d}/keystone.log\n\
             [database]\nconnection = sqlite:///{d}/keystone.sqlite\n\
             [token]\nprovider = fernet\n\
             [fernet_tokens]\nkey_repository = {d}/fernet\n\
             [credential]\nkey_repository = {d}/credential\n"
        ),
    )
    .unwrap();
    let password = hex::encode(Sha256::digest(uuid::Uuid::new_v4().as_bytes()))[..20].to_string();
    let ks = |args: &[&str]| {
        let o = Command::new(&manage)
            .arg("--config-file")
            .arg(&conf)
            .args(args)
            .env("OS_BOOTSTRAP_PASSWORD", &password)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "keystone-manage {args:?}: {}",
            stderr(&o)
        );
    };
    ks(&["db_sync"]);
    ks(&[
        "fernet_setup",
        "--keystone-user",
        "root",
        "--keystone-group",
        "root",
    ]);
    ks(&[
        "credential_setup",
        "--keystone-user",
        "root",
        "--keystone-group",
        "root",
    ]);
    let v3 = format!("{url}/v3");
    ks(&[
        "bootstrap",
        "--bootstrap-admin-url",
        &v3,
        "--bootstrap-public-url",
        &v3,
        "--bootstrap-region-id",
        "RegionOne",
    ]);
    let log = dir.join("wsgi.log");
    let mut child = Command::new(wsgi)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("OS_KEYSTONE_CONFIG_FILES", &conf)
        .stdout(std::fs::File::create(dir.join("wsgi.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_port(port, &mut child, &log);
    (Server(child), url, password)
}

/// The test's own admin token (to register Glance in the catalog and read images back).
fn admin_token(url: &str, password: &str) -> String {
    let body = serde_json::json!({"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "admin", "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}});
    let r = ureq::post(&format!("{url}/v3/auth/tokens"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap();
    r.header("X-Subject-Token").unwrap().to_string()
}

fn post(url: &str, token: &str, body: serde_json::Value) -> serde_json::Value {
    let r = ureq::post(url)
        .set("X-Auth-Token", token)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap();
    serde_json::from_str(&r.into_string().unwrap()).unwrap()
}

/// Run without printing the command (its environment holds a password).
fn run_quiet(mut c: Command) -> std::process::Output {
    let o = c.output().unwrap();
    eprintln!("--- clawimg upload\n{}{}", stdout(&o), stderr(&o));
    o
}

#[test]
fn glance_behind_keystone_with_clouds_yaml_and_os_env() {
    let dir = scratch("upload-keystone");
    let (_ks, ks_url, password) = start_keystone(&dir.join("keystone"));
    let (_glance, glance_url) = start_glance(&dir.join("glance"), Some((&ks_url, &password)));
    let token = admin_token(&ks_url, &password);
    let svc = post(
        &format!("{ks_url}/v3/services"),
        &token,
        serde_json::json!({"service": {"type": "image", "name": "glance"}}),
    );
    post(
        &format!("{ks_url}/v3/endpoints"),
        &token,
        serde_json::json!({"endpoint": {"service_id": svc["service"]["id"], "interface": "public",
            "region_id": "RegionOne", "url": glance_url}}),
    );
    let (_, qcow2) = make_image(&dir, 8);

    // clouds.yaml names the cloud; the password sits in secure.yaml.
    std::fs::write(
        dir.join("clouds.yaml"),
        format!(
            "clouds:\n  lab:\n    region_name: RegionOne\n    auth:\n      auth_url: {ks_url}\n\
             \x20     username: admin\n      project_name: admin\n\
             \x20     user_domain_name: Default\n      project_domain_name: Default\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("secure.yaml"),
        format!("clouds:\n  lab:\n    auth:\n      password: {password}\n"),
    )
    .unwrap();
    let base = || {
        let mut c = clawimg();
        c.arg("upload")
            .arg(&qcow2)
            .args(["--to", "glance", "--name", "behind-keystone"]);
        for v in [
            "OS_CLOUD",
            "OS_AUTH_URL",
            "OS_PASSWORD",
            "OS_IMAGE_URL",
            "OS_USERNAME",
            "OS_APPLICATION_CREDENTIAL_ID",
            "OS_APPLICATION_CREDENTIAL_SECRET",
        ] {
            c.env_remove(v);
        }
        c
    };
    let mut c = base();
    c.args(["--cloud", "lab"])
        .env("OS_CLIENT_CONFIG_FILE", dir.join("clouds.yaml"))
        .env("OS_CLIENT_SECURE_FILE", dir.join("secure.yaml"));
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o);
    // Read it back with a token: the image belongs to the scoped project.
    let img: serde_json::Value = get_json_auth(&format!("{glance_url}/v2/images/{id}"), &token);
    assert_eq!(img["status"], "active");
    assert_eq!(img["clawimg_sha256"], sha256(&qcow2).as_str());
    assert_eq!(img["hw_firmware_type"], "bios");
    let projects = get_json_auth(&format!("{ks_url}/v3/projects?name=admin"), &token);
    assert_eq!(img["owner"], projects["projects"][0]["id"]);

    // The OS_* variables reach the same cloud; the image is found, not uploaded again.
    let os_env = |pw: &str| {
        let mut c = base();
        c.env("OS_AUTH_URL", format!("{ks_url}/v3"))
            .env("OS_USERNAME", "admin")
            .env("OS_PASSWORD", pw)
            .env("OS_PROJECT_NAME", "admin")
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_REGION_NAME", "RegionOne");
        c
    };
    let o = run_quiet(os_env(&password));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), id);
    assert_eq!(
        std::fs::read_dir(dir.join("glance/images"))
            .unwrap()
            .count(),
        1
    );

    // An application credential of that user (no password, its own project) works too.
    let users: serde_json::Value = get_json_auth(&format!("{ks_url}/v3/users?name=admin"), &token);
    let uid = users["users"][0]["id"].as_str().unwrap();
    let ac = post(
        &format!("{ks_url}/v3/users/{uid}/application_credentials"),
        &token,
        serde_json::json!({"application_credential": {"name": "clawimg-upload"}}),
    );
    let mut c = base();
    c.env("OS_AUTH_TYPE", "v3applicationcredential")
        .env("OS_AUTH_URL", &ks_url)
        .env(
            "OS_APPLICATION_CREDENTIAL_ID",
            ac["application_credential"]["id"].as_str().unwrap(),
        )
        .env(
            "OS_APPLICATION_CREDENTIAL_SECRET",
            ac["application_credential"]["secret"].as_str().unwrap(),
        )
        .env("OS_REGION_NAME", "RegionOne");
    let o = run_quiet(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), id);

    // A wrong password: Keystone says no, and the message does not echo it.
    let o = run_quiet(os_env("not-the-password"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Keystone refused"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("not-the-password"));

    // Glance itself refuses requests without a token.
    let mut c = base();
    c.args(["--endpoint", &glance_url]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("HTTP 401"), "{}", stderr(&o));
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
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before the kill"
            );
            assert!(start.elapsed() < Duration::from_secs(120));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            std::fs::read_dir(&state).unwrap().count() > 0,
            "no state file"
        );
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
    assert!((1..32).contains(&resumed), "resumed {resumed} of 32 parts");
    assert!(err.contains("/32 parts"), "{err}");
    assert_eq!(
        s3_object(&url, &creds, "images", "a/disk.raw"),
        (want.clone(), want.clone())
    );

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
    assert_eq!(
        s3_object(&url, &creds, "images", "b/disk.raw"),
        (want.clone(), want)
    );

    // 4. A wrong secret is refused by the server's signature check; it is never printed.
    let bad = dir.join("bad-credentials");
    let text = std::fs::read_to_string(&creds).unwrap();
    let secret = text
        .lines()
        .last()
        .unwrap()
        .split(" = ")
        .nth(1)
        .unwrap()
        .to_string();
    std::fs::write(&bad, text.replace(&secret, "wrongwrongwrong")).unwrap();
    let mut c = cmd("c/disk.raw");
    c.env("AWS_SHARED_CREDENTIALS_FILE", &bad);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("HTTP 403"), "{all}");
    assert!(!all.contains("wrongwrongwrong") && !all.contains(&secret));
}
