//! Lints on `[docker]`.

use super::{Hit, Lint};
use crate::profile::sections::docker::KNOWN_KEYS;

/// A `[docker.extra]` key dockerd does not know.
pub const UNKNOWN_KEY: Lint = Lint {
    id: "docker-unknown-key",
    acknowledgeable: true,
    why: "dockerd refuses to start with a daemon.json key it does not know",
    check: |p| {
        let Some(d) = &p.docker else { return vec![] };
        d.extra
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .map(|k| {
                Hit::new(
                    format!("docker.extra.{k}"),
                    format!("daemon.json key `{k}` is not a key Docker knows"),
                )
            })
            .collect()
    },
};

#[cfg(test)]
mod tests {
    use super::super::fixture::{good, ids};
    use super::*;
    use crate::profile::sections::docker::Docker;

    #[test]
    fn docker_unknown_key() {
        let mut p = good();
        let mut d = Docker::default();
        d.extra.insert("icc".into(), toml::Value::Boolean(false));
        p.docker = Some(d.clone());
        assert!(ids(&p).is_empty());
        d.extra
            .insert("live_restore".into(), toml::Value::Boolean(true));
        p.docker = Some(d);
        assert_eq!(ids(&p), ["docker-unknown-key"]);
        assert_eq!((UNKNOWN_KEY.check)(&p)[0].key, "docker.extra.live_restore");
    }
}
