//! End-to-end tests of the spine (issue 2) over real QUIC with mutual TLS on loopback:
//! real collector and agent processes, real stores, SIGKILLs. Each test can fail: the oracle is
//! the set of transaction outcomes posted to the agents (their `latency_ms` is a unique marker),
//! which must equal the set stored by the collector, each exactly once.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use storepulse_shared::{Batch, Message, close_code};
use storepulse_tests::quic::{RawConn, client_config, endpoint};
use storepulse_tests::{Agent, AgentSpec, Collector, Pki, assert_exactly_once, wait_for};

const LONG: Duration = Duration::from_secs(60);

async fn setup(terminals: &[&str]) -> Result<(tempfile::TempDir, Pki)> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    for t in terminals {
        pki.issue(t)?;
    }
    Ok((tmp, pki))
}

/// Waits until the collector holds exactly the expected markers for `terminal`.
async fn wait_stored(c: &Collector, terminal: &str, expected: &[u64]) -> Result<()> {
    let want = expected.len();
    let got = wait_for(
        LONG,
        &format!("{want} outcomes of {terminal} stored"),
        || async {
            let m = c.txn_markers(terminal).await.ok()?;
            (m.len() >= want).then_some(m)
        },
    )
    .await?;
    assert_exactly_once(&got, expected.iter().copied())
        .with_context(|| format!("terminal {terminal}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_once_and_show_in_the_terminals_api() -> Result<()> {
    let (tmp, pki) = setup(&["T1"]).await?;
    let c = Collector::start(&tmp.path().join("c"), &pki).await?;
    let a = Agent::start(
        &tmp.path().join("a1"),
        AgentSpec::new("T1", &pki, c.quic_addr()),
    )
    .await?;

    a.post_markers(0..50).await?;
    wait_stored(&c, "T1", &(0..50).collect::<Vec<_>>()).await?;

    // Heartbeats arrive too, and the registry knows the terminal with its labels.
    let t = wait_for(LONG, "T1 online with heartbeats", || async {
        let t = c.terminal("T1").await.ok()??;
        (t["state"] == "online" && t["records_received"].as_u64()? > 50).then_some(t)
    })
    .await?;
    ensure!(t["labels"]["merchant_id"] == "M100", "labels: {t}");
    ensure!(t["labels"]["city"] == "上海", "labels: {t}");
    ensure!(t["agent_version"].is_string(), "agent_version: {t}");
    let recs = c.records("T1").await?;
    ensure!(
        recs.iter().any(|r| r["kind"] == "heartbeat"),
        "no heartbeat stored"
    );
    // records_received counts stored records, each once.
    let received = c.terminal("T1").await?.context("listed")?["records_received"]
        .as_u64()
        .context("count")?;
    let stored = c.records("T1").await?.len() as u64;
    ensure!(
        received >= stored.saturating_sub(2) && received <= stored + 2,
        "received {received} vs stored {stored}"
    );

    // The spool empties once everything is acked.
    wait_for(LONG, "agent spool drained", || async {
        let s = a.status().await.ok()?;
        (s["connected"] == true && s["acked_records_total"].as_u64()? >= 50).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigkill_loses_no_acked_record_and_stores_none_twice() -> Result<()> {
    let ids = ["K1", "K2", "K3"];
    let (tmp, pki) = setup(&ids).await?;
    let mut c = Collector::start(&tmp.path().join("c"), &pki).await?;
    let mut agents = Vec::new();
    for id in ids {
        agents.push(
            Agent::start(
                &tmp.path().join(id),
                AgentSpec::new(id, &pki, c.quic_addr()),
            )
            .await?,
        );
    }

    // Stream outcomes in rounds; kill the collector in the middle of three of them.
    let rounds = 12u64;
    let per_round = 40u64;
    for round in 0..rounds {
        for a in &agents {
            let start = round * per_round;
            a.post_markers(start..start + per_round).await?;
        }
        if round % 4 == 1 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            c.kill9();
            // Outcomes posted while it is down must arrive after the restart.
            for a in &agents {
                let start = 1_000_000 + round * per_round;
                a.post_markers(start..start + per_round).await?;
            }
            c.restart().await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut expected: Vec<u64> = (0..rounds * per_round).collect();
    expected.extend((0..rounds).filter(|r| r % 4 == 1).flat_map(|r| {
        let s = 1_000_000 + r * per_round;
        s..s + per_round
    }));
    for id in ids {
        wait_stored(&c, id, &expected).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigkill_keeps_its_spool_and_loses_nothing() -> Result<()> {
    let (tmp, pki) = setup(&["A1"]).await?;
    let mut c = Collector::start(&tmp.path().join("c"), &pki).await?;
    // Collector down: everything the agent accepts lives only in its spool.
    c.stop()?;
    let mut a = Agent::start(
        &tmp.path().join("a"),
        AgentSpec::new("A1", &pki, c.quic_addr()),
    )
    .await?;
    a.post_markers(0..300).await?;
    a.kill9();
    a.restart().await?;
    let s = a.status().await?;
    ensure!(
        s["spool_records"].as_u64().context("spool_records")? >= 300,
        "spool lost records: {s}"
    );
    a.post_markers(300..400).await?;

    c.restart().await?;
    // Kill the agent again while it drains, then let it finish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill9();
    a.restart().await?;
    wait_stored(&c, "A1", &(0..400).collect::<Vec<_>>()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_for_a_while_backlog_arrives_whole() -> Result<()> {
    let (tmp, pki) = setup(&["B1", "B2"]).await?;
    let mut c = Collector::start(&tmp.path().join("c"), &pki).await?;
    let a1 = Agent::start(
        &tmp.path().join("b1"),
        AgentSpec::new("B1", &pki, c.quic_addr()),
    )
    .await?;
    let a2 = Agent::start(
        &tmp.path().join("b2"),
        AgentSpec::new("B2", &pki, c.quic_addr()),
    )
    .await?;
    a1.post_markers(0..10).await?;
    a2.post_markers(0..10).await?;
    c.stop()?;

    // Down for several seconds: outcomes and heartbeats pile up in the spools.
    for i in 0..5u64 {
        a1.post_markers(10 + i * 100..10 + (i + 1) * 100).await?;
        a2.post_markers(10 + i * 100..10 + (i + 1) * 100).await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let s = a1.status().await?;
    ensure!(s["connected"] == false, "agent thinks it is connected: {s}");
    // The first 10 outcomes were acked before the stop; the 500 after it wait in the spool,
    // beside the telemetry taken while the collector was down.
    let spooled = s["spool_records"].as_u64().context("n")?;
    ensure!(spooled > 500, "spool: {s}");
    let telemetry_before = spooled - 500;

    c.restart().await?;
    let expected: Vec<u64> = (0..510).collect();
    wait_stored(&c, "B1", &expected).await?;
    wait_stored(&c, "B2", &expected).await?;
    // The telemetry taken while the collector was down arrived too.
    let telemetry = c
        .records("B1")
        .await?
        .iter()
        .filter(|r| r["kind"] != "txn_outcome")
        .count() as u64;
    ensure!(
        telemetry >= telemetry_before,
        "{telemetry} telemetry records stored, {telemetry_before} were spooled while down"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_revoked_and_impostor_certificates_are_refused() -> Result<()> {
    let (tmp, pki) = setup(&["GOOD", "REVOKED", "VICTIM"]).await?;
    let other = Pki::init(&tmp.path().join("other-pki"))?;
    other.issue("FOREIGN")?;
    pki.revoke("REVOKED")?;
    let c = Collector::start(&tmp.path().join("c"), &pki).await?;

    // A certificate from another CA (the agent trusts our CA, so only its own cert is foreign).
    let mut foreign = AgentSpec::new("FOREIGN", &other, c.quic_addr());
    foreign.ca = pki.ca();
    let foreign = Agent::start(&tmp.path().join("foreign"), foreign).await?;
    // A revoked certificate.
    let revoked = Agent::start(
        &tmp.path().join("revoked"),
        AgentSpec::new("REVOKED", &pki, c.quic_addr()),
    )
    .await?;
    // A Hello that names another terminal than its certificate.
    let mut impostor = AgentSpec::new("VICTIM", &pki, c.quic_addr());
    impostor.cert_terminal = "GOOD".into();
    let impostor = Agent::start(&tmp.path().join("impostor"), impostor).await?;
    // And an honest agent beside them.
    let good_spec = AgentSpec::new("GOOD", &pki, c.quic_addr());
    let good_dir = tmp.path().join("good");
    for a in [&foreign, &revoked, &impostor] {
        a.post_markers(0..5).await?;
    }

    // Each refused agent reports an error and never connects.
    for a in [&foreign, &revoked, &impostor] {
        wait_for(LONG, "refusal reported by the agent", || async {
            let s = a.status().await.ok()?;
            (s["connected"] == false && s["last_error"].is_string()).then_some(())
        })
        .await
        .with_context(|| a.spec.terminal_id.clone())?;
    }
    let good = Agent::start(&good_dir, good_spec).await?;
    good.post_markers(0..5).await?;
    wait_stored(&c, "GOOD", &[0, 1, 2, 3, 4]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in ["FOREIGN", "REVOKED", "VICTIM"] {
        ensure!(c.terminal(id).await?.is_none(), "{id} was admitted");
    }
    // The impostor's records did not land under the certificate's terminal either.
    ensure!(
        c.txn_markers("GOOD").await?.len() == 5,
        "impostor records stored under GOOD"
    );
    let s = impostor.status().await?;
    ensure!(s["connected"] == false, "impostor connected: {s}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_close_only_that_connection() -> Result<()> {
    let (tmp, pki) = setup(&["HONEST", "RAW"]).await?;
    let c = Collector::start(&tmp.path().join("c"), &pki).await?;
    let honest = Agent::start(
        &tmp.path().join("h"),
        AgentSpec::new("HONEST", &pki, c.quic_addr()),
    )
    .await?;
    honest.post_markers(0..20).await?;

    let ep = endpoint()?;
    let cfg = || client_config(&pki.ca(), &pki.cert("RAW"), &pki.key("RAW"));

    // Garbage where a Hello should be.
    let mut garbage = RawConn::connect(&ep, cfg()?, c.quic_addr()).await?;
    garbage
        .write_raw(&[0x01, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
        .await?;
    let code = garbage.closed_code(Duration::from_secs(10)).await?;
    ensure!(
        code == u64::from(close_code::PROTOCOL_ERROR),
        "garbage closed with {code}"
    );

    // An unknown frame type.
    let mut unknown = RawConn::connect(&ep, cfg()?, c.quic_addr()).await?;
    unknown.write_raw(&[0x7e, 0, 0, 0, 0]).await?;
    let code = unknown.closed_code(Duration::from_secs(10)).await?;
    ensure!(
        code == u64::from(close_code::PROTOCOL_ERROR),
        "unknown type closed with {code}"
    );

    // A header announcing 2 GiB: refused from the header alone.
    let mut huge = RawConn::connect(&ep, cfg()?, c.quic_addr()).await?;
    huge.write_raw(&[0x02, 0x80, 0, 0, 0]).await?;
    let code = huge.closed_code(Duration::from_secs(10)).await?;
    ensure!(
        code == u64::from(close_code::FRAME_TOO_LARGE),
        "oversized closed with {code}"
    );

    // A Batch before any Hello.
    let mut early = RawConn::connect(&ep, cfg()?, c.quic_addr()).await?;
    early
        .send(&Message::Batch(Batch {
            batch_id: 1,
            records: Vec::new(),
        }))
        .await?;
    let code = early.closed_code(Duration::from_secs(10)).await?;
    ensure!(
        code == u64::from(close_code::PROTOCOL_ERROR),
        "batch before hello closed with {code}"
    );

    // The honest agent never noticed.
    honest.post_markers(20..40).await?;
    wait_stored(&c, "HONEST", &(0..40).collect::<Vec<_>>()).await?;
    ensure!(
        c.terminal("RAW").await?.is_none(),
        "RAW admitted without a valid Hello"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_full_keeps_transactions_over_heartbeats_and_reports_drops() -> Result<()> {
    let (tmp, pki) = setup(&["F1"]).await?;
    let mut c = Collector::start(&tmp.path().join("c"), &pki).await?;
    c.stop()?;
    let mut spec = AgentSpec::new("F1", &pki, c.quic_addr());
    spec.spool_max_bytes = SPOOL_BOUND;
    let a = Agent::start(&tmp.path().join("a"), spec).await?;

    // Fill the spool with outcomes, close to its bound, while heartbeats keep coming: once it
    // is full, heartbeats must give way and outcomes must stay.
    let mut posted = 0u64;
    loop {
        let s = a.status().await?;
        let used = s["spool_bytes"].as_u64().context("spool_bytes")?;
        let room = SPOOL_BOUND.saturating_sub(used);
        let chunk = match room {
            r if r > 3000 => 50,
            r if r > 300 => 1,
            _ => break,
        };
        a.post_markers(posted..posted + chunk).await?;
        posted += chunk;
        ensure!(posted < 100_000, "spool never filled: {s}");
    }
    let s = wait_for(LONG, "heartbeats shed", || async {
        let s = a.status().await.ok()?;
        (s["dropped"]["heartbeats"].as_u64()? > 0).then_some(s)
    })
    .await?;
    ensure!(
        s["dropped"]["txn_outcomes"] == 0,
        "outcomes dropped while heartbeats could go: {s}"
    );

    c.restart().await?;
    wait_stored(&c, "F1", &(0..posted).collect::<Vec<_>>()).await?;
    wait_for(LONG, "drop count at the collector", || async {
        let t = c.terminal("F1").await.ok()??;
        (t["spool_drops"]["heartbeats"].as_u64()? > 0).then_some(())
    })
    .await?;
    Ok(())
}

/// Spool bound for the spool-full test: small enough to fill in a second.
const SPOOL_BOUND: u64 = 64 * 1024;
