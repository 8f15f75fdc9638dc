//! The `webhook` channel: one JSON POST of the notification to a configured URL, with an optional
//! bearer token read from an environment variable. 2xx is success; 408/429/5xx are retried
//! (honouring Retry-After); other statuses are permanent.

use std::time::Duration;

use super::{ChannelBuilder, Notification, Notifier, NotifyError, Receipt, built, request};
use crate::config::{ChannelType, Form, Key, Reach};

inventory::submit!(ChannelType::new("webhook", Reach::Nobody).keys(&[
    Key::required("url", Form::Url),
    Key::optional("token_env", Form::EnvName),
]));

inventory::submit!(ChannelBuilder::new("webhook", |spec, settings, http| {
    let url = spec.url("url").ok_or("webhook needs `url`")?;
    built(WebhookNotifier::new(
        url.to_string(),
        spec.env_name("token_env"),
        &settings.secrets,
        http.clone(),
        settings.http_timeout,
    ))
}));

pub struct WebhookNotifier {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl WebhookNotifier {
    /// Fails (with a message naming the variable, never its value) when `token_env` is set but
    /// the variable is not.
    pub fn new(
        url: String,
        token_env: Option<&str>,
        secrets: &super::SecretSource,
        http: reqwest::Client,
        timeout: Duration,
    ) -> Result<Self, String> {
        let token = match token_env {
            Some(var) => Some(secrets.get(var)?),
            None => None,
        };
        Ok(Self {
            url,
            token,
            http,
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, msg: &Notification) -> Result<Receipt, NotifyError> {
        let mut req = self
            .http
            .post(&self.url)
            .header("Idempotency-Key", &msg.delivery_id)
            .json(msg);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let answer = request::send(req, self.timeout, "webhook", msg.now).await?;
        answer.classify("webhook", None)?;
        Ok(Receipt {
            reference: Some(format!("HTTP {}", answer.status.as_u16())),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wiremock::ResponseTemplate;

    use super::*;
    use crate::notify::SecretSource;
    use crate::notify::testkit::{assert_status_table, notification};

    fn notifier(url: &str) -> WebhookNotifier {
        let secrets = SecretSource::from_map(
            [("HOOK_TOKEN".to_string(), "hook-secret-123".to_string())].into(),
        );
        WebhookNotifier::new(
            url.to_string(),
            Some("HOOK_TOKEN"),
            &secrets,
            reqwest::Client::new(),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_shared_status_table() {
        assert_status_table(
            notifier,
            ResponseTemplate::new,
            &[
                (200, None, Ok(())),
                (204, None, Ok(())),
                (429, Some("4"), Err(Some(Some(Duration::from_secs(4))))),
                (500, None, Err(Some(None))),
                (503, Some("1"), Err(Some(Some(Duration::from_secs(1))))),
                (400, None, Err(None)),
                (401, None, Err(None)),
                (404, None, Err(None)),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn no_secret_in_errors_and_a_missing_token_names_its_variable() {
        let err = notifier("http://127.0.0.1:9/hook?token=hook-secret-123")
            .send(&notification(crate::incident::NotifyKind::Trigger))
            .await
            .unwrap_err();
        assert!(
            !format!("{err} {err:?}").contains("hook-secret-123"),
            "{err}"
        );
        let missing = WebhookNotifier::new(
            "http://x".into(),
            Some("NOPE"),
            &SecretSource::from_map(Default::default()),
            reqwest::Client::new(),
            Duration::from_secs(1),
        );
        assert_eq!(
            missing.err().unwrap(),
            "environment variable NOPE is not set"
        );
    }
}
