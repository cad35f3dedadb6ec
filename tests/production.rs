//! The production profile (OpenClaw stack): one build and ONE boot. Inside the VM: every
//! declared unit enabled, every timer listed, the overlay files with their declared owner,
//! group and mode (probes derived from the manifest by `clawimg test`), `docker compose
//! config -q` on the rendered stack, and the stack unit skipped by its conditions (no
//! images loaded, no secrets) instead of failing, so the system is `running`.

mod common;
use common::*;

const COMPOSE: &str = "cd /opt/openclaw && set -a && . ./stack.env && set +a && ";

#[test]
fn production_builds_and_boots_with_units_timers_and_stack_config() {
    let dir = build("production", &[]);
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
        // Skipped by its conditions (no images, no secrets), not failed.
        "test \"$(systemctl show -P ConditionResult openclaw-stack.service)\" = no && test \"$(systemctl show -P Result openclaw-stack.service)\" = success".into(),
        "systemctl is-active docker.service".into(),
        "test -d /opt/openclaw/monitoring/backups".into(),
    ];
    let mut flags: Vec<&str> = vec!["--firmware", "bios"];
    for p in &probes {
        flags.push("--probe");
        flags.push(p);
    }
    let out = boot(&dir.join("production.raw"), &flags);
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
