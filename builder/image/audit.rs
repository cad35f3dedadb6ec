//! The no-secrets audit: reads the *finished* root filesystem straight out of the disk image
//! (read-only ext4 reader, no mount, no extraction), the files of the ESP, and every layer
//! of the container archives baked into the image, and reports anything secret or
//! node-specific. Runs at the end of every build and as `clawimg audit IMAGE`. The content
//! rules are in [`crate::image::scan`].
//!
//! Nothing is skipped silently: what could not be scanned is listed with the reason.
//! Findings name the path and the rule, never the matched bytes.

use crate::error::{Error, Result};
use crate::image::scan::{parse_slots, Rules, SLOTS_PATH};
use crate::profile::secrets::SecretsFile;
use ext4_view::{Ext4, Ext4Read, PathBuf as ExtPath};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// History files removed from /root and /home/* by the scrub; the audit refuses an image that still has one.
pub const HISTORY: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".python_history",
    ".lesshst",
    ".viminfo",
    ".mysql_history",
    ".psql_history",
    ".wget-hsts",
];

/// Partition type GUID of the root ("Linux root x86-64").
pub const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
/// Partition type GUID of the EFI system partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Where the node mounts the ESP (findings in it are named by this path).
pub const ESP_MOUNT: &str = "/boot/efi";
/// Directory of the baked container archives (`build::images::IMAGES_DIR`).
pub const IMAGES_DIR: &str = "/var/lib/clawimg/images";

/// One thing the audit found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Path inside the root filesystem.
    pub path: String,
    /// Rule that fired: `private-key`, `ssh-host-key`, `machine-id`, `token-shape`, `jwt`,
    /// `credentials`, `env-hex-token`, `secret-slot`, `secret-value` or `node-state`.
    pub rule: &'static str,
    /// What kind of thing it is (never the value).
    pub what: String,
}

/// The audit's result.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Findings, sorted by path.
    pub findings: Vec<Finding>,
    /// Regular files whose contents were scanned (root filesystem, ESP, archive layers).
    pub files_scanned: u64,
    /// What could not be scanned: (path, why).
    pub skipped: Vec<(String, String)>,
}

impl Report {
    /// One line per finding.
    pub fn render(&self) -> String {
        self.findings
            .iter()
            .map(|f| format!("  {:<14} {}  ({})\n", f.rule, f.path, f.what))
            .collect()
    }

    /// One line per thing not scanned, with the reason.
    pub fn render_skipped(&self) -> String {
        self.skipped
            .iter()
            .map(|(p, why)| format!("  not scanned    {p}  ({why})\n"))
            .collect()
    }
}

/// A byte range of a file (the root partition of a disk image).
struct Range {
    file: std::fs::File,
    offset: u64,
}

impl Ext4Read for Range {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.file.seek(SeekFrom::Start(self.offset + start))?;
        self.file.read_exact(dst)?;
        Ok(())
    }
}

/// Node state by path alone (no contents needed).
fn node_state(path: &str, len: u64) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or("");
    if path.starts_with("/etc/ssh/") && name.starts_with("ssh_host_") {
        return None; // its own rule
    }
    if path == "/var/lib/systemd/random-seed" || path == "/var/lib/random-seed" {
        return Some("random seed");
    }
    if path == "/var/lib/systemd/credential.secret" {
        return Some("systemd credential host secret");
    }
    if (path.starts_with("/var/lib/dhcp/")
        || path.starts_with("/var/lib/dhclient/")
        || path.starts_with("/var/lib/systemd/network/"))
        && (name.contains("lease"))
    {
        return Some("DHCP lease");
    }
    if (path.starts_with("/root/") || path.starts_with("/home/")) && HISTORY.contains(&name) {
        return Some("shell or tool history");
    }
    if path.starts_with("/var/lib/apt/lists/")
        && name != "lock"
        && !path.starts_with("/var/lib/apt/lists/partial/")
    {
        return Some("apt package list");
    }
    if path.starts_with("/var/cache/apt/") && (name.ends_with(".bin") || name.ends_with(".deb")) {
        return Some("apt cache");
    }
    if path.starts_with("/var/log/") && len > 0 {
        return Some("log file");
    }
    None
}

/// Path → md5 of every file dpkg installed, from `/var/lib/dpkg/info/*.md5sums`.
fn package_md5sums(fs: &Ext4) -> std::collections::HashMap<String, String> {
    let mut map = std::collections::HashMap::new();
    let Ok(rd) = fs.read_dir("/var/lib/dpkg/info") else {
        return map;
    };
    for ent in rd.flatten() {
        let p = ent.path();
        if !p.display().to_string().ends_with(".md5sums") {
            continue;
        }
        let Ok(text) = fs.read(&p) else { continue };
        for line in String::from_utf8_lossy(&text).lines() {
            if let Some((sum, path)) = line.split_once("  ") {
                map.insert(
                    format!("/{}", path.trim_start_matches('/')),
                    sum.to_string(),
                );
            }
        }
    }
    map
}

/// Open the root ext4 filesystem inside a raw disk image (one reader per thread: the
/// reader is not `Send`).
fn open_root(raw: &Path, offset: u64) -> Result<Ext4> {
    let file =
        std::fs::File::open(raw).map_err(|e| Error::config(format!("{}: {e}", raw.display())))?;
    Ext4::load(Box::new(Range { file, offset })).map_err(|e| {
        Error::failed(format!(
            "{}: cannot read the root ext4 filesystem: {e}",
            raw.display()
        ))
    })
}

fn ext_err(p: &ExtPath, e: ext4_view::Ext4Error) -> Error {
    Error::failed(format!("audit: {}: {e}", p.display()))
}

/// Whether a root filesystem file is an archive whose entries (and layers) are walked.
fn is_archive(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    (path.starts_with(IMAGES_DIR) && name.ends_with(".tar"))
        || [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Audit a raw disk image: one walk of the root filesystem for the rules that need only
/// paths, then the contents of its regular files (container archives layer by layer),
/// split over the cores, then the files of the ESP.
pub fn audit_image(raw: &Path, secrets: Option<&SecretsFile>) -> Result<Report> {
    let root = crate::image::layout::find_partition(raw, ROOT_TYPE)?;
    let offset = root.extent.offset();
    let fs = open_root(raw, offset)?;
    let mut report = Report::default();
    // Regular files whose contents are scanned.
    let mut files: Vec<(ExtPath, String)> = vec![];
    let mut stack = vec![ExtPath::new("/")];
    while let Some(dir) = stack.pop() {
        for ent in fs.read_dir(&dir).map_err(|e| ext_err(&dir, e))? {
            let ent = ent.map_err(|e| ext_err(&dir, e))?;
            let name = ent.file_name();
            if name.as_ref() == b"." || name.as_ref() == b".." {
                continue;
            }
            let p = ent.path();
            let ps = p.display().to_string();
            let ft = ent.file_type().map_err(|e| ext_err(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let mut add = |rule: &'static str, what: &str| {
                report.findings.push(Finding {
                    path: ps.clone(),
                    rule,
                    what: what.to_string(),
                })
            };
            if ps.starts_with("/etc/ssh/")
                && ps.rsplit('/').next().unwrap_or("").starts_with("ssh_host_")
            {
                add(
                    "ssh-host-key",
                    "SSH host key (each node makes its own on first boot)",
                );
            }
            if !ft.is_regular_file() {
                continue;
            }
            let md = ent.metadata().map_err(|e| ext_err(&p, e))?;
            if let Some(what) = node_state(&ps, md.len()) {
                add("node-state", what);
            }
            if md.len() > 0 {
                files.push((p, ps));
            }
        }
    }
    // The image's own slot table: each slot's destination and value format.
    let slots = fs
        .read(SLOTS_PATH)
        .map(|b| parse_slots(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    drop(fs);
    // Archives first: the longest jobs start early.
    files.sort_by_key(|(_, ps)| !is_archive(ps));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let rules = Rules::new(secrets, &slots);
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Part = (Vec<Finding>, Vec<(String, String)>, u64);
    let scanned: Vec<Result<Part>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (files, rules, next) = (&files, &rules, &next);
                s.spawn(move || {
                    let fs = open_root(raw, offset)?;
                    let shipped = std::cell::OnceCell::new();
                    let mut part: Part = (vec![], vec![], 0);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((p, ps)) = files.get(i) else { break };
                        scan_file(&fs, p, ps, rules, &shipped, &mut part)?;
                    }
                    Ok(part)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::failed("an audit thread panicked")))
            })
            .collect()
    });
    for r in scanned {
        let (found, skipped, n) = r?;
        report.findings.extend(found);
        report.skipped.extend(skipped);
        report.files_scanned += n;
    }
    scan_esp(raw, &rules, &mut report)?;
    report
        .findings
        .sort_by(|a, b| (&a.path, a.rule).cmp(&(&b.path, b.rule)));
    report.skipped.sort();
    Ok(report)
}

/// The files of the ESP, named by where the node mounts them. mtools reads the FAT (no
/// mount); the partition is copied out first (mtools misreads FAT32 at an offset).
fn scan_esp(raw: &Path, rules: &Rules, report: &mut Report) -> Result<()> {
    use crate::support::{exec, tools};
    let Ok(esp) = crate::image::layout::find_partition(raw, ESP_TYPE) else {
        report.skipped.push((
            ESP_MOUNT.into(),
            "the image has no EFI system partition".into(),
        ));
        return Ok(());
    };
    tools::check(tools::AUDIT)?;
    let work = tempfile::tempdir().map_err(|e| Error::failed(format!("audit: temp dir: {e}")))?;
    let img = work.path().join("esp.img");
    let io = |what: &str, e: std::io::Error| Error::failed(format!("audit: ESP {what}: {e}"));
    {
        let mut f = std::fs::File::open(raw).map_err(|e| io("open", e))?;
        f.seek(SeekFrom::Start(esp.extent.offset()))
            .map_err(|e| io("seek", e))?;
        let mut out = std::fs::File::create(&img).map_err(|e| io("copy", e))?;
        std::io::copy(&mut f.take(esp.extent.bytes()), &mut out).map_err(|e| io("copy", e))?;
    }
    let dest = work.path().join("files");
    std::fs::create_dir(&dest).map_err(|e| io("copy", e))?;
    let sh = exec::shell()?;
    exec::run(
        sh.cmd("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-s", "-n", "-i"])
            .arg(&img)
            .arg("::/")
            .arg(&dest),
    )?;
    for ent in walkdir::WalkDir::new(&dest).sort_by_file_name() {
        let ent = ent.map_err(|e| Error::failed(format!("audit: ESP: {e}")))?;
        if !ent.file_type().is_file() {
            continue;
        }
        let rel = ent.path().strip_prefix(&dest).unwrap_or(ent.path());
        let path = format!("{ESP_MOUNT}/{}", rel.display());
        let f = std::fs::File::open(ent.path()).map_err(|e| io("read", e))?;
        let s = rules.scan_reader(&path, f).map_err(|e| io("read", e))?;
        report.files_scanned += 1;
        report.findings.extend(s.hits.into_iter().map(|h| Finding {
            path: path.clone(),
            rule: h.rule,
            what: h.what,
        }));
    }
    Ok(())
}

/// The content rules on one regular file (archives entry by entry, layer by layer).
fn scan_file(
    fs: &Ext4,
    p: &ExtPath,
    ps: &str,
    rules: &Rules,
    shipped: &std::cell::OnceCell<std::collections::HashMap<String, String>>,
    (found, skipped, files): &mut (Vec<Finding>, Vec<(String, String)>, u64),
) -> Result<()> {
    let open = || fs.open(p).map_err(|e| ext_err(p, e));
    let io = |e: std::io::Error| Error::failed(format!("audit: {ps}: {e}"));
    // A file exactly as its Ubuntu package ships it is public (e.g. a TLS library's
    // built-in test key); shape rules only judge what the build made or changed. The md5
    // is taken only for a file a shape rule matched (almost none).
    let from_package = |md5: &Option<String>| {
        md5.as_ref().is_some_and(|m| {
            shipped
                .get_or_init(|| package_md5sums(fs))
                .get(ps)
                .is_some_and(|sum| sum == m)
        })
    };
    // The build's own archives (baked images) are walked entry by entry and layer by
    // layer; a packaged archive is the package's, scanned flat like any file.
    let packaged = || shipped.get_or_init(|| package_md5sums(fs)).contains_key(ps);
    if is_archive(ps) && !packaged() {
        let a = rules.scan_archive(ps, open()?);
        *files += a.files;
        found.extend(a.hits.into_iter().map(|(path, h)| Finding {
            path,
            rule: h.rule,
            what: h.what,
        }));
        let broken = !a.skipped.is_empty();
        skipped.extend(a.skipped);
        if !broken {
            return Ok(());
        }
        // What the walk could not read is at least scanned as raw bytes below.
    }
    let mut s = rules.scan_reader(ps, open()?).map_err(io)?;
    *files += 1;
    let md5 = s.md5.clone();
    s.exempt(from_package(&md5));
    if (ps == "/etc/machine-id" || ps == "/var/lib/dbus/machine-id")
        && !fs
            .read(p)
            .map_err(|e| ext_err(p, e))?
            .trim_ascii()
            .is_empty()
    {
        found.push(Finding {
            path: ps.to_string(),
            rule: "machine-id",
            what: "non-empty machine-id (must be empty: systemd makes one per node)".into(),
        });
    }
    // A usable password hash is a secret like any other: console passwords reach a node
    // through a secret slot at first boot, never through the image.
    if ps == "/etc/shadow" || ps == "/etc/gshadow" {
        for user in with_password_hash(&fs.read(p).map_err(|e| ext_err(p, e))?) {
            found.push(Finding {
                path: ps.to_string(),
                rule: "password-hash",
                what: format!("usable password hash for `{user}` (set it per node with a `password_of` secret slot)"),
            });
        }
    }
    found.extend(s.hits.into_iter().map(|h| Finding {
        path: ps.to_string(),
        rule: h.rule,
        what: h.what,
    }));
    Ok(())
}

/// Accounts of a shadow file whose password field holds a crypt hash (not `!`, `*` or empty).
fn with_password_hash(shadow: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(shadow)
        .lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let user = f.next()?;
            f.next()?.starts_with('$').then(|| user.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_hashes_are_found_locked_accounts_are_not() {
        let s = b"root:*:19000:0:99999:7:::\nadminclaw:!:19000::::::\nopenclaw:$y$j9T$abc$def:19000::::::\nx::1::::::\n";
        assert_eq!(with_password_hash(s), vec!["openclaw".to_string()]);
    }

    #[test]
    fn node_state_paths() {
        assert_eq!(
            node_state("/var/lib/systemd/random-seed", 512),
            Some("random seed")
        );
        assert_eq!(
            node_state("/root/.bash_history", 3),
            Some("shell or tool history")
        );
        assert_eq!(node_state("/var/lib/apt/lists/lock", 0), None);
        assert_eq!(node_state("/var/log/syslog", 10), Some("log file"));
        assert_eq!(node_state("/var/log/README", 0), None);
        assert_eq!(node_state("/etc/hostname", 10), None);
    }

    /// Run a host tool the test needs (all are in .ci/setup).
    fn run(cmd: &mut std::process::Command) {
        let o = cmd
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            o.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// A GPT disk with an ESP (FAT, one file) and a root partition (ext4 made from a tree
    /// with planted secrets and a baked image archive), audited end to end.
    #[test]
    fn audit_names_planted_secrets_in_root_esp_and_container_layers() {
        use crate::image::scan::tests::{jwt, oci_archive, PGP, TELEGRAM};
        use std::process::Command;
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        let put = |p: &str, data: &[u8]| {
            let f = tree.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, data).unwrap();
        };
        let (archive, blobs) = oci_archive();
        put(
            "etc/bot.conf",
            format!("TELEGRAM_BOT_TOKEN={TELEGRAM}\n").as_bytes(),
        );
        put("root/.gnupg/backup.asc", PGP.as_bytes());
        put("opt/app/session", format!("{}\n", jwt()).as_bytes());
        put("opt/app/app.conf", b"port = 8080\n");
        put("var/lib/clawimg/images/app.tar", &archive);
        put(
            &SLOTS_PATH[1..],
            b"# slots\ngateway_token|/opt/demo/.env|GATEWAY_TOKEN|root|root|0600|hex:32\n",
        );
        put(
            "etc/demo.conf",
            format!("GATEWAY_TOKEN={}\n", "ab".repeat(32)).as_bytes(),
        );
        let root_img = t.path().join("root.img");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-d"])
            .arg(&tree)
            .arg(&root_img)
            .arg("16M"));
        let esp_img = t.path().join("esp.img");
        run(Command::new("mkfs.vfat")
            .arg("-C")
            .arg(&esp_img)
            .arg("2048"));
        let cfg = t.path().join("grub.cfg");
        std::fs::write(&cfg, "set key=sk_live_51H8abcdefghijklmnopqrstuv\n").unwrap();
        run(Command::new("mmd")
            .arg("-i")
            .arg(&esp_img)
            .args(["::/EFI", "::/EFI/BOOT"]));
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&esp_img)
            .arg(&cfg)
            .arg("::/EFI/BOOT/grub.cfg"));
        // GPT: ESP at 1 MiB (2 MiB), root at 3 MiB (16 MiB).
        let disk = t.path().join("disk.raw");
        let f = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&disk)
            .unwrap();
        f.set_len(20 << 20).unwrap();
        let mut g = gpt::GptConfig::new()
            .writable(true)
            .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
            .create_from_device(f.try_clone().unwrap(), None)
            .unwrap();
        let part = |ty: &str, first: u64, mib: u64| gpt::partition::Partition {
            part_type_guid: gpt::partition_types::Type {
                guid: ty.parse().unwrap(),
                os: gpt::partition_types::OperatingSystem::None,
            },
            part_guid: uuid::Uuid::new_v4(),
            first_lba: first * 2048,
            last_lba: (first + mib) * 2048 - 1,
            flags: 0,
            name: "p".into(),
        };
        g.update_partitions(
            [(1, part(ESP_TYPE, 1, 2)), (2, part(ROOT_TYPE, 3, 16))]
                .into_iter()
                .collect(),
        )
        .unwrap();
        g.write().unwrap();
        for (img, off) in [(&esp_img, 1u64 << 20), (&root_img, 3 << 20)] {
            let data = std::fs::read(img).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&f, &data, off).unwrap();
        }
        drop(f);

        let r = audit_image(&disk, None).unwrap();
        let got: Vec<(&str, &str)> = r
            .findings
            .iter()
            .map(|f| (f.path.as_str(), f.rule))
            .collect();
        let img = "/var/lib/clawimg/images/app.tar";
        let l1 = format!("{img}!{}!/etc/bot.conf", blobs[0]);
        let l2 = format!("{img}!{}!/app/session.txt", blobs[1]);
        assert_eq!(
            got,
            vec![
                ("/boot/efi/EFI/BOOT/grub.cfg", "token-shape"),
                ("/etc/bot.conf", "token-shape"),
                ("/etc/demo.conf", "secret-slot"),
                ("/opt/app/session", "jwt"),
                ("/root/.gnupg/backup.asc", "private-key"),
                (l1.as_str(), "token-shape"),
                (l2.as_str(), "jwt"),
            ],
            "{}",
            r.render()
        );
        assert_eq!(r.skipped.len(), 1, "{}", r.render_skipped());
        assert!(r.skipped[0].0.ends_with(&blobs[2]) && r.skipped[0].1.contains("xz"));
        assert!(!r.render().contains("AAHfiqks"), "values never printed");
    }
}
