//! Rendering notifications from the templates (`config::templates` reads and checks them when
//! the policy loads): the channel type's own template or the default, cut to the type's limits
//! (its descriptor's `limits`, `config::channel`) with a visible marker.

use crate::config::channel_types;
pub use crate::config::templates::{RenderContext, Templates};
use crate::incident::NotifyKind;

/// Appended where text was cut.
pub const TRUNCATED: &str = "…[truncated]";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub subject: Option<String>,
    pub html: Option<String>,
}

/// `text` with `DRILL: ` in front, unless its template already says DRILL.
fn say_drill(text: String) -> String {
    if text.contains("DRILL") {
        text
    } else {
        format!("DRILL: {text}")
    }
}

/// Cuts `s` to at most `max` characters, ending in `TRUNCATED` when anything was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(TRUNCATED.chars().count());
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(TRUNCATED);
    out
}

impl Templates {
    fn render_one(&self, name: &str, ctx: &RenderContext) -> Option<String> {
        let t = self.template(name)?;
        match t.render(minijinja::Value::from(minijinja::value::Serde(ctx))) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                tracing::warn!(template = name, error.message = %e, "Template failed to render; using the fallback.");
                None
            }
        }
    }

    fn pick(
        &self,
        channel_type: &str,
        kind: NotifyKind,
        ext: &str,
        ctx: &RenderContext,
    ) -> Option<String> {
        let own = format!("{channel_type}/{}.{ext}", kind.as_str());
        let default = format!("default/{}.{ext}", kind.as_str());
        self.render_one(&own, ctx)
            .or_else(|| self.render_one(&default, ctx))
    }

    /// Renders the message for one channel type, cut to its limits.
    pub fn render(&self, channel_type: &str, kind: NotifyKind, ctx: &RenderContext) -> Rendered {
        let limits = channel_types().limits(channel_type);
        let (body_max, subject_max) = (limits.body, limits.subject);
        let text = self
            .pick(channel_type, kind, "txt", ctx)
            .unwrap_or_else(|| ctx.summary.clone());
        let subject = self
            .pick(channel_type, kind, "subject", ctx)
            .map(|s| truncate(s.lines().next().unwrap_or(""), subject_max));
        let html = self.render_one(&format!("{channel_type}/{}.html", kind.as_str()), ctx);
        // A drill pages for real: every message must say so, whatever its template does.
        let (text, subject) = if ctx.drill {
            (say_drill(text), subject.map(say_drill))
        } else {
            (text, subject)
        };
        let subject = subject.map(|s| truncate(&s, subject_max));
        Rendered {
            text: truncate(&text, body_max),
            subject,
            html,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::templates::{KINDS, sample_context};

    fn shipped() -> Templates {
        Templates::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"))
            .expect("shipped templates load")
    }

    #[test]
    fn shipped_templates_render_every_kind_for_every_channel() {
        let t = shipped();
        let ctx = sample_context();
        for ty in [
            "pagerduty",
            "sms",
            "phone",
            "slack",
            "email",
            "webhook",
            "log",
        ] {
            for kind in KINDS {
                let r = t.render(ty, kind, &ctx);
                assert!(!r.text.is_empty(), "{ty}/{kind:?}");
                assert!(
                    r.text.chars().count() <= channel_types().limits(ty).body,
                    "{ty}/{kind:?}"
                );
            }
        }
        let sms = t.render("sms", NotifyKind::Trigger, &ctx);
        assert!(
            sms.text.contains("CRITICAL") && sms.text.chars().count() <= 160,
            "{}",
            sms.text
        );
        let email = t.render("email", NotifyKind::Trigger, &ctx);
        assert!(
            email.subject.as_deref().unwrap().contains("critical")
                || email.subject.as_deref().unwrap().contains("CRITICAL")
        );
        assert!(email.html.as_deref().unwrap().contains("href="));
    }

    #[test]
    fn the_pagerduty_summary_names_the_region_once() {
        let t = shipped();
        let mut ctx = sample_context();
        // CloudWatch and Route 53 summaries carry the region already.
        let r = t.render("pagerduty", NotifyKind::Trigger, &ctx);
        assert_eq!(
            r.subject.as_deref(),
            Some("ALARM: route53-hc-api-example-com-unhealthy (us-east-1)")
        );
        // Other sources get it added.
        ctx.summary = "Trading halted".into();
        let r = t.render("pagerduty", NotifyKind::Trigger, &ctx);
        assert_eq!(r.subject.as_deref(), Some("Trading halted (us-east-1)"));
    }

    #[test]
    fn long_text_is_cut_with_a_visible_marker() {
        let t = shipped();
        let mut ctx = sample_context();
        ctx.summary = "x".repeat(5000);
        let r = t.render("sms", NotifyKind::Trigger, &ctx);
        assert_eq!(r.text.chars().count(), 160);
        assert!(r.text.ends_with(TRUNCATED));
        assert_eq!(truncate("short", 10), "short");
    }
}
