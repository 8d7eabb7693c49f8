//! Shared agent state: the spool and the outbox core behind one lock, link status for
//! `/v1/status`, and the notification that wakes the link when records are appended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use storepulse_agent_core::netstats::{LossTracker, RttTracker};
use storepulse_agent_core::recent::RecentOutcomes;
use storepulse_agent_core::verdict::{Incidents, Unknown};
use storepulse_agent_core::{
    Appended, BackoffConfig, NewRecord, Renewal, Spool, Uplink, UplinkConfig,
};
use storepulse_shared::{EndpointProbe, INCIDENTS_PROTOCOL_VERSION, IncidentList, RecordBody};
use tokio::sync::{Notify, oneshot, watch};

use crate::certs::CertInfo;
use crate::config::Config;
use crate::spool::{RedbSpool, SpoolError};

/// Batches in flight at once.
pub const MAX_IN_FLIGHT_BATCHES: usize = 8;
/// Bound on one batch frame's encoded size; the collector's frame limit is 1 MiB.
pub const MAX_BATCH_BYTES: u32 = 512 * 1024;

/// The spool and the outbox core; one lock so a batch plan and the spool read that follows it
/// cannot interleave with an append that would evict a planned record.
#[derive(Debug)]
pub struct Inner {
    /// The durable spool.
    pub spool: RedbSpool,
    /// The outbox state machine.
    pub uplink: Uplink,
}

/// What the link reports for `/v1/status` and the network probe.
#[derive(Debug, Default)]
pub struct LinkStatus {
    /// The current connection, if one is up.
    pub connection: Option<quinn::Connection>,
    /// The last error of the link, if any.
    pub last_error: Option<String>,
    /// RTT samples since the last network-quality record.
    pub rtt: RttTracker,
    /// Packet loss bookkeeping.
    pub loss: LossTracker,
    /// Agent clock minus collector clock, measured at the last `Welcome`, ms.
    pub clock_offset_ms: Option<i64>,
    /// The message set of the current (or last) connection.
    pub protocol_version: u16,
    /// The certificate the next connection presents, once read.
    pub certificate: Option<CertInfo>,
    /// Its renewal schedule.
    pub renewal: Option<Renewal>,
}

/// Incident queries waiting to be sent or answered, and the last answer.
#[derive(Debug, Default)]
pub struct Queries {
    next_id: u64,
    /// Ids the link has yet to send.
    pub to_send: Vec<u64>,
    waiting: HashMap<u64, oneshot::Sender<IncidentList>>,
    cache: Option<(Instant, IncidentList)>,
}

/// Probe intervals currently in force (config, overridden by the collector's `Welcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Heartbeat period.
    pub heartbeat: std::time::Duration,
    /// Network-quality period.
    pub net_probe: std::time::Duration,
}

/// Shared state of a running agent.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    inner: Mutex<Inner>,
    appended: Notify,
    link: Mutex<LinkStatus>,
    intervals: watch::Sender<Intervals>,
    recent: Mutex<RecentOutcomes>,
    queries: Mutex<Queries>,
    query_wanted: Notify,
    last_probe: Mutex<Option<Vec<EndpointProbe>>>,
}

/// `GET /v1/status` body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// This terminal.
    pub terminal_id: String,
    /// True while a connection to the collector is up.
    pub connected: bool,
    /// The spool's epoch.
    pub spool_epoch: u64,
    /// The next seq the spool will assign.
    pub next_seq: u64,
    /// Records waiting in the spool.
    pub spool_records: u64,
    /// Logical bytes in the spool.
    pub spool_bytes: u64,
    /// Records acknowledged by the collector since the agent started.
    pub acked_records_total: u64,
    /// Records dropped by the spool's size bound since the spool was created.
    pub dropped: Dropped,
    /// The link's last error, if any.
    pub last_error: Option<String>,
    /// Serial (hex) of the terminal certificate in use, once known.
    pub certificate_serial: Option<String>,
    /// When that certificate expires, Unix ms.
    pub certificate_not_after_unix_ms: Option<i64>,
}

/// Drop counters in [`Status`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dropped {
    /// Heartbeats.
    pub heartbeats: u64,
    /// Network-quality records.
    pub net_quality: u64,
    /// Transaction outcomes.
    pub txn_outcomes: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Agent wall clock, Unix milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The clock the core runs on; tokio's, so tests can pause it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Agent {
    /// Opens the spool and builds the state. Blocking (opens a file).
    pub fn open(config: Config) -> Result<Arc<Self>, SpoolError> {
        if let Some(dir) = config.spool.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| SpoolError::Storage(e.into()))?;
        }
        let spool = RedbSpool::open(&config.spool.path, config.spool.max_bytes, rand::random())?;
        let u = &config.uplink;
        let uplink = Uplink::new(
            UplinkConfig {
                max_batch_records: u.max_batch_records,
                max_batch_bytes: MAX_BATCH_BYTES,
                max_in_flight: MAX_IN_FLIGHT_BATCHES,
                backlog_records_per_sec: u.backlog_records_per_sec,
                backoff: BackoffConfig {
                    initial: u.backoff_initial,
                    max: u.backoff_max,
                },
            },
            spool.meta().next_seq,
            spool.entries(),
            now(),
            rand::random(),
        );
        let (intervals, _) = watch::channel(Intervals {
            heartbeat: config.probes.heartbeat_interval,
            net_probe: config.probes.net_probe_interval,
        });
        Ok(Arc::new(Self {
            config,
            inner: Mutex::new(Inner { spool, uplink }),
            appended: Notify::new(),
            link: Mutex::new(LinkStatus::default()),
            intervals,
            recent: Mutex::new(RecentOutcomes::default()),
            queries: Mutex::new(Queries::default()),
            query_wanted: Notify::new(),
            last_probe: Mutex::new(None),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Locks the spool and the core. A poisoned lock is taken over: every mutation under it
    /// either completes or leaves the spool as of its last commit.
    pub fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Locks the link status.
    pub fn link(&self) -> MutexGuard<'_, LinkStatus> {
        self.link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves when records were appended since the last call.
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    /// Wakes the link.
    pub fn wake(&self) {
        self.appended.notify_one();
    }

    /// Probe intervals in force, as a watch receiver.
    pub fn intervals(&self) -> watch::Receiver<Intervals> {
        self.intervals.subscribe()
    }

    /// Records the certificate the next connection presents; a new one (another serial) gets a
    /// fresh renewal schedule. Returns true if it was new.
    pub fn set_certificate(&self, info: CertInfo) -> bool {
        let mut link = self.link();
        if link
            .certificate
            .as_ref()
            .is_some_and(|c| c.serial_hex == info.serial_hex)
        {
            return false;
        }
        let jitter: f64 = rand::random();
        match &mut link.renewal {
            Some(r) => r.handle_renewed(info.not_before_ms, info.not_after_ms, jitter),
            None => {
                link.renewal = Some(Renewal::new(info.not_before_ms, info.not_after_ms, jitter))
            }
        }
        link.certificate = Some(info);
        true
    }

    /// Applies probe intervals sent by the collector.
    pub fn set_intervals(&self, i: Intervals) {
        self.intervals.send_if_modified(|cur| {
            let changed = *cur != i;
            *cur = i;
            changed
        });
    }

    /// Appends records in one durable transaction and wakes the link. Blocking (fsync): call
    /// from `spawn_blocking` or use [`Self::append`].
    pub fn append_blocking(&self, records: Vec<NewRecord>) -> Result<Appended, SpoolError> {
        let outcomes: Vec<(i64, storepulse_shared::Scheme, String)> = records
            .iter()
            .filter_map(|r| match &r.body {
                RecordBody::TxnOutcome(t) => Some((r.time_unix_ms, t.scheme, t.code.clone())),
                _ => None,
            })
            .collect();
        let appended = {
            let mut inner = self.inner();
            let in_flight = inner.uplink.in_flight_seqs();
            let a = inner.spool.append(records, &in_flight)?;
            inner.uplink.handle_appended(&a);
            a
        };
        if !outcomes.is_empty() {
            let now = unix_ms();
            let mut recent = lock(&self.recent);
            for (t, scheme, code) in &outcomes {
                recent.handle_outcome(now, *t, *scheme, code);
            }
        }
        self.wake();
        Ok(appended)
    }

    /// The last hour's payment outcomes.
    pub fn recent_outcomes(&self) -> storepulse_agent_core::recent::Outcomes {
        lock(&self.recent).summary(unix_ms())
    }

    /// Remembers the latest payment-host probes.
    pub fn set_last_probe(&self, probes: Vec<EndpointProbe>) {
        *lock(&self.last_probe) = Some(probes);
    }

    /// The latest payment-host probes, if any ran.
    pub fn last_probe(&self) -> Option<Vec<EndpointProbe>> {
        lock(&self.last_probe).clone()
    }

    /// Resolves when an incident query waits to be sent.
    pub async fn query_wanted(&self) {
        self.query_wanted.notified().await;
    }

    /// Takes the ids of the incident queries to send now.
    pub fn take_queries(&self) -> Vec<u64> {
        std::mem::take(&mut lock(&self.queries).to_send)
    }

    /// The collector answered an incident query.
    pub fn handle_incident_list(&self, list: IncidentList) {
        let mut q = lock(&self.queries);
        if let Some(tx) = q.waiting.remove(&list.query_id) {
            let _ = tx.send(list.clone());
        }
        q.cache = Some((now(), list));
    }

    /// The connection ended: queries in flight will get no answer.
    pub fn drop_queries(&self) {
        let mut q = lock(&self.queries);
        q.waiting.clear();
        q.to_send.clear();
    }

    /// The collector's open incidents covering this terminal: a cached answer younger than
    /// `max_age`, else asks over the link and waits up to `wait`.
    pub async fn incidents(&self, max_age: Duration, wait: Duration) -> Incidents {
        let (id, rx) = {
            let mut q = lock(&self.queries);
            if let Some((at, list)) = &q.cache
                && now().duration_since(*at) <= max_age
            {
                return Incidents::Known(list.incidents.clone());
            }
            let (connected, version) = {
                let l = self.link();
                (l.connection.is_some(), l.protocol_version)
            };
            if !connected {
                return Incidents::Unknown(Unknown::NotConnected);
            }
            if version < INCIDENTS_PROTOCOL_VERSION {
                return Incidents::Unknown(Unknown::CollectorTooOld);
            }
            q.next_id += 1;
            let id = q.next_id;
            let (tx, rx) = oneshot::channel();
            q.waiting.insert(id, tx);
            q.to_send.push(id);
            (id, rx)
        };
        self.query_wanted.notify_one();
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(list)) => Incidents::Known(list.incidents),
            _ => {
                let mut q = lock(&self.queries);
                q.waiting.remove(&id);
                q.to_send.retain(|&i| i != id);
                Incidents::Unknown(Unknown::NoAnswer)
            }
        }
    }

    /// Async wrapper of [`Self::append_blocking`].
    pub async fn append(self: &Arc<Self>, records: Vec<NewRecord>) -> Result<Appended, SpoolError> {
        let me = Arc::clone(self);
        match tokio::task::spawn_blocking(move || me.append_blocking(records)).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Turns pending drop counters into a `SpoolDrops` record, if any. Blocking.
    pub fn flush_drops_blocking(&self) -> Result<Option<Appended>, SpoolError> {
        let appended = {
            let mut inner = self.inner();
            let in_flight = inner.uplink.in_flight_seqs();
            let a = inner.spool.flush_drops(unix_ms(), &in_flight)?;
            if let Some(a) = &a {
                inner.uplink.handle_appended(a);
            }
            a
        };
        if appended.is_some() {
            self.wake();
        }
        Ok(appended)
    }

    /// The `/v1/status` snapshot.
    pub fn status(&self) -> Status {
        let (meta, acked) = {
            let inner = self.inner();
            (inner.spool.meta(), inner.uplink.acked_total())
        };
        let link = self.link();
        Status {
            terminal_id: self.config.identity.terminal_id.to_string(),
            connected: link.connection.is_some(),
            spool_epoch: meta.epoch,
            next_seq: meta.next_seq.0,
            spool_records: meta.records,
            spool_bytes: meta.bytes,
            acked_records_total: acked,
            dropped: Dropped {
                heartbeats: meta.dropped_total.heartbeats,
                net_quality: meta.dropped_total.net_quality,
                txn_outcomes: meta.dropped_total.txn_outcomes,
            },
            last_error: link.last_error.clone(),
            certificate_serial: link.certificate.as_ref().map(|c| c.serial_hex.clone()),
            certificate_not_after_unix_ms: link.certificate.as_ref().map(|c| c.not_after_ms),
        }
    }
}
