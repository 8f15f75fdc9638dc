//! The console's pages and form actions. Pages read through the same functions the JSON API
//! uses; actions call them with the signed-in person as the actor, "via web", and answer `303`
//! back to a page.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::Value;
use serde_json::json;

use super::session::{self, SIGNIN_COOKIE, SIGNIN_TTL};
use super::words::{describe, span, utc, via};
use super::{Console, Posted, Viewer};
use crate::config::{Override, Policy, SilenceSpec, Target};
use crate::domain::Severity;
use crate::http::error::ApiError;
use crate::http::{AppState, admin, incidents, operations};
use crate::incident::{Actor, Incident, IncidentStatus, Origin};

/// Resolved incidents per page of the second tab.
const PER_PAGE: usize = 25;
/// The resolved tab goes back at most this many pages.
const MAX_PAGES: usize = 40;
/// Open incidents the home page shows at most.
const MAX_OPEN: usize = 500;

type Page = Result<Response, Response>;

fn ctx(v: &Viewer, page: &str, extra: serde_json::Value) -> Value {
    let mut base = json!({
        "person": v.session.person,
        "csrf": v.csrf,
        "page": page,
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    Value::from(minijinja::value::Serde(&base))
}

fn actor(session: &session::Session) -> Actor {
    Actor {
        who: session.person.clone(),
        origin: Origin::Web,
    }
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// `t` in the policy's zone (`Fri 20 Nov 10:40 +08`), in UTC, and as RFC 3339 for the
/// local-time script.
fn local(policy_tz: Tz, t: DateTime<Utc>) -> serde_json::Value {
    json!({
        "zoned": t.with_timezone(&policy_tz).format("%a %d %b %H:%M %Z").to_string(),
        "utc": utc(t),
        "iso": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

fn person_name(policy: &Policy, id: &str) -> String {
    policy
        .people
        .get(id)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| id.to_owned())
}

/// One incident as a row of the list.
fn row(policy: &Policy, inc: &Incident, now: DateTime<Utc>) -> serde_json::Value {
    let steps = inc.escalation.steps.len();
    let step = if inc.status == IncidentStatus::Resolved {
        String::new()
    } else if inc.step == 0 && inc.loop_ == 0 {
        match inc.next_due {
            Some(due) => format!("step 1 in {}", span(due - now)),
            None => "waiting".into(),
        }
    } else {
        let mut s = format!("step {} of {steps}", inc.step.min(steps as u32));
        if inc.loop_ > 0 {
            s.push_str(&format!(", pass {}", inc.loop_ + 1));
        }
        if let Some(due) = inc.next_due {
            s.push_str(&format!("; next in {}", span(due - now)));
        }
        s
    };
    let step = match (&inc.held_by, inc.status.is_open()) {
        (Some(by), true) => format!("held by {by}; {step}"),
        _ => step,
    };
    let paged: BTreeSet<String> = inc
        .notified
        .iter()
        .filter_map(|(_, p)| p.as_deref())
        .map(|p| person_name(policy, p))
        .collect();
    let ack = inc.acknowledged.as_ref().map(|(a, _)| {
        let mut s = format!("acked by {} {}", person_name(policy, &a.who), via(a.origin));
        if let Some(until) = inc.ack_until {
            s.push_str(&format!(
                " until {}",
                until.with_timezone(&policy.timezone).format("%H:%M %Z")
            ));
        }
        s
    });
    json!({
        "id": inc.id.to_string(),
        "severity": inc.severity.as_str(),
        "status": inc.status.as_str(),
        "summary": inc.summary,
        "age": span(now - inc.opened_at),
        "opened": local(policy.timezone, inc.opened_at),
        "step": step,
        "paged": paged.into_iter().collect::<Vec<_>>(),
        "ack": ack,
        "count": inc.count,
        "resolved": inc.resolved.as_ref().map(|(a, at)| json!({
            "by": person_name(policy, &a.who), "via": via(a.origin), "at": local(policy.timezone, *at),
        })),
    })
}

/// The home page's filters: `status` (open, triggered, acknowledged) and `severity`.
struct Filters {
    status: &'static str,
    severity: Option<Severity>,
}

impl Filters {
    fn parse(q: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let status = match q.get("status").map(String::as_str) {
            None | Some("") | Some("open") => "open",
            Some("triggered") => "triggered",
            Some("acknowledged") => "acknowledged",
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "status {other:?}: expected open, triggered or acknowledged"
                )));
            }
        };
        let severity = match q.get("severity").map(String::as_str) {
            None | Some("") | Some("any") => None,
            Some(raw) => Some(
                Severity::ALL
                    .into_iter()
                    .find(|s| s.as_str() == raw)
                    .ok_or_else(|| ApiError::bad_request(format!("severity {raw:?}: unknown")))?,
            ),
        };
        Ok(Self { status, severity })
    }

    fn query(&self) -> String {
        let mut q = format!("status={}", self.status);
        if let Some(s) = self.severity {
            q.push_str(&format!("&severity={}", s.as_str()));
        }
        q
    }
}

/// Open incidents as rows: unacknowledged first, then most severe, then oldest.
async fn open_rows(s: &AppState, f: &Filters) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut list = incidents::query_incidents(s, Some(f.status), MAX_OPEN).await?;
    list.retain(|i| f.severity.is_none_or(|sev| i.severity == sev));
    list.sort_by_key(|i| (i.acknowledged.is_some(), i.severity, i.opened_at));
    let policy = s.policy.current();
    let now = s.clock.now();
    Ok(list.iter().map(|i| row(&policy, i, now)).collect())
}

fn query_map(
    q: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<BTreeMap<String, String>, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// The filters of a request to the list, and the rows they select.
async fn filtered(
    s: &AppState,
    c: &Console,
    q: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<(Filters, Vec<serde_json::Value>), Response> {
    let f = query_map(q)
        .and_then(|q| Filters::parse(&q))
        .map_err(|e| c.error(&e, "/"))?;
    let rows = open_rows(s, &f).await.map_err(|e| c.error(&e, "/"))?;
    Ok((f, rows))
}

/// `GET /`: the open incidents, filtered, updating live.
pub async fn home(
    State(s): State<AppState>,
    v: Viewer,
    q: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let (f, rows) = filtered(&s, &v.console, q).await?;
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    Ok(v.console.render(
        StatusCode::OK,
        "home.html",
        ctx(
            &v,
            "open",
            json!({
                "rows": rows,
                "status": f.status,
                "severity": f.severity.map(Severity::as_str),
                "severities": severities,
                "live": format!("/console/incidents?{}", f.query()),
            }),
        ),
    ))
}

/// `GET /console/incidents`: the rows of the home page alone, for `console.js` to poll.
pub async fn rows(
    State(s): State<AppState>,
    v: Viewer,
    q: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let (_, rows) = filtered(&s, &v.console, q).await?;
    Ok(v.console.render(
        StatusCode::OK,
        "rows.html",
        ctx(&v, "open", json!({ "rows": rows })),
    ))
}

/// `GET /resolved?page=N`: resolved incidents, newest first, [`PER_PAGE`] a page.
pub async fn resolved(
    State(s): State<AppState>,
    v: Viewer,
    q: Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let c = &v.console;
    let q = query_map(q).map_err(|e| c.error(&e, "/resolved"))?;
    let page = match q.get("page").map(|p| p.parse::<usize>()) {
        None => 1,
        Some(Ok(p)) if (1..=MAX_PAGES).contains(&p) => p,
        Some(_) => {
            let e = ApiError::bad_request(format!("page: a number from 1 to {MAX_PAGES}"));
            return Err(c.error(&e, "/resolved"));
        }
    };
    // One more than the page, to know whether there is a next one.
    let list = incidents::query_incidents(&s, Some("resolved"), page * PER_PAGE + 1)
        .await
        .map_err(|e| c.error(&e, "/"))?;
    let more = list.len() > page * PER_PAGE && page < MAX_PAGES;
    let policy = s.policy.current();
    let now = s.clock.now();
    let rows: Vec<_> = list
        .iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|i| row(&policy, i, now))
        .collect();
    Ok(c.render(
        StatusCode::OK,
        "home.html",
        ctx(
            &v,
            "resolved",
            json!({
                "rows": rows,
                "resolved_tab": true,
                "page_no": page,
                "prev": (page > 1).then(|| page - 1),
                "next": more.then_some(page + 1),
            }),
        ),
    ))
}

/// `GET /incidents/{id}`: labels, description, escalation snapshot, the timeline in words.
pub async fn incident(State(s): State<AppState>, v: Viewer, Path(raw): Path<String>) -> Page {
    let c = &v.console;
    let id = incidents::parse_id(&raw).map_err(|e| c.error(&e, "/"))?;
    let (inc, timeline) = incidents::load(&s, id)
        .await
        .map_err(|e| c.error(&e, "/"))?;
    let policy = s.policy.current();
    let now = s.clock.now();
    let steps: Vec<_> = inc
        .escalation
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let targets: Vec<String> = st
                .targets
                .iter()
                .map(|t| match t {
                    Target::Schedule(name) => format!("on call on {name}"),
                    Target::Person(p) => person_name(&policy, p),
                })
                .collect();
            json!({
                "n": i + 1,
                "after": humantime::format_duration(st.after).to_string(),
                "targets": targets.join(", "),
                "via": st.via.join(", "),
            })
        })
        .collect();
    let timeline: Vec<_> = timeline
        .iter()
        .map(|e| json!({ "at": local(policy.timezone, e.at), "text": describe(&e.event) }))
        .collect();
    Ok(c.render(
        StatusCode::OK,
        "incident.html",
        ctx(
            &v,
            "incident",
            json!({
                "inc": row(&policy, &inc, now),
                "open": inc.status.is_open(),
                "acknowledged": inc.status == IncidentStatus::Acknowledged,
                "labels": inc.labels,
                "description": inc.description,
                "rule": inc.rule,
                "policy": inc.policy,
                "source": inc.source,
                "steps": steps,
                "repeat": inc.escalation.repeat,
                "timeline": timeline,
            }),
        ),
    ))
}

/// A duration field (`15m`, `1h`, `2h 30m`).
fn duration_field(name: &str, raw: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(raw).map_err(|e| {
        ApiError::bad_request(format!("{name}: {raw:?} is not a duration like 2h ({e})"))
    })
}

/// `POST /incidents/{id}/ack` (`for` = `15m`, `1h`, or empty for good).
pub async fn ack(State(s): State<AppState>, Path(raw): Path<String>, form: Posted) -> Page {
    let c = &form.console;
    let back = format!("/incidents/{raw}");
    let id = incidents::parse_id(&raw).map_err(|e| c.error(&e, "/"))?;
    let for_ = form
        .field("for")
        .map(|f| duration_field("for", f))
        .transpose()
        .map_err(|e| c.error(&e, &back))?;
    incidents::acknowledge(&s, id, actor(&form.session), None, for_)
        .await
        .map_err(|e| c.error(&e, &back))?;
    Ok(see_other(&back))
}

/// `POST /incidents/{id}/resolve`.
pub async fn resolve(State(s): State<AppState>, Path(raw): Path<String>, form: Posted) -> Page {
    let c = &form.console;
    let back = format!("/incidents/{raw}");
    let id = incidents::parse_id(&raw).map_err(|e| c.error(&e, "/"))?;
    s.service
        .resolve(id, actor(&form.session))
        .await
        .map_err(|e| c.error(&ApiError::from(e), &back))?;
    Ok(see_other(&back))
}

/// A label as a matcher: `name="value"` with `\` and `"` escaped.
fn matcher(name: &str, value: &str) -> String {
    let v = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{name}=\"{v}\"")
}

/// `GET /incidents/{id}/silence`: the silence form, prefilled with the incident's labels.
pub async fn silence_form(State(s): State<AppState>, v: Viewer, Path(raw): Path<String>) -> Page {
    let c = &v.console;
    let id = incidents::parse_id(&raw).map_err(|e| c.error(&e, "/"))?;
    let (inc, _) = incidents::load(&s, id)
        .await
        .map_err(|e| c.error(&e, "/"))?;
    let matchers: Vec<String> = inc.labels.iter().map(|(k, v)| matcher(k, v)).collect();
    Ok(c.render(
        StatusCode::OK,
        "silence_new.html",
        ctx(
            &v,
            "silences",
            json!({
                "inc": { "id": inc.id.to_string(), "summary": inc.summary },
                "matchers": matchers.join("\n"),
            }),
        ),
    ))
}

/// The end of a silence or override form: `end` (RFC 3339) or `for` (a duration from now).
fn end_field(form: &Posted, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    match (form.field("end"), form.field("for")) {
        (Some(end), _) => DateTime::parse_from_rfc3339(end)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ApiError::bad_request(format!("end: {end:?} is not an RFC 3339 time ({e})"))
            }),
        (None, Some(f)) => {
            let d = duration_field("for", f)?;
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .ok_or_else(|| ApiError::bad_request("for: too long"))
        }
        (None, None) => Err(ApiError::bad_request("end or for: required")),
    }
}

/// `POST /silences`: `matchers` (one a line), `for` or `end`, `comment` (required).
pub async fn create_silence(State(s): State<AppState>, form: Posted) -> Page {
    let c = &form.console;
    let back = "/silences";
    let now = s.clock.now();
    let made = async {
        let matchers: Vec<String> = form
            .field("matchers")
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let comment = form
            .field("comment")
            .ok_or_else(|| ApiError::bad_request("comment: required (say why)"))?;
        let spec = SilenceSpec {
            id: None,
            matchers,
            start: now,
            end: end_field(&form, now)?,
            author: form.session.person.clone(),
            comment: comment.to_owned(),
        };
        operations::add_silence(&s, spec).await
    }
    .await;
    made.map_err(|e| c.error(&e, back))?;
    Ok(see_other(back))
}

/// `GET /silences`: active and upcoming silences, and a form for a new one.
pub async fn silences(State(s): State<AppState>, v: Viewer) -> Page {
    let c = &v.console;
    let now = s.clock.now();
    let policy = s.policy.current();
    let list = operations::silences(&s, now)
        .await
        .map_err(|e| c.error(&e, "/"))?;
    let list: Vec<_> = list
        .iter()
        .filter(|(sil, _)| sil.end > now)
        .map(|(sil, source)| {
            json!({
                "id": sil.id,
                "matchers": sil.matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                "start": local(policy.timezone, sil.start),
                "end": local(policy.timezone, sil.end),
                "author": sil.author,
                "comment": sil.comment,
                "active": sil.is_active(now),
                "api": *source == "api",
            })
        })
        .collect();
    Ok(c.render(
        StatusCode::OK,
        "silences.html",
        ctx(&v, "silences", json!({ "silences": list })),
    ))
}

/// `POST /silences/{id}/expire`.
pub async fn expire_silence(
    State(s): State<AppState>,
    Path(id): Path<String>,
    form: Posted,
) -> Page {
    let c = &form.console;
    operations::expire_silence(&s, &id)
        .await
        .map_err(|e| c.error(&e, "/silences"))?;
    Ok(see_other("/silences"))
}

/// How far ahead the on-call page looks for the next hand-off.
const LOOKAHEAD: chrono::Duration = chrono::Duration::days(14);
/// Its scan step: a turn shorter than this may be missed.
const SCAN_STEP: chrono::Duration = chrono::Duration::minutes(15);

/// The first instant after `now` (within [`LOOKAHEAD`]) when someone else is on call on
/// `schedule`, to the second, and who.
async fn next_turn(
    s: &AppState,
    schedule: &str,
    now: DateTime<Utc>,
) -> Result<Option<(DateTime<Utc>, Option<String>)>, ApiError> {
    let policy = s.policy.current();
    let extra: Vec<Override> = operations::overrides(s, now)
        .await?
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    let who = |at: DateTime<Utc>| {
        policy
            .decide(schedule, at, &extra)
            .map(|(person, _)| person)
    };
    let current = who(now);
    let mut before = now;
    let mut at = now + SCAN_STEP;
    while at <= now + LOOKAHEAD {
        if who(at) != current {
            // Bisect to the second between `before` (same) and `at` (changed).
            while (at - before).num_seconds() > 1 {
                let mid = before + (at - before) / 2;
                if who(mid) == current {
                    before = mid;
                } else {
                    at = mid;
                }
            }
            return Ok(Some((at, who(at))));
        }
        before = at;
        at += SCAN_STEP;
    }
    Ok(None)
}

/// `GET /oncall`: who is on call now and next on each schedule, overrides, and a form.
pub async fn oncall(State(s): State<AppState>, v: Viewer) -> Page {
    let c = &v.console;
    let now = s.clock.now();
    let policy = s.policy.current();
    let report = operations::oncall_at(&s, now)
        .await
        .map_err(|e| c.error(&e, "/"))?;
    let mut schedules = Vec::new();
    for entry in &report {
        let next = next_turn(&s, &entry.schedule, now)
            .await
            .map_err(|e| c.error(&e, "/"))?;
        schedules.push(json!({
            "name": entry.schedule,
            "person": entry.person.as_deref().map(|p| person_name(&policy, p)),
            "decided_by": entry.decided_by.as_ref().map(|d| d.to_string()),
            "next": next.map(|(at, who)| json!({
                "at": local(policy.timezone, at),
                "person": who.as_deref().map(|p| person_name(&policy, p)),
            })),
        }));
    }
    let overrides: Vec<_> = operations::overrides(&s, now)
        .await
        .map_err(|e| c.error(&e, "/"))?
        .into_iter()
        .map(|(id, o)| {
            json!({
                "id": id,
                "schedule": o.schedule,
                "person": person_name(&policy, &o.person),
                "start": local(policy.timezone, o.start),
                "end": local(policy.timezone, o.end),
                "author": o.author,
                "active": o.covers(now),
            })
        })
        .collect();
    let people: Vec<_> = policy
        .people
        .values()
        .map(|p| json!({ "id": p.id, "name": p.name }))
        .collect();
    Ok(c.render(
        StatusCode::OK,
        "oncall.html",
        ctx(
            &v,
            "oncall",
            json!({
                "schedules": schedules,
                "overrides": overrides,
                "people": people,
                "schedule_names": policy.schedules.keys().collect::<Vec<_>>(),
                "timezone": policy.timezone.name(),
            }),
        ),
    ))
}

/// `POST /overrides`: `schedule`, `person`, `start` (RFC 3339, default now), `for` or `end`.
pub async fn create_override(State(s): State<AppState>, form: Posted) -> Page {
    let c = &form.console;
    let now = s.clock.now();
    let made = async {
        let start = match form.field("start") {
            None => now,
            Some(raw) => DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::bad_request(format!("start: {raw:?} is not an RFC 3339 time ({e})"))
                })?,
        };
        let o = Override {
            schedule: form
                .field("schedule")
                .ok_or_else(|| ApiError::bad_request("schedule: required"))?
                .to_owned(),
            person: form
                .field("person")
                .ok_or_else(|| ApiError::bad_request("person: required"))?
                .to_owned(),
            start,
            end: end_field(&form, start)?,
            author: Some(form.session.person.clone()),
        };
        operations::add_override(&s, &o).await
    }
    .await;
    made.map_err(|e| c.error(&e, "/oncall"))?;
    Ok(see_other("/oncall"))
}

/// `GET /health`: readiness, policy, heartbeats, the peer.
pub async fn health(State(s): State<AppState>, v: Viewer) -> Page {
    let c = &v.console;
    let (stats, problems, lag) = admin::readiness(&s).await;
    let policy = s.policy.current();
    let now = s.clock.now();
    let mut heartbeats = Vec::new();
    for hb in policy.heartbeats.values() {
        let last = operations::last_beat(&s, &hb.name)
            .await
            .map_err(|e| c.error(&e, "/"))?;
        heartbeats.push(json!({
            "name": hb.name,
            "last": last.map(|t| local(policy.timezone, t)),
            "deadline": last.map(|t| local(policy.timezone, hb.deadline(t))),
            "late": last.is_some_and(|t| hb.deadline(t) < now),
            "every": humantime::format_duration(hb.interval).to_string(),
        }));
    }
    // Every channel of the policy, and why it cannot send (settings it lacks; never a secret).
    let notifiers = s.notifiers.load();
    let channels: Vec<_> = policy
        .channels
        .keys()
        .map(|name| json!({ "name": name, "unavailable": notifiers.unavailable().get(name) }))
        .collect();
    let last_reload = s.policy.last_reload().map(|r| {
        json!({
            "at": local(policy.timezone, r.at),
            "trigger": r.trigger,
            "problems": r.problems,
        })
    });
    let gate = s.service.gate();
    let peer = s.peer.as_ref().map(|p| {
        let view = p.view();
        json!({
            "url": view.peer_url,
            "role": view.peer_role,
            "ready": view.peer_ready,
            "lag": format!("{:.1}", view.lag_seconds),
            "last_error": view.last_error,
            "takeovers": view.takeovers,
        })
    });
    Ok(c.render(
        StatusCode::OK,
        "health.html",
        ctx(
            &v,
            "health",
            json!({
                "ready": problems.is_empty(),
                "problems": problems,
                "digest": policy.digest,
                "lag": humantime::format_duration(Duration::from_millis(lag.as_millis() as u64)).to_string(),
                "open_incidents": stats.map(|s| s.open_incidents),
                "outbox": stats.map(|s| s.outbox),
                "role": gate.role().as_str(),
                "held": gate.held(),
                "paging": gate.is_open(),
                "heartbeats": heartbeats,
                "peer": peer,
                "channels": channels,
                "last_reload": last_reload,
            }),
        ),
    ))
}

// ---- sign-in ---------------------------------------------------------------------------------

fn sign_in_page(
    c: &Console,
    s: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let token = c.keys.signin_token(s.clock.now());
    let mut r = c.render(
        status,
        "sign_in.html",
        Value::from(minijinja::value::Serde(
            json!({ "csrf": token, "error": error }),
        )),
    );
    let cookie = c
        .keys
        .cookie(SIGNIN_COOKIE, &token, SIGNIN_TTL, c.keys.secure(headers));
    if let Ok(v) = cookie.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `GET /sign-in`.
pub async fn sign_in_form(
    State(s): State<AppState>,
    axum::Extension(c): axum::Extension<std::sync::Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    sign_in_page(&c, &s, &headers, StatusCode::OK, None)
}

/// `POST /sign-in` (`token`, `csrf`): a person's operator token starts a session.
pub async fn sign_in(
    State(s): State<AppState>,
    axum::Extension(c): axum::Extension<std::sync::Arc<Console>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        return c.error(&ApiError::bad_request("unreadable form"), "/sign-in");
    };
    let fields = super::form_fields(&body);
    let now = s.clock.now();
    let csrf = fields.get("csrf").map(String::as_str).unwrap_or_default();
    if !c
        .keys
        .signin_matches(csrf, session::cookie(&headers, SIGNIN_COOKIE), now)
    {
        return sign_in_page(
            &c,
            &s,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired or was not this browser's; try again."),
        );
    }
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    let found = crate::http::auth::operator_token(&s.settings.operator_tokens, token);
    let person = match found {
        Some(t) => match &t.person {
            Some(p) => p.clone(),
            None => {
                return sign_in_page(
                    &c,
                    &s,
                    &headers,
                    StatusCode::FORBIDDEN,
                    Some(
                        "This token names no person: the console needs a person:token pair in VIGIL_OPERATOR_TOKENS.",
                    ),
                );
            }
        },
        None => {
            tracing::info!("Console sign-in refused: unknown token.");
            return sign_in_page(
                &c,
                &s,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("Unknown token."),
            );
        }
    };
    let (_, value) = c.keys.issue(&person, now);
    let secure = c.keys.secure(&headers);
    tracing::info!(person = %person, "Console sign-in.");
    let mut r = see_other("/");
    for cookie in [
        c.keys.cookie(session::COOKIE, &value, c.keys.ttl, secure),
        c.keys.cookie(SIGNIN_COOKIE, "", Duration::ZERO, secure),
    ] {
        if let Ok(v) = cookie.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// `POST /sign-out`: ends the session, on every replica, and clears its cookie.
pub async fn sign_out(State(s): State<AppState>, headers: HeaderMap, form: Posted) -> Response {
    let c = &form.console;
    if let Err(e) = s
        .service
        .end_session(&form.session.nonce, form.session.expires)
        .await
    {
        return c.error(&ApiError::from(e), "/");
    }
    tracing::info!(person = %form.session.person, "Console sign-out.");
    let mut r = see_other("/sign-in");
    let cookie = c
        .keys
        .cookie(session::COOKIE, "", Duration::ZERO, c.keys.secure(&headers));
    if let Ok(v) = cookie.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
