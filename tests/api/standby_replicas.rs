//! Issue 12: the standby runs as several replicas on one shared Redis (the DR overlay), and its
//! role lives in that store (`peer`/`role`), so one hand-back reaches every replica. Real
//! `vigil serve` processes on loopback: a primary on its own disk and two standby replicas on a
//! redis-server of the test's own; the primary follows ONE replica (in production the
//! standby's Service, which reaches any one pod).

use std::process::Command;
use std::time::{Duration, Instant};

use wiremock::MockServer;

use crate::helpers::*;
use crate::standby::{
    PEER_TOKEN, POLL, TAKEOVER_AFTER, UNREACHABLE, assert_each_once, base, open_entry, pages,
    past_the_duplicate_window, peer_view, policy, post_halt, redis, sink, step, until, wait_page,
};

/// `vigil serve` on `--redis url` (the replicas' one store) or `--data dir`, with `peer_flags`.
fn serve(config: &std::path::Path, store: [&str; 2], port: u16, peer_flags: &[String]) -> Proc {
    let mut cmd = serve_command(
        crate::VIGIL,
        config,
        &[store[0].as_ref(), store[1].as_ref()],
        port,
    );
    cmd.args(peer_flags)
        .args(["--takeover-after", "3s"])
        .env("VIGIL_PEER_TOKENS", PEER_TOKEN);
    cmd.spawn().map(Proc).expect("vigil binary starts")
}

/// The step `b` shows for the open incident `summary`: `(loop, step)` of the next one due.
async fn position(http: &reqwest::Client, b: &str, summary: &str) -> Option<(u64, u64)> {
    let i = open_entry(http, b, summary).await?;
    Some((i["loop_"].as_u64().unwrap_or(0), i["step"].as_u64()?))
}

#[tokio::test]
async fn one_hand_back_through_one_replica_closes_every_replica_and_no_step_is_paged_twice() {
    let sink: MockServer = sink().await;
    let mut store = redis();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", store.1)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let redis_url = format!("redis://127.0.0.1:{}", store.1);
    let dir = tempfile::tempdir().unwrap();
    let config = policy(dir.path(), &sink.uri(), ["0s", "6s", "1h"]);
    let (p_port, a_port, b_port) = (free_port(), free_port(), free_port());
    let (p, a, b) = (base(p_port), base(a_port), base(b_port));
    let primary_data = dir.path().join("primary");
    let primary_store = ["--data", primary_data.to_str().unwrap()];
    let to_a = ["--peer".to_string(), a.clone()];
    let follow_p = ["--standby-of".to_string(), p.clone()];
    let mut primary = serve(&config, primary_store, p_port, &to_a);
    let _a = serve(&config, ["--redis", &redis_url], a_port, &follow_p);
    let _b = serve(&config, ["--redis", &redis_url], b_port, &follow_p);
    let http = reqwest::Client::new();
    for side in [&p, &a, &b] {
        wait_ready(&http, side).await;
    }
    until(
        "all three saw their peer",
        Duration::from_secs(30),
        || async {
            let pv = peer_view(&http, &p).await;
            let (av, bv) = (peer_view(&http, &a).await, peer_view(&http, &b).await);
            pv["held"] == false
                && pv["peer_last_seen"].is_string()
                && [av, bv]
                    .iter()
                    .all(|v| v["role"] == "standby" && v["peer_last_seen"].is_string())
        },
    )
    .await;

    // Mid-escalation: the primary paged step 0, the replicas' store has it, then SIGKILL.
    post_halt(&http, "across", &[&p, &a]).await;
    wait_page(&sink, "across", &step(0, 0), Duration::from_secs(5)).await;
    until("the replicas mirrored step 0", POLL * 3, || async {
        position(&http, &b, "across").await == Some((0, 1))
    })
    .await;
    past_the_duplicate_window(&http, &b, "across").await;
    primary.kill().unwrap();
    primary.wait().unwrap();
    until(
        "both replicas are active",
        TAKEOVER_AFTER + POLL * 4,
        || async {
            peer_view(&http, &a).await["role"] == "active-standby"
                && peer_view(&http, &b).await["role"] == "active-standby"
        },
    )
    .await;
    wait_page(&sink, UNREACHABLE, &step(0, 0), POLL * 2).await;
    wait_page(&sink, "across", &step(0, 1), Duration::from_secs(10)).await;

    // The primary returns on its data: it holds (its replica says active) and mirrors.
    primary = serve(&config, primary_store, p_port, &to_a);
    wait_ready(&http, &p).await;
    until("the restarted primary holds", POLL * 3, || async {
        let v = peer_view(&http, &p).await;
        v["held"] == true && v["peer_role"] == "active-standby"
    })
    .await;
    // An incident opened while the replicas page, its step 1 due right after the hand-back.
    post_halt(&http, "at-hand-back", &[&p, &a]).await;
    wait_page(&sink, "at-hand-back", &step(0, 0), Duration::from_secs(5)).await;
    until(
        "the primary mirrored what the replicas fired",
        POLL * 3,
        || async {
            position(&http, &p, "across").await == Some((0, 2))
                && position(&http, &p, "at-hand-back").await == Some((0, 1))
        },
    )
    .await;

    // One command, through replica A only.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["hand-back", "--url", &a])
        .env("VIGIL_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vigil hand-back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let handed = Instant::now();
    until(
        "replica B, never asked, is standby too",
        POLL * 2 + Duration::from_secs(1),
        || async { peer_view(&http, &b).await["role"] == "standby" },
    )
    .await;
    let bv = peer_view(&http, &b).await;
    assert_eq!(bv["role_record"]["role"], "standby", "{bv}");
    assert_eq!(bv["paging"], false, "{bv}");
    // Closed well within the drain (poll + feed timeout + 1 s): its feed still says active.
    assert_eq!(bv["shared_role"], "active-standby", "{bv}");
    assert_eq!(bv["handing_back"], true, "{bv}");
    // The primary opens only once every replica had the time to close (the drain).
    until(
        "the primary pages again",
        Duration::from_secs(15),
        || async { peer_view(&http, &p).await["held"] == false },
    )
    .await;
    eprintln!(
        "hand-back: the primary paged again {:?} after it",
        handed.elapsed()
    );
    wait_page(&sink, "at-hand-back", &step(0, 1), Duration::from_secs(15)).await;
    tokio::time::sleep(POLL).await;
    let pages = pages(&sink).await;
    assert_each_once(&pages);
    assert!(
        pages.contains_key(&("across".to_string(), step(0, 1))),
        "{pages:?}"
    );
    for side in [&a, &b] {
        let v = peer_view(&http, side).await;
        assert_eq!(v["role"], "standby", "{side}: {v}");
        assert_eq!(v["shared_role"], "standby", "{side}: {v}");
        assert_eq!(v["handing_back"], false, "{side}: {v}");
    }
    drop(primary);
    store.0.kill().unwrap();
}
