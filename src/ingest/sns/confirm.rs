//! Confirming a subscription: a verified, allow-listed `SubscriptionConfirmation` is confirmed by
//! GETting its `SubscribeURL`, only when that URL is SNS's own `ConfirmSubscription` for the
//! topic's region ([`subscribe_url_is_safe`]) or starts with a prefix trusted for tests.

use std::time::Duration;

use super::subscribe_url_is_safe;

/// How long the confirmation GET may take.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a subscription was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// Refused for good (a 4xx to the sender): the URL would send vigil elsewhere.
    #[error("SubscribeURL is not an SNS ConfirmSubscription URL for the topic's region")]
    UnsafeUrl,
    /// Worth SNS's retry (a 5xx to the sender).
    #[error("could not reach SNS to confirm; SNS will retry")]
    Unreachable,
    #[error("SNS answered HTTP {0} to the confirmation; SNS will retry")]
    Refused(u16),
}

/// Confirms the subscription of `topic_arn` (the envelope's signature and the topic allow-list
/// checked first, by the caller) by GETting `subscribe_url`, without following redirects when
/// `http` is built so (vigil's is).
pub async fn confirm_subscription(
    http: &reqwest::Client,
    subscribe_url: &str,
    topic_arn: &str,
    extra_trusted_prefixes: &[String],
) -> Result<(), ConfirmError> {
    let trusted_extra = extra_trusted_prefixes
        .iter()
        .any(|p| subscribe_url.starts_with(p.as_str()));
    if !(subscribe_url_is_safe(subscribe_url, topic_arn) || trusted_extra) {
        return Err(ConfirmError::UnsafeUrl);
    }
    let resp = http
        .get(subscribe_url)
        .timeout(CONFIRM_TIMEOUT)
        .send()
        .await
        .map_err(|_| ConfirmError::Unreachable)?;
    if !resp.status().is_success() {
        return Err(ConfirmError::Refused(resp.status().as_u16()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts";

    #[tokio::test]
    async fn only_sns_own_url_or_a_trusted_prefix_is_fetched() {
        let http = reqwest::Client::new();
        assert_eq!(
            confirm_subscription(
                &http,
                "https://evil.example.com/?Action=ConfirmSubscription",
                TOPIC,
                &[]
            )
            .await,
            Err(ConfirmError::UnsafeUrl),
            "refused before anything is fetched"
        );
        // A port nobody listens on, trusted for the test: fetched, unreachable, SNS retries.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/confirm");
        assert_eq!(
            confirm_subscription(&http, &url, TOPIC, &[format!("http://127.0.0.1:{port}/")]).await,
            Err(ConfirmError::Unreachable)
        );
    }
}
