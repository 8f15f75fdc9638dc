//! Person tokens and the operators' console over plain HTTP: attribution of API actions,
//! sign-in, the session cookie's flags, CSRF and cookie checks on every POST, escaping, and the
//! Content-Security-Policy header. The real-browser tests are in `tests/browser.rs`.

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use vigil::app::{App, AppError};
use vigil::settings::{OperatorToken, Secret, Settings};

use crate::helpers::*;

const MEI_TOKEN: &str = "mei-personal-token";

async fn spawn_console() -> TestApp {
    spawn_app_with(Options {
        person_tokens: vec![("mei".into(), MEI_TOKEN.into())],
        ..Options::default()
    })
    .await
}

/// A client that neither follows redirects nor keeps cookies: the tests look at both.
fn browserless() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// `name=value` of the first `Set-Cookie` for `name`.
fn cookie_pair(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// A urlencoded form body.
fn encode(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The value of the first hidden `csrf` field in a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Signs in with `token`: the sign-in answer, and the session cookie (`vigil_session=…`).
async fn sign_in(app: &TestApp, token: &str, https: bool) -> (reqwest::Response, Option<String>) {
    let http = browserless();
    let form = http.get(app.url("/sign-in")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let signin_cookie = cookie_pair(&set_cookies(&form), "vigil_signin");
    let csrf = csrf_of(&form.text().await.unwrap());
    let mut req = http
        .post(app.url("/sign-in"))
        .header("cookie", signin_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[("token", token), ("csrf", csrf.as_str())]));
    if https {
        req = req.header("x-forwarded-proto", "https");
    }
    let resp = req.send().await.unwrap();
    let session = set_cookies(&resp)
        .iter()
        .find(|c| c.starts_with("vigil_session="))
        .map(|c| c.split(';').next().unwrap().to_owned());
    (resp, session)
}

async fn page(app: &TestApp, path: &str, cookie: &str) -> (StatusCode, String) {
    let resp = browserless()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = browserless()
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(fields));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

async fn open_incident(app: &TestApp, summary: &str) -> String {
    let event = json!({
        "kind": "trading_halted",
        "summary": summary,
        "status": "firing",
        "dedup_key": "console-test",
        "labels": { "reason": "drawdown_limit", "region": "ap-southeast-1", "service": "trading-bot" },
        "details": {},
        "occurred_at": "2026-11-20T02:15:00Z"
    });
    let (status, body) = app.post_events(event.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    incident_of(&body)
}

fn timeline_entries(inc: &Value, kind: &str) -> Vec<Value> {
    inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .cloned()
        .collect()
}

#[tokio::test]
async fn an_api_ack_with_a_person_token_is_that_persons() {
    let app = spawn_console().await;
    let id = open_incident(&app, "Trading halted").await;
    // The body's `by` cannot speak for someone else: the token names the person.
    let (status, _) = app
        .send_as(
            reqwest::Method::POST,
            &format!("/v1/incidents/{id}/ack"),
            Some(MEI_TOKEN),
            Some(json!({ "by": "someone-else" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let acks = timeline_entries(&app.incident(&id).await, "acknowledged");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0]["by"], "mei");
    assert_eq!(acks[0]["origin"], "api");
    // The unnamed token still acts, as the body's `by` or "api".
    let (status, _) = app
        .post_op(&format!("/v1/incidents/{id}/resolve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let resolves = timeline_entries(&app.incident(&id).await, "resolved");
    assert_eq!(resolves[0]["by"], "api");
}

#[tokio::test]
async fn a_person_token_naming_nobody_in_routing_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routing");
    copy_routing(&config);
    let mut settings = Settings::new(config, dir.path().join("data"));
    settings.templates_dir = shipped_templates();
    settings.operator_tokens = vec![OperatorToken {
        person: Some("nobody-here".into()),
        secret: Secret::new("t"),
    }];
    let store = Arc::new(vigil::store::EmbeddedStore::open(&dir.path().join("data")).unwrap());
    let clock = Arc::new(vigil::clock::ManualClock::new(t0()));
    match App::build_with_store(settings, clock, store, None).await {
        Err(e @ AppError::UnknownPerson(_)) => {
            assert!(e.to_string().contains("\"nobody-here\""), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an unknown person must stop the start"),
    }
}

#[tokio::test]
async fn the_console_asks_for_sign_in_and_every_answer_forbids_inline_script() {
    let app = spawn_console().await;
    let resp = browserless().get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/sign-in");
    for path in ["/", "/sign-in", "/static/console.js", "/incidents/nope"] {
        let resp = browserless().get(app.url(path)).send().await.unwrap();
        let csp = resp.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    }
    let js = browserless()
        .get(app.url("/static/console.js"))
        .send()
        .await
        .unwrap();
    assert!(
        js.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=86400")
    );
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_secure_behind_https() {
    let app = spawn_console().await;
    let (resp, session) = sign_in(&app, MEI_TOKEN, false).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookies(&resp)
        .into_iter()
        .find(|c| c.starts_with("vigil_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Max-Age=43200"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let (status, home) = page(&app, "/", &session.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("Open incidents"));

    let (resp, _) = sign_in(&app, MEI_TOKEN, true).await;
    assert!(
        set_cookies(&resp)
            .iter()
            .any(|c| c.starts_with("vigil_session=") && c.contains("; Secure")),
        "behind a TLS load balancer the cookie is Secure"
    );
}

#[tokio::test]
async fn sign_in_refuses_unknown_and_unnamed_tokens_and_forms_without_their_cookie() {
    let app = spawn_console().await;
    let (resp, session) = sign_in(&app, "wrong", false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(session.is_none());
    let (resp, session) = sign_in(&app, OPERATOR_TOKEN, false).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("names no person"));
    assert!(session.is_none());
    // A sign-in posted from elsewhere: a form token without the browser's cookie.
    let form = browserless().get(app.url("/sign-in")).send().await.unwrap();
    let csrf = csrf_of(&form.text().await.unwrap());
    let resp = post_form(
        &app,
        "/sign-in",
        None,
        &[("token", MEI_TOKEN), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        set_cookies(&resp)
            .iter()
            .all(|c| !c.starts_with("vigil_session="))
    );
}

#[tokio::test]
async fn a_post_without_cookie_or_csrf_is_refused_and_a_good_one_acts_via_web() {
    let app = spawn_console().await;
    let id = open_incident(&app, "Trading halted").await;
    let (_, session) = sign_in(&app, MEI_TOKEN, false).await;
    let session = session.unwrap();
    let (_, html) = page(&app, &format!("/incidents/{id}"), &session).await;
    let csrf = csrf_of(&html);
    let ack = format!("/incidents/{id}/ack");

    let resp = post_form(&app, &ack, None, &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "no cookie");
    let resp = post_form(&app, &ack, Some(&session), &[]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "no csrf");
    let resp = post_form(&app, &ack, Some(&session), &[("csrf", "forged")]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "wrong csrf");
    assert!(timeline_entries(&app.incident(&id).await, "acknowledged").is_empty());

    let resp = post_form(
        &app,
        &ack,
        Some(&session),
        &[("csrf", &csrf), ("for", "15m")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()[LOCATION],
        format!("/incidents/{id}").as_str()
    );
    let acks = timeline_entries(&app.incident(&id).await, "acknowledged");
    assert_eq!(acks[0]["by"], "mei");
    assert_eq!(acks[0]["origin"], "web");
    assert!(acks[0]["until"].is_string(), "{acks:?}");
    let (_, html) = page(&app, &format!("/incidents/{id}"), &session).await;
    assert!(html.contains("Acknowledged by mei via web until"), "{html}");

    // Signed out: the answer clears the cookie, and a copy of it is refused from now on.
    let resp = post_form(&app, "/sign-out", Some(&session), &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&resp)
            .iter()
            .any(|c| c.starts_with("vigil_session=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(page(&app, "/", &session).await.0, StatusCode::SEE_OTHER);
    let resp = post_form(
        &app,
        &format!("/incidents/{id}/resolve"),
        Some(&session),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.incident(&id).await["status"], "acknowledged");
}

#[tokio::test]
async fn labels_and_summaries_from_outside_are_escaped() {
    let app = spawn_console().await;
    let id = open_incident(&app, "<script>alert('x')</script> & <b>bold</b>").await;
    let (_, session) = sign_in(&app, MEI_TOKEN, false).await;
    let session = session.unwrap();
    for path in [
        "/".to_owned(),
        format!("/incidents/{id}"),
        format!("/incidents/{id}/silence"),
    ] {
        let (status, html) = page(&app, &path, &session).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(!html.contains("<b>bold"), "{path}");
        assert!(html.contains("&lt;script&gt;"), "{path}: {html}");
    }
}

#[tokio::test]
async fn replicas_sharing_the_console_key_accept_each_others_sessions() {
    let opts = || Options {
        person_tokens: vec![("mei".into(), MEI_TOKEN.into())],
        console_key: Some("shared-console-key-0123456789".into()),
        ..Options::default()
    };
    let a = spawn_app_with(opts()).await;
    let b = spawn_app_with(opts()).await;
    let stranger = spawn_console().await;
    let (_, session) = sign_in(&a, MEI_TOKEN, false).await;
    let session = session.unwrap();
    assert_eq!(page(&b, "/", &session).await.0, StatusCode::OK);
    assert_eq!(
        page(&stranger, "/", &session).await.0,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_silence_from_the_console_needs_a_comment_and_is_the_persons() {
    let app = spawn_console().await;
    let id = open_incident(&app, "Trading halted").await;
    let (_, session) = sign_in(&app, MEI_TOKEN, false).await;
    let session = session.unwrap();
    let (_, html) = page(&app, &format!("/incidents/{id}/silence"), &session).await;
    assert!(
        html.contains("service=&#34;trading-bot&#34;")
            || html.contains("service=&quot;trading-bot&quot;"),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let silence = |comment: &'static str| {
        let (app, session, csrf) = (&app, &session, &csrf);
        async move {
            let matchers = "service=\"trading-bot\"\nregion=\"ap-southeast-1\"";
            let fields = [
                ("csrf", csrf.as_str()),
                ("matchers", matchers),
                ("for", "2h"),
                ("comment", comment),
            ];
            post_form(app, "/silences", Some(session), &fields)
                .await
                .status()
        }
    };
    assert_eq!(
        silence("").await,
        StatusCode::BAD_REQUEST,
        "the comment is required"
    );
    assert_eq!(silence("maintenance").await, StatusCode::SEE_OTHER);
    let (_, list) = app.get("/v1/silences").await;
    let api: Vec<&Value> = list["silences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == "api")
        .collect();
    assert_eq!(api.len(), 1, "{list}");
    assert_eq!(api[0]["author"], "mei");
    assert_eq!(api[0]["comment"], "maintenance");
    let (_, html) = page(&app, "/silences", &session).await;
    assert!(html.contains("maintenance"));
}

#[tokio::test]
async fn every_page_renders_and_an_override_from_the_console_changes_who_is_on_call() {
    let app = spawn_console().await;
    open_incident(&app, "Trading halted").await;
    let (_, session) = sign_in(&app, MEI_TOKEN, false).await;
    let session = session.unwrap();
    for path in [
        "/",
        "/?status=triggered&severity=critical",
        "/console/incidents",
        "/resolved",
        "/resolved?page=2",
        "/oncall",
        "/silences",
        "/health",
    ] {
        let (status, html) = page(&app, path, &session).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
    }
    for path in [
        "/?severity=urgent",
        "/resolved?page=0",
        "/incidents/not-an-id",
    ] {
        assert_eq!(
            page(&app, path, &session).await.0,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    let before = app.oncall(None).await;
    let schedule = before.keys().next().unwrap().clone();
    let person = if before[&schedule]["person"] == "raj" {
        "ana"
    } else {
        "raj"
    };
    let (_, html) = page(&app, "/oncall", &session).await;
    let resp = post_form(
        &app,
        "/overrides",
        Some(&session),
        &[
            ("csrf", &csrf_of(&html)),
            ("schedule", &schedule),
            ("person", person),
            ("for", "8h"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let after = app.oncall(None).await;
    assert_eq!(after[&schedule]["person"], person, "{after:?}");
    let (_, html) = page(&app, "/oncall", &session).await;
    assert!(html.contains("(by mei)"), "{html}");
}

#[tokio::test]
async fn health_shows_unavailable_channels_and_why_the_last_reload_was_refused() {
    let app = spawn_console().await;
    let (_, session) = sign_in(&app, MEI_TOKEN, false).await;
    let session = session.unwrap();
    let (status, html) = page(&app, "/health", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("none since the start"), "{html}");
    // The shipped policy's Slack channels have no token in the tests: unavailable, with why.
    let channels = &html[html.find("id=\"channels\"").unwrap()..];
    assert!(
        channels.contains("slack-trading-alerts: <strong class=\"error\">unavailable"),
        "{channels}"
    );

    std::fs::write(
        app.config_dir.join("broken.yaml"),
        "rules: [ {name: x, severity: nope} ]\n",
    )
    .unwrap();
    let (status, _) = app.post_op("/v1/admin/reload", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, html) = page(&app, "/health", &session).await;
    assert!(
        html.contains("(api): <strong class=\"error\">refused"),
        "{html}"
    );
    assert!(
        html.contains("broken.yaml"),
        "the problems are listed: {html}"
    );
}
