//! The production profile (hardened host + OpenClaw stack + secret slots): one build, one
//! seal, ONE boot as the admin user on the hardened SSH port. Inside the VM: every hardening
//! module in effect, every declared unit enabled, every timer listed, the overlay files with
//! their declared owner, group and mode (probes derived from the manifest by `clawimg test`),
//! `docker compose config -q` on the rendered stack, the node's secrets installed into
//! /opt/openclaw/.env, and the stack unit skipped by its condition (no images loaded) instead
//! of failing, so the system is `running`.

mod common;
use common::*;

const COMPOSE: &str = "cd /opt/openclaw && set -a && . ./stack.env && set +a && ";

#[test]
fn production_builds_and_boots_with_units_timers_and_stack_config() {
    let scratch_dir = scratch("production-key");
    let key = scratch_dir.join("id_ed25519");
    let public = keygen(&key, "clawimg-production-test");
    let key_set = format!("users.admin.authorized_keys=[\"{}\"]", public.trim());
    let dir = build(
        "production",
        &[
            "--set",
            &key_set,
            // QEMU's user network: the guest sees host connections coming from 10.0.2.2.
            "--set",
            "firewall.rules.ssh.from=[\"10.0.2.2\"]",
            "--set",
            "swap.size=\"256MiB\"",
        ],
    );
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

    let probes = [
        format!("{COMPOSE}docker compose config -q"),
        // openclaw-net is internal; the tunnel override makes proxy-net internal too.
        format!("{COMPOSE}docker compose config --format json | jq -e '.networks[\"openclaw-net\"].internal and .networks[\"proxy-net\"].internal and (.services | has(\"cloudflared\"))'"),
        // Every image is pinned by digest.
        format!("{COMPOSE}test -z \"$(docker compose config --images | grep -v '@sha256:')\""),
        // Skipped by its condition (no images loaded), not failed.
        "test \"$(systemctl show -P ConditionResult openclaw-stack.service)\" = no && test \"$(systemctl show -P Result openclaw-stack.service)\" = success".into(),
        "systemctl is-active docker.service".into(),
        "test -d /opt/openclaw/monitoring/backups".into(),
    ];
    let mut flags: Vec<&str> = vec!["--firmware", "bios"];
    for p in &probes {
        flags.push("--probe");
        flags.push(p);
    }
    // The node's secrets: the required slots supplied, the rest generated on first boot.
    let secrets = scratch_dir.join("node1.toml");
    std::fs::write(
        &secrets,
        "[slots]\nanthropic_api_key = \"test-anthropic-value\"\nvoyage_api_key = \"test-voyage-value\"\ntelegram_bot_token = \"123:test-telegram\"\n",
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
    let out = boot(&node, &flags);
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
