//! Which overlay or module produced each path in the image; stored in the manifest
//! (`extra.provenance`) and shown by `clawimg inspect IMAGE --explain PATH`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Path in the image -> what wrote it last (later writers replace earlier ones).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Provenance(pub BTreeMap<String, String>);

impl Provenance {
    /// Record that `by` produced `path`.
    pub fn record(&mut self, path: &str, by: impl Into<String>) {
        let p = format!("/{}", path.trim_start_matches('/'));
        self.0.insert(p, by.into());
    }

    /// Record that `by` produced each of `paths`.
    pub fn record_all<S: AsRef<str>>(&mut self, paths: &[S], by: &str) {
        for p in paths {
            self.record(p.as_ref(), by);
        }
    }

    /// Forget `path` and everything recorded below it: a later stage removed it, so no
    /// earlier writer may be named for it.
    pub fn forget(&mut self, path: &str) {
        let p = format!("/{}", path.trim_start_matches('/').trim_end_matches('/'));
        let below = format!("{p}/");
        self.0.retain(|k, _| *k != p && !k.starts_with(&below));
    }

    /// As JSON for the manifest.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }

    /// Explain `path` from a manifest's `extra.provenance` (`None`: the manifest has no such
    /// section): the exact entry, else the entries below it (for a directory), else the
    /// base stage.
    pub fn explain(prov: Option<&Provenance>, path: &str) -> String {
        let p = format!("/{}", path.trim_start_matches('/').trim_end_matches('/'));
        let Some(Provenance(map)) = prov else {
            return format!(
                "{p}: this manifest records no provenance (built before overlays existed)"
            );
        };
        if let Some(by) = map.get(&p) {
            return format!("{p}: {by}");
        }
        let prefix = format!("{p}/");
        let below: Vec<String> = map
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| format!("  {k}: {v}"))
            .collect();
        if below.is_empty() {
            format!("{p}: not written by an overlay or module: from the base stage (packages) or absent")
        } else {
            format!(
                "{p}: directory from the base stage; paths below it:\n{}",
                below.join("\n")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_exact_below_and_absent() {
        let mut p = Provenance::default();
        p.record("etc/ssh/sshd_config.d/10-a.conf", "overlay a");
        p.record("/etc/hostname", "module customize");
        assert_eq!(
            Provenance::explain(Some(&p), "/etc/hostname"),
            "/etc/hostname: module customize"
        );
        assert_eq!(
            Provenance::explain(Some(&p), "/etc/ssh/"),
            "/etc/ssh: directory from the base stage; paths below it:\n  /etc/ssh/sshd_config.d/10-a.conf: overlay a"
        );
        assert!(Provenance::explain(Some(&p), "/usr/bin/x")
            .ends_with("from the base stage (packages) or absent"));
        assert!(Provenance::explain(None, "x").contains("records no provenance"));
    }

    #[test]
    fn later_writers_win_and_removed_paths_are_forgotten() {
        let mut p = Provenance::default();
        p.record_all(&["etc/a", "/etc/d/x", "/etc/d/y"], "module one");
        p.record("/etc/a", "module two");
        p.forget("/etc/d/");
        assert_eq!(
            Provenance::explain(Some(&p), "/etc/a"),
            "/etc/a: module two"
        );
        assert!(Provenance::explain(Some(&p), "/etc/d/x").contains("base stage"));
    }
}
