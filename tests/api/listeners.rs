//! Two listeners (`--public-listen`): the endpoints outsiders must reach on one port, everything
//! else on the other, each endpoint answering only on its own (404 on the other). Without the
//! flag everything is served on `--listen`, as the README's one-command run does.

use reqwest::{Method, StatusCode};

use crate::helpers::*;

/// (method, path) of every endpoint AWS, Slack, PagerDuty and people's phones must reach.
pub(crate) const PUBLIC: &[(&str, &str)] = &[
    ("POST", "/v1/ingest/sns"),
    ("POST", "/v1/ingest/eventbridge"),
    ("POST", "/v1/ingest/alertmanager"),
    ("POST", "/v1/slack/interactions"),
    ("POST", "/v1/pagerduty/webhook"),
    ("GET", "/v1/ack/not-a-token"),
    ("POST", "/v1/ack/not-a-token"),
];

/// (method, path) of the endpoints that stay inside: the bot, operators, the console, the peer,
/// the probes.
const PRIVATE: &[(&str, &str)] = &[
    ("POST", "/v1/events"),
    ("GET", "/v1/incidents"),
    ("GET", "/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A"),
    ("POST", "/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A/ack"),
    ("POST", "/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A/resolve"),
    ("GET", "/v1/overrides"),
    ("POST", "/v1/overrides"),
    ("GET", "/v1/oncall"),
    ("GET", "/v1/silences"),
    ("POST", "/v1/silences"),
    ("POST", "/v1/heartbeats/trading-bot"),
    ("GET", "/v1/peer/feed"),
    ("GET", "/v1/peer"),
    ("POST", "/v1/peer/hand-back"),
    ("POST", "/v1/admin/reload"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/alerts/export"),
    ("GET", "/v1/drills"),
    ("POST", "/v1/drills"),
    ("GET", "/v1/reports/response"),
    ("POST", "/v1/test-notifications"),
    // The console.
    ("GET", "/"),
    ("GET", "/sign-in"),
    ("POST", "/sign-in"),
    ("GET", "/static/console.css"),
];

/// Whether `url` is routed: anything but the router's own 404 (`"error": "not_found"` with no
/// handler behind it). Requests carry no credentials and no body, so a routed endpoint answers
/// 401, 400, 415 or 200 — never the fallback.
pub(crate) async fn routed(app: &TestApp, method: &str, url: &str) -> bool {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let r = app.http.request(method, url).send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    !(status == StatusCode::NOT_FOUND && body.contains("no such endpoint"))
}

#[tokio::test]
async fn each_endpoint_answers_only_on_its_own_listener() {
    let app = spawn_app_with(Options {
        public_listen: true,
        ..Default::default()
    })
    .await;
    let public = app.handle.public_addr.expect("a public listener");
    assert_ne!(public, app.addr);
    for (m, path) in PUBLIC {
        assert!(
            routed(&app, m, &app.public_url(path)).await,
            "{m} {path} on the public listener"
        );
        assert!(
            !routed(&app, m, &app.url(path)).await,
            "{m} {path} must be 404 on --listen"
        );
    }
    for (m, path) in PRIVATE {
        assert!(
            routed(&app, m, &app.url(path)).await,
            "{m} {path} on --listen"
        );
        assert!(
            !routed(&app, m, &app.public_url(path)).await,
            "{m} {path} must be 404 on the public listener"
        );
    }
    // The load balancer's health check reaches /healthz on both.
    for url in [app.url("/healthz"), app.public_url("/healthz")] {
        let r = app.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
    }
    // An alarm posted to the public listener opens an incident the operator API shows.
    let r = app
        .http
        .post(app.public_url("/v1/ingest/sns"))
        .header("content-type", "text/plain; charset=UTF-8")
        .body(fixture("cloudwatch-alarm-sns-notification.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(app.incidents().await.len(), 1);
}

#[tokio::test]
async fn without_a_public_listener_every_endpoint_is_on_listen() {
    let app = spawn_app().await;
    assert_eq!(app.handle.public_addr, None);
    for (m, path) in PUBLIC.iter().chain(PRIVATE) {
        assert!(routed(&app, m, &app.url(path)).await, "{m} {path}");
    }
}
