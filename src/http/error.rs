//! One error type for every handler. Bad input answers a 4xx with a JSON body
//! `{"error": "<code>", "detail": "<what is wrong>"}` and is logged at info; internal failures
//! answer a generic 5xx and are logged once, with their cause, here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::pipeline::ServiceError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Boxed: a `Value` is large (larger still with serde_json's `preserve_order`, which a
    /// test dependency turns on), and every handler returns `Result<_, ApiError>`.
    pub extra: Option<Box<serde_json::Value>>,
    /// Sent as `Retry-After` (with a 503).
    pub retry_after: Option<axum::http::HeaderValue>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extra: None,
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    pub fn with(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(Box::new(extra));
        self
    }

    pub fn retry_after(mut self, value: axum::http::HeaderValue) -> Self {
        self.retry_after = Some(value);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error.message = %self.detail, "Request failed.");
        } else {
            tracing::info!(status = self.status.as_u16(), error = self.code, detail = %self.detail, "Request refused.");
        }
        let mut body = json!({ "error": self.code, "detail": self.detail });
        if let (Some(extra), Some(obj)) = (self.extra, body.as_object_mut())
            && let Some(map) = extra.as_object()
        {
            for (k, v) in map {
                obj.insert(k.clone(), v.clone());
            }
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(v) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // The store being unreachable is the one 5xx we answer on ingest: the sender (SNS, the
        // bot) retries, so nothing accepted is lost.
        Self::unavailable(format!("store unavailable, retry later ({e})"))
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound => Self::not_found("no incident with that id"),
            ServiceError::AlreadyResolved => Self::new(
                StatusCode::CONFLICT,
                "already_resolved",
                "the incident is already resolved",
            ),
            ServiceError::Contention => Self::unavailable("too much contention; retry"),
            ServiceError::MissingPolicy(p) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("policy {p} missing from the loaded routing"),
            ),
            ServiceError::Store(s) => s.into(),
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        if let Some(t) = super::server::BodyTimedOut::caused(&r) {
            Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("{t} (VIGIL_BODY_TIMEOUT)"),
            )
        } else if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "request body over the {} KiB limit",
                    super::BODY_LIMIT / 1024
                ),
            )
        } else {
            Self::bad_request(format!(
                "could not read the request body: {}",
                r.body_text()
            ))
        }
    }
}
