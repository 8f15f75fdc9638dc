//! The watchdog (issue 11, item 4): while it is ready, vigil publishes its heartbeat metric to
//! CloudWatch (the real SDK against moto, started by `scripts/test`), in the configured region;
//! while its store cannot write or its scheduler lags, it publishes nothing and says so; a
//! failing PutMetricData (an HTTP fake answering CloudWatch's awsQuery error) shows on `/readyz`
//! and stops nothing.
//!
//! The background loop's first round comes one interval (1m here) after start, so within a test
//! only `publish_watchdog_now` publishes. moto is shared by parallel tests: each test publishes
//! under its own namespace.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use reqwest::StatusCode;
use vigil::pipeline::watchdog::WatchdogRound;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::channels::emulator;
use crate::helpers::*;

/// A namespace no other test publishes under.
fn unique_namespace() -> String {
    format!("VigilTest/{}", ulid::Ulid::new())
}

/// The shipped routing with a watchdog under `namespace`, dimensions `dims`.
fn with_watchdog(namespace: &str, dims: &str) -> PolicyWriter {
    let block = format!(
        "sources:\n  cloudwatch:\n    watchdog:\n      region: us-east-1\n      namespace: {namespace}\n      dimensions: {dims}\n      interval: 1m\n"
    );
    Box::new(move |dir: &Path| {
        copy_routing(dir);
        write_sources(dir, &block);
    })
}

/// Rewrites the shipped `sources.yaml` in `dir` with `block` (a `sources:` head and the
/// watchdog under it) in place of its `sources:` line; empty `block` keeps it as shipped.
fn write_sources(dir: &Path, block: &str) {
    let shipped = std::fs::read_to_string(shipped_routing().join("sources.yaml")).unwrap();
    let text = if block.is_empty() {
        shipped
    } else {
        shipped.replacen("\nsources:\n", &format!("\n{block}"), 1)
    };
    std::fs::write(dir.join("sources.yaml"), text).unwrap();
}

/// vigil's own AWS configuration in the tests: its region, static credentials, `endpoint`.
fn aws_at(endpoint: &str) -> vigil::notify::ChannelSettings {
    let aws = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("ap-southeast-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::SharedCredentialsProvider::new(
            aws_sdk_cloudwatch::config::Credentials::new(
                "testing", "testing", None, None, "static",
            ),
        ))
        .endpoint_url(endpoint)
        .build();
    vigil::notify::ChannelSettings {
        aws: Some(aws),
        http_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// A CloudWatch client of the test's own, in `region`, on moto.
fn cloudwatch(moto: &str, region: &str) -> aws_sdk_cloudwatch::Client {
    let conf = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatch::config::Region::new(region.to_string()))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .endpoint_url(moto)
        .build();
    aws_sdk_cloudwatch::Client::from_conf(conf)
}

/// The metrics moto holds under `namespace` in `region`: (name, dimensions).
async fn listed(
    moto: &str,
    region: &str,
    namespace: &str,
) -> Vec<(String, BTreeMap<String, String>)> {
    let out = cloudwatch(moto, region)
        .list_metrics()
        .namespace(namespace)
        .send()
        .await
        .unwrap();
    let mut metrics: Vec<_> = out
        .metrics()
        .iter()
        .map(|m| {
            let dims = m
                .dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or_default().to_string(),
                        d.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (m.metric_name().unwrap_or_default().to_string(), dims)
        })
        .collect();
    metrics.sort();
    metrics
}

/// Sum of the heartbeat's datapoints in us-east-1 over the last and next hour (moto stamps a
/// datapoint without a Timestamp with its own clock).
async fn heartbeat_sum(moto: &str, namespace: &str, dims: &[(&str, &str)]) -> f64 {
    let now = std::time::SystemTime::now();
    let hour = Duration::from_secs(3600);
    let mut req = cloudwatch(moto, "us-east-1")
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name("Heartbeat")
        .start_time((now - hour).into())
        .end_time((now + hour).into())
        .period(60)
        .statistics(Statistic::Sum);
    for (name, value) in dims {
        req = req.dimensions(Dimension::builder().name(*name).value(*value).build());
    }
    let out = req.send().await.unwrap();
    out.datapoints().iter().filter_map(|d| d.sum()).sum()
}

/// The value of an unlabelled metric line (`name value`), or of `name{labels}`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn one_round_publishes_the_heartbeat_to_the_configured_region() {
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let ns = unique_namespace();
    let app = spawn_app_with(Options {
        policy: Some(with_watchdog(&ns, "{ Service: vigil, Test: one }")),
        channels: Some(aws_at(&moto)),
        ..Default::default()
    })
    .await;
    assert!(listed(&moto, "us-east-1", &ns).await.is_empty());

    assert_eq!(
        app.handle.publish_watchdog_now().await,
        WatchdogRound::Published
    );

    // In the watchdog's region (us-east-1), not vigil's own (ap-southeast-1).
    let dims = BTreeMap::from([
        ("Service".to_string(), "vigil".to_string()),
        ("Test".to_string(), "one".to_string()),
    ]);
    assert_eq!(
        listed(&moto, "us-east-1", &ns).await,
        [("Heartbeat".to_string(), dims)]
    );
    assert!(listed(&moto, "ap-southeast-1", &ns).await.is_empty());
    assert_eq!(
        heartbeat_sum(&moto, &ns, &[("Service", "vigil"), ("Test", "one")]).await,
        1.0,
        "Value 1 per round"
    );
    let text = app.metrics().await;
    assert_eq!(metric(&text, "vigil_watchdog_published_total"), Some(1.0));
    assert_eq!(
        metric(&text, "vigil_watchdog_last_published_timestamp_seconds"),
        Some(t0().timestamp() as f64),
        "on the app's clock"
    );
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A reload takes effect at the next round: new dimensions, then no watchdog at all.
    write_sources(
        &app.config_dir,
        &format!(
            "sources:\n  cloudwatch:\n    watchdog:\n      namespace: {ns}\n      dimensions: {{ Service: vigil, Test: two }}\n"
        ),
    );
    app.handle.policy.reload("test").await.unwrap();
    assert_eq!(
        app.handle.publish_watchdog_now().await,
        WatchdogRound::Published
    );
    assert_eq!(
        heartbeat_sum(&moto, &ns, &[("Service", "vigil"), ("Test", "two")]).await,
        1.0
    );
    write_sources(&app.config_dir, "");
    app.handle.policy.reload("test").await.unwrap();
    assert_eq!(
        app.handle.publish_watchdog_now().await,
        WatchdogRound::Disabled
    );
    assert_eq!(listed(&moto, "us-east-1", &ns).await.len(), 2);
    let text = app.metrics().await;
    assert_eq!(metric(&text, "vigil_watchdog_published_total"), Some(2.0));
}

#[tokio::test]
async fn a_vigil_that_is_not_ready_publishes_no_heartbeat() {
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let ns = unique_namespace();
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn vigil::store::Store> =
        Arc::new(vigil::store::EmbeddedStore::open(dir.path()).unwrap());
    let store = Arc::new(ObservedStore::new(inner));
    *store.injected_problem.lock().unwrap() = Some("store cannot write: injected".into());
    let app = spawn_app_with(Options {
        policy: Some(with_watchdog(&ns, "{ Service: vigil }")),
        channels: Some(aws_at(&moto)),
        store: Some(store.clone()),
        ..Default::default()
    })
    .await;

    // The store refuses writes: no heartbeat, and the skip is counted.
    assert_eq!(
        app.handle.publish_watchdog_now().await,
        WatchdogRound::Skipped("store cannot write: injected".into())
    );
    assert!(listed(&moto, "us-east-1", &ns).await.is_empty());
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "vigil_watchdog_skipped_total{reason=\"store\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "vigil_watchdog_published_total"), None);

    // Writable again: the next round publishes.
    *store.injected_problem.lock().unwrap() = None;
    assert_eq!(
        app.handle.publish_watchdog_now().await,
        WatchdogRound::Published
    );
    assert_eq!(
        heartbeat_sum(&moto, &ns, &[("Service", "vigil")]).await,
        1.0
    );

    // The scheduler lags: a critical incident's steps fall due and are not fired (the store
    // hides them from the scheduler), 10 minutes pass.
    let (status, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    assert!(status.is_success(), "{body}");
    store.hide_due.store(true, Ordering::SeqCst);
    app.clock.advance(Duration::from_secs(600));
    app.handle.run_due_escalations().await;
    let round = app.handle.publish_watchdog_now().await;
    assert!(
        matches!(&round, WatchdogRound::Skipped(why) if why.starts_with("scheduler lag")),
        "{round:?}"
    );
    assert_eq!(
        heartbeat_sum(&moto, &ns, &[("Service", "vigil")]).await,
        1.0
    );
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "vigil_watchdog_skipped_total{reason=\"scheduler\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "vigil_watchdog_published_total"), Some(1.0));
}

/// CloudWatch's awsQuery error body.
const INTERNAL_ERROR: &str = r#"<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><Error><Type>Receiver</Type><Code>InternalServiceError</Code><Message>injected outage</Message></Error><RequestId>5e0c1c0d-0000-4000-8000-000000000000</RequestId></ErrorResponse>"#;

const PUT_OK: &str = r#"<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><ResponseMetadata><RequestId>5e0c1c0d-0000-4000-8000-000000000001</RequestId></ResponseMetadata></PutMetricDataResponse>"#;

#[tokio::test]
async fn a_failing_put_metric_data_shows_on_readyz_and_stops_nothing() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("content-type", "text/xml")
                .set_body_string(INTERNAL_ERROR),
        )
        .mount(&fake)
        .await;
    let ns = unique_namespace();
    let app = spawn_app_with(Options {
        policy: Some(with_watchdog(&ns, "{ Service: vigil }")),
        channels: Some(aws_at(&fake.uri())),
        ..Default::default()
    })
    .await;

    let round = app.handle.publish_watchdog_now().await;
    assert!(
        matches!(&round, WatchdogRound::Failed(why) if why.contains("InternalServiceError")),
        "{round:?}"
    );
    // What was sent: the heartbeat, as the alarm expects it.
    let requests = fake.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "the loop owns retries, not the SDK");
    let form: BTreeMap<String, String> = form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .collect();
    for (k, v) in [
        ("Action", "PutMetricData"),
        ("Namespace", ns.as_str()),
        ("MetricData.member.1.MetricName", "Heartbeat"),
        ("MetricData.member.1.Unit", "Count"),
        ("MetricData.member.1.Dimensions.member.1.Name", "Service"),
        ("MetricData.member.1.Dimensions.member.1.Value", "vigil"),
    ] {
        assert_eq!(form.get(k).map(String::as_str), Some(v), "{k} in {form:?}");
    }
    let value: f64 = form["MetricData.member.1.Value"].parse().unwrap();
    assert_eq!(value, 1.0);
    assert!(
        requests[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("/us-east-1/monitoring/")),
        "signed for the watchdog's region"
    );

    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("watchdog: PutMetricData failing: ")
            && problems.contains("InternalServiceError"),
        "{body}"
    );
    let text = app.metrics().await;
    assert_eq!(metric(&text, "vigil_watchdog_errors_total"), Some(1.0));

    // Nothing else stopped: alerts are still taken.
    let (status, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    assert!(status.is_success(), "{body}");
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // CloudWatch answers again: the next round publishes and the problem is gone.
    fake.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/xml")
                .set_body_string(PUT_OK),
        )
        .mount(&fake)
        .await;
    assert_eq!(
        app.handle.publish_watchdog_now().await,
        WatchdogRound::Published
    );
    let (_, body) = app.get("/readyz").await;
    assert!(!body["problems"].to_string().contains("watchdog"), "{body}");
}
