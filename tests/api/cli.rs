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
