//! Group commit on one dedicated writer thread. Connections hand batches to it through a
//! bounded channel; the thread takes the first job (a blocking receive), drains whatever else is
//! queued (up to `group_commit_max_records`), writes the group in one atomic write, fsyncs it,
//! and only then completes every job of the group in one pass, so each connection may `Ack`.
//! While it writes and fsyncs, the next group queues up by itself: the busier the collector, the
//! larger its groups. `group_commit_max_delay_ms` only adds a wait when a group would be small
//! (fewer records than `group_commit_max_records` queued and its first job received less than
//! that long ago): one sleep per group, never a timer per receive.
//!
//! Why a thread of its own (issue 17): with the writer as an async task, each group was one
//! timer per receive, one `spawn_blocking` hand-off to whichever pool thread was free, and one
//! oneshot wake per batch; on a machine with many idle cores each of those hand-offs woke
//! another core, and throughput fell tenfold as cores were added. Now the store's write path
//! lives on one thread that never leaves it; a connection is woken at most once per group
//! however many of its batches the group held ([`Acks`]), and writes all their Acks at once.
//!
//! Deduplication happens here: a record whose (terminal, epoch, seq) is already stored, or
//! appears earlier in the same group, is neither written nor counted again; its batch still
//! completes successfully.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use storepulse_collector_core::{ClockPolicy, Fleet, TerminalEntry, TimeFix};
use storepulse_shared::check::QuarantinedRecord;
use storepulse_shared::{Batch, Hello, Record, Seq, TerminalId};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, error, warn};

use crate::config::GroupCommit;
use crate::detection::{DetectFeed, DetectInput};
use crate::metrics::{Metrics, Stage};
use crate::store::{CommitTimes, RecordKey, Store, StoredQuarantine, StoredRecord, WriteSet};

/// The group commit failed; the details were logged by the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store failed to commit")]
pub(crate) struct CommitFailed;

/// Work for the writer.
#[derive(Debug)]
pub(crate) enum Job {
    /// An accepted `Hello`: update the registry.
    Hello {
        /// Terminal (from the certificate, equal to the Hello's).
        terminal: TerminalId,
        /// The Hello.
        hello: Box<Hello>,
        /// Collector clock at receipt, Unix ms.
        now_unix_ms: i64,
        /// When it was received (monotonic), for the gather deadline.
        received: Instant,
        /// Completed once durable.
        done: oneshot::Sender<Result<(), CommitFailed>>,
    },
    /// A validated batch: store its records.
    Batch {
        /// Terminal.
        terminal: TerminalId,
        /// Spool epoch from the connection's Hello.
        spool_epoch: u64,
        /// The batch (its valid records).
        batch: Batch,
        /// The batch's records that broke a value rule: stored apart, in the quarantine.
        quarantined: Vec<QuarantinedRecord>,
        /// Collector clock at receipt, Unix ms.
        now_unix_ms: i64,
        /// When it was received (monotonic), for the gather deadline.
        received: Instant,
        /// Settled once durable (or failed).
        done: Completion,
    },
}

/// How far one connection's batches have been committed, shared by the connection and the
/// writer. The writer settles a connection's batches in the order they were sent (one
/// channel, one thread), so a count says it all: the connection's batch number `n` (from 0)
/// is durable once [`Acks::done`] is above `n`. After a failed commit `failed` is set and
/// `done` never moves again: the connection acks what was durable before and closes.
#[derive(Debug, Default)]
pub(crate) struct Acks {
    done: AtomicU64,
    failed: AtomicBool,
    changed: Notify,
}

/// One batch's place in its connection's [`Acks`]. Settled by the writer; one dropped
/// unsettled (the group commit panicked) fails its connection, like a dropped oneshot would.
#[derive(Debug)]
pub(crate) struct Completion {
    acks: Arc<Acks>,
    ordinal: u64,
    settled: bool,
}

impl Job {
    fn records(&self) -> usize {
        match self {
            Self::Hello { .. } => 0,
            Self::Batch {
                batch, quarantined, ..
            } => batch.records.len() + quarantined.len(),
        }
    }

    fn received(&self) -> Instant {
        match self {
            Self::Hello { received, .. } | Self::Batch { received, .. } => *received,
        }
    }
}

impl Acks {
    /// How many of the connection's batches are durable (they are numbered from 0).
    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Whether a commit of one of the connection's batches failed.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Resolves after the writer settled batches of this connection since the last call
    /// (possibly at once, and possibly with nothing new: check [`Self::done`]).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

impl Completion {
    /// The connection's batch number `ordinal` (0 for its first batch).
    pub(crate) fn new(acks: Arc<Acks>, ordinal: u64) -> Self {
        Self {
            acks,
            ordinal,
            settled: false,
        }
    }

    /// Records the outcome without waking the connection (the writer wakes each connection
    /// once per group).
    fn settle(&mut self, ok: bool) {
        if ok {
            if !self.acks.failed.load(Ordering::Acquire) {
                self.acks.done.store(self.ordinal + 1, Ordering::Release);
            }
        } else {
            self.acks.failed.store(true, Ordering::Release);
        }
        self.settled = true;
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.settled {
            self.acks.failed.store(true, Ordering::Release);
            self.acks.changed.notify_one();
        }
    }
}

/// Starts the writer thread; it runs until every sender is dropped and the queue is empty.
pub(crate) fn spawn_writer(
    rx: mpsc::Receiver<Job>,
    store: Store,
    fleet: Arc<RwLock<Fleet>>,
    limits: GroupCommit,
    feed: Option<DetectFeed>,
    metrics: Arc<Metrics>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("storepulse-writer".into())
        .spawn(move || run_writer(rx, &store, &fleet, limits, feed.as_ref(), &metrics))
}

/// The writer thread's loop: gather a group, commit it, complete it.
fn run_writer(
    mut rx: mpsc::Receiver<Job>,
    store: &Store,
    fleet: &RwLock<Fleet>,
    limits: GroupCommit,
    feed: Option<&DetectFeed>,
    metrics: &Metrics,
) {
    let mut marks = Watermarks::default();
    loop {
        let idle = Instant::now();
        // A plain thread, outside the runtime: a blocking receive parks it until a sender
        // hands over a job (the only wake-up, and only when the queue was empty).
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let gather = Instant::now();
        metrics.add_stage(Stage::Idle, gather.duration_since(idle));
        let depth = rx.len() + 1;
        metrics.writer_queue_depth.observe(depth as f64);
        metrics
            .writer_queue_jobs
            .store(depth as u64, Ordering::Relaxed);
        let deadline = first.received() + limits.max_delay;
        let mut records = first.records();
        let mut jobs = vec![first];
        drain(&mut rx, &mut jobs, &mut records, limits.max_records);
        if records < limits.max_records {
            let now = Instant::now();
            if deadline > now {
                std::thread::sleep(deadline - now);
                drain(&mut rx, &mut jobs, &mut records, limits.max_records);
            }
        }
        metrics.add_stage(Stage::Gather, gather.elapsed());
        let n = jobs.len();
        // A panic inside one group must not stop ingest: its jobs are dropped unsettled, which
        // fails their connections (nothing is acked), and the next group goes on.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            commit_group(
                store,
                fleet,
                &mut marks,
                jobs,
                feed,
                Some(metrics),
                &limits.clock,
            );
        }));
        if result.is_err() {
            // Whatever the panic left half done, the store is the truth again.
            marks = Watermarks::default();
            error!(
                jobs = n,
                "Group commit panicked: its batches were not acknowledged; agents resend them"
            );
        }
    }
    debug!("Writer stopped");
}

/// The writer's memory of the highest seq stored per terminal (for its latest spool epoch),
/// so that deduplicating a record newer than anything stored costs no store lookup. Loaded
/// from the store the first time a terminal (or a new epoch of it) shows up, advanced after
/// each successful commit, forgotten after a failed one (the store may hold more than it
/// says then). A record at or below the mark is looked up as before.
#[derive(Debug, Default)]
pub(crate) struct Watermarks {
    durable: std::collections::HashMap<TerminalId, (u64, Option<u64>)>,
}

/// One (terminal, epoch)'s mark within a group: the highest seq stored or staged, and the
/// seqs staged so far in this group.
#[derive(Debug)]
struct GroupMark {
    highest: Option<u64>,
    staged: HashSet<u64>,
}

impl Watermarks {
    /// The highest seq stored for `terminal` in `epoch`.
    fn highest(
        &mut self,
        store: &Store,
        terminal: &TerminalId,
        epoch: u64,
    ) -> Result<Option<u64>, crate::store::StoreError> {
        if let Some((e, seq)) = self.durable.get(terminal)
            && *e == epoch
        {
            return Ok(*seq);
        }
        let seq = store.last_seq(terminal, epoch)?;
        self.durable.insert(terminal.clone(), (epoch, seq));
        Ok(seq)
    }
}

/// Moves queued jobs into the group until it holds `max_records` records or the queue is
/// empty.
fn drain(
    rx: &mut mpsc::Receiver<Job>,
    jobs: &mut Vec<Job>,
    records: &mut usize,
    max_records: usize,
) {
    while *records < max_records {
        match rx.try_recv() {
            Ok(job) => {
                *records += job.records();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
}

/// Plans, writes and completes one group. Completes every job, successfully or not. After a
/// successful commit, hands what was accepted to detection (durable data only).
pub(crate) fn commit_group(
    store: &Store,
    fleet: &RwLock<Fleet>,
    marks: &mut Watermarks,
    mut jobs: Vec<Job>,
    feed: Option<&DetectFeed>,
    metrics: Option<&Metrics>,
    clock: &ClockPolicy,
) {
    let started = Instant::now();
    let mut duplicates = 0u64;
    let mut staged: BTreeMap<TerminalId, TerminalEntry> = BTreeMap::new();
    let mut group_marks: HashMap<(TerminalId, u64), GroupMark> = HashMap::new();
    let mut set = WriteSet::default();
    let mut quarantine_keys: HashSet<RecordKey> = HashSet::new();
    let planned = (|| {
        let current = fleet.read().unwrap_or_else(PoisonError::into_inner);
        for job in &mut jobs {
            let (terminal, now) = match &*job {
                Job::Hello {
                    terminal,
                    now_unix_ms,
                    ..
                }
                | Job::Batch {
                    terminal,
                    now_unix_ms,
                    ..
                } => (terminal.clone(), *now_unix_ms),
            };
            let terminal = &terminal;
            let entry = staged.entry(terminal.clone()).or_insert_with(|| {
                current
                    .entry(terminal)
                    .cloned()
                    .unwrap_or_else(|| TerminalEntry::new(now))
            });
            match job {
                Job::Hello { hello, .. } => {
                    entry.observe_hello(
                        now,
                        &hello.identity,
                        &hello.agent_version,
                        hello.spool_epoch,
                    );
                    let was_skewed = entry.clock_skewed;
                    entry.observe_clock(now, hello.agent_time_unix_ms, clock);
                    if entry.clock_skewed && !was_skewed {
                        warn!(
                            %terminal,
                            offset_ms = entry.clock_offset_ms,
                            "Agent clock is skewed: its record times are corrected by the \
                             measured offset (agent time kept as agent_time_unix_ms). Fix the \
                             terminal's time sync (NTP)."
                        );
                    }
                }
                Job::Batch {
                    spool_epoch,
                    batch,
                    quarantined,
                    ..
                } => {
                    entry.observe_batch(now);
                    // Quarantined records: stored apart once per key (a replay finds its
                    // key), never counted as records or shown to detection.
                    for q in std::mem::take(quarantined) {
                        let key = RecordKey {
                            terminal: terminal.clone(),
                            epoch: *spool_epoch,
                            seq: q.seq.0,
                        };
                        if !quarantine_keys.insert(key.clone())
                            || store.quarantine_contains(&key)?
                        {
                            continue;
                        }
                        set.quarantined.push((
                            key,
                            StoredQuarantine {
                                time_unix_ms: q.time_unix_ms,
                                received_unix_ms: now,
                                kind: q.kind.to_owned(),
                                field: q.error.field,
                                reason: q.error.reason,
                                body: q.body,
                            },
                        ));
                    }
                    let mark = match group_marks.entry((terminal.clone(), *spool_epoch)) {
                        Entry::Occupied(o) => o.into_mut(),
                        Entry::Vacant(v) => v.insert(GroupMark {
                            highest: marks.highest(store, terminal, *spool_epoch)?,
                            staged: HashSet::new(),
                        }),
                    };
                    // The records move into the write set (the job keeps only its completion).
                    for r in std::mem::take(&mut batch.records) {
                        let key = RecordKey {
                            terminal: terminal.clone(),
                            epoch: *spool_epoch,
                            seq: r.seq.0,
                        };
                        let newer = mark.highest.is_none_or(|h| r.seq.0 > h);
                        if !newer && (mark.staged.contains(&r.seq.0) || store.contains(&key)?) {
                            duplicates += 1;
                            continue;
                        }
                        mark.staged.insert(r.seq.0);
                        if newer {
                            mark.highest = Some(r.seq.0);
                        }
                        // Detection and the registry see the corrected time only.
                        let (time, fix) =
                            clock.correct(r.time_unix_ms, now, entry.clock_correction_ms());
                        let record = Record {
                            seq: r.seq,
                            time_unix_ms: time,
                            body: r.body,
                        };
                        entry.observe_new_record(&record);
                        set.records.push((
                            key,
                            StoredRecord {
                                time_unix_ms: time,
                                received_unix_ms: now,
                                body: record.body,
                                agent_time_unix_ms: (fix != TimeFix::Kept)
                                    .then_some(r.time_unix_ms),
                            },
                        ));
                    }
                }
            }
        }
        Ok::<(), crate::store::StoreError>(())
    })();
    set.terminals = staged.into_iter().collect();
    let was_failing = store.is_failing();
    let planned_at = Instant::now();
    let result = planned.and_then(|()| store.commit(&set));
    if let Some(m) = metrics {
        m.add_stage(Stage::Plan, planned_at.duration_since(started));
        if let Ok(t) = &result {
            m.add_stage(Stage::Encode, t.encode);
            m.add_stage(Stage::Commit, t.commit);
        }
        m.store_failing
            .store(u64::from(store.is_failing()), Ordering::Relaxed);
    }
    let committed_at = Instant::now();
    let outcome = match result {
        Ok(times) => {
            for ((terminal, epoch), mark) in group_marks {
                marks.durable.insert(terminal, (epoch, mark.highest));
            }
            let mut f = fleet.write().unwrap_or_else(PoisonError::into_inner);
            for (t, e) in set.terminals {
                let was_skewed = f.entry(&t).is_some_and(|old| old.clock_skewed);
                if let Some(m) = metrics
                    && was_skewed != e.clock_skewed
                {
                    if e.clock_skewed {
                        m.clock_skewed_terminals.fetch_add(1, Ordering::Relaxed);
                    } else {
                        m.clock_skewed_terminals.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                f.insert(t, e);
            }
            debug!(
                jobs = jobs.len(),
                records = set.records.len(),
                "Group committed"
            );
            if let Some(m) = metrics {
                count_commit(m, &jobs, &set.records, duplicates, times);
                for (_, q) in &set.quarantined {
                    m.ingest_quarantined.add(&q.kind, 1);
                }
            }
            if let Some(feed) = feed {
                feed_detection(feed, &jobs, set.records);
            }
            Ok(())
        }
        Err(e) => {
            // A failed fjall commit may still have reached the journal: ask the store again.
            marks.durable.clear();
            if let Some(m) = metrics {
                m.store_commit_failures.fetch_add(1, Ordering::Relaxed);
            }
            if was_failing {
                debug!(error = %e, jobs = jobs.len(), "Store still failing; batches refused");
            } else {
                error!(
                    error = %e,
                    jobs = jobs.len(),
                    "Store commit failed: nothing was acknowledged, the affected connections are \
                     closed and agents keep their records and resend them. If the disk holding \
                     store.path is full, free space there: the collector reopens the store and \
                     resumes by itself (GET /healthz answers 503 and storepulse_store_failing \
                     is 1 until then)."
                );
            }
            Err(CommitFailed)
        }
    };
    complete(jobs, outcome.is_ok());
    if let Some(m) = metrics {
        m.add_stage(Stage::Complete, committed_at.elapsed());
    }
}

/// Completes every job of a group in one pass: settles each batch, then wakes each connection
/// once, however many of its batches the group held.
fn complete(jobs: Vec<Job>, ok: bool) {
    let mut wake: Vec<Arc<Acks>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job {
            Job::Hello { done, .. } => {
                // A dropped receiver means the connection is gone; nothing to tell.
                let _ = done.send(if ok { Ok(()) } else { Err(CommitFailed) });
            }
            Job::Batch { mut done, .. } => {
                done.settle(ok);
                if !wake.last().is_some_and(|a| Arc::ptr_eq(a, &done.acks)) {
                    wake.push(done.acks.clone());
                }
            }
        }
    }
    wake.sort_unstable_by_key(|a| Arc::as_ptr(a) as usize);
    wake.dedup_by(|a, b| Arc::ptr_eq(a, b));
    for acks in wake {
        acks.changed.notify_one();
    }
}

/// Sends accepted Hellos and the newly stored records (grouped per terminal) to detection.
fn feed_detection(feed: &DetectFeed, jobs: &[Job], records: Vec<(RecordKey, StoredRecord)>) {
    for job in jobs {
        if let Job::Hello {
            hello, now_unix_ms, ..
        } = job
        {
            feed.send(DetectInput::Hello(
                *now_unix_ms,
                Box::new(hello.identity.clone()),
            ));
        }
    }
    let mut per_terminal: BTreeMap<TerminalId, (i64, Vec<Record>)> = BTreeMap::new();
    for (key, rec) in records {
        let entry = per_terminal
            .entry(key.terminal)
            .or_insert_with(|| (rec.received_unix_ms, Vec::new()));
        entry.1.push(Record {
            seq: Seq(key.seq),
            time_unix_ms: rec.time_unix_ms,
            body: rec.body,
        });
    }
    for (terminal, (at, recs)) in per_terminal {
        feed.send(DetectInput::Records(at, terminal, recs));
    }
}

/// Updates the ingest and store metrics after a successful commit.
fn count_commit(
    m: &Metrics,
    jobs: &[Job],
    records: &[(RecordKey, StoredRecord)],
    duplicates: u64,
    times: CommitTimes,
) {
    m.store_commits.fetch_add(1, Ordering::Relaxed);
    m.observe_commit((times.encode + times.commit).as_secs_f64());
    m.group_jobs.observe(jobs.len() as f64);
    m.group_records.observe(records.len() as f64);
    m.ingest_records
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    m.ingest_duplicates.fetch_add(duplicates, Ordering::Relaxed);
    let batches = jobs
        .iter()
        .filter(|j| matches!(j, Job::Batch { .. }))
        .count();
    m.ingest_batches
        .fetch_add(batches as u64, Ordering::Relaxed);
    for (_, r) in records {
        if let storepulse_shared::RecordBody::SpoolDrops(d) = &r.body {
            m.agent_spool_drops.add("heartbeat", d.heartbeats);
            m.agent_spool_drops.add("net_quality", d.net_quality);
            m.agent_spool_drops.add("txn_outcome", d.txn_outcomes);
        }
    }
}

#[cfg(test)]
mod tests {
    use storepulse_collector_core::Thresholds;
    use storepulse_shared::{PayMethod, RecordBody, Scheme, TxnOutcome};

    use super::*;

    fn job(acks: &Arc<Acks>, ordinal: u64, epoch: u64, seqs: &[u64]) -> Job {
        let records = seqs
            .iter()
            .map(|s| Record {
                seq: Seq(*s),
                time_unix_ms: 1_000,
                body: RecordBody::TxnOutcome(TxnOutcome {
                    scheme: Scheme::Cup,
                    code: "00".into(),
                    latency_ms: 1,
                    method: PayMethod::Card,
                    route: None,
                }),
            })
            .collect();
        Job::Batch {
            terminal: TerminalId::new("T1").expect("valid"),
            spool_epoch: epoch,
            batch: Batch {
                batch_id: ordinal + 1,
                records,
            },
            quarantined: Vec::new(),
            now_unix_ms: 1_000,
            received: Instant::now(),
            done: Completion::new(acks.clone(), ordinal),
        }
    }

    fn stored(store: &Store) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        store
            .for_each_record(|r| {
                out.push((r.key.epoch, r.key.seq));
                Ok(())
            })
            .expect("scan");
        out
    }

    /// Records above the remembered mark skip the lookup; replays, gaps below the mark, repeats
    /// inside one group and a writer that forgot its marks (restart) all stay exactly once.
    #[test]
    fn watermarks_deduplicate_replays_gaps_and_repeats() {
        let store = Store::in_memory();
        let fleet = RwLock::new(Fleet::new(Thresholds {
            stale_after_ms: 1,
            offline_after_ms: 2,
        }));
        let metrics = Metrics::default();
        let clock = ClockPolicy {
            skew_threshold_ms: 120_000,
            max_record_age_ms: i64::MAX / 4,
        };
        let acks = Arc::new(Acks::default());
        let mut marks = Watermarks::default();
        let commit = |marks: &mut Watermarks, jobs: Vec<Job>| {
            commit_group(&store, &fleet, marks, jobs, None, Some(&metrics), &clock);
        };
        // Seqs 0, 1, 2 and 5 (3 and 4 missing), then a repeat of 5 and 2 in the same group.
        commit(
            &mut marks,
            vec![job(&acks, 0, 7, &[0, 1, 2, 5]), job(&acks, 1, 7, &[2, 5])],
        );
        assert_eq!(acks.done(), 2);
        assert_eq!(metrics.ingest_records.load(Ordering::Relaxed), 4);
        assert_eq!(metrics.ingest_duplicates.load(Ordering::Relaxed), 2);
        // A replay of 1..=6: 3 and 4 fill the gap below the mark, 6 is new, the rest repeats.
        commit(&mut marks, vec![job(&acks, 2, 7, &[1, 2, 3, 4, 5, 6])]);
        assert_eq!(metrics.ingest_records.load(Ordering::Relaxed), 7);
        assert_eq!(metrics.ingest_duplicates.load(Ordering::Relaxed), 5);
        // A new epoch, then the old one again with a writer that forgot its marks.
        commit(&mut marks, vec![job(&acks, 3, 8, &[0])]);
        let mut fresh = Watermarks::default();
        commit(
            &mut fresh,
            vec![job(&acks, 4, 7, &[6, 7]), job(&acks, 5, 8, &[0])],
        );
        assert_eq!(acks.done(), 6);
        assert!(!acks.failed());
        assert_eq!(
            stored(&store),
            [
                (7, 0),
                (7, 1),
                (7, 2),
                (7, 3),
                (7, 4),
                (7, 5),
                (7, 6),
                (7, 7),
                (8, 0)
            ]
        );
        assert_eq!(metrics.ingest_records.load(Ordering::Relaxed), 9);
    }

    /// A batch dropped unsettled (a panic in its group) fails its connection; nothing later
    /// is counted as done.
    #[test]
    fn an_unsettled_completion_fails_its_connection() {
        let acks = Arc::new(Acks::default());
        let mut first = Completion::new(acks.clone(), 0);
        first.settle(true);
        drop(first);
        drop(Completion::new(acks.clone(), 1));
        let mut third = Completion::new(acks.clone(), 2);
        third.settle(true);
        assert_eq!(acks.done(), 1, "nothing past a failed batch is done");
        assert!(acks.failed());
    }
}
