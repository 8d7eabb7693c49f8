//! The collector SIGKILLed mid-commit twenty times in a row (issue 7, faults).
//!
//! The real `storepulse-collector serve` runs on one store directory while raw QUIC clients
//! (one per terminal, mutual TLS) stream batches continuously with several in flight. At
//! seeded random moments, while commits are in flight, the collector is SIGKILLed and
//! restarted on the same store, twenty times. The clients keep every record until an `Ack`
//! covers it and resend the rest after reconnecting; on every reconnect they also replay one
//! batch that was already acked, so deduplication is exercised each cycle.
//!
//! Oracle, tracked on the client side: every record acked before any kill is stored exactly
//! once; at the end every record ever sent is stored exactly once (nothing else); each
//! terminal's `records_received` in the registry equals its stored records (registry and
//! records are committed atomically together); the alert keyspaces load; the store opens
//! offline (`storepulse-collector dump`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storepulse_shared::{
    Batch, FrameDecoder, Hello, Identity, Label, LinkType, MAX_FRAME_BYTES_DEFAULT, Message,
    PROTOCOL_VERSION, PayMethod, Record, RecordBody, Scheme, Seq, TerminalId, TxnOutcome,
    encode_frame,
};
use storepulse_tests::quic::{SERVER_NAME, client_config, endpoint};
use storepulse_tests::{Collector, Pki, collector_cli, wait_for};

const KILLS: usize = 20;
const TERMINALS: usize = 4;
const BATCH_RECORDS: u64 = 40;
const IN_FLIGHT: usize = 8;
const SEED: u64 = 0x5107_e9a1_5e00_0007;

/// What one client knows, shared with the test body.
#[derive(Debug, Default)]
struct Ledger {
    /// Seqs an `Ack` covered.
    acked: BTreeSet<u64>,
    /// Every seq ever sent.
    sent: BTreeSet<u64>,
    /// Records sent again after a reconnect (unacked ones and the deliberate replay).
    resent: u64,
    /// Acks received since the counter was last reset by the test.
    acks_since_reset: u64,
}

struct Client {
    terminal: String,
    epoch: u64,
    ledger: Mutex<Ledger>,
    /// Stop creating new records (the final drain).
    no_new: AtomicBool,
    stop: AtomicBool,
    next_seq: AtomicU64,
    /// Bumped by the test at each kill, so the client drops its dead connection at once
    /// instead of waiting for the idle timeout (a real agent learns it from the idle timeout).
    kills: Arc<AtomicU64>,
}

fn label(s: &str) -> Label {
    Label::new(s).expect("valid label")
}

impl Client {
    fn hello(&self) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "crash-test".into(),
            spool_epoch: self.epoch,
            identity: Identity {
                terminal_id: TerminalId::new(self.terminal.clone()).expect("valid id"),
                merchant_id: label("M-CRASH"),
                store_id: label("S-CRASH"),
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
            agent_time_unix_ms: now_ms(),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn record(seq: u64) -> Record {
    Record {
        seq: Seq(seq),
        time_unix_ms: now_ms(),
        body: RecordBody::TxnOutcome(TxnOutcome {
            scheme: Scheme::Cup,
            code: "00".into(),
            latency_ms: u32::try_from(seq).expect("small"),
            method: PayMethod::Card,
            route: None,
        }),
    }
}

/// Runs one client until told to stop: connect, Hello, stream, reconnect on any error.
async fn run_client(client: Arc<Client>, addr: SocketAddr, cfg: quinn::ClientConfig) {
    let ep = endpoint().expect("client endpoint");
    // Unacked seqs waiting to be (re)sent, ascending.
    let mut backlog: BTreeSet<u64> = BTreeSet::new();
    let mut last_acked_batch: Option<Vec<u64>> = None;
    let mut first = true;
    while !client.stop.load(Ordering::Relaxed) {
        // The collector is down part of the time: errors are expected, retry quickly.
        let _ = connection(
            &client,
            &ep,
            addr,
            cfg.clone(),
            &mut backlog,
            &mut last_acked_batch,
            first,
        )
        .await;
        first = false;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// One connection's life. Everything in flight goes back to `backlog` when it ends.
async fn connection(
    client: &Client,
    ep: &quinn::Endpoint,
    addr: SocketAddr,
    cfg: quinn::ClientConfig,
    backlog: &mut BTreeSet<u64>,
    last_acked_batch: &mut Option<Vec<u64>>,
    first: bool,
) -> Result<()> {
    let mut in_flight: HashMap<u64, Vec<u64>> = HashMap::new();
    let result = stream(
        client,
        ep,
        addr,
        cfg,
        backlog,
        last_acked_batch,
        first,
        &mut in_flight,
    )
    .await;
    for (_, seqs) in in_flight {
        backlog.extend(seqs);
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    client: &Client,
    ep: &quinn::Endpoint,
    addr: SocketAddr,
    cfg: quinn::ClientConfig,
    backlog: &mut BTreeSet<u64>,
    last_acked_batch: &mut Option<Vec<u64>>,
    first: bool,
    in_flight: &mut HashMap<u64, Vec<u64>>,
) -> Result<()> {
    let conn = tokio::time::timeout(
        Duration::from_secs(2),
        ep.connect_with(cfg, addr, SERVER_NAME)?,
    )
    .await
    .context("handshake timeout")??;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&encode_frame(&Message::Hello(client.hello())))
        .await?;
    let mut decoder = FrameDecoder::new(MAX_FRAME_BYTES_DEFAULT);
    let mut buf = vec![0u8; 64 * 1024];
    match next_message(&mut recv, &mut decoder, &mut buf).await? {
        Message::Welcome(_) => {}
        other => bail!("expected Welcome, got {other:?}"),
    }
    // Replay one batch the collector already acked: it must be deduplicated.
    let mut replay = if first {
        None
    } else {
        last_acked_batch.clone()
    };
    let mut batch_id = 0u64;
    let generation = client.kills.load(Ordering::Relaxed);
    loop {
        if client.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if client.kills.load(Ordering::Relaxed) != generation {
            bail!("collector killed");
        }
        while in_flight.len() < IN_FLIGHT {
            let (seqs, is_resend) = if let Some(r) = replay.take() {
                (r, true)
            } else if !backlog.is_empty() {
                let seqs: Vec<u64> = backlog
                    .iter()
                    .copied()
                    .take(BATCH_RECORDS as usize)
                    .collect();
                for s in &seqs {
                    backlog.remove(s);
                }
                (seqs, true)
            } else if client.no_new.load(Ordering::Relaxed) {
                break;
            } else {
                let start = client.next_seq.fetch_add(BATCH_RECORDS, Ordering::Relaxed);
                ((start..start + BATCH_RECORDS).collect(), false)
            };
            batch_id += 1;
            let batch = Batch {
                batch_id,
                records: seqs.iter().map(|s| record(*s)).collect(),
            };
            {
                let mut l = client.ledger();
                if is_resend {
                    l.resent += seqs.len() as u64;
                }
                l.sent.extend(seqs.iter().copied());
            }
            in_flight.insert(batch_id, seqs);
            send.write_all(&encode_frame(&Message::Batch(batch)))
                .await?;
        }
        let msg = tokio::time::timeout(
            Duration::from_millis(20),
            next_message(&mut recv, &mut decoder, &mut buf),
        )
        .await;
        match msg {
            Err(_) => continue,
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Message::Ack(ack))) => {
                let seqs = in_flight
                    .remove(&ack.batch_id)
                    .with_context(|| format!("ack of unknown batch {}", ack.batch_id))?;
                ensure!(
                    seqs.last().copied() == Some(ack.highest_seq.0),
                    "ack names highest seq {} for batch {:?}",
                    ack.highest_seq.0,
                    seqs
                );
                let mut l = client.ledger();
                l.acked.extend(seqs.iter().copied());
                l.acks_since_reset += 1;
                *last_acked_batch = Some(seqs);
            }
            Ok(Ok(Message::Goodbye(_))) => bail!("goodbye"),
            Ok(Ok(other)) => bail!("unexpected {other:?}"),
        }
    }
}

async fn next_message(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
    buf: &mut [u8],
) -> Result<Message> {
    loop {
        if let Some(m) = decoder.next_message()? {
            return Ok(m);
        }
        match recv.read(buf).await? {
            Some(n) => decoder.push(&buf[..n]),
            None => bail!("stream ended"),
        }
    }
}

/// Every stored `(terminal, epoch, seq)` from `storepulse-collector dump` (collector stopped).
fn dump(store: &std::path::Path) -> Result<BTreeMap<String, Vec<(u64, u64)>>> {
    let out = collector_cli(&["dump", "--store", &store.to_string_lossy()])?;
    let mut by_terminal: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let t = v["terminal_id"].as_str().context("terminal_id")?.to_owned();
        let epoch = v["epoch"].as_u64().context("epoch")?;
        let seq = v["seq"].as_u64().context("seq")?;
        by_terminal.entry(t).or_default().push((epoch, seq));
    }
    Ok(by_terminal)
}

/// Checks one terminal's stored seqs against what must be there: every seq in `must` once,
/// nothing outside `may`, nothing twice.
fn check_stored(
    terminal: &str,
    epoch: u64,
    stored: &[(u64, u64)],
    must: &BTreeSet<u64>,
    may: &BTreeSet<u64>,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for &(e, s) in stored {
        ensure!(e == epoch, "{terminal}: record of unknown epoch {e}");
        ensure!(seen.insert(s), "{terminal}: seq {s} stored twice");
        ensure!(
            may.contains(&s),
            "{terminal}: seq {s} stored but never sent"
        );
    }
    let missing: Vec<u64> = must.difference(&seen).copied().take(10).collect();
    ensure!(
        missing.is_empty(),
        "{terminal}: {} acked record(s) lost, e.g. {missing:?}",
        must.difference(&seen).count()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigkilled_mid_commit_twenty_times_loses_and_duplicates_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    let ids: Vec<String> = (0..TERMINALS).map(|i| format!("CRASH{i}")).collect();
    for id in &ids {
        pki.issue(id)?;
    }
    let cdir = tmp.path().join("c");
    let mut c = Collector::start(&cdir, &pki).await?;
    let addr = c.quic_addr();
    let mut rng = StdRng::seed_from_u64(SEED);
    let kills = Arc::new(AtomicU64::new(0));
    let clients: Vec<Arc<Client>> = ids
        .iter()
        .map(|id| {
            Arc::new(Client {
                terminal: id.clone(),
                epoch: rng.random(),
                ledger: Mutex::new(Ledger::default()),
                no_new: AtomicBool::new(false),
                stop: AtomicBool::new(false),
                next_seq: AtomicU64::new(0),
                kills: kills.clone(),
            })
        })
        .collect();
    let mut tasks = Vec::new();
    for cl in &clients {
        let mut cfg = client_config(&pki.ca(), &pki.cert(&cl.terminal), &pki.key(&cl.terminal))?;
        // A killed collector never closes its connections: notice within a second.
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_millis(200)));
        transport.max_idle_timeout(Some(Duration::from_secs(1).try_into()?));
        cfg.transport_config(Arc::new(transport));
        tasks.push(tokio::spawn(run_client(cl.clone(), addr, cfg)));
    }

    // Acked before each kill, per terminal: must survive every later kill.
    let mut acked_before_kill: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); TERMINALS];
    let mut duplicates_seen = 0u64;
    for kill in 0..KILLS {
        // Commits are flowing on every connection again (acks since the restart)...
        for cl in &clients {
            cl.ledger().acks_since_reset = 0;
        }
        wait_for(
            Duration::from_secs(20),
            "acks from every client",
            || async {
                clients
                    .iter()
                    .all(|cl| cl.ledger().acks_since_reset >= 2)
                    .then_some(())
            },
        )
        .await
        .with_context(|| format!("cycle {kill}; collector log:\n{}", c.log()))?;
        // ...the replayed batches were deduplicated...
        if let Ok(m) = metrics_text(&c).await {
            duplicates_seen += metric(&m, "storepulse_ingest_duplicate_records_total");
        }
        // ...then kill at a random moment while batches are in flight.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..250))).await;
        for (i, cl) in clients.iter().enumerate() {
            acked_before_kill[i] = cl.ledger().acked.clone();
        }
        c.kill9();
        kills.fetch_add(1, Ordering::Relaxed);
        c.restart()
            .await
            .with_context(|| format!("restart after kill {kill}"))?;
    }

    // Drain: no new records; wait until everything sent is acked.
    for cl in &clients {
        cl.no_new.store(true, Ordering::Relaxed);
    }
    wait_for(
        Duration::from_secs(30),
        "every sent record acked",
        || async {
            clients
                .iter()
                .all(|cl| {
                    let l = cl.ledger();
                    l.acked == l.sent
                })
                .then_some(())
        },
    )
    .await?;
    if let Ok(m) = metrics_text(&c).await {
        duplicates_seen += metric(&m, "storepulse_ingest_duplicate_records_total");
    }
    for cl in &clients {
        cl.stop.store(true, Ordering::Relaxed);
    }
    for t in tasks {
        t.await?;
    }

    // The registry and the alert keyspaces load; records_received equals stored records.
    let registry = c.get("/api/v1/terminals").await?;
    c.get("/api/v1/alerts/outbox").await?;
    c.get("/api/v1/alerts/silences").await?;
    c.stop()?;

    // The store opens offline and holds exactly what was sent, acked records included.
    let stored = dump(&cdir.join("store"))?;
    let mut total = 0usize;
    for (i, cl) in clients.iter().enumerate() {
        let l = cl.ledger();
        let rows = stored.get(&cl.terminal).cloned().unwrap_or_default();
        check_stored(
            &cl.terminal,
            cl.epoch,
            &rows,
            &acked_before_kill[i],
            &l.sent,
        )?;
        check_stored(&cl.terminal, cl.epoch, &rows, &l.sent, &l.sent)?;
        ensure!(l.resent > 0, "{}: nothing was ever resent", cl.terminal);
        let entry = registry["terminals"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["terminal_id"] == cl.terminal.as_str()))
            .with_context(|| format!("{} not in the registry: {registry}", cl.terminal))?;
        ensure!(
            entry["records_received"].as_u64() == Some(rows.len() as u64),
            "{}: registry says {} records, store holds {}",
            cl.terminal,
            entry["records_received"],
            rows.len()
        );
        total += rows.len();
    }
    ensure!(
        duplicates_seen > 0,
        "replayed batches were never counted as duplicates"
    );
    eprintln!(
        "{KILLS} SIGKILLs: {total} records stored exactly once; {duplicates_seen} replayed \
         records deduplicated"
    );
    Ok(())
}

async fn metrics_text(c: &Collector) -> Result<String> {
    Ok(reqwest::get(c.url("/metrics")).await?.text().await?)
}

/// The value of an unlabelled counter in Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}
