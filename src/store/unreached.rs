//! The list of incidents whose current escalation step reached no one, kept as store records so
//! that readiness and the metric need not read every open incident. Written by the notify worker
//! (a step's last delivery failed for good) and by the pipeline (a step found nobody to page).

/// incident id → an incident whose current escalation step reached no one
/// (`Incident::unreached`), listed so that readiness and the metric need not read every open
/// incident. A listing that no longer holds (acknowledged, resolved, a later step fired) is
/// dropped by the next [`unreached`] read.
pub const UNREACHED: &str = "unreached";

/// Lists `inc` as unreached (after the transition that marked it committed).
pub async fn list_unreached(
    store: &dyn super::Store,
    inc: &crate::incident::Incident,
) -> Result<(), super::StoreError> {
    store
        .put_record(UNREACHED, &inc.id.to_string(), inc.severity.as_str().into())
        .await
}

/// The incidents whose current step reached no one and that nobody has taken yet.
pub async fn unreached(
    store: &dyn super::Store,
) -> Result<Vec<crate::incident::Incident>, super::StoreError> {
    let mut out = Vec::new();
    for (id, _) in store.records(UNREACHED).await? {
        let inc = match id.parse::<crate::domain::IncidentId>() {
            Ok(iid) => store.incident(iid).await?,
            Err(_) => None,
        };
        match inc {
            Some(inc)
                if inc.status == crate::incident::IncidentStatus::Triggered
                    && inc.unreached.is_some() =>
            {
                out.push(inc)
            }
            _ => {
                store.delete_record(UNREACHED, &id).await?;
            }
        }
    }
    Ok(out)
}
