//! The `sms` channel: one AWS SNS `Publish` to the recipient person's E.164 number, marked
//! `Transactional` (delivery priority over price), with the configured sender id. In comes a
//! `Notification` whose `text` was rendered for SMS; out goes one message that fits one GSM-7
//! part when it can (160 characters: emoji and other non-GSM characters would switch the whole
//! message to UCS-2 and a third of the room), the acknowledge link kept whole at its end.
//! The receipt's reference is the SNS MessageId.
//!
//! The SDK's own retries are off: the delivery worker owns retries (and an emulator such as moto
//! delivers synchronously, so an SDK retry would page twice). Phone numbers appear in errors
//! only as `PhoneNumber::redacted()`.

use aws_sdk_sns::config::retry::RetryConfig;
use aws_sdk_sns::config::timeout::TimeoutConfig;
use aws_sdk_sns::types::MessageAttributeValue;

use super::retry::classify_aws;
use super::{ChannelBuilder, ChannelSettings, Notification, Notifier, NotifyError, Receipt, built};
use crate::config::{ChannelType, Failover, Reach};
use crate::domain::PhoneNumber;

inventory::submit!(
    // The first to take a failed critical PagerDuty page: the faster of the two.
    ChannelType::new("sms", Reach::PhonePerPerson)
        .limits(ONE_PART, 100)
        .failover(Failover::Target { rank: 0 })
);

// No default endpoint: the AWS SDK resolves it (`AWS_ENDPOINT_URL_SNS`); tests set
// `endpoints["sms"]`.
inventory::submit!(ChannelBuilder::new("sms", |_, settings, _| built(
    SmsNotifier::new(settings)
)));

/// One GSM-7 part, in septets.
pub const ONE_PART: usize = 160;
/// The most SNS takes in one Publish, in bytes.
pub const MAX_BYTES: usize = 1600;
/// Shows that text was cut. Three dots, not `…`: U+2026 is not in GSM-7 and would make the
/// message UCS-2 (70 characters a part).
pub const CUT_MARKER: &str = "...";
/// The least text kept before the link when a long link leaves little room in one part.
const MIN_TEXT: usize = 40;

pub struct SmsNotifier {
    client: aws_sdk_sns::Client,
    sender_id: Option<String>,
}

impl SmsNotifier {
    /// Fails, with a reason for the channel's timeline, when no AWS configuration (or no region)
    /// was loaded or the sender id is not one SNS accepts.
    pub fn new(settings: &ChannelSettings) -> Result<Self, String> {
        let aws = settings
            .aws
            .as_ref()
            .ok_or("sms needs AWS SNS, and no AWS configuration was loaded")?;
        if aws.region().is_none() {
            return Err("sms needs an AWS region (set AWS_REGION)".into());
        }
        if let Some(id) = &settings.sms_sender_id {
            check_sender_id(id)?;
        }
        let mut conf = aws_sdk_sns::config::Builder::from(aws)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(settings.http_timeout)
                    .build(),
            );
        if let Some(endpoint) = settings.endpoint("sms") {
            conf = conf.endpoint_url(endpoint);
        }
        Ok(Self {
            client: aws_sdk_sns::Client::from_conf(conf.build()),
            sender_id: settings.sms_sender_id.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Notifier for SmsNotifier {
    fn kind(&self) -> &'static str {
        "sms"
    }

    async fn send(&self, msg: &Notification) -> Result<Receipt, NotifyError> {
        let phone = recipient_phone(msg, "sms")?;
        let mut text = msg.text.clone();
        if to_gsm(&text).is_empty() {
            text = format!("[{}] {}", msg.severity.as_str().to_uppercase(), msg.summary);
        }
        let body = sms_body(&text, msg.ack_url.as_deref());
        let mut req = self
            .client
            .publish()
            .phone_number(phone.as_ref())
            .message(body)
            .message_attributes("AWS.SNS.SMS.SMSType", string_attribute("Transactional"));
        if let Some(id) = &self.sender_id {
            req = req.message_attributes("AWS.SNS.SMS.SenderID", string_attribute(id));
        }
        let out = req
            .send()
            .await
            .map_err(|e| classify_aws(&e, "sns", |t| scrub_number(t, phone)))?;
        Ok(Receipt {
            reference: out.message_id().map(str::to_owned),
        })
    }
}

/// The recipient person's phone, or a permanent error naming the person (never a number).
pub(super) fn recipient_phone<'a>(
    msg: &'a Notification,
    channel: &str,
) -> Result<&'a PhoneNumber, NotifyError> {
    match &msg.recipient {
        Some(person) => person.phone.as_ref().ok_or_else(|| NotifyError::Permanent {
            reason: format!("person {} has no phone number for {channel}", person.id),
        }),
        None => Err(NotifyError::Permanent {
            reason: format!("{channel} sends to a person, and this delivery names none"),
        }),
    }
}

/// `text` with every spelling of `phone` (with and without `+`) replaced by its redacted form:
/// providers echo the number back in their error messages.
pub(super) fn scrub_number(text: &str, phone: &PhoneNumber) -> String {
    let full = phone.as_ref();
    let digits = full.trim_start_matches('+');
    text.replace(full, &phone.redacted())
        .replace(digits, &phone.redacted())
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("invariant: data_type, the only required field, is set")
}

/// SNS's rule for `AWS.SNS.SMS.SenderID`: 3-11 letters, digits or hyphens, at least one letter.
fn check_sender_id(id: &str) -> Result<(), String> {
    let ok = (3..=11).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && id.bytes().any(|b| b.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "SMS sender id {id:?} is not 3-11 letters, digits or hyphens with at least one letter"
        ))
    }
}

/// The SMS to send: `text` in GSM-7 (non-GSM characters transliterated or dropped), then
/// ` Ack: <url>` when there is a link. Fits one part (160 septets) when it can by cutting the
/// text, never the link, with a visible marker; a link too long for that gets several parts,
/// still at most [`MAX_BYTES`] (a link that alone would break that limit is left out: a cut
/// link is useless).
pub fn sms_body(text: &str, ack_url: Option<&str>) -> String {
    let text = to_gsm(text);
    let suffix = match ack_url {
        Some(url) if text.is_empty() => format!("Ack: {url}"),
        Some(url) => format!(" Ack: {url}"),
        None => String::new(),
    };
    if septets(&text) + septets(&suffix) <= ONE_PART {
        return text + &suffix;
    }
    let room = ONE_PART.saturating_sub(septets(&suffix)).max(MIN_TEXT);
    let mut cut = cut_to(&text, room, gsm_cost);
    if cut.len() + suffix.len() > MAX_BYTES {
        if suffix.len() + MIN_TEXT > MAX_BYTES {
            return cut_to(&text, ONE_PART, gsm_cost);
        }
        cut = cut_to(&cut, MAX_BYTES - suffix.len(), char::len_utf8);
    }
    cut + &suffix
}

/// The GSM 03.38 basic character set (one septet each).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡\
ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: two septets each (escape + character).
const GSM_EXTENDED: &str = "^{}\\[]~|€";

fn gsm_cost(c: char) -> usize {
    if GSM_EXTENDED.contains(c) { 2 } else { 1 }
}

fn septets(s: &str) -> usize {
    s.chars().map(gsm_cost).sum()
}

/// `s` in GSM-7: typographic punctuation becomes its plain form, other whitespace a space,
/// everything else outside the set (emoji, CJK, ...) is dropped; runs of spaces collapse.
pub fn to_gsm(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let mapped: &str = match c {
            c if GSM_BASIC.contains(c) || GSM_EXTENDED.contains(c) => {
                out.push(c);
                continue;
            }
            '\r' => continue,
            '…' => "...",
            '‘' | '’' | '′' | '`' | '´' => "'",
            '“' | '”' | '″' | '«' | '»' => "\"",
            '‐' | '‑' | '‒' | '–' | '—' | '−' | '•' | '·' => "-",
            '→' => "->",
            c if c.is_whitespace() => " ",
            _ => continue,
        };
        out.push_str(mapped);
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if c == ' ' && (collapsed.ends_with(' ') || collapsed.ends_with('\n')) {
            continue;
        }
        if c == '\n' && collapsed.ends_with(' ') {
            collapsed.pop();
        }
        collapsed.push(c);
    }
    collapsed.trim().to_string()
}

/// `s` cut to at most `budget` (as `cost` counts it) including [`CUT_MARKER`], at a word
/// boundary when one is close to the end.
fn cut_to(s: &str, budget: usize, cost: fn(char) -> usize) -> String {
    if s.chars().map(cost).sum::<usize>() <= budget {
        return s.to_string();
    }
    let room = budget.saturating_sub(CUT_MARKER.len());
    let mut used = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if used + cost(c) > room {
            break;
        }
        used += cost(c);
        end = i + c.len_utf8();
    }
    let mut kept = &s[..end];
    if let Some(space) = kept.rfind([' ', '\n'])
        && end - space <= 20
    {
        kept = &s[..space];
    }
    format!("{}{CUT_MARKER}", kept.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_and_link_stay_as_they_are() {
        assert_eq!(
            sms_body("CRITICAL db down", Some("https://v.example/a/1")),
            "CRITICAL db down Ack: https://v.example/a/1"
        );
        assert_eq!(sms_body("db down", None), "db down");
    }

    #[test]
    fn emoji_are_dropped_and_typography_becomes_gsm() {
        let body = sms_body("🔥 CPU “high” – node…", None);
        assert_eq!(body, "CPU \"high\" - node...");
        assert!(body.chars().all(|c| GSM_BASIC.contains(c)));
    }

    #[test]
    fn long_text_is_cut_to_one_part_and_the_link_kept_whole() {
        let url = "https://vigil.example.com/v1/ack/01JD0000000000000000000000?t=abcdef";
        let text = "word ".repeat(100);
        let body = sms_body(&text, Some(url));
        assert!(septets(&body) <= ONE_PART, "{}", septets(&body));
        assert!(
            body.ends_with(&format!("{CUT_MARKER} Ack: {url}")),
            "{body}"
        );
    }

    #[test]
    fn extension_characters_count_twice() {
        let text = "{".repeat(100);
        let body = sms_body(&text, None);
        assert!(septets(&body) <= ONE_PART);
        assert_eq!(body.chars().filter(|&c| c == '{').count(), (160 - 3) / 2);
    }

    #[test]
    fn a_very_long_link_gets_several_parts_but_never_over_1600_bytes() {
        let url = format!("https://v.example/{}", "a".repeat(300));
        let body = sms_body(&"é".repeat(2000), Some(&url));
        assert!(body.len() <= MAX_BYTES);
        assert!(body.ends_with(&url));
        let huge = format!("https://v.example/{}", "a".repeat(1700));
        let body = sms_body("db down", Some(&huge));
        assert_eq!(body, "db down");
    }

    #[test]
    fn sender_ids_follow_the_sns_rule() {
        assert!(check_sender_id("Vigil").is_ok());
        assert!(check_sender_id("ON-CALL1").is_ok());
        for bad in ["ab", "123456", "way-too-long-id", "has space"] {
            assert!(check_sender_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_are_scrubbed_in_both_spellings() {
        let p = PhoneNumber::parse("+6591234567").unwrap();
        let t = scrub_number("Invalid +6591234567 / 6591234567", &p);
        assert_eq!(t, "Invalid +…67 / +…67");
    }
}
