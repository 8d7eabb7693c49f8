//! Prometheus metrics of the collector, exposed at `GET /metrics` in the text exposition format
//! (version 0.0.4). Names are `storepulse_<what>_<unit>`, counters end in `_total`, and labels
//! have low cardinality only (never a terminal id). Counters are plain atomics: the hot paths
//! (ingest, commit) only add to them.
//!
//! The ingest pipeline explains itself stage by stage (issue 17): time from a batch's receipt to
//! its Ack (`storepulse_ingest_ack_latency_seconds`), the writer's queue depth when it starts a
//! group, jobs and records per group, and where the writer thread's time goes
//! (`storepulse_writer_seconds_total{stage}`: idle, gather, plan, encode, commit, complete).
//! `storepulse-bench ingest` prints the same figures over its measured window.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Most buckets a [`Histogram`] may have (its storage is a fixed array, so it derives
/// `Default`).
const MAX_BUCKETS: usize = 24;

/// The bucket bounds of one kind of [`Histogram`].
pub trait Bounds {
    /// Upper bounds, ascending, at most 24 (the fixed bucket array).
    const BOUNDS: &'static [f64];
    /// The sum is kept as an integer of `value * SCALE` (1e6 for seconds: microseconds).
    const SCALE: f64;
}

/// Group commit latency including fsync, seconds.
#[derive(Debug, Default)]
pub struct CommitSecs;
impl Bounds for CommitSecs {
    const BOUNDS: &'static [f64] = &[
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5,
    ];
    const SCALE: f64 = 1e6;
}

/// Receipt-to-ack time of a batch, seconds (finer around the 20 ms target).
#[derive(Debug, Default)]
pub struct AckSecs;
impl Bounds for AckSecs {
    const BOUNDS: &'static [f64] = &[
        0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03,
        0.04, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0,
    ];
    const SCALE: f64 = 1e6;
}

/// Counts (records or jobs per group, queue depth), powers of two.
#[derive(Debug, Default)]
pub struct Counts;
impl Bounds for Counts {
    const BOUNDS: &'static [f64] = &[
        0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
        8192.0, 16384.0, 32768.0, 65536.0,
    ];
    const SCALE: f64 = 1.0;
}

/// A Prometheus histogram of atomics; `B` names its bucket bounds.
#[derive(Debug, Default)]
pub struct Histogram<B> {
    buckets: [AtomicU64; MAX_BUCKETS],
    count: AtomicU64,
    sum_scaled: AtomicU64,
    bounds: PhantomData<B>,
}

/// Where the writer thread spends its time (`storepulse_writer_seconds_total{stage}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Blocked on an empty queue, waiting for a first job.
    Idle,
    /// From the first job of a group to the group's close (draining the queue, and waiting
    /// `group_commit_max_delay_ms` for more when the group is small).
    Gather,
    /// Deduplication lookups and the group's plan (registry entries, clock correction).
    Plan,
    /// Encoding the group and assembling the store's batch.
    Encode,
    /// The store's durable commit: journal write, fsync, then the memtable insert.
    Commit,
    /// Registry update, detection feed and completing every job's acknowledgement.
    Complete,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::Idle,
        Stage::Gather,
        Stage::Plan,
        Stage::Encode,
        Stage::Commit,
        Stage::Complete,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Idle => "idle",
            Stage::Gather => "gather",
            Stage::Plan => "plan",
            Stage::Encode => "encode",
            Stage::Commit => "commit",
            Stage::Complete => "complete",
        }
    }
}

/// A counter family keyed by one low-cardinality label value.
#[derive(Debug, Default)]
pub struct LabeledCounter {
    values: Mutex<BTreeMap<String, u64>>,
}

/// Every metric of the collector.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records newly stored.
    pub ingest_records: AtomicU64,
    /// Records received again and ignored (already stored).
    pub ingest_duplicates: AtomicU64,
    /// Batches acknowledged.
    pub ingest_batches: AtomicU64,
    /// Records quarantined (a value broke a rule; kept apart, not stored), by record kind.
    pub ingest_quarantined: LabeledCounter,
    /// Frame bytes read from agents.
    pub ingest_bytes: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicI64,
    /// Completed handshakes by result (`ok`, `failed`).
    pub handshakes: LabeledCounter,
    /// Connections closed by the collector, by reason (close code name).
    pub refusals: LabeledCounter,
    /// Admission control decisions on incoming connections over the handshake budget, by
    /// action (`retry`: QUIC Retry sent; `queued`: waited for a handshake slot; `refused`:
    /// refused before the handshake, queue full or waited too long).
    pub admission: LabeledCounter,
    /// Times a connection over its rate limit had its reading paused.
    pub rate_limit_delays: AtomicU64,
    /// Total time connections had their reading paused by the rate limit, microseconds.
    pub rate_limit_delay_micros: AtomicU64,
    /// Records agents reported dropping from their spools, by record kind.
    pub agent_spool_drops: LabeledCounter,
    /// Group commits.
    pub store_commits: AtomicU64,
    /// Failed group commits.
    pub store_commit_failures: AtomicU64,
    /// Group commit latency (encode, journal write, fsync).
    pub commit_duration: Histogram<CommitSecs>,
    /// Time from a batch's receipt (its frame decoded) to its Ack being written.
    pub ack_latency: Histogram<AckSecs>,
    /// Jobs (batches and Hellos) per group commit.
    pub group_jobs: Histogram<Counts>,
    /// Records written per group commit.
    pub group_records: Histogram<Counts>,
    /// Jobs waiting in the writer's queue when it starts a group.
    pub writer_queue_depth: Histogram<Counts>,
    /// The writer queue's depth when the last group started.
    pub writer_queue_jobs: AtomicU64,
    /// The writer thread's time per [`Stage`], microseconds.
    writer_stage_micros: [AtomicU64; Stage::ALL.len()],
    /// On-disk size of the store, bytes (sampled).
    pub store_size_bytes: AtomicU64,
    /// 1 while the store's last write failed (nothing is acked until it recovers), else 0.
    pub store_failing: AtomicU64,
    /// Terminals whose clock is off by more than `ingest.clock_skew_threshold_secs` (their
    /// record times are corrected).
    pub clock_skewed_terminals: AtomicU64,
    /// Detection ticks (window evaluations).
    pub detection_ticks: AtomicU64,
    /// Records fed to detection.
    pub detection_records: AtomicU64,
    /// Inputs dropped because detection was behind.
    pub detection_dropped: AtomicU64,
    /// Incidents opened, by kind.
    pub incidents_opened: LabeledCounter,
    /// Open incidents now, by kind (every kind has a series, at 0 when none is open).
    pub incidents_open: Mutex<BTreeMap<String, i64>>,
    /// `not_after` of the TLS certificates, Unix seconds, by which (`collector`, `ca`).
    pub cert_not_after: Mutex<BTreeMap<String, i64>>,
    /// Notifications delivered, by receiver.
    pub notifications_sent: LabeledCounter,
    /// Notification attempts that failed, by receiver.
    pub notifications_failed: LabeledCounter,
}

impl LabeledCounter {
    /// Adds `n` to the counter of `label`.
    pub fn add(&self, label: &str, n: u64) {
        let mut v = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        *v.entry(label.to_owned()).or_default() += n;
    }

    /// The current value of `label`.
    pub fn value(&self, label: &str) -> u64 {
        let v = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        v.get(label).copied().unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        let v = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        v.iter().map(|(k, n)| (k.clone(), *n)).collect()
    }
}

impl<B: Bounds> Histogram<B> {
    /// Counts one observation.
    pub fn observe(&self, v: f64) {
        for (i, le) in B::BOUNDS.iter().take(MAX_BUCKETS).enumerate() {
            if v <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Saturating float-to-int cast: a negative or NaN value adds nothing.
        self.sum_scaled
            .fetch_add((v * B::SCALE).round() as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        head(out, name, "histogram", help);
        for (i, le) in B::BOUNDS.iter().take(MAX_BUCKETS).enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{le}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_scaled.load(Ordering::Relaxed) as f64 / B::SCALE
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Escapes a label value for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn scalar(out: &mut String, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}

fn family(out: &mut String, name: &str, help: &str, label: &str, values: &[(String, u64)]) {
    head(out, name, "counter", help);
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", esc(k));
    }
}

/// `values` with a 0 for each of `keys` it lacks, so the series exist before the first event.
fn with_zeros(keys: &[&str], values: Vec<(String, u64)>) -> Vec<(String, u64)> {
    let mut all: BTreeMap<String, u64> = keys.iter().map(|k| ((*k).to_owned(), 0)).collect();
    all.extend(values);
    all.into_iter().collect()
}

impl Metrics {
    /// A fresh set, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records one group commit's latency.
    pub fn observe_commit(&self, secs: f64) {
        self.commit_duration.observe(secs);
    }

    /// Adds time the writer thread spent in `stage`.
    pub fn add_stage(&self, stage: Stage, took: Duration) {
        let i = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        self.writer_stage_micros[i].fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Sets the open-incident gauge from the current open incidents' kinds.
    pub fn set_open_incidents<'a>(&self, kinds: impl Iterator<Item = &'a str>) {
        let mut m = self
            .incidents_open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for v in m.values_mut() {
            *v = 0;
        }
        for k in storepulse_shared::IncidentKind::ALL {
            m.entry(k.as_str().to_owned()).or_default();
        }
        for k in kinds {
            *m.entry(k.to_owned()).or_default() += 1;
        }
    }

    /// The text exposition.
    pub fn render(&self, terminals_by_state: &[(&str, u64)]) -> String {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut o = String::with_capacity(4096);
        scalar(
            &mut o,
            "storepulse_ingest_records_total",
            "counter",
            "Records newly stored.",
            r(&self.ingest_records),
        );
        scalar(
            &mut o,
            "storepulse_ingest_duplicate_records_total",
            "counter",
            "Records received again and not stored twice.",
            r(&self.ingest_duplicates),
        );
        family(
            &mut o,
            "storepulse_ingest_quarantined_records_total",
            "Records kept apart in the quarantine (a bad label, a number out of range or not finite), by record kind.",
            "kind",
            &with_zeros(
                &["heartbeat", "net_quality", "txn_outcome", "spool_drops"],
                self.ingest_quarantined.snapshot(),
            ),
        );
        scalar(
            &mut o,
            "storepulse_ingest_batches_total",
            "counter",
            "Batches durably stored and acknowledged.",
            r(&self.ingest_batches),
        );
        scalar(
            &mut o,
            "storepulse_ingest_bytes_total",
            "counter",
            "Bytes read from agent streams.",
            r(&self.ingest_bytes),
        );
        scalar(
            &mut o,
            "storepulse_ingest_connections",
            "gauge",
            "Agent connections open now.",
            self.connections_open.load(Ordering::Relaxed),
        );
        family(
            &mut o,
            "storepulse_ingest_handshakes_total",
            "Completed QUIC/TLS handshakes by result.",
            "result",
            &self.handshakes.snapshot(),
        );
        family(
            &mut o,
            "storepulse_ingest_refusals_total",
            "Connections closed by the collector, by reason.",
            "reason",
            &self.refusals.snapshot(),
        );
        family(
            &mut o,
            "storepulse_ingest_admission_total",
            "Incoming connections over the handshake budget, by action (retry, queued, refused).",
            "action",
            &self.admission.snapshot(),
        );
        scalar(
            &mut o,
            "storepulse_ingest_rate_limit_delays_total",
            "counter",
            "Times a connection over its rate limit had its reading paused.",
            r(&self.rate_limit_delays),
        );
        scalar(
            &mut o,
            "storepulse_ingest_rate_limit_delay_seconds_total",
            "counter",
            "Time connections spent paused by the rate limit.",
            r(&self.rate_limit_delay_micros) as f64 / 1e6,
        );
        family(
            &mut o,
            "storepulse_agent_spool_drops_total",
            "Records agents reported dropping from their spools, by kind.",
            "kind",
            &self.agent_spool_drops.snapshot(),
        );
        scalar(
            &mut o,
            "storepulse_store_commits_total",
            "counter",
            "Group commits.",
            r(&self.store_commits),
        );
        scalar(
            &mut o,
            "storepulse_store_commit_failures_total",
            "counter",
            "Group commits that failed.",
            r(&self.store_commit_failures),
        );
        self.commit_duration.render(
            &mut o,
            "storepulse_store_commit_duration_seconds",
            "Group commit latency including fsync.",
        );
        self.ack_latency.render(
            &mut o,
            "storepulse_ingest_ack_latency_seconds",
            "Time from a batch's receipt to its Ack (queue, group commit with fsync, ack write).",
        );
        self.group_jobs.render(
            &mut o,
            "storepulse_writer_group_jobs",
            "Jobs (batches and Hellos) per group commit.",
        );
        self.group_records.render(
            &mut o,
            "storepulse_writer_group_records",
            "Records written per group commit.",
        );
        self.writer_queue_depth.render(
            &mut o,
            "storepulse_writer_queue_depth_jobs",
            "Jobs waiting in the writer's queue when it starts a group.",
        );
        scalar(
            &mut o,
            "storepulse_writer_queue_jobs",
            "gauge",
            "Jobs waiting in the writer's queue when the last group started.",
            r(&self.writer_queue_jobs),
        );
        head(
            &mut o,
            "storepulse_writer_seconds_total",
            "counter",
            "The writer thread's time by stage (idle, gather, plan, encode, commit, complete).",
        );
        for (i, stage) in Stage::ALL.iter().enumerate() {
            let _ = writeln!(
                o,
                "storepulse_writer_seconds_total{{stage=\"{}\"}} {}",
                stage.as_str(),
                r(&self.writer_stage_micros[i]) as f64 / 1e6
            );
        }
        scalar(
            &mut o,
            "storepulse_store_size_bytes",
            "gauge",
            "On-disk size of the store.",
            r(&self.store_size_bytes),
        );
        scalar(
            &mut o,
            "storepulse_store_failing",
            "gauge",
            "1 while the store cannot write (disk full or failing): nothing is acknowledged.",
            r(&self.store_failing),
        );
        scalar(
            &mut o,
            "storepulse_fleet_clock_skewed_terminals",
            "gauge",
            "Terminals whose clock is skewed beyond the threshold (record times corrected).",
            r(&self.clock_skewed_terminals),
        );
        head(
            &mut o,
            "storepulse_fleet_terminals",
            "gauge",
            "Terminals known to the registry, by state.",
        );
        for (state, n) in terminals_by_state {
            let _ = writeln!(o, "storepulse_fleet_terminals{{state=\"{state}\"}} {n}");
        }
        scalar(
            &mut o,
            "storepulse_detection_ticks_total",
            "counter",
            "Detection window evaluations.",
            r(&self.detection_ticks),
        );
        scalar(
            &mut o,
            "storepulse_detection_records_total",
            "counter",
            "Records fed to detection.",
            r(&self.detection_records),
        );
        scalar(
            &mut o,
            "storepulse_detection_dropped_inputs_total",
            "counter",
            "Inputs dropped because detection was behind.",
            r(&self.detection_dropped),
        );
        family(
            &mut o,
            "storepulse_incidents_opened_total",
            "Incidents opened, by kind.",
            "kind",
            &self.incidents_opened.snapshot(),
        );
        head(
            &mut o,
            "storepulse_incidents_open",
            "gauge",
            "Open incidents, by kind and tier (every incident is paged until the suspected tier exists).",
        );
        {
            let mut m = self
                .incidents_open
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for k in storepulse_shared::IncidentKind::ALL {
                m.entry(k.as_str().to_owned()).or_default();
            }
            for (k, v) in m.iter() {
                let _ = writeln!(
                    o,
                    "storepulse_incidents_open{{kind=\"{}\",tier=\"paged\"}} {v}",
                    esc(k)
                );
            }
        }
        family(
            &mut o,
            "storepulse_notifications_sent_total",
            "Notifications delivered, by receiver.",
            "receiver",
            &self.notifications_sent.snapshot(),
        );
        family(
            &mut o,
            "storepulse_notifications_failed_total",
            "Notification attempts that failed, by receiver.",
            "receiver",
            &self.notifications_failed.snapshot(),
        );
        head(
            &mut o,
            "storepulse_build_info",
            "gauge",
            "The collector's version; always 1.",
        );
        let _ = writeln!(
            o,
            "storepulse_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        head(
            &mut o,
            "storepulse_tls_certificate_expiry_seconds",
            "gauge",
            "Seconds until a certificate expires (negative: expired), by cert (collector, ca).",
        );
        {
            let now = crate::now_unix_ms().div_euclid(1000);
            let m = self
                .cert_not_after
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (k, v) in m.iter() {
                let _ = writeln!(
                    o,
                    "storepulse_tls_certificate_expiry_seconds{{cert=\"{}\"}} {}",
                    esc(k),
                    v - now
                );
            }
        }
        o
    }

    /// Records the certificates' `not_after` (Unix seconds) for the expiry gauge.
    pub fn set_cert_not_after(&self, cert: &str, not_after_secs: i64) {
        self.cert_not_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cert.to_owned(), not_after_secs);
    }
}

// Every kind's bounds fit the fixed bucket array.
const _: () = assert!(CommitSecs::BOUNDS.len() <= MAX_BUCKETS);
const _: () = assert!(AckSecs::BOUNDS.len() <= MAX_BUCKETS);
const _: () = assert!(Counts::BOUNDS.len() <= MAX_BUCKETS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_times_and_histograms_render() {
        let m = Metrics::new();
        m.add_stage(Stage::Commit, Duration::from_millis(3));
        m.add_stage(Stage::Commit, Duration::from_millis(2));
        m.ack_latency.observe(0.004);
        m.ack_latency.observe(0.030);
        m.group_records.observe(300.0);
        let text = m.render(&[]);
        assert!(text.contains("storepulse_writer_seconds_total{stage=\"commit\"} 0.005\n"));
        assert!(text.contains("storepulse_writer_seconds_total{stage=\"idle\"} 0\n"));
        assert!(text.contains("storepulse_ingest_ack_latency_seconds_bucket{le=\"0.003\"} 0\n"));
        assert!(text.contains("storepulse_ingest_ack_latency_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("storepulse_ingest_ack_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("storepulse_ingest_ack_latency_seconds_sum 0.034\n"));
        assert!(text.contains("storepulse_writer_group_records_bucket{le=\"256\"} 0\n"));
        assert!(text.contains("storepulse_writer_group_records_bucket{le=\"512\"} 1\n"));
        assert!(text.contains("storepulse_writer_group_records_sum 300\n"));
    }

    #[test]
    fn renders_counters_histogram_and_families() {
        let m = Metrics::new();
        m.ingest_records.fetch_add(5, Ordering::Relaxed);
        m.refusals.add("protocol_error", 2);
        m.observe_commit(0.003);
        m.set_open_incidents(["merchant_config", "merchant_config"].into_iter());
        let text = m.render(&[("online", 3), ("offline", 1)]);
        assert!(text.contains("storepulse_ingest_records_total 5\n"));
        assert!(text.contains("storepulse_ingest_refusals_total{reason=\"protocol_error\"} 2\n"));
        assert!(text.contains("storepulse_store_commit_duration_seconds_bucket{le=\"0.002\"} 0\n"));
        assert!(text.contains("storepulse_store_commit_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("storepulse_store_commit_duration_seconds_count 1\n"));
        assert!(
            text.contains("storepulse_incidents_open{kind=\"merchant_config\",tier=\"paged\"} 2\n")
        );
        assert!(
            text.contains("storepulse_incidents_open{kind=\"regional_outage\",tier=\"paged\"} 0\n")
        );
        assert!(text.contains("storepulse_build_info{version=\""));
        assert!(text.contains("storepulse_fleet_terminals{state=\"online\"} 3\n"));
        assert!(text.contains("storepulse_writer_seconds_total{stage=\"commit\"} 0\n"));
        // Every sample line's metric has HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {base} ")),
                "{name} lacks TYPE"
            );
        }
    }
}
