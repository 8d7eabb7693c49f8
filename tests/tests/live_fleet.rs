//! The live fleet (many real agents in one process) against an in-process collector over real
//! QUIC: outcomes appended while a terminal's link is cut arrive, exactly once, after it is
//! restored; terminals never cut are unaffected.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use storepulse_agent_core::NewRecord;
use storepulse_shared::{
    Identity, Label, LinkType, PayMethod, RecordBody, Scheme, TerminalId, TxnOutcome,
};
use storepulse_tests::live::{LiveFleet, LiveUplink, start_collector};
use storepulse_tests::{assert_exactly_once, wait_for};

fn identity(i: usize) -> Result<Identity> {
    let l = |s: String| Label::new(s).map_err(anyhow::Error::from);
    Ok(Identity {
        terminal_id: TerminalId::new(format!("LIVE{i:04}"))?,
        merchant_id: l(format!("M{}", i % 5))?,
        store_id: l(format!("S{}", i / 2))?,
        region: l(format!("R{}", i % 3))?,
        city: l("上海".into())?,
        acquirer: l("acq-a".into())?,
        qr_channel: l("wechatpay".into())?,
        carrier: l("cmcc".into())?,
        link: LinkType::Cellular,
        model: l("P300".into())?,
        firmware: l("2.3.1".into())?,
        app_version: l("5.0.2".into())?,
    })
}

fn outcomes(markers: std::ops::Range<u32>) -> Vec<NewRecord> {
    markers
        .map(|m| NewRecord {
            time_unix_ms: 1_700_000_000_000 + i64::from(m),
            body: RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Cup,
                code: "00".into(),
                latency_ms: m,
                method: PayMethod::Card,
                route: None,
            }),
        })
        .collect()
}

/// The markers stored for `t`; empty if the collector has never heard of it (a terminal cut
/// before its first connection); `None` if the API could not be asked.
async fn markers(http: &reqwest::Client, base: &str, t: &TerminalId) -> Option<Vec<u64>> {
    let resp = http
        .get(format!("{base}/api/v1/terminals/{t}/records?limit=1000"))
        .send()
        .await
        .ok()?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Some(Vec::new());
    }
    let v: serde_json::Value = resp.json().await.ok()?;
    let mut m: Vec<u64> = v["records"]
        .as_array()?
        .iter()
        .filter(|r| r["kind"] == "txn_outcome")
        .filter_map(|r| r["body"]["latency_ms"].as_u64())
        .collect();
    m.sort_unstable();
    Some(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_links_buffer_and_deliver_after_restore() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (collector, pki) = start_collector(tmp.path()).await?;
    let base = format!("http://{}", collector.http_addr());

    let ids: Vec<Identity> = (0..40).map(identity).collect::<Result<_>>()?;
    let uplink = LiveUplink {
        backoff_initial_ms: 100,
        backoff_max_secs: 1,
        ..LiveUplink::default()
    };
    let mut fleet = LiveFleet::start(
        &tmp.path().join("agents"),
        &pki,
        collector.quic_addr(),
        &ids,
        uplink,
    )
    .await?;
    let terminals: Vec<TerminalId> = ids.iter().map(|i| i.terminal_id.clone()).collect();

    for t in &terminals {
        fleet.append(t, outcomes(0..20)).await?;
    }
    let cut: Vec<&TerminalId> = terminals.iter().step_by(4).collect();
    for t in &cut {
        fleet.cut(t);
    }
    for t in &terminals {
        fleet.append(t, outcomes(20..40)).await?;
    }
    let http = reqwest::Client::new();
    // Terminals never cut deliver everything; cut ones hold the second half in their spools.
    for t in terminals.iter().filter(|t| !cut.contains(t)) {
        let got = wait_for(
            Duration::from_secs(30),
            "uncut terminal delivers",
            || async { markers(&http, &base, t).await.filter(|m| m.len() >= 40) },
        )
        .await?;
        assert_exactly_once(&got, 0..40).with_context(|| t.to_string())?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in &cut {
        // Appended after the cut: cannot have reached the collector, so they wait in the spool.
        let got = markers(&http, &base, t).await.context("records")?;
        ensure!(
            got.iter().all(|m| *m < 20),
            "{t} delivered while cut: {got:?}"
        );
        let spooled = fleet.agent(t).context("agent")?.status().spool_records;
        ensure!(spooled >= 20, "{t}: only {spooled} records in the spool");
    }
    for t in &cut {
        fleet.restore(t);
    }
    for t in &cut {
        let got = wait_for(
            Duration::from_secs(30),
            "restored terminal delivers",
            || async { markers(&http, &base, t).await.filter(|m| m.len() >= 40) },
        )
        .await?;
        assert_exactly_once(&got, 0..40).with_context(|| t.to_string())?;
    }
    fleet.shutdown().await;
    collector.shutdown().await?;
    Ok(())
}
