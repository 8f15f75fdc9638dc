//! The paging gate: whether this process may page (README, "Warm standby"). A primary pages
//! unless it is held (its standby is active); a standby never pages; an active standby pages.
//! While the gate is closed incidents still open, fold, acknowledge and resolve durably, but no
//! step fires and nothing is sent.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Held by a scheduler pass; a hand-back takes it to wait for the pass in flight.
    pub pass: tokio::sync::Mutex<()>,
}

impl PagingGate {
    pub fn new(role: Role) -> Self {
        Self {
            role: AtomicU8::new(role.code()),
            held: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            pass: tokio::sync::Mutex::new(()),
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
}
