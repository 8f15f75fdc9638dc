//! Bad input: each case gets a 4xx with a JSON error, changes nothing, and never a 5xx.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    auth: Option<&'static str>,
    api_key: Option<&'static str>,
    body: Vec<u8>,
    expect: u16,
}

fn sns_with(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
    f(&mut env);
    serde_json::to_vec(&env).unwrap()
}

fn cases() -> Vec<Case> {
    let sns = |name, body, expect| Case {
        name,
        path: "/v1/ingest/sns",
        content_type: "text/plain; charset=UTF-8",
        auth: None,
        api_key: None,
        body,
        expect,
    };
    let ev = |name, ct, auth, body: &[u8], expect| Case {
        name,
        path: "/v1/events",
        content_type: ct,
        auth,
        api_key: None,
        body: body.to_vec(),
        expect,
    };
    let halted = fixture("bot-trading-halted.json");
    vec![
        sns("sns malformed json", b"{\"Type\": ".to_vec(), 400),
        sns("sns not an object", b"[1,2,3]".to_vec(), 400),
        sns("sns missing signature", sns_with(|e| { e.as_object_mut().unwrap().remove("Signature"); }), 400),
        sns("sns forged message", sns_with(|e| e["Message"] = json!(e["Message"].as_str().unwrap().replace("93.41", "13.41"))), 401),
        sns("sns forged subject", sns_with(|e| e["Subject"] = json!("OK: nothing to see")), 401),
        sns("sns unknown signature version", sns_with(|e| e["SignatureVersion"] = json!("3")), 401),
        sns("sns cert on another host", sns_with(|e| e["SigningCertURL"] = json!("https://evil.example.com/SimpleNotificationService-x.pem")), 401),
        sns("sns cert on a look-alike host", sns_with(|e| e["SigningCertURL"] = json!("https://sns.ap-southeast-1.amazonaws.com.evil.example/x.pem")), 401),
        sns("sns cert over http", sns_with(|e| e["SigningCertURL"] = json!("http://sns.ap-southeast-1.amazonaws.com/x.pem")), 401),
        sns("sns unknown topic", {
            let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
            env["TopicArn"] = json!("arn:aws:sns:ap-southeast-1:999999999999:not-ours");
            env["MessageId"] = json!("99999999-0000-0000-0000-000000000000");
            sign_sns(&mut env);
            serde_json::to_vec(&env).unwrap()
        }, 403),
        // A Message that is not an alarm is taken (tests/api/sns.rs); a signed Timestamp that
        // is not a time is not.
        sns("sns timestamp not a time", {
            let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
            env["Message"] = json!("hello, not an alarm");
            env["Timestamp"] = json!("yesterday");
            env["MessageId"] = json!("99999999-0000-0000-0000-000000000001");
            sign_sns(&mut env);
            serde_json::to_vec(&env).unwrap()
        }, 400),
        sns("sns oversized body", vec![b' '; 300 * 1024], 413),
        ev("events no token", "application/json", None, &halted, 401),
        ev("events wrong token", "application/json", Some("nope"), &halted, 401),
        ev("events wrong content type", "text/plain", Some(INGEST_TOKEN), &halted, 415),
        ev("events malformed json", "application/json", Some(INGEST_TOKEN), b"{\"kind\": \"x\",", 400),
        ev("events missing summary", "application/json", Some(INGEST_TOKEN), br#"{"kind": "exchange_error"}"#, 400),
        ev("events missing kind", "application/json", Some(INGEST_TOKEN), br#"{"summary": "x"}"#, 400),
        ev("events wrong status", "application/json", Some(INGEST_TOKEN), br#"{"kind": "x", "summary": "x", "status": "on fire"}"#, 400),
        ev("events wrong type", "application/json", Some(INGEST_TOKEN), br#"{"kind": "x", "summary": 42}"#, 400),
        ev("events unknown field", "application/json", Some(INGEST_TOKEN), br#"{"kind": "x", "summary": "x", "sevrity": "low"}"#, 400),
        ev("events empty batch", "application/json", Some(INGEST_TOKEN), b"[]", 400),
        ev("events batch with one bad event", "application/json", Some(INGEST_TOKEN), br#"[{"kind": "x", "summary": "ok"}, {"kind": "x"}]"#, 400),
        ev("events oversized", "application/json", Some(INGEST_TOKEN), &vec![b' '; 300 * 1024], 413),
        Case { name: "eventbridge no key", path: "/v1/ingest/eventbridge", content_type: "application/json", auth: None, api_key: None, body: fixture("eventbridge-cloudwatch-alarm-state-change.json"), expect: 401 },
        Case { name: "eventbridge wrong key", path: "/v1/ingest/eventbridge", content_type: "application/json", auth: None, api_key: Some("nope"), body: fixture("eventbridge-cloudwatch-alarm-state-change.json"), expect: 401 },
        Case { name: "eventbridge malformed", path: "/v1/ingest/eventbridge", content_type: "application/json", auth: None, api_key: Some(EVENTBRIDGE_KEY), body: b"{\"detail-type\": \"CloudWatch Alarm State Change\", \"source\": \"aws.cloudwatch\"}".to_vec(), expect: 400 },
        Case { name: "ack with ingest token", path: "/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A/ack", content_type: "application/json", auth: Some(INGEST_TOKEN), api_key: None, body: b"{}".to_vec(), expect: 403 },
        Case { name: "ack unknown incident", path: "/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A/ack", content_type: "application/json", auth: Some(OPERATOR_TOKEN), api_key: None, body: b"{}".to_vec(), expect: 404 },
        Case { name: "ack bad id", path: "/v1/incidents/not-an-id/ack", content_type: "application/json", auth: Some(OPERATOR_TOKEN), api_key: None, body: b"{}".to_vec(), expect: 400 },
        Case { name: "ack bad body", path: "/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A/ack", content_type: "application/json", auth: Some(OPERATOR_TOKEN), api_key: None, body: b"{\"by\": 7}".to_vec(), expect: 400 },
        Case { name: "ack for longer than the calendar", path: "/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A/ack", content_type: "application/json", auth: Some(OPERATOR_TOKEN), api_key: None, body: br#"{"for": "100000000years"}"#.to_vec(), expect: 400 },
        Case { name: "reload without token", path: "/v1/admin/reload", content_type: "application/json", auth: None, api_key: None, body: vec![], expect: 401 },
        Case { name: "unknown endpoint", path: "/v1/nothing", content_type: "application/json", auth: None, api_key: None, body: vec![], expect: 404 },
    ]
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let app = spawn_app().await;
    // One real incident, so "no state change" is checked against something.
    let (_, body) = app
        .post_events(&fixture("bot-exchange-error-timeout.json"))
        .await;
    let id = incident_of(&body);
    app.handle.run_deliveries().await;
    let before = app.incident(&id).await;
    let before_list = app.incidents().await;
    for case in cases() {
        let mut req = app
            .http
            .post(app.url(case.path))
            .header("content-type", case.content_type)
            .body(case.body.clone());
        if let Some(t) = case.auth {
            req = req.bearer_auth(t);
        }
        if let Some(k) = case.api_key {
            req = req.header("x-api-key", k);
        }
        let (status, body) = answer(req.send().await.unwrap()).await;
        assert_eq!(status.as_u16(), case.expect, "{}: {body}", case.name);
        assert!(
            body["error"].is_string() && body["detail"].is_string(),
            "{}: not a JSON error: {body}",
            case.name
        );
    }
    assert_eq!(app.incident(&id).await, before, "the incident is untouched");
    assert_eq!(app.incidents().await, before_list, "no incident was opened");
    let (status, _) = app.get("/v1/incidents?status=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let resp = app.http.get(app.url("/v1/incidents")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}
