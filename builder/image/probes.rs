//! Probes: commands run inside a booted image over SSH, each with an expectation.
//! Later capabilities add their own probe sets; `clawimg test` runs them and prints a table.

use crate::ops::test::qemu::{DiskBus, Firmware, Vm};
use std::time::{Duration, Instant};

/// What a probe's output must satisfy.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Exit status 0.
    Success,
    /// Exit 0 and stdout (trimmed) equal to this.
    Equals(String),
    /// Exit 0 and stdout contains this.
    Contains(String),
    /// Exit 0 and stdout (trimmed) parses as an integer ≥ this.
    AtLeast(u64),
}

/// One check inside the VM.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Short name for the table.
    pub name: String,
    /// Shell command run as the SSH user.
    pub command: String,
    /// Expected result.
    pub expect: Expect,
    /// Extra command run when the probe fails; its output is shown (e.g. journal tails).
    pub on_failure: Option<String>,
}

/// A probe's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Probe name.
    pub name: String,
    /// Passed?
    pub pass: bool,
    /// What was seen (first line) or why it failed.
    pub detail: String,
    /// Diagnostics gathered on failure.
    pub diagnostics: String,
    /// Time taken.
    pub took: Duration,
}

impl Probe {
    /// A probe with no failure diagnostics.
    pub fn new(name: &str, command: &str, expect: Expect) -> Self {
        Probe {
            name: name.into(),
            command: command.into(),
            expect,
            on_failure: None,
        }
    }
}

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

/// The pass/fail table.
pub fn table(title: &str, outcomes: &[Outcome]) -> String {
    let w = outcomes
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(4)
        .max(5);
    let mut s = format!("{title}\n  {:<w$}  RESULT  DETAIL\n", "PROBE");
    for o in outcomes {
        let d: String = o.detail.chars().take(100).collect();
        s.push_str(&format!(
            "  {:<w$}  {}    {}\n",
            o.name,
            if o.pass { "pass" } else { "FAIL" },
            d
        ));
        if !o.diagnostics.is_empty() {
            for l in o.diagnostics.lines() {
                s.push_str(&format!("  {:<w$}        | {l}\n", ""));
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.pass).count();
    s.push_str(&format!(
        "{} of {} probes passed{}\n",
        outcomes.len() - failed,
        outcomes.len(),
        if failed > 0 {
            format!(", {failed} FAILED")
        } else {
            String::new()
        }
    ));
    s
}
