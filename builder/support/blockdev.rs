//! Is a block device in use? Its partitions and everything stacked on them (the holders in
//! sysfs: device-mapper, LVM, dm-crypt, md) are checked against the mount table, active
//! swap and the running root. The facts come from the local `/sys` and `/proc`, or as text
//! from a rescue system over SSH ([`FACTS_SCRIPT`]); one set of rules judges both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One block device as sysfs shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// `major:minor`.
    pub dev: String,
    /// Partitions of this device (names).
    pub partitions: Vec<String>,
    /// Devices stacked on this one (`holders/`).
    pub holders: Vec<String>,
    /// Device-mapper name (LVM volume, dm-crypt mapping), if any.
    pub dm_name: Option<String>,
}

/// Everything needed to decide whether a device is in use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Block devices by kernel name.
    pub devices: BTreeMap<String, Node>,
    /// Mounts: (`major:minor`, mount point, source).
    pub mounts: Vec<(String, String, String)>,
    /// Active swap areas (paths as the kernel lists them, resolved where possible).
    pub swaps: Vec<String>,
    /// `major:minor` of the filesystem holding `/`.
    pub root: Option<String>,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every block device under `SYS/class/block`, with its partitions, holders and
/// device-mapper name. `sys` is `/sys` on a host, or a faked tree in a test.
pub fn read_sysfs(sys: &Path) -> BTreeMap<String, Node> {
    let class = sys.join("class/block");
    let mut out = BTreeMap::new();
    for name in names(&class) {
        let d = class.join(&name);
        let Some(dev) = read(&d.join("dev")) else {
            continue;
        };
        let partitions = names(&d)
            .into_iter()
            .filter(|p| d.join(p).join("partition").exists())
            .collect();
        out.insert(
            name,
            Node {
                dev,
                partitions,
                holders: names(&d.join("holders")),
                dm_name: read(&d.join("dm/name")).filter(|s| !s.is_empty()),
            },
        );
    }
    out
}

/// Mounts from `/proc/self/mountinfo` text: (`major:minor`, mount point, source).
pub fn parse_mountinfo(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((
                f.get(2)?.to_string(),
                f.get(4)?.replace("\\040", " "),
                f.get(sep + 2).unwrap_or(&"").to_string(),
            ))
        })
        .collect()
}

/// `major:minor` of a device number as `stat` reports it (glibc's encoding).
pub fn majmin(dev: u64) -> String {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    format!("{major}:{minor}")
}

/// The facts of this host: `sys` is normally `/sys`, `proc` normally `/proc`.
pub fn local_facts(sys: &Path, proc: &Path) -> Facts {
    use std::os::unix::fs::MetadataExt;
    let swaps = read(&proc.join("swaps"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|s| {
            Path::new(s)
                .canonicalize()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| s.to_string())
        })
        .collect();
    Facts {
        devices: read_sysfs(sys),
        mounts: parse_mountinfo(&read(&proc.join("self/mountinfo")).unwrap_or_default()),
        swaps,
        root: std::fs::metadata("/").ok().map(|m| majmin(m.dev())),
    }
}

/// A POSIX `sh` script printing the same facts on a remote host, one per line:
/// `B NAME MAJ:MIN PARTS HOLDERS DMNAME` (comma lists, `-` for none), `M MOUNTINFO-LINE`,
/// `S SWAP-PATH`, `R DEVNUM-OF-/`.
pub const FACTS_SCRIPT: &str = r#"for d in /sys/class/block/*; do
  [ -r "$d/dev" ] || continue
  n=${d##*/}; parts=; hold=
  for q in "$d"/*/partition; do [ -e "$q" ] && { q=${q%/partition}; parts="$parts,${q##*/}"; }; done
  for h in "$d"/holders/*; do [ -e "$h" ] && hold="$hold,${h##*/}"; done
  dm=$(cat "$d/dm/name" 2>/dev/null || true); parts=${parts#,}; hold=${hold#,}
  echo "B $n $(cat "$d/dev") ${parts:--} ${hold:--} ${dm:--}"
done
while read -r l; do echo "M $l"; done </proc/self/mountinfo
tail -n +2 /proc/swaps | while read -r s rest; do echo "S $(readlink -f "$s" 2>/dev/null || echo "$s")"; done
echo "R $(stat -c %d /)"
"#;

/// Parse the output of [`FACTS_SCRIPT`] (other lines are ignored).
pub fn parse_facts(text: &str) -> Facts {
    let mut f = Facts::default();
    let list = |s: &str| -> Vec<String> {
        if s == "-" {
            vec![]
        } else {
            s.split(',').map(str::to_string).collect()
        }
    };
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("B ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            if w.len() >= 5 {
                f.devices.insert(
                    w[0].to_string(),
                    Node {
                        dev: w[1].to_string(),
                        partitions: list(w[2]),
                        holders: list(w[3]),
                        dm_name: (w[4] != "-").then(|| w[4..].join(" ")),
                    },
                );
            }
        } else if let Some(rest) = l.strip_prefix("M ") {
            f.mounts.extend(parse_mountinfo(rest));
        } else if let Some(rest) = l.strip_prefix("S ") {
            f.swaps.push(rest.trim().to_string());
        } else if let Some(rest) = l.strip_prefix("R ") {
            f.root = rest.trim().parse::<u64>().ok().map(majmin);
        }
    }
    f
}

/// `name`, its partitions and every device stacked on them, each with the path that leads
/// there (`sda → sda2 → dm-0`). Cycles (which sysfs never has) end the walk.
pub fn stack(devices: &BTreeMap<String, Node>, name: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut seen = BTreeSet::new();
    let mut todo = vec![(name.to_string(), name.to_string())];
    while let Some((n, path)) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(node) = devices.get(&n) {
            for next in node.partitions.iter().chain(&node.holders).rev() {
                todo.push((next.clone(), format!("{path} → {next}")));
            }
        }
        out.push((n, path));
    }
    out
}

impl Facts {
    /// Why writing to device `name` would destroy something in use: each reason names the
    /// path from `name` to what holds it. Empty when the device is free.
    pub fn in_use(&self, name: &str) -> Vec<String> {
        let mut why = vec![];
        for (dev, path) in stack(&self.devices, name) {
            let node = self.devices.get(&dev);
            let label = match node.and_then(|n| n.dm_name.as_deref()) {
                Some(dm) => format!("{path} ({dm})"),
                None => path.clone(),
            };
            let majmin = node.map(|n| n.dev.as_str()).unwrap_or("");
            let by_name = |src: &str| {
                src.strip_prefix("/dev/").is_some_and(|s| {
                    s == dev
                        || node
                            .and_then(|n| n.dm_name.as_deref())
                            .is_some_and(|dm| s == format!("mapper/{dm}"))
                })
            };
            if let Some((_, mnt, _)) = self
                .mounts
                .iter()
                .find(|(mm, _, src)| (!majmin.is_empty() && mm == majmin) || by_name(src))
            {
                if mnt == "/" {
                    why.push(format!("{label} holds the running root filesystem (/)"));
                } else {
                    why.push(format!("{label} is mounted at {mnt}"));
                }
            } else if !majmin.is_empty() && self.root.as_deref() == Some(majmin) {
                why.push(format!("{label} holds the running root filesystem (/)"));
            }
            if self.swaps.iter().any(|s| by_name(s)) {
                why.push(format!("{label} is active swap"));
            }
            if let Some(n) = node {
                for h in &n.holders {
                    let kind = match self.devices.get(h).and_then(|x| x.dm_name.as_deref()) {
                        Some(dm) => format!("device-mapper `{dm}`"),
                        None if h.starts_with("md") => "an md array".to_string(),
                        None => "another device".to_string(),
                    };
                    why.push(format!(
                        "{path} is held by {h} ({kind}); deactivate it first (umount, swapoff, vgchange -an, cryptsetup close, mdadm --stop)"
                    ));
                }
            }
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A faked sysfs: sda with sda1 and sda2; sda2 under dm-0 (LVM `vg-root`), which holds
    /// dm-1 (dm-crypt `data`); sdb free; loop0 under md0.
    fn fake_sys(root: &Path) {
        let class = root.join("class/block");
        let dev = |name: &str, mm: &str| {
            fs::create_dir_all(class.join(name).join("holders")).unwrap();
            fs::write(class.join(name).join("dev"), format!("{mm}\n")).unwrap();
        };
        for (n, mm) in [
            ("sda", "8:0"),
            ("sda1", "8:1"),
            ("sda2", "8:2"),
            ("sdb", "8:16"),
            ("dm-0", "253:0"),
            ("dm-1", "253:1"),
            ("loop0", "7:0"),
            ("md0", "9:0"),
        ] {
            dev(n, mm);
        }
        for p in ["sda1", "sda2"] {
            fs::create_dir_all(class.join("sda").join(p)).unwrap();
            fs::write(class.join("sda").join(p).join("partition"), "1\n").unwrap();
        }
        let hold = |lower: &str, upper: &str| {
            fs::create_dir_all(class.join(lower).join("holders").join(upper)).unwrap();
        };
        hold("sda2", "dm-0");
        hold("dm-0", "dm-1");
        hold("loop0", "md0");
        for (n, dm) in [("dm-0", "vg-root"), ("dm-1", "data")] {
            fs::create_dir_all(class.join(n).join("dm")).unwrap();
            fs::write(class.join(n).join("dm/name"), format!("{dm}\n")).unwrap();
        }
    }

    fn facts(sys: &Path, mountinfo: &str, swaps: &[&str], root: Option<&str>) -> Facts {
        Facts {
            devices: read_sysfs(sys),
            mounts: parse_mountinfo(mountinfo),
            swaps: swaps.iter().map(|s| s.to_string()).collect(),
            root: root.map(str::to_string),
        }
    }

    #[test]
    fn the_walk_follows_partitions_and_holders_in_a_faked_sys() {
        let t = tempfile::tempdir().unwrap();
        fake_sys(t.path());
        let d = read_sysfs(t.path());
        assert_eq!(d["sda"].partitions, ["sda1", "sda2"]);
        assert_eq!(d["dm-0"].dm_name.as_deref(), Some("vg-root"));
        let walked: Vec<String> = stack(&d, "sda").into_iter().map(|x| x.1).collect();
        assert_eq!(
            walked,
            [
                "sda",
                "sda → sda1",
                "sda → sda2",
                "sda → sda2 → dm-0",
                "sda → sda2 → dm-0 → dm-1"
            ]
        );
        // A free disk, nothing mounted: no reason.
        let f = facts(t.path(), "", &[], None);
        assert!(f.in_use("sdb").is_empty());
        assert!(f.in_use("sda1").is_empty());
    }

    #[test]
    fn mounted_swap_and_root_through_holders_are_in_use() {
        let t = tempfile::tempdir().unwrap();
        fake_sys(t.path());
        // The crypt mapping on the LVM volume on sda2 is mounted at /srv.
        let mi = "36 25 253:1 / /srv rw,relatime shared:1 - ext4 /dev/mapper/data rw\n";
        let why = facts(t.path(), mi, &[], None).in_use("sda");
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(
            why[0].contains("dm-0") && why[0].contains("vg-root") && why[0].contains("held by")
        );
        assert!(
            why.iter()
                .any(|w| w.contains("sda → sda2 → dm-0 → dm-1 (data) is mounted at /srv")),
            "{why:?}"
        );
        // The same as the running root, known as /dev/root only by its number.
        let mi = "1 0 253:1 / / rw - ext4 /dev/root rw\n";
        let why = facts(t.path(), mi, &[], None).in_use("sda");
        assert!(why.iter().any(|w| w.contains("running root")), "{why:?}");
        // Root known from stat("/") alone (a namespace without that mount line).
        let why = facts(t.path(), "", &[], Some("8:1")).in_use("sda");
        assert!(
            why.iter()
                .any(|w| w.starts_with("sda → sda1 holds the running root")),
            "{why:?}"
        );
        // Swap on a partition, by path.
        let why = facts(t.path(), "", &["/dev/sda1"], None).in_use("sda");
        assert!(
            why.iter().any(|w| w == "sda → sda1 is active swap"),
            "{why:?}"
        );
        // An md member that is not mounted is still held.
        let why = facts(t.path(), "", &[], None).in_use("loop0");
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("md0 (an md array)"), "{why:?}");
        // A mount by name only (btrfs reports an anonymous device number).
        let mi = "40 25 0:52 / /data rw - btrfs /dev/sdb rw\n";
        assert_eq!(facts(t.path(), mi, &[], None).in_use("sdb").len(), 1);
    }

    #[test]
    fn the_remote_script_output_parses_to_the_same_facts() {
        let text = "B sda 8:0 sda1,sda2 - -\nB sda1 8:1 - - -\nB sda2 8:2 - dm-0 -\n\
                    B dm-0 253:0 - - vg-root\nM 22 1 253:0 / / rw - ext4 /dev/mapper/vg-root rw\n\
                    S /dev/sda1\nR 2049\nnoise\n";
        let f = parse_facts(text);
        assert_eq!(f.devices["sda"].partitions, ["sda1", "sda2"]);
        assert_eq!(f.devices["sda2"].holders, ["dm-0"]);
        assert_eq!(f.devices["dm-0"].dm_name.as_deref(), Some("vg-root"));
        assert_eq!(f.root.as_deref(), Some("8:1"));
        let why = f.in_use("sda");
        assert!(
            why.iter().any(|w| w.contains("sda1 is active swap")),
            "{why:?}"
        );
        assert!(
            why.iter()
                .any(|w| w.contains("dm-0 (vg-root) holds the running root")),
            "{why:?}"
        );
        assert!(
            why.iter()
                .any(|w| w.contains("sda1 holds the running root")),
            "{why:?}"
        );
        assert!(parse_facts("B sdb 8:16 - - -\n").in_use("sdb").is_empty());
    }

    #[test]
    fn device_numbers_decode_like_glibc() {
        assert_eq!(majmin(0x0801), "8:1");
        assert_eq!(majmin((259 << 8) | 3), "259:3");
        assert_eq!(majmin(0xfd00), "253:0");
    }
}
