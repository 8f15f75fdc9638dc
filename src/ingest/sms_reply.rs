//! Ingest, SMS replies: an inbound text from AWS End User Messaging two-way SMS in, a
//! [`Reply`] (who sent it, and what they asked) out. `reference/two-way-sms.md` §2.
//!
//! The service publishes each inbound text to an SNS topic as a Notification whose `Message` is
//! JSON: `{"originationNumber", "destinationNumber", "messageKeyword", "messageBody",
//! "inboundMessageId", "previousPublishedMessageId"}`. [`parse_inbound`] recognises that shape
//! (an object with `originationNumber` and `messageBody`); anything else on the topic is an
//! ordinary notification. The signature and the topic's allow-listing are checked before, as for
//! every SNS Notification.
//!
//! [`parse_command`] reads the body (case, extra spaces and a `#` before the code do not matter):
//! `ACK` (the newest incident paged to the sender), `ACK <code>`, `ACK <code> <duration>` (a timed
//! acknowledgement, e.g. `1h`, at most [`MAX_ACK_FOR`]), `RES <code>` (also `RESOLVE`). `STOP`,
//! `HELP` and the other opt-out keywords are the service's own (it answers them and keeps the
//! opt-out list): vigil does nothing with them.

use std::time::Duration;

use serde_json::Value;

use super::IngestError;
use crate::domain::PhoneNumber;

/// The longest timed acknowledgement a reply may ask for.
pub const MAX_ACK_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// The keywords End User Messaging handles itself (opt-out and help), compared without case.
const SERVICE_KEYWORDS: [&str; 9] = [
    "STOP",
    "HELP",
    "UNSTOP",
    "START",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
];

/// One inbound text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSms {
    /// The sender: the person's phone.
    pub from: PhoneNumber,
    /// The dedicated number that received it.
    pub to: Option<String>,
    pub body: String,
    /// The service's id of this text: a repeat is a duplicate.
    pub inbound_message_id: Option<String>,
}

/// What a reply asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `ACK [code] [duration]`.
    Ack {
        code: Option<String>,
        for_: Option<Duration>,
    },
    /// `RES <code>`.
    Resolve { code: String },
    /// STOP, HELP and the like: the service's business.
    ServiceKeyword,
    /// Anything else, with why it was not understood.
    Unknown(String),
}

/// `None` when `message` (an SNS `Message`) is not an inbound SMS; otherwise the text, or
/// `Malformed` when the sender's number is not E.164 or the body is not a string.
pub fn parse_inbound(message: &str) -> Option<Result<InboundSms, IngestError>> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(message) else {
        return None;
    };
    if !map.contains_key("originationNumber") || !map.contains_key("messageBody") {
        return None;
    }
    let text = |k: &str| map.get(k).and_then(Value::as_str);
    Some((|| {
        let from = text("originationNumber")
            .and_then(|n| PhoneNumber::parse(n.trim()).ok())
            .ok_or_else(|| {
                IngestError::Malformed("Message.originationNumber: not an E.164 number".into())
            })?;
        let body = text("messageBody").ok_or_else(|| {
            IngestError::Malformed("Message.messageBody: expected a string".into())
        })?;
        Ok(InboundSms {
            from,
            to: text("destinationNumber").map(str::to_string),
            body: body.to_string(),
            inbound_message_id: text("inboundMessageId").map(str::to_string),
        })
    })())
}

/// Reads what a reply asks for.
pub fn parse_command(body: &str) -> Command {
    let words: Vec<&str> = body.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Command::Unknown("the message is empty".into());
    };
    let verb = first.to_ascii_uppercase();
    if SERVICE_KEYWORDS.contains(&verb.as_str()) {
        return Command::ServiceKeyword;
    }
    let code = |w: &str| w.trim_start_matches('#').to_string();
    match verb.as_str() {
        "ACK" | "ACKNOWLEDGE" => {
            let mut code_word = None;
            let mut for_ = None;
            for w in &words[1..] {
                if for_.is_none()
                    && let Some(d) = duration_word(w)
                {
                    if d.is_zero() || d > MAX_ACK_FOR {
                        return Command::Unknown(format!(
                            "{w} is not a time from 1m to {}",
                            humantime::format_duration(MAX_ACK_FOR)
                        ));
                    }
                    for_ = Some(d);
                } else if code_word.is_none() && for_.is_none() {
                    code_word = Some(code(w));
                } else {
                    return Command::Unknown(format!("{w:?} was not understood"));
                }
            }
            Command::Ack {
                code: code_word,
                for_,
            }
        }
        "RES" | "RESOLVE" => match words.get(1..) {
            Some([c]) => Command::Resolve { code: code(c) },
            _ => Command::Unknown("RES takes the incident's code, e.g. RES 7QK3".into()),
        },
        _ => Command::Unknown(format!("{first:?} is not ACK or RES")),
    }
}

/// A reply's time: one or two digits and `m`, `h` or `d` (`30m`, `1h`), or digits and a word
/// unit (`90min`, `2hours`). Never four characters of the code alphabet with a one-letter unit:
/// `123M` is a code, not a duration.
fn duration_word(w: &str) -> Option<Duration> {
    let w = w.to_ascii_lowercase();
    let split = w.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = w.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let short = digits.len() <= 2;
    let secs = match unit {
        "m" if short => 60,
        "h" if short => 3600,
        "d" if short => 86_400,
        "min" | "mins" | "minute" | "minutes" => 60,
        "hr" | "hrs" | "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    (digits.len() <= 4).then(|| Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::testkit::mutations;

    fn inbound(body: &str) -> String {
        serde_json::json!({"originationNumber":"+6591110001","destinationNumber":"+6580000000",
          "messageKeyword":"KEYWORD_123456789012","messageBody":body,
          "inboundMessageId":"cae173d2-66b9-564c-8309-21f858e9fb84",
          "previousPublishedMessageId":"wJalrXUtnFEMI"})
        .to_string()
    }

    #[test]
    fn the_inbound_shape_is_recognised() {
        let sms = parse_inbound(&inbound("ACK 7QK3")).unwrap().unwrap();
        assert_eq!(sms.from.as_ref(), "+6591110001");
        assert_eq!(sms.body, "ACK 7QK3");
        assert_eq!(sms.to.as_deref(), Some("+6580000000"));
        assert!(sms.inbound_message_id.is_some());
        for other in ["plain text", "{\"AlarmName\":\"x\"}", "[1]", ""] {
            assert!(parse_inbound(other).is_none(), "{other}");
        }
        let bad = inbound("x").replace("+6591110001", "12");
        assert!(parse_inbound(&bad).unwrap().is_err());
    }

    #[test]
    fn commands_read_leniently() {
        let ack = |code: Option<&str>, secs: Option<u64>| Command::Ack {
            code: code.map(str::to_string),
            for_: secs.map(Duration::from_secs),
        };
        assert_eq!(parse_command("ACK"), ack(None, None));
        assert_eq!(parse_command("  ack   7qk3 "), ack(Some("7qk3"), None));
        assert_eq!(parse_command("Ack #7QK3 1h"), ack(Some("7QK3"), Some(3600)));
        assert_eq!(parse_command("ACK 30m"), ack(None, Some(1800)));
        assert_eq!(
            parse_command("ACK 7QK3 90min"),
            ack(Some("7QK3"), Some(5400))
        );
        // Four code characters ending in a unit letter are a code.
        assert_eq!(parse_command("ACK 123M"), ack(Some("123M"), None));
        assert_eq!(parse_command("ACK 1h2m"), ack(Some("1h2m"), None));
        assert_eq!(
            parse_command("res 7QK3"),
            Command::Resolve {
                code: "7QK3".into()
            }
        );
        assert_eq!(parse_command("STOP"), Command::ServiceKeyword);
        assert_eq!(parse_command("help me"), Command::ServiceKeyword);
        for bad in [
            "",
            "hello",
            "RES",
            "ACK 7QK3 1h extra",
            "ACK 7QK3 48h",
            "RES a b",
        ] {
            assert!(matches!(parse_command(bad), Command::Unknown(_)), "{bad}");
        }
    }

    #[test]
    fn mutated_messages_never_panic() {
        for input in mutations(inbound("ACK 7QK3 1h").as_bytes(), 400, 0x5E5) {
            let text = String::from_utf8_lossy(&input);
            if let Some(Ok(sms)) = parse_inbound(&text) {
                let _ = parse_command(&sms.body);
            }
        }
    }
}
