//! Acknowledging by SMS reply (issue 15): a critical alarm pages Mei by SMS through the local SNS
//! emulator (moto), the page names the incident's short code, and Mei's reply — an inbound
//! two-way SMS published to an allow-listed SNS topic, signed with the fixtures' test key —
//! acknowledges it: escalation stops (the CTO is never paged), the timeline says "via SMS", and
//! one confirmation SMS goes back. The same reply from an unknown number, or with a wrong code,
//! changes nothing and says so.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil::clock::Clock as _;
use vigil::domain::PhoneNumber;

use crate::channels::{aws_settings, emulator, moto_sms, unique_phone};
use crate::helpers::*;
use crate::recovery::{aws_at, queue_depth};

const REPLIES: &str = "arn:aws:sns:ap-southeast-1:123456789012:vigil-sms-replies";

fn write_policy(dir: &Path, mei: &PhoneNumber, cto: &PhoneNumber, queues: &[String]) {
    std::fs::write(
        dir.join("policy.yaml"),
        format!(
            r#"
timezone: Asia/Singapore
sources:
  sns:
    allowed_topics:
      - "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts"
      - "{REPLIES}"
    dead_letter_queues: {queues}
severities:
  critical: {{ respond_within: 5m, policy: critical }}
  high: {{ respond_within: 15m, policy: critical }}
  medium: {{ respond_within: 1h, policy: critical }}
  low: {{ respond_within: 4h, policy: critical }}
people:
  mei: {{ name: Mei Tan, phone: "{mei}", email: mei@example.com }}
  cto: {{ name: Chen Tao, phone: "{cto}", email: cto@example.com }}
schedules:
  primary:
    rotation: {{ members: [mei], every: 1w, start: "2026-11-02T09:00:00" }}
channels:
  sms: {{ type: sms }}
  email: {{ type: email }}
policies:
  critical:
    steps:
      - {{ after: 0m, targets: [{{ schedule: primary }}], via: [sms, email] }}
      - {{ after: 5m, targets: [{{ person: cto }}], via: [sms, email] }}
rules:
  - name: everything
    matchers: []
    severity: critical
"#,
            mei = mei.as_ref(),
            cto = cto.as_ref(),
            queues = json!(queues),
        ),
    )
    .unwrap();
}

struct Desk {
    app: TestApp,
    moto: String,
    mei: PhoneNumber,
    cto: PhoneNumber,
}

async fn desk() -> Desk {
    desk_draining(Vec::new()).await
}

/// The desk, draining these SQS dead-letter queues (on moto).
async fn desk_draining(queues: Vec<String>) -> Desk {
    let (mei, cto) = (unique_phone(), unique_phone());
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let mut channels = aws_settings().await;
    channels.endpoints.insert("sms".into(), moto.clone());
    if !queues.is_empty() {
        channels.aws = Some(aws_at(&moto, "ap-southeast-1").await);
    }
    let (m, c) = (mei.clone(), cto.clone());
    let app = spawn_app_with(Options {
        policy: Some(Box::new(move |dir: &Path| {
            write_policy(dir, &m, &c, &queues)
        })),
        channels: Some(channels),
        ..Default::default()
    })
    .await;
    Desk {
        app,
        moto,
        mei,
        cto,
    }
}

/// An inbound-SMS Notification from `from` saying `body`, signed, sent now (the app's clock).
fn inbound(app: &TestApp, from: &PhoneNumber, body: &str) -> Vec<u8> {
    let mut env = serde_json::from_slice::<Value>(
        &std::fs::read(repo().join("tests/fixtures/sms-inbound-ack-sns-notification.json"))
            .unwrap(),
    )
    .unwrap();
    let id = ulid::Ulid::new().to_string();
    env["Message"] = json!(
        json!({
            "originationNumber": from.as_ref(),
            "destinationNumber": "+6580001234",
            "messageKeyword": "KEYWORD_123456789012",
            "messageBody": body,
            "inboundMessageId": id,
            "previousPublishedMessageId": "wJalrXUtnFEMI"
        })
        .to_string()
    );
    env["MessageId"] = json!(format!("m-{id}"));
    env["Timestamp"] = json!(app.clock.now().to_rfc3339());
    sign_sns(&mut env);
    serde_json::to_vec(&env).unwrap()
}

/// Opens the critical incident (the alarm fixture) and sends its first page; its id.
async fn page_mei(d: &Desk) -> String {
    let (status, body) = d
        .app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    d.app.handle.run_deliveries().await;
    incident_of(&body)
}

fn code(id: &str) -> String {
    id[id.len() - 4..].to_string()
}

#[tokio::test]
async fn an_sms_reply_acks_the_incident_stops_escalation_and_is_confirmed() {
    let d = desk().await;
    let id = page_mei(&d).await;
    let code = code(&id);
    let pages = moto_sms(&d.moto, &d.mei).await;
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(
        pages[0].1.starts_with(&format!("CRITICAL #{code} ")),
        "the page leads with the code: {}",
        pages[0].1
    );
    assert!(
        pages[0].1.contains(&format!("reply ACK {code}")),
        "{}",
        pages[0].1
    );

    // Mei answers in lower case with extra spaces.
    let (status, body) = d
        .app
        .post_sns(&inbound(
            &d.app,
            &d.mei,
            &format!("  ack {}  ", code.to_lowercase()),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sms_reply"], "acknowledged", "{body}");
    assert_eq!(body["answer_sms"], "sent", "{body}");
    let inc = d.app.incident(&id).await;
    assert_eq!(inc["status"], "acknowledged");
    assert_eq!(inc["acknowledged"][0]["who"], "Mei Tan");
    assert_eq!(inc["acknowledged"][0]["origin"], "sms");
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "acknowledged" && e["origin"] == "sms"),
        "{}",
        inc["timeline"]
    );

    // One confirmation, naming who will not be paged now.
    d.app.handle.run_deliveries().await;
    let texts = moto_sms(&d.moto, &d.mei).await;
    assert_eq!(texts.len(), 2, "the page and one confirmation: {texts:?}");
    assert_eq!(
        texts[1].1,
        format!("ACK #{code} by Mei Tan: Chen Tao will not be paged.")
    );

    // Escalation stopped: the CTO is never paged.
    d.app.advance(Duration::from_secs(10 * 60)).await;
    assert!(moto_sms(&d.moto, &d.cto).await.is_empty());

    // The same text again (SNS redelivers): a duplicate, no second answer.
    let again = inbound(&d.app, &d.mei, &format!("ACK {code}"));
    let (_, body) = d.app.post_sns(&again).await;
    assert_eq!(
        body["sms_reply"], "refused",
        "a new text: already acknowledged: {body}"
    );
    assert_eq!(
        body["answer"],
        format!("#{code} is already acknowledged by Mei Tan.")
    );
    let (_, body) = d.app.post_sns(&again).await;
    assert_eq!(body["sms_reply"], "duplicate", "{body}");
    assert_eq!(moto_sms(&d.moto, &d.mei).await.len(), 3);

    // RES resolves, and a later ACK says it is resolved.
    let (_, body) = d
        .app
        .post_sns(&inbound(&d.app, &d.mei, &format!("RES #{code}")))
        .await;
    assert_eq!(body["sms_reply"], "resolved", "{body}");
    assert_eq!(d.app.incident(&id).await["status"], "resolved");
    assert_eq!(d.app.incident(&id).await["resolved"][0]["origin"], "sms");
    let (_, body) = d
        .app
        .post_sns(&inbound(&d.app, &d.mei, &format!("ACK {code}")))
        .await;
    assert_eq!(
        body["answer"],
        format!("#{code} is already resolved."),
        "{body}"
    );
}

#[tokio::test]
async fn a_reply_from_an_unknown_number_or_with_a_wrong_code_changes_nothing_and_says_so() {
    let d = desk().await;
    let id = page_mei(&d).await;
    let code = code(&id);

    let stranger = unique_phone();
    let (status, body) = d
        .app
        .post_sns(&inbound(&d.app, &stranger, &format!("ACK {code}")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sms_reply"], "ignored");
    assert!(
        body["detail"].as_str().unwrap().contains("no person"),
        "{body}"
    );
    assert!(
        moto_sms(&d.moto, &stranger).await.is_empty(),
        "a stranger is not answered"
    );

    // A code no incident has (the last character changed within the alphabet).
    let wrong = format!(
        "{}{}",
        &code[..3],
        if code.ends_with('Z') { 'Y' } else { 'Z' }
    );
    let (_, body) = d
        .app
        .post_sns(&inbound(&d.app, &d.mei, &format!("ACK {wrong}")))
        .await;
    assert_eq!(body["sms_reply"], "refused", "{body}");
    assert_eq!(body["answer"], format!("No open incident #{wrong}."));
    // Nonsense gets the usage.
    let (_, body) = d.app.post_sns(&inbound(&d.app, &d.mei, "hello?")).await;
    assert_eq!(body["sms_reply"], "refused", "{body}");
    assert!(
        body["answer"]
            .as_str()
            .unwrap()
            .contains("Reply ACK <code>"),
        "{body}"
    );
    // STOP is AWS's business: nothing done, nothing sent.
    let (_, body) = d.app.post_sns(&inbound(&d.app, &d.mei, "STOP")).await;
    assert_eq!(body["sms_reply"], "ignored", "{body}");

    assert_eq!(d.app.incident(&id).await["status"], "triggered");
    let texts: Vec<String> = moto_sms(&d.moto, &d.mei)
        .await
        .into_iter()
        .map(|t| t.1)
        .collect();
    assert_eq!(texts.len(), 3, "the page and the two answers: {texts:?}");
    assert_eq!(texts[1], format!("No open incident #{wrong}."));
    // Escalation goes on: the CTO is paged at 5 minutes.
    d.app.advance(Duration::from_secs(6 * 60)).await;
    assert_eq!(moto_sms(&d.moto, &d.cto).await.len(), 1);
}

#[tokio::test]
async fn ack_alone_takes_the_newest_page_and_a_timed_ack_runs_out() {
    let d = desk().await;
    let id = page_mei(&d).await;
    let (status, body) = d.app.post_sns(&inbound(&d.app, &d.mei, "ACK 1h")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sms_reply"], "acknowledged", "{body}");
    assert_eq!(body["incident"], id.as_str());
    assert!(body["answer"].as_str().unwrap().contains("until"), "{body}");
    let inc = d.app.incident(&id).await;
    assert_eq!(inc["status"], "acknowledged");
    // After the hour it pages again.
    d.app.advance(Duration::from_secs(61 * 60)).await;
    assert_eq!(d.app.incident(&id).await["status"], "triggered");

    // The CTO (never paged for this one) has nothing to ACK alone.
    let (_, body) = d.app.post_sns(&inbound(&d.app, &d.cto, "ACK")).await;
    assert_eq!(body["sms_reply"], "refused", "{body}");
    assert!(
        body["answer"]
            .as_str()
            .unwrap()
            .contains("No open incident was paged to your phone")
    );
}

#[tokio::test]
async fn an_sms_reply_on_a_topic_not_allowed_or_badly_signed_is_refused() {
    let d = desk().await;
    let id = page_mei(&d).await;
    let mut env: Value = serde_json::from_slice(&inbound(&d.app, &d.mei, "ACK")).unwrap();
    env["TopicArn"] = json!("arn:aws:sns:ap-southeast-1:123456789012:someone-elses");
    sign_sns(&mut env);
    let (status, _) = d.app.post_sns(&serde_json::to_vec(&env).unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut env: Value = serde_json::from_slice(&inbound(&d.app, &d.mei, "ACK")).unwrap();
    env["Message"] = json!(env["Message"].as_str().unwrap().replace("ACK", "RES"));
    let (status, _) = d.app.post_sns(&serde_json::to_vec(&env).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(d.app.incident(&id).await["status"], "triggered");
}

#[tokio::test]
async fn an_sms_reply_from_a_dead_letter_queue_is_dropped_not_acted_on_late() {
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let sqs = aws_sdk_sqs::Client::new(&aws_at(&moto, "ap-southeast-1").await);
    let queue = sqs
        .create_queue()
        .queue_name(format!("vigil-sms-dlq-{}", ulid::Ulid::new()))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let d = desk_draining(vec![queue.clone()]).await;
    let id = page_mei(&d).await;
    // SNS failed to deliver Mei's "ACK" and gave up: it sits in the dead-letter queue.
    let letter = String::from_utf8(inbound(&d.app, &d.mei, "ACK")).unwrap();
    sqs.send_message()
        .queue_url(&queue)
        .message_body(letter)
        .send()
        .await
        .unwrap();
    let mut left = 1;
    for _ in 0..40 {
        let _ = d
            .app
            .handle
            .drain_dead_letters_now(Duration::from_millis(200))
            .await;
        left = queue_depth(&sqs, &queue).await;
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "the letter is deleted");
    // Dropped: nothing acknowledged, no alert opened from it, no answer sent.
    assert_eq!(d.app.incident(&id).await["status"], "triggered");
    assert_eq!(d.app.incidents().await.len(), 1);
    assert_eq!(moto_sms(&d.moto, &d.mei).await.len(), 1, "only the page");
}
