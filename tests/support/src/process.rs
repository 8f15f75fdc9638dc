//! Real `vigil serve` processes: started with the tests' tokens and the shipped templates, waited
//! for until ready, and killed (SIGKILL) when dropped, so a failing test leaves no server behind
//! (an orphan would also hold the test runner's output open).

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::{INGEST_TOKEN, OPERATOR_TOKEN, shipped_templates};

/// A child process that is killed when dropped.
pub struct Proc(pub Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Proc {
    /// Spawns `cmd`.
    pub fn spawn(mut cmd: Command) -> Self {
        Self(cmd.spawn().expect("vigil binary starts"))
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port on loopback")
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// `vigil serve` (the binary at `bin`: a test passes `env!("CARGO_BIN_EXE_vigil")`, which only
/// vigil's own test binaries know) on `port`, with the policy in `config`, the store flags
/// `store`, the shipped templates and the tests' tokens; its log level `RUST_LOG=warn` and its
/// stdout only with `TEST_LOG`.
pub fn serve_command(bin: &str, config: &Path, store: &[&OsStr], port: u16) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(config)
        .args(store)
        .arg("--templates")
        .arg(shipped_templates())
        .env("VIGIL_INGEST_TOKENS", INGEST_TOKEN)
        .env("VIGIL_OPERATOR_TOKENS", OPERATOR_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit());
    cmd
}

/// How long a process may take to become ready: bounded for behaviour, generous for a machine
/// whose two cores are busy compiling.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Waits until `base/readyz` answers 200; panics naming `base` after [`READY_WITHIN`].
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("vigil did not become ready at {base} within {READY_WITHIN:?}");
}

/// SIGTERM, then the exit status within 15 s (vigil's drain limit is shorter).
pub async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(term.success(), "kill -TERM {}", child.id());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("the child's status can be read") {
            return status;
        }
        assert!(Instant::now() < deadline, "vigil did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
