//! The command line: `vigil check` and `vigil simulate` as an operator runs them.

use std::process::Command;

use crate::helpers::*;

fn vigil(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_shipped_policy() {
    let dir = shipped_routing();
    let templates = shipped_templates();
    let (ok, stdout, stderr) = vigil(&[
        "check",
        "--config",
        dir.to_str().unwrap(),
        "--templates",
        templates.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("policy OK"), "{stdout}");
}

#[test]
fn check_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    copy_routing(dir.path());
    // Two files, each with a mistake: a secret written into YAML and a phone number not in E.164.
    std::fs::write(
        dir.path().join("zz-a.yaml"),
        "channels:\n  pager2: { type: pagerduty, routing_key: abc }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("zz-b.yaml"),
        "people:\n  bob:\n    name: Bob\n    phone: \"12345\"\n",
    )
    .unwrap();
    let templates = shipped_templates();
    let (ok, _, stderr) = vigil(&[
        "check",
        "--config",
        dir.path().to_str().unwrap(),
        "--templates",
        templates.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("zz-a.yaml:2: channels.pager2.routing_key: unknown field"),
        "{stderr}"
    );
    assert!(stderr.contains("zz-b.yaml:4: people.bob.phone"), "{stderr}");
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    assert!(stderr.contains("policy refused"), "{stderr}");
}

#[test]
fn simulate_prints_rule_severity_key_and_the_timeline() {
    let routing = shipped_routing();
    let fixture = fixtures_dir().join("route53-healthcheck-alarm-sns-notification.json");
    let (ok, stdout, stderr) = vigil(&[
        "simulate",
        "--config",
        routing.to_str().unwrap(),
        "--at",
        "2026-11-28T03:00:00+08:00",
        fixture.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("rule:         route53-health-check"),
        "{stdout}"
    );
    assert!(stdout.contains("severity:     critical"), "{stdout}");
    assert!(
        stdout.contains("health_check_id = 7c0d6a1e-92b4-4f3a-b8e5-1d2c3b4a5f60"),
        "{stdout}"
    );
    assert!(stdout.contains("incident key: arn:aws:cloudwatch:us-east-1:123456789012:alarm:route53-hc-api-example-com-unhealthy"));
    let steps: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("via pagerduty, sms, phone"))
        .collect();
    assert_eq!(steps.len(), 3, "{stdout}");
    assert!(
        steps[0].contains("+0s") && steps[0].contains("Sat 03:00"),
        "{}",
        steps[0]
    );
    assert!(
        steps[1].contains("+5m") && steps[1].contains("Sat 03:05"),
        "{}",
        steps[1]
    );
    assert!(
        steps[2].contains("+10m") && steps[2].contains("Sat 03:10"),
        "{}",
        steps[2]
    );
}

#[test]
fn simulate_shows_a_notification_that_is_not_an_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
    env["Message"] = serde_json::json!("Failover of trading-db started by ops");
    env.as_object_mut().unwrap().remove("Subject");
    let path = dir.path().join("plain.json");
    std::fs::write(&path, serde_json::to_vec(&env).unwrap()).unwrap();
    let routing = shipped_routing();
    let (ok, stdout, stderr) = vigil(&[
        "simulate",
        "--config",
        routing.to_str().unwrap(),
        "--at",
        "2026-11-20T10:15:45+08:00",
        path.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("summary:      Failover of trading-db started by ops"),
        "{stdout}"
    );
    assert!(stdout.contains("kind = sns_notification"), "{stdout}");
    assert!(
        stdout.contains("rule:         sns-notification"),
        "{stdout}"
    );
    assert!(stdout.contains("severity:     high"), "{stdout}");
    assert!(
        stdout.contains("incident key: sns/arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts/"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("+0s") && l.contains("slack-trading-alerts")),
        "{stdout}"
    );
}

#[test]
fn simulate_refuses_a_payload_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"kind\": 5}").unwrap();
    let routing = shipped_routing();
    let (ok, _, stderr) = vigil(&[
        "simulate",
        "--config",
        routing.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("not a payload vigil accepts"), "{stderr}");
}

fn write_event(dir: &std::path::Path, name: &str, body: serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn simulate_applies_business_hours_silences_and_inhibition() {
    let dir = tempfile::tempdir().unwrap();
    let routing = dir.path().join("routing");
    std::fs::create_dir_all(&routing).unwrap();
    crate::time::policy("http://127.0.0.1:9".into())(&routing);
    let routing = routing.to_string_lossy().into_owned();
    let low = write_event(
        dir.path(),
        "low.json",
        serde_json::json!({ "kind": "report", "summary": "weekly report late" }),
    );
    let at = |when: &str, file: &str, extra: &[&str]| {
        let mut args = vec!["simulate", "--config", &routing, "--at", when];
        args.extend_from_slice(extra);
        args.push(file);
        let (ok, stdout, stderr) = vigil(&args);
        assert!(ok, "{stderr}");
        stdout
    };
    // Saturday 03:00 in Singapore: held until Monday 09:00. Monday 10:00: at once.
    let saturday = at("2026-11-28T03:00:00+08:00", &low, &[]);
    assert!(
        saturday.contains(
            "deferred:     outside business hours; the first page waits until Mon 2026-11-30 09:00"
        ),
        "{saturday}"
    );
    assert!(saturday.contains("from Mon 2026-11-30 09:00"), "{saturday}");
    let monday = at("2026-11-30T10:00:00+08:00", &low, &[]);
    assert!(!monday.contains("deferred:"), "{monday}");
    assert!(monday.contains("from Mon 2026-11-30 10:00"), "{monday}");
    // An active silence shows as such (and not outside its window).
    let target = write_event(
        dir.path(),
        "target.json",
        serde_json::json!({ "kind": "maintenance_target", "summary": "db failover" }),
    );
    let during = at("2026-11-20T02:20:00Z", &target, &[]);
    assert!(during.contains("silenced:     by window-1"), "{during}");
    let after = at("2026-11-20T03:00:00Z", &target, &[]);
    assert!(!after.contains("silenced:"), "{after}");
    // An inhibited alert shows its inhibitor.
    let down = write_event(
        dir.path(),
        "down.json",
        serde_json::json!({ "kind": "region_down", "summary": "ap-southeast-1 is down", "labels": { "region": "ap-southeast-1" } }),
    );
    let eks = write_event(
        dir.path(),
        "eks.json",
        serde_json::json!({ "kind": "eks_alarm", "summary": "EKS nodes NotReady", "labels": { "region": "ap-southeast-1" } }),
    );
    let inhibited = at("2026-11-20T02:20:00Z", &eks, &["--open", &down]);
    assert!(
        inhibited.contains("inhibited:    by the open \"ap-southeast-1 is down\""),
        "{inhibited}"
    );
    let alone = at("2026-11-20T02:20:00Z", &eks, &[]);
    assert!(!alone.contains("inhibited:"), "{alone}");
    // A grouped rule says how it groups.
    let storm = write_event(
        dir.path(),
        "storm.json",
        serde_json::json!({ "kind": "storm", "summary": "node down", "labels": { "region": "ap-southeast-1" } }),
    );
    let grouped = at("2026-11-20T02:20:00Z", &storm, &[]);
    assert!(
        grouped.contains("grouping:") && grouped.contains("2m"),
        "{grouped}"
    );
}

/// `--endpoint` names a registered channel type; a misspelt one stops `serve` before it starts,
/// instead of leaving that provider on its default URL unnoticed.
#[test]
fn serve_refuses_an_endpoint_for_a_channel_type_that_does_not_exist() {
    let data = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = vigil(&[
        "serve",
        "--config",
        shipped_routing().to_str().unwrap(),
        "--templates",
        shipped_templates().to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--endpoint",
        "pagerdty=http://127.0.0.1:9",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"no channel type "pagerdty" (known: email, log, pagerduty"#),
        "{stderr}"
    );
}
