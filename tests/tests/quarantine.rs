//! No record can stall an agent (issue 16 §4), with real processes.
//!
//! - A real agent whose spool holds two heartbeats the collector must not store (`cpu_percent`
//!   NaN and 150: what an older or buggy agent could have spooled) between ten payment
//!   outcomes: the collector stores the outcomes, quarantines the two heartbeats (visible per
//!   terminal in the API, counted in `/metrics`), acks the batches, and the agent's spool
//!   drains (none of the seeded records is left in it after the agent stops).
//! - A hand-made batch (raw QUIC client) with an empty `route` label between two good records:
//!   acked with the batch's highest seq, the good records stored, the bad one quarantined with
//!   the reason; a replay of the batch on a new connection is acked and quarantines nothing
//!   twice.
//! - A `Hello` with a bad label: `Goodbye` ProtocolError naming the field, close code
//!   PROTOCOL_ERROR (1), and a collector log line naming the terminal.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use storepulse_agent::spool::RedbSpool;
use storepulse_agent_core::spool::{NewRecord, Spool};
use storepulse_shared::check::{RawBatch, RawBody, RawHello};
use storepulse_shared::frame::encode_raw_frame;
use storepulse_shared::{
    Batch, FrameType, GoodbyeReason, Heartbeat, Hello, Identity, Label, LinkType, Message,
    PROTOCOL_VERSION, PayMethod, Record, RecordBody, Scheme, Seq, TerminalId, TxnOutcome,
    close_code,
};
use storepulse_tests::quic::{RawConn, client_config, endpoint};
use storepulse_tests::{Agent, AgentSpec, Collector, Pki, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn txn(marker: u32, route: Option<&str>) -> RecordBody {
    RecordBody::TxnOutcome(TxnOutcome {
        scheme: Scheme::Cup,
        code: "00".into(),
        latency_ms: marker,
        method: PayMethod::Card,
        route: route.map(|r| Label::new(r).expect("valid route")),
    })
}

fn heartbeat(cpu_percent: f32) -> RecordBody {
    RecordBody::Heartbeat(Heartbeat {
        cpu_percent,
        mem_used_bytes: 1 << 20,
        mem_total_bytes: 1 << 30,
        disk_free_bytes: 1 << 30,
        uptime_secs: 60,
        temperature_c: None,
        battery_percent: None,
        spool_records: 0,
    })
}

fn hello(terminal: &str, epoch: u64) -> Hello {
    let l = |s: &str| Label::new(s).expect("label");
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "quarantine-test".into(),
        spool_epoch: epoch,
        identity: Identity {
            terminal_id: TerminalId::new(terminal).expect("id"),
            merchant_id: l("M-Q"),
            store_id: l("S-Q"),
            region: l("east"),
            city: l("上海"),
            acquirer: l("acq-a"),
            qr_channel: l("wechatpay"),
            carrier: l("cmcc"),
            link: LinkType::Wired,
            model: l("P300"),
            firmware: l("2.3.1"),
            app_version: l("5.0.2"),
        },
        agent_time_unix_ms: now_ms(),
    }
}

async fn quarantined_fields(c: &Collector, terminal: &str) -> Result<Vec<(u64, String)>> {
    Ok(c.quarantined(terminal)
        .await?
        .iter()
        .map(|q| {
            (
                q["seq"].as_u64().unwrap_or(u64::MAX),
                q["field"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

async fn metric(c: &Collector, line_prefix: &str) -> Result<u64> {
    let text = c.metrics_text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {line_prefix} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_quarantined_and_the_spool_drains() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::init(&dir.path().join("pki"))?;
    pki.issue("T-Q1")?;
    let collector = Collector::start(&dir.path().join("collector"), &pki).await?;

    // Seed the agent's spool before it starts: markers 1..=5, two bad heartbeats, 6..=10.
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let spool_path = agent_dir.join("spool.redb");
    let seeded_max = {
        let mut spool = RedbSpool::open(&spool_path, 64 << 20, 0x51_0071)?;
        let now = now_ms();
        let mut records: Vec<NewRecord> = (1..=5)
            .map(|m| NewRecord {
                time_unix_ms: now,
                body: txn(m, Some("acq-a")),
            })
            .collect();
        for cpu in [f32::NAN, 150.0] {
            records.push(NewRecord {
                time_unix_ms: now,
                body: heartbeat(cpu),
            });
        }
        records.extend((6..=10).map(|m| NewRecord {
            time_unix_ms: now,
            body: txn(m, None),
        }));
        let appended = spool.append(records, &BTreeSet::new())?;
        ensure!(appended.count == 12, "seeded {appended:?}");
        appended.first_seq.0 + appended.count - 1
    };

    let mut agent = Agent::start(
        &agent_dir,
        AgentSpec::new("T-Q1", &pki, collector.quic_addr()),
    )
    .await?;
    wait_for(WAIT, "the ten outcomes stored", || async {
        let m = collector.txn_markers("T-Q1").await.ok()?;
        (m == (1..=10).collect::<Vec<u64>>()).then_some(())
    })
    .await?;
    let q = wait_for(WAIT, "the two heartbeats quarantined", || async {
        let q = quarantined_fields(&collector, "T-Q1").await.ok()?;
        (q.len() == 2).then_some(q)
    })
    .await?;
    ensure!(
        q == [(5, "cpu_percent".into()), (6, "cpu_percent".into())],
        "quarantined {q:?}"
    );
    let list = collector.quarantined("T-Q1").await?;
    ensure!(
        list[0]["body"].as_str().is_some_and(|b| b.contains("NaN")),
        "{}",
        list[0]
    );
    ensure!(
        list[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("150")),
        "{}",
        list[1]
    );
    // Neither bad value reached the stored records.
    for r in collector.records("T-Q1").await? {
        if r["kind"] == "heartbeat" {
            let cpu = r["body"]["cpu_percent"]
                .as_f64()
                .context("cpu stored as a number")?;
            ensure!((0.0..=100.0).contains(&cpu), "{r}");
        }
    }
    ensure!(
        metric(
            &collector,
            "storepulse_ingest_quarantined_records_total{kind=\"heartbeat\"}"
        )
        .await?
            == 2
    );
    // The spool drains: the agent's own heartbeats keep coming and are acked too.
    wait_for(WAIT, "the agent's spool drained", || async {
        let s = agent.status().await.ok()?;
        (s["spool_records"].as_u64()? <= 2).then_some(())
    })
    .await?;
    agent.stop()?;
    let spool = RedbSpool::open(&spool_path, 64 << 20, 0)?;
    let left: Vec<u64> = spool
        .records()?
        .iter()
        .map(|r| r.seq.0)
        .filter(|s| *s <= seeded_max)
        .collect();
    ensure!(left.is_empty(), "seeded records still spooled: {left:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_label_is_quarantined_and_a_bad_hello_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::init(&dir.path().join("pki"))?;
    pki.issue("T-Q2")?;
    pki.issue("T-Q3")?;
    let collector = Collector::start(&dir.path().join("collector"), &pki).await?;
    let ep = endpoint()?;
    let cfg = |t: &str| client_config(&pki.ca(), &pki.cert(t), &pki.key(t));

    // Records 1..=3; record 2 has an empty route, which the checked types cannot express.
    let good = Batch {
        batch_id: 1,
        records: (1..=3u64)
            .map(|s| Record {
                seq: Seq(s),
                time_unix_ms: now_ms(),
                body: txn(u32::try_from(s).expect("small"), Some("acq-a")),
            })
            .collect(),
    };
    let mut raw = RawBatch::from(good);
    match &mut raw.records[1].body {
        RawBody::TxnOutcome(t) => t.route = Some(String::new()),
        other => bail!("unexpected {other:?}"),
    }
    let frame = encode_raw_frame(FrameType::Batch, &raw);
    for attempt in 0..2 {
        let mut c = RawConn::connect(&ep, cfg("T-Q2")?, collector.quic_addr()).await?;
        c.send(&Message::Hello(hello("T-Q2", 42))).await?;
        match c.recv().await? {
            Some(Message::Welcome(_)) => {}
            other => bail!("expected Welcome, got {other:?}"),
        }
        c.write_raw(&frame).await?;
        match tokio::time::timeout(WAIT, c.recv()).await?? {
            Some(Message::Ack(a)) => ensure!(
                a.batch_id == 1 && a.highest_seq == Seq(3),
                "attempt {attempt}: {a:?}"
            ),
            other => bail!("attempt {attempt}: expected the Ack, got {other:?}"),
        }
        c.conn.close(0u32.into(), b"done");
    }
    let stored: Vec<u64> = collector
        .records("T-Q2")
        .await?
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    ensure!(stored == [1, 3], "stored {stored:?}");
    let q = collector.quarantined("T-Q2").await?;
    ensure!(q.len() == 1, "quarantined once across the replay: {q:?}");
    ensure!(q[0]["seq"] == 2 && q[0]["field"] == "route", "{}", q[0]);
    ensure!(
        q[0]["reason"].as_str() == Some("must not be empty"),
        "{}",
        q[0]
    );
    ensure!(
        metric(
            &collector,
            "storepulse_ingest_quarantined_records_total{kind=\"txn_outcome\"}"
        )
        .await?
            == 1
    );

    // A Hello whose city has a control character.
    let mut bad = RawHello::from(hello("T-Q3", 7));
    bad.identity.city = "上海\u{7}".into();
    let mut c = RawConn::connect(&ep, cfg("T-Q3")?, collector.quic_addr()).await?;
    c.write_raw(&encode_raw_frame(FrameType::Hello, &bad))
        .await?;
    match c.recv().await {
        Ok(Some(Message::Goodbye(g))) => {
            ensure!(g.reason == GoodbyeReason::ProtocolError, "{g:?}");
            ensure!(g.detail.contains("identity.city"), "{g:?}");
        }
        other => bail!("expected a Goodbye, got {other:?}"),
    }
    let code = c.closed_code(WAIT).await?;
    ensure!(
        code == u64::from(close_code::PROTOCOL_ERROR),
        "close code {code}"
    );
    wait_for(
        WAIT,
        "a log line naming the terminal and the field",
        || async {
            collector
                .log()
                .lines()
                .any(|l| l.contains("T-Q3") && l.contains("identity.city"))
                .then_some(())
        },
    )
    .await?;
    ensure!(
        collector.terminal("T-Q3").await?.is_none(),
        "a refused Hello registers nothing"
    );
    Ok(())
}
