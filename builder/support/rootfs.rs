//! A rooted handle on the image tree: every access resolves inside the root, so a symlink
//! in the image (`/etc/resolv.conf -> ../run/...`, or a hostile absolute link) can never
//! make the builder read or write the host.
//!
//! The tree starts as hard links to the stage cache's base tree (no data is copied), so
//! nothing here changes a file in place: writes replace the entry with a new inode, and
//! `chmod`/`chown` first give a shared file an inode of its own (copy-up).

use crate::error::{Error, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, Permissions, PermissionsExt};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A root filesystem tree under construction.
pub struct Rootfs {
    dir: Dir,
    path: PathBuf,
}

fn rel(p: &str) -> &str {
    p.trim_start_matches('/')
}

impl Rootfs {
    /// Open an existing tree.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = Dir::open_ambient_dir(path, ambient_authority())
            .map_err(|e| Error::failed(format!("cannot open rootfs {}: {e}", path.display())))?;
        Ok(Rootfs {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The rooted directory handle, for modules that walk the whole tree (reproducibility
    /// normalization, file lists); every access through it stays inside the root.
    pub fn cap_dir(&self) -> &Dir {
        &self.dir
    }

    /// Host path of the tree (for tools such as `mkfs.ext4 -d` that take a directory).
    pub fn host_path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str, p: &str, e: std::io::Error) -> Error {
        Error::failed(format!(
            "rootfs {}: {what} /{}: {e}",
            self.path.display(),
            rel(p)
        ))
    }

    /// Whether a path exists (without following a final symlink).
    pub fn exists(&self, p: &str) -> bool {
        self.dir.symlink_metadata(rel(p)).is_ok()
    }

    /// Whether a path is a directory (a symlink to one is not).
    pub fn is_dir(&self, p: &str) -> bool {
        self.dir
            .symlink_metadata(rel(p))
            .map(|m| m.is_dir())
            .unwrap_or(false)
    }

    /// Size of a regular file; `None` for anything else (symlinks are not followed).
    pub fn file_len(&self, p: &str) -> Option<u64> {
        self.dir
            .symlink_metadata(rel(p))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Read a file as text.
    pub fn read_to_string(&self, p: &str) -> Result<String> {
        self.dir
            .read_to_string(rel(p))
            .map_err(|e| self.err("read", p, e))
    }

    /// Create a directory and its parents (mode 0755 for new ones).
    pub fn mkdir_all(&self, p: &str) -> Result<()> {
        self.dir
            .create_dir_all(rel(p))
            .map_err(|e| self.err("mkdir", p, e))
    }

    /// Write a file atomically-enough for a build tree: replaces any existing entry
    /// (including a symlink, which is removed rather than followed).
    pub fn write(&self, p: &str, data: &[u8], mode: u32) -> Result<()> {
        let r = rel(p);
        if let Some(parent) = Path::new(r).parent() {
            if !parent.as_os_str().is_empty() {
                self.dir
                    .create_dir_all(parent)
                    .map_err(|e| self.err("mkdir", p, e))?;
            }
        }
        if let Ok(md) = self.dir.symlink_metadata(r) {
            if md.is_dir() {
                return Err(Error::failed(format!(
                    "rootfs: /{r} is a directory, expected a file"
                )));
            }
            self.dir
                .remove_file(r)
                .map_err(|e| self.err("replace", p, e))?;
        }
        let mut f = self
            .dir
            .open_with(r, OpenOptions::new().write(true).create_new(true))
            .map_err(|e| self.err("create", p, e))?;
        f.write_all(data).map_err(|e| self.err("write", p, e))?;
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| self.err("chmod", p, e))?;
        Ok(())
    }

    /// Create (or replace) a file for streaming writes; same rules as [`Rootfs::write`].
    pub fn create(&self, p: &str, mode: u32) -> Result<cap_std::fs::File> {
        self.write(p, b"", mode)?;
        self.dir
            .open_with(rel(p), OpenOptions::new().write(true).truncate(true))
            .map_err(|e| self.err("open", p, e))
    }

    /// Create (or replace) a symlink `p -> target`.
    pub fn symlink(&self, target: &str, p: &str) -> Result<()> {
        let r = rel(p);
        if let Some(parent) = Path::new(r).parent() {
            if !parent.as_os_str().is_empty() {
                self.dir
                    .create_dir_all(parent)
                    .map_err(|e| self.err("mkdir", p, e))?;
            }
        }
        if self.dir.symlink_metadata(r).is_ok() {
            self.dir
                .remove_file(r)
                .map_err(|e| self.err("replace", p, e))?;
        }
        // Absolute targets are fine here: they are only ever resolved inside the image.
        self.dir
            .symlink_contents(target, r)
            .map_err(|e| self.err("symlink", p, e))
    }

    /// Remove a file or symlink if present.
    pub fn remove_file(&self, p: &str) -> Result<()> {
        match self.dir.remove_file(rel(p)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("remove", p, e)),
        }
    }

    /// Empty a directory (keep the directory itself); missing is fine.
    pub fn clear_dir(&self, p: &str) -> Result<()> {
        self.remove_matching(p, |_| true).map(|_| ())
    }

    /// Remove every entry directly under `p` whose name satisfies `pred`.
    pub fn remove_matching(&self, p: &str, pred: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let r = rel(p);
        let mut removed = vec![];
        let entries = match self.dir.read_dir(r) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(self.err("list", p, e)),
        };
        for ent in entries {
            let ent = ent.map_err(|e| self.err("list", p, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if pred(&name) {
                let full = Path::new(r).join(&name);
                let ft = ent.file_type().map_err(|e| self.err("stat", p, e))?;
                let res = if ft.is_dir() {
                    self.dir.remove_dir_all(&full)
                } else {
                    self.dir.remove_file(&full)
                };
                res.map_err(|e| self.err("remove", &full.to_string_lossy(), e))?;
                removed.push(format!("/{}", full.display()));
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// File type and mode of a path without following a final symlink.
    pub fn lstat(&self, p: &str) -> Option<cap_std::fs::Metadata> {
        self.dir.symlink_metadata(rel(p)).ok()
    }

    /// Whether `p` resolves (following symlinks, inside the root) to an executable file.
    pub fn is_executable(&self, p: &str) -> bool {
        use cap_std::fs::PermissionsExt as _;
        let mut cur = rel(p).to_string();
        // Follow up to 40 links by hand so absolute targets resolve against the image root.
        for _ in 0..40 {
            let Ok(md) = self.dir.symlink_metadata(&cur) else {
                return false;
            };
            if md.file_type().is_symlink() {
                let Ok(t) = self.dir.read_link_contents(&cur) else {
                    return false;
                };
                let t = t.to_string_lossy().into_owned();
                cur = if let Some(abs) = t.strip_prefix('/') {
                    abs.to_string()
                } else {
                    let parent = Path::new(&cur)
                        .parent()
                        .map(|x| x.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if parent.is_empty() {
                        t
                    } else {
                        format!("{parent}/{t}")
                    }
                };
                continue;
            }
            return md.is_file() && md.permissions().mode() & 0o111 != 0;
        }
        false
    }

    /// Split `p` into its parent directory (opened inside the root) and final name.
    fn parent_of(&self, p: &str) -> Result<(Dir, String)> {
        let r = Path::new(rel(p));
        let name = r
            .file_name()
            .ok_or_else(|| Error::failed(format!("rootfs: /{} has no file name", r.display())))?
            .to_string_lossy()
            .into_owned();
        let parent = r
            .parent()
            .filter(|x| !x.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let d = self
            .dir
            .open_dir(parent)
            .map_err(|e| self.err("open", &parent.to_string_lossy(), e))?;
        Ok((d, name))
    }

    /// Before the metadata of `name` (in `d`) changes in place: if its inode is shared
    /// with another tree (the stage cache), replace the entry with a copy of its own —
    /// same bytes, owner, mode, times and extended attributes.
    fn own_inode(&self, d: &Dir, name: &str, p: &str) -> Result<()> {
        use rustix::fs::{AtFlags, FileType, Mode, Timestamps};
        let st = rustix::fs::statat(d, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err("stat", p, e.into()))?;
        // Directories are never shared (the link farm makes new ones), and count their
        // own links (`.`, subdirectories' `..`).
        if st.st_nlink < 2 || FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Ok(());
        }
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: st.st_atime as _,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: st.st_mtime as _,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        let (uid, gid) = (
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        );
        let tmp = format!(".{name}.clawimg-own");
        let _ = d.remove_file(&tmp);
        let ioe = |what: &str, e: rustix::io::Errno| self.err(what, p, e.into());
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => {
                let target = d
                    .read_link_contents(name)
                    .map_err(|e| self.err("readlink", p, e))?;
                d.symlink_contents(&target, &tmp)
                    .map_err(|e| self.err("symlink", p, e))?;
                rustix::fs::chownat(d, tmp.as_str(), uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| ioe("chown", e))?;
                rustix::fs::utimensat(d, tmp.as_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| ioe("set times of", e))?;
            }
            FileType::RegularFile => {
                let mut src = d.open(name).map_err(|e| self.err("open", p, e))?;
                let mut dst = d
                    .open_with(&tmp, OpenOptions::new().write(true).create_new(true))
                    .map_err(|e| self.err("copy", p, e))?;
                std::io::copy(&mut src, &mut dst).map_err(|e| self.err("copy", p, e))?;
                rustix::fs::fchown(&dst, uid, gid).map_err(|e| ioe("chown", e))?;
                // After chown, which clears set-id bits.
                rustix::fs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777))
                    .map_err(|e| ioe("chmod", e))?;
                let mut names = vec![0u8; 64 << 10];
                let n = rustix::fs::flistxattr(&src, &mut names[..]).map_err(|e| ioe("list xattrs of", e))?;
                for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
                    let key = std::ffi::CString::new(key).unwrap_or_default();
                    let mut val = vec![0u8; 64 << 10];
                    let m = rustix::fs::fgetxattr(&src, key.as_c_str(), &mut val[..])
                        .map_err(|e| ioe("read xattr of", e))?;
                    rustix::fs::fsetxattr(&dst, key.as_c_str(), &val[..m], rustix::fs::XattrFlags::CREATE)
                        .map_err(|e| ioe("set xattr of", e))?;
                }
                rustix::fs::futimens(&dst, &times).map_err(|e| ioe("set times of", e))?;
            }
            _ => {
                return Err(Error::failed(format!(
                    "rootfs: /{} is a special file shared with the stage cache; its metadata cannot change",
                    rel(p)
                )))
            }
        }
        d.rename(&tmp, d, name)
            .map_err(|e| self.err("replace", p, e))
    }

    /// Set owner and group of `p` (a final symlink itself is changed, never its target).
    pub fn chown(&self, p: &str, uid: u32, gid: u32) -> Result<()> {
        use rustix::fs::{AtFlags, FileType};
        let (d, name) = self.parent_of(p)?;
        self.own_inode(&d, &name, p)?;
        let before = rustix::fs::statat(&d, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err("stat", p, e.into()))?;
        let (u, g) = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        );
        rustix::fs::chownat(
            &d,
            name.as_str(),
            Some(u),
            Some(g),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err("chown", p, e.into()))?;
        // The kernel clears setuid/setgid of a file on every chown (even by root): a mode
        // set before the owner must survive it, so put the bits back.
        let special = before.st_mode & 0o7000;
        if special != 0 && FileType::from_raw_mode(before.st_mode) != FileType::Symlink {
            rustix::fs::chmodat(
                &d,
                name.as_str(),
                rustix::fs::Mode::from_raw_mode(before.st_mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|e| self.err("chmod", p, e.into()))?;
        }
        Ok(())
    }

    /// Set the mode of a file or directory (refuses symlinks: their mode is meaningless and
    /// chmod would follow them).
    pub fn chmod(&self, p: &str, mode: u32) -> Result<()> {
        let (d, name) = self.parent_of(p)?;
        let md = d
            .symlink_metadata(&name)
            .map_err(|e| self.err("stat", p, e))?;
        if md.file_type().is_symlink() {
            return Err(Error::failed(format!(
                "rootfs: /{} is a symlink, cannot chmod",
                rel(p)
            )));
        }
        self.own_inode(&d, &name, p)?;
        rustix::fs::chmodat(
            &d,
            name.as_str(),
            rustix::fs::Mode::from_raw_mode(mode),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(|e| self.err("chmod", p, e.into()))
    }

    /// Read a file as bytes.
    pub fn read(&self, p: &str) -> Result<Vec<u8>> {
        self.dir.read(rel(p)).map_err(|e| self.err("read", p, e))
    }

    /// Names of the entries of a directory, sorted; empty if it does not exist.
    pub fn list(&self, p: &str) -> Result<Vec<String>> {
        let mut v = vec![];
        match self.dir.read_dir(rel(p)) {
            Ok(entries) => {
                for ent in entries {
                    let ent = ent.map_err(|e| self.err("list", p, e))?;
                    v.push(ent.file_name().to_string_lossy().into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.err("list", p, e)),
        }
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_symlink_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "host").unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("evil")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("evildir")).unwrap();
        let r = Rootfs::open(t.path()).unwrap();
        // Writing through a file symlink replaces the link, never the host file.
        r.write("/evil", b"image", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host");
        // A directory symlink pointing outside cannot be traversed.
        assert!(r.write("/evildir/x", b"image", 0o644).is_err());
        assert!(!outside.path().join("x").exists());
    }

    #[test]
    fn chmod_and_chown_never_reach_a_hard_linked_original() {
        use std::os::unix::fs::MetadataExt;
        let cache = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let (c, w) = (cache.path(), work.path().join("tree"));
        std::fs::create_dir(c.join("etc")).unwrap();
        std::fs::write(c.join("etc/a"), "shared bytes").unwrap();
        std::fs::set_permissions(
            c.join("etc/a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        rustix::fs::setxattr(
            c.join("etc/a"),
            "user.clawimg",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        )
        .ok();
        std::os::unix::fs::symlink("a", c.join("etc/l")).unwrap();
        let out = std::process::Command::new("cp")
            .arg("-al")
            .arg(c)
            .arg(&w)
            .status()
            .unwrap();
        assert!(out.success());
        let before = std::fs::metadata(c.join("etc/a")).unwrap();
        let r = Rootfs::open(&w).unwrap();
        // Without root only one's own ids can be given; the copy-up happens all the same.
        // SAFETY: plain id queries.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let (uid, gid) = if euid == 0 {
            (1234, 1234)
        } else {
            (euid, egid)
        };
        r.chmod("/etc/a", 0o600).unwrap();
        r.chown("/etc/a", uid, gid).unwrap();
        r.chown("/etc/l", uid, gid).unwrap();
        let orig = std::fs::metadata(c.join("etc/a")).unwrap();
        assert_eq!(
            orig.mode() & 0o7777,
            0o640,
            "the cached file's mode is untouched"
        );
        assert_eq!((orig.uid(), orig.ino()), (before.uid(), before.ino()));
        assert_eq!(
            std::fs::symlink_metadata(c.join("etc/l")).unwrap().uid(),
            before.uid()
        );
        let new = std::fs::metadata(w.join("etc/a")).unwrap();
        assert_ne!(new.ino(), orig.ino());
        assert_eq!(
            (new.mode() & 0o7777, new.uid(), new.gid()),
            (0o600, uid, gid)
        );
        assert_eq!(
            new.mtime(),
            orig.mtime(),
            "the copy keeps the modification time"
        );
        assert_eq!(std::fs::read(w.join("etc/a")).unwrap(), b"shared bytes");
        if rustix::fs::getxattr(c.join("etc/a"), "user.clawimg", &mut [0u8; 16][..]).is_ok() {
            let mut v = [0u8; 16];
            let n = rustix::fs::getxattr(w.join("etc/a"), "user.clawimg", &mut v[..]).unwrap();
            assert_eq!(&v[..n], b"kept");
        }
        assert_eq!(std::fs::read_link(w.join("etc/l")).unwrap(), Path::new("a"));
        assert_eq!(
            std::fs::symlink_metadata(w.join("etc/l")).unwrap().uid(),
            uid
        );
        // A directory (nlink > 1 by nature) is changed in place.
        std::fs::create_dir(w.join("etc/d")).unwrap();
        std::fs::create_dir(w.join("etc/d/sub")).unwrap();
        let dino = std::fs::metadata(w.join("etc/d")).unwrap().ino();
        r.chmod("/etc/d", 0o700).unwrap();
        r.chown("/etc/d", uid, gid).unwrap();
        assert_eq!(std::fs::metadata(w.join("etc/d")).unwrap().ino(), dino);
        assert_eq!(
            std::fs::metadata(w.join("etc/d")).unwrap().mode() & 0o7777,
            0o700
        );
        // A file only the work tree has is changed in place (no copy needed).
        r.write("/etc/own", b"x", 0o644).unwrap();
        let ino = std::fs::metadata(w.join("etc/own")).unwrap().ino();
        r.chmod("/etc/own", 0o600).unwrap();
        assert_eq!(std::fs::metadata(w.join("etc/own")).unwrap().ino(), ino);
    }
}
