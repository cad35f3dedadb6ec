//! Running probes in a booted VM: the probes every image must pass for a boot
//! configuration, each probe over SSH with its expectation, and the host-side login checks.

use crate::image::probes::{Expect, Outcome, Probe};
use crate::ops::test::qemu::{DiskBus, Firmware, Vm};
use std::time::{Duration, Instant};

/// The probes every clawimg image must pass, for the given boot configuration.
pub fn base_probes(firmware: Firmware, bus: DiskBus, min_root_bytes: Option<u64>) -> Vec<Probe> {
    let mut v = vec![
        Probe {
            name: "system running".into(),
            command: "timeout 300 systemctl is-system-running --wait".into(),
            expect: Expect::Equals("running".into()),
            on_failure: Some(
                "systemctl --failed --no-legend --plain; for u in $(systemctl --failed --no-legend --plain | awk '{print $1}'); do echo \"--- journal: $u\"; sudo -n journalctl -b -u \"$u\" -n 25 --no-pager; done".into(),
            ),
        },
        Probe::new(
            "firmware",
            "if [ -d /sys/firmware/efi ]; then echo uefi; else echo bios; fi",
            Expect::Equals(match firmware {
                Firmware::Bios => "bios".into(),
                Firmware::Uefi => "uefi".into(),
            }),
        ),
        Probe::new(
            "root disk bus",
            "lsblk -ndo NAME \"/dev/$(lsblk -ndo PKNAME \"$(findmnt -no SOURCE /)\")\"",
            Expect::Contains(match bus {
                DiskBus::Virtio => "vda".into(),
                DiskBus::Nvme => "nvme0n1".into(),
            }),
        ),
        Probe::new("root is ext4", "findmnt -no FSTYPE /", Expect::Equals("ext4".into())),
        Probe::new("serial console", "cat /proc/cmdline", Expect::Contains("console=ttyS0".into())),
        Probe::new("machine-id generated", "grep -Ec '^[0-9a-f]{32}$' /etc/machine-id", Expect::Equals("1".into())),
        Probe::new("ssh host keys generated", "ls /etc/ssh/ssh_host_ed25519_key.pub", Expect::Success),
        Probe::new("network via DHCP", "networkctl list --no-legend | grep -E 'routable' ", Expect::Success),
    ];
    if let Some(min) = min_root_bytes {
        v.push(Probe {
            name: "root grown".into(),
            command: "df -B1 --output=size / | tail -1 | tr -d ' '".into(),
            expect: Expect::AtLeast(min),
            on_failure: Some("lsblk; df -h /; sudo -n journalctl -b -u systemd-repart -u systemd-growfs-root --no-pager | tail -20".into()),
        });
    }
    v
}

/// Run the probes in order.
pub fn run(vm: &Vm, probes: &[Probe]) -> Vec<Outcome> {
    probes.iter().map(|p| run_one(vm, p)).collect()
}

fn run_one(vm: &Vm, p: &Probe) -> Outcome {
    let start = Instant::now();
    let res = vm.ssh(&p.command, Duration::from_secs(360));
    let (pass, detail) = match res {
        Err(e) => (false, e.to_string()),
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            let ok = o.status.success();
            let pass = match &p.expect {
                Expect::Success => ok,
                Expect::Equals(s) => ok && out == *s,
                Expect::Contains(s) => ok && out.contains(s.as_str()),
                Expect::AtLeast(n) => ok && out.parse::<u64>().is_ok_and(|v| v >= *n),
            };
            let mut shown = out.lines().next().unwrap_or("").to_string();
            if !pass {
                let want = match &p.expect {
                    Expect::Success => "exit 0".to_string(),
                    Expect::Equals(s) => format!("{s:?}"),
                    Expect::Contains(s) => format!("output containing {s:?}"),
                    Expect::AtLeast(n) => format!(">= {n}"),
                };
                shown = format!(
                    "got {:?} (exit {}), expected {want} {}",
                    out,
                    o.status.code().unwrap_or(-1),
                    err
                );
            }
            (pass, shown)
        }
    };
    let diagnostics = match (&p.on_failure, pass) {
        (Some(cmd), false) => vm
            .ssh(cmd, Duration::from_secs(60))
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string()),
        _ => String::new(),
    };
    Outcome {
        name: p.name.clone(),
        pass,
        detail,
        diagnostics,
        took: start.elapsed(),
    }
}

/// Checks run from the host (they need a second login, so they are not in-guest probes):
/// root is refused even with a key the guest accepts for root (the harness hands its key to
/// root as a credential), and the server offers no password or keyboard-interactive login.
pub fn login_checks(vm: &Vm, user: &str) -> Vec<Outcome> {
    let mut v = vec![];
    let t = Instant::now();
    let (pass, detail) = match vm.ssh_as("root", &[], "true", Duration::from_secs(60)) {
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            (
                !o.status.success() && err.contains("Permission denied"),
                if o.status.success() {
                    "root logged in".into()
                } else {
                    err
                },
            )
        }
        Err(e) => (false, e.to_string()),
    };
    v.push(Outcome {
        name: "root login refused (key)".into(),
        pass,
        detail,
        diagnostics: String::new(),
        took: t.elapsed(),
    });
    let t = Instant::now();
    let opts = [
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
    ];
    let (pass, detail) = match vm.ssh_as(user, &opts, "true", Duration::from_secs(60)) {
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            // sshd lists the methods it still accepts: "Permission denied (publickey)."
            let methods = err
                .split("Permission denied (")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap_or("")
                .to_string();
            let ok = !o.status.success()
                && !methods.is_empty()
                && !methods.contains("password")
                && !methods.contains("keyboard-interactive");
            (
                ok,
                if ok {
                    format!("server offers only: {methods}")
                } else {
                    err
                },
            )
        }
        Err(e) => (false, e.to_string()),
    };
    v.push(Outcome {
        name: format!("password login refused ({user})"),
        pass,
        detail,
        diagnostics: String::new(),
        took: t.elapsed(),
    });
    v
}
