//! Group commit: one writer task takes batches from every connection through a bounded
//! channel, writes whatever is queued in one atomic write, fsyncs it, and only then tells each
//! connection that its batch is durable (so it may `Ack`).
//!
//! Deduplication happens here: a record whose (terminal, epoch, seq) is already stored, or
//! appears earlier in the same group, is neither written nor counted again; its batch still
//! completes successfully.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use storepulse_collector_core::{ClockPolicy, Fleet, TerminalEntry, TimeFix};
use storepulse_shared::{Batch, Hello, Record, Seq, TerminalId};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use crate::config::GroupCommit;
use crate::detection::{DetectFeed, DetectInput};
use crate::metrics::{Metrics, Stage};
use crate::store::{CommitTimes, RecordKey, Store, StoredRecord, WriteSet};

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
        /// Completed once durable.
        done: oneshot::Sender<Result<(), CommitFailed>>,
    },
    /// A validated batch: store its records.
    Batch {
        /// Terminal.
        terminal: TerminalId,
        /// Spool epoch from the connection's Hello.
        spool_epoch: u64,
        /// The batch.
        batch: Batch,
        /// Collector clock at receipt, Unix ms.
        now_unix_ms: i64,
        /// Completed once durable, with the number of newly stored records.
        done: oneshot::Sender<Result<usize, CommitFailed>>,
    },
}

impl Job {
    fn records(&self) -> usize {
        match self {
            Self::Hello { .. } => 0,
            Self::Batch { batch, .. } => batch.records.len(),
        }
    }
}

/// Runs the writer until every sender is dropped.
pub(crate) async fn run_writer(
    mut rx: mpsc::Receiver<Job>,
    store: Store,
    fleet: Arc<RwLock<Fleet>>,
    limits: GroupCommit,
    feed: Option<DetectFeed>,
    metrics: Arc<Metrics>,
) {
    loop {
        let idle = std::time::Instant::now();
        let depth = rx.len();
        let Some(first) = rx.recv().await else { break };
        let gather = std::time::Instant::now();
        metrics.add_stage(Stage::Idle, gather.duration_since(idle));
        metrics.writer_queue_depth.observe(depth as f64);
        metrics
            .writer_queue_jobs
            .store(depth as u64, Ordering::Relaxed);
        let mut records = first.records();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + limits.max_delay;
        while records < limits.max_records {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => {
                    records += job.records();
                    jobs.push(job);
                }
                Ok(None) | Err(_) => break,
            }
        }
        metrics.add_stage(Stage::Gather, gather.elapsed());
        let store = store.clone();
        let fleet = fleet.clone();
        let feed = feed.clone();
        let metrics = metrics.clone();
        // fjall calls block (fsync); keep them off the async worker threads.
        if let Err(e) = tokio::task::spawn_blocking(move || {
            commit_group(
                &store,
                &fleet,
                jobs,
                feed.as_ref(),
                Some(&metrics),
                &limits.clock,
            )
        })
        .await
        {
            error!(error = %e, "Group commit task failed");
        }
    }
    debug!("Writer stopped");
}

/// Plans, writes and completes one group. Completes every job, successfully or not. After a
/// successful commit, hands what was accepted to detection (durable data only).
pub(crate) fn commit_group(
    store: &Store,
    fleet: &RwLock<Fleet>,
    jobs: Vec<Job>,
    feed: Option<&DetectFeed>,
    metrics: Option<&Metrics>,
    clock: &ClockPolicy,
) {
    let started = std::time::Instant::now();
    let mut duplicates = 0u64;
    let mut staged: BTreeMap<TerminalId, TerminalEntry> = BTreeMap::new();
    let mut seen: HashSet<RecordKey> = HashSet::new();
    let mut set = WriteSet::default();
    let mut new_counts = Vec::with_capacity(jobs.len());
    let planned = (|| {
        let current = fleet.read().unwrap_or_else(PoisonError::into_inner);
        for job in &jobs {
            let (terminal, now) = match job {
                Job::Hello {
                    terminal,
                    now_unix_ms,
                    ..
                }
                | Job::Batch {
                    terminal,
                    now_unix_ms,
                    ..
                } => (terminal, *now_unix_ms),
            };
            let entry = staged.entry(terminal.clone()).or_insert_with(|| {
                current
                    .entry(terminal)
                    .cloned()
                    .unwrap_or_else(|| TerminalEntry::new(now))
            });
            let mut new = 0;
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
                    spool_epoch, batch, ..
                } => {
                    entry.observe_batch(now);
                    for r in &batch.records {
                        let key = RecordKey {
                            terminal: terminal.clone(),
                            epoch: *spool_epoch,
                            seq: r.seq.0,
                        };
                        if seen.contains(&key) || store.contains(&key)? {
                            duplicates += 1;
                            continue;
                        }
                        seen.insert(key.clone());
                        // Detection and the registry see the corrected time only.
                        let (time, fix) =
                            clock.correct(r.time_unix_ms, now, entry.clock_correction_ms());
                        let record = Record {
                            seq: r.seq,
                            time_unix_ms: time,
                            body: r.body.clone(),
                        };
                        entry.observe_new_record(&record);
                        new += 1;
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
            new_counts.push(new);
        }
        Ok::<(), crate::store::StoreError>(())
    })();
    set.terminals = staged.into_iter().collect();
    let was_failing = store.is_failing();
    let planned_at = std::time::Instant::now();
    let result = planned.and_then(|()| store.commit(&set));
    if let Some(m) = metrics {
        m.add_stage(Stage::Plan, planned_at.duration_since(started));
        if let Ok(t) = &result {
            m.add_stage(Stage::Write, t.write);
            m.add_stage(Stage::Fsync, t.fsync);
        }
        m.store_failing
            .store(u64::from(store.is_failing()), Ordering::Relaxed);
    }
    let committed_at = std::time::Instant::now();
    let outcome = match result {
        Ok(times) => {
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
            }
            if let Some(feed) = feed {
                feed_detection(feed, &jobs, set.records);
            }
            Ok(())
        }
        Err(e) => {
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
    for (i, job) in jobs.into_iter().enumerate() {
        // A dropped receiver means the connection is gone; nothing to tell.
        match job {
            Job::Hello { done, .. } => {
                let _ = done.send(outcome);
            }
            Job::Batch { done, .. } => {
                let _ = done.send(outcome.map(|()| new_counts.get(i).copied().unwrap_or(0)));
            }
        }
    }
    if let Some(m) = metrics {
        m.add_stage(Stage::Complete, committed_at.elapsed());
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
    m.observe_commit((times.write + times.fsync).as_secs_f64());
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
