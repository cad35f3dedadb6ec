//! Lints on `[sysctl]`.

use super::{Hit, Lint};
use crate::profile::sections::sysctl::valid_key;

/// A key that is not in sysctl's dotted form.
pub const KEY_FORMAT: Lint = Lint {
    id: "sysctl-key-format",
    acknowledgeable: false,
    why: "systemd-sysctl ignores a key it cannot parse, so the hardening silently does not apply",
    check: |p| {
        p.sysctl
            .keys()
            .filter(|k| !valid_key(k))
            .map(|k| {
                Hit::new(
                    format!("sysctl.\"{k}\""),
                    format!("{k:?} is not a sysctl key (dotted lowercase words such as net.ipv4.tcp_syncookies)"),
                )
            })
            .collect()
    },
};

#[cfg(test)]
mod tests {
    use super::super::fixture::{good, ids};
    use super::*;

    #[test]
    fn sysctl_key_format() {
        let mut p = good();
        p.sysctl
            .insert("net.ipv4.tcp_syncookies".into(), toml::Value::Integer(1));
        assert!(ids(&p).is_empty());
        p.sysctl
            .insert("net ipv4/tcp syncookies".into(), toml::Value::Integer(1));
        assert_eq!(ids(&p), ["sysctl-key-format"]);
        assert_eq!(
            (KEY_FORMAT.check)(&p)[0].key,
            "sysctl.\"net ipv4/tcp syncookies\""
        );
    }
}
