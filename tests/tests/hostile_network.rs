//! Hostile networks: real agents (redb spool, QUIC link) reach an in-process collector only
//! through the user-space impairment proxy (`storepulse_tests::impair`; the kernel here has no
//! netem). Under 20 % loss, 300 ms ± 100 ms delay, a partition longer than the idle timeout and
//! an address change mid-connection, every record an agent generated is stored exactly once,
//! nothing acked is ever missing from the store, and detection still finds the right incident.
//!
//! Each test checks the impairment really happened (packets lost, acks slow, connections dead,
//! addresses changed), so a proxy that silently passed everything through would fail them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use storepulse_sim::Scenario;
use storepulse_tests::impair::{Impairment, Rig, ack_latency, percentile, records_received};
use storepulse_tests::live::LiveUplink;
use storepulse_tests::replay::{LiveEvent, Timeline, play, start_fleet};
use storepulse_tests::wait_for;
use tokio::sync::watch;

const AGENTS: usize = 6;

/// Test uplink: quick reconnects; keep-alive and idle timeout short enough that a partition
/// of tens of seconds really kills the connection.
fn uplink() -> LiveUplink {
    LiveUplink {
        keep_alive_secs: 2,
        idle_timeout_secs: 6,
        ..LiveUplink::fast()
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Every generated record stored exactly once, and counted once by the collector.
async fn assert_exact(rig: &Rig, what: &str) -> Result<()> {
    let audit = rig.ledger.audit(rig.collector.store())?;
    ensure!(audit.exact(), "{what}: {audit:?}");
    ensure!(audit.generated > 0, "{what}: nothing generated");
    let counted = rig.counted().await?;
    ensure!(
        counted == audit.generated,
        "{what}: collector counted {counted} new records, generated {}",
        audit.generated
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_loss_both_ways_loses_and_duplicates_nothing() -> Result<()> {
    let mut rig = Rig::start(AGENTS, 501, uplink(), Impairment::loss(0.2)).await?;
    rig.generate(Duration::from_secs(12), ms(200), 2).await?;
    let acked_under_loss = rig.ledger.generated() - rig.ledger.unacked(&rig.fleet);
    ensure!(acked_under_loss > 0, "nothing acked under loss");
    // Drained while the loss is still on: the protocol copes, not just the healed link.
    let took = rig.drain(Duration::from_secs(60)).await?;
    let s = rig.proxy.stats();
    eprintln!("20% loss: drained {took:?} after generation; proxy {s:?}");
    ensure!(
        s.up.lost > s.up.received / 10 && s.down.lost > s.down.received / 10,
        "the loss did not happen: {s:?}"
    );
    rig.proxy.heal();
    assert_exact(&rig, "20% loss").await?;
    rig.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_jittery_delay_slows_acks_but_loses_and_duplicates_nothing() -> Result<()> {
    // 300 ms ± 100 ms each way: a round trip of 400 to 800 ms, with reordering.
    let delay = Impairment::delay(ms(300), ms(100));
    let mut rig = Rig::start(AGENTS, 502, uplink(), delay).await?;
    rig.generate(Duration::from_secs(8), ms(200), 2).await?;
    let mut lat = Vec::new();
    let terminals: Vec<_> = rig.fleet.terminals().cloned().collect();
    for t in terminals.iter().cycle().take(18) {
        lat.push(ack_latency(&mut rig.ledger, &rig.fleet, t, Duration::from_secs(30)).await?);
    }
    let p50 = percentile(&lat, 50.0).context("no sample")?;
    let p99 = percentile(&lat, 99.0).context("no sample")?;
    eprintln!("300±100 ms delay: ack latency p50 {p50:?}, p99 {p99:?}");
    // At least the two shortest one-way delays; bounded.
    ensure!(p50 >= ms(400), "acks faster than the delay allows: {p50:?}");
    ensure!(p99 < Duration::from_secs(15), "acks too slow: {p99:?}");
    rig.drain(Duration::from_secs(60)).await?;
    assert_exact(&rig, "delay").await?;
    rig.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_longer_than_the_idle_timeout_is_spooled_and_drained() -> Result<()> {
    let mut rig = Rig::start(AGENTS, 503, uplink(), Impairment::NONE).await?;
    wait_for(Duration::from_secs(30), "every agent connected", || async {
        (rig.connected() == AGENTS).then_some(())
    })
    .await?;
    rig.generate(Duration::from_secs(2), ms(200), 2).await?;
    rig.proxy.partition(true);
    let cut_at = Instant::now();
    // Generate through the partition, 3.5 idle timeouts long.
    rig.generate(Duration::from_secs(21), ms(300), 2).await?;
    ensure!(
        rig.connected() == 0,
        "{} connections survived a 21 s partition with a 6 s idle timeout",
        rig.connected()
    );
    let spooled = rig.ledger.unacked(&rig.fleet);
    ensure!(spooled > 0, "nothing waited in the spools");
    rig.proxy.partition(false);
    let took = rig.drain(Duration::from_secs(60)).await?;
    eprintln!(
        "partition of {:?}: {spooled} records spooled, drained {took:?} after heal",
        cut_at.elapsed() - took
    );
    ensure!(rig.proxy.stats().up.cut > 0, "the partition cut nothing");
    assert_exact(&rig, "partition").await?;
    rig.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_change_mid_connection_keeps_the_connection_and_every_record() -> Result<()> {
    let mut rig = Rig::start(AGENTS, 504, uplink(), Impairment::NONE).await?;
    wait_for(Duration::from_secs(30), "every agent connected", || async {
        (rig.connected() == AGENTS).then_some(())
    })
    .await?;
    let before = rig.connection_ids();
    for _ in 0..3 {
        rig.generate(Duration::from_secs(3), ms(100), 2).await?;
        let old = rig.proxy.upstream_addrs();
        let moved = rig.proxy.rebind()?;
        ensure!(moved >= AGENTS, "only {moved} flows moved");
        ensure!(
            rig.proxy.upstream_addrs().iter().all(|a| !old.contains(a)),
            "the collector-facing addresses did not change"
        );
    }
    rig.generate(Duration::from_secs(3), ms(100), 2).await?;
    rig.drain(Duration::from_secs(60)).await?;
    // QUIC connection migration: the collector followed each agent to its new address on the
    // same connection; no reconnect was needed.
    let after = rig.connection_ids();
    ensure!(
        before == after,
        "connections changed across the address changes: {before:?} -> {after:?}"
    );
    assert_exact(&rig, "address change").await?;
    rig.shutdown().await
}

/// The live-small scenario's merchant misconfiguration (without its offline store, whose
/// backlog timing at 60x is not what this test is about), played through real agents over a
/// link with 20 % loss and 300 ms ± 100 ms delay each way.
const SCENARIO: &str = r#"
[scenario]
name = "hostile_merchant_config"
description = "A merchant misconfiguration seen through a lossy, slow network."
seed = 77
start = "2026-03-02T12:00:00+08:00"
duration = "20m"

[fleet]
terminals = 200
chains = 3
heartbeat_interval_secs = 30
net_quality_interval_secs = 60

[[fault]]
kind = "merchant_config"
start = "+8m"
end = "+15m"
scope = { merchant = "M0002" }
intensity = 0.9

[[incident]]
kind = "merchant_config"
scope = { merchant = "M0002" }
start = "+8m"
end = "+15m"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_is_still_right_through_loss_and_delay() -> Result<()> {
    let scenario = Scenario::parse("hostile_merchant_config.toml", SCENARIO)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let timeline = Timeline::record(&scenario);
    let observed = timeline
        .events
        .iter()
        .filter(|(_, e)| matches!(e, LiveEvent::Observed(..)))
        .count() as u64;
    let tmp = tempfile::tempdir()?;
    let (collector, pki) = storepulse_tests::live::start_collector(tmp.path()).await?;
    let proxy = storepulse_tests::impair::ImpairProxy::start(collector.quic_addr(), 505).await?;
    proxy.set_both(Impairment::delay(ms(300), ms(100)).with_loss(0.2));
    let mut fleet = start_fleet(
        &tmp.path().join("agents"),
        Path::new(&pki),
        proxy.addr(),
        &scenario,
        LiveUplink::fast(),
    )
    .await?;
    let (_stop_tx, stop_rx) = watch::channel(false);
    let stats = play(
        &timeline,
        &mut fleet,
        60.0,
        scenario.start_ms,
        ms(100),
        stop_rx,
        |_, _| {},
    )
    .await?;
    ensure!(stats.observed == observed, "played {stats:?}");

    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/api/v1/incidents?state=all",
        collector.http_addr()
    );
    let expected = |i: &serde_json::Value| {
        i["kind"] == "merchant_config" && i["scope"]["merchant_id"] == "M0002"
    };
    wait_for(
        Duration::from_secs(60),
        "merchant_config incident for M0002",
        || async {
            let v: serde_json::Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            v["incidents"]
                .as_array()?
                .iter()
                .any(expected)
                .then_some(())
        },
    )
    .await?;
    let s = proxy.stats();
    ensure!(
        s.up.lost > 0 && s.down.lost > 0,
        "the loss did not happen: {s:?}"
    );
    // Every observation arrived exactly once: every spool drains, and the collector counted
    // exactly what was observed.
    let unacked = || -> u64 {
        fleet
            .terminals()
            .filter_map(|t| fleet.agent(t))
            .map(|a| a.status().spool_records)
            .sum()
    };
    let drained = wait_for(Duration::from_secs(90), "every spool drained", || async {
        (unacked() == 0).then_some(())
    })
    .await;
    let counted: u64 = records_received(collector.http_addr())
        .await?
        .values()
        .sum();
    drained.with_context(|| {
        format!(
            "{} records unacked; collector counted {counted} of {observed}; proxy {:?}",
            unacked(),
            proxy.stats()
        )
    })?;
    ensure!(counted == observed, "stored {counted}, observed {observed}");
    // Right means also nothing else once everything is in: the network's misery is not
    // blamed on any merchant, store or terminal.
    let v: serde_json::Value = http.get(&url).send().await?.json().await?;
    let others: Vec<String> = v["incidents"]
        .as_array()
        .context("no incident list")?
        .iter()
        .filter(|i| !expected(i))
        .map(|i| format!("{} {}", i["kind"], i["scope"]))
        .collect();
    ensure!(others.is_empty(), "wrong incidents: {others:?}; all: {v}");
    proxy.heal();
    fleet.shutdown().await;
    collector.shutdown().await?;
    Ok(())
}
