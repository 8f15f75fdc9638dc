//! The AWS SDK clients of the pipeline: CloudWatch per region (reconciliation) and SQS per queue
//! (dead letters), built from one standard SDK configuration — credentials from the default
//! chain, endpoints overridable with `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_CLOUDWATCH` and
//! `AWS_ENDPOINT_URL_SQS` (how the tests point them at moto).

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::OnceCell;

/// One attempt of an AWS call may take this long (a long poll waits up to 20 s of it).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The SDK's own retries of one call (throttling, 5xx, timeouts), with its exponential backoff
/// and jitter; the loops back off between calls on top of this.
fn retry() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(500))
}

fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
}

/// The shared SDK configuration: the one the app loaded (or a test built), or else loaded on
/// first use with the region of the first client asked for — so a vigil without `AWS_REGION`
/// that reconciles ap-southeast-1 never asks the EC2 metadata service for a region.
pub struct AwsClients {
    config: OnceCell<SdkConfig>,
}

impl AwsClients {
    pub fn new(config: Option<SdkConfig>) -> Self {
        Self {
            config: match config {
                Some(c) => OnceCell::new_with(Some(c)),
                None => OnceCell::new(),
            },
        }
    }

    /// The shared configuration (loaded with `region` if it was not yet).
    pub async fn base(&self, region: &str) -> &SdkConfig {
        self.config
            .get_or_init(|| async {
                aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(region.to_string()))
                    .load()
                    .await
            })
            .await
    }

    /// A CloudWatch client for `region`.
    pub async fn cloudwatch(&self, region: &str) -> aws_sdk_cloudwatch::Client {
        let conf = aws_sdk_cloudwatch::config::Builder::from(self.base(region).await)
            .region(Region::new(region.to_string()))
            .retry_config(retry())
            .timeout_config(timeouts())
            .build();
        aws_sdk_cloudwatch::Client::from_conf(conf)
    }

    /// An SQS client for the queue at `queue_url`, in the region its host names
    /// (`sqs.<region>.amazonaws.com`), or the configuration's region for any other host.
    pub async fn sqs(&self, queue_url: &str) -> aws_sdk_sqs::Client {
        let named = queue_region(queue_url);
        let base = self.base(named.as_deref().unwrap_or("us-east-1")).await;
        let mut conf = aws_sdk_sqs::config::Builder::from(base)
            .retry_config(retry())
            .timeout_config(timeouts());
        if let Some(region) = named {
            conf = conf.region(Region::new(region));
        }
        aws_sdk_sqs::Client::from_conf(conf.build())
    }
}

/// One line for logs and `/readyz`: what `service` answered (HTTP status, error code, message),
/// or what went wrong on the way.
pub fn sdk_error<E>(service: &str, e: &aws_sdk_cloudwatch::error::SdkError<E>) -> String
where
    E: aws_sdk_cloudwatch::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_cloudwatch::error::{DisplayErrorContext, SdkError};
    match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            match (s.err().code(), s.err().message()) {
                (Some(code), Some(m)) => format!("{service} answered HTTP {status} {code}: {m}"),
                (Some(code), None) => format!("{service} answered HTTP {status} {code}"),
                // Not an error document the SDK could read (a proxy's page, another protocol's
                // shape): the start of the body says more than "unknown error".
                _ => {
                    let body = s
                        .raw()
                        .body()
                        .bytes()
                        .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                        .unwrap_or_default();
                    let body: String = body
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect();
                    format!("{service} answered HTTP {status}: {}", body.trim())
                }
            }
        }
        SdkError::TimeoutError(_) => format!("{service} did not answer in time"),
        other => format!("{service} request failed: {}", DisplayErrorContext(other)),
    }
}

/// The region of an SQS queue URL: `https://sqs.<region>.amazonaws.com/...` or the legacy
/// `https://<region>.queue.amazonaws.com/...`.
pub fn queue_region(queue_url: &str) -> Option<String> {
    let url = url::Url::parse(queue_url).ok()?;
    let host = url.host_str()?;
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split_once('.'))
        .map(|(r, _)| r)
        .or_else(|| host.split_once(".queue.").map(|(r, _)| r))?;
    crate::config::is_region_code(region).then(|| region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_of_a_queue_is_read_from_its_host() {
        assert_eq!(
            queue_region("https://sqs.ap-southeast-1.amazonaws.com/123456789012/vigil-dlq")
                .as_deref(),
            Some("ap-southeast-1")
        );
        assert_eq!(
            queue_region("https://us-east-1.queue.amazonaws.com/123456789012/vigil-dlq").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            queue_region("http://127.0.0.1:5000/123456789012/vigil-dlq"),
            None
        );
    }
}
