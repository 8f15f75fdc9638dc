//! The shared retry policy: which HTTP answers are worth retrying, how long to wait (exponential
//! backoff with jitter, never sooner than the provider's Retry-After), and when to give up.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::NotifyError;

/// Maps an HTTP status to success (`None`) or a classified error. 2xx ok; 408, 429 and 5xx
/// transient; every other status permanent.
pub fn classify_http(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    what: &str,
) -> Option<NotifyError> {
    let code = status.as_u16();
    if status.is_success() {
        None
    } else if code == 408 || code == 429 || status.is_server_error() {
        Some(NotifyError::Transient {
            retry_after,
            reason: format!("{what} answered HTTP {code}"),
        })
    } else {
        Some(NotifyError::Permanent {
            reason: format!("{what} answered HTTP {code}"),
        })
    }
}

/// AWS error codes worth another try: throttling and the service's own failures. (The SDK's own
/// retry classifier knows the same list; its retries are off because the worker owns retries.)
const AWS_TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "KMSThrottlingException",
];

/// Maps an AWS SDK error (any service: SNS, the voice API) to a classified error. Throttling
/// codes, HTTP 429/5xx, timeouts, and failures to reach the service or read its answer are
/// transient; a service error otherwise (`InvalidParameter`, validation, authorization) and a
/// request that could not be built are permanent. `scrub` runs over the text before it is
/// returned, so the caller can take out what must never be in an error (a phone number the
/// service echoes back).
pub fn classify_aws<E>(
    err: &aws_sdk_sns::error::SdkError<E>,
    what: &str,
    scrub: impl Fn(&str) -> String,
) -> NotifyError
where
    E: aws_sdk_sns::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_sns::error::{DisplayErrorContext, SdkError};
    let transient = |reason: String| NotifyError::Transient {
        retry_after: None,
        reason: scrub(&reason),
    };
    match err {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let code = e.err().code().unwrap_or("unknown error");
            let reason = match e.err().message() {
                Some(m) => format!("{what} answered HTTP {status} {code}: {m}"),
                None => format!("{what} answered HTTP {status} {code}"),
            };
            if AWS_TRANSIENT_CODES.contains(&code) || status == 429 || status >= 500 {
                transient(reason)
            } else {
                NotifyError::Permanent {
                    reason: scrub(&reason),
                }
            }
        }
        SdkError::TimeoutError(_) => transient(format!("{what} request timed out")),
        SdkError::DispatchFailure(_) => transient(format!(
            "{what} request failed: {}",
            DisplayErrorContext(err)
        )),
        SdkError::ResponseError(r) => transient(format!(
            "{what} answered HTTP {} that could not be read",
            r.raw().status().as_u16()
        )),
        SdkError::ConstructionFailure(_) => NotifyError::Permanent {
            reason: scrub(&format!(
                "{what} request could not be built: {}",
                DisplayErrorContext(err)
            )),
        },
        // `SdkError` is non-exhaustive; a kind added later is most likely a passing one.
        _ => transient(format!("{what} failed: {}", DisplayErrorContext(err))),
    }
}

/// Parses a `Retry-After` header: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    (at - now).to_std().ok().or(Some(Duration::ZERO))
}

/// Retry bounds.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First backoff; doubles per attempt.
    pub base: Duration,
    /// Longest single wait (also caps a provider's Retry-After).
    pub max_delay: Duration,
    /// Attempts before giving up for good.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempts counted from 1): exponential with "equal
    /// jitter" (half fixed, half random, so waits never collapse to zero), at least `retry_after`,
    /// at most `max_delay`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter = half.mul_f64(rand::random::<f64>());
        let backoff = half + jitter;
        backoff
            .max(retry_after.unwrap_or_default())
            .min(self.max_delay)
    }

    pub fn exhausted(&self, attempts_made: u32) -> bool {
        attempts_made >= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_status_table() {
        use reqwest::StatusCode as S;
        assert!(classify_http(S::OK, None, "x").is_none());
        assert!(classify_http(S::ACCEPTED, None, "x").is_none());
        for s in [
            S::TOO_MANY_REQUESTS,
            S::INTERNAL_SERVER_ERROR,
            S::BAD_GATEWAY,
            S::SERVICE_UNAVAILABLE,
            S::REQUEST_TIMEOUT,
        ] {
            assert!(
                matches!(
                    classify_http(s, None, "x"),
                    Some(NotifyError::Transient { .. })
                ),
                "{s}"
            );
        }
        for s in [
            S::BAD_REQUEST,
            S::UNAUTHORIZED,
            S::FORBIDDEN,
            S::NOT_FOUND,
            S::UNPROCESSABLE_ENTITY,
        ] {
            assert!(
                matches!(
                    classify_http(s, None, "x"),
                    Some(NotifyError::Permanent { .. })
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn backoff_grows_is_bounded_and_honours_retry_after() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 5,
        };
        for attempt in 1..=10 {
            let d = p.delay(attempt, None);
            let exp = Duration::from_secs(1 << (attempt - 1).min(20)).min(Duration::from_secs(60));
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        assert!(p.exhausted(5) && !p.exhausted(4));
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
