//! `[firewall]`: UFW written offline so it is **active on first boot** without `ufw enable`
//! (seed 001 §2.4, seed 000 Step 2). clawimg writes `ENABLED=yes` in `/etc/ufw/ufw.conf`, the
//! default policies and `IPV6=` in `/etc/default/ufw`, the rules into `user.rules` and
//! `user6.rules` in UFW's own format (`### tuple ###` lines that `ufw status` reads, followed by
//! the iptables lines `ufw-init` restores), and enables `ufw.service`. `before.rules` and the
//! other package files stay untouched.
//!
//! Sources are `any`, an address, a CIDR, or `@name` for a CIDR list file pinned in the
//! profile by sha256 (e.g. Cloudflare's published ranges).

use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::support::rootfs::Rootfs;
use crate::support::systemd;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// The `[firewall]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Firewall {
    /// UFW active from the first boot.
    pub enabled: bool,
    /// Also filter IPv6 (`IPV6=yes` in /etc/default/ufw); seed 000 offers turning it off.
    pub ipv6: bool,
    /// Policy for incoming traffic: `deny`, `reject` or `allow`.
    pub default_incoming: String,
    /// Policy for outgoing traffic.
    pub default_outgoing: String,
    /// Named rules, applied in name order.
    pub rules: BTreeMap<String, Rule>,
    /// Named CIDR list files (relative to the profiles directory), pinned by sha256.
    pub lists: BTreeMap<String, CidrList>,
}

impl Default for Firewall {
    fn default() -> Self {
        Firewall {
            enabled: true,
            ipv6: true,
            default_incoming: "deny".into(),
            default_outgoing: "allow".into(),
            rules: BTreeMap::new(),
            lists: BTreeMap::new(),
        }
    }
}

/// One incoming rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Rule {
    /// `allow`, `limit` (allow, but reject a source after 6 connections in 30 s), `deny`, `reject`.
    pub action: String,
    /// Destination ports (several need `proto` tcp or udp).
    pub ports: Vec<u16>,
    /// `tcp`, `udp` or `any`.
    pub proto: String,
    /// Sources: `any`, an address, a CIDR or `@list`; empty means anywhere.
    pub from: Vec<String>,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            action: "allow".into(),
            ports: vec![],
            proto: "tcp".into(),
            from: vec![],
        }
    }
}

/// A CIDR list file kept in the repository.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CidrList {
    /// Path relative to the profiles directory; one CIDR per line, `#` comments.
    pub file: String,
    /// sha256 of the file; a mismatch refuses the build.
    pub sha256: String,
}

/// A rule for one source and address family, as UFW stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UfwRule {
    /// allow, limit, deny, reject.
    pub action: String,
    /// tcp, udp, any.
    pub proto: String,
    /// `222` or `80,443`.
    pub dport: String,
    /// Source (`0.0.0.0/0` / `::/0` for anywhere).
    pub src: String,
    /// IPv6 rule (user6.rules).
    pub v6: bool,
}

impl UfwRule {
    fn any_src(&self) -> bool {
        self.src == "0.0.0.0/0" || self.src == "::/0"
    }

    /// The `### tuple ###` line and the iptables lines, exactly as ufw 0.36 writes them.
    pub fn render(&self) -> String {
        let chain = if self.v6 { "ufw6" } else { "ufw" };
        let dst = if self.v6 { "::/0" } else { "0.0.0.0/0" };
        let mut s = format!(
            "\n### tuple ### {} {} {} {dst} any {} in\n",
            self.action, self.proto, self.dport, self.src
        );
        let protos: Vec<&str> = if self.proto == "any" {
            vec!["tcp", "udp"]
        } else {
            vec![self.proto.as_str()]
        };
        for p in protos {
            let mut m = format!("-A {chain}-user-input -p {p}");
            if self.dport.contains(',') {
                m.push_str(&format!(" -m multiport --dports {}", self.dport));
            } else {
                m.push_str(&format!(" --dport {}", self.dport));
            }
            if !self.any_src() {
                m.push_str(&format!(" -s {}", self.src));
            }
            match self.action.as_str() {
                "allow" => s.push_str(&format!("{m} -j ACCEPT\n")),
                "deny" => s.push_str(&format!("{m} -j DROP\n")),
                "reject" if p == "tcp" => {
                    s.push_str(&format!("{m} -j REJECT --reject-with tcp-reset\n"))
                }
                "reject" => s.push_str(&format!("{m} -j REJECT\n")),
                _ => {
                    s.push_str(&format!("{m} -m conntrack --ctstate NEW -m recent --set\n"));
                    s.push_str(&format!("{m} -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 -j {chain}-user-limit\n"));
                    s.push_str(&format!("{m} -j {chain}-user-limit-accept\n"));
                }
            }
        }
        s
    }

    /// How `ufw status verbose` shows the rule, whitespace collapsed and ` (v6)` dropped.
    pub fn status_line(&self) -> String {
        let to = if self.proto == "any" {
            self.dport.clone()
        } else {
            format!("{}/{}", self.dport, self.proto)
        };
        let from = if self.any_src() {
            "Anywhere".to_string()
        } else {
            self.src.clone()
        };
        format!("{to} {} IN {from}", self.action.to_uppercase())
    }

    /// Whether this rule admits new TCP connections to `port`.
    pub fn admits_tcp(&self, port: u16) -> bool {
        matches!(self.action.as_str(), "allow" | "limit")
            && self.proto != "udp"
            && self.dport.split(',').any(|p| p == port.to_string())
    }
}

/// Read and verify a pinned CIDR list.
pub fn read_list(dir: &Path, name: &str, l: &CidrList) -> Result<Vec<String>> {
    let key = format!("firewall.lists.{name}");
    let path = dir.join(&l.file);
    let data = std::fs::read(&path).map_err(|e| {
        Error::config(format!(
            "key `{key}.file`: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let sum = hex::encode(Sha256::digest(&data));
    if !sum.eq_ignore_ascii_case(l.sha256.trim()) {
        return Err(Error::config(format!(
            "key `{key}.sha256`: {} has sha256 {sum}, the profile pins {:?}; review the new list, then update the pin",
            path.display(),
            l.sha256
        )));
    }
    let mut v = vec![];
    for (i, line) in String::from_utf8_lossy(&data).lines().enumerate() {
        let t = line.split('#').next().unwrap_or("").trim();
        if t.is_empty() {
            continue;
        }
        parse_source(t).ok_or_else(|| {
            Error::config(format!(
                "{}:{}: {t:?} is not an address or CIDR",
                path.display(),
                i + 1
            ))
        })?;
        v.push(t.to_string());
    }
    Ok(v)
}

/// Parse an address or CIDR; returns whether it is IPv6.
pub fn parse_source(s: &str) -> Option<bool> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv6() { 128 } else { 32 };
    if len.is_some_and(|l| l > max) {
        return None;
    }
    Some(ip.is_ipv6())
}

impl Firewall {
    /// Expand every rule into per-source, per-family UFW rules (reads and verifies list files).
    pub fn resolve(&self, dir: &Path) -> Result<Vec<UfwRule>> {
        for (k, v) in [
            ("default_incoming", &self.default_incoming),
            ("default_outgoing", &self.default_outgoing),
        ] {
            if !["deny", "reject", "allow"].contains(&v.as_str()) {
                return Err(Error::config(format!(
                    "key `firewall.{k}`: expected deny, reject or allow, found {v:?}"
                )));
            }
        }
        let mut lists = BTreeMap::new();
        for (name, l) in &self.lists {
            lists.insert(name.clone(), read_list(dir, name, l)?);
        }
        let mut out = vec![];
        for (name, r) in &self.rules {
            let key = format!("firewall.rules.{name}");
            if !["allow", "limit", "deny", "reject"].contains(&r.action.as_str()) {
                return Err(Error::config(format!(
                    "key `{key}.action`: expected allow, limit, deny or reject, found {:?}",
                    r.action
                )));
            }
            if !["tcp", "udp", "any"].contains(&r.proto.as_str()) {
                return Err(Error::config(format!(
                    "key `{key}.proto`: expected tcp, udp or any, found {:?}",
                    r.proto
                )));
            }
            if r.ports.is_empty() || r.ports.contains(&0) {
                return Err(Error::config(format!(
                    "key `{key}.ports`: expected one or more ports (1-65535)"
                )));
            }
            if r.ports.len() > 1 && r.proto == "any" {
                return Err(Error::config(format!(
                    "key `{key}.proto`: several ports need proto tcp or udp (UFW multiport)"
                )));
            }
            let dport = r
                .ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut sources: Vec<(String, bool)> = vec![];
            let from = if r.from.is_empty() {
                vec!["any".to_string()]
            } else {
                r.from.clone()
            };
            for f in &from {
                if f == "any" {
                    sources.push(("0.0.0.0/0".into(), false));
                    if self.ipv6 {
                        sources.push(("::/0".into(), true));
                    }
                } else if let Some(list) = f.strip_prefix('@') {
                    let cidrs = lists.get(list).ok_or_else(|| {
                        Error::config(format!(
                            "key `{key}.from`: no list `{list}` in [firewall.lists]"
                        ))
                    })?;
                    for c in cidrs {
                        let v6 = parse_source(c).unwrap_or(false);
                        if !v6 || self.ipv6 {
                            sources.push((c.clone(), v6));
                        }
                    }
                } else {
                    let v6 = parse_source(f).ok_or_else(|| {
                        Error::config(format!(
                            "key `{key}.from`: {f:?} is not `any`, an address, a CIDR or `@list`"
                        ))
                    })?;
                    if v6 && !self.ipv6 {
                        return Err(Error::config(format!(
                            "key `{key}.from`: {f} is IPv6 but firewall.ipv6 = false"
                        )));
                    }
                    sources.push((f.clone(), v6));
                }
            }
            for (src, v6) in sources {
                out.push(UfwRule {
                    action: r.action.clone(),
                    proto: r.proto.clone(),
                    dport: dport.clone(),
                    src,
                    v6,
                });
            }
        }
        Ok(out)
    }

    /// Whether any rule admits TCP to `port` (for the lints; lists count as sources).
    pub fn admits_tcp(&self, port: u16) -> bool {
        self.rules.values().any(|r| {
            matches!(r.action.as_str(), "allow" | "limit")
                && r.proto != "udp"
                && r.ports.contains(&port)
        })
    }
}

fn policy(p: &str) -> &'static str {
    match p {
        "allow" => "ACCEPT",
        "reject" => "REJECT",
        _ => "DROP",
    }
}

fn set_kv(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with(&format!("{key}=")) {
                found = true;
                format!("{key}={value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        lines.push(format!("{key}={value}"));
    }
    lines.join("\n") + "\n"
}

/// Insert rules into a user.rules template right after `### RULES ###`.
pub fn user_rules(template: &str, rules: &[UfwRule]) -> Result<String> {
    let marker = "### RULES ###\n";
    let at = template
        .find(marker)
        .ok_or_else(|| Error::failed("ufw user.rules template has no `### RULES ###` line"))?
        + marker.len();
    let body: String = rules.iter().map(UfwRule::render).collect();
    Ok(format!(
        "{}{body}\n### END RULES ###\n{}",
        &template[..at],
        &template[at..]
    ))
}

/// Write UFW's configuration into the image; returns the paths written.
pub fn apply(root: &Rootfs, fw: &Firewall, rules: &[UfwRule]) -> Result<Vec<String>> {
    let mut paths = vec![];
    for (file, v6) in [("user.rules", false), ("user6.rules", true)] {
        let tpl_path = format!("/usr/share/ufw/iptables/{file}");
        let template = root.read_to_string(&tpl_path).map_err(|_| {
            Error::config(format!(
                "{tpl_path} missing: the firewall section needs package `ufw` in base.packages"
            ))
        })?;
        let mine: Vec<UfwRule> = rules.iter().filter(|r| r.v6 == v6).cloned().collect();
        let text = user_rules(&template, &mine)?;
        let path = format!("/etc/ufw/{file}");
        root.write(&path, text.as_bytes(), 0o640)?;
        paths.push(path);
    }
    let conf = root.read_to_string("/etc/ufw/ufw.conf").unwrap_or_default();
    root.write(
        "/etc/ufw/ufw.conf",
        set_kv(&conf, "ENABLED", if fw.enabled { "yes" } else { "no" }).as_bytes(),
        0o644,
    )?;
    let mut d = root.read_to_string("/etc/default/ufw").unwrap_or_default();
    d = set_kv(&d, "IPV6", if fw.ipv6 { "yes" } else { "no" });
    d = set_kv(
        &d,
        "DEFAULT_INPUT_POLICY",
        &format!("\"{}\"", policy(&fw.default_incoming)),
    );
    d = set_kv(
        &d,
        "DEFAULT_OUTPUT_POLICY",
        &format!("\"{}\"", policy(&fw.default_outgoing)),
    );
    root.write("/etc/default/ufw", d.as_bytes(), 0o644)?;
    paths.extend([
        "/etc/ufw/ufw.conf".to_string(),
        "/etc/default/ufw".to_string(),
    ]);
    if fw.enabled {
        paths.extend(systemd::enable(root, "ufw.service")?);
    }
    Ok(paths)
}

/// Probes: UFW active with the declared defaults, exactly the declared rules, rules loaded in
/// the kernel.
pub fn probes(fw: &Firewall, rules: &[UfwRule]) -> Vec<Probe> {
    if !fw.enabled {
        return vec![Probe::new(
            "ufw inactive as declared",
            "sudo -n ufw status | head -1",
            Expect::Equals("Status: inactive".into()),
        )];
    }
    let mut expected: Vec<String> = rules.iter().map(UfwRule::status_line).collect();
    expected.sort();
    let ipt_lines = |v6: bool| {
        rules
            .iter()
            .filter(|r| r.v6 == v6)
            .map(|r| r.render().lines().filter(|l| l.starts_with("-A")).count())
            .sum::<usize>()
    };
    let mut v = vec![
        Probe::new("ufw active", "sudo -n ufw status verbose | head -1", Expect::Equals("Status: active".into())),
        Probe::new(
            "ufw defaults",
            "sudo -n ufw status verbose | grep '^Default:'",
            Expect::Contains(format!("{} (incoming), {} (outgoing)", fw.default_incoming, fw.default_outgoing)),
        ),
        Probe::new(
            "ufw rules exactly as declared",
            "sudo -n ufw status verbose | awk 'f && NF {print} /^--/ {f=1}' | sed 's/ (v6)//g' | tr -s ' ' | sed 's/ *$//' | sort",
            Expect::Equals(expected.join("\n")),
        ),
        Probe::new(
            "ufw rules live (iptables)",
            "sudo -n iptables -S ufw-user-input | grep -c '^-A ufw-user-input' || true",
            Expect::Equals(ipt_lines(false).to_string()),
        ),
    ];
    if fw.ipv6 {
        v.push(Probe::new(
            "ufw rules live (ip6tables)",
            "sudo -n ip6tables -S ufw6-user-input | grep -c '^-A ufw6-user-input' || true",
            Expect::Equals(ipt_lines(true).to_string()),
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_ufw() {
        // Expected strings produced by ufw 0.36.2's own UFWRule.format_rule and
        // _get_rules_from_formatted (noble), for each rule kind clawimg writes.
        let r = UfwRule {
            action: "allow".into(),
            proto: "tcp".into(),
            dport: "222".into(),
            src: "10.0.2.2".into(),
            v6: false,
        };
        assert_eq!(r.render(), "\n### tuple ### allow tcp 222 0.0.0.0/0 any 10.0.2.2 in\n-A ufw-user-input -p tcp --dport 222 -s 10.0.2.2 -j ACCEPT\n");
        let r = UfwRule {
            action: "limit".into(),
            proto: "tcp".into(),
            dport: "9922".into(),
            src: "203.0.113.0/24".into(),
            v6: false,
        };
        assert_eq!(
            r.render(),
            "\n### tuple ### limit tcp 9922 0.0.0.0/0 any 203.0.113.0/24 in\n\
             -A ufw-user-input -p tcp --dport 9922 -s 203.0.113.0/24 -m conntrack --ctstate NEW -m recent --set\n\
             -A ufw-user-input -p tcp --dport 9922 -s 203.0.113.0/24 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 -j ufw-user-limit\n\
             -A ufw-user-input -p tcp --dport 9922 -s 203.0.113.0/24 -j ufw-user-limit-accept\n"
        );
        let r = UfwRule {
            action: "allow".into(),
            proto: "tcp".into(),
            dport: "80,443".into(),
            src: "2400:cb00::/32".into(),
            v6: true,
        };
        assert_eq!(r.render(), "\n### tuple ### allow tcp 80,443 ::/0 any 2400:cb00::/32 in\n-A ufw6-user-input -p tcp -m multiport --dports 80,443 -s 2400:cb00::/32 -j ACCEPT\n");
        let r = UfwRule {
            action: "allow".into(),
            proto: "any".into(),
            dport: "53".into(),
            src: "0.0.0.0/0".into(),
            v6: false,
        };
        assert_eq!(r.render(), "\n### tuple ### allow any 53 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 53 -j ACCEPT\n-A ufw-user-input -p udp --dport 53 -j ACCEPT\n");
        let r = UfwRule {
            action: "reject".into(),
            proto: "tcp".into(),
            dport: "25".into(),
            src: "0.0.0.0/0".into(),
            v6: false,
        };
        assert_eq!(r.render(), "\n### tuple ### reject tcp 25 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 25 -j REJECT --reject-with tcp-reset\n");
        assert_eq!(r.status_line(), "25/tcp REJECT IN Anywhere");
    }

    #[test]
    fn resolves_lists_and_families() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("l.txt"),
            "# test\n192.0.2.0/24\n2001:db8::/32\n",
        )
        .unwrap();
        let sum = hex::encode(Sha256::digest(
            std::fs::read(t.path().join("l.txt")).unwrap(),
        ));
        let mut fw = Firewall::default();
        fw.lists.insert(
            "l".into(),
            CidrList {
                file: "l.txt".into(),
                sha256: sum,
            },
        );
        fw.rules.insert(
            "web".into(),
            Rule {
                ports: vec![80, 443],
                from: vec!["@l".into()],
                ..Default::default()
            },
        );
        fw.rules.insert(
            "ssh".into(),
            Rule {
                action: "limit".into(),
                ports: vec![9922],
                ..Default::default()
            },
        );
        let r = fw.resolve(t.path()).unwrap();
        assert_eq!(r.len(), 4);
        assert!(r
            .iter()
            .any(|x| x.v6 && x.src == "::/0" && x.action == "limit"));
        fw.ipv6 = false;
        assert_eq!(fw.resolve(t.path()).unwrap().len(), 2);
        fw.lists.get_mut("l").unwrap().sha256 = "00".repeat(32);
        assert!(fw.resolve(t.path()).unwrap_err().message.contains("sha256"));
    }

    #[test]
    fn template_insertion() {
        let tpl = "*filter\n:ufw-user-input - [0:0]\n### RULES ###\n-A ufw-user-limit -j REJECT\nCOMMIT\n";
        let r = UfwRule {
            action: "allow".into(),
            proto: "tcp".into(),
            dport: "222".into(),
            src: "0.0.0.0/0".into(),
            v6: false,
        };
        let out = user_rules(tpl, &[r]).unwrap();
        assert!(
            out.contains("### RULES ###\n\n### tuple ### allow tcp 222"),
            "{out}"
        );
        assert!(
            out.ends_with("### END RULES ###\n-A ufw-user-limit -j REJECT\nCOMMIT\n"),
            "{out}"
        );
    }
}
