//! `[time]`: the clock kept in sync by systemd-timesyncd, optionally with named NTP servers.

use crate::error::Result;
use serde::{Deserialize, Serialize};

/// The `[time]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Time {
    /// Keep the clock in sync with NTP (systemd-timesyncd).
    pub sync: bool,
    /// NTP servers; empty: the distribution's default pool.
    pub servers: Vec<String>,
}

impl Default for Time {
    fn default() -> Self {
        Time {
            sync: true,
            servers: vec![],
        }
    }
}

impl Time {
    /// Server names go into a systemd drop-in as written (only used when sync is on).
    pub fn validate(&self) -> Result<()> {
        if self.sync {
            for s in &self.servers {
                super::plain("time.servers", s)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_plain_words() {
        let mut t = Time {
            servers: vec!["ntp.example.org".into()],
            ..Default::default()
        };
        assert!(t.validate().is_ok());
        t.servers.push("a\nb".into());
        assert!(t.validate().unwrap_err().message.contains("time.servers"));
        t.sync = false;
        assert!(t.validate().is_ok());
    }
}
