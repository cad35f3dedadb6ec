//! `[docker]`: `/etc/docker/daemon.json` from a typed table (seed 001 §2.8, seed 000 Docker
//! daemon tuning). Keys use Docker's own names. Keys clawimg has no field for go in
//! `[docker.extra]`; the `docker-unknown-key` lint checks them against the keys dockerd knows.

use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::support::rootfs::Rootfs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Path of the daemon configuration.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// The `[docker]` section (daemon.json).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Docker {
    /// `log-driver`.
    pub log_driver: String,
    /// `log-opts` (e.g. max-size, max-file).
    pub log_opts: BTreeMap<String, String>,
    /// `storage-driver`.
    pub storage_driver: String,
    /// `live-restore`: containers survive daemon restarts.
    pub live_restore: bool,
    /// `userland-proxy`.
    pub userland_proxy: bool,
    /// `no-new-privileges`.
    pub no_new_privileges: bool,
    /// `default-ulimits` by name.
    pub default_ulimits: BTreeMap<String, Ulimit>,
    /// `dns` servers for containers.
    pub dns: Vec<String>,
    /// `max-concurrent-downloads`.
    pub max_concurrent_downloads: Option<u32>,
    /// `max-concurrent-uploads`.
    pub max_concurrent_uploads: Option<u32>,
    /// Other daemon.json keys, written as given (checked by the `docker-unknown-key` lint).
    pub extra: BTreeMap<String, toml::Value>,
}

/// A ulimit (`Soft`/`Hard`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ulimit {
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

impl Default for Docker {
    fn default() -> Self {
        Docker {
            log_driver: "json-file".into(),
            log_opts: [("max-size", "50m"), ("max-file", "5")]
                .into_iter()
                .map(|(a, b)| (a.into(), b.into()))
                .collect(),
            storage_driver: "overlay2".into(),
            live_restore: true,
            userland_proxy: false,
            no_new_privileges: true,
            default_ulimits: [(
                "nofile".to_string(),
                Ulimit {
                    soft: 65536,
                    hard: 65536,
                },
            )]
            .into_iter()
            .collect(),
            dns: vec![],
            max_concurrent_downloads: None,
            max_concurrent_uploads: None,
            extra: BTreeMap::new(),
        }
    }
}

/// Top-level daemon.json keys dockerd accepts (Docker Engine 27-29, `dockerd --help` and the
/// daemon.json reference).
pub const KNOWN_KEYS: &[&str] = &[
    "allow-nondistributable-artifacts",
    "api-cors-header",
    "authorization-plugins",
    "bip",
    "bip6",
    "bridge",
    "builder",
    "cdi-spec-dirs",
    "cgroup-parent",
    "containerd",
    "containerd-namespace",
    "containerd-plugins-namespace",
    "data-root",
    "debug",
    "default-address-pools",
    "default-cgroupns-mode",
    "default-gateway",
    "default-gateway-v6",
    "default-ipc-mode",
    "default-network-opts",
    "default-runtime",
    "default-shm-size",
    "default-ulimits",
    "dns",
    "dns-opts",
    "dns-search",
    "exec-opts",
    "exec-root",
    "experimental",
    "features",
    "fixed-cidr",
    "fixed-cidr-v6",
    "group",
    "host-gateway-ip",
    "host-gateway-ips",
    "hosts",
    "http-proxy",
    "https-proxy",
    "icc",
    "init",
    "init-path",
    "insecure-registries",
    "ip",
    "ip-forward",
    "ip-forward-no-drop",
    "ip-masq",
    "ip6tables",
    "iptables",
    "ipv6",
    "labels",
    "live-restore",
    "log-driver",
    "log-format",
    "log-level",
    "log-opts",
    "max-concurrent-downloads",
    "max-concurrent-uploads",
    "max-download-attempts",
    "metrics-addr",
    "min-api-version",
    "mtu",
    "no-new-privileges",
    "no-proxy",
    "node-generic-resources",
    "oom-score-adjust",
    "pidfile",
    "raw-logs",
    "registry-mirrors",
    "runtimes",
    "seccomp-profile",
    "selinux-enabled",
    "shutdown-timeout",
    "storage-driver",
    "storage-opts",
    "swarm-default-advertise-addr",
    "tls",
    "tlscacert",
    "tlscert",
    "tlskey",
    "tlsverify",
    "userland-proxy",
    "userland-proxy-path",
    "userns-remap",
];

fn to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or_default(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.iter().map(to_json).collect(),
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

impl Docker {
    /// daemon.json as JSON.
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("log-driver".into(), self.log_driver.clone().into());
        if !self.log_opts.is_empty() {
            m.insert(
                "log-opts".into(),
                serde_json::to_value(&self.log_opts).unwrap_or_default(),
            );
        }
        m.insert("storage-driver".into(), self.storage_driver.clone().into());
        m.insert("live-restore".into(), self.live_restore.into());
        m.insert("userland-proxy".into(), self.userland_proxy.into());
        m.insert("no-new-privileges".into(), self.no_new_privileges.into());
        if !self.default_ulimits.is_empty() {
            let u: serde_json::Map<_, _> = self
                .default_ulimits
                .iter()
                .map(|(n, l)| {
                    (
                        n.clone(),
                        serde_json::json!({"Name": n, "Hard": l.hard, "Soft": l.soft}),
                    )
                })
                .collect();
            m.insert("default-ulimits".into(), u.into());
        }
        if !self.dns.is_empty() {
            m.insert("dns".into(), self.dns.clone().into());
        }
        if let Some(n) = self.max_concurrent_downloads {
            m.insert("max-concurrent-downloads".into(), n.into());
        }
        if let Some(n) = self.max_concurrent_uploads {
            m.insert("max-concurrent-uploads".into(), n.into());
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), to_json(v));
        }
        serde_json::Value::Object(m)
    }
}

/// Write daemon.json; returns the paths written.
pub fn apply(root: &Rootfs, d: &Docker) -> Result<Vec<String>> {
    if !root.exists("/usr/bin/dockerd") {
        return Err(Error::config(
            "the docker section needs a Docker engine package (e.g. `docker.io`) in base.packages",
        ));
    }
    let text = serde_json::to_string_pretty(&d.json())
        .map_err(|e| Error::failed(format!("daemon.json: {e}")))?
        + "\n";
    root.write(DAEMON_JSON, text.as_bytes(), 0o644)?;
    Ok(vec![DAEMON_JSON.into()])
}

/// Probes: the running daemon reports the declared settings.
pub fn probes(d: &Docker) -> Vec<Probe> {
    let info = |name: &str, fmt: &str, want: String| Probe {
        name: name.into(),
        command: format!("sudo -n docker info --format '{fmt}'"),
        expect: Expect::Equals(want),
        on_failure: Some("sudo -n journalctl -b -u docker --no-pager | tail -20".into()),
    };
    let mut v = vec![
        info(
            "docker live-restore",
            "{{.LiveRestoreEnabled}}",
            d.live_restore.to_string(),
        ),
        info(
            "docker log driver",
            "{{.LoggingDriver}}",
            d.log_driver.clone(),
        ),
        info(
            "docker storage driver",
            "{{.Driver}}",
            d.storage_driver.clone(),
        ),
    ];
    v.push(Probe::new(
        "docker no-new-privileges",
        "sudo -n docker info --format '{{json .SecurityOptions}}'",
        if d.no_new_privileges {
            Expect::Contains("name=no-new-privileges".into())
        } else {
            Expect::Success
        },
    ));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_001_daemon_json() {
        let j = Docker::default().json();
        assert_eq!(j["log-opts"]["max-size"], "50m");
        assert_eq!(j["default-ulimits"]["nofile"]["Name"], "nofile");
        assert_eq!(j["default-ulimits"]["nofile"]["Hard"], 65536);
        assert_eq!(j["live-restore"], true);
        assert_eq!(j["userland-proxy"], false);
        assert!(j.get("dns").is_none());
    }
}
