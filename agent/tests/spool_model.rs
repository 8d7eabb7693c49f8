//! Property test of the agent's redb spool against two in-memory models: the core's `MemSpool`
//! (same shedding policy, so the two must agree exactly) and a plain map of what must be in the
//! spool, built only from what the spool reported (so a bug shared by both spools, e.g. in the
//! shedding index, still shows up as a broken guarantee).
//!
//! Operations: append (mixed kinds and sizes, under capacity pressure), read from a cursor,
//! ack (delete chosen seqs or everything up to a seq, as the uplink does), flush pending drops,
//! and reopen (close the redb file and open it again). After every step:
//! - contents, order, seqs and counts agree with both models;
//! - seqs are consecutive and never reused, also across reopen;
//! - nothing acked comes back, nothing unacked and not reported as shed is lost;
//! - the logical size stays within the bound, and every shed record is counted by kind;
//! - a transaction outcome is never shed to make room for telemetry, nor while older
//!   telemetry is still in the spool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use storepulse_agent::RedbSpool;
use storepulse_agent_core::{
    Appended, DropCounts, MemSpool, NewRecord, RecordKind, Spool, encoded_len,
};
use storepulse_shared::{
    DropReason, EndpointProbe, Heartbeat, NetQuality, PayMethod, ProbeError, Record, RecordBody,
    Scheme, Seq, SpoolDrops, TxnOutcome,
};

const EPOCH: u64 = 0x5eed;

/// A record body of a given kind; `n` varies its content and size.
fn body(kind: u8, n: u16) -> RecordBody {
    match kind % 8 {
        0..=2 => RecordBody::Heartbeat(Heartbeat {
            cpu_percent: f32::from(n % 100),
            mem_used_bytes: u64::from(n) << 10,
            mem_total_bytes: 1 << 30,
            disk_free_bytes: 1 << 33,
            uptime_secs: u64::from(n) * 7,
            temperature_c: n.is_multiple_of(2).then_some(40.5),
            battery_percent: None,
            spool_records: u64::from(n),
        }),
        3 | 4 => RecordBody::NetQuality(NetQuality {
            rtt_ms: Some(20.0),
            jitter_ms: None,
            loss_percent: Some(0.5),
            endpoints: (0..n % 12)
                .map(|i| EndpointProbe {
                    name: format!("endpoint-{i}"),
                    dns_ms: Some(1.0),
                    tcp_connect_ms: None,
                    error: Some(ProbeError::Timeout),
                })
                .collect(),
        }),
        5 | 6 => RecordBody::TxnOutcome(TxnOutcome {
            scheme: Scheme::Alipay,
            code: "C".repeat(usize::from(n % 64) + 1),
            latency_ms: u32::from(n),
            method: PayMethod::Qr,
            route: None,
        }),
        _ => RecordBody::SpoolDrops(SpoolDrops {
            reason: DropReason::SpoolFull,
            heartbeats: u64::from(n),
            net_quality: 1,
            txn_outcomes: 0,
        }),
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Append these (kind, n) records in one call.
    Append(Vec<(u8, u16)>),
    /// Read `len` seqs from a cursor (a fraction of `next_seq`, in 1/256ths).
    Read { cursor: u8, len: u8 },
    /// Ack the picked records (indexes into the spool's entries) and one unknown seq.
    Ack(Vec<u8>),
    /// Ack everything up to the picked record, as the uplink trims after in-order acks.
    AckUpTo(u8),
    /// Turn pending drops into a `SpoolDrops` record.
    Flush,
    /// Close and reopen the database.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec((any::<u8>(), any::<u16>()), 1..10).prop_map(Op::Append),
        2 => (any::<u8>(), 0u8..40).prop_map(|(cursor, len)| Op::Read { cursor, len }),
        2 => proptest::collection::vec(any::<u8>(), 1..6).prop_map(Op::Ack),
        1 => any::<u8>().prop_map(Op::AckUpTo),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

/// The plain model: what must be in the spool, and what must never come back.
#[derive(Debug, Default)]
struct Truth {
    alive: BTreeMap<u64, Record>,
    acked: BTreeSet<u64>,
    next_seq: u64,
    /// Records shed so far, by kind (SpoolDrops records are carried forward, not counted).
    shed: DropCounts,
}

impl Truth {
    /// Applies an append's report: checks seq assignment, records what is now stored, what
    /// was evicted, and checks the shedding order.
    fn appended(&mut self, given: &[NewRecord], a: &Appended) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            a.first_seq,
            Seq(self.next_seq),
            "seqs continue from next_seq"
        );
        prop_assert_eq!(a.count, given.len() as u64, "one seq per record");
        let telemetry_before: BTreeSet<u64> = self
            .alive
            .iter()
            .filter(|(_, r)| RecordKind::of(&r.body).is_telemetry())
            .map(|(s, _)| *s)
            .collect();
        let mut evicted_precious = false;
        for s in &a.evicted {
            let old = self.alive.remove(&s.0);
            prop_assert!(old.is_some(), "evicted {} was not in the spool", s.0);
            let kind = old.map(|r| RecordKind::of(&r.body)).expect("checked");
            self.shed.count(kind);
            evicted_precious |= !kind.is_telemetry();
        }
        let stored: BTreeSet<u64> = a.stored.iter().map(|e| e.seq.0).collect();
        let all_telemetry = given.iter().all(|r| RecordKind::of(&r.body).is_telemetry());
        for (i, nr) in given.iter().enumerate() {
            let seq = self.next_seq + i as u64;
            let kind = RecordKind::of(&nr.body);
            if stored.contains(&seq) {
                let record = Record {
                    seq: Seq(seq),
                    time_unix_ms: nr.time_unix_ms,
                    body: nr.body.clone(),
                };
                let e = a.stored.iter().find(|e| e.seq.0 == seq).expect("stored");
                prop_assert_eq!(e.kind, kind);
                prop_assert_eq!(e.bytes, encoded_len(&record), "logical size");
                self.alive.insert(seq, record);
            } else {
                self.shed.count(kind);
            }
        }
        self.next_seq += a.count;
        if evicted_precious {
            prop_assert!(
                !all_telemetry,
                "a transaction outcome was shed to make room for telemetry"
            );
            prop_assert!(
                telemetry_before.iter().all(|s| !self.alive.contains_key(s)),
                "a transaction outcome was shed while older telemetry stayed"
            );
        }
        Ok(())
    }
}

fn open(path: &Path, max_bytes: u64, new_epoch: u64) -> RedbSpool {
    RedbSpool::open(path, max_bytes, new_epoch).expect("open spool")
}

/// Every check that holds after any step.
fn agree(
    real: &RedbSpool,
    model: &MemSpool,
    truth: &Truth,
    max_bytes: u64,
) -> Result<(), TestCaseError> {
    let meta = real.meta();
    prop_assert_eq!(meta, model.meta(), "metadata agrees with MemSpool");
    prop_assert_eq!(
        real.entries(),
        model.entries(),
        "index agrees with MemSpool"
    );
    let records = real.records().expect("records");
    let Ok(model_records) = model.records();
    prop_assert_eq!(&records, &model_records, "contents agree with MemSpool");

    let expected: Vec<&Record> = truth.alive.values().collect();
    prop_assert_eq!(
        records.iter().collect::<Vec<_>>(),
        expected,
        "contents agree with the model"
    );
    prop_assert_eq!(meta.epoch, EPOCH, "the epoch is fixed at creation");
    prop_assert_eq!(meta.next_seq, Seq(truth.next_seq), "next_seq");
    prop_assert_eq!(meta.records, truth.alive.len() as u64, "record count");
    let bytes: u64 = records.iter().map(|r| u64::from(encoded_len(r))).sum();
    prop_assert_eq!(meta.bytes, bytes, "logical bytes");
    prop_assert!(
        meta.bytes <= max_bytes,
        "{} bytes over the bound {max_bytes}",
        meta.bytes
    );
    prop_assert_eq!(
        meta.dropped_total,
        truth.shed,
        "every shed record is counted"
    );
    prop_assert!(
        records.iter().all(|r| !truth.acked.contains(&r.seq.0)),
        "an acked record came back"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn redb_spool_behaves_like_the_models(
        ops in proptest::collection::vec(op(), 1..40),
        max_bytes in prop_oneof![300u64..3_000, Just(1u64 << 20)],
        in_flight_mod in 0u64..4,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool.redb");
        let mut real = open(&path, max_bytes, EPOCH);
        let mut model = MemSpool::new(EPOCH, max_bytes);
        let mut truth = Truth::default();
        let mut t = 1_700_000_000_000i64;
        for op in ops {
            t += 1_000;
            // Records whose seq is a multiple of in_flight_mod + 1 are in flight (all of them
            // when in_flight_mod is 0): they are shed last.
            let in_flight: BTreeSet<Seq> = truth
                .alive
                .keys()
                .filter(|s| s.is_multiple_of(in_flight_mod + 1))
                .map(|s| Seq(*s))
                .collect();
            match op {
                Op::Append(items) => {
                    let recs: Vec<NewRecord> = items
                        .iter()
                        .map(|&(k, n)| NewRecord { time_unix_ms: t, body: body(k, n) })
                        .collect();
                    let a = real.append(recs.clone(), &in_flight).expect("append");
                    let Ok(b) = model.append(recs.clone(), &in_flight);
                    prop_assert_eq!(&a, &b, "append report agrees with MemSpool");
                    truth.appended(&recs, &a)?;
                }
                Op::Read { cursor, len } => {
                    let from = truth.next_seq * u64::from(cursor) / 256;
                    let seqs: Vec<Seq> = (from..from + u64::from(len)).map(Seq).collect();
                    let got = real.read(&seqs).expect("read");
                    let Ok(model_got) = model.read(&seqs);
                    prop_assert_eq!(&got, &model_got, "read agrees with MemSpool");
                    let expected: Vec<&Record> = truth.alive.range(from..from + u64::from(len)).map(|(_, r)| r).collect();
                    prop_assert_eq!(got.iter().collect::<Vec<_>>(), expected, "read from the cursor");
                }
                Op::Ack(picks) => {
                    let alive: Vec<u64> = truth.alive.keys().copied().collect();
                    let mut seqs: Vec<Seq> = if alive.is_empty() {
                        Vec::new()
                    } else {
                        picks.iter().map(|p| Seq(alive[usize::from(*p) % alive.len()])).collect()
                    };
                    seqs.sort();
                    seqs.dedup();
                    // An ack for a record no longer there (acked before, or shed) is ignored.
                    let extra = truth.acked.iter().next().copied().unwrap_or(truth.next_seq + 5);
                    let want = seqs.len() as u64;
                    seqs.push(Seq(extra));
                    let n = real.delete(&seqs).expect("delete");
                    let Ok(m) = model.delete(&seqs);
                    prop_assert_eq!(n, m, "delete count agrees with MemSpool");
                    prop_assert_eq!(n, want, "each acked record deleted once");
                    for s in &seqs[..seqs.len() - 1] {
                        truth.alive.remove(&s.0);
                        truth.acked.insert(s.0);
                    }
                }
                Op::AckUpTo(pick) => {
                    let alive: Vec<u64> = truth.alive.keys().copied().collect();
                    if alive.is_empty() {
                        continue;
                    }
                    let upto = alive[usize::from(pick) % alive.len()];
                    let seqs: Vec<Seq> = (0..=upto).map(Seq).collect();
                    let n = real.delete(&seqs).expect("delete");
                    let Ok(m) = model.delete(&seqs);
                    prop_assert_eq!(n, m, "delete count agrees with MemSpool");
                    let gone: Vec<u64> = truth.alive.range(..=upto).map(|(s, _)| *s).collect();
                    prop_assert_eq!(n, gone.len() as u64, "everything up to the ack deleted");
                    for s in gone {
                        truth.alive.remove(&s);
                        truth.acked.insert(s);
                    }
                }
                Op::Flush => {
                    let pending = real.meta().pending_drops;
                    let a = real.flush_drops(t, &in_flight).expect("flush");
                    let Ok(b) = model.flush_drops(t, &in_flight);
                    prop_assert_eq!(&a, &b, "flush agrees with MemSpool");
                    match a {
                        None => prop_assert!(pending.is_zero(), "pending drops not flushed"),
                        Some(a) => {
                            let recs = vec![NewRecord { time_unix_ms: t, body: pending.to_body() }];
                            truth.appended(&recs, &a)?;
                        }
                    }
                }
                Op::Reopen => {
                    let before = real.records().expect("records");
                    let meta_before = real.meta();
                    drop(real);
                    // A different epoch for a new spool: an existing one keeps its own.
                    real = open(&path, max_bytes, EPOCH + 1);
                    prop_assert_eq!(real.records().expect("records"), before, "reopen lost or changed records");
                    prop_assert_eq!(real.meta(), meta_before, "reopen changed the metadata");
                }
            }
            agree(&real, &model, &truth, max_bytes)?;
        }
    }
}
