//! Rendering notifications from `templates/` with minijinja. Layout:
//! `templates/<channel type>/<kind>.txt` (the body), `.subject` (a one-line title: email subject,
//! PagerDuty summary) and `.html` (email), for kind `trigger`, `escalate`, `acknowledged` or
//! `resolved`; `templates/default/<kind>.*` is used where a channel type has none of its own.
//!
//! Templates are compiled and test-rendered against a sample incident when the policy loads, so
//! a broken template refuses the reload instead of failing a 3 a.m. page. Output is cut to the
//! channel's limit with a visible marker.

use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::Serialize;

use crate::config::ConfigError;
use crate::incident::NotifyKind;

const KINDS: [NotifyKind; 4] = [
    NotifyKind::Trigger,
    NotifyKind::Escalate,
    NotifyKind::Acknowledged,
    NotifyKind::Resolved,
];

/// Appended where text was cut.
pub const TRUNCATED: &str = "…[truncated]";

/// What templates see.
#[derive(Debug, Clone, Serialize)]
pub struct RenderContext {
    pub kind: String,
    pub incident: String,
    pub severity: String,
    pub status: String,
    pub summary: String,
    pub description: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub count: u64,
    pub opened_at: String,
    /// 1-based step number of a page.
    pub step: Option<u32>,
    /// Names of the people the step targeted.
    pub people: Vec<String>,
    /// The name of the person this message is for.
    pub recipient: Option<String>,
    /// Who acknowledged or resolved.
    pub by: Option<String>,
    pub link: Option<String>,
    pub ack_url: Option<String>,
    pub channel: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub subject: Option<String>,
    pub html: Option<String>,
}

/// The compiled templates of one policy load.
pub struct Templates {
    env: Environment<'static>,
    dir: PathBuf,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Templates({})", self.dir.display())
    }
}

/// (body, subject) limits in characters per channel type.
fn limits(channel_type: &str) -> (usize, usize) {
    match channel_type {
        "sms" => (160, 100),
        "phone" => (1000, 200),
        "pagerduty" => (1024, 1024),
        "slack" => (3000, 150),
        "email" => (100_000, 200),
        _ => (4000, 200),
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

fn config_error(file: PathBuf, line: Option<usize>, message: String) -> ConfigError {
    ConfigError {
        file,
        line,
        key: String::new(),
        message,
    }
}

impl Templates {
    /// Compiles every template under `dir` and renders each against a sample incident.
    /// Collects all errors.
    pub fn load(dir: &Path) -> Result<Self, Vec<ConfigError>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        let mut errors = Vec::new();
        let mut names = Vec::new();
        let subdirs = match std::fs::read_dir(dir) {
            Ok(d) => d,
            Err(e) => {
                return Err(vec![config_error(
                    dir.to_path_buf(),
                    None,
                    format!("cannot read the templates directory: {e}"),
                )]);
            }
        };
        for sub in subdirs.flatten() {
            let sub_path = sub.path();
            // `console/` holds the console's pages, built into the binary (`http::console`).
            if !sub_path.is_dir() || sub.file_name() == "console" {
                continue;
            }
            let Ok(files) = std::fs::read_dir(&sub_path) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if !matches!(ext, "txt" | "subject" | "html") {
                    continue;
                }
                let name = format!(
                    "{}/{}",
                    sub.file_name().to_string_lossy(),
                    file.file_name().to_string_lossy()
                );
                match std::fs::read_to_string(&path) {
                    Ok(source) => match env.add_template_owned(name.clone(), source) {
                        Ok(()) => names.push((name, path)),
                        Err(e) => errors.push(config_error(
                            path,
                            e.line(),
                            format!("template does not compile: {e}"),
                        )),
                    },
                    Err(e) => errors.push(config_error(path, None, format!("cannot read: {e}"))),
                }
            }
        }
        for kind in KINDS {
            if env
                .get_template(&format!("default/{}.txt", kind.as_str()))
                .is_err()
            {
                errors.push(config_error(
                    dir.join("default").join(format!("{}.txt", kind.as_str())),
                    None,
                    "missing: every kind needs a default body template".into(),
                ));
            }
        }
        let sample = sample_context();
        for (name, path) in &names {
            if let Ok(t) = env.get_template(name)
                && let Err(e) = t.render(minijinja::Value::from(minijinja::value::Serde(&sample)))
            {
                errors.push(config_error(
                    path.clone(),
                    e.line(),
                    format!("template does not render: {e}"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(Self {
                env,
                dir: dir.to_path_buf(),
            })
        } else {
            Err(errors)
        }
    }

    fn render_one(&self, name: &str, ctx: &RenderContext) -> Option<String> {
        let t = self.env.get_template(name).ok()?;
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
        let (body_max, subject_max) = limits(channel_type);
        let text = self
            .pick(channel_type, kind, "txt", ctx)
            .unwrap_or_else(|| ctx.summary.clone());
        let subject = self
            .pick(channel_type, kind, "subject", ctx)
            .map(|s| truncate(s.lines().next().unwrap_or(""), subject_max));
        let html = self.render_one(&format!("{channel_type}/{}.html", kind.as_str()), ctx);
        Rendered {
            text: truncate(&text, body_max),
            subject,
            html,
        }
    }
}

/// A plausible incident for test-rendering templates at load.
fn sample_context() -> RenderContext {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(
        "alarm_name".into(),
        "route53-hc-api-example-com-unhealthy".into(),
    );
    labels.insert("region".into(), "us-east-1".into());
    labels.insert("kind".into(), "route53_health_check".into());
    RenderContext {
        kind: "trigger".into(),
        incident: "01JD4Z8X3K7M2Q9R5T6V8W0Y1A".into(),
        severity: "critical".into(),
        status: "triggered".into(),
        summary: "ALARM: route53-hc-api-example-com-unhealthy (us-east-1)".into(),
        description: Some("Route 53 health check reports UNHEALTHY".into()),
        labels,
        count: 1,
        opened_at: "2026-11-20 03:22 UTC".into(),
        step: Some(1),
        people: vec!["Mei Tan".into()],
        recipient: Some("Mei Tan".into()),
        by: Some("Mei Tan".into()),
        link: Some("https://vigil.example.com/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A".into()),
        ack_url: Some("https://vigil.example.com/v1/ack/token".into()),
        channel: "sms".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                assert!(r.text.chars().count() <= limits(ty).0, "{ty}/{kind:?}");
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

    #[test]
    fn a_broken_template_is_refused_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        for sub in std::fs::read_dir(&src).unwrap().flatten() {
            if sub.path().is_dir() {
                let to = dir.path().join(sub.file_name());
                std::fs::create_dir_all(&to).unwrap();
                for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
                    std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
                }
            }
        }
        std::fs::write(
            dir.path().join("sms/trigger.txt"),
            "line one\n{{ summary | nosuchfilter }}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("slack/resolved.txt"), "{% if %}").unwrap();
        let errors = Templates::load(dir.path()).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.file.ends_with("sms/trigger.txt") && e.line == Some(2)),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.file.ends_with("slack/resolved.txt")),
            "{errors:?}"
        );
    }
}
