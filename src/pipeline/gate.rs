//! The paging gate: whether this process may page (README, "Warm standby"). A primary pages
//! unless it is held (its standby is active); a standby never pages; an active standby pages.
//! While the gate is closed incidents still open, fold, acknowledge and resolve durably, but no
//! step fires and nothing is sent.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Primary,
    Standby,
    ActiveStandby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::ActiveStandby => "active-standby",
        }
    }

    /// The `vigil_peer_role` gauge: 0 primary, 1 standby, 2 active standby.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Primary => 0.0,
            Self::Standby => 1.0,
            Self::ActiveStandby => 2.0,
        }
    }

    fn code(self) -> u8 {
        self.gauge() as u8
    }

    fn from_code(c: u8) -> Self {
        match c {
            1 => Self::Standby,
            2 => Self::ActiveStandby,
            _ => Self::Primary,
        }
    }
}

#[derive(Debug)]
pub struct PagingGate {
    role: AtomicU8,
    held: AtomicBool,
    /// Closed for a hand-back in progress: the role still shows `active-standby` until the
    /// scheduler's pass in flight has finished, so the primary cannot open before this side shut.
    draining: AtomicBool,
    /// Held (shared) by every decision that may fire a step: a scheduler pass, an ingest, a
    /// mirrored copy. Closing the gate for a hand-back takes it exclusively, so it waits for the
    /// decisions in flight to commit before the role reads `standby`.
    deciding: tokio::sync::RwLock<()>,
}

impl PagingGate {
    pub fn new(role: Role) -> Self {
        Self {
            role: AtomicU8::new(role.code()),
            held: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            deciding: tokio::sync::RwLock::new(()),
        }
    }

    pub fn role(&self) -> Role {
        Role::from_code(self.role.load(Ordering::SeqCst))
    }

    pub fn set_role(&self, role: Role) {
        self.role.store(role.code(), Ordering::SeqCst);
    }

    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Holds (or releases) a primary; returns the previous value.
    pub fn set_held(&self, held: bool) -> bool {
        self.held.swap(held, Ordering::SeqCst)
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
    }

    /// Held while deciding whether to fire a step and committing that decision.
    pub async fn deciding(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.deciding.read().await
    }

    /// Closes the gate of an active standby for a hand-back: no new decision fires a step from
    /// the first instant (draining), and the role turns `standby` (what the primary waits for)
    /// only once every decision in flight has committed.
    pub async fn hand_back(&self) {
        self.set_draining(true);
        let _all = self.deciding.write().await;
        self.set_role(Role::Standby);
        self.set_draining(false);
    }

    /// Whether this process may page right now.
    pub fn is_open(&self) -> bool {
        if self.draining.load(Ordering::SeqCst) {
            return false;
        }
        match self.role() {
            Role::Primary => !self.held(),
            Role::Standby => false,
            Role::ActiveStandby => true,
        }
    }
}

impl Default for PagingGate {
    fn default() -> Self {
        Self::new(Role::Primary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unheld_primary_and_an_active_standby_page() {
        let g = PagingGate::new(Role::Primary);
        assert!(g.is_open());
        g.set_held(true);
        assert!(!g.is_open(), "a held primary does not page");
        let s = PagingGate::new(Role::Standby);
        assert!(!s.is_open());
        s.set_role(Role::ActiveStandby);
        assert!(s.is_open());
        s.set_draining(true);
        assert!(!s.is_open(), "a hand-back closes the gate first");
        assert_eq!(s.role().as_str(), "active-standby");
    }

    #[tokio::test]
    async fn a_hand_back_turns_standby_only_after_the_decisions_in_flight_committed() {
        let g = std::sync::Arc::new(PagingGate::new(Role::ActiveStandby));
        let in_flight = g.deciding().await;
        assert!(g.is_open(), "an ingest decided to fire its first step");
        let closing = tokio::spawn({
            let g = g.clone();
            async move { g.hand_back().await }
        });
        // Let the hand-back run until it waits for the decision in flight (no wall-clock sleep).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!g.is_open(), "no new decision fires from the first instant");
        assert_eq!(
            g.role(),
            Role::ActiveStandby,
            "the feed still says active: the primary must not open yet"
        );
        assert!(!closing.is_finished());
        drop(in_flight);
        closing.await.unwrap();
        assert_eq!(g.role(), Role::Standby);
        assert!(!g.is_open());
    }
}
