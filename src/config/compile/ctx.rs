//! What every builder shares: the files as read ([`SourceFile`]), the error collector `Ctx`
//! that locates each problem by file, line and key, and the `key_path!` macro that writes a key
//! path.

use std::path::PathBuf;

use crate::config::error::ConfigError;
use crate::config::locate::{PathSeg, Problem, line_of, render};

/// One file of the routing directory, as read from disk.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where it was read from (shown in errors).
    pub path: PathBuf,
    /// Its full text (kept to locate errors by line).
    pub text: String,
}

/// Builds a key path: `key_path!["policies", name, "steps", i]`.
macro_rules! key_path {
    ($($seg:expr),* $(,)?) => { vec![$($crate::config::locate::PathSeg::from($seg)),*] };
}
pub(super) use key_path;

/// Error collector with access to the file texts, to locate each error.
pub(super) struct Ctx<'a> {
    pub(super) files: &'a [SourceFile],
    /// What has been found so far, in the order it was found.
    pub(super) errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    /// Records a problem at key `path` of file `file`.
    pub(super) fn err(&mut self, file: usize, path: Vec<PathSeg>, message: impl Into<String>) {
        let f = &self.files[file];
        self.errors.push(ConfigError {
            file: f.path.clone(),
            line: line_of(&f.text, &path),
            key: render(&path),
            message: message.into(),
        });
    }

    /// `file:line` of a key, for messages that point at a second place.
    pub(super) fn place(&self, file: usize, path: Vec<PathSeg>) -> String {
        let f = &self.files[file];
        match line_of(&f.text, &path) {
            Some(line) => format!("{}:{line}", f.path.display()),
            None => f.path.display().to_string(),
        }
    }
}

/// A value and the index of the file it came from.
pub(super) type InFile<'a, T> = (usize, &'a T);

/// Reports problems found by a shared builder (silences, inhibition rules, the watchdog) under
/// `base` in file `fi`.
pub(super) fn report(ctx: &mut Ctx<'_>, fi: usize, base: Vec<PathSeg>, problems: Vec<Problem>) {
    for (rest, message) in problems {
        ctx.err(fi, [base.clone(), rest].concat(), message);
    }
}
