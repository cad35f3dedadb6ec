//! `[docker]`: `/etc/docker/daemon.json` from the typed section plus `[docker.extra]`.

use super::{Checking, Module, Needs, Plan};
use crate::error::{Error, Result};
use crate::image::probes::{Expect, Probe};
use crate::profile::sections::docker::Docker;
use crate::support::rootfs::Rootfs;

/// Path of the daemon configuration.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// The `[docker]` module.
pub struct DockerModule;

impl Module for DockerModule {
    type Section = Docker;
    const NAME: &'static str = "docker";

    fn section<'a>(&self, plan: &'a Plan) -> Option<&'a Docker> {
        plan.docker.as_ref()
    }

    fn packages(&self, _: &Docker) -> Needs {
        vec![("docker", &["docker.io", "docker-ce"])]
    }

    /// Unknown `extra` keys are the `docker-unknown-key` lint's business.
    fn validate(&self, _: &Docker, _: &mut Checking) -> Result<()> {
        Ok(())
    }

    fn apply(&self, root: &Rootfs, d: &Docker, _: &Plan) -> Result<Vec<String>> {
        if !root.exists("/usr/bin/dockerd") {
            return Err(Error::config(
                "the docker section needs a Docker engine package (e.g. `docker.io`) in base.packages",
            ));
        }
        let text = serde_json::to_string_pretty(&daemon_json(d))
            .map_err(|e| Error::failed(format!("daemon.json: {e}")))?
            + "\n";
        root.write(DAEMON_JSON, text.as_bytes(), 0o644)?;
        Ok(vec![DAEMON_JSON.into()])
    }

    fn probes(&self, d: &Docker, _: &Plan) -> Vec<Probe> {
        daemon_probes(d)
    }
}

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

/// daemon.json as JSON.
pub fn daemon_json(d: &Docker) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("log-driver".into(), d.log_driver.clone().into());
    if !d.log_opts.is_empty() {
        m.insert(
            "log-opts".into(),
            serde_json::to_value(&d.log_opts).unwrap_or_default(),
        );
    }
    m.insert("storage-driver".into(), d.storage_driver.clone().into());
    m.insert("live-restore".into(), d.live_restore.into());
    m.insert("userland-proxy".into(), d.userland_proxy.into());
    m.insert("no-new-privileges".into(), d.no_new_privileges.into());
    if !d.default_ulimits.is_empty() {
        let u: serde_json::Map<_, _> = d
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
    if !d.dns.is_empty() {
        m.insert("dns".into(), d.dns.clone().into());
    }
    if let Some(n) = d.max_concurrent_downloads {
        m.insert("max-concurrent-downloads".into(), n.into());
    }
    if let Some(n) = d.max_concurrent_uploads {
        m.insert("max-concurrent-uploads".into(), n.into());
    }
    for (k, v) in &d.extra {
        m.insert(k.clone(), to_json(v));
    }
    serde_json::Value::Object(m)
}

/// Probes: the running daemon reports the declared settings.
fn daemon_probes(d: &Docker) -> Vec<Probe> {
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
    use crate::profile::sections::docker::Docker;

    #[test]
    fn default_daemon_json() {
        let j = daemon_json(&Docker::default());
        assert_eq!(j["log-opts"]["max-size"], "50m");
        assert_eq!(j["default-ulimits"]["nofile"]["Name"], "nofile");
        assert_eq!(j["default-ulimits"]["nofile"]["Hard"], 65536);
        assert_eq!(j["live-restore"], true);
        assert_eq!(j["userland-proxy"], false);
        assert!(j.get("dns").is_none());
    }
}
