//! The system `ssh` client as clawimg's transport to rescue systems and nodes: destination
//! parsing, batch-mode commands, and scripts run remotely with their output captured.

use crate::error::{Context, Error, Result};
use std::io::Write;
use std::process::{Command, Stdio};

/// Split `[user@]host[:port]` (from an `ssh://` URL named `what` in errors) into the
/// `ssh` destination and port.
pub fn parse_authority(what: &str, authority: &str) -> Result<(String, Option<u16>)> {
    let (dest, port) = match authority.rsplit_once(':') {
        Some((d, p)) => (
            d.to_string(),
            Some(
                p.parse::<u16>()
                    .map_err(|_| Error::config(format!("{what}: bad port `{p}`")))?,
            ),
        ),
        None => (authority.to_string(), None),
    };
    if dest.is_empty() || dest.starts_with('-') {
        return Err(Error::config(format!("{what}: missing host")));
    }
    Ok((dest, port))
}

/// The system `ssh` client for `dest`: batch mode, `CLAWIMG_SSH_OPTS` (else ~/.ssh/config).
/// The destination follows `--`, so no destination is ever read as an option.
pub fn ssh_cmd(dest: &str, port: Option<u16>) -> Command {
    let mut c = Command::new("ssh");
    c.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]);
    if let Ok(opts) = std::env::var("CLAWIMG_SSH_OPTS") {
        c.args(opts.split_whitespace());
    }
    if let Some(p) = port {
        c.args(["-p", &p.to_string()]);
    }
    c.arg("--").arg(dest);
    c
}

/// Start `script` on `dest` through [`ssh_cmd`], stderr piped for error messages.
pub fn ssh_spawn(
    dest: &str,
    port: Option<u16>,
    script: &str,
    stdin: Stdio,
    stdout: Stdio,
) -> Result<std::process::Child> {
    ssh_cmd(dest, port)
        .arg(script)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::tool(format!(
                "cannot run ssh: {e} (install package `openssh-client`)"
            ))
        })
}

/// Run `script` on `dest`, feeding `stdin`; its stdout, or an error with its stderr.
pub fn ssh_run(
    dest: &str,
    port: Option<u16>,
    script: &str,
    stdin: Option<&[u8]>,
) -> Result<String> {
    let input = if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = ssh_spawn(dest, port, script, input, Stdio::piped())?;
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(data).ctx(|| "send to ssh".into())?;
    }
    let out = child.wait_with_output().ctx(|| "ssh".into())?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "ssh {dest}: remote command failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_follows_a_separator() {
        let c = ssh_cmd("root@host", Some(2222));
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let sep = args.iter().position(|a| a == "--").expect("--");
        assert_eq!(args[sep + 1..], ["root@host"]);
        assert!(args[..sep].contains(&"-p".to_string()));
        assert!(parse_authority("x", "-oProxyCommand=x").is_err());
    }
}
