//! `[firewall]`: UFW's default policies and named rules. Sources are `any`, an address, a
//! CIDR, or `@name` for a CIDR list file pinned in the profile by sha256 (e.g. Cloudflare's
//! published ranges); [`Firewall::resolve`] expands them into the rules UFW stores.

use crate::error::{Error, Result};
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
    /// Also filter IPv6 (`IPV6=yes` in /etc/default/ufw); hosts without IPv6 may turn it off.
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
    /// Whether the rule admits every source of its family.
    pub fn any_src(&self) -> bool {
        self.src == "0.0.0.0/0" || self.src == "::/0"
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
