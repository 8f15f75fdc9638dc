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

/// `vigil ARGS` with `env`: (exit code, stdout, stderr).
fn vigil_code(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shipped policy with one rule changed: exchange rate limiting becomes high, not medium.
fn rate_limits_high() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_routing(dir.path());
    let rules = std::fs::read_to_string(dir.path().join("rules.yaml")).unwrap();
    let edited = rules.replace(
        "matchers: ['kind=\"exchange_error\"', 'error=\"rate_limited\"']\n    severity: medium",
        "matchers: ['kind=\"exchange_error\"', 'error=\"rate_limited\"']\n    severity: high",
    );
    assert_ne!(
        rules, edited,
        "the shipped rule to change is where the test expects it"
    );
    std::fs::write(dir.path().join("rules.yaml"), edited).unwrap();
    dir
}

/// The events a diff printed (its `== <origin>: "<summary>"` headers, not the summary line).
fn changed_events(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("== ") && !l.starts_with("== summary"))
        .collect()
}

#[test]
fn diff_prints_exactly_the_events_a_rule_change_moves_and_exits_1() {
    let to = rate_limits_high();
    let from = shipped_routing();
    let fixtures = fixtures_dir();
    let (code, stdout, stderr) = vigil_code(
        &[
            "diff",
            "--from",
            from.to_str().unwrap(),
            "--to",
            to.path().to_str().unwrap(),
            "--events",
            fixtures.to_str().unwrap(),
            "--at",
            "2026-11-25T10:00:00+08:00",
        ],
        &[],
    );
    assert_eq!(code, 1, "something changed: {stdout}{stderr}");
    let changed = changed_events(&stdout);
    assert_eq!(changed.len(), 1, "{stdout}");
    assert!(
        changed[0].contains("bot-exchange-error-rate-limited.json")
            && changed[0].contains("Bybit answered HTTP 429"),
        "{stdout}"
    );
    assert!(stdout.contains("severity:  medium → high"), "{stdout}");
    assert!(
        stdout.contains("  pages:\n"),
        "who is paged changes: {stdout}"
    );
    assert!(
        stdout.contains("1 alert moves from medium to high"),
        "{stdout}"
    );
    // Files of the directory that are no payload are named on stderr, not replayed.
    assert!(
        stderr.contains("test-signing-cert.pem: skipped"),
        "{stderr}"
    );

    // Without events, each rule's probe shows the same change.
    let (code, stdout, _) = vigil_code(
        &[
            "diff",
            "--from",
            from.to_str().unwrap(),
            "--to",
            to.path().to_str().unwrap(),
            "--at",
            "2026-11-25T10:00:00+08:00",
        ],
        &[],
    );
    assert_eq!(code, 1);
    let changed = changed_events(&stdout);
    assert_eq!(changed.len(), 1, "{stdout}");
    assert!(
        changed[0].contains("probe of rule exchange-rate-limited"),
        "{stdout}"
    );
}

#[test]
fn diff_of_two_identical_policies_exits_0() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    copy_routing(a.path());
    copy_routing(b.path());
    let fixtures = fixtures_dir();
    let (code, stdout, stderr) = vigil_code(
        &[
            "diff",
            "--from",
            a.path().to_str().unwrap(),
            "--to",
            b.path().to_str().unwrap(),
            "--events",
            fixtures.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(changed_events(&stdout).is_empty(), "{stdout}");
    assert!(stdout.contains(" 0 changed"), "{stdout}");
    // A policy that does not load is an error (2), not "no change".
    std::fs::write(b.path().join("zz.yaml"), "rules: 7\n").unwrap();
    let (code, _, stderr) = vigil_code(
        &[
            "diff",
            "--from",
            a.path().to_str().unwrap(),
            "--to",
            b.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the policy does not load"), "{stderr}");
}

/// The alerts a running vigil took, exported and replayed: `vigil export-alerts` against a real
/// `vigil serve`, then `vigil diff --events` on what it wrote.
#[tokio::test]
async fn exported_alerts_replay_through_diff() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routing");
    copy_routing(&config);
    let port = free_port();
    let _vigil = Proc::spawn(serve_command(
        crate::VIGIL,
        &config,
        &["--data".as_ref(), dir.path().join("data").as_os_str()],
        port,
    ));
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    for fixture_name in [
        "bot-exchange-error-rate-limited.json",
        "bot-trading-halted.json",
    ] {
        let r = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", "application/json")
            .body(fixture(fixture_name))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    }
    let (code, exported, stderr) = tokio::task::spawn_blocking(move || {
        vigil_code(
            &["export-alerts", "--url", &base, "--since", "1h"],
            &[("VIGIL_OPERATOR_TOKEN", OPERATOR_TOKEN)],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one alert per incident: {exported}");
    let file = dir.path().join("alerts.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let to = rate_limits_high();
    let (code, stdout, stderr) = vigil_code(
        &[
            "diff",
            "--from",
            config.to_str().unwrap(),
            "--to",
            to.path().to_str().unwrap(),
            "--events",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    let changed = changed_events(&stdout);
    assert_eq!(changed.len(), 1, "{stdout}");
    assert!(changed[0].contains("Bybit answered HTTP 429"), "{stdout}");
    assert!(stdout.contains("2 events, 1 changed"), "{stdout}");
}

#[test]
fn simulate_takes_every_payload_of_the_other_sources() {
    let routing = shipped_routing();
    let fixtures = repo().join("tests/fixtures");
    for (file, rule, severity) in [
        (
            "aws-health-ec2-issue-open.json",
            "aws-health-issue-ap-southeast-1",
            "critical",
        ),
        (
            "aws-health-elasticache-scheduled-change.json",
            "aws-health-scheduled",
            "low",
        ),
        (
            "rds-failover-started-sns-notification.json",
            "rds-failover",
            "critical",
        ),
        (
            "rds-replication-error-sns-notification.json",
            "rds-replica-or-storage",
            "high",
        ),
        (
            "elasticache-failover-sns-notification.json",
            "elasticache-failover-or-failure",
            "high",
        ),
        (
            "alertmanager-firing.json",
            "prometheus-critical",
            "critical",
        ),
    ] {
        let path = fixtures.join(file);
        let (ok, stdout, stderr) = vigil(&[
            "simulate",
            "--config",
            routing.to_str().unwrap(),
            "--at",
            "2026-11-20T10:16:00+08:00",
            path.to_str().unwrap(),
        ]);
        assert!(ok, "{file}: {stderr}");
        assert!(
            stdout.contains(&format!("rule:         {rule}\n")),
            "{file}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("severity:     {severity}")),
            "{file}: {stdout}"
        );
    }
    // An SMS reply is described, not classified.
    let path = fixtures.join("sms-inbound-ack-sns-notification.json");
    let (ok, stdout, stderr) = vigil(&[
        "simulate",
        "--config",
        routing.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("command:      acknowledge incident #0Y1A"),
        "{stdout}"
    );
    assert!(stdout.contains("no person has this number"), "{stdout}");
}
