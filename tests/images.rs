//! Pinned container images against a real registry: Debian's `docker-registry` on
//! 127.0.0.1 (plain, with htpasswd basic auth, and with token auth served by a small
//! JWT issuer here), test images made here from busybox-static and pushed with skopeo,
//! reached as `clawimg.test/...` through `--registry-mirror`. One boot proves the baked
//! images load at first boot.

mod common;
use common::registry::*;
use common::*;
use serde_json::json;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const MIRROR_ENV: &str = "CLAWIMG_REGISTRY_MIRROR";

/// Digests of what the tests pushed.
struct Pushed {
    /// busybox: index digest, amd64 manifest, amd64 config, arm64 layer.
    busybox_index: String,
    busybox_amd64: String,
    busybox_config: String,
    arm64_layer: String,
    /// busybox amd64 layer's diff id.
    busybox_diff_id: String,
    /// tools: manifest digest and its own (second) layer.
    tools_manifest: String,
    tools_layer: String,
}

/// Make the two test images and push them: `clawimg/busybox:1.0` as an index (amd64 +
/// arm64), `clawimg/tools:1.0` as a plain manifest sharing the busybox layer.
fn push_images(reg: &Registry, work: &Path, authfile: Option<&Path>) -> Pushed {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (package busybox-static)");
    let bb_files = vec![("bin/busybox", busybox, 0o755)];
    let bb_links = [
        ("bin/sh", "busybox"),
        ("bin/true", "busybox"),
        ("bin/cat", "busybox"),
    ];

    let l1 = Layout::new(&work.join("oci-busybox"));
    let bb = l1.layer(&bb_files, &bb_links);
    let amd64 = l1.image("amd64", std::slice::from_ref(&bb));
    let arm = l1.layer(&[("etc/arch", b"arm64 stand-in\n".to_vec(), 0o644)], &[]);
    let arm64 = l1.image("arm64", std::slice::from_ref(&arm));
    let index = l1.index(&[arm64, amd64.clone()]);
    l1.tag(&index, "1.0");
    let amd64_manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            l1.0.join("blobs/sha256")
                .join(&amd64["digest"].as_str().unwrap()[7..]),
        )
        .unwrap(),
    )
    .unwrap();

    let l2 = Layout::new(&work.join("oci-tools"));
    let bb2 = l2.layer(&bb_files, &bb_links);
    let extra = l2.layer(
        &[("etc/clawimg-tools", b"tools image\n".to_vec(), 0o644)],
        &[],
    );
    let tools = l2.image("amd64", &[bb2, extra.clone()]);
    l2.tag(&tools, "1.0");

    for (layout, repo) in [(&l1, "busybox"), (&l2, "tools")] {
        let mut c = Command::new("skopeo");
        c.args([
            "--insecure-policy",
            "copy",
            "--all",
            "--dest-tls-verify=false",
        ]);
        if let Some(a) = authfile {
            c.arg("--dest-authfile").arg(a);
        }
        c.arg(format!("oci:{}:1.0", layout.0.display()))
            .arg(format!(
                "docker://127.0.0.1:{}/clawimg/{repo}:1.0",
                reg.port
            ));
        tool(&mut c);
    }
    Pushed {
        busybox_index: index["digest"].as_str().unwrap().into(),
        busybox_amd64: amd64["digest"].as_str().unwrap().into(),
        busybox_config: amd64_manifest["config"]["digest"].as_str().unwrap().into(),
        busybox_diff_id: bb.1.clone(),
        arm64_layer: arm.0["digest"].as_str().unwrap().into(),
        tools_manifest: tools["digest"].as_str().unwrap().into(),
        tools_layer: extra.0["digest"].as_str().unwrap().into(),
    }
}

/// A scratch copy of the profiles and the image catalog.
fn scratch_repo(name: &str) -> PathBuf {
    repo_copy(&scratch(name), &["profiles", "images"])
}

/// `clawimg` with the scratch profiles, a cache, a mirror, and no ambient credentials.
fn cl(dir: &Path, cache: &Path, mirror: &str) -> Command {
    let mut c = clawimg();
    c.arg("--profiles-dir")
        .arg(dir.join("profiles"))
        .arg("--cache-dir")
        .arg(cache);
    c.env(MIRROR_ENV, mirror)
        .env("HOME", dir)
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    c
}

fn ok(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "clawimg failed:\n{text}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn lock(dir: &Path, reg: &Registry) -> String {
    let mut c = cl(dir, &dir.join("cache"), &reg.mirror());
    c.args(["lock", "test-images", "--images-only"]);
    ok(&run(c))
}

fn cached(cache: &Path, digest: &str) -> bool {
    cache.join("blobs/sha256").join(&digest[7..]).is_file()
}

#[test]
fn lints_refuse_unpinned_latest_and_untagged_references() {
    let dir = scratch_repo("images-lint");
    let cases = [
        ("reference = \"clawimg.test/a:1\"\n", "x.toml:2:1: key `a.digest`", "clawimg lock"),
        ("reference = \"clawimg.test/a:latest\"\ndigest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n", "x.toml:3:1: key `a.reference`", "latest"),
        ("reference = \"clawimg.test/a\"\ndigest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n", "x.toml:3:1: key `a.reference`", "no tag"),
        ("reference = \"clawimg.test/a:1\"\ndigest = \"sha256:12\"\n", "x.toml:4:1: key `a.digest`", "64"),
        ("reference = \"clawimg.test/a:1\"\nplatfrom = \"linux/amd64\"\n", "x.toml:4:1: key `a.platfrom`", "unknown field"),
    ];
    std::fs::write(
        dir.join("profiles/p.toml"),
        "extends = \"test\"\n[containers]\nimages = [\"a\"]\n",
    )
    .unwrap();
    for (entry, want, why) in cases {
        std::fs::write(
            dir.join("images/x.toml"),
            format!("# lint fixture\n[a]\n{entry}"),
        )
        .unwrap();
        let mut c = cl(&dir, &dir.join("cache"), "");
        c.args(["check", "p"]);
        let o = run(c);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(want) && err.contains(why),
            "expected {want:?} / {why:?}:\n{err}"
        );
    }
    // Every problem of the catalog at once, each with its line: a moving tag, a bad digest,
    // a missing digest and an unknown name.
    std::fs::write(
        dir.join("images/x.toml"),
        "[a]\nreference = \"clawimg.test/a:latest\"\ndigest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n[b]\nreference = \"clawimg.test/b:1\"\ndigest = \"sha256:12\"\n[c]\nreference = \"clawimg.test/c:1\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("profiles/p.toml"),
        "extends = \"test\"\n[containers]\nimages = [\"a\", \"b\", \"c\", \"ghost\"]\n",
    )
    .unwrap();
    let mut c = cl(&dir, &dir.join("cache"), "");
    c.args(["check", "p"]);
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for want in [
        "x.toml:2:1: key `a.reference`",
        "x.toml:6:1: key `b.digest`",
        "x.toml:7:1: key `c.digest`",
        "no image `ghost`",
    ] {
        assert!(err.contains(want), "expected {want:?}:\n{err}");
    }

    // An entry the catalog does not have is named with the profile key.
    std::fs::remove_file(dir.join("images/x.toml")).unwrap();
    std::fs::write(
        dir.join("profiles/p.toml"),
        "extends = \"test\"\n[containers]\nimages = [\"ghost\"]\n",
    )
    .unwrap();
    let mut c = cl(&dir, &dir.join("cache"), "");
    c.args(["check", "p"]);
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("key `containers.images`") && err.contains("ghost"),
        "{err}"
    );
}

#[test]
fn lock_pull_by_digest_resolves_amd64_then_works_from_cache_and_offline_import() {
    let dir = scratch_repo("images-pull");
    let reg = Registry::start(&dir.join("registry"), None);
    let p = push_images(&reg, &dir, None);

    // lock fills the digests and says what changed; a second lock changes nothing.
    let out = lock(&dir, &reg);
    assert!(
        out.contains(&format!("(none) -> {}", p.busybox_index))
            && out.contains(&format!("(none) -> {}", p.tools_manifest)),
        "{out}"
    );
    assert!(out.contains("2 changed"), "{out}");
    let catalog = std::fs::read_to_string(dir.join("images/test.toml")).unwrap();
    assert!(
        catalog.contains(&p.busybox_index) && catalog.contains("# Catalog format"),
        "{catalog}"
    );
    assert!(lock(&dir, &reg).contains("0 changed"));

    // Pull by digest: the index resolves to the amd64 manifest; arm64 blobs are never fetched.
    let cache = dir.join("cache");
    let mut c = cl(&dir, &cache, &reg.mirror());
    c.args(["images", "pull", "test-images"]);
    let out = ok(&run(c));
    assert!(
        out.contains(&format!(
            "@{} -> image id {}",
            p.busybox_amd64, p.busybox_config
        )),
        "{out}"
    );
    for d in [
        &p.busybox_index,
        &p.busybox_amd64,
        &p.busybox_config,
        &p.tools_manifest,
        &p.tools_layer,
    ] {
        assert!(cached(&cache, d), "{d} not cached");
    }
    assert!(
        !cached(&cache, &p.arm64_layer),
        "the arm64 layer must not be pulled"
    );

    // Everything cached: not one request reaches the registry.
    let before = reg.requests();
    assert!(before > 0);
    let mut c = cl(&dir, &cache, &reg.mirror());
    c.args(["images", "pull", "test-images"]);
    let out = ok(&run(c));
    assert!(out.contains("0 registry requests"), "{out}");
    assert_eq!(
        reg.requests(),
        before,
        "a fully cached pull made registry requests"
    );

    // Offline: OCI archives made by skopeo seed an empty cache; the mirror is a dead port.
    let mut archives = vec![];
    for repo in ["busybox", "tools"] {
        let a = dir.join(format!("{repo}.oci.tar"));
        tool(
            Command::new("skopeo")
                .args([
                    "--insecure-policy",
                    "copy",
                    "--all",
                    "--src-tls-verify=false",
                ])
                .arg(format!(
                    "docker://127.0.0.1:{}/clawimg/{repo}:1.0",
                    reg.port
                ))
                .arg(format!("oci-archive:{}:clawimg/{repo}:1.0", a.display())),
        );
        archives.push(a);
    }
    let before = reg.requests();
    let offline = dir.join("cache-offline");
    let dead = format!(
        "clawimg.test=http://127.0.0.1:{}",
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    for a in &archives {
        let mut c = cl(&dir, &offline, &dead);
        c.args(["images", "import"]).arg(a);
        let out = ok(&run(c));
        assert!(out.contains("blobs verified"), "{out}");
    }
    let mut c = cl(&dir, &offline, &dead);
    c.args(["images", "pull", "test-images"]);
    let out = ok(&run(c));
    assert!(out.contains("0 registry requests"), "{out}");
    assert_eq!(reg.requests(), before);
    // A corrupted archive is refused, naming the blob.
    let bad = dir.join("bad.oci.tar");
    let mut bytes = std::fs::read(&archives[1]).unwrap();
    let layer = std::fs::read(reg.blob_file(&p.tools_layer)).unwrap();
    let at = bytes
        .windows(layer.len())
        .position(|w| w == layer.as_slice())
        .expect("layer in archive");
    bytes[at + layer.len() / 2] ^= 0xff;
    std::fs::write(&bad, bytes).unwrap();
    let mut c = cl(&dir, &dir.join("cache-bad"), &dead);
    c.args(["images", "import"]).arg(&bad);
    let o = run(c);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(&p.tools_layer));

    // Production names through a prefixed mirror: a stand-in published on the test registry
    // as `hub/library/stand-in:1.0` is the Docker Hub image `stand-in:1.0` when docker.io is
    // mirrored to http://127.0.0.1:PORT/hub (one registry serving several upstreams).
    tool(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--all",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://127.0.0.1:{}/clawimg/tools:1.0", reg.port))
            .arg(format!(
                "docker://127.0.0.1:{}/hub/library/stand-in:1.0",
                reg.port
            )),
    );
    std::fs::write(
        dir.join("images/hub.toml"),
        "[stand-in]\nreference = \"stand-in:1.0\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("profiles/hub.toml"),
        "extends = \"test\"\n[containers]\nimages = [\"stand-in\"]\n",
    )
    .unwrap();
    let mirrors = format!(
        "{},docker.io=http://127.0.0.1:{}/hub",
        reg.mirror(),
        reg.port
    );
    let hub_cache = dir.join("cache-hub");
    let mut c = cl(&dir, &hub_cache, &mirrors);
    c.args(["lock", "hub", "--images-only"]);
    let out = ok(&run(c));
    assert!(
        out.contains(&format!("(none) -> {}", p.tools_manifest)),
        "{out}"
    );
    let mut c = cl(&dir, &hub_cache, &mirrors);
    c.args(["images", "pull", "hub"]);
    ok(&run(c));
    assert!(cached(&hub_cache, &p.tools_layer));
}

#[test]
fn basic_auth_uses_docker_config_credentials() {
    let dir = scratch_repo("images-auth");
    let (user, pass) = ("clawtest", "throwaway-test-password");
    let reg = Registry::start(&dir.join("registry"), Some((user, pass)));
    let auth = base64_encode(&format!("{user}:{pass}"));
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let config = docker.join("config.json");
    std::fs::write(
        &config,
        json!({"auths": {format!("127.0.0.1:{}", reg.port): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let p = push_images(&reg, &dir, Some(&config));

    // Without credentials: a clear error, no secret anywhere.
    let mut c = cl(&dir, &dir.join("cache"), &reg.mirror());
    c.args(["lock", "test-images", "--images-only"]);
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("requires credentials") && err.contains("config.json"),
        "{err}"
    );

    for cmd in [
        &["lock", "test-images", "--images-only"][..],
        &["images", "pull", "test-images"][..],
    ] {
        let mut c = cl(&dir, &dir.join("cache"), &reg.mirror());
        c.env("DOCKER_CONFIG", &docker).args(cmd);
        let out = ok(&run(c));
        assert!(!out.contains(pass));
    }
    assert!(cached(&dir.join("cache"), &p.tools_layer));
}

/// A token server for the registry's `auth.token` scheme: signs JWTs (RS256, x5c chain)
/// with a throwaway certificate made by openssl. With the right basic credentials every
/// requested action is granted; anonymous requests get `pull` on `clawimg/busybox` only.
fn token_server(dir: &Path, user: &str, pass: &str) -> u16 {
    token_server_at(dir, user, pass, "127.0.0.1").0
}

/// The `Authorization` header of every token request (None: anonymous).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>;

/// [`token_server`] listening on `ip`, recording the `Authorization` header of each request.
fn token_server_at(dir: &Path, user: &str, pass: &str, ip: &str) -> (u16, Seen) {
    let key = dir.join("token-key.pem");
    let cert = dir.join("token-cert.pem");
    tool(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=clawimg-token",
            ])
            .args(["-addext", "keyUsage=digitalSignature,keyCertSign"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let der = tool(
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert),
    )
    .stdout;
    let x5c = base64_encode_bytes(&der);
    let expected = format!("Basic {}", base64_encode(&format!("{user}:{pass}")));
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Default::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader};
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut lines = vec![];
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
                lines.push(l.trim_end().to_string());
            }
            let target = lines
                .first()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or("")
                .to_string();
            let auth = lines.iter().find_map(|l| {
                l.strip_prefix("Authorization: ")
                    .or(l.strip_prefix("authorization: "))
            });
            record.lock().unwrap().push(auth.map(str::to_string));
            let authed = auth == Some(expected.as_str());
            if auth.is_some() && !authed {
                let _ = conn.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let query = target.split_once('?').map(|q| q.1).unwrap_or("");
            let mut access = vec![];
            for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
                if k != "scope" {
                    continue;
                }
                let v = percent_decode(v);
                let parts: Vec<&str> = v.split(':').collect();
                if parts.len() != 3 {
                    continue;
                }
                let actions: Vec<&str> = if authed {
                    parts[2].split(',').collect()
                } else if parts[1] == "clawimg/busybox" {
                    vec!["pull"]
                } else {
                    vec![]
                };
                access.push(json!({"type": parts[0], "name": parts[1], "actions": actions}));
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
            let claims = json!({
                "iss": "clawimg-test-issuer", "sub": if authed { "clawtoken" } else { "" }, "aud": "clawimg-test",
                "exp": now + 600, "nbf": now - 60, "iat": now - 60, "jti": format!("{now}-{}", access.len()), "access": access,
            });
            let input = format!(
                "{}.{}",
                b64url(header.to_string().as_bytes()),
                b64url(claims.to_string().as_bytes())
            );
            let mut sign = Command::new("openssl")
                .args(["dgst", "-sha256", "-binary", "-sign"])
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            sign.stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let sig = sign.wait_with_output().unwrap().stdout;
            let body = json!({"token": format!("{input}.{}", b64url(&sig))}).to_string();
            let _ = conn.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
            );
        }
    });
    (port, seen)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn b64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn base64_encode_bytes(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn bearer_tokens_anonymous_and_with_docker_config_credentials() {
    let dir = scratch_repo("images-token");
    let (user, pass) = ("clawtoken", "throwaway-token-password");
    let tport = token_server(&dir, user, pass);
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: clawimg-test\n    issuer: clawimg-test-issuer\n    rootcertbundle: {}\n",
        dir.join("token-cert.pem").display()
    );
    let reg = Registry::start_with(&dir.join("registry"), &auth);
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let config = docker.join("config.json");
    let entry = json!({"auth": base64_encode(&format!("{user}:{pass}"))});
    std::fs::write(
        &config,
        json!({"auths": {format!("127.0.0.1:{}", reg.port): entry}}).to_string(),
    )
    .unwrap();
    let p = push_images(&reg, &dir, Some(&config));

    // Anonymous token: the public image resolves and pulls without credentials.
    std::fs::write(
        dir.join("profiles/anon.toml"),
        "extends = \"test\"\n[containers]\nimages = [\"busybox\"]\n",
    )
    .unwrap();
    for cmd in [
        &["lock", "anon", "--images-only"][..],
        &["images", "pull", "anon"][..],
    ] {
        let mut c = cl(&dir, &dir.join("cache"), &reg.mirror());
        c.args(cmd);
        ok(&run(c));
    }
    assert!(cached(&dir.join("cache"), &p.busybox_config));
    // The private one is refused without credentials...
    let mut c = cl(&dir, &dir.join("cache"), &reg.mirror());
    c.args(["lock", "test-images", "--images-only"]);
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("access denied") && err.contains("clawimg/tools"),
        "{err}"
    );
    // ...and served with a token obtained with the docker config.json credentials.
    for cmd in [
        &["lock", "test-images", "--images-only"][..],
        &["images", "pull", "test-images"][..],
    ] {
        let mut c = cl(&dir, &dir.join("cache"), &reg.mirror());
        c.env("DOCKER_CONFIG", &docker).args(cmd);
        let out = ok(&run(c));
        assert!(!out.contains(pass));
    }
    assert!(cached(&dir.join("cache"), &p.tools_layer));
}

/// A registry whose token realm is another host (127.0.0.2, while the registry and its
/// credentials are for 127.0.0.1) gets its token requested anonymously: the token server
/// sees no Authorization header, and the private image is refused with the reason. Trusting
/// that host explicitly sends the credentials (so the observation can see them).
#[test]
fn token_realm_on_another_host_gets_no_credentials() {
    let dir = scratch_repo("images-realm");
    let (user, pass) = ("clawrealm", "throwaway-realm-password");
    let (tport, seen) = token_server_at(&dir, user, pass, "127.0.0.2");
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.2:{tport}/token\n    service: clawimg-test\n    issuer: clawimg-test-issuer\n    rootcertbundle: {}\n",
        dir.join("token-cert.pem").display()
    );
    let reg = Registry::start_with(&dir.join("registry"), &auth);
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let config = docker.join("config.json");
    let entry = json!({"auth": base64_encode(&format!("{user}:{pass}"))});
    std::fs::write(
        &config,
        json!({"auths": {format!("127.0.0.1:{}", reg.port): entry}}).to_string(),
    )
    .unwrap();
    push_images(&reg, &dir, Some(&config));
    // skopeo's pushes are not ours to judge.
    seen.lock().unwrap().clear();

    let mut c = cl(&dir, &dir.join("cache"), &reg.mirror());
    c.env("DOCKER_CONFIG", &docker)
        .env_remove("CLAWIMG_REGISTRY_TOKEN_REALMS")
        .args(["lock", "test-images", "--images-only"]);
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("access denied")
            && err.contains("clawimg/tools")
            && err.contains("no credentials were sent")
            && err.contains("127.0.0.2"),
        "{err}"
    );
    let got = seen.lock().unwrap().clone();
    assert!(!got.is_empty(), "no token request reached the token server");
    assert!(
        got.iter().all(Option::is_none),
        "credentials went to a token service on another host: {got:?}"
    );
    assert!(!err.contains(pass));

    // Trusted explicitly: the same token server gets the credentials and the lock works.
    seen.lock().unwrap().clear();
    let mut c = cl(&dir, &dir.join("cache"), &reg.mirror());
    c.env("DOCKER_CONFIG", &docker)
        .env(
            "CLAWIMG_REGISTRY_TOKEN_REALMS",
            format!("127.0.0.1:{}=127.0.0.2", reg.port),
        )
        .args(["lock", "test-images", "--images-only"]);
    ok(&run(c));
    let expected = format!("Basic {}", base64_encode(&format!("{user}:{pass}")));
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|a| a.as_deref() == Some(expected.as_str())),
        "the trusted token service got no credentials"
    );
}

/// First run: `build --locked` on the unpinned catalog refuses (exit 2, every missing pin
/// named, nothing written, no request); `build` pins each image in place (comments kept)
/// and builds; `build --locked` then is a cache hit (the outputs are the same files).
#[test]
fn first_build_pins_the_catalog_then_a_locked_build_is_a_cache_hit() {
    let dir = scratch_repo("images-pin");
    let reg = Registry::start(&dir.join("registry"), None);
    let p = push_images(&reg, &dir, None);
    let catalog = dir.join("images/test.toml");
    let committed = std::fs::read_to_string(&catalog).unwrap().replace(
        "[tools]\nreference = \"clawimg.test/clawimg/tools:1.0\"\ndigest = \"\"\n",
        "[tools]\nreference = \"clawimg.test/clawimg/tools:1.0\"\ndigest = \"\"  # the build fills this\n",
    );
    assert!(committed.contains("# the build fills this"));
    std::fs::write(&catalog, &committed).unwrap();
    let cache = dir.join("cache");
    let build = |out: &str, locked: bool| {
        let mut c = cl(&dir, &cache, &reg.mirror());
        c.arg("build")
            .arg("test-images")
            .arg("--out")
            .arg(dir.join(out));
        if locked {
            c.arg("--locked");
        }
        run(c)
    };

    let before = reg.requests();
    let o = build("out-refused", true);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--locked")
            && err.contains("test.toml:12:1: key `busybox.digest`")
            && err.contains("key `tools.digest`"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&catalog).unwrap(), committed);
    assert!(!dir.join("out-refused").exists());
    assert!(
        !cache.join("blobs").exists()
            || std::fs::read_dir(cache.join("blobs/sha256"))
                .map(|d| d.count() == 0)
                .unwrap_or(true)
    );
    assert_eq!(reg.requests(), before, "--locked made registry requests");

    let o = build("out", false);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    for (r, d) in [
        ("clawimg.test/clawimg/busybox:1.0", &p.busybox_index),
        ("clawimg.test/clawimg/tools:1.0", &p.tools_manifest),
    ] {
        let line = format!("pinned {r}@{d} in ");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&line) && l.ends_with("test.toml")),
            "{line}:\n{err}"
        );
    }
    let pinned = committed
        .replace(
            "reference = \"clawimg.test/clawimg/busybox:1.0\"\ndigest = \"\"",
            &format!(
                "reference = \"clawimg.test/clawimg/busybox:1.0\"\ndigest = \"{}\"",
                p.busybox_index
            ),
        )
        .replace(
            "digest = \"\"  # the build fills this",
            &format!("digest = \"{}\"  # the build fills this", p.tools_manifest),
        );
    assert_eq!(std::fs::read_to_string(&catalog).unwrap(), pinned);
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/test-images/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["extra"]["images"][0]["digest"], p.busybox_index.as_str());

    let before = reg.requests();
    let o = build("out-locked", true);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("pinned "), "{err}");
    assert_eq!(std::fs::read_to_string(&catalog).unwrap(), pinned);
    assert_eq!(
        reg.requests(),
        before,
        "the locked rebuild made registry requests"
    );
    use std::os::unix::fs::MetadataExt;
    let ino = |out: &str| {
        std::fs::metadata(dir.join(out).join("test-images/test-images.raw"))
            .unwrap()
            .ino()
    };
    assert_eq!(
        ino("out-locked"),
        ino("out"),
        "the locked rebuild was not a cache hit"
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn corrupted_blob_and_wrong_digest_fail_the_build() {
    let dir = scratch_repo("images-corrupt");
    let reg = Registry::start(&dir.join("registry"), None);
    let p = push_images(&reg, &dir, None);
    lock(&dir, &reg);
    let build = |cache: &str| {
        let out = dir.join("out");
        let mut c = cl(&dir, &dir.join(cache), &reg.mirror());
        c.arg("build").arg("test-images").arg("--out").arg(&out);
        let o = run(c);
        assert!(!out.exists(), "a failed build must not create out/");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };

    // Flip bytes in the registry's stored layer: the stream no longer matches its digest.
    let f = reg.blob_file(&p.tools_layer);
    let mut data = std::fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&f, data).unwrap();
    let (code, err) = build("cache1");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("blob {} failed verification", p.tools_layer)),
        "{err}"
    );
    assert!(
        !cached(&dir.join("cache1"), &p.tools_layer),
        "a corrupted blob must not be cached"
    );

    // A digest the registry does not have fails, naming the catalog entry.
    let catalog = dir.join("images/test.toml");
    let text = std::fs::read_to_string(&catalog).unwrap();
    let wrong = sha(b"not the busybox index");
    std::fs::write(&catalog, text.replace(&p.busybox_index, &wrong)).unwrap();
    let (code, err) = build("cache2");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("test.toml:")
            && err.contains("key `busybox.digest`")
            && err.contains(&wrong)
            && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn baked_images_load_at_first_boot_without_a_registry() {
    let dir = scratch_repo("images-boot");
    let reg = Registry::start(&dir.join("registry"), None);
    let p = push_images(&reg, &dir, None);
    lock(&dir, &reg);
    let cache = dir.join("cache");
    let mut c = cl(&dir, &cache, &reg.mirror());
    c.args(["images", "pull", "test-images"]);
    ok(&run(c));

    // With everything cached the build makes no registry request.
    let before = reg.requests();
    let out = dir.join("out");
    let mut c = cl(&dir, &cache, &reg.mirror());
    c.arg("build").arg("test-images").arg("--out").arg(&out);
    ok(&run(c));
    assert_eq!(
        reg.requests(),
        before,
        "the build with a full cache made registry requests"
    );
    drop(reg);

    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("test-images/manifest.json")).unwrap(),
    )
    .unwrap();
    let imgs = m["extra"]["images"]
        .as_array()
        .expect("manifest lists the images");
    assert_eq!(imgs.len(), 2, "{imgs:?}");
    assert_eq!(imgs[0]["digest"], p.busybox_index.as_str());
    assert_eq!(imgs[0]["manifest_digest"], p.busybox_amd64.as_str());
    assert_eq!(imgs[0]["image_id"], p.busybox_config.as_str());
    assert_eq!(imgs[1]["digest"], p.tools_manifest.as_str());
    assert!(
        imgs.iter().all(|i| i["bytes"].as_u64().unwrap() > 100_000),
        "{imgs:?}"
    );

    let bb = "clawimg.test/clawimg/busybox:1.0";
    let tl = "clawimg.test/clawimg/tools:1.0";
    let j = "journalctl -b -u clawimg-images.service --no-pager";
    // Noble's docker.io 29 uses the containerd image store: the id is the pinned digest
    // and the pinned reference name:tag@digest resolves without a registry.
    let probes = [
        "systemctl is-active clawimg-images.service && test -f /var/lib/clawimg/images.loaded".to_string(),
        format!("test \"$(docker image inspect --format '{{{{.Id}}}}' {bb}@{})\" = {}", p.busybox_index, p.busybox_index),
        format!("test \"$(docker image inspect --format '{{{{.Id}}}}' {tl}@{})\" = {}", p.tools_manifest, p.tools_manifest),
        format!("docker image inspect --format '{{{{.Architecture}}}} {{{{.RootFS.Layers}}}}' {bb} | grep -x 'amd64 \\[{}\\]'", p.busybox_diff_id),
        format!("docker run --rm --network none {bb} /bin/true"),
        format!("test \"$(docker run --rm --network none {tl} cat /etc/clawimg-tools)\" = 'tools image'"),
        // Idempotent: a second run finds both images and loads nothing.
        format!("systemctl restart clawimg-images.service && {j} | grep -q 'tools: {tl} already loaded'"),
        // Tampered archive: the unit fails and the journal names the image.
        format!("docker rmi -f {tl} >/dev/null && printf X | dd of=/var/lib/clawimg/images/tools.tar bs=1 seek=5000 conv=notrunc status=none && ! systemctl restart clawimg-images.service && systemctl is-failed clawimg-images.service && ! test -e /var/lib/clawimg/images.loaded && {j} | grep 'FAILED tools ({tl})'"),
    ];
    let mut c = clawimg();
    c.arg("test")
        .arg(out.join("test-images/test-images.qcow2"))
        .args(["--firmware", "bios"]);
    for pr in &probes {
        c.arg("--probe").arg(pr);
    }
    let o = run(c);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}");
    assert!(!text.contains(" FAIL "), "{text}");
}

/// The test-images profile plus what every other writing stage adds: an sshd drop-in and a
/// sysctl file (hardening modules) and a secret slot. Only built and read, never booted.
const EXPLAIN_PROFILE: &str = r#"extends = "test-images"
description = "every stage that writes into the tree, for inspect --explain"

[image]
hostname = "clawimg-explain"

[ssh]
max_auth_tries = 3

[sysctl]
"kernel.dmesg_restrict" = 1

[secrets.api_token]
file = "/opt/demo/.env"
env = "API_TOKEN"
generate = "hex:32"

[lints.acknowledge]
firewall-inactive = "never booted: the test reads the image and its manifest only"
secret-slot-unused = "the slot exists to be explained, nothing on this image reads it"
"#;

/// `inspect --explain` names who wrote a path for the stages that used to be reported as
/// "the base stage": hardening modules, secrets and baked images (and customize and scrub).
#[test]
fn explain_names_the_module_that_wrote_each_path() {
    let dir = scratch_repo("images-explain");
    std::fs::write(dir.join("profiles/test-explain.toml"), EXPLAIN_PROFILE).unwrap();
    let reg = Registry::start(&dir.join("registry"), None);
    let pushed = push_images(&reg, &dir, None);
    lock(&dir, &reg);
    let out = dir.join("out");
    let mut c = cl(&dir, &dir.join("cache"), &reg.mirror());
    c.arg("build").arg("test-explain").arg("--out").arg(&out);
    ok(&run(c));
    drop(reg);
    let img = out.join("test-explain");

    // What the image really holds: debugfs reads the root filesystem without mounting it.
    let (off, _) = partition_range(&img, "root");
    let spec = format!("{}?offset={off}", img.join("test-explain.raw").display());
    let in_image = |path: &str| {
        let o = Command::new("debugfs")
            .args(["-R", &format!("stat {path}"), &spec])
            .output()
            .expect("run debugfs");
        let err = String::from_utf8_lossy(&o.stderr);
        o.status.success() && !err.contains("File not found")
    };
    let explain = |path: &str| {
        let mut c = clawimg();
        c.arg("inspect").arg(&img).args(["--explain", path]);
        ok(&run(c)).trim().to_string()
    };

    // Hardening modules: named per module once harden::apply reports the module of each
    // path; "module harden" until then, never the base stage.
    for (path, module) in [
        ("/etc/ssh/sshd_config.d/10-clawimg-hardening.conf", "ssh"),
        ("/etc/sysctl.d/99-clawimg.conf", "sysctl"),
    ] {
        assert!(in_image(path), "{path} is not in the image");
        let e = explain(path);
        assert!(
            e == format!("{path}: module {module}") || e == format!("{path}: module harden"),
            "{e}"
        );
    }
    // A secret slot's place: nothing there in the image, filled on the node at first boot.
    assert!(
        !in_image("/opt/demo/.env"),
        "a secret slot's file is in the image"
    );
    assert_eq!(
        explain("/opt/demo/.env"),
        "/opt/demo/.env: secret slot api_token, installed at first boot"
    );
    assert!(in_image("/usr/lib/clawimg/secrets.slots"));
    assert_eq!(
        explain("/usr/lib/clawimg/secrets.slots"),
        "/usr/lib/clawimg/secrets.slots: module secrets"
    );
    // A baked image archive and the list the loader reads.
    for (path, want) in [
        (
            "/var/lib/clawimg/images/busybox.tar",
            "module images (image busybox, clawimg.test/clawimg/busybox:1.0",
        ),
        ("/var/lib/clawimg/images/images.list", "module images"),
        ("/etc/hostname", "module customize"),
        ("/etc/machine-id", "module scrub (emptied"),
    ] {
        assert!(in_image(path), "{path} is not in the image");
        let e = explain(path);
        assert!(e.starts_with(&format!("{path}: {want}")), "{e}");
    }
    // A file no stage wrote is still the base stage's.
    assert!(explain("/usr/bin/ls").contains("base stage"));

    sbom_lists_what_the_image_holds(&img, &spec, &pushed);
}

/// The build's SBOM (CycloneDX 1.5): valid for CycloneDX's validator, named by the
/// manifest and SHA256SUMS, and listing exactly the packages dpkg has installed in the
/// image (read with debugfs) with the sha256 of the .deb files in the package store, and
/// both baked images by their pushed digests.
fn sbom_lists_what_the_image_holds(img: &Path, spec: &str, pushed: &Pushed) {
    let file = img.join("test-explain.cdx.json");
    let text = std::fs::read_to_string(&file).expect("the build wrote test-explain.cdx.json");
    cyclonedx_validate(&file).unwrap_or_else(|e| panic!("SBOM refused by the validator:\n{e}"));
    let mut broken: serde_json::Value = serde_json::from_str(&text).unwrap();
    broken["components"][0]["hashes"][0]["alg"] = "SHA-257".into();
    let bad = img.with_file_name("broken.cdx.json");
    std::fs::write(&bad, broken.to_string()).unwrap();
    assert!(
        cyclonedx_validate(&bad).is_err(),
        "validator accepted a broken SBOM"
    );

    let sum = format!("{:x}", sha2_file(&file));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(img.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["extra"]["sbom"]["file"], "test-explain.cdx.json");
    assert_eq!(m["extra"]["sbom"]["sha256"], sum.as_str());
    let sums = std::fs::read_to_string(img.join("SHA256SUMS")).unwrap();
    assert!(
        sums.contains(&format!("{sum}  test-explain.cdx.json")),
        "{sums}"
    );

    // dpkg's view of the image, read from the raw disk.
    let o = Command::new("debugfs")
        .args(["-R", "cat /var/lib/dpkg/status", spec])
        .output()
        .expect("run debugfs");
    let status = String::from_utf8_lossy(&o.stdout);
    let mut installed = std::collections::BTreeSet::new();
    for para in status.split("\n\n") {
        let field = |f: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(&format!("{f}: ")))
                .unwrap_or("")
                .to_string()
        };
        if field("Status").ends_with(" installed") {
            installed.insert((field("Package"), field("Version"), field("Architecture")));
        }
    }
    assert!(
        installed.len() > 100,
        "dpkg status not read: {}",
        installed.len()
    );

    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let comps = v["components"].as_array().unwrap();
    let mut listed = std::collections::BTreeSet::new();
    let store = package_store().join("debs");
    for c in comps.iter().filter(|c| c["type"] == "library") {
        let (name, version) = (c["name"].as_str().unwrap(), c["version"].as_str().unwrap());
        let arch = c["properties"][0]["value"].as_str().unwrap();
        let purl = c["purl"].as_str().unwrap();
        assert!(
            purl.starts_with("pkg:deb/ubuntu/")
                && purl.ends_with(&format!("?arch={arch}&distro=ubuntu-24.04")),
            "{purl}"
        );
        listed.insert((name.to_string(), version.to_string(), arch.to_string()));
        // The .deb this package came from, by the sha256 the SBOM gives, is that package.
        let sha = c["hashes"][0]["content"].as_str().unwrap();
        let deb = store.join(format!("{sha}.deb"));
        assert_eq!(format!("{:x}", sha2_file(&deb)), sha, "{}", deb.display());
        let f = Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .args(["Package", "Version", "Architecture"])
            .output()
            .expect("run dpkg-deb");
        let fields = String::from_utf8_lossy(&f.stdout);
        assert!(
            fields.contains(&format!("Package: {name}\n"))
                && fields.contains(&format!("Version: {version}\n"))
                && fields.contains(&format!("Architecture: {arch}\n")),
            "{name}: {fields}"
        );
    }
    assert_eq!(listed, installed, "SBOM packages differ from dpkg's");

    let oci: Vec<&str> = comps
        .iter()
        .filter(|c| c["type"] == "container")
        .map(|c| c["purl"].as_str().unwrap())
        .collect();
    let enc = |d: &str| d.replace(':', "%3A");
    assert_eq!(oci.len(), 2, "{oci:?}");
    assert!(
        oci.iter().any(|p| p.starts_with(&format!(
            "pkg:oci/busybox@{}?repository_url=",
            enc(&pushed.busybox_index)
        ))),
        "{oci:?}"
    );
    assert!(
        oci.iter().any(|p| p.starts_with(&format!(
            "pkg:oci/tools@{}?repository_url=",
            enc(&pushed.tools_manifest)
        ))),
        "{oci:?}"
    );
}

/// sha256 of a file.
fn sha2_file(p: &Path) -> sha2::digest::Output<sha2::Sha256> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(p).unwrap(), &mut h).unwrap();
    h.finalize()
}
