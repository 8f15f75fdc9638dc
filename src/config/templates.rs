//! The message templates (`templates/`): the [`Templates`] of one policy load, read and
//! checked when the policy loads, so a broken template refuses the reload instead of failing a
//! 3 a.m. page. Rendering a message from them is `notify::render`'s (`Templates::render`), which
//! cuts it to the channel type's limits from the registry (`config::channel`).
//!
//! Layout: `templates/<channel type>/<kind>.txt` (the body), `.subject` (a one-line title: email
//! subject, PagerDuty summary) and `.html` (email), for kind `trigger`, `escalate`,
//! `acknowledged`, `resolved` or `test` (a test notification); `templates/default/<kind>.*` is used where a channel type has
//! none of its own, and every kind needs a default body. A new channel type brings its own
//! directory or uses the defaults. Every template is compiled and test-rendered against a sample
//! incident ([`sample_context`]); no check depends on the channel type.

use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::Serialize;

use super::error::ConfigError;
use crate::domain::NotifyKind;

/// Every kind, in the order templates are checked.
pub const KINDS: [NotifyKind; 5] = [
    NotifyKind::Trigger,
    NotifyKind::Escalate,
    NotifyKind::Acknowledged,
    NotifyKind::Resolved,
    NotifyKind::Test,
];

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
    /// The incident opened inside a drill window. A template may say DRILL where it likes;
    /// where the rendered text does not, `notify::render` puts `DRILL: ` in front.
    pub drill: bool,
}

/// The compiled templates of one policy load.
pub struct Templates {
    /// The compiled templates, named `<type>/<kind>.<ext>`.
    env: Environment<'static>,
    /// Where they were read from (shown by `Debug`).
    dir: PathBuf,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Templates({})", self.dir.display())
    }
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

    /// The template named `<type>/<kind>.<ext>`, if there is one.
    pub fn template(&self, name: &str) -> Option<minijinja::Template<'_, '_>> {
        self.env.get_template(name).ok()
    }
}

/// A plausible incident for test-rendering templates at load (and in the render tests).
pub fn sample_context() -> RenderContext {
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
        drill: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
