//! What the operator API and the probes read and record, through the service: the HTTP handlers
//! never touch the store themselves. Each method is one read or one recorded operation; the
//! checks of what a request may ask (limits, well-formed fields) stay in the handlers, the
//! decisions in the pure stages.

use chrono::{DateTime, Utc};

use super::extras;
use super::heartbeat;
use super::service::{IncidentService, IngestOutcome, ServiceError};
use crate::classify::classify;
use crate::config::{Heartbeat, Override, Silence};
use crate::domain::{AlertStatus, IncidentId};
use crate::incident::{Incident, IncidentStatus, TimelineEntry};
use crate::store::{StoreError, StoreStats};

/// The store records of console sessions signed out before their expiry: `id` the session's
/// nonce, value its expiry (Unix seconds). Shared by replicas, so a sign-out ends the session on
/// all.
pub const SIGNED_OUT: &str = "console_signout";

/// Which incidents a listing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    All,
    /// Triggered or acknowledged.
    Open,
    Only(IncidentStatus),
}

/// The store as the probes see it.
#[derive(Debug)]
pub struct StoreHealth {
    /// The counts, or why they could not be read.
    pub stats: Result<StoreStats, StoreError>,
    /// Why the store refuses writes though it may answer reads (a full disk), if it does.
    pub problem: Option<String>,
}

impl IncidentService {
    /// One incident, if it exists.
    pub async fn incident(&self, id: IncidentId) -> Result<Option<Incident>, ServiceError> {
        Ok(self.store().incident(id).await?)
    }

    /// One incident with its whole timeline, oldest entry first.
    pub async fn incident_with_timeline(
        &self,
        id: IncidentId,
    ) -> Result<Option<(Incident, Vec<TimelineEntry>)>, ServiceError> {
        let Some(inc) = self.store().incident(id).await? else {
            return Ok(None);
        };
        let timeline = self.store().timeline(id).await?;
        Ok(Some((inc, timeline)))
    }

    /// Incidents, newest first, at most `limit`.
    pub async fn list(&self, which: Listing, limit: usize) -> Result<Vec<Incident>, ServiceError> {
        let store = self.store();
        Ok(match which {
            Listing::All => store.incidents(None, limit).await?,
            Listing::Only(status) => store.incidents(Some(status), limit).await?,
            Listing::Open => {
                let mut v = store
                    .incidents(Some(IncidentStatus::Triggered), limit)
                    .await?;
                v.extend(
                    store
                        .incidents(Some(IncidentStatus::Acknowledged), limit)
                        .await?,
                );
                v.sort_by_key(|i| std::cmp::Reverse(i.id));
                v.truncate(limit);
                v
            }
        })
    }

    /// The alerts behind the incidents opened at or after `since`, newest first, one per
    /// incident (its first alert as the incident keeps it: source, labels, summary, details,
    /// the opening time; the alert's own key for a grouped incident), at most `limit`; and
    /// whether more were left out. Storm incidents stand for many alerts and are left out.
    /// For `vigil export-alerts` → `vigil diff --events`.
    pub async fn alerts_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<crate::domain::Alert>, bool), ServiceError> {
        let newest = self
            .store()
            .incidents(None, limit.saturating_add(1))
            .await?;
        let read = newest.len();
        let mut out = Vec::new();
        for inc in newest.into_iter().take(limit) {
            if inc.opened_at < since {
                return Ok((out, false));
            }
            if inc.rule == "storm" {
                continue;
            }
            let fingerprint = inc
                .members
                .iter()
                .next()
                .and_then(|m| crate::domain::Fingerprint::parse(m.clone()).ok())
                .unwrap_or(inc.fingerprint);
            out.push(crate::domain::Alert {
                source: inc.source,
                fingerprint,
                status: AlertStatus::Firing,
                summary: inc.summary,
                description: inc.description,
                labels: inc.labels,
                details: inc.details,
                occurred_at: inc.opened_at,
                delivery_id: None,
                severity_override: None,
            });
        }
        Ok((out, read > limit))
    }

    /// The store's counts and whether it takes writes.
    pub async fn store_health(&self) -> StoreHealth {
        StoreHealth {
            stats: self.store().stats().await,
            problem: self.store().problem(),
        }
    }

    /// Open incidents whose current step reached no one.
    pub async fn unreached(&self) -> Result<Vec<Incident>, ServiceError> {
        Ok(crate::store::unreached::unreached(self.store().as_ref()).await?)
    }

    /// The API silences and overrides as the peer feed carries them.
    pub async fn sync_records(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<extras::RecordSync>, ServiceError> {
        Ok(extras::sync_records(self.store().as_ref(), now).await?)
    }

    /// API overrides that have not ended by `at`, oldest start first, with their ids.
    pub async fn overrides(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<(String, Override)>, ServiceError> {
        Ok(extras::overrides(self.store().as_ref(), at).await?)
    }

    /// Records an API override under `id` (already checked against the policy); this process
    /// sees it at once, other replicas within the extras cache's TTL.
    pub async fn create_override(&self, id: &str, o: &Override) -> Result<(), ServiceError> {
        self.put_operator_record(extras::OVERRIDES, id, o).await
    }

    /// Deletes an API override; `false` when there was none.
    pub async fn delete_override(&self, id: &str) -> Result<bool, ServiceError> {
        self.delete_operator_record(extras::OVERRIDES, id).await
    }

    /// Records an API silence (already checked and within the limits).
    pub async fn create_silence(&self, silence: &Silence) -> Result<(), ServiceError> {
        self.put_operator_record(extras::SILENCES, &silence.id, silence)
            .await
    }

    /// Deletes an API silence; `false` when there was none.
    pub async fn delete_silence(&self, id: &str) -> Result<bool, ServiceError> {
        self.delete_operator_record(extras::SILENCES, id).await
    }

    /// API drill windows that have not ended by `now`, oldest start first.
    pub async fn api_drills(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, ServiceError> {
        Ok(extras::drills(self.store().as_ref(), now)
            .await?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    /// Records an API drill window (already checked and within the limits); mirrored to the
    /// peer as API silences are.
    pub async fn create_drill(&self, drill: &Silence) -> Result<(), ServiceError> {
        self.put_operator_record(extras::DRILLS, &drill.id, drill)
            .await
    }

    /// Deletes an API drill window; `false` when there was none.
    pub async fn delete_drill(&self, id: &str) -> Result<bool, ServiceError> {
        self.delete_operator_record(extras::DRILLS, id).await
    }

    /// A beat of heartbeat `hb`: recorded, and the heartbeat's open incident resolved if the
    /// beat comes late. Returns the incidents it resolved.
    pub async fn beat(&self, hb: &Heartbeat) -> Result<Vec<IncidentId>, ServiceError> {
        let now = self.now();
        let store = self.store().as_ref();
        let last = extras::last_beat(store, &hb.name).await?;
        extras::record_beat(store, &hb.name, now).await?;
        let back = heartbeat::alert(hb, AlertStatus::Resolved, last.unwrap_or(now), now);
        let fp = classify(&self.policy().current(), &back).fingerprint;
        if store.fingerprint(&fp).await?.open.is_none() {
            return Ok(Vec::new());
        }
        match self.ingest(&back).await? {
            IngestOutcome::Resolved(ids) => {
                tracing::info!(heartbeat = %hb.name, incidents = ?ids, "Heartbeat is back; incident resolved.");
                Ok(ids)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// When heartbeat `name` last beat, if ever.
    pub async fn last_beat(&self, name: &str) -> Result<Option<DateTime<Utc>>, ServiceError> {
        Ok(extras::last_beat(self.store().as_ref(), name).await?)
    }

    /// Records that the console session `nonce`, valid until `expires`, was signed out, so a
    /// copy of its cookie is refused by every replica. Records of sessions that have expired
    /// anyway are deleted here (there are at most as many as sign-outs within one session
    /// lifetime).
    pub async fn end_session(
        &self,
        nonce: &str,
        expires: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let store = self.store();
        let now = self.now();
        let expiry = expires.timestamp().to_string().into_bytes();
        store.put_record(SIGNED_OUT, nonce, expiry).await?;
        for (id, value) in store.records(SIGNED_OUT).await? {
            let expired = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
                .is_none_or(|t| t <= now.timestamp());
            if expired {
                store.delete_record(SIGNED_OUT, &id).await?;
            }
        }
        Ok(())
    }

    /// Whether the console session `nonce` was signed out.
    pub async fn session_ended(&self, nonce: &str) -> Result<bool, ServiceError> {
        Ok(self.store().get_record(SIGNED_OUT, nonce).await?.is_some())
    }

    async fn put_operator_record<T: serde::Serialize>(
        &self,
        kind: &str,
        id: &str,
        record: &T,
    ) -> Result<(), ServiceError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| StoreError::Corrupt(format!("encoding a {kind} record: {e}")))?;
        extras::put_operator_record(self.store().as_ref(), kind, id, bytes, self.now()).await?;
        self.forget_extras();
        Ok(())
    }

    async fn delete_operator_record(&self, kind: &str, id: &str) -> Result<bool, ServiceError> {
        let deleted =
            extras::delete_operator_record(self.store().as_ref(), kind, id, self.now()).await?;
        if deleted {
            self.forget_extras();
        }
        Ok(deleted)
    }
}
