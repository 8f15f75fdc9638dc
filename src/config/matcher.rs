//! The Alertmanager matcher language: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`, as
//! written in rules, silences (in `routing/` and through the API) and inhibition rules.
//!
//! In: the text of one matcher. Out: a [`Matcher`] that evaluates against an alert's labels (a
//! missing label matches as the empty string), or a [`MatcherError`] saying what is wrong.
//! Regexes are anchored (`^(?:re)$`, like Alertmanager) and bounded in the memory they compile to
//! ([`REGEX_SIZE_LIMIT`], [`REGEX_DFA_SIZE_LIMIT`]). The label-name grammar is
//! [`crate::domain::is_label_name`], shared with ingest. Pure.

use std::fmt;

use regex::Regex;

use crate::domain::{Labels, is_label_name};

/// One Alertmanager label matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator (with the compiled regex for `=~`/`!~`).
    pub op: MatchOp,
    /// The value as written (unescaped), also the regex source for `=~`/`!~`.
    pub value: String,
}

/// A matcher operator.
#[derive(Debug, Clone)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`: the whole value must match (anchored as `^(?:re)$`, like Alertmanager).
    Regex(Regex),
    /// `!~`
    NotRegex(Regex),
}

/// Why a matcher did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at the start")]
    Name,
    #[error("expected =, !=, =~ or !~ after the label name")]
    Operator,
    #[error("the value must be in double quotes, like name=\"value\"")]
    Unquoted,
    #[error("the quoted value has no closing quote")]
    Unterminated,
    #[error("unknown escape \\{0} in the value (only \\\" and \\\\ are allowed)")]
    Escape(char),
    #[error("unexpected text after the closing quote: {0:?}")]
    Trailing(String),
    #[error("invalid regular expression: {0}")]
    Regex(String),
    /// Over [`REGEX_SIZE_LIMIT`]: a pathological pattern such as `((a{50}){50}){50}`.
    #[error(
        "the regular expression is too large: it compiles to more than {} KiB (the limit); write a simpler pattern (fewer or smaller repetitions; ASCII classes such as [a-z0-9_] rather than Unicode \\w)",
        REGEX_SIZE_LIMIT / 1024
    )]
    TooLarge,
}

/// Most memory one matcher's regular expression may compile to (the regex crate's `size_limit`),
/// for `routing/` and API-made matchers alike. Ordinary label patterns (`rds-.*`,
/// `timeout|http_5xx`) take a few KiB at most.
pub const REGEX_SIZE_LIMIT: usize = 64 * 1024;
/// Most memory one matcher's lazy DFA may cache (the regex crate's `dfa_size_limit`); past it
/// the regex crate falls back to a slower engine rather than growing.
pub const REGEX_DFA_SIZE_LIMIT: usize = 256 * 1024;

impl Matcher {
    /// Parses Alertmanager matcher syntax. Spaces around the operator are allowed.
    pub fn parse(s: &str) -> Result<Self, MatcherError> {
        let s = s.trim();
        let name_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let name = &s[..name_len];
        if !is_label_name(name) {
            return Err(MatcherError::Name);
        }
        let rest = s[name_len..].trim_start();
        let (op, rest) = ["=~", "!~", "!=", "="]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|r| (*op, r)))
            .ok_or(MatcherError::Operator)?;
        let rest = rest.trim_start();
        let quoted = rest.strip_prefix('"').ok_or(MatcherError::Unquoted)?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(MatcherError::Unterminated),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('"' | '\\'))) => value.push(c),
                    Some((_, c)) => return Err(MatcherError::Escape(c)),
                    None => return Err(MatcherError::Unterminated),
                },
                Some((_, c)) => value.push(c),
            }
        };
        let trailing = quoted[end + 1..].trim();
        if !trailing.is_empty() {
            return Err(MatcherError::Trailing(trailing.to_string()));
        }
        let anchored = || {
            regex::RegexBuilder::new(&format!("^(?:{value})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(_) => MatcherError::TooLarge,
                    e => MatcherError::Regex(regex_message(&e)),
                })
        };
        let op = match op {
            "=" => MatchOp::Equal,
            "!=" => MatchOp::NotEqual,
            "=~" => MatchOp::Regex(anchored()?),
            _ => MatchOp::NotRegex(anchored()?),
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value,
        })
    }

    /// Evaluates against `labels`; a missing label matches as the empty string (Alertmanager).
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match &self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex(re) => re.is_match(v),
            MatchOp::NotRegex(re) => !re.is_match(v),
        }
    }
}

/// Two matchers are equal when they are written the same (same name, operator and value).
impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex(_) => "=~",
            MatchOp::NotRegex(_) => "!~",
        };
        let escaped = self.value.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, "{}{op}\"{escaped}\"", self.name)
    }
}

/// regex errors span several lines (pattern, caret, message); keep the message line.
fn regex_message(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The message for a key that is not a label name, wherever `routing/` names a label.
pub(crate) fn not_a_label_name(name: &str) -> String {
    format!("{name:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::labels;

    #[test]
    fn matchers_evaluate_like_alertmanager() {
        let l = labels(&[
            ("kind", "exchange_error"),
            ("error", "http_5xx"),
            ("path", r#"a"b\c"#),
        ]);
        let cases: &[(&str, bool)] = &[
            (r#"kind="exchange_error""#, true),
            (r#"kind="exchange""#, false),
            (r#"kind!="exchange""#, true),
            (r#"kind!="exchange_error""#, false),
            (r#"error=~"timeout|http_5xx""#, true),
            (r#"error=~"http""#, false), // anchored: no substring match
            (r#"error=~"http_.*""#, true),
            (r#"error!~"timeout|http_5xx""#, false),
            (r#"error!~"rate_.*""#, true),
            (r#"missing="""#, true), // a missing label is ""
            (r#"missing!="""#, false),
            (r#"missing=~".*""#, true),
            (r#"missing=~".+""#, false),
            (r#"missing!="x""#, true),
            (r#"path="a\"b\\c""#, true),
            (r#"  kind = "exchange_error"  "#, true),
        ];
        for (text, want) in cases {
            let m = Matcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.matches(&l), *want, "{text}");
        }
    }

    #[test]
    fn bad_matchers_say_what_is_wrong() {
        let cases: &[(&str, MatcherError)] = &[
            (r#"1kind="x""#, MatcherError::Name),
            (r#"="x""#, MatcherError::Name),
            (r#"kind"#, MatcherError::Operator),
            (r#"kind=="x""#, MatcherError::Unquoted),
            (r#"kind=x"#, MatcherError::Unquoted),
            (r#"kind="x"#, MatcherError::Unterminated),
            (r#"kind="\d""#, MatcherError::Escape('d')),
            (r#"kind="x" y"#, MatcherError::Trailing("y".into())),
        ];
        for (text, want) in cases {
            assert_eq!(Matcher::parse(text).unwrap_err(), *want, "{text}");
        }
        let Err(MatcherError::Regex(msg)) = Matcher::parse(r#"error=~"(timeout""#) else {
            panic!("an unclosed group is a regex error");
        };
        assert!(msg.contains("unclosed group"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn matchers_display_in_the_syntax_they_were_written_in() {
        for text in [r#"kind="x""#, r#"a!="b\"c""#, r#"e=~"t|h""#, r#"e!~"\\.""#] {
            assert_eq!(Matcher::parse(text).unwrap().to_string(), text);
        }
    }
}
