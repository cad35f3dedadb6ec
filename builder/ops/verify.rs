//! `clawimg verify IMAGE --against ssh://[user@]host[:port]`: drift between a running node and
//! the image it was flashed from. One SSH round trip gathers the node's installed packages,
//! its file tree under /etc, /usr and /opt (hashed on the node), the state of the units the
//! image enables, and the ids of the container images it bakes; the host compares them with
//! the manifest and `files.tsv`. Paths that differ per node by design are declared by the
//! image (`extra.verify.node_local`, derived at build time from the modules that create
//! them), never hard-coded here.

use crate::error::{Error, Result};
use crate::image::expect::{enabled_link, in_scope, Expectations, NodeLocal, CREDENTIAL_KEYS};
use crate::image::files::{FileEntry, FILE_LIST};
use crate::image::manifest::Manifest;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn glob_set(list: &[NodeLocal]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for n in list {
        let g = GlobBuilder::new(&n.path)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::config(format!("manifest: node-local path {}: {e}", n.path)))?;
        b.add(g);
    }
    b.build()
        .map_err(|e| Error::config(format!("manifest: node-local paths: {e}")))
}
/// `ssh://[user@]host[:port]` (a trailing `/` is allowed) as destination and port.
pub fn parse_node(s: &str) -> Result<(String, Option<u16>)> {
    let what = format!("--against {s}");
    let authority = s
        .strip_prefix("ssh://")
        .ok_or_else(|| Error::config(format!("{what}: expected ssh://[user@]host[:port]")))?
        .trim_end_matches('/');
    if authority.contains('/') {
        return Err(Error::config(format!(
            "{what}: expected ssh://[user@]host[:port] without a path"
        )));
    }
    crate::support::ssh::parse_authority(&what, authority)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script the node runs (as root, through `sudo -n` for another user). Sections are
/// framed by `\0@@NAME\0`; paths never contain NUL. `root` is `/` on a node; a test points
/// it at a tree (every path the script prints then starts with it).
fn script(x: &Expectations, image_refs: &[String], root: &str) -> String {
    let root = root.trim_end_matches('/');
    // Scope entries may hold `*` (one component): expanded by the shell, so unquoted.
    let scope: Vec<String> = x
        .scope
        .iter()
        .map(|s| {
            let parts: Vec<String> = s
                .split('/')
                .map(|c| match c {
                    "*" => "*".to_string(),
                    "" => String::new(),
                    c => quote(c),
                })
                .collect();
            format!("\"$R\"{}", parts.join("/"))
        })
        .collect();
    // find's -path `*` also matches `/`: pruning a little more only skips hashing.
    let prune: Vec<String> = x
        .node_local
        .iter()
        .map(|n| format!("-path \"$R\"{}", quote(&n.path.replace("**", "*"))))
        .collect();
    let prune = if prune.is_empty() {
        String::new()
    } else {
        format!("\\( {} \\) -prune -o", prune.join(" -o "))
    };
    let units: Vec<String> = x.enabled_units.iter().map(|u| quote(u)).collect();
    let refs: Vec<String> = image_refs.iter().map(|r| quote(r)).collect();
    format!(
        r#"export LC_ALL=C
R={root}
sec() {{ printf '\0@@%s\0' "$1"; }}
# The real directory of the root, to skip scope entries reached through a symlink.
RR=$(cd "$R/" && pwd -P); [ "$RR" = / ] && RR=
add() {{
  [ -d "$1" ] && [ ! -L "$1" ] || return 0
  [ "$(cd "$1" && pwd -P)" = "$RR${{1#"$R"}}" ] || return 0
  case "
$dirs" in *"
$1
"*) return 0 ;; esac
  dirs="$dirs$1
"
}}
dirs=
for d in {scope}; do add "$d"; done
# .ssh and user units of every home the node's own passwd names.
for h in $(cut -d: -f6 "$R/etc/passwd" 2>/dev/null); do
  case $h in /*) ;; *) continue ;; esac
  h=${{h%/}}
  add "$R$h/.ssh"; add "$R$h/.config/systemd"
done
IFS='
'
set -f
set -- $dirs
set +f
unset IFS
[ $# -gt 0 ] || set -- /nonexistent-scope
sec packages
dpkg-query -W -f '${{db:Status-Abbrev}}\t${{Package}}\t${{Version}}\t${{Architecture}}\n'
sec units
for u in {units}; do printf '%s\t%s\n' "$u" "$(systemctl is-enabled "$u" 2>/dev/null)"; done
sec images
for r in {refs}; do
  if command -v docker >/dev/null 2>&1; then
    printf '%s\t%s\n' "$r" "$(docker image inspect --format '{{{{.Id}}}}' "$r" 2>/dev/null)"
  else printf '%s\t%s\n' "$r" 'no docker'; fi
done
sec credential
c="$R/run/credentials/@system/ssh.authorized_keys.root"
[ -f "$c" ] && sha256sum < "$c" | cut -d' ' -f1
sec list
find "$@" -xdev -printf '%y %m %U %G %s\0%p\0%l\0'
sec hash
find "$@" -xdev {prune} -type f -print0 | xargs -0 -r sha256sum -z --
sec end
"#,
        root = quote(root),
        scope = scope.join(" "),
        units = units.join(" "),
        refs = refs.join(" "),
    )
}

/// What the node reported.
#[derive(Debug, Default)]
struct NodeState {
    packages: BTreeMap<String, (String, String)>,
    units: BTreeMap<String, String>,
    images: BTreeMap<String, String>,
    /// sha256 of the system credential `ssh.authorized_keys.root`, when the node has one.
    credential: Option<String>,
    files: BTreeMap<String, NodeFile>,
}

#[derive(Debug, Clone)]
struct NodeFile {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    digest: Option<String>,
}

/// Parse what the script printed; `root` (the script's root, `/` on a node) is taken off
/// every path.
fn parse_output(out: &[u8], root: &str) -> Result<NodeState> {
    let root = root.trim_end_matches('/');
    let strip = |p: &[u8]| -> String {
        let p = String::from_utf8_lossy(p);
        match p.strip_prefix(root) {
            Some(r) if !root.is_empty() && r.starts_with('/') => r.to_string(),
            Some("") if !root.is_empty() => "/".to_string(),
            _ => p.into_owned(),
        }
    };
    let bad = |what: &str| Error::failed(format!("node output: {what}"));
    let mut sections: BTreeMap<String, &[u8]> = BTreeMap::new();
    let mut rest = out;
    let marker = b"\0@@";
    // Skip anything printed before the first section (a login banner).
    let Some(start) = find(rest, marker) else {
        return Err(bad("no sections (did the script run?)"));
    };
    rest = &rest[start..];
    while let Some(rest2) = rest.strip_prefix(marker) {
        let end = find(rest2, b"\0").ok_or_else(|| bad("unterminated section name"))?;
        let name = String::from_utf8_lossy(&rest2[..end]).into_owned();
        let body = &rest2[end + 1..];
        let next = find(body, marker).unwrap_or(body.len());
        sections.insert(name, &body[..next]);
        rest = &body[next..];
    }
    if !sections.contains_key("end") {
        return Err(bad("truncated (no end section)"));
    }
    let text = |s: &str| String::from_utf8_lossy(sections.get(s).copied().unwrap_or(b""));
    let mut st = NodeState::default();
    for l in text("packages").lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() == 4 && f[0].starts_with("ii") {
            st.packages.insert(
                format!("{}:{}", f[1], f[3]),
                (f[2].to_string(), f[3].into()),
            );
        }
    }
    for (sec, map) in [("units", &mut st.units), ("images", &mut st.images)] {
        for l in text(sec).lines() {
            if let Some((k, v)) = l.split_once('\t') {
                map.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    st.credential = Some(text("credential").trim().to_string()).filter(|c| c.len() == 64);
    let list = sections.get("list").copied().unwrap_or(b"");
    let mut fields = list.split(|&b| b == 0);
    while let (Some(meta), Some(path), Some(link)) = (fields.next(), fields.next(), fields.next()) {
        let meta = String::from_utf8_lossy(meta);
        let m: Vec<&str> = meta.split(' ').collect();
        if m.len() != 5 {
            continue;
        }
        let kind = m[0].chars().next().unwrap_or('?');
        let digest = (kind == 'l').then(|| hex::encode(Sha256::digest(link)));
        st.files.insert(
            strip(path),
            NodeFile {
                kind,
                mode: u32::from_str_radix(m[1], 8).map_err(|_| bad("mode"))?,
                uid: m[2].parse().map_err(|_| bad("uid"))?,
                gid: m[3].parse().map_err(|_| bad("gid"))?,
                digest,
            },
        );
    }
    let hashes = sections.get("hash").copied().unwrap_or(b"");
    for rec in hashes.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let rec = String::from_utf8_lossy(rec);
        if let Some((h, p)) = rec.split_once("  ") {
            if let Some(f) = st.files.get_mut(&strip(p.as_bytes())) {
                f.digest = Some(h.to_string());
            }
        }
    }
    Ok(st)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How an item differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Present on both sides, not the same.
    Changed,
    /// In the image, not on the node.
    Missing,
    /// On the node, not in the image.
    Added,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// `packages`, `files`, `units` or `images`.
    pub category: &'static str,
    /// How it differs.
    pub change: Change,
    /// Package, path, unit or image reference.
    pub item: String,
    /// Image value -> node value.
    pub detail: String,
}

/// The comparison.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Items compared per category.
    pub checked: Vec<(&'static str, usize)>,
    /// Node paths skipped as node-local.
    pub node_local_skipped: usize,
    /// Every difference, by category, then by name.
    pub drift: Vec<Drift>,
}

impl Report {
    /// The report as text: a summary per category, then one line per difference.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (cat, n) in &self.checked {
            let count = |c: Change| {
                self.drift
                    .iter()
                    .filter(|d| d.category == *cat && d.change == c)
                    .count()
            };
            s.push_str(&format!(
                "  {cat:<9} {n:>6} checked: {} changed, {} missing, {} added\n",
                count(Change::Changed),
                count(Change::Missing),
                count(Change::Added)
            ));
        }
        s.push_str(&format!(
            "  node-local paths skipped: {}\n",
            self.node_local_skipped
        ));
        for d in &self.drift {
            let c = match d.change {
                Change::Changed => "changed",
                Change::Missing => "missing",
                Change::Added => "added",
            };
            s.push_str(&format!("{c:<8} {:<9} {}", d.category, d.item));
            if !d.detail.is_empty() {
                s.push_str(&format!("  ({})", d.detail));
            }
            s.push('\n');
        }
        s
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

fn compare(
    m: &Manifest,
    x: &Expectations,
    image_files: &[FileEntry],
    images: &[(String, Vec<String>)],
    st: &NodeState,
) -> Result<Report> {
    let mut r = Report::default();
    let mut push = |category, change, item: &str, detail: String| {
        r.drift.push(Drift {
            category,
            change,
            item: item.to_string(),
            detail,
        })
    };
    // Packages, by name:arch.
    let want: BTreeMap<String, &crate::support::dpkg::Package> = m
        .packages
        .iter()
        .map(|p| (format!("{}:{}", p.name, p.arch), p))
        .collect();
    for (k, p) in &want {
        match st.packages.get(k) {
            None => push("packages", Change::Missing, k, p.version.clone()),
            Some((v, _)) if *v != p.version => push(
                "packages",
                Change::Changed,
                k,
                format!("{} -> {v}", p.version),
            ),
            _ => {}
        }
    }
    for (k, (v, _)) in &st.packages {
        if !want.contains_key(k) {
            push("packages", Change::Added, k, v.clone());
        }
    }
    // Files.
    let local = glob_set(&x.node_local)?;
    let mut skipped = 0;
    let mut expected: BTreeMap<&str, &FileEntry> = BTreeMap::new();
    for e in image_files {
        if in_scope(&e.path, &x.scope) && !local.is_match(&e.path) {
            expected.insert(&e.path, e);
        }
    }
    for (p, e) in &expected {
        let Some(n) = st.files.get(*p) else {
            push("files", Change::Missing, p, String::new());
            continue;
        };
        let mut what = vec![];
        if n.kind != e.kind {
            what.push(format!("type {} -> {}", e.kind, n.kind));
        } else if matches!(e.kind, 'f' | 'l') && n.digest.as_deref() != Some(e.digest.as_str()) {
            what.push(format!(
                "{} {} -> {}",
                if e.kind == 'l' {
                    "link target"
                } else {
                    "sha256"
                },
                short(&e.digest),
                n.digest.as_deref().map(short).unwrap_or("unreadable")
            ));
        }
        // Link permissions mean nothing on Linux.
        if e.kind != 'l' && n.kind == e.kind && n.mode != e.mode {
            what.push(format!("mode {:04o} -> {:04o}", e.mode, n.mode));
        }
        if (n.uid, n.gid) != (e.uid, e.gid) {
            what.push(format!("owner {}:{} -> {}:{}", e.uid, e.gid, n.uid, n.gid));
        }
        if !what.is_empty() {
            push("files", Change::Changed, p, what.join(", "));
        }
    }
    // Root's key file as systemd provisioned it from the credential the node was booted
    // with (and the directory made for it): the operator's own key, delivered per node.
    let provisioned = |p: &str, f: &NodeFile| {
        st.credential.is_some()
            && ((p == CREDENTIAL_KEYS && f.digest == st.credential)
                || (f.kind == 'd' && Path::new(CREDENTIAL_KEYS).parent() == Some(Path::new(p))))
    };
    for (p, f) in &st.files {
        if expected.contains_key(p.as_str()) {
            continue;
        }
        if local.is_match(p) || provisioned(p, f) {
            skipped += 1;
        } else {
            push("files", Change::Added, p, String::new());
        }
    }
    // Units: every link the image makes still enables its unit; new links are additions.
    for u in &x.enabled_units {
        let got = st.units.get(u).map(String::as_str).unwrap_or("");
        if !matches!(got, "enabled" | "enabled-runtime" | "alias") {
            let got = if got.is_empty() { "not-found" } else { got };
            push("units", Change::Changed, u, format!("enabled -> {got}"));
        }
    }
    let want_units: BTreeSet<&str> = x.enabled_units.iter().map(String::as_str).collect();
    let node_units: BTreeSet<String> = st
        .files
        .iter()
        .filter(|(p, f)| f.kind == 'l' && !local.is_match(p))
        .filter_map(|(p, _)| enabled_link(p))
        .collect();
    for u in &node_units {
        if !want_units.contains(u.as_str()) {
            push("units", Change::Added, u, "enabled on the node".into());
        }
    }
    // Container images: the id docker reports for each baked reference (the config digest
    // in Docker's classic store, the manifest or pinned digest in the containerd store).
    for (reference, ids) in images {
        let id = ids.first().cloned().unwrap_or_default();
        match st.images.get(reference).map(String::as_str) {
            Some(got) if ids.iter().any(|i| i == got) => {}
            Some("") | None => push("images", Change::Missing, reference, id),
            Some(got) => push(
                "images",
                Change::Changed,
                reference,
                format!("{id} -> {got}"),
            ),
        }
    }
    r.checked = vec![
        ("packages", want.len()),
        ("files", expected.len()),
        ("units", x.enabled_units.len()),
        ("images", images.len()),
    ];
    r.node_local_skipped = skipped;
    Ok(r)
}

fn image_dir(image: &Path) -> PathBuf {
    if image.is_dir() {
        image.to_path_buf()
    } else {
        image.parent().unwrap_or(Path::new(".")).to_path_buf()
    }
}

/// Load what the image promises: manifest, its `verify` section and `files.tsv`.
fn load(image: &Path) -> Result<(Manifest, Expectations, Vec<FileEntry>)> {
    let m = Manifest::read(image)?;
    let x: Expectations = match &m.extra.verify {
        Some(x) => x.clone(),
        None => {
            return Err(Error::config(format!(
                "{}: the manifest has no `verify` section (built by an older clawimg): rebuild the image",
                image.display()
            )))
        }
    };
    let list = image_dir(image).join(FILE_LIST);
    let text = std::fs::read_to_string(&list)
        .map_err(|e| Error::config(format!("cannot read {}: {e}", list.display())))?;
    let files = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            FileEntry::parse(l)
                .ok_or_else(|| Error::config(format!("{}: bad line {l:?}", list.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((m, x, files))
}

/// Compare the node reached at `against` (`ssh://[user@]host[:port]`) with `image`.
pub fn verify(image: &Path, against: &str) -> Result<Report> {
    let (dest, port) = parse_node(against)?;
    let (m, x, files) = load(image)?;
    let images: Vec<(String, Vec<String>)> = m
        .extra
        .images
        .iter()
        .flatten()
        .map(|i| {
            (
                i.reference.clone(),
                vec![
                    i.image_id.clone(),
                    i.manifest_digest.clone(),
                    i.digest.clone(),
                ],
            )
        })
        .collect();
    let refs: Vec<String> = images.iter().map(|(r, _)| r.clone()).collect();
    let body = script(&x, &refs, "/");
    // The script goes on stdin; a user other than root runs it through sudo.
    let mut child = crate::support::ssh::ssh_spawn(
        &dest,
        port,
        r#"if [ "$(id -u)" = 0 ]; then exec sh -s; else exec sudo -n sh -s; fi"#,
        Stdio::piped(),
        Stdio::piped(),
    )?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::failed("ssh stdin"))?;
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| Error::failed(format!("ssh {dest}: {e}")))?;
    let _ = writer.join();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(255) {
        return Err(Error::config(format!(
            "cannot reach {against}: {} (SSH options come from ~/.ssh/config or CLAWIMG_SSH_OPTS)",
            err.trim()
        )));
    }
    let st = parse_output(&out.stdout, "/")
        .map_err(|e| Error::failed(format!("{e}; ssh {dest} said: {}", err.trim())))?;
    if st.packages.is_empty() {
        return Err(Error::failed(format!(
            "{against}: dpkg-query listed no packages (is this a clawimg node?): {}",
            err.trim()
        )));
    }
    compare(&m, &x, &files, &images, &st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::expect::{expectations, nl};
    use crate::profile::Profile;
    use crate::support::rootfs::Rootfs;

    fn fe(path: &str, kind: char, digest: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind,
            mode: match kind {
                'd' => 0o755,
                'l' => 0o777,
                _ => 0o644,
            },
            uid: 0,
            gid: 0,
            size: 0,
            digest: digest.into(),
        }
    }

    #[test]
    fn node_parse() {
        assert_eq!(
            parse_node("ssh://root@127.0.0.1:2222/").unwrap(),
            ("root@127.0.0.1".into(), Some(2222))
        );
        assert_eq!(
            parse_node("ssh://standby").unwrap(),
            ("standby".into(), None)
        );
        assert!(parse_node("standby").is_err());
        assert!(parse_node("ssh://h/dev/sda").is_err());
        assert!(parse_node("ssh://h:x").is_err());
    }

    #[test]
    fn enabled_links_and_slot_dirs() {
        let files = vec![
            fe("/etc", 'd', "-"),
            fe(
                "/etc/systemd/system/multi-user.target.wants/ssh.service",
                'l',
                "x",
            ),
            fe("/etc/systemd/system/sshd.service", 'l', "x"),
            fe("/opt", 'd', "-"),
        ];
        let mut p = Profile::default();
        p.secrets.insert(
            "k".into(),
            crate::profile::secrets::Slot {
                file: "/opt/app/conf/.env".into(),
                ..Default::default()
            },
        );
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib/tmpfiles.d")).unwrap();
        std::fs::write(
            t.path().join("usr/lib/tmpfiles.d/app.conf"),
            "# x\nd /opt/app/backups 0700 root root -\nd /run/app 0755 - - -\nL+ /etc/mtab - - - - x\n",
        )
        .unwrap();
        let root = Rootfs::open(t.path()).unwrap();
        let x = expectations(
            &p,
            &root,
            &files,
            &[("scrub", crate::build::scrub::NODE_LOCAL)],
        );
        assert!(x
            .node_local
            .iter()
            .any(|n| n.path == "/opt/app/backups/**" && n.module == "tmpfiles"));
        assert!(!x.node_local.iter().any(|n| n.path.starts_with("/run")));
        assert_eq!(x.enabled_units, vec!["ssh.service".to_string()]);
        let paths: Vec<&str> = x.node_local.iter().map(|n| n.path.as_str()).collect();
        assert!(paths.contains(&"/opt/app/conf/.env"));
        assert!(paths.contains(&"/opt/app/conf") && paths.contains(&"/opt/app"));
        assert!(!paths.contains(&"/opt"));
        assert!(paths.contains(&"/etc/machine-id"));
    }

    #[test]
    fn parse_and_compare() {
        let mut p = Profile::default();
        p.secrets.clear();
        let files = vec![
            fe("/etc", 'd', "-"),
            fe("/etc/a", 'f', &hex::encode(Sha256::digest(b"a"))),
            fe("/etc/b", 'f', "00"),
            fe("/etc/l", 'l', &hex::encode(Sha256::digest(b"/etc/a"))),
            fe("/etc/machine-id", 'f', "00"),
            fe("/var/x", 'f', "00"),
        ];
        let t = tempfile::tempdir().unwrap();
        let x = expectations(
            &p,
            &Rootfs::open(t.path()).unwrap(),
            &files,
            &[("scrub", crate::build::scrub::NODE_LOCAL)],
        );
        let mut m: serde_json::Value =
            serde_json::from_str(include_str!("../image/testdata/manifest-v1.json")).unwrap();
        m["packages"] = serde_json::json!([{"name": "bash", "version": "5.2", "arch": "amd64"}]);
        let m: Manifest = serde_json::from_value(m).unwrap();
        let a = hex::encode(Sha256::digest(b"changed"));
        let mut out = Vec::new();
        out.extend_from_slice(b"banner\n\0@@packages\0ii \tbash\t5.3\tamd64\nii \tvim\t9\tamd64\n");
        out.extend_from_slice(b"\0@@units\0\0@@images\0\0@@list\0");
        for (meta, path, link) in [
            ("d 755 0 0 0", "/etc", ""),
            ("f 644 0 0 1", "/etc/a", ""),
            ("l 777 0 0 6", "/etc/l", "/etc/a"),
            ("f 444 0 0 33", "/etc/machine-id", ""),
            ("f 600 0 0 3", "/etc/new file", ""),
        ] {
            out.extend_from_slice(format!("{meta}\0{path}\0{link}\0").as_bytes());
        }
        out.extend_from_slice(format!("\0@@hash\0{a}  /etc/a\0").as_bytes());
        out.extend_from_slice(b"\0@@end\0");
        let st = parse_output(&out, "/").unwrap();
        let r = compare(&m, &x, &files, &[], &st).unwrap();
        let got: Vec<(Change, &str)> = r
            .drift
            .iter()
            .map(|d| (d.change, d.item.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Change::Changed, "bash:amd64"),
                (Change::Added, "vim:amd64"),
                (Change::Changed, "/etc/a"),
                (Change::Missing, "/etc/b"),
                (Change::Added, "/etc/new file"),
            ]
        );
        assert_eq!(r.node_local_skipped, 1);
        assert!(r.render().contains("changed  files     /etc/a  (sha256 "));
    }

    #[test]
    fn script_quotes_and_prunes() {
        let x = Expectations {
            scope: vec!["/etc".into()],
            node_local: vec![nl("/usr/**/__pycache__", "repro", "x")],
            enabled_units: vec!["a'b.service".into()],
        };
        let s = script(&x, &[], "/");
        assert!(s.contains(r#"\( -path "$R"'/usr/*/__pycache__' \) -prune -o -type f"#));
        assert!(s.contains(r"for u in 'a'\''b.service'; do"));
    }

    /// Run the node script on a tree (as `sh` on this host, not over SSH) and compare it
    /// with the tree as it was listed: only file drift is looked at (the packages are the
    /// host's).
    fn drift_on_tree(
        root: &Path,
        files: &[FileEntry],
        x: &Expectations,
    ) -> (Vec<(Change, String)>, usize) {
        let mut child = std::process::Command::new("sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let body = script(x, &[], &root.display().to_string());
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let st = parse_output(&out.stdout, &root.display().to_string()).unwrap();
        let m: Manifest =
            serde_json::from_str(include_str!("../image/testdata/manifest-v1.json")).unwrap();
        let r = compare(&m, x, files, &[], &st).unwrap();
        let files_drift = r
            .drift
            .iter()
            .filter(|d| d.category == "files")
            .map(|d| (d.change, d.item.clone()))
            .collect();
        (files_drift, r.node_local_skipped)
    }

    #[test]
    fn verify_sees_keys_kernel_esp_cron_and_user_units_and_skips_the_provisioned_key() {
        use crate::image::files::file_list;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let put = |p: &str, data: &str| {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, data).unwrap();
        };
        put(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\nadminclaw:x:1000:1000::/home/adminclaw:/bin/bash\nsvc:x:998:998::/var/lib/svc:/usr/sbin/nologin\n",
        );
        put(
            "etc/sudoers.d/50-adminclaw",
            "adminclaw ALL=(ALL) NOPASSWD:ALL\n",
        );
        put(
            "usr/lib/systemd/system/app.service",
            "[Service]\nExecStart=/bin/true\n",
        );
        put("boot/vmlinuz-6.8.0-1-generic", "kernel");
        put("boot/efi/EFI/BOOT/BOOTX64.EFI", "grub");
        put(
            "home/adminclaw/.ssh/authorized_keys",
            "ssh-ed25519 AAAA admin\n",
        );
        put("home/adminclaw/notes.txt", "not in scope\n");
        std::fs::create_dir_all(root.join("var/spool/cron/crontabs")).unwrap();
        // Merged /usr: /lib/systemd is /usr/lib/systemd, listed once.
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        let rootfs = Rootfs::open(root).unwrap();
        let files = file_list(&rootfs).unwrap();
        let x = expectations(&Profile::default(), &rootfs, &files, &[]);
        assert!(x.scope.contains(&"/var/lib/svc/.ssh".to_string()));
        assert_eq!(
            drift_on_tree(root, &files, &x),
            (vec![], 0),
            "the tree as listed"
        );

        // Root's key file as systemd provisions it from the boot credential: node-local.
        put(
            "run/credentials/@system/ssh.authorized_keys.root",
            "ssh-ed25519 AAAA operator\n",
        );
        put("root/.ssh/authorized_keys", "ssh-ed25519 AAAA operator\n");
        assert_eq!(drift_on_tree(root, &files, &x), (vec![], 2));

        // What an intruder does.
        let append = |p: &str, data: &str| {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(root.join(p))
                .unwrap();
            f.write_all(data.as_bytes()).unwrap();
        };
        append("root/.ssh/authorized_keys", "ssh-ed25519 AAAA intruder\n");
        append(
            "home/adminclaw/.ssh/authorized_keys",
            "ssh-ed25519 AAAA intruder\n",
        );
        append("boot/vmlinuz-6.8.0-1-generic", "rootkit");
        append("boot/efi/EFI/BOOT/BOOTX64.EFI", "bootkit");
        put("var/spool/cron/crontabs/root", "* * * * * /tmp/x\n");
        put(
            "home/adminclaw/.config/systemd/user/x.service",
            "[Service]\n",
        );
        put(
            "var/lib/svc/.ssh/authorized_keys",
            "ssh-ed25519 AAAA intruder\n",
        );
        put("etc/sudoers.d/90-x", "x ALL=(ALL) ALL\n");
        put("home/adminclaw/notes.txt", "still not in scope\n");
        let (drift, skipped) = drift_on_tree(root, &files, &x);
        let want: Vec<(Change, String)> = [
            (Change::Changed, "/boot/efi/EFI/BOOT/BOOTX64.EFI"),
            (Change::Changed, "/boot/vmlinuz-6.8.0-1-generic"),
            (Change::Changed, "/home/adminclaw/.ssh/authorized_keys"),
            (Change::Added, "/etc/sudoers.d/90-x"),
            (Change::Added, "/home/adminclaw/.config/systemd"),
            (Change::Added, "/home/adminclaw/.config/systemd/user"),
            (
                Change::Added,
                "/home/adminclaw/.config/systemd/user/x.service",
            ),
            (Change::Added, "/root/.ssh/authorized_keys"),
            (Change::Added, "/var/lib/svc/.ssh"),
            (Change::Added, "/var/lib/svc/.ssh/authorized_keys"),
            (Change::Added, "/var/spool/cron/crontabs/root"),
        ]
        .iter()
        .map(|(c, p)| (*c, p.to_string()))
        .collect();
        assert_eq!(drift, want);
        assert_eq!(skipped, 1, "only the directory made for the credential");
    }
}
