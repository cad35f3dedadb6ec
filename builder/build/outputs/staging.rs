//! Output directories: built in a hidden staging directory next to the final one and
//! swapped into place only when complete, so a failed build leaves the previous output.

use crate::error::{Context, Error, Result};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A staging directory that is removed unless committed.
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// Remove leftovers of builds whose process is gone (`.NAME.tmp-PID`, `work-PID`).
pub fn clean_stale(parent: &Path) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let pid = name
            .rsplit_once(".tmp-")
            .or_else(|| name.rsplit_once("work-"))
            .and_then(|(_, p)| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(ent.path());
            }
        }
    }
}

impl Staging {
    /// Create `.NAME.tmp-PID` next to `target`.
    pub fn new(target: &Path) -> Result<Self> {
        let parent = target.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
        clean_stale(parent);
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let dir = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).ctx(|| format!("create {}", dir.display()))?;
        Ok(Staging {
            dir,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// The staging directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Put the staging directory in place of the target (atomic exchange when one exists).
    pub fn commit(mut self) -> Result<PathBuf> {
        if self.target.exists() {
            let a = CString::new(self.dir.as_os_str().as_bytes())
                .map_err(|_| Error::failed("bad path"))?;
            let b = CString::new(self.target.as_os_str().as_bytes())
                .map_err(|_| Error::failed("bad path"))?;
            // SAFETY: both are valid NUL-terminated paths; renameat2 only reads them.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            if rc != 0 {
                return Err(Error::failed(format!(
                    "cannot swap {} into place: {}",
                    self.target.display(),
                    std::io::Error::last_os_error()
                )));
            }
            // The old output now sits at the staging path.
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            std::fs::rename(&self.dir, &self.target)
                .ctx(|| format!("rename into {}", self.target.display()))?;
        }
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_build_keeps_previous_output() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("p");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("old"), "1").unwrap();
        {
            let s = Staging::new(&target).unwrap();
            std::fs::write(s.path().join("new"), "2").unwrap();
            // dropped without commit
        }
        assert!(target.join("old").exists());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
        let s = Staging::new(&target).unwrap();
        std::fs::write(s.path().join("new"), "2").unwrap();
        s.commit().unwrap();
        assert!(target.join("new").exists());
        assert!(!target.join("old").exists());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
