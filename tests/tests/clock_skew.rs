//! Agent clocks skewed by an hour, end to end (issue 7, faults): raw QUIC clients whose
//! clocks run an hour fast, an hour slow and right send a `Hello` and records stamped with
//! their own clock to the real collector. The collector must measure each offset, flag the
//! skewed terminals (terminals API, `storepulse_fleet_clock_skewed_terminals`), store the
//! corrected times with the agent's own stamp kept beside them, and leave the right clock
//! alone; after a restart the flags are still there. (Detection on corrected times is
//! `collector/core/tests/clock_skew.rs`.)

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use storepulse_shared::{
    Batch, Hello, Identity, Label, LinkType, Message, PROTOCOL_VERSION, PayMethod, Record,
    RecordBody, Scheme, Seq, TerminalId, TxnOutcome,
};
use storepulse_tests::quic::{RawConn, client_config, endpoint};
use storepulse_tests::{Collector, Pki};

const HOUR: i64 = 3_600_000;

fn label(s: &str) -> Label {
    Label::new(s).expect("valid label")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn hello(terminal: &str, skew_ms: i64) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "skew-test".into(),
        spool_epoch: 1,
        identity: Identity {
            terminal_id: TerminalId::new(terminal).expect("valid id"),
            merchant_id: label("M-SKEW"),
            store_id: label("S-SKEW"),
            region: label("east"),
            city: label("上海"),
            acquirer: label("acq-a"),
            qr_channel: label("wechatpay"),
            carrier: label("cmcc"),
            link: LinkType::Wired,
            model: label("P300"),
            firmware: label("2.3.1"),
            app_version: label("5.0.2"),
        },
        agent_time_unix_ms: now_ms() + skew_ms,
    }
}

/// Connects as `terminal` with a clock `skew_ms` off, sends 10 outcomes observed 5 s ago
/// (stamped with that clock), and waits for the Ack.
async fn send_skewed(c: &Collector, pki: &Pki, terminal: &str, skew_ms: i64) -> Result<()> {
    let ep = endpoint()?;
    let cfg = client_config(&pki.ca(), &pki.cert(terminal), &pki.key(terminal))?;
    let mut conn = RawConn::connect(&ep, cfg, c.quic_addr()).await?;
    conn.send(&Message::Hello(hello(terminal, skew_ms))).await?;
    match conn.recv().await? {
        Some(Message::Welcome(_)) => {}
        other => bail!("{terminal}: expected Welcome, got {other:?}"),
    }
    let observed = now_ms() - 5_000;
    let records = (0..10u64)
        .map(|i| Record {
            seq: Seq(i),
            time_unix_ms: observed + skew_ms,
            body: RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Cup,
                code: "00".into(),
                latency_ms: 300,
                method: PayMethod::Card,
                route: None,
            }),
        })
        .collect();
    conn.send(&Message::Batch(Batch {
        batch_id: 1,
        records,
    }))
    .await?;
    match tokio::time::timeout(Duration::from_secs(20), conn.recv()).await?? {
        Some(Message::Ack(a)) if a.batch_id == 1 => Ok(()),
        other => bail!("{terminal}: expected Ack, got {other:?}"),
    }
}

async fn metric(c: &Collector, name: &str) -> Result<u64> {
    let text = reqwest::get(c.url("/metrics")).await?.text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("{name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_agent_clocks_are_flagged_and_their_record_times_corrected() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    let cases = [("FAST", HOUR), ("SLOW", -HOUR), ("RIGHT", 0)];
    for (t, _) in cases {
        pki.issue(t)?;
    }
    let mut c = Collector::start(&tmp.path().join("c"), &pki).await?;
    for (t, skew) in cases {
        send_skewed(&c, &pki, t, skew).await?;
    }

    for restarted in [false, true] {
        for (t, skew) in cases {
            let entry = c.terminal(t).await?.context("listed")?;
            let offset = entry["clock_offset_ms"]
                .as_i64()
                .context("clock_offset_ms")?;
            // Measured within the one-way delay (loopback: well under 2 s).
            ensure!(
                (offset - skew).abs() < 2_000,
                "{t}: offset {offset}, skew {skew}"
            );
            ensure!(
                entry["clock_skewed"] == (skew != 0),
                "{t} (restarted: {restarted}): {entry}"
            );
            let recs = c.records(t).await?;
            ensure!(recs.len() == 10, "{t}: {} records", recs.len());
            for r in &recs {
                let time = r["time_unix_ms"].as_i64().context("time")?;
                let age = now_ms() - time;
                ensure!(
                    (0..120_000).contains(&age),
                    "{t}: stored time {age} ms in the past, expected the true time: {r}"
                );
                if skew == 0 {
                    ensure!(r["agent_time_unix_ms"].is_null(), "{t}: {r}");
                } else {
                    let agent = r["agent_time_unix_ms"]
                        .as_i64()
                        .with_context(|| format!("{t}: agent time kept: {r}"))?;
                    ensure!(
                        (agent - time - skew).abs() < 2_000,
                        "{t}: agent {agent}, stored {time}"
                    );
                }
            }
        }
        ensure!(
            metric(&c, "storepulse_fleet_clock_skewed_terminals").await? == 2,
            "two skewed terminals (restarted: {restarted})"
        );
        if !restarted {
            c.stop()?;
            c.restart().await?;
        }
    }
    ensure!(
        c.log().contains("Agent clock is skewed"),
        "the skew is logged"
    );
    Ok(())
}
