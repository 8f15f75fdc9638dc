//! Stage 3: incidents. An alert opens an incident, folds into the open one with the same
//! fingerprint, or resolves it; operators and integrations acknowledge and resolve. `model` holds
//! the records, `transition` the pure decisions. Pure: the read → decide → commit loop that
//! applies them is `pipeline::service`; imports `classify`, `config` and `domain`, nothing above.

mod model;
pub mod transition;

pub use model::{
    Actor, Delivery, DeliveryOutcome, Incident, IncidentStatus, IncidentSync, NotifyKind, Origin,
    PendingPage, SyncActor, TimelineEntry, TimelineEvent,
};
