//! Signed acknowledge links (`/v1/ack/{token}`), sent in emails and SMS. A GET shows what the
//! link would acknowledge and a button; it changes nothing, because mail scanners and link
//! previews follow links. Only the POST from that page acknowledges. Forged or expired links get
//! 401 and change nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use crate::ack::AckClaim;
use crate::incident::transition::AckResult;
use crate::incident::{Actor, Origin};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>vigil: {t}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\"><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (status, Html(html)).into_response()
}

fn check(s: &AppState, token: &str) -> Result<AckClaim, Box<Response>> {
    let Some(signer) = &s.ack else {
        return Err(Box::new(page(
            StatusCode::NOT_FOUND,
            "Links are not enabled",
            "<p>This vigil does not issue acknowledge links.</p>",
        )));
    };
    signer.verify(token, s.clock.now()).map_err(|e| {
        tracing::info!(reason = %e, "Acknowledge link refused.");
        Box::new(page(
            StatusCode::UNAUTHORIZED,
            "This link cannot be used",
            &format!("<p>{}.</p>", escape(&e.to_string())),
        ))
    })
}

pub async fn show(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let claim = match check(&s, &token) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let inc = match s.service.incident(claim.incident).await {
        Ok(Some(i)) => i,
        Ok(None) => return page(StatusCode::NOT_FOUND, "Incident not found", ""),
        Err(_) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again in a moment",
                "<p>The store is unavailable.</p>",
            );
        }
    };
    let body = format!(
        "<p><b>[{sev}]</b> {summary}</p><p>Status: {status}</p>\
         <form method=\"post\"><button type=\"submit\" style=\"padding:8px 16px\">Acknowledge as {who}</button></form>",
        sev = inc.severity.as_str().to_uppercase(),
        summary = escape(&inc.summary),
        status = inc.status.as_str(),
        who = escape(&claim.person),
    );
    page(StatusCode::OK, "Acknowledge this incident?", &body)
}

pub async fn confirm(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let claim = match check(&s, &token) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let actor = Actor {
        who: claim.person.clone(),
        origin: Origin::EmailLink,
    };
    match s.service.acknowledge(claim.incident, actor, None).await {
        Ok((AckResult::Acknowledged, inc)) => page(
            StatusCode::OK,
            "Acknowledged",
            &format!(
                "<p>{}</p><p>Escalation has stopped.</p>",
                escape(&inc.summary)
            ),
        ),
        Ok((AckResult::AlreadyAcknowledged, _)) => page(StatusCode::OK, "Already acknowledged", ""),
        Ok((AckResult::AlreadyResolved, _)) => page(StatusCode::CONFLICT, "Already resolved", ""),
        Err(crate::pipeline::ServiceError::NotFound) => {
            page(StatusCode::NOT_FOUND, "Incident not found", "")
        }
        Err(e) => {
            tracing::error!(error.message = %e, "Acknowledge link failed.");
            page(StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment", "")
        }
    }
}
