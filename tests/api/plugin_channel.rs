//! A channel type registered from the tests alone: `teams`, a Microsoft-Teams-like channel that
//! POSTs to an incoming-webhook URL. Nothing in `src/` names it; it plugs in through its
//! descriptor (`config::ChannelType` and `notify::ChannelBuilder`) and its own templates in a
//! temporary directory, and the real app routes a page to it, renders it with its template and
//! delivers it. This is what adding a channel to vigil takes: one file, its templates, its tests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use vigil::config::{ChannelType, Form, Key, Reach};
use vigil::notify::{ChannelBuilder, Notification, Notifier, NotifyError, Receipt};

use crate::helpers::*;

inventory::submit!(
    ChannelType::new("teams", Reach::Destination)
        .keys(&[Key::required("webhook_url", Form::Url)])
        .limits(280, 100)
);

inventory::submit!(ChannelBuilder::new("teams", |spec, settings, http| {
    let url = spec.url("webhook_url").ok_or("teams needs `webhook_url`")?;
    Ok(Arc::new(TeamsNotifier {
        url: url.to_string(),
        http: http.clone(),
        timeout: settings.http_timeout,
    }))
}));

/// Posts the rendered text as a Teams message card would carry it.
struct TeamsNotifier {
    url: String,
    http: reqwest::Client,
    timeout: Duration,
}

#[async_trait::async_trait]
impl Notifier for TeamsNotifier {
    fn kind(&self) -> &'static str {
        "teams"
    }

    async fn send(&self, msg: &Notification) -> Result<Receipt, NotifyError> {
        let people: Vec<&str> = msg.people.iter().map(|p| p.id.as_str()).collect();
        let body = json!({
            "type": "message",
            "text": msg.text,
            "kind": msg.kind.as_str(),
            "incident": msg.incident.to_string(),
            "people": people,
        });
        let resp = self
            .http
            .post(&self.url)
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| NotifyError::Transient {
                retry_after: None,
                reason: format!("teams request failed: {}", e.without_url()),
            })?;
        match vigil::notify::retry::classify_http(resp.status(), None, "teams") {
            None => Ok(Receipt::default()),
            Some(e) => Err(e),
        }
    }
}

/// The shipped templates plus `teams/trigger.txt`, in a directory of the test's own.
fn templates_with_teams(to: &Path) {
    for sub in std::fs::read_dir(shipped_templates()).unwrap().flatten() {
        if sub.path().is_dir() {
            let dir = to.join(sub.file_name());
            std::fs::create_dir_all(&dir).unwrap();
            for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
                std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
            }
        }
    }
    std::fs::create_dir_all(to.join("teams")).unwrap();
    std::fs::write(
        to.join("teams/trigger.txt"),
        "TEAMS {{ severity | upper }}: {{ summary }} (paging {{ people | join(', ') }})\n",
    )
    .unwrap();
}

/// The escalation tests' policy with its webhook channel replaced by a `teams` one, with `keys`
/// (the YAML inside the channel's braces after `type: teams`).
fn teams_policy(keys: String) -> impl FnOnce(&Path) + 'static {
    move |dir: &Path| {
        webhook_policy("http://127.0.0.1:9")(dir);
        let file = dir.join("policy.yaml");
        let yaml = std::fs::read_to_string(&file).unwrap();
        let hook = r#"hook: { type: webhook, url: "http://127.0.0.1:9/page" }"#;
        assert!(yaml.contains(hook), "the escalation policy changed shape");
        let yaml = yaml.replace(hook, &format!("hook: {{ type: teams{keys} }}"));
        std::fs::write(file, yaml).unwrap();
    }
}

#[tokio::test]
async fn a_channel_type_registered_by_the_tests_alone_receives_the_page() {
    let sink = ok_sink().await;
    let templates = tempfile::tempdir().unwrap();
    templates_with_teams(templates.path());
    let app = spawn_app_with(Options {
        policy: Some(Box::new(teams_policy(format!(
            r#", webhook_url: "{}/teams""#,
            sink.uri()
        )))),
        templates: Some(templates.path().to_path_buf()),
        ..Default::default()
    })
    .await;

    let (status, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = incident_of(&body);
    app.advance(Duration::ZERO).await;

    let got = received_at(&sink, "/teams").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["kind"], "trigger");
    assert_eq!(got[0]["incident"], id.as_str());
    assert_eq!(got[0]["people"], json!(["ana"]));
    let text = got[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("TEAMS CRITICAL: ") && text.ends_with("(paging Ana Lim)"),
        "rendered with the channel's own template: {text}"
    );
    assert!(text.chars().count() <= 280, "cut to the type's limit");
    let incident = app.incident(&id).await;
    let sent_by_teams = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "delivery" && e["channel"] == "hook" && e["outcome"] == "sent");
    assert!(sent_by_teams, "{incident:#}");
}

#[test]
fn a_channel_of_the_registered_type_without_its_required_key_is_refused_by_compile() {
    let dir = tempfile::tempdir().unwrap();
    teams_policy(String::new())(dir.path());
    let errors = vigil::config::load_dir(dir.path()).unwrap_err();
    let text = vigil::config::format_errors(&errors);
    assert_eq!(errors.len(), 1, "{text}");
    assert_eq!(errors[0].key, "channels.hook", "{text}");
    assert_eq!(
        errors[0].message, "type teams needs `webhook_url`",
        "{text}"
    );

    teams_policy(r#", webhook_url: "ftp://example.com/x""#.into())(dir.path());
    let errors = vigil::config::load_dir(dir.path()).unwrap_err();
    assert_eq!(errors.len(), 1, "{}", vigil::config::format_errors(&errors));
    assert_eq!(errors[0].key, "channels.hook.webhook_url");
    assert!(
        errors[0].message.contains("must be an http or https URL"),
        "{}",
        errors[0]
    );
}
