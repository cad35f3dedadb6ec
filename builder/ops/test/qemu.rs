//! QEMU virtual machines for `clawimg test`: the disk boots through real firmware (SeaBIOS or
//! OVMF) and GRUB, with virtio-blk or NVMe, user networking with SSH forwarded to 127.0.0.1.
//! QEMU is killed on every exit path (drop, error, and parent death via PDEATHSIG).

use crate::error::{Context, Error, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Firmware to boot with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Firmware {
    /// Legacy BIOS (SeaBIOS): MBR boot code and GRUB's core image.
    Bios,
    /// UEFI (OVMF): EFI/BOOT/BOOTX64.EFI on the ESP.
    Uefi,
}

/// How the disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum DiskBus {
    /// virtio-blk (most KVM clouds).
    Virtio,
    /// NVMe (needs the initramfs: the kernel has NVMe as a module).
    Nvme,
}

/// Hardware acceleration choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when it works here, else TCG.
    Auto,
    /// Require KVM.
    Kvm,
    /// Software emulation.
    Tcg,
}

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Whether KVM can actually create a VM and a vCPU here (not just whether /dev/kvm exists).
pub fn kvm_usable() -> bool {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt_flag = cpu
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !virt_flag {
        return false;
    }
    let Ok(kvm) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    else {
        return false;
    };
    use std::os::fd::AsRawFd;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
    // SAFETY: plain ioctls on fds we own; results are checked and fds closed.
    unsafe {
        if libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) != 12 {
            return false;
        }
        let vm = libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0);
        if vm < 0 {
            return false;
        }
        let vcpu = libc::ioctl(vm, KVM_CREATE_VCPU, 0);
        if vcpu >= 0 {
            libc::close(vcpu);
        }
        libc::close(vm);
        vcpu >= 0
    }
}

/// Resolve `auto` (environment `CLAWIMG_ACCEL` may force `kvm` or `tcg`).
pub fn resolve_accel(a: Accel) -> Result<&'static str> {
    let a = match (a, std::env::var("CLAWIMG_ACCEL").ok().as_deref()) {
        (Accel::Auto, Some("tcg")) => Accel::Tcg,
        (Accel::Auto, Some("kvm")) => Accel::Kvm,
        (a, _) => a,
    };
    match a {
        Accel::Tcg => Ok("tcg"),
        Accel::Kvm if kvm_usable() => Ok("kvm"),
        Accel::Kvm => Err(Error::config(
            "KVM was requested but cannot create a VM on this machine",
        )),
        Accel::Auto => Ok(if kvm_usable() { "kvm" } else { "tcg" }),
    }
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Disk image (raw or qcow2); never modified: QEMU writes to a throwaway overlay.
    pub image: PathBuf,
    /// Firmware.
    pub firmware: Firmware,
    /// Disk attachment.
    pub bus: DiskBus,
    /// Enlarge the virtual disk to this many bytes (the image's root must grow into it).
    pub disk_size: Option<u64>,
    /// Accelerator choice.
    pub accel: Accel,
    /// Guest memory.
    pub memory_mib: u32,
    /// Public key for root, passed as the systemd credential `ssh.authorized_keys.root`.
    pub authorized_key: String,
    /// Guest port sshd listens on (forwarded from a free host port on 127.0.0.1).
    pub guest_ssh_port: u16,
    /// Scratch directory (overlay, firmware vars, serial log).
    pub work: PathBuf,
}

/// A running VM.
pub struct Vm {
    child: Option<Child>,
    /// Host port forwarded to the guest's SSH port.
    pub ssh_port: u16,
    /// Serial console log.
    pub serial_log: PathBuf,
    /// The serial console as a Unix socket (QEMU is the server; the log keeps everything
    /// the guest writes whether or not a client is connected). `None` when the scratch
    /// directory's path is too long for a socket address.
    pub console: Option<PathBuf>,
    /// Accelerator actually used.
    pub accel: &'static str,
    key: PathBuf,
    user: String,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").ctx(|| "find a free port".into())?;
    Ok(l.local_addr().ctx(|| "local addr".into())?.port())
}

fn image_format(p: &Path) -> Result<&'static str> {
    let mut f = std::fs::File::open(p)
        .map_err(|e| Error::config(format!("cannot open image {}: {e}", p.display())))?;
    let mut magic = [0u8; 4];
    let _ = f.read(&mut magic);
    Ok(if &magic == b"QFI\xfb" { "qcow2" } else { "raw" })
}

impl Vm {
    /// Start QEMU; `key` is the private key matching `spec.authorized_key`.
    pub fn start(spec: &VmSpec, key: &Path, user: &str) -> Result<Vm> {
        Self::start_with(spec, key, user, &[])
    }

    /// Like [`Vm::start`], with extra raw disks attached read-only as virtio-blk (e.g. a
    /// cloud-init NoCloud `CIDATA` volume).
    pub fn start_with(
        spec: &VmSpec,
        key: &Path,
        user: &str,
        extra_disks: &[PathBuf],
    ) -> Result<Vm> {
        let accel = resolve_accel(spec.accel)?;
        std::fs::create_dir_all(&spec.work).ctx(|| format!("create {}", spec.work.display()))?;
        let image = spec
            .image
            .canonicalize()
            .map_err(|e| Error::config(format!("image {}: {e}", spec.image.display())))?;
        let fmt = image_format(&image)?;
        let overlay = spec.work.join("overlay.qcow2");
        let _ = std::fs::remove_file(&overlay);
        let mut qi = Command::new("qemu-img");
        qi.args(["create", "-q", "-f", "qcow2", "-F", fmt, "-b"])
            .arg(&image)
            .arg(&overlay);
        if let Some(sz) = spec.disk_size {
            qi.arg(sz.to_string());
        }
        let o = qi.output().ctx(|| "run qemu-img create".into())?;
        if !o.status.success() {
            return Err(Error::failed(format!(
                "qemu-img create failed: {}",
                String::from_utf8_lossy(&o.stderr)
            )));
        }
        let serial_log = spec.work.join("serial.log");
        let port = free_port()?;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-name",
            "clawimg-test",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
        ]);
        cmd.args(["-machine", &format!("q35,accel={accel}")]);
        cmd.args(["-cpu", if accel == "kvm" { "host" } else { "max" }]);
        cmd.args(["-smp", "2", "-m", &spec.memory_mib.to_string()]);
        let sock = spec.work.join("console.sock");
        let _ = std::fs::remove_file(&sock);
        // sun_path holds 108 bytes; a longer scratch path gets a log-only console.
        let console = (sock.as_os_str().len() < 100).then_some(sock);
        match &console {
            Some(sock) => {
                cmd.arg("-chardev").arg(format!(
                    "socket,id=con0,path={},server=on,wait=off,logfile={}",
                    sock.display(),
                    serial_log.display()
                ));
                cmd.args(["-serial", "chardev:con0"]);
            }
            None => {
                cmd.arg("-serial")
                    .arg(format!("file:{}", serial_log.display()));
            }
        }
        cmd.arg("-drive").arg(format!(
            "if=none,id=d0,file={},format=qcow2,cache=unsafe,discard=unmap",
            overlay.display()
        ));
        match spec.bus {
            DiskBus::Virtio => cmd.args(["-device", "virtio-blk-pci,drive=d0"]),
            DiskBus::Nvme => cmd.args(["-device", "nvme,drive=d0,serial=clawimg0"]),
        };
        for (i, d) in extra_disks.iter().enumerate() {
            cmd.arg("-drive").arg(format!(
                "if=none,id=x{i},file={},format=raw,readonly=on",
                d.display()
            ));
            cmd.args(["-device", &format!("virtio-blk-pci,drive=x{i}")]);
        }
        cmd.args([
            "-netdev",
            &format!(
                "user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:{}",
                spec.guest_ssh_port
            ),
        ]);
        cmd.args(["-device", "virtio-net-pci,netdev=n0"]);
        cmd.args(["-device", "virtio-rng-pci"]);
        let cred = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(spec.authorized_key.trim())
        };
        cmd.args([
            "-smbios",
            &format!("type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root={cred}"),
        ]);
        if spec.firmware == Firmware::Uefi {
            let vars = spec.work.join("OVMF_VARS.fd");
            std::fs::copy(OVMF_VARS, &vars).ctx(|| format!("copy {OVMF_VARS}"))?;
            cmd.arg("-drive").arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            ));
            cmd.arg("-drive").arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it makes the kernel kill QEMU if we die.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            Error::tool(format!(
                "cannot start qemu-system-x86_64: {e} (install package `qemu-system-x86`)"
            ))
        })?;
        Ok(Vm {
            child: Some(child),
            ssh_port: port,
            serial_log,
            console,
            accel,
            key: key.to_path_buf(),
            user: user.to_string(),
        })
    }

    /// Last `n` lines of the serial console.
    pub fn serial_tail(&self, n: usize) -> String {
        let text = std::fs::read(&self.serial_log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                Some(format!("QEMU exited ({st}): {}", err.trim()))
            }
            _ => None,
        }
    }

    /// Run a command over SSH in the guest (no stdin; output captured).
    pub fn ssh(&self, command: &str, timeout: Duration) -> Result<Output> {
        self.ssh_as(&self.user, &[], command, timeout)
    }

    /// Like [`Vm::ssh`], as another user and with extra `ssh` options (for login refusal checks).
    pub fn ssh_as(
        &self,
        user: &str,
        options: &[&str],
        command: &str,
        timeout: Duration,
    ) -> Result<Output> {
        let mut cmd = Command::new("ssh");
        cmd.args(options);
        cmd.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &format!("ConnectTimeout={}", timeout.as_secs().clamp(1, 30)),
            "-o",
            "ServerAliveInterval=10",
            "-i",
        ]);
        cmd.arg(&self.key)
            .args(["-p", &self.ssh_port.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .arg(command);
        cmd.stdin(Stdio::null());
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ctx(|| "run ssh".into())?;
        wait_with_timeout(child, timeout)
    }

    /// Wait until SSH answers, or fail with the serial console's tail.
    pub fn wait_ssh(&mut self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if let Some(msg) = self.exited() {
                return Err(Error::failed(format!(
                    "{msg}\n--- serial console (tail) ---\n{}",
                    self.serial_tail(30)
                )));
            }
            if let Ok(o) = self.ssh("true", Duration::from_secs(20)) {
                if o.status.success() {
                    return Ok(start.elapsed());
                }
            }
            if start.elapsed() > timeout {
                return Err(Error::failed(format!(
                    "no SSH after {}s ({} accel)\n--- serial console (tail) ---\n{}",
                    timeout.as_secs(),
                    self.accel,
                    self.serial_tail(40)
                )));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Stop QEMU now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait for a child with a deadline; kill it when the deadline passes.
pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> Result<Output> {
    let start = Instant::now();
    loop {
        match child.try_wait().ctx(|| "wait".into())? {
            Some(_) => return child.wait_with_output().ctx(|| "collect output".into()),
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let out = child.wait_with_output().ctx(|| "collect output".into())?;
                return Err(Error::failed(format!(
                    "timed out after {}s; output so far: {}",
                    timeout.as_secs(),
                    String::from_utf8_lossy(&out.stdout).trim()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
