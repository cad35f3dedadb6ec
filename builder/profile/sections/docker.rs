//! `[docker]`: the daemon's settings under Docker's own key names. Keys clawimg has no field
//! for go in `[docker.extra]`; the `docker-unknown-key` lint checks them against
//! [`KNOWN_KEYS`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
