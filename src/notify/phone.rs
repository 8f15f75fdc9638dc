//! The `phone` channel: a voice call to the recipient person's E.164 number through AWS End User
//! Messaging (`pinpoint-sms-voice-v2` `SendVoiceMessage`), which reads a short spoken text made
//! from the severity and the summary. In comes a `Notification`; out goes one call request. The
//! receipt's reference is the MessageId.
//!
//! Like `sms`: the SDK's retries are off (the delivery worker owns retries), errors are
//! classified by `retry::classify_aws`, and numbers appear in errors only redacted.

use aws_sdk_pinpointsmsvoicev2::config::retry::RetryConfig;
use aws_sdk_pinpointsmsvoicev2::config::timeout::TimeoutConfig;
use aws_sdk_pinpointsmsvoicev2::types::VoiceMessageBodyTextType;

use super::retry::classify_aws;
use super::sms::{recipient_phone, scrub_number};
use super::{ChannelBuilder, ChannelSettings, Notification, Notifier, NotifyError, Receipt, built};
use crate::config::{ChannelType, Reach};
use crate::incident::NotifyKind;

inventory::submit!(ChannelType::new("phone", Reach::PhonePerPerson).limits(1000, 200));

// No default endpoint: the AWS SDK resolves it; tests set `endpoints["phone"]`.
inventory::submit!(ChannelBuilder::new("phone", |_, settings, _| built(
    PhoneNotifier::new(settings)
)));

/// Longest summary read out; the call should be over before people stop listening.
const MAX_SPOKEN_SUMMARY: usize = 300;

pub struct PhoneNotifier {
    client: aws_sdk_pinpointsmsvoicev2::Client,
    origination_identity: Option<String>,
}

impl PhoneNotifier {
    /// Fails, with a reason for the channel's timeline, when no AWS configuration (or no region)
    /// was loaded.
    pub fn new(settings: &ChannelSettings) -> Result<Self, String> {
        let aws = settings
            .aws
            .as_ref()
            .ok_or("phone needs the AWS voice API, and no AWS configuration was loaded")?;
        if aws.region().is_none() {
            return Err("phone needs an AWS region (set AWS_REGION)".into());
        }
        let mut conf = aws_sdk_pinpointsmsvoicev2::config::Builder::from(aws)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(settings.http_timeout)
                    .build(),
            );
        if let Some(endpoint) = settings.endpoint("phone") {
            conf = conf.endpoint_url(endpoint);
        }
        Ok(Self {
            client: aws_sdk_pinpointsmsvoicev2::Client::from_conf(conf.build()),
            origination_identity: settings.voice_origination_identity.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Notifier for PhoneNotifier {
    fn kind(&self) -> &'static str {
        "phone"
    }

    async fn send(&self, msg: &Notification) -> Result<Receipt, NotifyError> {
        let phone = recipient_phone(msg, "phone")?;
        let out = self
            .client
            .send_voice_message()
            .destination_phone_number(phone.as_ref())
            .message_body(spoken_text(msg))
            .message_body_text_type(VoiceMessageBodyTextType::Text)
            .set_origination_identity(self.origination_identity.clone())
            .send()
            .await
            .map_err(|e| classify_aws(&e, "voice API", |t| scrub_number(t, phone)))?;
        Ok(Receipt {
            reference: out.message_id().map(str::to_owned),
        })
    }
}

/// What the call says. Pages say the alert twice (the first words of a call are often lost
/// while the phone reaches an ear); status updates once. No links: they cannot be spoken.
pub fn spoken_text(msg: &Notification) -> String {
    let severity = msg.severity.as_str();
    let summary = speakable(&msg.summary);
    let spoken = match msg.kind {
        NotifyKind::Trigger | NotifyKind::Escalate => format!(
            "This is vigil with a {severity} alert. {summary}. \
             Again: {severity} alert. {summary}. \
             Please acknowledge the incident in vigil."
        ),
        NotifyKind::Acknowledged => {
            let by = msg.by.as_deref().map(speakable).unwrap_or_default();
            if by.is_empty() {
                format!("This is vigil. The {severity} alert {summary} was acknowledged.")
            } else {
                format!("This is vigil. The {severity} alert {summary} was acknowledged by {by}.")
            }
        }
        NotifyKind::Resolved => {
            format!("This is vigil. The {severity} alert {summary} is resolved.")
        }
        NotifyKind::Test => "This is vigil with a test call. No incident is open and nothing \
             needs doing. Again: this is only a test."
            .to_string(),
    };
    // A drill pages for real, so the call must say what it is before anything else.
    if msg.drill {
        format!("This is a drill. {spoken}")
    } else {
        spoken
    }
}

/// `s` as words a speech engine reads well: no control characters or markup, underscores as
/// spaces, one line, bounded.
fn speakable(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    let mut out: String = words
        .join(" ")
        .chars()
        .map(|c| match c {
            '_' => ' ',
            '<' | '>' | '&' | '*' | '#' | '`' => ' ',
            c => c,
        })
        .filter(|c| !c.is_control())
        .take(MAX_SPOKEN_SUMMARY)
        .collect();
    out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    out.trim_end_matches(['.', ' ']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speakable_text_is_one_clean_bounded_line() {
        assert_eq!(
            speakable("cpu_high on <eks>\n  node.\n"),
            "cpu high on eks node"
        );
        assert_eq!(speakable(&"a".repeat(1000)).len(), MAX_SPOKEN_SUMMARY);
    }
}
