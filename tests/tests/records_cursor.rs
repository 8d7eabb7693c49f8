//! Issue 16 §5 with real processes: a terminal whose agent was reinstalled twice (three spool
//! epochs, each starting again at seq 0) has 36 records; paging them through the real
//! collector's API five at a time with the `next` cursor returns every record exactly once, in
//! (epoch, seq) order. (`after_seq` filtered `seq > n` in every epoch and returned 24 of 36.)

use anyhow::{Result, bail, ensure};
use storepulse_shared::{
    Batch, Hello, Identity, Label, LinkType, Message, PROTOCOL_VERSION, PayMethod, Record,
    RecordBody, Scheme, Seq, TerminalId, TxnOutcome,
};
use storepulse_tests::quic::{RawConn, client_config, endpoint};
use storepulse_tests::{Collector, Pki};

const TERMINAL: &str = "T-EPOCHS";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hello(epoch: u64) -> Hello {
    let l = |s: &str| Label::new(s).expect("label");
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "cursor-test".into(),
        spool_epoch: epoch,
        identity: Identity {
            terminal_id: TerminalId::new(TERMINAL).expect("id"),
            merchant_id: l("M1"),
            store_id: l("S1"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_three_epochs_returns_every_record_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::init(&dir.path().join("pki"))?;
    pki.issue(TERMINAL)?;
    let collector = Collector::start(&dir.path().join("collector"), &pki).await?;
    let ep = endpoint()?;
    // Epochs in the order the agent had them (random numbers: not sorted).
    let epochs = [0x9e37_79b9_u64, 0x1234, 0xffff_ffff_ffff_fff0];
    for epoch in epochs {
        let cfg = client_config(&pki.ca(), &pki.cert(TERMINAL), &pki.key(TERMINAL))?;
        let mut c = RawConn::connect(&ep, cfg, collector.quic_addr()).await?;
        c.send(&Message::Hello(hello(epoch))).await?;
        match c.recv().await? {
            Some(Message::Welcome(_)) => {}
            other => bail!("expected Welcome, got {other:?}"),
        }
        let records = (0..12u64)
            .map(|seq| Record {
                seq: Seq(seq),
                time_unix_ms: now_ms(),
                body: RecordBody::TxnOutcome(TxnOutcome {
                    scheme: Scheme::Cup,
                    code: "00".into(),
                    latency_ms: 100,
                    method: PayMethod::Card,
                    route: None,
                }),
            })
            .collect();
        c.send(&Message::Batch(Batch {
            batch_id: 1,
            records,
        }))
        .await?;
        match c.recv().await? {
            Some(Message::Ack(a)) => ensure!(a.highest_seq == Seq(11), "{a:?}"),
            other => bail!("expected the Ack, got {other:?}"),
        }
        c.conn.close(0u32.into(), b"reinstalled");
    }

    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut path = format!("/api/v1/terminals/{TERMINAL}/records?limit=5");
    let mut pages = 0;
    loop {
        let v = collector.get(&path).await?;
        pages += 1;
        for r in v["records"].as_array().cloned().unwrap_or_default() {
            seen.push((
                r["epoch"].as_u64().unwrap_or(u64::MAX),
                r["seq"].as_u64().unwrap_or(u64::MAX),
            ));
        }
        match v["next"].as_str() {
            Some(next) => {
                path = format!("/api/v1/terminals/{TERMINAL}/records?limit=5&after={next}")
            }
            None => break,
        }
        ensure!(pages < 20, "the cursor does not end");
    }
    let mut want: Vec<(u64, u64)> = epochs
        .iter()
        .flat_map(|e| (0..12u64).map(move |s| (*e, s)))
        .collect();
    want.sort_unstable();
    ensure!(seen == want, "paged {} records: {seen:?}", seen.len());
    ensure!(pages == 8, "36 records in pages of 5: {pages} pages");
    Ok(())
}
