//! A real OCI registry for the tests (Debian's `docker-registry` on 127.0.0.1) and OCI image
//! layouts written by code, pushed with skopeo.

use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `docker-registry` process with its own storage, config and log.
pub struct Registry {
    child: Child,
    /// Port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl Registry {
    pub fn start(dir: &Path, htpasswd: Option<(&str, &str)>) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let mut auth = String::new();
        if let Some((user, pass)) = htpasswd {
            let hash = bcrypt::hash(pass, 5).unwrap();
            std::fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: clawimg-test\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        Registry::start_with(dir, &auth)
    }

    /// Start with an `auth:` section of the registry configuration (may be empty).
    pub fn start_with(dir: &Path, auth: &str) -> Registry {
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start docker-registry (package docker-registry)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "registry did not start: {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    pub fn mirror(&self) -> String {
        format!("clawimg.test=http://127.0.0.1:{}", self.port)
    }

    /// HTTP requests the registry served so far (its access log).
    pub fn requests(&self) -> usize {
        let log = std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
        log.lines()
            .filter(|l| {
                ["\"GET /", "\"HEAD /", "\"POST /", "\"PUT /", "\"PATCH /"]
                    .iter()
                    .any(|m| l.contains(m))
            })
            .count()
    }

    /// The registry's own file for a blob.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir.join(format!(
            "storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// An OCI image layout directory being written.
pub struct Layout(pub PathBuf);

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout(dir.to_path_buf())
    }

    pub fn blob(&self, media_type: &str, data: &[u8]) -> serde_json::Value {
        let d = sha(data);
        std::fs::write(self.0.join("blobs/sha256").join(&d[7..]), data).unwrap();
        json!({"mediaType": media_type, "digest": d, "size": data.len()})
    }

    /// A gzip layer from (path, bytes, mode) files and (path, target) symlinks; returns
    /// (descriptor, diff id).
    pub fn layer(
        &self,
        files: &[(&str, Vec<u8>, u32)],
        links: &[(&str, &str)],
    ) -> (serde_json::Value, String) {
        let mut b = tar::Builder::new(Vec::new());
        let mut dirs: Vec<String> = vec![];
        for p in files.iter().map(|f| f.0).chain(links.iter().map(|l| l.0)) {
            if let Some((d, _)) = p.rsplit_once('/') {
                if !dirs.contains(&d.to_string()) {
                    dirs.push(d.to_string());
                    let mut h = tar::Header::new_ustar();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{d}/"), std::io::empty())
                        .unwrap();
                }
            }
        }
        for (p, data, mode) in files {
            let mut h = tar::Header::new_ustar();
            h.set_mode(*mode);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, p, data.as_slice()).unwrap();
        }
        for (p, target) in links {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, p, target).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        (
            self.blob("application/vnd.oci.image.layer.v1.tar+gzip", &gz),
            sha(&tar),
        )
    }

    /// An image manifest for `arch` with these layers; returns its descriptor.
    pub fn image(&self, arch: &str, layers: &[(serde_json::Value, String)]) -> serde_json::Value {
        self.image_with(
            arch,
            layers,
            json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}),
        )
    }

    /// An image manifest with this runtime config (`Entrypoint`, `Cmd`, `Env`...).
    pub fn image_with(
        &self,
        arch: &str,
        layers: &[(serde_json::Value, String)],
        runtime: serde_json::Value,
    ) -> serde_json::Value {
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>()},
        });
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            config.to_string().as_bytes(),
        );
        let manifest = json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
        });
        let mut d = self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            manifest.to_string().as_bytes(),
        );
        d["platform"] = json!({"os": "linux", "architecture": arch});
        d
    }

    pub fn index(&self, manifests: &[serde_json::Value]) -> serde_json::Value {
        let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        self.blob(
            "application/vnd.oci.image.index.v1+json",
            idx.to_string().as_bytes(),
        )
    }

    pub fn tag(&self, top: &serde_json::Value, tag: &str) {
        let mut d = top.clone();
        d.as_object_mut().unwrap().remove("platform");
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let idx = json!({"schemaVersion": 2, "manifests": [d]});
        std::fs::write(self.0.join("index.json"), idx.to_string()).unwrap();
    }
}

/// Run a host tool; panics with its output when it fails.
pub fn tool(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("run tool");
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}
