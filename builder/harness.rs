//! `clawimg test`: boot an image in QEMU and run probes over SSH with a throwaway key.

use crate::error::{Context, Error, Result};
use crate::probes::{self, Outcome, Probe};
use crate::qemu::{Accel, DiskBus, Firmware, Vm, VmSpec};
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
        .map_err(|e| Error::tool(format!("cannot run ssh-keygen: {e} (install package `openssh-client`)")))?;
    if !out.status.success() {
        return Err(Error::failed(format!("ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).ctx(|| "read public key".into())?;
    Ok((key, public))
}

/// Boot once and run the base probes plus `extra`.
pub fn run(t: &TestRun) -> Result<TestReport> {
    let work = tempfile::Builder::new().prefix("clawimg-test-").tempdir().ctx(|| "temp dir".into())?;
    let (key, public) = throwaway_key(work.path())?;
    let spec = VmSpec {
        image: t.image.clone(),
        firmware: t.firmware,
        bus: t.bus,
        disk_size: t.disk_size,
        accel: t.accel,
        memory_mib: t.memory_mib,
        authorized_key: public,
        work: work.path().join("vm"),
    };
    let mut vm = Vm::start(&spec, &key, "root")?;
    let title = format!(
        "{} — {:?} firmware, {:?} disk{}, {}",
        t.image.display(),
        t.firmware,
        t.bus,
        t.disk_size.map(|s| format!(" resized to {} GiB", s >> 30)).unwrap_or_default(),
        vm.accel
    );
    let time_to_ssh = vm.wait_ssh(t.ssh_timeout)?;
    // The grown disk minus what the image's other partitions and ext4 overhead take.
    let min_root = t.disk_size.map(|s| s * 9 / 10);
    let mut list = probes::base_probes(t.firmware, t.bus, min_root);
    list.extend(t.extra.iter().cloned());
    let outcomes = probes::run(&vm, &list);
    vm.kill();
    Ok(TestReport { title, outcomes, time_to_ssh })
}
