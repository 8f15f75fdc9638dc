//! When the steps of an escalation policy come due: pure arithmetic on the policy's snapshot,
//! used by `incident` (opening, re-anchoring), `escalate` (firing) and `vigil simulate`.
//!
//! Step timing: loop `L`, step `i` is due at
//! `anchor + L × (last step's after + repeat_delay) + steps[i].after`.

use chrono::{DateTime, Utc};

use super::policy::EscalationPolicy;

fn chrono_dur(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl EscalationPolicy {
    /// When step `step` of loop `loop_` is due for a chain anchored at `anchor`, or `None` if
    /// the chain has no such step.
    pub fn due_at(&self, anchor: DateTime<Utc>, loop_: u32, step: u32) -> Option<DateTime<Utc>> {
        let s = self.steps.get(step as usize)?;
        if loop_ > self.repeat {
            return None;
        }
        let last = self.steps.last()?.after;
        let cycle = last + self.repeat_delay.unwrap_or_default();
        let offset = cycle.checked_mul(loop_)? + s.after;
        anchor.checked_add_signed(chrono_dur(offset))
    }

    /// The position after (loop_, step), if the chain goes on.
    pub fn next_position(&self, loop_: u32, step: u32) -> Option<(u32, u32)> {
        if (step as usize) + 1 < self.steps.len() {
            Some((loop_, step + 1))
        } else if loop_ < self.repeat {
            Some((loop_ + 1, 0))
        } else {
            None
        }
    }

    /// Every step of the chain in order: (due time, loop, step). For `vigil simulate`.
    pub fn plan(&self, anchor: DateTime<Utc>) -> Vec<(DateTime<Utc>, u32, u32)> {
        let mut out = Vec::new();
        let mut pos = (!self.steps.is_empty()).then_some((0, 0));
        while let Some((l, s)) = pos {
            if let Some(at) = self.due_at(anchor, l, s) {
                out.push((at, l, s));
            }
            pos = self.next_position(l, s);
        }
        out
    }
}
