//! `[sysctl]`: kernel parameters as `"dotted.key" = value`. The table itself is the section;
//! these are the rules a key and a value must follow.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Whether a key has sysctl's dotted form (`net.ipv4.tcp_syncookies`).
pub fn valid_key(k: &str) -> bool {
    let parts: Vec<&str> = k.split('.').collect();
    parts.len() >= 2
        && parts[0]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// A value as sysctl prints it (integers, or strings of words).
pub fn value(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::String(s) if !s.contains(['\n', '\r']) && !s.trim().is_empty() => {
            Some(s.split_whitespace().collect::<Vec<_>>().join(" "))
        }
        _ => None,
    }
}

/// Every value must be one sysctl can take (the key form is a lint: see `sysctl-key-format`).
pub fn validate(table: &BTreeMap<String, toml::Value>) -> Result<()> {
    for (k, v) in table {
        value(v).ok_or_else(|| {
            Error::config(format!(
                "key `sysctl.\"{k}\"`: expected an integer or a one-line string"
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values() {
        assert!(valid_key("net.ipv4.tcp_syncookies"));
        assert!(valid_key("net.ipv4.conf.eth0-1.rp_filter"));
        assert!(!valid_key("kernel"));
        assert!(!valid_key("net ipv4/tcp"));
        assert_eq!(
            value(&toml::Value::String("4096  87380\t6291456".into())).as_deref(),
            Some("4096 87380 6291456")
        );
        let mut t = BTreeMap::new();
        t.insert("vm.swappiness".to_string(), toml::Value::Integer(10));
        assert!(validate(&t).is_ok());
        t.insert("kernel.x".to_string(), toml::Value::Boolean(true));
        assert!(validate(&t)
            .unwrap_err()
            .message
            .contains("key `sysctl.\"kernel.x\"`"));
    }
}
