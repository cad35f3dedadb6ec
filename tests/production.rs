//! The production profile (hardened host + OpenClaw stack + secret slots + pinned images):
//! the committed catalog has no digests, so check/build refuse and ask for a lock; stand-in
//! images made here from busybox-static are published under the production names on a local
//! `docker-registry`, a scratch copy of the catalog is locked through a prefixed mirror, then
//! one build, one seal, ONE boot as the admin user on the hardened SSH port. Inside the VM:
//! every hardening module in effect, every declared unit enabled, every timer listed, the
//! overlay files with their declared owner, group and mode (probes derived from the manifest
//! by `clawimg test`), the compose images equal to the baked ones, the node's secrets in
//! /opt/openclaw/.env, the images loaded, and every stack container running and healthy.
//! Runbook parity in the same boot: /opt/openclaw and its monitoring tree root-only 0700,
//! every service under Docker's init, the fixed uids with the gateway (uid 1000) writing its
//! state directory, and console recovery: the node's password hash makes adminclaw's
//! password usable (openclaw, without one, stays locked), SSH still refuses passwords, and
//! the test logs in on the QEMU serial console with that password.

mod common;
use common::registry::*;
use common::*;
use std::path::Path;
use std::process::Command;

const COMPOSE: &str = "cd /opt/openclaw && set -a && . ./stack.env && set +a && ";

/// Stand-in entrypoint: `stand-in http PORT | redis PORT | idle` followed by the compose
/// command's arguments. Files named by `--config FILE` / `--egress-acl-file=FILE` must be
/// mounted (the compose bind mounts), then it serves what the health check asks for.
const STAND_IN: &str = r#"#!/bin/sh
role=$1; shift
port=
case "$role" in http|redis) port=$1; shift ;; esac
prev=
for a in "$@"; do
  f=
  case "$a" in --egress-acl-file=*) f=${a#*=} ;; esac
  [ "$prev" = --config ] && f=$a
  if [ -n "$f" ] && [ ! -r "$f" ]; then echo "stand-in: $f is not mounted" >&2; exit 1; fi
  prev=$a
done
echo "stand-in $role $port: $*"
case "$role" in
  http) exec httpd -f -p "$port" -h /www ;;
  redis) exec nc -ll -p "$port" -e /bin/redis-pong ;;
  idle) exec sleep 2147483647 ;;
esac
echo "stand-in: unknown role $role" >&2
exit 2
"#;

/// One RESP exchange: `PING` gets `+PONG`.
const REDIS_PONG: &str = "#!/bin/sh\nread -r line\ncase \"$line\" in PING*) printf '+PONG\\r\\n' ;; *) printf -- '-ERR stand-in\\r\\n' ;; esac\n";

/// `redis-cli ping` against the stand-in server.
const REDIS_CLI: &str = "#!/bin/sh\n[ \"$1\" = ping ] || exit 2\nr=$(printf 'PING\\r\\n' | nc -w 3 127.0.0.1 6379)\ncase \"$r\" in +PONG*) echo PONG ;; *) echo \"no PONG: $r\" >&2; exit 1 ;; esac\n";

/// `curl -sf URL` (Smokescreen's health check) with busybox wget.
const CURL: &str = "#!/bin/sh\nfor u in \"$@\"; do :; done\nexec wget -q -Y off --spider \"$u\"\n";

/// `openclaw gateway health` (the compose health check) or `openclaw doctor`: the gateway
/// answers and reaches LiteLLM and the socket proxy by name.
const OPENCLAW: &str = r#"#!/bin/sh
case "$*" in "gateway health"|doctor*) ;; *) echo "stand-in openclaw: only gateway health, doctor" >&2; exit 2 ;; esac
for u in http://127.0.0.1:18789/ http://openclaw-litellm:4000/health/liveliness http://openclaw-docker-proxy:2375/_ping; do
  wget -q -Y off --spider "$u" || { echo "doctor: $u unreachable" >&2; exit 1; }
done
"#;

/// The entrypoint each production image's stand-in gets (the port its health check hits).
fn stand_in_entrypoint(name: &str) -> Vec<&'static str> {
    match name {
        "docker_socket_proxy" => vec!["/bin/stand-in", "http", "2375"],
        "gateway" => vec!["/bin/stand-in", "http", "18789"],
        "litellm" => vec!["/bin/stand-in", "http", "4000"],
        "smokescreen" => vec!["/bin/stand-in", "http", "4750"],
        "redis" => vec!["/bin/stand-in", "redis", "6379"],
        "caddy" => vec!["/bin/stand-in", "http", "80"],
        "cloudflared" => vec!["/bin/stand-in", "idle"],
        other => panic!("no stand-in for catalog image `{other}`: add one to tests/production.rs"),
    }
}

/// The committed production catalog: (name, reference, digest).
fn catalog(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("images/openclaw.toml")).unwrap();
    let t: toml::Table = text.parse().unwrap();
    t.iter()
        .map(|(k, v)| {
            let s = |f: &str| v.get(f).and_then(|x| x.as_str()).unwrap_or("").to_string();
            (k.clone(), s("reference"), s("digest"))
        })
        .collect()
}

/// Publish one busybox-based stand-in per catalog entry on `reg`, under
/// `REGISTRY/REPOSITORY:TAG` (the layout a prefixed mirror `REGISTRY=http://reg/REGISTRY` reads).
fn publish_stand_ins(reg: &Registry, work: &Path, images: &[(String, String, String)]) {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (package busybox-static)");
    let x = |s: &str| s.as_bytes().to_vec();
    let files = vec![
        ("bin/busybox", busybox, 0o755),
        ("bin/stand-in", x(STAND_IN), 0o755),
        ("bin/redis-pong", x(REDIS_PONG), 0o755),
        ("bin/redis-cli", x(REDIS_CLI), 0o755),
        ("bin/curl", x(CURL), 0o755),
        ("bin/openclaw", x(OPENCLAW), 0o755),
        ("www/_ping", x("OK"), 0o644),
        ("www/healthcheck", x("ok\n"), 0o644),
        ("www/index.html", x("stand-in\n"), 0o644),
        ("www/health/liveliness", x("\"I'm alive!\"\n"), 0o644),
    ];
    let applets = [
        "sh", "wget", "nc", "httpd", "sleep", "cat", "printf", "echo", "test", "[", "id",
    ];
    let links: Vec<(String, &str)> = applets
        .iter()
        .map(|a| (format!("bin/{a}"), "busybox"))
        .collect();
    let links: Vec<(&str, &str)> = links.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    for (name, reference, _) in images {
        let r = clawimg::support::reference::Reference::parse(reference).unwrap();
        let tag = r.tag.clone().unwrap();
        let l = Layout::new(&work.join(format!("oci-{name}")));
        let layer = l.layer(&files, &links);
        let img = l.image_with(
            "amd64",
            &[layer],
            serde_json::json!({
                "Env": ["PATH=/bin"],
                "Entrypoint": stand_in_entrypoint(name),
                "Labels": {"org.opencontainers.image.title": format!("clawimg stand-in for {reference}")},
            }),
        );
        l.tag(&img, &tag);
        tool(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:{tag}", l.0.display()))
                .arg(format!(
                    "docker://127.0.0.1:{}/{}/{}:{tag}",
                    reg.port, r.registry, r.repository
                )),
        );
    }
}

/// The console password the test seals into node1 (as a hash) and types at the serial login.
const CONSOLE_PASSWORD: &str = "console-recovery-test";

/// A SHA-512 crypt hash of `pw`, made by openssl from stdin.
fn password_hash(pw: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl");
    c.stdin.take().unwrap().write_all(pw.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// Log in as adminclaw on the VM's serial console (the socket `clawimg test --console-socket`
/// exposes), run a command and leave a marker a probe waits for. Returns what the console
/// printed after the password was sent.
fn console_login(sock: &Path) -> String {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(1500);
    let mut seen = String::new();
    // Reconnect until a login prompt shows (QEMU may drop a client that came too early).
    let (mut stream, at) = loop {
        let mut stream = loop {
            match UnixStream::connect(sock) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(1)),
                Err(e) => return format!("no console socket at {}: {e}\n{seen}", sock.display()),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(b"\n");
        let from = seen.len();
        match read_until(&mut stream, &mut seen, "login: ", from, b"\n", deadline) {
            Some(at) => break (stream, at),
            None if Instant::now() < deadline => {
                seen.push_str("\n[console closed; reconnecting]\n");
                std::thread::sleep(Duration::from_secs(2));
            }
            None => return format!("no login prompt on the console:\n{seen}"),
        }
    };
    stream.write_all(b"adminclaw\n").unwrap();
    let Some(at) = read_until(&mut stream, &mut seen, "Password: ", at, b"", deadline) else {
        return format!("no password prompt:\n{seen}");
    };
    stream
        .write_all(format!("{CONSOLE_PASSWORD}\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    stream
        .write_all(b"echo CONSOLE-$((40+2)) $(id -un); touch /tmp/console-login-ok\n")
        .unwrap();
    let _ = read_until(
        &mut stream,
        &mut seen,
        "CONSOLE-42 adminclaw",
        at,
        b"",
        deadline,
    );
    let _ = stream.write_all(b"exit\n");
    seen[at..].to_string()
}

/// Read the console into `seen` until `want` appears after byte `from` (returns the offset
/// after it), writing `poke` after every 15 s of silence (wakes a getty that printed its
/// prompt before we connected).
fn read_until(
    s: &mut std::os::unix::net::UnixStream,
    seen: &mut String,
    want: &str,
    from: usize,
    poke: &[u8],
    deadline: std::time::Instant,
) -> Option<usize> {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let mut last = Instant::now();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Some(i) = seen[from..].find(want) {
            return Some(from + i + want.len());
        }
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {
                if !poke.is_empty() && last.elapsed() > Duration::from_secs(15) {
                    let _ = s.write_all(poke);
                    last = Instant::now();
                }
            }
        }
    }
    None
}

#[test]
fn production_builds_and_boots_with_units_timers_and_stack_config() {
    let scratch_dir = scratch("production-key");
    let key = scratch_dir.join("id_ed25519");
    let public = keygen(&key, "clawimg-production-test");
    let key_set = format!("users.admin.authorized_keys=[\"{}\"]", public.trim());

    // The committed catalog pins nothing it could not verify: check and build refuse.
    let committed = catalog(&repo());
    assert!(committed.len() >= 7, "{committed:?}");
    assert!(
        committed
            .iter()
            .all(|(_, r, d)| d.is_empty() && !r.ends_with(":latest")),
        "the committed catalog must carry no digests: {committed:?}"
    );
    let copy = repo_copy(
        &scratch_dir.join("repo"),
        &["profiles", "images", "overlays", "units"],
    );
    let profiles = copy.join("profiles");
    let refused = copy.join("out-refused");
    // `check` and `build --locked` refuse the unpinned catalog (a plain `build` pins it).
    for cmd in [&["check"][..], &["build", "--locked"][..]] {
        let mut c = clawimg();
        c.args(cmd)
            .arg("production")
            .arg("--profiles-dir")
            .arg(&profiles)
            .arg("--out")
            .arg(&refused);
        let o = run(c);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("openclaw.toml:")
                && err.contains(".digest`")
                && err.contains("clawimg lock production --images-only"),
            "{err}"
        );
        assert!(
            !refused.exists(),
            "a refused {cmd:?} wrote {}",
            refused.display()
        );
    }

    // Stand-ins under the production names on a local registry, one prefix per upstream.
    let reg = Registry::start(&scratch_dir.join("registry"), None);
    publish_stand_ins(&reg, &scratch_dir, &committed);
    let p = reg.port;
    let mirrors =
        format!("ghcr.io=http://127.0.0.1:{p}/ghcr.io,docker.io=http://127.0.0.1:{p}/docker.io");
    let lock = |mirror: &str| {
        let mut c = clawimg();
        c.args(["lock", "production", "--images-only"])
            .arg("--profiles-dir")
            .arg(&profiles)
            .args(["--registry-mirror", mirror])
            .env_remove("CLAWIMG_REGISTRY_MIRROR");
        run(c)
    };
    let o = lock(&mirrors);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!("{} changed", committed.len())),
        "{out}"
    );
    let locked = catalog(&copy);
    assert!(
        locked.iter().all(|(_, _, d)| d.starts_with("sha256:")),
        "{locked:?}"
    );
    // Stand-in digests stay in the scratch copy.
    let repo_text = std::fs::read_to_string(repo().join("images/openclaw.toml")).unwrap();
    assert!(locked
        .iter()
        .all(|(_, _, d)| !repo_text.contains(d.as_str())));
    assert_eq!(catalog(&repo()), committed);

    let dir = build(
        "production",
        &[
            "--profiles-dir",
            profiles.to_str().unwrap(),
            "--registry-mirror",
            &mirrors,
            "--set",
            &key_set,
            // QEMU's user network: the guest sees host connections coming from 10.0.2.2.
            "--set",
            "firewall.rules.ssh.from=[\"10.0.2.2\"]",
            "--set",
            "swap.size=\"256MiB\"",
            // The test VM has 2 CPUs; Docker refuses a CPU limit above the host's count.
            "--var",
            "gateway_cpus=2.0",
        ],
    );
    drop(reg);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let baked = m["extra"]["images"].as_array().cloned().unwrap_or_default();
    assert_eq!(baked.len(), committed.len(), "{baked:?}");
    for (name, reference, digest) in &locked {
        assert!(
            baked
                .iter()
                .any(|b| b["reference"] == reference.as_str() && b["digest"] == digest.as_str()),
            "{name} not baked as {reference}@{digest}: {baked:?}"
        );
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let verify = m["extra"]["units"]["verify"].as_str().unwrap_or_default();
    assert!(
        verify.contains("passed"),
        "systemd-analyze verify: {verify}"
    );
    assert!(
        m["extra"]["declared_files"]
            .as_array()
            .is_some_and(|a| a.len() >= 8),
        "{}",
        m["extra"]
    );

    let mut c = clawimg();
    c.args(["inspect"])
        .arg(&dir)
        .args(["--explain", "/opt/openclaw/docker-compose.yml"]);
    let o = run(c);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && text.contains("overlay openclaw")
            && text.contains("docker-compose.yml.tera, rendered"),
        "{text}"
    );
    let mut c = clawimg();
    c.args(["inspect"]).arg(&dir).args([
        "--explain",
        "/etc/systemd/system/timers.target.wants/openclaw-backup.timer",
    ]);
    let text = String::from_utf8_lossy(&run(c).stdout).into_owned();
    assert!(
        text.contains("units (enable openclaw-backup.timer)"),
        "{text}"
    );

    // Tunnel mode: the base file's five services and cloudflared (which has no health check).
    let services =
        "[\"cloudflared\",\"docker-proxy\",\"litellm\",\"openclaw\",\"openclaw-egress\",\"redis\"]";
    let stack = format!(
        "{COMPOSE}if timeout 330 sh -c 'until systemctl is-active -q openclaw-stack.service; do systemctl is-failed -q openclaw-stack.service && exit 1; sleep 5; done'; \
         then docker compose ps --all --format json | jq -s -e '(flatten | map(.Service) | sort) == {services} and (flatten | all(.State == \"running\" and (.Health == \"healthy\" or (.Service == \"cloudflared\" and .Health == \"\"))))'; \
         else systemctl status --no-pager openclaw-stack.service; docker compose ps --all; journalctl -b -u openclaw-stack.service --no-pager | tail -30; false; fi"
    );
    let probes = [
        format!("{COMPOSE}docker compose config -q"),
        // openclaw-net is internal; the tunnel override makes proxy-net internal too.
        format!("{COMPOSE}docker compose config --format json | jq -e '.networks[\"openclaw-net\"].internal and .networks[\"proxy-net\"].internal and (.services | has(\"cloudflared\"))'"),
        // The compose files run exactly the baked images (reference@pinned digest).
        format!("{COMPOSE}docker compose config --images | sort > /tmp/compose.images && awk -F'\\t' '!/^#/ {{print $2 \"@\" $7}}' /var/lib/clawimg/images/images.list | sort > /tmp/baked.images && test \"$(wc -l < /tmp/compose.images)\" = 6 && test -z \"$(comm -23 /tmp/compose.images /tmp/baked.images)\""),
        "systemctl is-active clawimg-images.service && test -f /var/lib/clawimg/images.loaded".into(),
        stack,
        "systemctl is-active docker.service".into(),
        // Root-only tree: the stack, its config and the maintenance scripts and archives.
        "for d in /opt/openclaw /opt/openclaw/monitoring /opt/openclaw/monitoring/logs /opt/openclaw/monitoring/backups; do test \"$(stat -c %a:%U:%G $d)\" = 700:root:root || { stat $d; exit 1; }; done".into(),
        // Every service runs under an init that reaps zombies: declared and in effect.
        format!("{COMPOSE}docker compose config --format json | jq -e '[.services[] | .init == true] | all' && for c in $(docker compose ps -q); do test \"$(docker inspect -f '{{{{.HostConfig.Init}}}}' $c)\" = true || exit 1; done && docker exec openclaw cat /proc/1/cmdline | tr '\\0' ' ' | grep -q init"),
        // Fixed uids: the runtime user is the gateway container's user, which owns the state
        // directory and writes into it from inside the container.
        "test \"$(id -u openclaw):$(id -u adminclaw)\" = 1000:1001 && test \"$(stat -c %u:%a /home/openclaw/.openclaw)\" = 1000:700 && test \"$(docker inspect -f '{{.Config.User}}' openclaw)\" = 1000:1000".into(),
        "docker exec openclaw sh -c 'test \"$(id -u)\" = 1000 && echo written > /home/node/.openclaw/write-probe' && test \"$(stat -c %U:%G /home/openclaw/.openclaw/write-probe)\" = openclaw:openclaw".into(),
        // Console recovery: adminclaw has the node's password hash, openclaw (no value)
        // stays locked, and SSH still refuses passwords.
        "test \"$(passwd -S adminclaw | cut -d' ' -f2)\" = P && test \"$(passwd -S openclaw | cut -d' ' -f2)\" = L".into(),
        "sshd -T | grep -qx 'passwordauthentication no' && sshd -T | grep -qx 'kbdinteractiveauthentication no'".into(),
        // Written by the test's own login on the serial console (see console_login).
        "timeout 900 sh -c 'until test -f /tmp/console-login-ok; do sleep 3; done' && test \"$(stat -c %U /tmp/console-login-ok)\" = adminclaw".into(),
    ];
    let mut flags: Vec<&str> = vec!["--firmware", "bios"];
    for p in &probes {
        flags.push("--probe");
        flags.push(p);
    }
    // The node's secrets: the required slots supplied, the rest generated on first boot.
    let secrets = scratch_dir.join("node1.toml");
    let hash = password_hash(CONSOLE_PASSWORD);
    std::fs::write(
        &secrets,
        format!("[slots]\nanthropic_api_key = \"test-anthropic-value\"\nvoyage_api_key = \"test-voyage-value\"\ntelegram_bot_token = \"123:test-telegram\"\ntunnel_token = \"test-tunnel-value\"\nadmin_password_hash = \"{hash}\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let node = dir.join("node1.raw");
    let mut c = clawimg();
    c.arg("seal")
        .arg(&dir)
        .arg("--secrets")
        .arg(&secrets)
        .args(["--node", "node1", "-o"])
        .arg(&node);
    assert!(run(c).status.success(), "seal failed");
    let env_probe = "sh -c 'test \"$(stat -c %a:%U /opt/openclaw/.env)\" = 600:root && grep -q ^ANTHROPIC_API_KEY=test-anthropic-value /opt/openclaw/.env && grep -Eq ^LITELLM_MASTER_KEY=[0-9a-f]{64}$ /opt/openclaw/.env'".to_string();
    flags.extend([
        "--probe",
        env_probe.as_str(),
        "--probe",
        "test \"$(hostname)\" = node1",
    ]);
    let key_s = key.display().to_string();
    flags.extend([
        "--ssh-user",
        "adminclaw",
        "--ssh-port",
        "222",
        "--key",
        key_s.as_str(),
    ]);
    let console_sock = scratch_dir.join("console.sock");
    let console_s = console_sock.display().to_string();
    flags.extend(["--console-socket", console_s.as_str()]);
    let login = std::thread::spawn(move || console_login(&console_sock));
    let out = boot(&node, &flags);
    let transcript = login.join().expect("console login thread");
    assert!(
        transcript.contains("CONSOLE-42 adminclaw"),
        "the serial console login did not reach a shell:\n{transcript}"
    );
    for row in [
        "5 declared units enabled/masked",
        "4 timers listed",
        "overlay paths: owner, group, mode",
        "system running",
    ] {
        assert!(
            out.lines().any(|l| l.contains(row) && l.contains("pass")),
            "missing passing row {row:?}:\n{out}"
        );
    }
}
