//! `[swap]`: a swap file of the declared size, made on the node at first boot (an 8 GiB file
//! never travels inside the image), and `vm.swappiness`.

use crate::error::{Error, Result};
use crate::profile::parse_size;
use serde::{Deserialize, Serialize};

/// The `[swap]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Swap {
    /// Size (e.g. `"8GiB"`); must be a multiple of 1 MiB.
    pub size: String,
    /// Absolute path of the swap file.
    pub path: String,
    /// `vm.swappiness` (default 10: prefer RAM, swap only under pressure).
    pub swappiness: Option<u8>,
}

impl Default for Swap {
    fn default() -> Self {
        Swap {
            size: "8GiB".into(),
            path: "/swapfile".into(),
            swappiness: Some(10),
        }
    }
}

impl Swap {
    /// Size in bytes, validated.
    pub fn bytes(&self) -> Result<u64> {
        let b = parse_size(&self.size).filter(|b| *b >= 40 << 10 && b % (1 << 20) == 0);
        b.ok_or_else(|| {
            Error::config(format!(
                "key `swap.size`: expected a size in MiB or GiB such as \"8GiB\", found {:?}",
                self.size
            ))
        })
    }

    /// The size must parse and the path must be safe to use unquoted in a shell command.
    pub fn validate(&self) -> Result<()> {
        self.bytes()?;
        let p = &self.path;
        if !p.starts_with('/')
            || p.contains(['\'', '"', ' ', '\n', '\\', '$'])
            || p.contains("/../")
        {
            return Err(Error::config(format!(
                "key `swap.path`: expected a plain absolute path, found {p:?}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_path_are_checked() {
        assert_eq!(Swap::default().bytes().unwrap(), 8 << 30);
        for size in ["8 parsecs", "1000", "1536KiB"] {
            let s = Swap {
                size: size.into(),
                ..Default::default()
            };
            assert!(
                s.validate().unwrap_err().message.contains("swap.size"),
                "{size}"
            );
        }
        for path in ["swapfile", "/swap file", "/a/../b", "/x$y"] {
            let s = Swap {
                path: path.into(),
                ..Default::default()
            };
            assert!(
                s.validate().unwrap_err().message.contains("swap.path"),
                "{path}"
            );
        }
    }
}
