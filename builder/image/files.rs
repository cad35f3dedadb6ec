//! The image's file list: every entry of the finished tree, sorted by path, with type,
//! mode, owner, size and content digest (`files.tsv`, read by `diff` and `verify`).

use crate::error::{Error, Result};
use crate::support::rootfs::Rootfs;
use cap_std::fs::{Dir, MetadataExt};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One entry of the image tree as `files.tsv` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute path in the image.
    pub path: String,
    /// `f` file, `d` directory, `l` symlink, `c`/`b` device, `p` fifo, `s` socket.
    pub kind: char,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (files), else 0.
    pub size: u64,
    /// sha256 of the content (files) or the link target (symlinks), else `-`.
    pub digest: String,
}

impl FileEntry {
    /// One tab-separated line.
    pub fn line(&self) -> String {
        format!(
            "{}\t{}\t{:04o}\t{}\t{}\t{}\t{}",
            self.path, self.kind, self.mode, self.uid, self.gid, self.size, self.digest
        )
    }

    /// Parse a line written by [`FileEntry::line`].
    pub fn parse(line: &str) -> Option<FileEntry> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 7 {
            return None;
        }
        Some(FileEntry {
            path: f[0].to_string(),
            kind: f[1].chars().next()?,
            mode: u32::from_str_radix(f[2], 8).ok()?,
            uid: f[3].parse().ok()?,
            gid: f[4].parse().ok()?,
            size: f[5].parse().ok()?,
            digest: f[6].to_string(),
        })
    }
}

fn walk(dir: &Dir, rel: &Path, out: &mut Vec<FileEntry>) -> Result<()> {
    let err = |e: std::io::Error| Error::failed(format!("file list /{}: {e}", rel.display()));
    let mut ents = vec![];
    for ent in dir.entries().map_err(err)? {
        let ent = ent.map_err(err)?;
        ents.push(ent.file_name());
    }
    ents.sort();
    for name in ents {
        let md = dir.symlink_metadata(&name).map_err(err)?;
        let path = rel.join(&name);
        let ft = md.file_type();
        let (kind, size, digest) = if ft.is_symlink() {
            let t = dir.read_link_contents(&name).map_err(err)?;
            (
                'l',
                0,
                hex::encode(Sha256::digest(t.as_os_str().as_encoded_bytes())),
            )
        } else if ft.is_dir() {
            ('d', 0, "-".to_string())
        } else if ft.is_file() {
            let mut f = dir.open(&name).map_err(err)?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).map_err(err)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            ('f', md.len(), hex::encode(h.finalize()))
        } else {
            let k = match md.mode() & libc::S_IFMT {
                libc::S_IFCHR => 'c',
                libc::S_IFBLK => 'b',
                libc::S_IFIFO => 'p',
                _ => 's',
            };
            (k, 0, format!("{:x}", md.rdev()))
        };
        out.push(FileEntry {
            path: format!("/{}", path.display()),
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size,
            digest,
        });
        if ft.is_dir() {
            let sub = dir.open_dir(&name).map_err(err)?;
            walk(&sub, &path, out)?;
        }
    }
    Ok(())
}

/// Every entry of the tree, sorted by path, with content digests.
pub fn file_list(root: &Rootfs) -> Result<Vec<FileEntry>> {
    let mut out = vec![];
    walk(root.cap_dir(), Path::new(""), &mut out)?;
    Ok(out)
}

/// Put `extra` into `entries` (an entry of the same path is replaced), sorted by path:
/// what assembly adds after the tree was listed (grub.cfg, the ESP as the node mounts it).
pub fn merge(entries: &mut Vec<FileEntry>, extra: Vec<FileEntry>) {
    let paths: std::collections::BTreeSet<String> = extra.iter().map(|e| e.path.clone()).collect();
    entries.retain(|e| !paths.contains(&e.path));
    entries.extend(extra);
    entries.sort_by(|a, b| a.path.cmp(&b.path));
}

/// The entries of one path of the tree and of each directory above it, as [`file_list`]
/// records them.
pub fn entries_of(root: &Rootfs, path: &str) -> Result<Vec<FileEntry>> {
    let mut out = vec![];
    let mut p = Path::new(path.trim_start_matches('/'));
    loop {
        let err = |e: std::io::Error| Error::failed(format!("file list /{}: {e}", p.display()));
        let md = root.cap_dir().symlink_metadata(p).map_err(err)?;
        let (kind, size, digest) = if md.is_dir() {
            ('d', 0, "-".to_string())
        } else {
            let data = root.cap_dir().read(p).map_err(err)?;
            ('f', data.len() as u64, hex::encode(Sha256::digest(&data)))
        };
        out.push(FileEntry {
            path: format!("/{}", p.display()),
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size,
            digest,
        });
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => break,
        }
    }
    Ok(out)
}

/// Write `files.tsv` (one [`FileEntry::line`] per entry) into `dir`.
pub fn write_file_list(entries: &[FileEntry], dir: &Path) -> Result<PathBuf> {
    let mut s = String::from("# path\tkind\tmode\tuid\tgid\tsize\tsha256\n");
    for e in entries {
        s.push_str(&e.line());
        s.push('\n');
    }
    let p = dir.join(FILE_LIST);
    std::fs::write(&p, s).map_err(|e| Error::failed(format!("write {}: {e}", p.display())))?;
    Ok(p)
}

/// Name of the file list in an output directory.
pub const FILE_LIST: &str = "files.tsv";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_list_roundtrip_and_pycache() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib/x/__pycache__")).unwrap();
        std::fs::write(t.path().join("usr/lib/x/__pycache__/a.pyc"), "c").unwrap();
        std::fs::write(t.path().join("usr/lib/x/a.py"), "print(1)").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("usr/evil")).unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        let removed = crate::build::scrub::scrub_caches(&r).unwrap();
        assert_eq!(removed, vec!["/usr/lib/x/__pycache__".to_string()]);
        let l = file_list(&r).unwrap();
        let paths: Vec<&str> = l.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/usr",
                "/usr/evil",
                "/usr/lib",
                "/usr/lib/x",
                "/usr/lib/x/a.py"
            ]
        );
        for e in &l {
            assert_eq!(FileEntry::parse(&e.line()).as_ref(), Some(e));
        }
        assert_eq!(l[1].kind, 'l');
    }
}
