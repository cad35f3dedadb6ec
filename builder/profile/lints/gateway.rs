//! Lints on `vars.gateway_config`: the OpenClaw gateway's openclaw.json, written in the
//! profile. The gateway refuses to start on a key it does not know or a value of the wrong
//! type, so `check` knows the keys OpenClaw 2026.2.23 accepts (those a profile sets here)
//! and the settings that must stay locked down.

use super::{Hit, Lint};
use crate::profile::Profile;

/// Where the gateway's configuration lives in the profile.
pub const VAR: &str = "gateway_config";

/// The type a gateway key takes.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// A string; when the list is not empty, one of these.
    Str(&'static [&'static str]),
    Bool,
    Int,
    /// An integer or a float.
    Num,
    StrList,
}

use Ty::*;

/// Key paths under `gateway_config` (`*` = any one key) and their types. Tables in between
/// are implied; anything else is unknown to the gateway (or unused by clawimg: add it here
/// after checking it against the gateway's schema).
const KEYS: &[(&str, Ty)] = &[
    ("gateway.mode", Str(&["local", "remote"])),
    ("gateway.port", Int),
    (
        "gateway.bind",
        Str(&["auto", "loopback", "lan", "tailnet", "custom"]),
    ),
    ("gateway.customBindHost", Str(&[])),
    ("gateway.trustedProxies", StrList),
    ("gateway.allowRealIpFallback", Bool),
    (
        "gateway.auth.mode",
        Str(&["none", "token", "password", "trusted-proxy"]),
    ),
    ("gateway.auth.allowTailscale", Bool),
    ("gateway.auth.rateLimit.maxAttempts", Int),
    ("gateway.auth.rateLimit.windowMs", Int),
    ("gateway.auth.rateLimit.lockoutMs", Int),
    ("gateway.auth.rateLimit.exemptLoopback", Bool),
    ("gateway.tailscale.mode", Str(&["off", "serve", "funnel"])),
    ("gateway.controlUi.enabled", Bool),
    ("gateway.controlUi.basePath", Str(&[])),
    ("gateway.controlUi.allowedOrigins", StrList),
    ("gateway.controlUi.allowInsecureAuth", Bool),
    ("gateway.controlUi.dangerouslyDisableDeviceAuth", Bool),
    (
        "gateway.nodes.browser.mode",
        Str(&["auto", "manual", "off"]),
    ),
    ("gateway.tools.deny", StrList),
    ("gateway.tools.allow", StrList),
    ("discovery.mdns.mode", Str(&["off", "minimal", "full"])),
    ("browser.enabled", Bool),
    (
        "logging.level",
        Str(&["silent", "fatal", "error", "warn", "info", "debug", "trace"]),
    ),
    ("logging.file", Str(&[])),
    ("logging.consoleStyle", Str(&["pretty", "compact", "json"])),
    ("logging.redactSensitive", Str(&["off", "tools"])),
    ("logging.redactPatterns", StrList),
    (
        "session.dmScope",
        Str(&[
            "main",
            "per-peer",
            "per-channel-peer",
            "per-account-channel-peer",
        ]),
    ),
    ("plugins.enabled", Bool),
    ("plugins.allow", StrList),
    ("plugins.deny", StrList),
    ("tools.allow", StrList),
    ("tools.deny", StrList),
    ("tools.elevated.enabled", Bool),
    (
        "agents.defaults.verboseDefault",
        Str(&["off", "on", "full"]),
    ),
    (
        "agents.defaults.thinkingDefault",
        Str(&["off", "minimal", "low", "medium", "high", "xhigh"]),
    ),
    ("agents.defaults.maxConcurrent", Int),
    ("agents.defaults.model.primary", Str(&[])),
    ("agents.defaults.model.fallbacks", StrList),
    ("agents.defaults.heartbeat.model", Str(&[])),
    ("agents.defaults.heartbeat.every", Str(&[])),
    ("agents.defaults.models.*.alias", Str(&[])),
    ("agents.defaults.models.*.params.maxTokens", Int),
    ("agents.defaults.models.*.params.temperature", Num),
    ("agents.defaults.memorySearch.enabled", Bool),
    (
        "agents.defaults.memorySearch.provider",
        Str(&["openai", "gemini", "voyage", "mistral", "local"]),
    ),
    ("agents.defaults.memorySearch.model", Str(&[])),
    (
        "agents.defaults.memorySearch.fallback",
        Str(&["openai", "gemini", "voyage", "mistral", "local", "none"]),
    ),
    (
        "agents.defaults.sandbox.mode",
        Str(&["off", "non-main", "all"]),
    ),
    (
        "agents.defaults.sandbox.scope",
        Str(&["session", "agent", "shared"]),
    ),
    (
        "agents.defaults.sandbox.workspaceAccess",
        Str(&["none", "ro", "rw"]),
    ),
    ("agents.defaults.sandbox.docker.image", Str(&[])),
    ("agents.defaults.sandbox.docker.network", Str(&[])),
    ("agents.defaults.sandbox.docker.readOnlyRoot", Bool),
    ("agents.defaults.sandbox.docker.user", Str(&[])),
    ("agents.defaults.sandbox.docker.tmpfs", StrList),
    ("agents.defaults.sandbox.docker.capDrop", StrList),
    ("agents.defaults.sandbox.docker.memory", Str(&[])),
    ("agents.defaults.sandbox.docker.memorySwap", Str(&[])),
    ("agents.defaults.sandbox.docker.cpus", Num),
    ("agents.defaults.sandbox.docker.pidsLimit", Int),
    ("agents.defaults.sandbox.docker.ulimits.nofile.soft", Int),
    ("agents.defaults.sandbox.docker.ulimits.nofile.hard", Int),
    ("agents.defaults.sandbox.docker.ulimits.nproc", Int),
    ("agents.defaults.sandbox.prune.idleHours", Int),
    ("agents.defaults.sandbox.prune.maxAgeDays", Int),
    ("channels.telegram.enabled", Bool),
    (
        "channels.telegram.dmPolicy",
        Str(&["pairing", "allowlist", "open", "disabled"]),
    ),
    ("channels.telegram.allowFrom", StrList),
    ("channels.telegram.groups.*.requireMention", Bool),
    ("channels.discord.enabled", Bool),
    (
        "channels.discord.dmPolicy",
        Str(&["pairing", "allowlist", "open", "disabled"]),
    ),
    ("channels.discord.allowFrom", StrList),
];

/// Keys that hold credentials: they come from the node's secret slots, never the image.
const SECRET_KEYS: &[&str] = &[
    "gateway.auth.token",
    "gateway.auth.password",
    "channels.telegram.botToken",
    "channels.discord.token",
];

/// Whether `path` (split) matches `pattern` (split, `*` = any one key), or is a table on the
/// way to it (`prefix`).
fn matches(pattern: &[&str], path: &[String], prefix: bool) -> bool {
    if prefix && path.len() >= pattern.len() || !prefix && path.len() != pattern.len() {
        return false;
    }
    path.iter().zip(pattern).all(|(k, p)| *p == "*" || k == p)
}

fn type_error(ty: Ty, v: &toml::Value) -> Option<String> {
    let found = || format!("found {}", v.type_str());
    match (ty, v) {
        (Str(allowed), toml::Value::String(s)) => (!allowed.is_empty()
            && !allowed.contains(&s.as_str()))
        .then(|| format!("expected one of {}, found {s:?}", allowed.join(", "))),
        (Str(_), _) => Some(format!("expected a string, {}", found())),
        (Bool, toml::Value::Boolean(_)) => None,
        (Bool, _) => Some(format!("expected true or false, {}", found())),
        (Int, toml::Value::Integer(_)) => None,
        (Int, _) => Some(format!("expected an integer, {}", found())),
        (Num, toml::Value::Integer(_) | toml::Value::Float(_)) => None,
        (Num, _) => Some(format!("expected a number, {}", found())),
        (StrList, toml::Value::Array(a)) if a.iter().all(|x| x.is_str()) => None,
        (StrList, _) => Some(format!("expected an array of strings, {}", found())),
    }
}

fn walk(path: &mut Vec<String>, v: &toml::Value, hits: &mut Vec<Hit>) {
    let key = || format!("vars.{VAR}.{}", path.join("."));
    let joined = path.join(".");
    if SECRET_KEYS.contains(&joined.as_str()) {
        hits.push(Hit::new(
            key(),
            "a credential in the profile would be baked into every image: it comes from the node's secret slot (gateway_token, telegram_bot_token, discord_bot_token)",
        ));
        return;
    }
    let pats: Vec<(Vec<&str>, Ty)> = KEYS
        .iter()
        .map(|(p, t)| (p.split('.').collect(), *t))
        .collect();
    if let Some((_, ty)) = pats.iter().find(|(p, _)| matches(p, path, false)) {
        if let Some(m) = type_error(*ty, v) {
            hits.push(Hit::new(key(), m));
        }
        return;
    }
    match v {
        toml::Value::Table(t) if path.is_empty() || pats.iter().any(|(p, _)| matches(p, path, true)) => {
            for (k, x) in t {
                path.push(k.clone());
                walk(path, x, hits);
                path.pop();
            }
        }
        _ => hits.push(Hit::new(
            key(),
            format!(
                "`{joined}` is not a key the OpenClaw gateway accepts (or not one clawimg checks): it refuses to start on an unknown key"
            ),
        )),
    }
}

/// An unknown key or a value of the wrong type in the gateway's configuration.
pub const UNKNOWN_KEY: Lint = Lint {
    id: "gateway-config-key",
    acknowledgeable: false,
    why: "the gateway refuses to start on a configuration key it does not know or a value of the wrong type; a credential in the profile ends up in every image",
    check: |p| {
        let Some(c) = p.vars.get(VAR) else {
            return vec![];
        };
        let mut hits = vec![];
        if !c.is_table() {
            return vec![Hit::new(
                format!("vars.{VAR}"),
                "expected a table (the gateway's openclaw.json)",
            )];
        }
        walk(&mut vec![], c, &mut hits);
        hits
    },
};

fn get<'a>(p: &'a Profile, path: &str) -> Option<&'a toml::Value> {
    let mut cur = p.vars.get(VAR)?;
    for k in path.split('.') {
        cur = cur.as_table()?.get(k)?;
    }
    Some(cur)
}

/// The locked-down settings: (key, required value as TOML text, why).
const LOCKED: &[(&str, &str)] = &[
    ("gateway.auth.mode", "\"token\""),
    ("gateway.auth.allowTailscale", "false"),
    ("gateway.controlUi.allowInsecureAuth", "false"),
    ("gateway.controlUi.dangerouslyDisableDeviceAuth", "false"),
    ("discovery.mdns.mode", "\"off\""),
    ("logging.redactSensitive", "\"tools\""),
    ("agents.defaults.sandbox.mode", "\"all\""),
    ("agents.defaults.sandbox.docker.network", "\"none\""),
];

/// Plugins a profile may allow: bundled with OpenClaw and needed by a declared feature
/// (`memory-core` serves `agents.defaults.memorySearch`).
const BUNDLED_ALLOWED: &[&str] = &["memory-core"];

/// A lock-down setting missing or weakened.
pub const WEAKENED: Lint = Lint {
    id: "gateway-config-weakened",
    acknowledgeable: false,
    why: "the gateway is reachable from the internet through the reverse proxy: without token auth, with community plugins or with networked sandboxes a prompt injection or a stranger gets the host's keys",
    check: |p| {
        if !p.vars.contains_key(VAR) {
            return vec![];
        }
        let mut hits = vec![];
        for (key, want) in LOCKED {
            let want: toml::Value = toml::from_str::<toml::Table>(&format!("v = {want}"))
                .expect("LOCKED values are TOML")
                .remove("v")
                .unwrap();
            match get(p, key) {
                Some(v) if *v == want => {}
                Some(v) => hits.push(Hit::new(
                    format!("vars.{VAR}.{key}"),
                    format!("expected {want}, found {v}"),
                )),
                None => hits.push(Hit::new(
                    format!("vars.{VAR}.{key}"),
                    format!("missing: set it to {want}"),
                )),
            }
        }
        match get(p, "plugins.allow") {
            Some(toml::Value::Array(ids)) => {
                for id in ids.iter().map(|i| i.as_str().unwrap_or_default()) {
                    if !BUNDLED_ALLOWED.contains(&id) {
                        hits.push(Hit::new(
                            format!("vars.{VAR}.plugins.allow"),
                            format!("{id:?}: only OpenClaw's bundled {} may be allowed here (chat channel plugins are allowed on the node when their token is set); other plugins run inside the gateway process, outside the sandbox", BUNDLED_ALLOWED.join(", ")),
                        ));
                    }
                }
            }
            _ => hits.push(Hit::new(
                format!("vars.{VAR}.plugins.allow"),
                "missing: set it (without an allowlist every plugin found loads)",
            )),
        }
        if let Some(toml::Value::Array(caps)) = get(p, "agents.defaults.sandbox.docker.capDrop") {
            if !caps.iter().any(|c| c.as_str() == Some("ALL")) {
                hits.push(Hit::new(
                    format!("vars.{VAR}.agents.defaults.sandbox.docker.capDrop"),
                    "expected [\"ALL\"]: sandboxes keep no capability",
                ));
            }
        }
        if let Some(toml::Value::Array(tp)) = get(p, "gateway.trustedProxies") {
            let ok = |s: &str| s == "127.0.0.1" || s == "::1" || s.starts_with("{networks.");
            for t in tp.iter().filter_map(|t| t.as_str()).filter(|t| !ok(t)) {
                hits.push(Hit::new(
                    format!("vars.{VAR}.gateway.trustedProxies"),
                    format!("{t:?}: name the proxy network as \"{{networks.proxy_net}}\" (its subnet from vars.networks) or loopback; any other address may forge client addresses"),
                ));
            }
        }
        hits
    },
};

#[cfg(test)]
mod tests {
    use super::super::fixture::{good, ids};
    use super::*;

    fn with(cfg: &str) -> Profile {
        let mut p = good();
        let t: toml::Table = toml::from_str(cfg).unwrap();
        p.vars.insert(VAR.into(), toml::Value::Table(t));
        p
    }

    const LOCKED_DOWN: &str = r#"
        gateway = { mode = "local", bind = "lan", trustedProxies = ["127.0.0.1", "{networks.proxy_net}"], auth = { mode = "token", allowTailscale = false }, controlUi = { allowInsecureAuth = false, dangerouslyDisableDeviceAuth = false } }
        discovery = { mdns = { mode = "off" } }
        logging = { redactSensitive = "tools" }
        plugins = { allow = ["memory-core"] }
        agents = { defaults = { sandbox = { mode = "all", docker = { network = "none", capDrop = ["ALL"], cpus = 1, ulimits = { nofile = { soft = 1, hard = 2 } } } }, models = { "a/b" = { params = { maxTokens = 4096 } } } } }
        channels = { telegram = { groups = { "*" = { requireMention = true } } } }
    "#;

    #[test]
    fn locked_down_config_is_clean() {
        let p = with(LOCKED_DOWN);
        assert!(ids(&p).is_empty(), "{:?}", super::super::run(&p));
        assert!(ids(&good()).is_empty());
    }

    #[test]
    fn unknown_key_wrong_type_and_token_are_refused() {
        let p = with(&LOCKED_DOWN.replace("bind = \"lan\"", "bind = \"0.0.0.0\", bogus = 1"));
        let h = (UNKNOWN_KEY.check)(&p);
        let keys: Vec<&str> = h.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "vars.gateway_config.gateway.bind",
                "vars.gateway_config.gateway.bogus"
            ]
        );
        assert!(
            h[0].message.contains("found \"0.0.0.0\""),
            "{}",
            h[0].message
        );
        let p = with(&LOCKED_DOWN.replace("maxTokens = 4096", "maxTokens = \"4096\""));
        assert_eq!(ids(&p), ["gateway-config-key"]);
        let p = with(&LOCKED_DOWN.replace("mode = \"token\"", "mode = \"token\", token = \"abc\""));
        assert!((UNKNOWN_KEY.check)(&p)[0].message.contains("secret slot"));
    }

    #[test]
    fn weakened_values_are_refused() {
        for (from, to, key) in [
            ("mode = \"token\"", "mode = \"none\"", "gateway.auth.mode"),
            (
                "allow = [\"memory-core\"]",
                "allow = [\"memory-core\", \"voice-call\"]",
                "plugins.allow",
            ),
            (
                "network = \"none\"",
                "network = \"bridge\"",
                "agents.defaults.sandbox.docker.network",
            ),
            (
                "\"{networks.proxy_net}\"",
                "\"10.0.0.0/8\"",
                "gateway.trustedProxies",
            ),
        ] {
            let p = with(&LOCKED_DOWN.replace(from, to));
            assert_eq!(ids(&p), ["gateway-config-weakened"], "{to}");
            assert_eq!(
                (WEAKENED.check)(&p)[0].key,
                format!("vars.gateway_config.{key}")
            );
        }
    }
}
