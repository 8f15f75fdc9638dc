//! Signed acknowledge links: GET changes nothing, POST acknowledges, expired or altered links
//! are refused with 401.

use std::time::Duration;

use reqwest::StatusCode;
use vigil::ack::AckSigner;
use vigil::clock::Clock;
use vigil::domain::IncidentId;
use vigil::settings::Secret;

use crate::helpers::*;

const SECRET: &str = "ack-link-test-secret";

#[tokio::test]
async fn get_shows_post_acknowledges_and_bad_links_are_refused() {
    let app = spawn_app_with(Options {
        ack_secret: Some(SECRET.into()),
        ..Default::default()
    })
    .await;
    let (_, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    let id = incident_of(&body);
    let signer = AckSigner::new(Secret::new(SECRET), Duration::from_secs(3600));
    let token = signer.issue(IncidentId::parse(&id).unwrap(), "mei", app.clock.now());
    let url = app.url(&format!("/v1/ack/{token}"));

    let page = app.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("method=\"post\"") && html.contains("Acknowledge as mei"),
        "{html}"
    );
    assert_eq!(
        app.incident(&id).await["status"],
        "triggered",
        "a GET changes nothing"
    );

    // Altered: one character of the signature changed.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = app
        .http
        .post(app.url(&format!("/v1/ack/{forged}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.incident(&id).await["status"], "triggered");

    let r = app.http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "acknowledged");
    assert_eq!(inc["acknowledged"][0]["who"], "mei");
    assert_eq!(inc["acknowledged"][0]["origin"], "email_link");

    // Expired: a fresh link, used after its lifetime.
    let (_, body) = app
        .post_events(&fixture("bot-exchange-error-timeout.json"))
        .await;
    let other = incident_of(&body);
    let token = signer.issue(IncidentId::parse(&other).unwrap(), "mei", app.clock.now());
    app.clock.advance(Duration::from_secs(3601));
    let r = app
        .http
        .post(app.url(&format!("/v1/ack/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("expired"));
    assert_eq!(app.incident(&other).await["status"], "triggered");
}
