//! The hardening sections of a profile: their schema, defaults and the checks that need no
//! image (the firewall's list files are read here too: they sit next to the profiles). What
//! each section writes into the image lives in `build/harden/`, one module per section.

pub mod containers;
pub mod directories;
pub mod docker;
pub mod fail2ban;
pub mod firewall;
pub mod journald;
pub mod lints;
pub mod secrets;
pub mod shell;
pub mod ssh;
pub mod swap;
pub mod sysctl;
pub mod time;
pub mod updates;
pub mod users;

use crate::error::{Error, Result};

/// A value written unquoted into a systemd or shell file must hold no quotes, `$`, backquote,
/// backslash or line break.
fn plain(key: &str, v: &str) -> Result<()> {
    if v.contains(['\n', '\r', '"', '\'', '\\', '$', '`']) {
        return Err(Error::config(format!(
            "key `{key}`: {v:?} may not contain quotes, '$', '`', '\\' or newlines"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod golden {
    use crate::profile;
    use sha2::{Digest, Sha256};
    use std::path::Path;

    /// Every shipped profile, as (profiles directory, profile name).
    pub(crate) fn shipped() -> Vec<(std::path::PathBuf, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut v = vec![];
        for dir in ["profiles", "bench/profiles"] {
            let d = root.join(dir);
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
                .collect();
            names.sort();
            v.extend(names.into_iter().map(|n| (d.clone(), n)));
        }
        v
    }

    /// sha256 of `serde_json::to_string(&profile)` for each shipped profile, recorded from
    /// the code before the sections moved here. The build's input hash includes this string,
    /// so any change to field names, order, defaults or skip rules changes every image.
    const GOLDEN: &[(&str, &str)] = &[
        (
            "base",
            "6105dbaf2181216335e22890083225b9c3046bbe4d1e1e84841834bc019af0f9",
        ),
        (
            "compose-host",
            "8349efcff7ba9e012b8e5c57cf6bb76697b714eb6aa74fe47d1a3a8586fb93b4",
        ),
        (
            "hardened",
            "43dfa67b96be2497881a3de14fe9b6d1af766b930a4aa0f5f1fab107e0285213",
        ),
        (
            "production",
            "79480a8ffa7105f81397179d1b7c5d3b48d8f3a543f1e819d543555cacedf64a",
        ),
        (
            "test",
            "032c3b5fe161608182793d878e248d43c59e761654e2ccc622b67d440ebca389",
        ),
        (
            "test-images",
            "ad56691ec44a5fa47017bf4ee7ff8b7e56ae2a6d39ee9e4d763c1b1f87195614",
        ),
        (
            "test-secrets",
            "08b771d7b28705be65bf998d7e136a11f078ad211c03b0c3bfc7c0b8e93a6903",
        ),
        (
            "peer",
            "79e12662e33bc3c7ccdc1ddb0ea053c23dc54068c89a0fcec0bdaa2eb713a221",
        ),
        (
            "every-section-default",
            "60d275dc782d7f272f0e9faab000d20656f266ab10a8cae12da7a20d221f899d",
        ),
    ];

    /// Every hardening section and sub-table declared empty, so each default and each skip
    /// rule shows in the JSON (the shipped profiles leave some of them out).
    const EVERY_SECTION: &str = "[users.admin]\n[users.runtime]\n[ssh]\n[firewall]\n\
        [firewall.rules.r]\n[firewall.lists.l]\n[fail2ban]\n[fail2ban.jails.sshd]\n\
        [sysctl]\n\"vm.swappiness\" = 10\n[docker]\n[docker.default-ulimits.nproc]\n\
        [docker.extra]\nicc = false\n[updates]\n[swap]\n[time]\n[journald]\n[shell]\n\
        [shell.environment]\nA = \"1\"\n[directories.\"/opt/x\"]\n[lints.acknowledge]\n\
        ssh-root-login = \"r\"\n";

    #[test]
    fn profile_json_is_unchanged() {
        let mut got = vec![];
        for (dir, name) in shipped() {
            let l = profile::load(&name, &dir, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
            let json = serde_json::to_string(&l.profile).unwrap();
            got.push((name, hex::encode(Sha256::digest(json.as_bytes()))));
        }
        let every: profile::Profile = toml::from_str(EVERY_SECTION).unwrap();
        let json = serde_json::to_string(&every).unwrap();
        got.push((
            "every-section-default".into(),
            hex::encode(Sha256::digest(json.as_bytes())),
        ));
        let want: Vec<(String, String)> = GOLDEN
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "profile JSON changed:\n{got:#?}");
    }
}
