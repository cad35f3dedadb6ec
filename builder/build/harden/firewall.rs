//! `[firewall]`: UFW written offline so it is **active on first boot** without `ufw enable`.
//! clawimg writes `ENABLED=yes` in `/etc/ufw/ufw.conf`, the default policies and `IPV6=` in
//! `/etc/default/ufw`, the rules into `user.rules` and `user6.rules` in UFW's own format
//! (`### tuple ###` lines that `ufw status` reads, followed by the iptables lines `ufw-init`
//! restores), and enables `ufw.service`. `before.rules` and the other package files stay
//! untouched.

use super::{Checking, Module, Needs, Plan};
use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::firewall::{Firewall, UfwRule};
use crate::support::rootfs::Rootfs;
use crate::support::systemd;

/// The `[firewall]` module.
pub struct FirewallModule;

impl Module for FirewallModule {
    type Section = Firewall;
    const NAME: &'static str = "firewall";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Firewall> {
        plan.firewall.as_ref()
    }

    fn packages(&self, _: &Firewall) -> Needs {
        vec![("firewall", &["ufw"])]
    }

    /// Resolving the rules reads and verifies the pinned list files.
    fn validate(&self, fw: &Firewall, cx: &mut Checking) -> Result<()> {
        cx.ufw_rules = fw.resolve(cx.dir)?;
        Ok(())
    }

    fn apply(&self, root: &Rootfs, fw: &Firewall, plan: &Plan) -> Result<Vec<String>> {
        write(root, fw, &plan.ufw_rules)
    }

    fn probes(&self, fw: &Firewall, plan: &Plan) -> Vec<Probe> {
        ufw_probes(fw, &plan.ufw_rules)
    }
}

/// The `### tuple ###` line and the iptables lines, exactly as ufw 0.36 writes them.
pub fn render(r: &UfwRule) -> String {
    let chain = if r.v6 { "ufw6" } else { "ufw" };
    let dst = if r.v6 { "::/0" } else { "0.0.0.0/0" };
    let mut s = format!(
        "\n### tuple ### {} {} {} {dst} any {} in\n",
        r.action, r.proto, r.dport, r.src
    );
    let protos: Vec<&str> = if r.proto == "any" {
        vec!["tcp", "udp"]
    } else {
        vec![r.proto.as_str()]
    };
    for p in protos {
        let mut m = format!("-A {chain}-user-input -p {p}");
        if r.dport.contains(',') {
            m.push_str(&format!(" -m multiport --dports {}", r.dport));
        } else {
            m.push_str(&format!(" --dport {}", r.dport));
        }
        if !r.any_src() {
            m.push_str(&format!(" -s {}", r.src));
        }
        match r.action.as_str() {
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
pub fn status_line(r: &UfwRule) -> String {
    let to = if r.proto == "any" {
        r.dport.clone()
    } else {
        format!("{}/{}", r.dport, r.proto)
    };
    let from = if r.any_src() {
        "Anywhere".to_string()
    } else {
        r.src.clone()
    };
    format!("{to} {} IN {from}", r.action.to_uppercase())
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
    let body: String = rules.iter().map(render).collect();
    Ok(format!(
        "{}{body}\n### END RULES ###\n{}",
        &template[..at],
        &template[at..]
    ))
}

/// Write UFW's configuration into the image; returns the paths written.
fn write(root: &Rootfs, fw: &Firewall, rules: &[UfwRule]) -> Result<Vec<String>> {
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
fn ufw_probes(fw: &Firewall, rules: &[UfwRule]) -> Vec<Probe> {
    if !fw.enabled {
        return vec![Probe::new(
            "ufw inactive as declared",
            "sudo -n ufw status | head -1",
            Expect::Equals("Status: inactive".into()),
        )];
    }
    let mut expected: Vec<String> = rules.iter().map(status_line).collect();
    expected.sort();
    let ipt_lines = |v6: bool| {
        rules
            .iter()
            .filter(|r| r.v6 == v6)
            .map(|r| render(r).lines().filter(|l| l.starts_with("-A")).count())
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
        assert_eq!(render(&r), "\n### tuple ### allow tcp 222 0.0.0.0/0 any 10.0.2.2 in\n-A ufw-user-input -p tcp --dport 222 -s 10.0.2.2 -j ACCEPT\n");
        let r = UfwRule {
            action: "limit".into(),
            proto: "tcp".into(),
            dport: "9922".into(),
            src: "203.0.113.0/24".into(),
            v6: false,
        };
        assert_eq!(
            render(&r),
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
        assert_eq!(render(&r), "\n### tuple ### allow tcp 80,443 ::/0 any 2400:cb00::/32 in\n-A ufw6-user-input -p tcp -m multiport --dports 80,443 -s 2400:cb00::/32 -j ACCEPT\n");
        let r = UfwRule {
            action: "allow".into(),
            proto: "any".into(),
            dport: "53".into(),
            src: "0.0.0.0/0".into(),
            v6: false,
        };
        assert_eq!(render(&r), "\n### tuple ### allow any 53 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 53 -j ACCEPT\n-A ufw-user-input -p udp --dport 53 -j ACCEPT\n");
        let r = UfwRule {
            action: "reject".into(),
            proto: "tcp".into(),
            dport: "25".into(),
            src: "0.0.0.0/0".into(),
            v6: false,
        };
        assert_eq!(render(&r), "\n### tuple ### reject tcp 25 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 25 -j REJECT --reject-with tcp-reset\n");
        assert_eq!(status_line(&r), "25/tcp REJECT IN Anywhere");
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
