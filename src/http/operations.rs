//! The operator API on the desk's operations (DESIGN §8): on-call overrides, who is on call,
//! silences, and heartbeat beats. Overrides and silences are checked by the policy's own checks
//! (`Policy::check_override`, `Silence::parse_api`) and kept as store records
//! (`incident::extras`), so every replica sees them.
//!
//! Bodies are JSON objects read field by field, so every 400 names the field at fault; unknown
//! fields are refused.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth::{Operator, Token};
use super::error::ApiError;
use crate::config::{MAX_API_SILENCE_REGEXES, MAX_API_SILENCES, Override, Silence, SilenceSpec};
use crate::pipeline::heartbeat::rfc3339;

type JsonResult = Result<(StatusCode, Json<Value>), ApiError>;

/// A JSON object body, taken apart one field at a time.
pub(super) struct Fields(Map<String, Value>);

impl Fields {
    pub(super) fn parse(body: Result<Bytes, BytesRejection>) -> Result<Self, ApiError> {
        let body = body?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::bad_request("body: expected a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!("body: {e}"))),
        }
    }

    /// An optional field; `null` counts as absent.
    pub(super) fn optional<T: DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| ApiError::bad_request(format!("{name}: {e}"))),
        }
    }

    pub(super) fn required<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, ApiError> {
        self.optional(name)?
            .ok_or_else(|| ApiError::bad_request(format!("{name}: required")))
    }

    pub(super) fn optional_time(&mut self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.optional::<String>(name)?
            .map(|raw| parse_time(name, &raw))
            .transpose()
    }

    pub(super) fn required_time(&mut self, name: &str) -> Result<DateTime<Utc>, ApiError> {
        self.optional_time(name)?
            .ok_or_else(|| ApiError::bad_request(format!("{name}: required")))
    }

    /// Refuses whatever fields are left.
    pub(super) fn finish(self, expected: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(ApiError::bad_request(format!(
                "{k}: unknown field (expected {})",
                expected.join(", ")
            ))),
        }
    }
}

pub(super) fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{name}: {raw:?} is not an RFC 3339 time like 2026-11-20T10:00:00Z ({e})"
            ))
        })
}

/// Free text naming a person (`author`): 1 to 200 characters, no control characters.
fn check_author(author: &str) -> Result<(), ApiError> {
    if author.trim().is_empty() || author.len() > 200 || author.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "author: 1 to 200 characters, no control characters",
        ));
    }
    Ok(())
}

fn new_id(now: DateTime<Utc>) -> String {
    let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    ulid::Ulid::from_parts(ms, rand::random::<u128>()).to_string()
}

// ---- overrides -------------------------------------------------------------------------------

const OVERRIDE_FIELDS: [&str; 5] = ["schedule", "person", "start", "end", "author"];

/// `POST /v1/overrides`: `{schedule, person, start?, end, author?}`; `start` defaults to now.
pub async fn create_override(
    State(s): State<AppState>,
    op: Operator,
    body: Result<Bytes, BytesRejection>,
) -> JsonResult {
    let now = s.clock.now();
    let mut f = Fields::parse(body)?;
    let schedule: String = f.required("schedule")?;
    let person: String = f.required("person")?;
    let start = f.optional_time("start")?.unwrap_or(now);
    let end = f.required_time("end")?;
    let author: Option<String> = f.optional::<String>("author")?.or(op.person);
    f.finish(&OVERRIDE_FIELDS)?;
    if let Some(a) = &author {
        check_author(a)?;
    }
    let o = Override {
        schedule,
        person,
        start,
        end,
        author,
    };
    let id = add_override(&s, &o).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "override": o })),
    ))
}

/// Checks an override as the policy checks its own and keeps it as an operator record: its id.
pub(super) async fn add_override(s: &AppState, o: &Override) -> Result<String, ApiError> {
    let now = s.clock.now();
    s.policy
        .current()
        .check_override(o)
        .map_err(ApiError::bad_request)?;
    if o.end <= now {
        return Err(ApiError::bad_request(format!(
            "end: {} is already past",
            rfc3339(o.end)
        )));
    }
    let id = new_id(now);
    s.service.create_override(&id, o).await?;
    tracing::info!(override.id = %id, schedule = %o.schedule, person = %o.person, start = %o.start, end = %o.end, "On-call override created.");
    Ok(id)
}

/// `GET /v1/overrides`: API overrides that have not ended, oldest start first.
pub async fn list_overrides(State(s): State<AppState>, _op: Operator) -> JsonResult {
    let now = s.clock.now();
    let list: Vec<Value> = overrides(&s, now)
        .await?
        .into_iter()
        .map(|(id, o)| json!({ "id": id, "active": o.covers(now), "override": o }))
        .collect();
    Ok((StatusCode::OK, Json(json!({ "overrides": list }))))
}

/// The API overrides that have not ended by `at`, with their ids, oldest start first.
pub(super) async fn overrides(
    s: &AppState,
    at: DateTime<Utc>,
) -> Result<Vec<(String, Override)>, ApiError> {
    Ok(s.service.overrides(at).await?)
}

/// `DELETE /v1/overrides/{id}`.
pub async fn delete_override(
    State(s): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let deleted = ulid::Ulid::from_string(&id).is_ok() && s.service.delete_override(&id).await?;
    if !deleted {
        return Err(ApiError::not_found("no override with that id"));
    }
    s.service.forget_extras();
    tracing::info!(override.id = %id, "On-call override deleted.");
    Ok(StatusCode::NO_CONTENT)
}

// ---- on call ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCallQuery {
    at: Option<String>,
}

/// `GET /v1/oncall[?at=RFC3339]`: every schedule, who is on call at `at` (default now) and what
/// decided, API overrides included.
pub async fn oncall(
    State(s): State<AppState>,
    _op: Operator,
    query: Result<Query<OnCallQuery>, QueryRejection>,
) -> JsonResult {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let at = match q.at {
        Some(raw) => parse_time("at", &raw)?,
        None => s.clock.now(),
    };
    let schedules = oncall_at(&s, at).await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "at": rfc3339(at), "schedules": schedules })),
    ))
}

/// Who is on call on each schedule at `at`, API overrides included.
pub(super) async fn oncall_at(
    s: &AppState,
    at: DateTime<Utc>,
) -> Result<Vec<crate::oncall::OnCallEntry>, ApiError> {
    // Overrides not ended by `at`: a past `at` still sees those that have ended since.
    let extra: Vec<Override> = overrides(s, at)
        .await?
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    Ok(s.policy.current().schedule_report(at, &extra))
}

// ---- silences --------------------------------------------------------------------------------

/// The fields of a silence or a drill window posted to the API.
const WINDOW_FIELDS: [&str; 6] = ["id", "matchers", "start", "end", "author", "comment"];

/// A silence or drill window as posted: `{id?, matchers, start?, end, author?, comment}`, `start`
/// defaulting to `now` and `author` to the person of the token, else "api"; any other field is a
/// 400.
pub(super) fn window_spec(
    body: Result<Bytes, BytesRejection>,
    now: DateTime<Utc>,
    person: Option<String>,
) -> Result<SilenceSpec, ApiError> {
    let mut f = Fields::parse(body)?;
    let spec = SilenceSpec {
        id: f.optional("id")?,
        matchers: f.required("matchers")?,
        start: f.optional_time("start")?.unwrap_or(now),
        end: f.required_time("end")?,
        author: f
            .optional("author")?
            .or(person)
            .unwrap_or_else(|| "api".into()),
        comment: f.required("comment")?,
    };
    f.finish(&WINDOW_FIELDS)?;
    Ok(spec)
}

/// `POST /v1/silences`: a [`SilenceSpec`], with `start` defaulting to now and `author` to "api".
pub async fn create_silence(
    State(s): State<AppState>,
    op: Operator,
    body: Result<Bytes, BytesRejection>,
) -> JsonResult {
    let now = s.clock.now();
    let spec = window_spec(body, now, op.person)?;
    let silence = add_silence(&s, spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(silence_json(&silence, "api", now)),
    ))
}

/// A silence or drill window (`what`) posted to the API, checked as the policy checks its own:
/// the author, the matchers and times (422 past a bound), an end not yet past, and an id that
/// `routing/` does not define (`in_routing`; 409).
pub(super) fn checked_window(
    spec: SilenceSpec,
    now: DateTime<Utc>,
    what: &str,
    in_routing: impl Fn(&str) -> bool,
) -> Result<Silence, ApiError> {
    check_author(&spec.author)?;
    let window = Silence::parse_api(spec).map_err(|e| {
        let message = e.message.replace("silence", what);
        if e.over_limit {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "over_limit", message)
        } else {
            ApiError::bad_request(message)
        }
    })?;
    if window.end <= now {
        return Err(ApiError::bad_request(format!(
            "end: {} is already past",
            rfc3339(window.end)
        )));
    }
    if in_routing(&window.id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "id: a {what} {:?} is defined in routing/; choose another id",
                window.id
            ),
        ));
    }
    Ok(window)
}

/// Checks a silence as the policy checks its own, within the API silences' bounds, and keeps it
/// as an operator record.
pub(super) async fn add_silence(s: &AppState, spec: SilenceSpec) -> Result<Silence, ApiError> {
    let now = s.clock.now();
    let routing = s.policy.current();
    let silence = checked_window(spec, now, "silence", |id| {
        routing.silences.iter().any(|r| r.id == id)
    })?;
    // The bounds count the API silences that have not ended, without the one this replaces.
    let others: Vec<_> = s
        .service
        .api_silences(now)
        .await?
        .into_iter()
        .filter(|a| a.id != silence.id)
        .collect();
    let over = |what: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "over_limit",
            format!("{what}; delete some with DELETE /v1/silences/{{id}} or let them end"),
        )
    };
    if others.len() >= MAX_API_SILENCES {
        return Err(over(format!(
            "there are already {} API silences that have not ended (at most {MAX_API_SILENCES})",
            others.len()
        )));
    }
    let regexes: usize = others.iter().map(|a| a.regex_count()).sum();
    if regexes + silence.regex_count() > MAX_API_SILENCE_REGEXES {
        return Err(over(format!(
            "API silences that have not ended hold {regexes} regex matchers and this one {}; together they may hold at most {MAX_API_SILENCE_REGEXES}",
            silence.regex_count()
        )));
    }
    s.service.create_silence(&silence).await?;
    tracing::info!(silence.id = %silence.id, author = %silence.author, start = %silence.start, end = %silence.end, "Silence created.");
    Ok(silence)
}

pub(super) fn silence_json(silence: &Silence, source: &str, now: DateTime<Utc>) -> Value {
    let mut v = serde_json::to_value(silence).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("source".into(), json!(source));
        obj.insert("active".into(), json!(silence.is_active(now)));
    }
    v
}

/// `GET /v1/silences`: the policy's silences, then the API's that have not ended.
pub async fn list_silences(State(s): State<AppState>, _op: Operator) -> JsonResult {
    let now = s.clock.now();
    let list: Vec<Value> = silences(&s, now)
        .await?
        .iter()
        .map(|(silence, source)| silence_json(silence, source, now))
        .collect();
    Ok((StatusCode::OK, Json(json!({ "silences": list }))))
}

/// The policy's silences (source `routing`), then the API's that have not ended (source `api`),
/// oldest start first.
pub(super) async fn silences(
    s: &AppState,
    now: DateTime<Utc>,
) -> Result<Vec<(Arc<Silence>, &'static str)>, ApiError> {
    let mut list: Vec<(Arc<Silence>, &'static str)> = s
        .policy
        .current()
        .silences
        .iter()
        .map(|r| (Arc::new(r.clone()), "routing"))
        .collect();
    let mut api = s.service.api_silences(now).await?;
    api.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
    list.extend(api.into_iter().map(|a| (a, "api")));
    Ok(list)
}

/// `DELETE /v1/silences/{id}`: API silences only; those in `routing/` are changed there.
pub async fn delete_silence(
    State(s): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    expire_silence(&s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends an API silence now: 409 for one from `routing/`, 404 for an unknown id.
pub(super) async fn expire_silence(s: &AppState, id: &str) -> Result<(), ApiError> {
    let deleted = s.service.delete_silence(id).await?;
    if deleted {
        tracing::info!(silence.id = %id, "Silence deleted.");
    }
    let in_routing = s.policy.current().silences.iter().any(|r| r.id == id);
    deleted_or_why(deleted, in_routing, "silence")
}

/// The answer to deleting an API silence or drill window (`what`): done, 409 for one defined in
/// `routing/` (edited there, not through the API), else 404.
pub(super) fn deleted_or_why(deleted: bool, in_routing: bool, what: &str) -> Result<(), ApiError> {
    if deleted {
        Ok(())
    } else if in_routing {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "defined in routing/; edit the policy",
        ))
    } else {
        Err(ApiError::not_found(format!("no {what} with that id")))
    }
}

// ---- heartbeats ------------------------------------------------------------------------------

/// When heartbeat `name` last beat, if ever.
pub(super) async fn last_beat(s: &AppState, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    Ok(s.service.last_beat(name).await?)
}

/// `POST /v1/heartbeats/{name}` (ingest or operator token): records a beat, and resolves the
/// heartbeat's open incident if the beat comes late. The body is ignored.
pub async fn beat(
    State(s): State<AppState>,
    _token: Token,
    Path(name): Path<String>,
) -> JsonResult {
    let policy = s.policy.current();
    let hb = policy
        .heartbeats
        .get(&name)
        .ok_or_else(|| ApiError::not_found("no heartbeat with that name in routing/"))?;
    let now = s.clock.now();
    let resolved = s.service.beat(hb).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "heartbeat": hb.name,
            "resolved": resolved,
            "next_deadline": rfc3339(hb.deadline(now)),
        })),
    ))
}
