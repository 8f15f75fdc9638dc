//! Ingest, SNS transport: the body of an SNS HTTP(S) delivery in, a verified [`SnsEnvelope`] out.
//!
//! Comes in: the POST body bytes, parsed as JSON whatever the Content-Type (SNS sends
//! `text/plain`). Goes out: an [`SnsEnvelope`] whose [`SnsMessage`] is a `SubscriptionConfirmation`,
//! a `Notification` (its fields are handed to `ingest::sns_notification`) or an
//! `UnsubscribeConfirmation`, after [`verify`] has checked its signature (SignatureVersion 1 =
//! SHA1withRSA, 2 = SHA256withRSA) against a certificate fetched only from a trusted
//! `https://sns.<region>.amazonaws.com/....pem` URL (or, for tests only, an explicitly configured
//! prefix) and cached by [`CertCache`].
//!
//! Headers (`x-amz-sns-message-type`, ...) are not signed, so nothing here reads them: the `Type`
//! inside the signed body is authoritative.
//!
//! Four rooms: [`envelope`] (what SNS sent), [`verify`] (its signature), [`certs`] (which
//! certificates are trusted, fetched and cached) and [`confirm`] (confirming a subscription).

mod certs;
mod confirm;
mod envelope;
#[cfg(test)]
mod testkit;
mod verify;

pub use certs::*;
pub use confirm::*;
pub use envelope::*;
pub use verify::*;
