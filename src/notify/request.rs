//! The one way the HTTP channels (`pagerduty`, `slack`, `webhook`) send: the request goes out
//! once with the channel's timeout, a failure to get an answer is transient (its text without
//! the URL, which may carry a token), the `Retry-After` header is read (seconds, or an HTTP date
//! measured from the attempt's `now`), and the status is classified by
//! [`super::retry::classify_http`]. Each channel keeps its own extras on top (Slack's `ok:false`
//! body, PagerDuty's 400 explanation and 429 hint).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::NotifyError;
use super::retry::{classify_http, parse_retry_after};

/// A provider's answer, not yet classified.
pub(super) struct Answer {
    /// The response, for a channel that reads the body.
    pub(super) response: reqwest::Response,
    pub(super) status: reqwest::StatusCode,
    /// `Retry-After`, when the provider sent one that parses.
    pub(super) retry_after: Option<Duration>,
}

impl Answer {
    /// 2xx is `Ok`; 408, 429 and 5xx transient (with `Retry-After`, or `hint` when it is
    /// `Some`); every other status permanent. `what` names the provider in the reason.
    pub(super) fn classify(&self, what: &str, hint: Option<Duration>) -> Result<(), NotifyError> {
        match classify_http(self.status, self.retry_after.or(hint), what) {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// Sends `req` once, within `timeout`. `what` names the provider in a failure's reason; `now`
/// is what a `Retry-After` date is measured from (the attempt's `Notification::now`).
pub(super) async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    what: &str,
    now: DateTime<Utc>,
) -> Result<Answer, NotifyError> {
    let response = req
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| NotifyError::Transient {
            retry_after: None,
            // reqwest's error text names the URL but never the headers.
            reason: format!("{what} request failed: {}", without_url(&e)),
        })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    Ok(Answer {
        response,
        status,
        retry_after,
    })
}

/// A reqwest error's text without its URL (which may carry a token in its query).
pub(super) fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return "could not connect".into();
    }
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<url>");
    }
    s
}
