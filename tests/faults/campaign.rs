//! What the campaign parts share: the summary file, a lock so the heavy parts run one at a time
//! (each wants both cores, and timing-sensitive parts must not starve each other), and a
//! multi-threaded runtime for them.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// `target/fault-campaign.txt` in the repository, whatever `CARGO_TARGET_DIR` says, so
/// `scripts/test` finds it.
pub fn summary_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fault-campaign.txt")
}

/// Prints one summary line and appends it to the summary file.
pub fn report(line: &str) {
    println!("{line}");
    let path = summary_file();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = writeln!(f, "{line}");
    }
}

static HEAVY: Mutex<()> = Mutex::new(());

/// Held for the whole of a heavy part; a failed (panicked) part does not block the others.
pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A runtime on every core: the app under test and its clients share it.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
