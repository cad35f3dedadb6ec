//! `clawimg test`: boot an image in QEMU and run probes over SSH with a throwaway key.

use crate::error::{Context, Error, Result};
use crate::image::probes::{Outcome, Probe};
use crate::ops::test::probes;
use crate::ops::test::qemu::{Accel, DiskBus, Firmware, Vm, VmSpec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One boot to test.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// Image file.
    pub image: PathBuf,
    /// Firmware.
    pub firmware: Firmware,
    /// Disk bus.
    pub bus: DiskBus,
    /// Enlarge the disk to this size before booting.
    pub disk_size: Option<u64>,
    /// Accelerator.
    pub accel: Accel,
    /// Guest memory (MiB).
    pub memory_mib: u32,
    /// How long to wait for SSH.
    pub ssh_timeout: Duration,
    /// Extra probes (must exit 0).
    pub extra: Vec<Probe>,
    /// Existing private key to log in with (public half at `KEY.pub`); default: a throwaway pair.
    pub key: Option<PathBuf>,
    /// User to log in as (`root` by default); a non-root user runs root probes through sudo,
    /// and the harness also checks that root and password logins are refused.
    pub ssh_user: String,
    /// Guest SSH port.
    pub ssh_port: u16,
    /// Expose the serial console as a Unix socket here while the VM runs (a symlink to
    /// QEMU's socket, removed afterwards).
    pub console_socket: Option<PathBuf>,
}

/// Result of one boot.
#[derive(Debug, Clone)]
pub struct TestReport {
    /// Table title.
    pub title: String,
    /// Probe outcomes.
    pub outcomes: Vec<Outcome>,
    /// Time until SSH answered.
    pub time_to_ssh: Duration,
}

impl TestReport {
    /// All probes passed.
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.pass)
    }
}

/// Make a throwaway ed25519 key pair in `dir`; returns (private key path, public key).
pub fn throwaway_key(dir: &Path) -> Result<(PathBuf, String)> {
    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "clawimg-test", "-f"])
        .arg(&key)
        .output()
        .map_err(|e| {
            Error::tool(format!(
                "cannot run ssh-keygen: {e} (install package `openssh-client`)"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let public =
        std::fs::read_to_string(dir.join("id_ed25519.pub")).ctx(|| "read public key".into())?;
    Ok((key, public))
}

/// Boot once and run the base probes plus `extra`.
pub fn run(t: &TestRun) -> Result<TestReport> {
    let work = tempfile::Builder::new()
        .prefix("clawimg-test-")
        .tempdir()
        .ctx(|| "temp dir".into())?;
    let (key, public) = match &t.key {
        Some(k) => {
            let pubpath = PathBuf::from(format!("{}.pub", k.display()));
            let public = std::fs::read_to_string(&pubpath).map_err(|e| {
                Error::config(format!(
                    "--key {}: cannot read the public key {}: {e}",
                    k.display(),
                    pubpath.display()
                ))
            })?;
            (k.clone(), public)
        }
        None => throwaway_key(work.path())?,
    };
    let spec = VmSpec {
        image: t.image.clone(),
        firmware: t.firmware,
        bus: t.bus,
        disk_size: t.disk_size,
        accel: t.accel,
        memory_mib: t.memory_mib,
        authorized_key: public,
        guest_ssh_port: t.ssh_port,
        work: work.path().join("vm"),
    };
    let mut vm = Vm::start(&spec, &key, &t.ssh_user)?;
    let _console = match (&t.console_socket, &vm.console) {
        (Some(link), Some(sock)) => Some(ConsoleLink::new(link, sock)?),
        (Some(link), None) => {
            return Err(Error::failed(format!(
                "--console-socket {}: the scratch directory's path is too long for a socket",
                link.display()
            )))
        }
        _ => None,
    };
    let title = format!(
        "{} — {:?} firmware, {:?} disk{}, {}",
        t.image.display(),
        t.firmware,
        t.bus,
        t.disk_size
            .map(|s| format!(" resized to {} GiB", s >> 30))
            .unwrap_or_default(),
        vm.accel
    );
    let time_to_ssh = vm.wait_ssh(t.ssh_timeout)?;
    // The grown disk minus what the image's other partitions and ext4 overhead take.
    let min_root = t.disk_size.map(|s| s * 9 / 10);
    let mut list = probes::base_probes(t.firmware, t.bus, min_root);
    list.extend(t.extra.iter().cloned());
    if t.ssh_user != "root" {
        // Probes inspect the whole system; the admin user runs them through sudo.
        for p in &mut list {
            p.command = as_root(&p.command);
            p.on_failure = p.on_failure.as_deref().map(as_root);
        }
    }
    let mut outcomes = probes::run(&vm, &list);
    if t.ssh_user != "root" {
        outcomes.extend(probes::login_checks(&vm, &t.ssh_user));
    }
    vm.kill();
    Ok(TestReport {
        title,
        outcomes,
        time_to_ssh,
    })
}

/// A symlink to the VM's console socket, removed when dropped.
struct ConsoleLink(PathBuf);

impl ConsoleLink {
    fn new(link: &Path, sock: &Path) -> Result<ConsoleLink> {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(sock, link)
            .map_err(|e| Error::config(format!("--console-socket {}: {e}", link.display())))?;
        Ok(ConsoleLink(link.to_path_buf()))
    }
}

impl Drop for ConsoleLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Wrap a shell command so a sudo-capable user runs it as root.
pub fn as_root(cmd: &str) -> String {
    format!("sudo -n sh -c '{}'", cmd.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn as_root_quotes() {
        assert_eq!(super::as_root("a'b"), r"sudo -n sh -c 'a'\''b'");
    }
}
