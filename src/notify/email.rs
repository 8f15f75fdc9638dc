//! The `email` channel: one multipart/alternative message (plain text, then HTML) over SMTP
//! through lettre. In comes a `Notification` with `text` (and `html`, `subject` when the
//! templates have them); out goes one mail to the channel's fixed `to` list, or to the recipient
//! person when the list is empty. When the notification carries an acknowledge link, the text
//! ends with it and the HTML gets a button (the link's GET only shows a confirmation page, so
//! mail scanners that follow links acknowledge nothing).
//!
//! The relay comes from `ChannelSettings::smtp`: `smtp+starttls://` (STARTTLS required) or
//! `smtps://` in production, `smtp://` (no TLS, no auth) for a local test server. The receipt's
//! reference is the Message-ID we set, `<delivery_id@vigil>`, so a resend after a crash is
//! recognisable as the same message. SMTP 4xx replies and connection failures are transient,
//! 5xx replies permanent.

use std::sync::OnceLock;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{
    ChannelBuilder, ChannelSettings, Notification, Notifier, NotifyError, Receipt, SmtpSettings,
    built,
};
use crate::config::{ChannelType, Failover, Form, Key, Reach};
use crate::domain::EmailAddress;

inventory::submit!(
    // Without `to`, each targeted person at their own address; then it also takes a failed
    // critical PagerDuty page, after SMS.
    ChannelType::new("email", Reach::EmailPerPersonUnless("to"))
        .keys(&[Key::optional("to", Form::Emails)])
        .limits(100_000, 200)
        .failover(Failover::Target { rank: 1 })
);

inventory::submit!(ChannelBuilder::new("email", |spec, settings, _| {
    built(EmailNotifier::new(spec.emails("to").to_vec(), settings))
}));

pub struct EmailNotifier {
    /// Fixed recipients; empty = the recipient person's own address.
    to: Vec<Mailbox>,
    from: Mailbox,
    builder: lettre::transport::smtp::AsyncSmtpTransportBuilder,
    /// Built at the first send, not in `new`: lettre's connection pool spawns its cleanup task
    /// on the Tokio runtime, and `Notifiers::build` may run where there is none (`vigil check`,
    /// plain unit tests).
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
}

/// How the relay is reached, from the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `smtp://`: no TLS, no AUTH. Local test servers only.
    Plain,
    /// `smtp+starttls://`: plain connect, then STARTTLS, required (no downgrade).
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
}

impl EmailNotifier {
    /// Fails, with a reason for the channel's timeline (never a secret's value), when no SMTP
    /// relay is configured, its URL is not one of the three forms, a credential variable is
    /// missing, or an address is one lettre cannot send to.
    pub fn new(to: Vec<EmailAddress>, settings: &ChannelSettings) -> Result<Self, String> {
        let smtp = settings
            .smtp
            .as_ref()
            .ok_or("email needs an SMTP relay, and none is configured")?;
        let to = to
            .iter()
            .map(mailbox)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("email recipient: {e}"))?;
        let from = Mailbox::new(Some("vigil".into()), address(&smtp.from)?);
        let builder = transport_builder(smtp, settings)?;
        Ok(Self {
            to,
            from,
            builder,
            transport: OnceLock::new(),
        })
    }

    fn transport(&self) -> &AsyncSmtpTransport<Tokio1Executor> {
        self.transport.get_or_init(|| self.builder.clone().build())
    }
}

fn transport_builder(
    smtp: &SmtpSettings,
    settings: &ChannelSettings,
) -> Result<lettre::transport::smtp::AsyncSmtpTransportBuilder, String> {
    let (security, host, port) = parse_smtp_url(&smtp.url)?;
    let credentials = match (&smtp.username_env, &smtp.password_env) {
        (Some(user), Some(pass)) => Some(Credentials::new(
            settings.secrets.get(user)?,
            settings.secrets.get(pass)?,
        )),
        (None, None) => None,
        _ => return Err("SMTP needs both username_env and password_env, or neither".into()),
    };
    let tls_error = |e: lettre::transport::smtp::Error| format!("SMTP TLS setup for {host}: {e}");
    let mut builder = match security {
        Security::Plain => {
            if credentials.is_some() {
                return Err(
                    "SMTP credentials are only sent over TLS; use smtp+starttls:// or smtps://"
                        .into(),
                );
            }
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        }
        Security::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host).map_err(tls_error)?
        }
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host).map_err(tls_error)?,
    }
    .port(port)
    .timeout(Some(settings.http_timeout));
    if let Some(c) = credentials {
        builder = builder.credentials(c);
    }
    Ok(builder)
}

/// Splits `smtp://host:port`, `smtp+starttls://host[:587]` or `smtps://host[:465]`. Credentials
/// in the URL are refused: they belong in environment variables, not in a string that ends up
/// in config files and logs.
fn parse_smtp_url(raw: &str) -> Result<(Security, String, u16), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("SMTP URL is not a URL: {e}"))?;
    let (security, default_port) = match url.scheme() {
        "smtp" => (Security::Plain, 25),
        "smtp+starttls" => (Security::StartTls, 587),
        "smtps" => (Security::Tls, 465),
        other => {
            return Err(format!(
                "SMTP URL scheme {other:?} is not smtp, smtp+starttls or smtps"
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("SMTP URL must not carry credentials; use username_env/password_env".into());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err("SMTP URL takes only a host and a port".into());
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("SMTP URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((security, host, url.port().unwrap_or(default_port)))
}

fn address(a: &EmailAddress) -> Result<Address, String> {
    a.as_ref()
        .parse::<Address>()
        .map_err(|e| format!("address {a} cannot be sent to: {e}"))
}

fn mailbox(a: &EmailAddress) -> Result<Mailbox, String> {
    address(a).map(|addr| Mailbox::new(None, addr))
}

#[async_trait::async_trait]
impl Notifier for EmailNotifier {
    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, msg: &Notification) -> Result<Receipt, NotifyError> {
        let to = if self.to.is_empty() {
            let person = msg
                .recipient
                .as_ref()
                .ok_or_else(|| NotifyError::Permanent {
                    reason: "email has no fixed recipients and this delivery names no person"
                        .into(),
                })?;
            let email = person
                .email
                .as_ref()
                .ok_or_else(|| NotifyError::Permanent {
                    reason: format!("person {} has no email address", person.id),
                })?;
            vec![mailbox(email).map_err(|reason| NotifyError::Permanent { reason })?]
        } else {
            self.to.clone()
        };
        let message_id = message_id(&msg.delivery_id);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject(msg))
            .message_id(Some(message_id.clone()));
        for mbox in to {
            builder = builder.to(mbox);
        }
        let (text, html) = bodies(msg);
        let email = builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| NotifyError::Permanent {
                reason: format!("email could not be built: {e}"),
            })?;
        self.transport()
            .send(email)
            .await
            .map_err(|e| classify_smtp(&e))?;
        Ok(Receipt {
            reference: Some(message_id),
        })
    }
}

/// `<delivery_id@vigil>`: stable across retries of one delivery. (Delivery ids are ULIDs; the
/// filter only guards the header's syntax.)
fn message_id(delivery_id: &str) -> String {
    let local: String = delivery_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    format!("<{local}@vigil>")
}

/// The rendered subject, or `[SEVERITY] summary`; one line either way.
fn subject(msg: &Notification) -> String {
    let raw = match &msg.subject {
        Some(s) if !s.trim().is_empty() => s.clone(),
        _ => format!("[{}] {}", msg.severity.as_str().to_uppercase(), msg.summary),
    };
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text and HTML parts, each ending with the acknowledge link when there is one.
fn bodies(msg: &Notification) -> (String, String) {
    let mut text = msg.text.trim_end().to_string();
    let mut html = match &msg.html {
        Some(h) => h.clone(),
        None => format!("<pre>{}</pre>", escape_html(&msg.text)),
    };
    if let Some(url) = &msg.ack_url {
        text.push_str(&format!("\n\nAcknowledge: {url}"));
        let button = format!(
            "<p><a href=\"{}\" style=\"display:inline-block;padding:10px 18px;\
             background:#c62828;color:#ffffff;text-decoration:none;border-radius:4px;\
             font-weight:bold\">Acknowledge</a></p>",
            escape_html(url)
        );
        match html.rfind("</body>") {
            Some(at) => html.insert_str(at, &button),
            None => html.push_str(&button),
        }
    }
    text.push('\n');
    (text, html)
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// SMTP 5xx replies and client-side refusals (no usable AUTH mechanism, an address the server
/// cannot take) are permanent; 4xx replies, connection, TLS and timeout failures transient.
fn classify_smtp(e: &lettre::transport::smtp::Error) -> NotifyError {
    if e.is_permanent() || e.is_client() {
        NotifyError::Permanent {
            reason: format!("SMTP relay refused the message: {e}"),
        }
    } else if e.is_transient() {
        NotifyError::Transient {
            retry_after: None,
            reason: format!("SMTP relay deferred the message: {e}"),
        }
    } else if e.is_timeout() {
        NotifyError::Transient {
            retry_after: None,
            reason: "SMTP relay timed out".into(),
        }
    } else {
        NotifyError::Transient {
            retry_after: None,
            reason: format!("SMTP relay unreachable: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_the_security_and_default_ports() {
        assert_eq!(
            parse_smtp_url("smtp://127.0.0.1:2525").unwrap(),
            (Security::Plain, "127.0.0.1".into(), 2525)
        );
        assert_eq!(
            parse_smtp_url("smtp+starttls://mail.example.com").unwrap(),
            (Security::StartTls, "mail.example.com".into(), 587)
        );
        assert_eq!(
            parse_smtp_url("smtps://mail.example.com").unwrap(),
            (Security::Tls, "mail.example.com".into(), 465)
        );
        for bad in [
            "http://mail.example.com",
            "smtp://user:secret@mail.example.com",
            "smtp://mail.example.com/x",
            "not a url",
        ] {
            let e = parse_smtp_url(bad).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn message_ids_are_stable_and_well_formed() {
        assert_eq!(
            message_id("01JD8Z0000000000000000000A"),
            "<01JD8Z0000000000000000000A@vigil>"
        );
        assert_eq!(message_id("a b<c>@d"), "<abcd@vigil>");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}
