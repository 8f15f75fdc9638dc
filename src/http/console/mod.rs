//! The operators' console (issue 14): server-rendered HTML pages at `/` to see, acknowledge and
//! silence incidents, see who is on call and add overrides, manage silences and read health.
//!
//! In: a browser with a session cookie ([`session`]); out: the same calls the JSON API makes
//! (`incidents::query_incidents`, `incidents::acknowledge`, `operations::add_silence`, …), with
//! the signed-in person as the actor and [`Origin::Web`](crate::incident::Origin::Web) as the way.
//!
//! Safe by default: templates (`templates/console/`, embedded with `include_str!`) are rendered
//! by minijinja with autoescape for `.html`; no inline script or handler anywhere, and every
//! answer carries a `Content-Security-Policy` that forbids them; every POST is a form carrying a
//! `csrf` field and answered `303` back to a page, so every action works without JavaScript.
//! `console.js` only adds live updates (a poll of `/console/incidents`, a small HTML fragment)
//! and local times.

mod pages;
pub mod session;
mod words;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;

use super::AppState;
use super::error::ApiError;
use session::{Keys, Session};

/// Every console answer: no script but vigil's own files, no inline script or style, no framing,
/// forms only back to vigil.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's keys and templates, shared by its handlers.
pub struct Console {
    pub keys: Keys,
    templates: Environment<'static>,
}

const TEMPLATES: [(&str, &str); 10] = [
    (
        "base.html",
        include_str!("../../../templates/console/base.html"),
    ),
    (
        "sign_in.html",
        include_str!("../../../templates/console/sign_in.html"),
    ),
    (
        "home.html",
        include_str!("../../../templates/console/home.html"),
    ),
    (
        "rows.html",
        include_str!("../../../templates/console/rows.html"),
    ),
    (
        "incident.html",
        include_str!("../../../templates/console/incident.html"),
    ),
    (
        "silence_new.html",
        include_str!("../../../templates/console/silence_new.html"),
    ),
    (
        "silences.html",
        include_str!("../../../templates/console/silences.html"),
    ),
    (
        "silence_form.html",
        include_str!("../../../templates/console/silence_form.html"),
    ),
    (
        "oncall.html",
        include_str!("../../../templates/console/oncall.html"),
    ),
    (
        "health.html",
        include_str!("../../../templates/console/health.html"),
    ),
];
const ERROR_TEMPLATE: &str = include_str!("../../../templates/console/error.html");
const CSS: &str = include_str!("../../../templates/console/console.css");
const JS: &str = include_str!("../../../templates/console/console.js");

impl Console {
    /// The console for these settings. Without `VIGIL_CONSOLE_KEY` the key is random for this
    /// process (warned): sessions then end at a restart and another replica refuses them.
    pub fn new(settings: &crate::settings::Settings) -> Self {
        let key = match &settings.console_key {
            Some(k) => k.expose().as_bytes().to_vec(),
            None => {
                if settings.operator_tokens.iter().any(|t| t.person.is_some()) {
                    tracing::warn!(
                        "VIGIL_CONSOLE_KEY is not set: console sessions use a random key of this process, end at a restart and are refused by other replicas."
                    );
                }
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        let https = settings
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        let mut templates = Environment::new();
        for (name, text) in TEMPLATES
            .into_iter()
            .chain([("error.html", ERROR_TEMPLATE)])
        {
            // The templates are part of the binary and checked by the tests: a broken one is a
            // build defect, not input.
            templates
                .add_template(name, text)
                .expect("console templates compile");
        }
        Self {
            keys: Keys::new(key, settings.console_session_ttl, https),
            templates,
        }
    }

    /// Renders `name` with `ctx`: an HTML answer with `status`.
    fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
        {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(template = name, error.message = %e, "Console page failed to render.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render",
                )
                    .into_response()
            }
        }
    }

    /// An error page (status and message of an [`ApiError`]), linking back to `back`.
    fn error(&self, e: &ApiError, back: &str) -> Response {
        if e.status.is_server_error() {
            tracing::error!(status = e.status.as_u16(), error.message = %e.detail, "Console request failed.");
        }
        let detail = if e.status.is_server_error() {
            "vigil could not do this right now; try again in a moment"
        } else {
            e.detail.as_str()
        };
        self.render(
            e.status,
            "error.html",
            minijinja::context! { status => e.status.as_u16(), detail, back },
        )
    }
}

/// The console's routes, merged into the API's router.
pub fn routes(state: &AppState) -> Router<AppState> {
    let console = Arc::new(Console::new(&state.settings));
    Router::new()
        .route("/", get(pages::home))
        .route("/resolved", get(pages::resolved))
        .route("/console/incidents", get(pages::rows))
        .route("/sign-in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/sign-out", post(pages::sign_out))
        .route("/incidents/{id}", get(pages::incident))
        .route("/incidents/{id}/ack", post(pages::ack))
        .route("/incidents/{id}/resolve", post(pages::resolve))
        .route("/incidents/{id}/silence", get(pages::silence_form))
        .route(
            "/silences",
            get(pages::silences).post(pages::create_silence),
        )
        .route("/silences/{id}/expire", post(pages::expire_silence))
        .route("/oncall", get(pages::oncall))
        .route("/overrides", post(pages::create_override))
        .route("/health", get(pages::health))
        .route("/static/console.css", get(css))
        .route("/static/console.js", get(js))
        .layer(axum::Extension(console))
        .layer(axum::middleware::map_response(secure_headers))
}

async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

/// Static files change only with the binary: cached for a day.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400, immutable"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn console(parts: &Parts) -> Arc<Console> {
    parts
        .extensions
        .get::<Arc<Console>>()
        .cloned()
        // `routes` layers the extension over every console route.
        .expect("console routes carry the Console extension")
}

/// The session of a request, if its cookie is valid, it was not signed out, and its person
/// still has an operator token. A store that cannot say whether it was signed out: 503.
async fn session_of(parts: &Parts, c: &Console, s: &AppState) -> Result<Option<Session>, Response> {
    let Some(session) = session::cookie(&parts.headers, session::COOKIE)
        .and_then(|value| c.keys.open(value, s.clock.now()))
        .filter(|session| {
            s.settings
                .operator_tokens
                .iter()
                .any(|t| t.person.as_deref() == Some(session.person.as_str()))
        })
    else {
        return Ok(None);
    };
    match s.service.session_ended(&session.nonce).await {
        Ok(false) => Ok(Some(session)),
        Ok(true) => Ok(None),
        Err(e) => Err(c.error(&ApiError::from(e), "/")),
    }
}

/// A signed-in person viewing a page; without a session, a redirect to the sign-in page.
pub struct Viewer {
    pub session: Session,
    pub csrf: String,
    pub console: Arc<Console>,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        let c = console(parts);
        match session_of(parts, &c, s).await? {
            Some(session) => Ok(Viewer {
                csrf: c.keys.csrf(&session),
                session,
                console: c,
            }),
            None => Err(Redirect::to("/sign-in").into_response()),
        }
    }
}

/// A form posted by a signed-in person: refused with 401 before its body is read when there is
/// no valid session cookie, and with 403 when its `csrf` field is not the session's.
pub struct Posted {
    pub session: Session,
    pub console: Arc<Console>,
    /// The form's fields (the last value of a repeated name); `csrf` removed.
    pub fields: BTreeMap<String, String>,
}

impl Posted {
    /// A field, trimmed; `None` when absent or blank.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// The fields of a urlencoded form body.
fn form_fields(body: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let c = console(&parts);
        let Some(session) = session_of(&parts, &c, s).await? else {
            let e = ApiError::unauthorized("not signed in (or the session has ended)");
            return Err(c.error(&e, "/sign-in"));
        };
        let req = Request::from_parts(parts, body);
        let body = Bytes::from_request(req, s)
            .await
            .map_err(|e| c.error(&ApiError::bad_request(e.body_text()), "/"))?;
        let mut fields = form_fields(&body);
        let csrf = fields.remove("csrf").unwrap_or_default();
        if !c.keys.csrf_matches(&session, &csrf) {
            let e = ApiError::forbidden("the form's csrf field is missing or not this session's");
            return Err(c.error(&e, "/"));
        }
        Ok(Posted {
            session,
            console: c,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_carry_no_inline_script_style_or_handler() {
        let inline_handler = regex::Regex::new(r"(?i)\son[a-z]+\s*=").unwrap();
        for (name, text) in TEMPLATES
            .into_iter()
            .chain([("error.html", ERROR_TEMPLATE)])
        {
            assert!(
                !inline_handler.is_match(text),
                "{name}: an inline event handler"
            );
            assert!(!text.contains("style="), "{name}: an inline style");
            assert!(!text.contains("javascript:"), "{name}: a javascript: URL");
            for (at, _) in text.match_indices("<script") {
                assert!(
                    text[at..].starts_with("<script src=\"/static/"),
                    "{name}: inline script"
                );
            }
        }
    }

    #[test]
    fn every_post_form_carries_the_csrf_field() {
        for (name, text) in TEMPLATES {
            for form in text.split("<form").skip(1) {
                let form = &form[..form.find("</form>").unwrap_or(form.len())];
                if form.contains("method=\"post\"") {
                    assert!(
                        form.contains("name=\"csrf\""),
                        "{name}: a POST form without csrf"
                    );
                }
            }
        }
    }
}
