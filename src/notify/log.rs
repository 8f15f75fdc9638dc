//! The `log` channel: writes one structured log line per notification. Useful as an audit trail
//! and as a safe default where no provider is configured. Names no contact details.

use std::sync::Arc;

use super::{ChannelBuilder, Notification, Notifier, NotifyError, Receipt};
use crate::config::{ChannelType, Reach};

inventory::submit!(ChannelType::new("log", Reach::Nobody));

inventory::submit!(ChannelBuilder::new("log", |_, _, _| Ok(Arc::new(
    LogNotifier
))));

pub struct LogNotifier;

#[async_trait::async_trait]
impl Notifier for LogNotifier {
    fn kind(&self) -> &'static str {
        "log"
    }

    async fn send(&self, msg: &Notification) -> Result<Receipt, NotifyError> {
        tracing::info!(
            incident.id = %msg.incident,
            channel = %msg.channel,
            kind = msg.kind.as_str(),
            severity = %msg.severity,
            recipient = msg.recipient.as_ref().map(|r| r.id.as_str()),
            summary = %msg.summary,
            "Notification."
        );
        Ok(Receipt::default())
    }
}
