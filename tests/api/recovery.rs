//! Nothing is lost while vigil is down (issue 11): reconciliation from CloudWatch finds the alarm
//! transitions vigil never received, and the drain of SNS's dead-letter queues takes what SNS
//! gave up delivering. Against moto (the real SDK, `DescribeAlarms`, `SetAlarmState`, SQS) and,
//! for what moto cannot do (pages, composite alarms, throttling), an HTTP fake speaking the
//! CloudWatch query protocol.
//!
//! moto is shared by the tests running in parallel, and `DescribeAlarms` lists every alarm of an
//! account and region, so each test reads its own region.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::channels::emulator;
use crate::helpers::*;

/// How many messages `queue` holds, visible or in flight.
pub(crate) async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue: &str) -> u64 {
    let a = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attrs = a.attributes().unwrap();
    let n = |k: aws_sdk_sqs::types::QueueAttributeName| -> u64 {
        attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

/// AWS configuration for `region` at `endpoint` (moto or a fake), with dummy credentials.
pub(crate) async fn aws_at(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// The webhook test policy, reconciling `regions` and draining `queues`.
fn recovery_policy(
    sink: &str,
    regions: &[&str],
    queues: &[String],
) -> impl FnOnce(&Path) + 'static {
    let sink = sink.to_string();
    let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
    let queues = queues.to_vec();
    move |dir: &Path| {
        webhook_policy(&sink)(dir);
        let mut sources = String::from(
            "sources:\n  sns:\n    allowed_topics: [\"arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts\"]\n",
        );
        if !queues.is_empty() {
            sources.push_str(&format!("    dead_letter_queues: {}\n", json!(queues)));
        }
        if !regions.is_empty() {
            sources.push_str(&format!(
                "  cloudwatch:\n    reconcile:\n      regions: {}\n      interval: 1m\n",
                json!(regions)
            ));
        }
        let policy = std::fs::read_to_string(dir.join("policy.yaml"))
            .unwrap()
            .replace(
                "sources:\n  sns:\n    allowed_topics: [\"arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts\"]\n",
                &sources,
            );
        assert!(policy.contains("cloudwatch:") || regions.is_empty());
        std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    }
}

fn app_options(
    sink: &str,
    regions: &[&str],
    queues: &[String],
    aws: aws_config::SdkConfig,
) -> Options {
    Options {
        policy: Some(Box::new(recovery_policy(sink, regions, queues))),
        channels: Some(vigil::notify::ChannelSettings {
            aws: Some(aws),
            http_timeout: Duration::from_secs(5),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A metric alarm in moto (moto creates it in OK); its ARN.
async fn put_alarm(cw: &aws_sdk_cloudwatch::Client, name: &str) -> String {
    cw.put_metric_alarm()
        .alarm_name(name)
        .alarm_description("Orders rejected by the exchange")
        .namespace("Trading")
        .metric_name("OrderRejects")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("Exchange")
                .value("binance")
                .build(),
        )
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("moto creates the alarm");
    let out = cw.describe_alarms().alarm_names(name).send().await.unwrap();
    out.metric_alarms()[0].alarm_arn().unwrap().to_string()
}

async fn set_state(cw: &aws_sdk_cloudwatch::Client, name: &str, state: StateValue) {
    cw.set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason("Threshold Crossed: 1 datapoint [9.0] was greater than the threshold (5.0).")
        .send()
        .await
        .expect("moto sets the state");
}

/// The alarm's state change time as DescribeAlarms reports it (moto: StateUpdatedTimestamp).
async fn changed_at(cw: &aws_sdk_cloudwatch::Client, name: &str) -> chrono::DateTime<chrono::Utc> {
    let out = cw.describe_alarms().alarm_names(name).send().await.unwrap();
    let a = &out.metric_alarms()[0];
    let t = a
        .state_transitioned_timestamp()
        .or(a.state_updated_timestamp())
        .unwrap();
    chrono::DateTime::from_timestamp_millis(t.to_millis().unwrap()).unwrap()
}

fn with_fingerprint<'a>(incidents: &'a [Value], fp: &str) -> Vec<&'a Value> {
    incidents
        .iter()
        .filter(|i| i["fingerprint"] == fp)
        .collect()
}

fn timeline_types(inc: &Value) -> Vec<String> {
    inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The pages (trigger and escalate, not status notices) the sink received for incident `id`.
async fn pages_for(sink: &MockServer, id: &str) -> usize {
    received_at(sink, "/page")
        .await
        .iter()
        .filter(|b| b["incident"] == id && (b["kind"] == "trigger" || b["kind"] == "escalate"))
        .count()
}

/// An SNS CloudWatch alarm notification for `arn`, in `state` since `at`, signed with the
/// fixtures' key.
fn signed_alarm_notification(
    arn: &str,
    name: &str,
    state: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Value {
    let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
    let mut msg: Value = serde_json::from_str(env["Message"].as_str().unwrap()).unwrap();
    msg["AlarmName"] = json!(name);
    msg["AlarmArn"] = json!(arn);
    msg["NewStateValue"] = json!(state);
    msg["StateChangeTime"] = json!(at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string());
    env["Message"] = json!(msg.to_string());
    env["MessageId"] = json!(ulid::Ulid::new().to_string());
    // Sent when the state changed.
    env["Timestamp"] = json!(at.to_rfc3339());
    sign_sns(&mut env);
    env
}

/// Waits until the app's own start-up pass over `region` has finished (so that a test's alarms
/// are found by the passes it runs, not by that one).
async fn start_up_pass(app: &TestApp, region: &str) {
    eventually(Duration::from_secs(20), || async {
        let (_, ready) = app.get("/readyz").await;
        let r = &ready["reconciliation"][region];
        (r["last_success"].is_string() || r["last_error"].is_string()).then_some(())
    })
    .await
    .expect("the start-up pass ran");
}

/// An app on the shared moto reconciling `region` (each test its own: DescribeAlarms lists a whole
/// region), its clock at the wall clock (moto dates alarm changes by it), its start-up pass done;
/// with its store seen through an [`ObservedStore`], a CloudWatch client for the test's alarms,
/// and the sink its pages go to.
async fn reconciling_app(
    region: &str,
) -> (
    TestApp,
    Arc<ObservedStore>,
    aws_sdk_cloudwatch::Client,
    MockServer,
) {
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let aws = aws_at(&moto, region).await;
    let cw = aws_sdk_cloudwatch::Client::new(&aws);
    let sink = ok_sink().await;
    let (app, store) = spawn_observed(app_options(&sink.uri(), &[region], &[], aws)).await;
    app.clock.set(chrono::Utc::now());
    start_up_pass(&app, region).await;
    (app, store, cw, sink)
}

/// Whether an incident of alarm `arn` opens on `app` within `within`.
async fn opens_within(app: &TestApp, arn: &str, within: Duration) -> bool {
    eventually(within, || async {
        let incs = app.incidents().await;
        (!with_fingerprint(&incs, arn).is_empty()).then_some(())
    })
    .await
    .is_some()
}

/// Polls `check` until it gives `Some`, for at most `within`.
async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Real `vigil serve` processes against moto: the alarm goes to ALARM while vigil is stopped
/// (moto sends nothing to SNS, as no notification would have reached a stopped vigil); the
/// started vigil opens the incident and pages within its first reconciliation pass, and says on
/// the timeline that the incident was found, not delivered. Then the alarm goes OK while vigil is
/// stopped again, and the next start resolves the incident.
#[tokio::test]
async fn an_alarm_that_changed_while_vigil_was_down_is_paged_and_resolved_at_start() {
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let region = "eu-west-3";
    let cw = aws_sdk_cloudwatch::Client::new(&aws_at(&moto, region).await);
    let name = format!("exchange-order-rejects-{}", ulid::Ulid::new());
    let arn = put_alarm(&cw, &name).await;
    let sink = ok_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routing");
    std::fs::create_dir_all(&config).unwrap();
    recovery_policy(&sink.uri(), &[region], &[])(&config);
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = || -> Proc {
        let mut cmd = serve_command(
            crate::VIGIL,
            &config,
            &["--data".as_ref(), data.as_os_str()],
            port,
        );
        // The standard AWS environment: endpoint and credentials; no AWS_REGION (the region
        // comes from routing/).
        cmd.env("AWS_ENDPOINT_URL", &moto)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_REGION")
            .env_remove("AWS_PROFILE");
        Proc(cmd.spawn().expect("vigil starts"))
    };
    let incidents = |status: &'static str| {
        let http = http.clone();
        let base = base.clone();
        let arn = arn.clone();
        async move {
            let r = http
                .get(format!("{base}/v1/incidents?status={status}"))
                .bearer_auth(OPERATOR_TOKEN)
                .send()
                .await
                .ok()?;
            let body: Value = r.json().await.ok()?;
            let found: Vec<Value> = body["incidents"]
                .as_array()?
                .iter()
                .filter(|i| i["fingerprint"] == arn.as_str())
                .cloned()
                .collect();
            (!found.is_empty()).then_some(found)
        }
    };

    // First run: the alarm is OK; nothing to do.
    let mut vigil = start();
    wait_ready(&http, &base).await;
    vigil.kill().unwrap();
    vigil.wait().unwrap();

    // While vigil is down, the alarm fires. Its SNS notification is never delivered.
    set_state(&cw, &name, StateValue::Alarm).await;

    let mut vigil = start();
    let open = eventually(Duration::from_secs(20), || incidents("triggered"))
        .await
        .expect("the start-up reconciliation opened the incident");
    assert_eq!(open.len(), 1, "one incident: {open:?}");
    let id = open[0]["id"].as_str().unwrap().to_string();
    let paged = eventually(Duration::from_secs(20), || {
        let sink = &sink;
        let id = id.clone();
        async move { (pages_for(sink, &id).await > 0).then_some(()) }
    })
    .await;
    assert!(paged.is_some(), "the first step paged");
    let r = http
        .get(format!("{base}/v1/incidents/{id}"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    let (status, inc) = answer(r).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(inc["labels"]["alarm_name"], name.as_str());
    assert_eq!(inc["labels"]["exchange"], "binance");
    let found = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "reconciled")
        .unwrap_or_else(|| panic!("no reconciliation entry: {inc}"));
    assert!(
        found["note"]
            .as_str()
            .unwrap()
            .contains("found by reconciliation"),
        "{found}"
    );
    assert_eq!(found["region"], region);
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    let metrics = r.text().await.unwrap();
    assert!(
        metrics.contains(r#"vigil_recovered_total{path="reconciliation",outcome="opened"} 1"#),
        "{metrics}"
    );
    vigil.kill().unwrap();
    vigil.wait().unwrap();

    // While vigil is down again, the alarm recovers; the next start resolves the incident.
    set_state(&cw, &name, StateValue::Ok).await;
    let _vigil = start();
    let resolved = eventually(Duration::from_secs(20), || incidents("resolved"))
        .await
        .expect("the start-up reconciliation resolved the incident");
    assert_eq!(resolved[0]["id"], id.as_str());
    assert_eq!(pages_for(&sink, &id).await, 1, "paged once");
}

/// SNS delivered it first, or reconciliation found it first: one incident and one page either
/// way. An hour of passes (the clock injected) pages nothing more, and an incident a person
/// resolved while its alarm stayed in ALARM is not reopened.
#[tokio::test]
async fn sns_and_reconciliation_make_one_incident_and_one_page_in_either_order() {
    let region = "eu-south-2";
    let (app, _, cw, sink) = reconciling_app(region).await;

    // SNS first. The notification's time is the alarm's own change time.
    let sns_first = format!("sns-first-{}", ulid::Ulid::new());
    let arn_a = put_alarm(&cw, &sns_first).await;
    set_state(&cw, &sns_first, StateValue::Alarm).await;
    let at = changed_at(&cw, &sns_first).await;
    let body = signed_alarm_notification(&arn_a, &sns_first, "ALARM", at);
    let (status, res) = app.post_sns(body.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["results"][0]["outcome"], "opened");
    let id_a = incident_of(&res);

    // Reconciliation first; then the (late) SNS notification of the same change.
    let rec_first = format!("reconciled-first-{}", ulid::Ulid::new());
    let arn_b = put_alarm(&cw, &rec_first).await;
    set_state(&cw, &rec_first, StateValue::Alarm).await;
    let at_b = changed_at(&cw, &rec_first).await;

    let passes = app.handle.reconcile_now().await;
    let report = passes[0].1.as_ref().expect("the pass reads moto");
    assert!(report.alarms >= 2, "{report:?}");
    assert_eq!(
        report.acted,
        vec![(arn_b.clone(), "opened")],
        "only the alarm SNS had not delivered is acted on"
    );
    let late = signed_alarm_notification(&arn_b, &rec_first, "ALARM", at_b);
    let (status, res) = app.post_sns(late.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["results"][0]["outcome"], "updated", "{res}");
    let id_b = incident_of(&res);
    app.handle.run_deliveries().await;

    let incidents = app.incidents().await;
    assert_eq!(with_fingerprint(&incidents, &arn_a).len(), 1);
    assert_eq!(with_fingerprint(&incidents, &arn_b).len(), 1);
    assert_eq!(pages_for(&sink, &id_a).await, 1);
    assert_eq!(pages_for(&sink, &id_b).await, 1);
    assert!(timeline_types(&app.incident(&id_b).await).contains(&"reconciled".to_string()));
    assert!(!timeline_types(&app.incident(&id_a).await).contains(&"reconciled".to_string()));

    // A person resolves A while its alarm stays in ALARM.
    let (status, _) = app
        .post_op(&format!("/v1/incidents/{id_a}/resolve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // An hour of passes, one a minute.
    let pages_before = received_at(&sink, "/page").await.len();
    for _ in 0..60 {
        app.advance(Duration::from_secs(60)).await;
        for (region, r) in app.handle.reconcile_now().await {
            let r = r.unwrap_or_else(|e| panic!("{region}: {e}"));
            assert!(r.acted.is_empty(), "a pass acted again: {r:?}");
        }
    }
    app.handle.run_deliveries().await;
    let incidents = app.incidents().await;
    assert_eq!(
        with_fingerprint(&incidents, &arn_a).len(),
        1,
        "not reopened"
    );
    assert_eq!(app.incident(&id_a).await["status"], "resolved");
    assert_eq!(with_fingerprint(&incidents, &arn_b).len(), 1);
    // Nothing more was paged for these two (B's policy has one step and no repeat).
    assert_eq!(
        pages_for(&sink, &id_a).await,
        1,
        "A: only its first page (and no reopen)"
    );
    assert_eq!(pages_for(&sink, &id_b).await, 1);
    assert!(received_at(&sink, "/page").await.len() <= pages_before + 1);

    // A new transition is acted on again: A goes OK and back to ALARM.
    set_state(&cw, &sns_first, StateValue::Ok).await;
    app.advance(Duration::from_secs(1)).await;
    set_state(&cw, &sns_first, StateValue::Alarm).await;
    app.advance(Duration::from_secs(60)).await;
    let passes = app.handle.reconcile_now().await;
    let acted = &passes[0].1.as_ref().unwrap().acted;
    assert_eq!(acted, &vec![(arn_a.clone(), "opened")], "{acted:?}");
}

/// An SNS dead letter (the signed envelope, as SNS puts it in the subscription's dead-letter
/// queue) is ingested once and deleted once it is durable; a redelivered copy is a duplicate and
/// is deleted too; a forged one is left in the queue, hidden for a human, and counted.
#[tokio::test]
async fn a_dead_letter_is_taken_once_deleted_when_durable_and_a_forged_one_stays() {
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let aws = aws_at(&moto, "ap-southeast-1").await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue = sqs
        .create_queue()
        .queue_name(format!("vigil-dlq-{}", ulid::Ulid::new()))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "2",
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let sink = ok_sink().await;
    let (app, store) = spawn_observed(app_options(
        &sink.uri(),
        &[],
        std::slice::from_ref(&queue),
        aws,
    ))
    .await;
    let in_queue = || queue_depth(&sqs, &queue);

    let mut letter = fixture_json("cloudwatch-alarm-sns-notification.json");
    letter["MessageId"] = json!(ulid::Ulid::new().to_string());
    // Sent well over an hour ago: SNS retried, then gave up. Late by nature, yet paged.
    letter["Timestamp"] = json!((t0() - chrono::Duration::hours(3)).to_rfc3339());
    sign_sns(&mut letter);
    let send = |body: String| {
        let sqs = sqs.clone();
        let queue = queue.clone();
        async move {
            sqs.send_message()
                .queue_url(&queue)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
    };

    // The app drains the queue by itself (a long poll per queue); the test also asks for drains.
    // Either may receive a letter first, so what follows checks where each letter ends up.
    let drain = || async {
        let _ = app
            .handle
            .drain_dead_letters_now(Duration::from_millis(500))
            .await;
    };

    // The store refuses writes: the letter is not deleted (SQS shows it again after its
    // visibility timeout, 2 s on this queue).
    store.refuse_commit.store(true, Ordering::SeqCst);
    send(letter.to_string()).await;
    drain().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            (app.metrics().await.contains("fate=\"retry\"")).then_some(())
        })
        .await
        .is_some(),
        "a letter was refused for a reason that can pass"
    );
    assert_eq!(in_queue().await, 1, "kept while it is not durable");
    assert!(app.incidents().await.is_empty());

    // The store is back: the letter is taken, then deleted.
    store.refuse_commit.store(false, Ordering::SeqCst);
    let id = eventually(Duration::from_secs(20), || async {
        drain().await;
        let incs = app.incidents().await;
        incs.iter()
            .find(|i| i["labels"]["alarm_name"] == "eks-prod-apse1-node-cpu-high")
            .map(|i| i["id"].as_str().unwrap().to_string())
    })
    .await
    .expect("the dead letter opened its incident");
    let inc = app.incident(&id).await;
    assert!(
        timeline_types(&inc).contains(&"dead_letter".to_string()),
        "{inc}"
    );
    assert_eq!(inc["count"], 1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            (in_queue().await == 0).then_some(())
        })
        .await
        .is_some(),
        "deleted once durable"
    );

    // The same letter again (SQS is at-least-once): a duplicate, deleted.
    send(letter.to_string()).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            drain().await;
            (in_queue().await == 0).then_some(())
        })
        .await
        .is_some(),
        "the copy is deleted"
    );
    assert_eq!(app.incident(&id).await["count"], 1, "MessageId dedup");
    assert_eq!(app.incidents().await.len(), 1);

    // A forged letter: left in the queue for a human.
    let mut forged = fixture_json("cloudwatch-alarm-sns-notification.json");
    forged["MessageId"] = json!(ulid::Ulid::new().to_string());
    sign_sns(&mut forged);
    forged["Message"] = json!(forged["Message"].as_str().unwrap().replace("ALARM", "OK"));
    send(forged.to_string()).await;
    let ready = eventually(Duration::from_secs(10), || async {
        drain().await;
        let (_, ready) = app.get("/readyz").await;
        (ready["dead_letter_queues"][&queue]["refused"] == 1).then_some(ready)
    })
    .await
    .expect("the forged letter is counted as refused");
    assert_eq!(ready["dead_letter_queues"][&queue]["count"], 2, "{ready}");
    assert_eq!(in_queue().await, 1, "the forged letter stays");
    assert_eq!(
        app.incident(&id).await["status"],
        "triggered",
        "and changed nothing"
    );

    // Any message of an allowed topic is taken from the queue too, not only alarms.
    let mut text = fixture_json("cloudwatch-alarm-sns-notification.json");
    text["MessageId"] = json!(ulid::Ulid::new().to_string());
    text["Message"] = json!("disk full on db-1");
    text.as_object_mut().unwrap().remove("Subject");
    sign_sns(&mut text);
    send(text.to_string()).await;
    let plain = eventually(Duration::from_secs(10), || async {
        drain().await;
        let incs = app.incidents().await;
        incs.into_iter()
            .find(|i| i["labels"]["kind"] == "sns_notification")
    })
    .await
    .expect("the plain-text dead letter opened an incident");
    assert_eq!(plain["summary"], "disk full on db-1");
    assert_eq!(in_queue().await, 1, "only the forged letter is left");

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"vigil_recovered_total{path="dead_letter",outcome="opened"} 2"#),
        "{metrics}"
    );
}

/// A query-protocol error answer, as CloudWatch gives it.
fn aws_error(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>4f8c1b2a-0000-4000-8000-000000000000</RequestId></ErrorResponse>"#
    )
}

/// DescribeAlarms throttled: the SDK retries with backoff, the pass fails, `/readyz` says so,
/// and ingest goes on. When the throttling stops, the next pass clears the problem.
#[tokio::test]
async fn describe_alarms_throttled_backs_off_shows_on_readyz_and_ingest_goes_on() {
    let cloudwatch = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeAlarms"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "text/xml")
                .set_body_string(aws_error("Throttling", "Rate exceeded")),
        )
        .up_to_n_times(3)
        .mount(&cloudwatch)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeAlarms"))
        .respond_with(ResponseTemplate::new(200).insert_header("content-type", "text/xml").set_body_string(
            r#"<DescribeAlarmsResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><DescribeAlarmsResult><MetricAlarms/><CompositeAlarms/></DescribeAlarmsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAlarmsResponse>"#,
        ))
        .mount(&cloudwatch)
        .await;
    let sink = ok_sink().await;
    let aws = aws_at(&cloudwatch.uri(), "ap-southeast-1").await;
    let app = spawn_app_with(app_options(&sink.uri(), &["ap-southeast-1"], &[], aws)).await;
    // The start-up pass runs on its own; wait until it has failed.
    let problems = eventually(Duration::from_secs(20), || async {
        let (status, ready) = app.get("/readyz").await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(ready)
    })
    .await
    .expect("/readyz says reconciliation fails");
    let text = problems["problems"].to_string();
    assert!(
        text.contains("reconciliation from CloudWatch in ap-southeast-1"),
        "{text}"
    );
    assert!(text.contains("Throttling"), "{text}");
    // The SDK retried the throttled call (3 attempts, backing off) before the pass gave up.
    let calls = cloudwatch.received_requests().await.unwrap().len();
    assert!(calls >= 3, "{calls} DescribeAlarms calls");
    assert!(
        app.metrics()
            .await
            .contains(r#"vigil_reconcile_errors_total{region="ap-southeast-1"} 1"#)
    );

    // Ingest is not stopped.
    let (status, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Throttling over: the next pass succeeds and the problem goes.
    let passes = app.handle.reconcile_now().await;
    assert!(passes[0].1.is_ok(), "{passes:?}");
    let (_, ready) = app.get("/readyz").await;
    assert!(
        !ready["problems"].to_string().contains("reconciliation"),
        "{ready}"
    );
    assert!(
        ready["reconciliation"]["ap-southeast-1"]["last_success"].is_string(),
        "{ready}"
    );
}

/// What moto cannot show: DescribeAlarms answering in pages (NextToken), composite alarms next to
/// metric alarms, and `StateTransitionedTimestamp` ordering the change rather than the later
/// `StateUpdatedTimestamp`.
#[tokio::test]
async fn every_page_and_composite_alarms_are_reconciled() {
    let cloudwatch = MockServer::start().await;
    let composite = r#"<member><AlarmName>trading-degraded</AlarmName><AlarmArn>arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:trading-degraded</AlarmArn><AlarmRule>ALARM("a") OR ALARM("b")</AlarmRule><StateValue>ALARM</StateValue><StateReason>a is in ALARM</StateReason><StateUpdatedTimestamp>2026-11-20T02:15:44.000Z</StateUpdatedTimestamp><StateTransitionedTimestamp>2026-11-20T02:15:40.000Z</StateTransitionedTimestamp></member>"#;
    let metric = r#"<member><AlarmName>rds-replica-lag</AlarmName><AlarmArn>arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:rds-replica-lag</AlarmArn><StateValue>ALARM</StateValue><StateUpdatedTimestamp>2026-11-20T02:15:43.000Z</StateUpdatedTimestamp><StateTransitionedTimestamp>2026-11-20T02:15:41.000Z</StateTransitionedTimestamp><Namespace>AWS/RDS</Namespace><MetricName>ReplicaLag</MetricName><Dimensions><member><Name>DBInstanceIdentifier</Name><Value>prod-db-replica</Value></member></Dimensions></member>"#;
    let ok = r#"<member><AlarmName>rds-cpu</AlarmName><AlarmArn>arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:rds-cpu</AlarmArn><StateValue>OK</StateValue><StateUpdatedTimestamp>2026-11-20T02:10:00.000Z</StateUpdatedTimestamp></member>"#;
    let page = |metrics: &str, composites: &str, token: Option<&str>| {
        format!(
            r#"<DescribeAlarmsResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><DescribeAlarmsResult><MetricAlarms>{metrics}</MetricAlarms><CompositeAlarms>{composites}</CompositeAlarms>{}</DescribeAlarmsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAlarmsResponse>"#,
            token
                .map(|t| format!("<NextToken>{t}</NextToken>"))
                .unwrap_or_default()
        )
    };
    Mock::given(method("POST"))
        .and(body_string_contains("NextToken=page-2"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/xml")
                .set_body_string(page(metric, "", None)),
        )
        .with_priority(1)
        .mount(&cloudwatch)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("Action=DescribeAlarms"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/xml")
                .set_body_string(page(ok, composite, Some("page-2"))),
        )
        .with_priority(2)
        .mount(&cloudwatch)
        .await;
    let sink = ok_sink().await;
    let aws = aws_at(&cloudwatch.uri(), "ap-southeast-1").await;
    let app = spawn_app_with(app_options(&sink.uri(), &["ap-southeast-1"], &[], aws)).await;
    let passes = app.handle.reconcile_now().await;
    let report = passes[0].1.as_ref().expect("the fake answers");
    assert_eq!(report.alarms, 3, "{report:?}");
    // Both alarm types were asked for, every time.
    for r in cloudwatch.received_requests().await.unwrap() {
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert!(body.contains("AlarmTypes.member.1=MetricAlarm"), "{body}");
        assert!(
            body.contains("AlarmTypes.member.2=CompositeAlarm"),
            "{body}"
        );
        assert!(body.contains("MaxRecords=100"), "{body}");
    }
    let incidents = app.incidents().await;
    let composite = with_fingerprint(
        &incidents,
        "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:trading-degraded",
    );
    assert_eq!(composite.len(), 1, "{incidents:?}");
    assert_eq!(composite[0]["labels"]["alarm_type"], "composite");
    let lag = with_fingerprint(
        &incidents,
        "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:rds-replica-lag",
    );
    assert_eq!(lag.len(), 1, "the second page was read");
    assert_eq!(
        lag[0]["labels"]["db_instance_identifier"],
        "prod-db-replica"
    );
    // The OK alarm had no incident: nothing to do.
    assert_eq!(incidents.len(), 2, "{incidents:?}");

    // The SNS notification of the same change (StateChangeTime = the transition time) is the
    // same incident, not a new one and not a second page.
    let late = signed_alarm_notification(
        "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:rds-replica-lag",
        "rds-replica-lag",
        "ALARM",
        "2026-11-20T02:15:41Z".parse().unwrap(),
    );
    let (status, res) = app.post_sns(late.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["results"][0]["incidents"][0], lag[0]["id"]);
    // A second pass: the transition is seen; nothing acted on.
    let passes = app.handle.reconcile_now().await;
    assert!(passes[0].1.as_ref().unwrap().acted.is_empty(), "{passes:?}");
}

/// After the store comes back from an outage (SNS was answered 503 meanwhile), a pass runs by
/// itself soon, without waiting for the interval.
#[tokio::test]
async fn a_pass_runs_soon_after_the_store_comes_back() {
    let (app, store, cw, _sink) = reconciling_app("eu-north-1").await;

    let name = format!("during-outage-{}", ulid::Ulid::new());
    let arn = put_alarm(&cw, &name).await;
    set_state(&cw, &name, StateValue::Alarm).await;
    // The store is down: SNS's delivery of the change is answered 503 (and SNS gives up).
    store.refuse_commit.store(true, Ordering::SeqCst);
    let at = changed_at(&cw, &name).await;
    let body = signed_alarm_notification(&arn, &name, "ALARM", at);
    let (status, _) = app.post_sns(body.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    store.refuse_commit.store(false, Ordering::SeqCst);
    // Well within the 1m interval, reconciliation has opened it.
    assert!(
        opens_within(&app, &arn, Duration::from_secs(20)).await,
        "reconciled soon after the store came back"
    );
}

/// A throttling answer the query-protocol client cannot read (another protocol's JSON shape, as a
/// fake or a proxy might give): the pass fails the same way, and `/readyz` still names the cause
/// from the start of the body.
#[tokio::test]
async fn an_error_in_another_shape_still_names_its_cause_on_readyz() {
    let cloudwatch = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/x-amz-json-1.0")
                .set_body_string(r#"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate exceeded"}"#),
        )
        .mount(&cloudwatch)
        .await;
    let sink = ok_sink().await;
    let aws = aws_at(&cloudwatch.uri(), "ap-southeast-1").await;
    let app = spawn_app_with(app_options(&sink.uri(), &["ap-southeast-1"], &[], aws)).await;
    let passes = app.handle.reconcile_now().await;
    let err = passes[0].1.as_ref().expect_err("the pass fails");
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(err.contains("ThrottlingException"), "{err}");
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready["problems"].to_string().contains("Rate exceeded"),
        "{ready}"
    );
}

/// A standby taking over asks for a pass at once (`IncidentService::wake_reconciliation`, called
/// by the peer loop on takeover): an alarm that changed since the last pass is found in seconds,
/// not at the next interval (1m here).
#[tokio::test]
async fn a_pass_runs_at_once_when_asked_as_on_a_takeover() {
    let (app, _, cw, _sink) = reconciling_app("ca-west-1").await;

    let name = format!("before-takeover-{}", ulid::Ulid::new());
    let arn = put_alarm(&cw, &name).await;
    set_state(&cw, &name, StateValue::Alarm).await;
    app.handle.service.wake_reconciliation();
    assert!(
        opens_within(&app, &arn, Duration::from_secs(15)).await,
        "found well before the 1m interval"
    );
}
