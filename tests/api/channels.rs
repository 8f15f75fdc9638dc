//! The sms, phone and email channels against real counterparts: SMS through `aws-sdk-sns` to a
//! local moto_server, e-mail through lettre to a local aiosmtpd writing a Maildir (both started
//! by `scripts/test`), and the voice API through its SDK to a wiremock fake speaking the AWS
//! JSON protocol (there is no emulator for it). Error paths moto cannot produce (it accepts every
//! E.164 number) use a wiremock fake answering SNS's XML errors.
//!
//! Tests share one moto and one Maildir and run in parallel, so each uses its own phone number,
//! summary and delivery id and only looks at its own data.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use vigil::domain::{EmailAddress, IncidentId, PhoneNumber, Severity};
use vigil::incident::{IncidentStatus, NotifyKind};
use vigil::notify::email::EmailNotifier;
use vigil::notify::phone::PhoneNotifier;
use vigil::notify::sms::SmsNotifier;
use vigil::notify::{
    ChannelSettings, Notification, Notifier, NotifyError, Recipient, SecretSource, SmtpSettings,
};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACK_URL: &str = "https://vigil.example.com/v1/ack/01JD8Z3Q4R5S6T7V8W9X0YZABC?t=Zm9vYmFy";

/// An emulator's address from `scripts/test`; fails the test (never skips it) when missing.
pub(crate) fn emulator(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: the channel tests need the local emulators; \
             run the suite with scripts/test, which starts them"
        )
    })
}

/// A fresh E.164 number per test, so parallel tests can find their own SMS in moto.
pub(crate) fn unique_phone() -> PhoneNumber {
    let n: u64 = rand::random::<u64>() % 10_000_000;
    PhoneNumber::parse(&format!("+659{n:07}")).unwrap()
}

fn unique() -> String {
    ulid::Ulid::new().to_string()
}

fn person(phone: Option<PhoneNumber>, email: Option<&str>) -> Recipient {
    Recipient {
        id: "alice".into(),
        name: "Alice Tan".into(),
        phone,
        email: email.map(|e| EmailAddress::parse(e).unwrap()),
        slack: None,
    }
}

fn notification(summary: &str, text: &str, recipient: Option<Recipient>) -> Notification {
    Notification {
        delivery_id: unique(),
        incident: IncidentId::new(chrono::Utc::now()),
        kind: NotifyKind::Trigger,
        status: IncidentStatus::Triggered,
        severity: Severity::Critical,
        summary: summary.into(),
        description: None,
        labels: Default::default(),
        channel: "test".into(),
        recipient,
        people: Vec::new(),
        step: Some((0, 0)),
        count: 1,
        opened_at: chrono::Utc::now(),
        by: None,
        link: None,
        attempt: 1,
        now: chrono::Utc::now(),
        text: text.into(),
        subject: None,
        html: None,
        ack_url: Some(ACK_URL.into()),
        reference: None,
        drill: false,
    }
}

/// AWS settings with dummy static credentials (emulators accept any, the SDK only signs).
pub(crate) async fn aws_settings() -> ChannelSettings {
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("ap-southeast-1"))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .load()
        .await;
    ChannelSettings {
        aws: Some(aws),
        http_timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    }
}

async fn sms_to(endpoint: &str) -> SmsNotifier {
    let mut settings = aws_settings().await;
    settings.endpoints.insert("sms".into(), endpoint.into());
    settings.sms_sender_id = Some("Vigil".into());
    SmsNotifier::new(&settings).unwrap()
}

/// The SMS moto stored for `phone`: (message_id, message).
pub(crate) async fn moto_sms(moto: &str, phone: &PhoneNumber) -> Vec<(String, String)> {
    let data: Value = reqwest::get(format!("{moto}/moto-api/data.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    data["sns"]["SMS"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["phone_number"] == phone.as_ref())
        .map(|m| {
            (
                m["message_id"].as_str().unwrap_or_default().to_string(),
                m["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn assert_no_leak(err: &NotifyError, phone: &PhoneNumber) {
    let text = format!("{err} {err:?}");
    let digits = phone.as_ref().trim_start_matches('+');
    assert!(!text.contains(digits), "full number in error: {text}");
    assert!(!text.contains("testing"), "credential in error: {text}");
}

#[tokio::test]
async fn sms_goes_through_sns_with_the_ack_link() {
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let sms = sms_to(&moto).await;
    let phone = unique_phone();
    let msg = notification(
        "db down",
        "CRITICAL db-primary down",
        Some(person(Some(phone.clone()), None)),
    );

    let receipt = sms.send(&msg).await.unwrap();

    let stored = moto_sms(&moto, &phone).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (message_id, text) = &stored[0];
    assert_eq!(text, &format!("CRITICAL db-primary down Ack: {ACK_URL}"));
    assert!(text.chars().count() <= 160, "{}", text.chars().count());
    assert_eq!(receipt.reference.as_deref(), Some(message_id.as_str()));
}

#[tokio::test]
async fn a_long_sms_is_cut_to_one_gsm_part_keeping_the_whole_link() {
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let sms = sms_to(&moto).await;
    let phone = unique_phone();
    let long = format!(
        "🔥 CRITICAL eks-prod-apse1-node-cpu-high “ALARM” – {}",
        "Node CPU above 85 percent for 15 minutes on every node of the pool. ".repeat(6)
    );
    let msg = notification("cpu high", &long, Some(person(Some(phone.clone()), None)));

    sms.send(&msg).await.unwrap();

    let stored = moto_sms(&moto, &phone).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let text = &stored[0].1;
    assert!(
        text.chars().count() <= 160,
        "{} chars: {text}",
        text.chars().count()
    );
    assert!(
        text.starts_with("CRITICAL eks-prod-apse1-node-cpu-high \"ALARM\" - Node CPU"),
        "{text}"
    );
    assert!(text.ends_with(&format!("... Ack: {ACK_URL}")), "{text}");
    assert!(text.is_ascii(), "non-GSM characters left: {text}");
}

#[tokio::test]
async fn sms_to_a_person_without_a_phone_is_permanent_and_sends_nothing() {
    let moto = emulator("VIGIL_TEST_MOTO_URL");
    let sms = sms_to(&moto).await;
    let msg = notification(
        "db down",
        "db down",
        Some(person(None, Some("a@example.com"))),
    );
    match sms.send(&msg).await {
        Err(NotifyError::Permanent { reason }) => {
            assert!(
                reason.contains("alice") && reason.contains("no phone"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// SNS's XML error answer (AWS Query protocol).
fn sns_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "text/xml")
        .set_body_string(format!(
            "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\
             <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>5f8e3c1a-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
        ))
}

/// moto accepts every number vigil's `PhoneNumber` can hold, so the refusal of a number SNS
/// considers invalid comes from a fake answering exactly what SNS answers.
#[tokio::test]
async fn an_invalid_number_is_permanent_and_the_number_stays_out_of_the_error() {
    let fake = MockServer::start().await;
    let phone = unique_phone();
    Mock::given(method("POST"))
        .respond_with(sns_error(
            400,
            "InvalidParameter",
            &format!(
                "Invalid parameter: PhoneNumber Reason: {} is not valid to publish to",
                phone.as_ref()
            ),
        ))
        .expect(1) // SDK retries are off: one request, one answer
        .mount(&fake)
        .await;
    let sms = sms_to(&fake.uri()).await;
    let err = sms
        .send(&notification(
            "x",
            "x",
            Some(person(Some(phone.clone()), None)),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Permanent { .. }), "{err:?}");
    assert!(err.to_string().contains("InvalidParameter"), "{err}");
    assert!(err.to_string().contains(&phone.redacted()), "{err}");
    assert_no_leak(&err, &phone);
}

#[tokio::test]
async fn sns_throttling_and_server_errors_are_transient() {
    for (status, code) in [
        (400, "Throttling"),
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
    ] {
        let fake = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(sns_error(status, code, "try later"))
            .expect(1)
            .mount(&fake)
            .await;
        let sms = sms_to(&fake.uri()).await;
        let phone = unique_phone();
        let err = sms
            .send(&notification(
                "x",
                "x",
                Some(person(Some(phone.clone()), None)),
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(err, NotifyError::Transient { .. }),
            "{code}: {err:?}"
        );
        assert_no_leak(&err, &phone);
    }
}

#[tokio::test]
async fn sns_unreachable_is_transient() {
    let closed = closed_port();
    let sms = sms_to(&format!("http://127.0.0.1:{closed}")).await;
    let phone = unique_phone();
    let err = sms
        .send(&notification(
            "x",
            "x",
            Some(person(Some(phone.clone()), None)),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Transient { .. }), "{err:?}");
    assert_no_leak(&err, &phone);
}

#[test]
fn sms_and_phone_without_aws_configuration_are_unavailable_with_a_reason() {
    let settings = ChannelSettings::default();
    let sms = SmsNotifier::new(&settings).err().unwrap();
    assert!(sms.contains("AWS"), "{sms}");
    let phone = PhoneNotifier::new(&settings).err().unwrap();
    assert!(phone.contains("AWS"), "{phone}");
}

#[tokio::test]
async fn notifiers_build_the_three_channels_only_when_their_settings_exist() {
    let dir = tempfile::tempdir().unwrap();
    crate::helpers::webhook_policy("http://127.0.0.1:9")(dir.path());
    let policy = vigil::config::load_dir(dir.path()).unwrap();
    let http = reqwest::Client::new();

    let bare = vigil::notify::Notifiers::build(&policy, &ChannelSettings::default(), &http);
    let sms = bare.get("sms").err().unwrap();
    assert!(sms.contains("no AWS configuration"), "{sms}");
    let email = bare.get("email").err().unwrap();
    assert!(email.contains("SMTP"), "{email}");

    let mut settings = aws_settings().await;
    settings.smtp = smtp_settings("smtp://127.0.0.1:2525".into()).smtp;
    let full = vigil::notify::Notifiers::build(&policy, &settings, &http);
    assert_eq!(full.get("sms").unwrap().kind(), "sms");
    assert_eq!(full.get("email").unwrap().kind(), "email");
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn phone_to(fake: &MockServer) -> PhoneNotifier {
    let mut settings = aws_settings().await;
    settings.endpoints.insert("phone".into(), fake.uri());
    settings.voice_origination_identity = Some("pool-0123456789abcdef".into());
    PhoneNotifier::new(&settings).unwrap()
}

#[tokio::test]
async fn a_voice_call_names_the_destination_and_speaks_severity_and_summary() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header(
            "x-amz-target",
            "PinpointSMSVoiceV2.SendVoiceMessage",
        ))
        .and(header("content-type", "application/x-amz-json-1.0"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.0")
                .set_body_string(r#"{"MessageId":"voice-0001"}"#),
        )
        .expect(1)
        .mount(&fake)
        .await;
    let phone = phone_to(&fake).await;
    let number = unique_phone();
    let msg = notification(
        "eks_prod node CPU high",
        "ignored by voice",
        Some(person(Some(number.clone()), None)),
    );

    let receipt = phone.send(&msg).await.unwrap();

    assert_eq!(receipt.reference.as_deref(), Some("voice-0001"));
    let requests = fake.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["DestinationPhoneNumber"], number.as_ref());
    assert_eq!(body["OriginationIdentity"], "pool-0123456789abcdef");
    assert_eq!(body["MessageBodyTextType"], "TEXT");
    let spoken = body["MessageBody"].as_str().unwrap();
    assert!(spoken.contains("critical alert"), "{spoken}");
    assert!(spoken.contains("eks prod node CPU high"), "{spoken}");
    assert!(
        !spoken.contains("https://"),
        "links are not spoken: {spoken}"
    );
}

#[tokio::test]
async fn voice_api_errors_are_classified_and_hide_the_number() {
    for (status, code, transient) in [
        (500, "InternalServerException", true),
        (400, "ThrottlingException", true),
        (400, "ValidationException", false),
        (403, "AccessDeniedException", false),
    ] {
        let fake = MockServer::start().await;
        let number = unique_phone();
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("content-type", "application/x-amz-json-1.0")
                    .set_body_json(serde_json::json!({
                        "__type": code,
                        "message": format!("DestinationPhoneNumber {} rejected", number.as_ref()),
                    })),
            )
            .expect(1)
            .mount(&fake)
            .await;
        let phone = phone_to(&fake).await;
        let err = phone
            .send(&notification(
                "x",
                "x",
                Some(person(Some(number.clone()), None)),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            matches!(err, NotifyError::Transient { .. }),
            transient,
            "{status} {code}: {err:?}"
        );
        assert!(err.to_string().contains(code), "{err}");
        assert_no_leak(&err, &number);
    }
}

// ---- email -------------------------------------------------------------------------------

fn smtp_settings(url: String) -> ChannelSettings {
    ChannelSettings {
        smtp: Some(SmtpSettings {
            url,
            from: EmailAddress::parse("vigil@example.com").unwrap(),
            username_env: None,
            password_env: None,
        }),
        http_timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    }
}

fn local_smtp() -> ChannelSettings {
    smtp_settings(format!("smtp://{}", emulator("VIGIL_TEST_SMTP_ADDR")))
}

/// The raw message aiosmtpd stored with this Message-ID.
fn maildir_message(message_id: &str) -> String {
    let new = PathBuf::from(emulator("VIGIL_TEST_MAILDIR")).join("new");
    for entry in std::fs::read_dir(&new).unwrap_or_else(|e| panic!("{}: {e}", new.display())) {
        let raw = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if raw.contains(&format!("Message-ID: {message_id}")) {
            return raw;
        }
    }
    panic!("no message {message_id} in {}", new.display());
}

/// The decoded body of the part with this content type in a multipart message.
fn mime_part(raw: &str, content_type: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let boundary = raw
        .split("boundary=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a multipart message");
    for part in raw.split(&format!("--{boundary}")) {
        let Some((headers, body)) = part.split_once("\n\n") else {
            continue;
        };
        if !headers.contains(&format!("Content-Type: {content_type}")) {
            continue;
        }
        let body = body.trim_end();
        if headers.contains("Content-Transfer-Encoding: base64") {
            use base64::Engine as _;
            let b64: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            return String::from_utf8(bytes).unwrap();
        }
        if headers.contains("Content-Transfer-Encoding: quoted-printable") {
            return decode_quoted_printable(body);
        }
        return body.to_string();
    }
    panic!("no {content_type} part in:\n{raw}");
}

fn decode_quoted_printable(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = joined
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let (b'=', Some(b)) = (bytes[i], hex) {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server_with_both_parts_and_the_ack_link() {
    let email = EmailNotifier::new(
        vec![EmailAddress::parse("ops@example.com").unwrap()],
        &local_smtp(),
    )
    .unwrap();
    let summary = format!("db-primary down {}", unique());
    let msg = notification(
        &summary,
        "Database db-primary is down.\nSince 02:15 SGT <now>.",
        None,
    );

    let receipt = email.send(&msg).await.unwrap();

    let message_id = format!("<{}@vigil>", msg.delivery_id);
    assert_eq!(receipt.reference.as_deref(), Some(message_id.as_str()));
    let raw = maildir_message(&message_id);
    assert!(
        raw.contains(&format!("Subject: [CRITICAL] {summary}")),
        "{raw}"
    );
    assert!(raw.contains("X-RcptTo: ops@example.com"), "{raw}");
    assert!(raw.contains("multipart/alternative"), "{raw}");
    let text = mime_part(&raw, "text/plain");
    assert!(text.starts_with("Database db-primary is down."), "{text}");
    assert!(
        text.trim_end()
            .ends_with(&format!("Acknowledge: {ACK_URL}")),
        "{text}"
    );
    let html = mime_part(&raw, "text/html");
    assert!(
        html.contains("<pre>Database db-primary is down.\nSince 02:15 SGT &lt;now&gt;.</pre>"),
        "{html}"
    );
    assert!(html.contains(&format!("href=\"{ACK_URL}\"")), "{html}");
    assert!(html.contains(">Acknowledge</a>"), "{html}");
}

#[tokio::test]
async fn email_without_a_list_goes_to_the_person_and_uses_the_rendered_subject_and_html() {
    let email = EmailNotifier::new(Vec::new(), &local_smtp()).unwrap();
    let mut msg = notification(
        "x",
        "plain body",
        Some(person(None, Some("alice@example.com"))),
    );
    let subject = format!("[HIGH] trading halted {}", unique());
    msg.subject = Some(subject.clone());
    msg.html = Some("<html><body><h1>Trading halted</h1></body></html>".into());
    msg.ack_url = None;

    email.send(&msg).await.unwrap();

    let raw = maildir_message(&format!("<{}@vigil>", msg.delivery_id));
    assert!(raw.contains(&format!("Subject: {subject}")), "{raw}");
    assert!(raw.contains("X-RcptTo: alice@example.com"), "{raw}");
    assert_eq!(mime_part(&raw, "text/plain").trim_end(), "plain body");
    assert_eq!(
        mime_part(&raw, "text/html"),
        "<html><body><h1>Trading halted</h1></body></html>"
    );
}

#[tokio::test]
async fn email_to_a_person_without_an_address_is_permanent() {
    let email = EmailNotifier::new(Vec::new(), &local_smtp()).unwrap();
    let msg = notification("x", "x", Some(person(Some(unique_phone()), None)));
    match email.send(&msg).await {
        Err(NotifyError::Permanent { reason }) => {
            assert!(
                reason.contains("alice") && reason.contains("no email"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn smtp_server_unreachable_is_transient_and_no_secret_is_in_the_error() {
    let closed = closed_port();
    let plain = EmailNotifier::new(
        vec![EmailAddress::parse("ops@example.com").unwrap()],
        &smtp_settings(format!("smtp://127.0.0.1:{closed}")),
    )
    .unwrap();
    let err = plain.send(&notification("x", "x", None)).await.unwrap_err();
    assert!(matches!(err, NotifyError::Transient { .. }), "{err:?}");

    let mut settings = smtp_settings(format!("smtp+starttls://127.0.0.1:{closed}"));
    let smtp = settings.smtp.as_mut().unwrap();
    smtp.username_env = Some("TEST_SMTP_USER".into());
    smtp.password_env = Some("TEST_SMTP_PASSWORD".into());
    settings.secrets = SecretSource::from_map(HashMap::from([
        ("TEST_SMTP_USER".to_string(), "vigil-user".to_string()),
        (
            "TEST_SMTP_PASSWORD".to_string(),
            "s3cret-smtp-pass".to_string(),
        ),
    ]));
    let tls = EmailNotifier::new(
        vec![EmailAddress::parse("ops@example.com").unwrap()],
        &settings,
    )
    .unwrap();
    let err = tls.send(&notification("x", "x", None)).await.unwrap_err();
    assert!(matches!(err, NotifyError::Transient { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("s3cret-smtp-pass") && !text.contains("vigil-user"),
        "{text}"
    );
}

#[test]
fn email_settings_that_cannot_work_are_refused_without_naming_secrets() {
    assert!(
        EmailNotifier::new(Vec::new(), &ChannelSettings::default())
            .err()
            .unwrap()
            .contains("SMTP")
    );
    // Credentials over a plain connection would travel in clear text.
    let mut settings = smtp_settings("smtp://127.0.0.1:2525".into());
    let smtp = settings.smtp.as_mut().unwrap();
    smtp.username_env = Some("U".into());
    smtp.password_env = Some("P".into());
    settings.secrets = SecretSource::from_map(HashMap::from([
        ("U".to_string(), "user".to_string()),
        ("P".to_string(), "hunter2-password".to_string()),
    ]));
    let reason = EmailNotifier::new(Vec::new(), &settings).err().unwrap();
    assert!(
        reason.contains("TLS") && !reason.contains("hunter2"),
        "{reason}"
    );
    // A missing secret names the variable, not a value.
    settings.smtp.as_mut().unwrap().url = "smtps://mail.example.com".into();
    settings.secrets = SecretSource::from_map(HashMap::new());
    let reason = EmailNotifier::new(Vec::new(), &settings).err().unwrap();
    assert!(
        reason.contains('U') && reason.contains("not set"),
        "{reason}"
    );
}
