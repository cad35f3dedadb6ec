//! Reproducibility: the build's SOURCE_DATE_EPOCH (environment, lock file or default).

use crate::error::{Error, Result};

/// Fallback SOURCE_DATE_EPOCH when neither the environment nor a lock file gives one:
/// 2024-04-25 00:00:00 UTC, the Ubuntu 24.04 release day.
pub const DEFAULT_SOURCE_DATE_EPOCH: u64 = 1_714_003_200;

/// Where the build's SOURCE_DATE_EPOCH came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochSource {
    /// `SOURCE_DATE_EPOCH` in the environment (explicit override).
    Environment,
    /// The profile's lock file.
    Lock,
    /// [`DEFAULT_SOURCE_DATE_EPOCH`].
    Default,
}

/// SOURCE_DATE_EPOCH: the environment overrides the lock, the lock overrides the default.
pub fn source_date_epoch(from_lock: Option<u64>) -> Result<(u64, EpochSource)> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        let t = v.trim().parse::<u64>().map_err(|_| {
            Error::config(format!(
                "SOURCE_DATE_EPOCH={v:?}: expected seconds since 1970"
            ))
        })?;
        return Ok((t, EpochSource::Environment));
    }
    Ok(match from_lock {
        Some(t) => (t, EpochSource::Lock),
        None => (DEFAULT_SOURCE_DATE_EPOCH, EpochSource::Default),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_precedence() {
        if std::env::var("SOURCE_DATE_EPOCH").is_err() {
            assert_eq!(source_date_epoch(Some(5)).unwrap(), (5, EpochSource::Lock));
            assert_eq!(source_date_epoch(None).unwrap().1, EpochSource::Default);
        }
    }
}
