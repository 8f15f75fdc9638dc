//! The other voices of a disaster (issue 15) through the HTTP API with the shipped policy: AWS
//! Health on the EventBridge endpoint, RDS and ElastiCache event notifications through SNS
//! (signed with the fixtures' test key), Prometheus Alertmanager's webhook. Each payload from
//! `tests/fixtures/` opens its incident with the labels and severity the shipped rules give, and
//! the closing one resolves it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A payload of `tests/fixtures/` (this repository's; `fixture()` reads the shared ones).
fn local(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(name))
        .unwrap_or_else(|e| panic!("tests/fixtures/{name}: {e}"))
}

fn local_json(name: &str) -> Value {
    serde_json::from_slice(&local(name)).unwrap()
}

async fn post_alertmanager(app: &TestApp, token: Option<&str>, body: &[u8]) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(app.url("/v1/ingest/alertmanager"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    answer(req.send().await.unwrap()).await
}

fn assert_labels(inc: &Value, want: &[(&str, &str)]) {
    for (k, v) in want {
        assert_eq!(inc["labels"][k], *v, "label {k} of {}", inc["labels"]);
    }
}

#[tokio::test]
async fn an_aws_health_issue_in_the_desks_region_is_critical_and_closed_resolves_it() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_eventbridge(&local("aws-health-ec2-issue-open.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["results"][0]["outcome"], "opened");
    let id = incident_of(&body);
    let inc = app.incident(&id).await;
    assert_eq!(inc["severity"], "critical");
    assert_eq!(inc["rule"], "aws-health-issue-ap-southeast-1");
    assert_labels(
        &inc,
        &[
            ("kind", "aws_health"),
            ("service", "EC2"),
            ("event_type_code", "AWS_EC2_OPERATIONAL_ISSUE"),
            ("category", "issue"),
            ("status", "open"),
            ("region", "ap-southeast-1"),
            ("account", "123456789012"),
        ],
    );
    assert!(
        inc["description"]
            .as_str()
            .unwrap()
            .contains("i-0abc123def4567890 (IMPAIRED)"),
        "{inc}"
    );

    let (status, body) = app
        .post_eventbridge(&local("aws-health-ec2-issue-closed.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["results"][0]["outcome"], "resolved");
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "resolved");
    assert_eq!(inc["resolved"][0]["origin"], "source");
}

#[tokio::test]
async fn other_aws_health_events_get_high_and_low() {
    let app = spawn_app().await;
    // The organizational view: delivered to the management account, about a member account.
    let (status, body) = app
        .post_eventbridge(&local("aws-health-rds-issue-us-east-1-org-view.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let inc = app.incident(&incident_of(&body)).await;
    assert_eq!(inc["severity"], "high");
    assert_labels(
        &inc,
        &[
            ("service", "RDS"),
            ("region", "us-east-1"),
            ("account", "123456789012"),
        ],
    );
    let (status, body) = app
        .post_eventbridge(&local("aws-health-elasticache-scheduled-change.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let inc = app.incident(&incident_of(&body)).await;
    assert_eq!(inc["severity"], "low");
    assert_labels(
        &inc,
        &[("category", "scheduledChange"), ("status", "upcoming")],
    );
    // A Health event with a status AWS does not send is refused, naming the field.
    let mut bad = local_json("aws-health-ec2-issue-open.json");
    bad["detail"]["statusCode"] = json!("gone");
    let (status, body) = app
        .post_eventbridge(&serde_json::to_vec(&bad).unwrap())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("detail.statusCode"),
        "{body}"
    );
}

#[tokio::test]
async fn an_rds_failover_is_critical_and_its_completion_resolves_it() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_sns(&local("rds-failover-started-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["outcome"], "opened");
    let id = incident_of(&body);
    let inc = app.incident(&id).await;
    assert_eq!(inc["severity"], "critical");
    assert_eq!(inc["rule"], "rds-failover");
    assert_labels(
        &inc,
        &[
            ("kind", "rds_event"),
            ("event_id", "RDS-EVENT-0013"),
            ("source_id", "trading-db-prod"),
            ("source_type", "db-instance"),
            ("categories", "failover"),
            ("region", "ap-southeast-1"),
        ],
    );
    let (status, body) = app
        .post_sns(&local("rds-failover-completed-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["outcome"], "resolved");
    assert_eq!(app.incident(&id).await["status"], "resolved");
}

#[tokio::test]
async fn rds_replica_breakage_is_high_and_informational_events_low() {
    let app = spawn_app().await;
    for (file, severity, event) in [
        (
            "rds-replication-error-sns-notification.json",
            "high",
            "RDS-EVENT-0045",
        ),
        ("rds-backup-sns-notification.json", "low", "RDS-EVENT-0002"),
    ] {
        let (status, body) = app.post_sns(&local(file)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let inc = app.incident(&incident_of(&body)).await;
        assert_eq!(inc["severity"], severity, "{file}");
        assert_labels(&inc, &[("kind", "rds_event"), ("event_id", event)]);
    }
    // Plain text on the same topic stays a generic notification.
    let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
    env["Message"] = json!("disk full on db-1");
    env["MessageId"] = json!("plain-1");
    sign_sns(&mut env);
    let (status, body) = app.post_sns(&serde_json::to_vec(&env).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let inc = app.incident(&incident_of(&body)).await;
    assert_labels(&inc, &[("kind", "sns_notification")]);
}

#[tokio::test]
async fn an_elasticache_failover_is_high_and_node_replacement_is_a_low_pair() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_sns(&local("elasticache-failover-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let inc = app.incident(&incident_of(&body)).await;
    assert_eq!(inc["severity"], "high");
    assert_labels(
        &inc,
        &[
            ("kind", "elasticache_event"),
            ("event", "FailoverComplete"),
            ("source_id", "trading-redis-0001-002"),
            ("cache_cluster_id", "trading-redis-0001-001"),
        ],
    );

    let (status, body) = app
        .post_sns(&local(
            "elasticache-node-replace-started-sns-notification.json",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = incident_of(&body);
    assert_eq!(app.incident(&id).await["severity"], "low");
    let (status, body) = app
        .post_sns(&local(
            "elasticache-node-replace-complete-sns-notification.json",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["outcome"], "resolved");
    assert_eq!(app.incident(&id).await["status"], "resolved");
}

#[tokio::test]
async fn alertmanager_alerts_open_incidents_by_their_severity_and_resolved_resolves_them() {
    let app = spawn_app().await;
    let (status, body) =
        post_alertmanager(&app, Some(INGEST_TOKEN), &local("alertmanager-firing.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], 2);
    let ids: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["outcome"], "opened", "{r}");
            r["incidents"][0].as_str().unwrap().to_string()
        })
        .collect();
    let checkout = app.incident(&ids[0]).await;
    assert_eq!(checkout["severity"], "critical");
    assert_eq!(checkout["fingerprint"], "alertmanager/69c2e62f0b0aec37");
    assert_labels(
        &checkout,
        &[
            ("kind", "prometheus_alert"),
            ("alertname", "HighErrorRate"),
            ("service", "checkout"),
            ("namespace", "trading"),
        ],
    );
    assert_eq!(checkout["summary"], "HighErrorRate: 5xx > 5% on checkout");
    assert_eq!(
        checkout["details"]["annotations"]["runbook_url"],
        "https://runbooks.example.com/5xx"
    );
    assert_eq!(app.incident(&ids[1]).await["severity"], "high");

    // Alertmanager re-sends a firing group every repeat_interval: it folds in.
    let (_, body) =
        post_alertmanager(&app, Some(INGEST_TOKEN), &local("alertmanager-firing.json")).await;
    assert_eq!(
        body["results"][0]["incidents"][0],
        ids[0].as_str(),
        "{body}"
    );

    let (status, body) = post_alertmanager(
        &app,
        Some(INGEST_TOKEN),
        &local("alertmanager-resolved.json"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for id in &ids {
        assert_eq!(app.incident(id).await["status"], "resolved");
    }
}

#[tokio::test]
async fn alertmanager_needs_the_token_and_a_well_formed_v4_payload() {
    let app = spawn_app().await;
    let good = local("alertmanager-firing.json");
    let (status, _) = post_alertmanager(&app, None, &good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post_alertmanager(&app, Some("wrong"), &good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut v = local_json("alertmanager-firing.json");
    v["version"] = json!("3");
    let (status, body) =
        post_alertmanager(&app, Some(INGEST_TOKEN), &serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let mut v = local_json("alertmanager-firing.json");
    v["alerts"][1]["status"] = json!("pending");
    let (status, body) =
        post_alertmanager(&app, Some(INGEST_TOKEN), &serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("alerts[1].status"),
        "{body}"
    );
    let (status, _) = post_alertmanager(&app, Some(INGEST_TOKEN), b"{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Nothing of the refused payloads opened anything.
    assert!(app.incidents().await.is_empty());
    // With max_alerts, the notification says how many were left out; the rest is taken.
    let mut v = local_json("alertmanager-firing.json");
    v["truncatedAlerts"] = json!(3);
    let (status, body) =
        post_alertmanager(&app, Some(INGEST_TOKEN), &serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["truncated_alerts"], 3);
}
