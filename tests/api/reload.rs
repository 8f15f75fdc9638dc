//! Hot reload: a broken edit is refused with `vigil check`'s messages and the old policy keeps
//! classifying; a good edit takes effect; a file change reloads by itself.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn severity_of(app: &TestApp, body: &[u8]) -> String {
    let (status, answer) = app.post_events(body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    app.incident(&incident_of(&answer)).await["severity"]
        .as_str()
        .unwrap()
        .to_string()
}

fn rate_limited(n: u32) -> Vec<u8> {
    let mut e = fixture_json("bot-exchange-error-rate-limited.json");
    e["dedup_key"] = json!(format!("rl-{n}"));
    serde_json::to_vec(&e).unwrap()
}

#[tokio::test]
async fn broken_edit_is_refused_and_the_old_policy_keeps_classifying() {
    let app = spawn_app().await;
    assert_eq!(severity_of(&app, &rate_limited(1)).await, "medium");
    assert!(
        app.metrics()
            .await
            .contains("vigil_config_last_reload_success 1")
    );

    // Two mistakes: an unknown key and a rule pointing at a policy that does not exist.
    std::fs::write(
        app.config_dir.join("zz-broken.yaml"),
        "rules:\n  - name: oops\n    matchers: ['kind=\"x\"']\n    severity: critical\n    policy: nowhere\n    colour: red\n",
    )
    .unwrap();
    let (status, body) = app.post_op("/v1/admin/reload", Value::Null).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let problems = body["problems"].as_array().unwrap();
    assert!(!problems.is_empty());
    assert!(
        problems
            .iter()
            .all(|p| p.as_str().unwrap().contains("zz-broken.yaml")),
        "{problems:?}"
    );
    // The same text `vigil check` prints.
    let check = vigil::config::load_dir(&app.config_dir).unwrap_err();
    let printed: Vec<String> = check.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        problems
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        printed
    );
    assert!(
        app.metrics()
            .await
            .contains("vigil_config_last_reload_success 0")
    );
    assert_eq!(
        severity_of(&app, &rate_limited(2)).await,
        "medium",
        "old policy still serving"
    );

    // A good edit: rate limiting becomes high.
    std::fs::remove_file(app.config_dir.join("zz-broken.yaml")).unwrap();
    let rules = std::fs::read_to_string(app.config_dir.join("rules.yaml")).unwrap();
    let edited = rules.replace(
        "error=\"rate_limited\"']\n    severity: medium",
        "error=\"rate_limited\"']\n    severity: high",
    );
    assert_ne!(
        rules, edited,
        "the shipped rules.yaml has the rate-limit rule in the expected shape"
    );
    std::fs::write(app.config_dir.join("rules.yaml"), edited).unwrap();
    let (status, body) = app.post_op("/v1/admin/reload", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reloaded"], true);
    assert!(
        app.metrics()
            .await
            .contains("vigil_config_last_reload_success 1")
    );
    assert_eq!(severity_of(&app, &rate_limited(3)).await, "high");
}

#[tokio::test]
async fn a_file_change_reloads_by_itself() {
    let app = spawn_app_with(Options {
        watch_config: true,
        ..Default::default()
    })
    .await;
    std::fs::write(app.config_dir.join("zz-broken.yaml"), "severities: [\n").unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if app
            .metrics()
            .await
            .contains("vigil_config_last_reload_success 0")
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the watcher reloaded and refused the broken file");
    assert_eq!(severity_of(&app, &rate_limited(1)).await, "medium");
}

#[tokio::test]
async fn an_open_incident_keeps_its_policy_snapshot_across_a_reload() {
    let sink = crate::helpers::ok_sink().await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        ..Default::default()
    })
    .await;
    let (_, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    let id = incident_of(&body);
    app.advance(Duration::ZERO).await;
    // The critical chain now escalates after 1 minute instead of 5.
    let policy = std::fs::read_to_string(app.config_dir.join("policy.yaml")).unwrap();
    std::fs::write(
        app.config_dir.join("policy.yaml"),
        policy.replace("after: 5m", "after: 1m"),
    )
    .unwrap();
    let (status, body) = app.post_op("/v1/admin/reload", Value::Null).await;
    assert_eq!(
        (status, body["reloaded"].clone()),
        (StatusCode::OK, json!(true)),
        "{body}"
    );
    app.advance(Duration::from_secs(60)).await;
    let kinds = |pages: Vec<Value>| pages.iter().filter(|p| p["kind"] == "escalate").count();
    assert_eq!(
        kinds(received(&sink).await),
        0,
        "the open incident still follows its 5-minute step"
    );
    assert_eq!(
        app.incident(&id).await["escalation"]["steps"][1]["after"],
        "5m"
    );
    app.advance(Duration::from_secs(4 * 60)).await;
    assert_eq!(kinds(received(&sink).await), 1);
    // A new incident gets the new policy.
    let mut other = fixture_json("bot-trading-halted.json");
    other["dedup_key"] = json!("halt-after-reload");
    let (_, body) = app.post_events(&serde_json::to_vec(&other).unwrap()).await;
    assert_eq!(
        app.incident(&incident_of(&body)).await["escalation"]["steps"][1]["after"],
        "1m"
    );
}
