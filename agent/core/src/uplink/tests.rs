//! Tests of the outbox state machine: unit cases and a model-based property test that drives
//! the uplink together with [`MemSpool`] and a scripted collector.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use storepulse_shared::{Heartbeat, PayMethod, RecordBody, Scheme, TxnOutcome};

use super::*;
use crate::spool::{MemSpool, NewRecord, Spool};

fn config() -> UplinkConfig {
    UplinkConfig {
        max_batch_records: 4,
        max_batch_bytes: 512 * 1024,
        max_in_flight: 3,
        backlog_records_per_sec: 10,
        backoff: BackoffConfig {
            initial: Duration::from_millis(1000),
            max: Duration::from_secs(60),
        },
    }
}

fn txn() -> RecordBody {
    RecordBody::TxnOutcome(TxnOutcome {
        scheme: Scheme::Iso8583,
        code: "05".into(),
        latency_ms: 300,
        method: PayMethod::Qr,
        route: None,
    })
}

fn heartbeat() -> RecordBody {
    RecordBody::Heartbeat(Heartbeat {
        cpu_percent: 5.0,
        mem_used_bytes: 10,
        mem_total_bytes: 20,
        disk_free_bytes: 30,
        uptime_secs: 40,
        temperature_c: Some(50.0),
        battery_percent: None,
        spool_records: 1,
    })
}

/// Uplink plus spool, wired the way the shell wires them.
struct Rig {
    up: Uplink,
    spool: MemSpool,
    now: Instant,
}

impl Rig {
    fn new(max_bytes: u64) -> Self {
        let now = Instant::now();
        let spool = MemSpool::new(1, max_bytes);
        let up = Uplink::new(config(), spool.meta().next_seq, spool.entries(), now, 7);
        Self { up, spool, now }
    }

    fn append(&mut self, bodies: Vec<RecordBody>) -> Appended {
        let recs = bodies
            .into_iter()
            .map(|body| NewRecord {
                time_unix_ms: 0,
                body,
            })
            .collect();
        let a = match self.spool.append(recs, &self.up.in_flight_seqs()) {
            Ok(a) => a,
            Err(never) => match never {},
        };
        self.up.handle_appended(&a);
        a
    }

    fn connect(&mut self) {
        self.up.handle_connecting(self.now);
        self.up.handle_connected(self.now, None);
    }
}

#[test]
fn live_records_overtake_the_backlog() {
    let mut rig = Rig::new(1 << 20);
    rig.append(vec![txn(); 6]);
    rig.connect();
    rig.append(vec![txn(); 2]);
    let first = rig.up.poll_batch(rig.now).expect("live batch");
    assert!(!first.backlog);
    assert_eq!(first.seqs, vec![Seq(6), Seq(7)]);
    let second = rig.up.poll_batch(rig.now).expect("backlog batch");
    assert!(second.backlog);
    assert_eq!(second.seqs, vec![Seq(0), Seq(1), Seq(2), Seq(3)]);
    assert_eq!(second.batch_id, first.batch_id + 1);
}

#[test]
fn acks_delete_only_their_batch() {
    let mut rig = Rig::new(1 << 20);
    rig.connect();
    rig.append(vec![txn(); 6]);
    let a = rig.up.poll_batch(rig.now).expect("batch");
    let b = rig.up.poll_batch(rig.now).expect("batch");
    assert_eq!(a.seqs.len() + b.seqs.len(), 6);
    // An ack naming a too-high seq still deletes only the batch's own records.
    let done = rig
        .up
        .handle_ack(
            rig.now,
            &Ack {
                batch_id: b.batch_id,
                highest_seq: Seq(99),
            },
        )
        .expect("ok");
    assert_eq!(done, b.seqs);
    assert_eq!(
        rig.up.handle_ack(
            rig.now,
            &Ack {
                batch_id: b.batch_id,
                highest_seq: Seq(99)
            }
        ),
        Err(AckError::UnknownBatch(b.batch_id))
    );
    // An ack with a lower highest_seq deletes the prefix; the rest is sent again.
    let done = rig
        .up
        .handle_ack(
            rig.now,
            &Ack {
                batch_id: a.batch_id,
                highest_seq: Seq(1),
            },
        )
        .expect("ok");
    assert_eq!(done, vec![Seq(0), Seq(1)]);
    assert_eq!(rig.up.pending_len(), 2);
}

#[test]
fn disconnect_requeues_in_flight_and_backs_off() {
    let mut rig = Rig::new(1 << 20);
    rig.connect();
    rig.append(vec![txn(); 3]);
    let b = rig.up.poll_batch(rig.now).expect("batch");
    assert_eq!(rig.up.pending_len(), 0);
    let delay = rig.up.handle_disconnected(rig.now, None);
    assert!(
        delay <= Duration::from_secs(1),
        "a short connection backs off from the first step"
    );
    assert_eq!(rig.up.pending_len(), 3);
    assert_eq!(rig.up.in_flight_seqs().len(), 0);
    assert!(
        rig.up
            .handle_ack(
                rig.now,
                &Ack {
                    batch_id: b.batch_id,
                    highest_seq: Seq(2)
                }
            )
            .is_err()
    );
    assert!(!rig.up.poll_connect(rig.now) || delay.is_zero());
    assert!(rig.up.poll_connect(rig.now + delay));
    assert_eq!(rig.up.poll_timeout(), Some(rig.now + delay));
    let d = rig
        .up
        .handle_disconnected(rig.now, Some(Duration::from_secs(120)));
    assert!(
        d >= Duration::from_secs(120),
        "goodbye's retry_after is a floor"
    );
}

#[test]
fn in_flight_is_bounded() {
    let mut rig = Rig::new(1 << 20);
    rig.connect();
    rig.append(vec![txn(); 40]);
    let mut n = 0;
    while rig.up.poll_batch(rig.now).is_some() {
        n += 1;
    }
    assert_eq!(n, config().max_in_flight);
    assert_eq!(
        rig.up.poll_timeout(),
        None,
        "nothing to wait for until an ack"
    );
}

#[test]
fn backlog_drains_at_the_configured_rate() {
    let mut rig = Rig::new(1 << 20);
    rig.append(vec![txn(); 100]);
    let mut up_cfg = config();
    up_cfg.max_in_flight = 1000;
    rig.up = Uplink::new(
        up_cfg,
        rig.spool.meta().next_seq,
        rig.spool.entries(),
        rig.now,
        1,
    );
    rig.connect();
    let start = rig.now;
    let mut sent = 0usize;
    while sent < 100 {
        match rig.up.poll_batch(rig.now) {
            Some(b) => sent += b.seqs.len(),
            None => {
                rig.now = rig
                    .up
                    .poll_timeout()
                    .expect("a timer while backlog is pending")
            }
        }
    }
    let secs = rig.now.duration_since(start).as_secs_f64();
    // capacity 4 (one batch), then 10 records/s: 96 more records need at least 9.6 s.
    assert!((9.5..11.0).contains(&secs), "took {secs}s");
}

#[test]
fn welcome_overrides_settings() {
    let mut rig = Rig::new(1 << 20);
    rig.up.handle_connecting(rig.now);
    rig.up.handle_connected(
        rig.now,
        Some(&Welcome {
            protocol_version: 1,
            collector_time_unix_ms: 0,
            heartbeat_interval_secs: 30,
            net_probe_interval_secs: 60,
            max_batch_records: 0,
            backlog_records_per_sec: 0,
        }),
    );
    assert_eq!(rig.up.config().max_batch_records, 1);
    assert_eq!(rig.up.config().backlog_records_per_sec, 1);
}

#[test]
fn evicted_in_flight_records_are_not_resent() {
    let one = crate::spool::encoded_len(&storepulse_shared::Record {
        seq: Seq(0),
        time_unix_ms: 0,
        body: heartbeat(),
    });
    let mut rig = Rig::new(u64::from(one) * 2);
    rig.connect();
    rig.append(vec![heartbeat(), heartbeat()]);
    let b = rig.up.poll_batch(rig.now).expect("batch");
    assert_eq!(b.seqs.len(), 2);
    // Nothing else to evict: the in-flight heartbeat 0 has to go.
    let a = rig.append(vec![heartbeat()]);
    assert_eq!(a.evicted, vec![Seq(0)]);
    rig.up.handle_disconnected(rig.now, None);
    assert_eq!(rig.up.pending_len(), 2, "seq 0 is gone, 1 and 2 remain");
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        telemetry: bool,
        n: usize,
    },
    Connect,
    Disconnect,
    Send,
    /// Collector acks its oldest outstanding batch.
    AckOldest,
    /// Collector acks a random outstanding batch (acks may come out of order).
    AckAny(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 1usize..6).prop_map(|(telemetry, n)| Op::Append { telemetry, n }),
        2 => Just(Op::Connect),
        1 => Just(Op::Disconnect),
        4 => Just(Op::Send),
        3 => Just(Op::AckOldest),
        1 => (0usize..8).prop_map(Op::AckAny),
        2 => (1u64..3000).prop_map(Op::Advance),
    ]
}

/// Bookkeeping of the model checker.
#[derive(Default)]
struct Model {
    /// Seqs stored in the spool at some point.
    stored: BTreeSet<u64>,
    /// Seqs evicted by the shedding policy.
    evicted: BTreeSet<u64>,
    /// Seqs deleted after an ack, with how often.
    deleted: BTreeMap<u64, u32>,
    /// Batches the collector has received and not yet acked: (batch id, seqs as sent).
    collector: VecDeque<(u64, Vec<Seq>)>,
    /// Every seq ever put in a batch.
    sent: BTreeSet<u64>,
    live_from: u64,
    connected_at: Option<Instant>,
    backlog_sent_since_connect: usize,
}

fn check_send(rig: &mut Rig, m: &mut Model) -> Result<(), TestCaseError> {
    while let Some(b) = rig.up.poll_batch(rig.now) {
        prop_assert!(!b.seqs.is_empty());
        prop_assert!(b.seqs.windows(2).all(|w| w[0] < w[1]), "ascending");
        prop_assert!(b.seqs.len() <= rig.up.config().max_batch_records as usize);
        for s in &b.seqs {
            prop_assert!(
                m.stored.contains(&s.0)
                    && !m.evicted.contains(&s.0)
                    && !m.deleted.contains_key(&s.0)
            );
        }
        if b.backlog {
            prop_assert!(b.seqs.iter().all(|s| s.0 < m.live_from));
            // Live first: no live record may be waiting while backlog goes out.
            let live_waiting = rig
                .spool
                .entries()
                .iter()
                .any(|e| e.seq.0 >= m.live_from && !rig.up.in_flight_seqs().contains(&e.seq));
            prop_assert!(!live_waiting, "backlog sent while live records wait");
            m.backlog_sent_since_connect += b.seqs.len();
            let since = m
                .connected_at
                .map_or(0.0, |t| rig.now.duration_since(t).as_secs_f64());
            let c = rig.up.config();
            let cap = f64::from(c.backlog_records_per_sec.min(c.max_batch_records));
            prop_assert!(
                m.backlog_sent_since_connect as f64
                    <= cap + f64::from(c.backlog_records_per_sec) * since + 1e-6,
                "rate bound"
            );
        } else {
            prop_assert!(b.seqs.iter().all(|s| s.0 >= m.live_from));
        }
        m.sent.extend(b.seqs.iter().map(|s| s.0));
        m.collector.push_back((b.batch_id, b.seqs));
    }
    Ok(())
}

fn check_ack(rig: &mut Rig, m: &mut Model, idx: usize) -> Result<(), TestCaseError> {
    if m.collector.is_empty() {
        return Ok(());
    }
    let (batch_id, seqs) = m
        .collector
        .remove(idx % m.collector.len())
        .expect("index in range");
    let highest = *seqs.last().expect("non-empty");
    let done = rig
        .up
        .handle_ack(
            rig.now,
            &Ack {
                batch_id,
                highest_seq: highest,
            },
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for s in &done {
        prop_assert!(seqs.contains(s), "ack deleted a seq outside its batch");
        prop_assert!(m.sent.contains(&s.0), "ack deleted an unsent seq");
        *m.deleted.entry(s.0).or_default() += 1;
    }
    let Ok(_) = rig.spool.delete(&done);
    Ok(())
}

fn apply(rig: &mut Rig, m: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Append { telemetry, n } => {
            let body = if *telemetry { heartbeat() } else { txn() };
            let a = rig.append(vec![body; *n]);
            m.stored.extend(a.stored.iter().map(|e| e.seq.0));
            m.evicted.extend(a.evicted.iter().map(|s| s.0));
            // New records dropped or evicted within the same append count as evicted too.
            for s in a.first_seq.0..a.first_seq.0 + a.count {
                if !a.stored.iter().any(|e| e.seq.0 == s) {
                    m.evicted.insert(s);
                }
            }
            if rig.up.is_connected() {
                check_send(rig, m)?;
            }
        }
        Op::Connect => {
            if !rig.up.is_connected() {
                rig.up.handle_connecting(rig.now);
                rig.up.handle_connected(rig.now, None);
                m.live_from = rig.up.next_seq().0;
                m.connected_at = Some(rig.now);
                m.backlog_sent_since_connect = 0;
                m.collector.clear();
            }
        }
        Op::Disconnect => {
            rig.up.handle_disconnected(rig.now, None);
            m.collector.clear();
        }
        Op::Send => check_send(rig, m)?,
        Op::AckOldest => check_ack(rig, m, 0)?,
        Op::AckAny(i) => check_ack(rig, m, *i)?,
        Op::Advance(ms) => rig.now += Duration::from_millis(*ms),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Conservation: whatever the interleaving of appends, connects, disconnects and
    /// (out-of-order) acks, every stored record that is not evicted is eventually deleted
    /// after an ack exactly once; acks never delete unsent records; live goes before backlog;
    /// backlog respects the rate.
    #[test]
    fn every_record_is_acked_exactly_once(ops in proptest::collection::vec(op(), 0..120), small in any::<bool>()) {
        let max_bytes = if small { 600 } else { 1 << 20 };
        let mut rig = Rig::new(max_bytes);
        let mut m = Model::default();
        for o in &ops {
            apply(&mut rig, &mut m, o)?;
        }
        // Heal the link and drain.
        if !rig.up.is_connected() {
            apply(&mut rig, &mut m, &Op::Connect)?;
        }
        for _ in 0..100_000 {
            check_send(&mut rig, &mut m)?;
            if m.collector.is_empty() {
                if rig.spool.meta().records == 0 {
                    break;
                }
                rig.now = rig.up.poll_timeout().ok_or_else(|| TestCaseError::fail("stuck: records left, no timer"))?.max(rig.now);
            } else {
                check_ack(&mut rig, &mut m, 0)?;
            }
        }
        prop_assert_eq!(rig.spool.meta().records, 0);
        for s in &m.stored {
            let d = m.deleted.get(s).copied().unwrap_or(0);
            if m.evicted.contains(s) {
                prop_assert_eq!(d, 0, "seq {} evicted and acked", s);
            } else {
                prop_assert_eq!(d, 1, "seq {} acked {} times", s, d);
            }
        }
        prop_assert!(m.deleted.keys().all(|s| m.stored.contains(s)));
    }
}
