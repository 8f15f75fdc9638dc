//! Stage 3: incidents. An alert opens an incident, folds into the open one with the same
//! fingerprint, or resolves it; operators and integrations acknowledge and resolve. `model` holds
//! the records, `transition` the pure decisions, `service` the read → decide → commit loop.

pub mod extras;
pub mod gate;
mod model;
pub mod prune;
pub mod service;
pub mod transition;

pub use model::{
    Actor, Delivery, DeliveryOutcome, Incident, IncidentStatus, IncidentSync, NotifyKind, Origin,
    PendingPage, SyncActor, TimelineEntry, TimelineEvent,
};
pub use service::{IncidentService, IngestOutcome, ServiceError};
