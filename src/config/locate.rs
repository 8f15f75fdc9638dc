//! Finds the line of a key path (`policies.critical.steps[1].via`) in YAML text, so that a
//! semantic error found after parsing can still say `routing/policy.yaml:14`.
//!
//! In: the file text and a path of [`PathSeg`]s. Out: a 1-based line number.
//!
//! The parser (yaml_serde) gives locations for its own errors but keeps no positions on the
//! parsed values, so compile-time errors are located by walking the text by indentation: block
//! mappings (`key:`, quoted keys, and the first key of a list item `- key:`), block sequences
//! (`- item`, also the indentless `key:\n- item` form), comments and `---`. Flow collections
//! (`{ a: 1 }`, `[a, b]`) are not entered: a path into one resolves to the line the collection
//! starts on, which is exact for the usual single-line flow style.

use std::fmt;

/// A problem found by a builder shared with the API (silences, inhibition rules, the watchdog):
/// the key path relative to what it built, and what is wrong. `compile` locates it in the file.
pub type Problem = (Vec<PathSeg>, String);

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A sequence index (0-based).
    Index(usize),
}

impl From<&str> for PathSeg {
    fn from(k: &str) -> Self {
        Self::Key(k.to_string())
    }
}

impl From<String> for PathSeg {
    fn from(k: String) -> Self {
        Self::Key(k)
    }
}

impl From<usize> for PathSeg {
    fn from(i: usize) -> Self {
        Self::Index(i)
    }
}

/// Renders a path the way errors show it: `policies.critical.steps[1].via[0]`.
pub fn render(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A displayable key path; `Display` is [`render`].
pub struct KeyPath<'a>(pub &'a [PathSeg]);

impl fmt::Display for KeyPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(self.0))
    }
}

/// The 1-based line of `path` in `text`.
///
/// Best effort by design: when the full path cannot be followed (the last key is missing, or the
/// path goes into a flow collection or a scalar) the line of the deepest segment that was found is
/// returned, which is where an operator would look (for "missing key `low`" that is the line of
/// `severities:`). `None` only when not even the first segment exists.
pub fn line_of(text: &str, path: &[PathSeg]) -> Option<usize> {
    locate(text, path).map(|(line, _)| line)
}

/// Like [`line_of`], but only when every segment of the path was found.
pub fn exact_line_of(text: &str, path: &[PathSeg]) -> Option<usize> {
    match locate(text, path) {
        Some((line, found)) if found == path.len() => Some(line),
        _ => None,
    }
}

/// A content line: comment stripped, trailing space trimmed.
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// Where a node's content begins: line index and byte column.
type Pos = (usize, usize);

/// Returns (1-based line of the deepest found segment, number of segments found).
fn locate(text: &str, path: &[PathSeg]) -> Option<(usize, usize)> {
    let lines = prepare(text);
    let mut node = first_content(&lines, 0).map(|i| (i, lines[i].as_ref().map_or(0, |l| l.indent)));
    let mut best = None;
    let mut found = 0;
    for seg in path {
        let Some(pos) = node else { break };
        let hit = match seg {
            PathSeg::Key(k) => find_key(&lines, pos, k),
            PathSeg::Index(n) => find_item(&lines, pos, *n),
        };
        let Some((line, value)) = hit else { break };
        best = Some(line + 1);
        found += 1;
        node = value;
    }
    best.map(|line| (line, found))
}

fn prepare(text: &str) -> Vec<Option<Line<'_>>> {
    text.lines()
        .map(|raw| {
            let text = strip_comment(raw).trim_end();
            let trimmed = text.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('%') {
                return None;
            }
            Some(Line {
                indent: text.len() - trimmed.len(),
                text,
            })
        })
        .collect()
}

/// Cuts a `# comment` (a `#` at the start or after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let prev = if i == 0 { b' ' } else { bytes[i - 1] };
        match quote {
            Some(b'"') if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => {
                let token_start = matches!(prev, b' ' | b'\t' | b':' | b'[' | b'{' | b',' | b'-');
                if (b == b'"' || b == b'\'') && (i == 0 || token_start) {
                    quote = Some(b);
                } else if b == b'#' && (i == 0 || prev == b' ' || prev == b'\t') {
                    return &line[..i];
                }
            }
        }
        i += 1;
    }
    line
}

fn is_doc_marker(l: &Line<'_>) -> bool {
    l.indent == 0 && (l.text.starts_with("---") || l.text.starts_with("..."))
}

/// The first content line at or after `from`, skipping a leading `---`.
fn first_content(lines: &[Option<Line<'_>>], from: usize) -> Option<usize> {
    (from..lines.len()).find(|&i| lines[i].as_ref().is_some_and(|l| !is_doc_marker(l)))
}

fn is_dash(s: &str) -> bool {
    s == "-" || s.starts_with("- ")
}

/// Parses `key:` at the start of `s`: the key (unquoted) and the byte offset just after the colon.
fn parse_key(s: &str) -> Option<(String, usize)> {
    let (key, rest_at) = match s.as_bytes().first()? {
        b'"' => {
            let mut key = String::new();
            let mut chars = s.char_indices().skip(1);
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            key.push(e);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => key.push(c),
                }
            }
            (key, end?)
        }
        b'\'' => {
            let mut key = String::new();
            let mut chars = s.char_indices().skip(1).peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                        chars.next();
                        key.push('\'');
                        continue;
                    }
                    end = Some(i + 1);
                    break;
                }
                key.push(c);
            }
            (key, end?)
        }
        b'[' | b'{' | b'#' | b'|' | b'>' | b'?' | b'&' | b'*' | b'!' => return None,
        _ if is_dash(s) => return None,
        _ => {
            let colon = s
                .char_indices()
                .find(|&(i, c)| c == ':' && s[i + 1..].chars().next().is_none_or(|n| n == ' '))
                .map(|(i, _)| i)?;
            return Some((s[..colon].trim_end().to_string(), colon + 1));
        }
    };
    let after = &s[rest_at..];
    let spaces = after.len() - after.trim_start().len();
    let after = after.trim_start();
    if after.starts_with(':') && after[1..].chars().next().is_none_or(|n| n == ' ') {
        Some((key, rest_at + spaces + 1))
    } else {
        None
    }
}

/// Where the value of a key whose colon ends at `(line, after)` begins; `None` for scalars
/// and block scalars, which have no children to look into.
fn value_pos(lines: &[Option<Line<'_>>], line: usize, after: usize, key_col: usize) -> Option<Pos> {
    let text = lines[line].as_ref()?.text;
    let rest = &text[after..];
    let trimmed = rest.trim_start();
    if !trimmed.is_empty() {
        if trimmed.starts_with('|') || trimmed.starts_with('>') {
            return None;
        }
        // `key: &anchor` / `key: !tag` followed by a block on the next lines.
        let is_prop =
            (trimmed.starts_with('&') || trimmed.starts_with('!')) && !trimmed.contains(' ');
        if !is_prop {
            return Some((line, after + rest.len() - trimmed.len()));
        }
    }
    let next = first_content(lines, line + 1)?;
    let l = lines[next].as_ref()?;
    if l.indent > key_col || (l.indent == key_col && is_dash(&l.text[l.indent..])) {
        Some((next, l.indent))
    } else {
        None
    }
}

/// Finds key `k` in the block mapping whose first key is at `pos`.
fn find_key(
    lines: &[Option<Line<'_>>],
    (start, col): Pos,
    k: &str,
) -> Option<(usize, Option<Pos>)> {
    let first = lines[start].as_ref()?;
    let (key, after) = parse_key(first.text.get(col..)?)?;
    if key == k {
        return Some((start, value_pos(lines, start, col + after, col)));
    }
    for i in start + 1..lines.len() {
        let Some(l) = lines[i].as_ref() else { continue };
        if is_doc_marker(l) || l.indent < col {
            break;
        }
        if l.indent > col {
            continue;
        }
        let rest = &l.text[col..];
        if is_dash(rest) {
            // An indentless sequence, the value of the previous key.
            continue;
        }
        let (key, after) = parse_key(rest)?;
        if key == k {
            return Some((i, value_pos(lines, i, col + after, col)));
        }
    }
    None
}

/// Finds item `n` of the block sequence whose first dash is at `pos`.
fn find_item(
    lines: &[Option<Line<'_>>],
    (start, col): Pos,
    n: usize,
) -> Option<(usize, Option<Pos>)> {
    let first = lines[start].as_ref()?;
    if !is_dash(first.text.get(col..)?) {
        return None;
    }
    let mut seen = 0;
    for i in start..lines.len() {
        let Some(l) = lines[i].as_ref() else { continue };
        if i > start {
            if is_doc_marker(l) || l.indent < col {
                break;
            }
            if l.indent > col {
                continue;
            }
            if !is_dash(&l.text[col..]) {
                break;
            }
        }
        if seen == n {
            let after = &l.text[col + 1..];
            let trimmed = after.trim_start();
            let value = if trimmed.is_empty() {
                first_content(lines, i + 1)
                    .and_then(|j| lines[j].as_ref().map(|m| (j, m.indent)))
                    .filter(|&(_, indent)| indent > col)
            } else {
                Some((i, col + 1 + after.len() - trimmed.len()))
            };
            return Some((i, value));
        }
        seen += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(segs: &[PathSeg]) -> Vec<PathSeg> {
        segs.to_vec()
    }

    fn k(s: &str) -> PathSeg {
        PathSeg::Key(s.into())
    }

    fn i(n: usize) -> PathSeg {
        PathSeg::Index(n)
    }

    const POLICY: &str = r#"# Escalation policies.
timezone: Asia/Singapore   # the desk's zone

policies:
  critical:
    steps:
      - after: 0m
        targets: [{ schedule: primary }]
        via: [pagerduty, sms, phone]
      # the CTO next
      - after: 5m
        targets:
          - person: cto
          - schedule: "secondary"
        via:
          - pagerduty
          - sms
    repeat: 0
  "quoted name":
    steps: []
rules:
- name: first
  matchers: ['kind="x"']
-   name: second
    severity: low
"#;

    #[test]
    fn finds_top_level_and_nested_map_keys() {
        assert_eq!(line_of(POLICY, &p(&[k("timezone")])), Some(2));
        assert_eq!(line_of(POLICY, &p(&[k("policies")])), Some(4));
        assert_eq!(
            line_of(POLICY, &p(&[k("policies"), k("critical")])),
            Some(5)
        );
        assert_eq!(
            line_of(POLICY, &p(&[k("policies"), k("critical"), k("repeat")])),
            Some(18)
        );
        assert_eq!(
            line_of(POLICY, &p(&[k("policies"), k("quoted name"), k("steps")])),
            Some(20)
        );
    }

    #[test]
    fn finds_list_items_and_keys_inside_them() {
        let steps = [k("policies"), k("critical"), k("steps")];
        let at = |rest: &[PathSeg]| {
            let mut path = steps.to_vec();
            path.extend_from_slice(rest);
            exact_line_of(POLICY, &path)
        };
        assert_eq!(at(&[i(0)]), Some(7));
        assert_eq!(at(&[i(0), k("after")]), Some(7));
        assert_eq!(at(&[i(0), k("via")]), Some(9));
        assert_eq!(at(&[i(1)]), Some(11));
        assert_eq!(at(&[i(1), k("after")]), Some(11));
        assert_eq!(at(&[i(1), k("targets"), i(1), k("schedule")]), Some(14));
        assert_eq!(at(&[i(1), k("via"), i(1)]), Some(17));
        assert_eq!(at(&[i(2)]), None);
    }

    #[test]
    fn finds_indentless_sequences_and_odd_item_indents() {
        assert_eq!(
            exact_line_of(POLICY, &p(&[k("rules"), i(0), k("matchers")])),
            Some(23)
        );
        assert_eq!(
            exact_line_of(POLICY, &p(&[k("rules"), i(1), k("severity")])),
            Some(25)
        );
        assert_eq!(exact_line_of(POLICY, &p(&[k("rules"), i(1)])), Some(24));
    }

    #[test]
    fn paths_into_flow_collections_stop_at_the_collection() {
        let path = p(&[
            k("policies"),
            k("critical"),
            k("steps"),
            i(0),
            k("via"),
            i(2),
        ]);
        assert_eq!(line_of(POLICY, &path), Some(9));
        assert_eq!(exact_line_of(POLICY, &path), None);
    }

    #[test]
    fn missing_keys_fall_back_to_the_deepest_found_parent() {
        let path = p(&[k("policies"), k("critical"), k("ack_timeout")]);
        assert_eq!(line_of(POLICY, &path), Some(5));
        assert_eq!(line_of(POLICY, &p(&[k("severities")])), None);
    }

    #[test]
    fn comments_and_quotes_do_not_confuse_the_walk() {
        let text =
            "---\n# a: 1\nb: 'x # not a comment'  # comment\n\"c:d\": 2\nperson: Mei's\ne: 3\n";
        assert_eq!(line_of(text, &p(&[k("b")])), Some(3));
        assert_eq!(line_of(text, &p(&[k("c:d")])), Some(4));
        assert_eq!(line_of(text, &p(&[k("e")])), Some(6));
        assert_eq!(line_of(text, &p(&[k("a")])), None);
    }

    #[test]
    fn renders_paths_like_the_errors_show_them() {
        let path = p(&[
            k("policies"),
            k("critical"),
            k("steps"),
            i(1),
            k("via"),
            i(0),
        ]);
        assert_eq!(render(&path), "policies.critical.steps[1].via[0]");
        assert_eq!(KeyPath(&[i(2), k("name")]).to_string(), "[2].name");
    }
}
