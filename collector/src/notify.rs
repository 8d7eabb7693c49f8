//! Alert delivery: the IO shell around the sans-IO [`Notifier`] and [`Outbox`]. One task owns
//! both; the detection loop hands it incident snapshots through [`Alerts::handle_incident`].
//! Every notification is committed (fsync) to the store's outbox before it is sent, leaves it
//! only when delivered or given up, and each step lands in the incident's history.
//!
//! Driver loop: apply inputs, `tick` the notifier, persist what it emits, start due
//! deliveries, apply finished ones, sleep until the next tick or retry.

pub mod config;
pub mod persist;
pub mod receivers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use storepulse_collector_core::notify::{
    AttemptOutcome, Disposition, MaintenanceWindow, Mute, NotificationKind, Notifier, Outbox,
    OutboxStats, Silence,
};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{error, info, warn};

pub use storepulse_collector_core::notify::{IncidentSnapshot, Severity};

use self::config::{AlertSettings, ResolvedReceiver};
use self::persist::{HistoryRec, META_GAVE_UP, META_NEXT_ID};
use self::receivers::Context;
use crate::metrics::Metrics;
use crate::now_unix_ms;
use crate::store::{AlertOp, AlertSpace, Store, StoreError};

/// Handle to the notifier task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

/// A pending notification as the API shows it.
#[derive(Debug, Clone)]
pub struct PendingView {
    /// Outbox id.
    pub id: u64,
    /// Incident id.
    pub incident_id: String,
    /// Receiver.
    pub receiver: String,
    /// Firing, update, repeat or resolved.
    pub notification: NotificationKind,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Next attempt, Unix ms.
    pub next_at_ms: i64,
    /// Last error.
    pub last_error: Option<String>,
}

/// The outbox as the API shows it.
#[derive(Debug, Clone, Default)]
pub struct OutboxView {
    /// Waiting notifications, oldest first.
    pub pending: Vec<PendingView>,
    /// Counters since start.
    pub stats: OutboxStats,
    /// Notifications given up, ever.
    pub gave_up_total: u64,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::UnboundedSender<Input>,
    store: Store,
    view: RwLock<View>,
}

#[derive(Debug, Default)]
struct View {
    silences: BTreeMap<String, Silence>,
    windows: BTreeMap<String, MaintenanceWindow>,
    outbox: OutboxView,
    mutes: BTreeMap<String, Mute>,
}

#[derive(Debug)]
enum Input {
    Incident(Box<IncidentSnapshot>),
    Silence(Silence),
    SilenceExpire(String),
    Window(MaintenanceWindow),
    WindowExpire(String),
}

struct Task {
    notifier: Notifier,
    outbox: Outbox,
    store: Store,
    receivers: HashMap<String, Arc<ResolvedReceiver>>,
    client: reqwest::Client,
    ctx: Arc<Context>,
    tick: Duration,
    max_in_flight: usize,
    gave_up_total: u64,
    inner: Arc<Inner>,
    metrics: Arc<Metrics>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task: {e}")))?
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The HTTP client for the receivers could not be built.
    #[error("http client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The notifier's state could not be read from the store.
    #[error("loading the alert state: {0}")]
    Load(#[from] StoreError),
}

impl Alerts {
    /// Loads silences, windows, tracked incidents and the outbox from `store`, and starts the
    /// notifier task (it stops when `shutdown` turns true).
    pub async fn start(
        cfg: &AlertSettings,
        store: Store,
        metrics: Arc<Metrics>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, JoinHandle<()>), AlertsError> {
        // Every configured receiver has its counters, at 0 until something is sent.
        for r in &cfg.receivers {
            metrics.notifications_sent.add(&r.name, 0);
            metrics.notifications_failed.add(&r.name, 0);
        }
        let receivers = cfg
            .receivers
            .iter()
            .map(|r| (r.name.clone(), Arc::new(r.clone())))
            .collect();
        let mut notifier = Notifier::new(cfg.notify.clone());
        let seed = u64::try_from(now_unix_ms()).unwrap_or(0) ^ u64::from(std::process::id());
        let mut outbox = Outbox::new(cfg.retry, seed);
        let client = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)))
            .build()?;

        let s = store.clone();
        let (state, pending) = blocking(move || {
            Ok((
                s.alerts_scan(AlertSpace::State, b"")?,
                s.alerts_scan(AlertSpace::Outbox, b"")?,
            ))
        })
        .await?;
        let now = now_unix_ms();
        let mut view = View::default();
        let mut gave_up_total = 0;
        for s in &cfg.silences {
            view.silences.insert(s.id.clone(), s.clone());
        }
        for w in &cfg.windows {
            view.windows.insert(w.id.clone(), w.clone());
        }
        let mut restored = 0usize;
        for (k, v) in state {
            if k.starts_with(b"silence/") {
                let s: Silence = persist::from_bytes::<persist::SilenceRec>(&v)?.try_into()?;
                view.silences.insert(s.id.clone(), s);
            } else if k.starts_with(b"window/") {
                let w: MaintenanceWindow = persist::from_bytes::<persist::WindowRec>(&v)?.into();
                view.windows.insert(w.id.clone(), w);
            } else if k.starts_with(b"incident/") {
                let rec: persist::IncidentRec = persist::from_bytes(&v)?;
                notifier.restore(now, rec.try_into()?);
                restored += 1;
            } else if k == META_NEXT_ID {
                outbox.reserve_ids_through(persist::counter(Some(&v)).saturating_sub(1));
            } else if k == META_GAVE_UP {
                gave_up_total = persist::counter(Some(&v));
            }
        }
        for s in view.silences.values() {
            notifier.handle_silence(s.clone());
        }
        for w in view.windows.values() {
            notifier.handle_maintenance(w.clone());
        }
        let queued = pending.len();
        for (_, v) in pending {
            outbox.restore(persist::outbox_entry(&v)?);
        }
        info!(restored, queued, "Alert notifier started");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            tx,
            store: store.clone(),
            view: RwLock::new(view),
        });
        let mut task = Task {
            notifier,
            outbox,
            store,
            receivers,
            client,
            ctx: Arc::new(Context {
                source: cfg.source.clone(),
                external_url: cfg.external_url.clone(),
            }),
            tick: cfg.tick,
            max_in_flight: cfg.max_in_flight,
            gave_up_total,
            inner: inner.clone(),
            metrics,
        };
        let handle = tokio::spawn(async move {
            let mut inflight: JoinSet<AttemptOutcome> = JoinSet::new();
            let mut ids: HashMap<tokio::task::Id, u64> = HashMap::new();
            loop {
                let now = now_unix_ms();
                task.step(now).await;
                while inflight.len() < task.max_in_flight {
                    let Some(e) = task.outbox.poll_due(now) else {
                        break;
                    };
                    let Some(r) = task.receivers.get(&e.notification.receiver).cloned() else {
                        let outcome = AttemptOutcome::Failed {
                            retryable: false,
                            retry_after_ms: None,
                            error: "receiver no longer configured".into(),
                        };
                        task.finish(e.id, outcome).await;
                        continue;
                    };
                    let req = receivers::build(&r, &e.notification, &task.ctx, now);
                    let client = task.client.clone();
                    let h =
                        inflight.spawn(async move { receivers::send(&client, r.kind, req).await });
                    ids.insert(h.id(), e.id);
                }
                task.publish(now);
                let wait = task
                    .outbox
                    .next_wakeup()
                    .map_or(task.tick, |at| {
                        Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(task.tick)
                    })
                    .max(Duration::from_millis(5));
                tokio::select! {
                    () = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
                    Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                        match done {
                            Ok((tid, outcome)) => {
                                if let Some(id) = ids.remove(&tid) {
                                    task.finish(id, outcome).await;
                                }
                            }
                            Err(e) => {
                                // The entry stays in the outbox and is sent again after a
                                // restart; nothing is lost.
                                ids.remove(&e.id());
                                error!(error = %e, "Alert delivery task failed");
                            }
                        }
                    }
                    input = rx.recv() => match input {
                        Some(input) => task.apply(now_unix_ms(), input),
                        None => break,
                    },
                    () = tokio::time::sleep(wait) => {}
                }
            }
            // In-flight attempts are abandoned: their entries are still in the outbox and are
            // sent again after a restart (receivers deduplicate by idempotency key).
            inflight.abort_all();
            info!(pending = task.outbox.len(), "Alert notifier stopped");
        });
        Ok((Self { inner }, handle))
    }

    /// Hands an incident snapshot (opened, updated or resolved) to the notifier. Never blocks.
    pub fn handle_incident(&self, snapshot: IncidentSnapshot) {
        let _ = self.inner.tx.send(Input::Incident(Box::new(snapshot)));
    }

    /// Stores a silence durably, then applies it.
    pub async fn add_silence(&self, silence: Silence) -> Result<(), StoreError> {
        let op = (
            AlertSpace::State,
            persist::state_key("silence", &silence.id),
            Some(persist::to_bytes(&persist::SilenceRec::from(&silence))?),
        );
        self.commit(vec![op]).await?;
        self.view()
            .silences
            .insert(silence.id.clone(), silence.clone());
        let _ = self.inner.tx.send(Input::Silence(silence));
        Ok(())
    }

    /// Removes a silence; `false` if there was none.
    pub async fn expire_silence(&self, id: &str) -> Result<bool, StoreError> {
        if self.view().silences.remove(id).is_none() {
            return Ok(false);
        }
        self.commit(vec![(
            AlertSpace::State,
            persist::state_key("silence", id),
            None,
        )])
        .await?;
        let _ = self.inner.tx.send(Input::SilenceExpire(id.to_owned()));
        Ok(true)
    }

    /// Stores a maintenance window durably, then applies it.
    pub async fn add_window(&self, window: MaintenanceWindow) -> Result<(), StoreError> {
        let op = (
            AlertSpace::State,
            persist::state_key("window", &window.id),
            Some(persist::to_bytes(&persist::WindowRec::from(&window))?),
        );
        self.commit(vec![op]).await?;
        self.view()
            .windows
            .insert(window.id.clone(), window.clone());
        let _ = self.inner.tx.send(Input::Window(window));
        Ok(())
    }

    /// Removes a maintenance window; `false` if there was none.
    pub async fn expire_window(&self, id: &str) -> Result<bool, StoreError> {
        if self.view().windows.remove(id).is_none() {
            return Ok(false);
        }
        self.commit(vec![(
            AlertSpace::State,
            persist::state_key("window", id),
            None,
        )])
        .await?;
        let _ = self.inner.tx.send(Input::WindowExpire(id.to_owned()));
        Ok(true)
    }

    /// Silences not yet ended.
    pub fn silences(&self) -> Vec<Silence> {
        let now = now_unix_ms();
        self.view()
            .silences
            .values()
            .filter(|s| s.ends_at_ms > now)
            .cloned()
            .collect()
    }

    /// Maintenance windows not yet ended.
    pub fn windows(&self) -> Vec<MaintenanceWindow> {
        let now = now_unix_ms();
        self.view()
            .windows
            .values()
            .filter(|w| w.ends_at_ms > now)
            .cloned()
            .collect()
    }

    /// The outbox: pending notifications and counters.
    pub fn outbox(&self) -> OutboxView {
        self.view().outbox.clone()
    }

    /// Incidents whose notifications are muted now, with the reason (the dashboard still
    /// shows them).
    pub fn mutes(&self) -> BTreeMap<String, Mute> {
        self.view().mutes.clone()
    }

    /// Every notification step of an incident (queued, each attempt's result), oldest first.
    pub async fn history(&self, incident_id: &str) -> Result<Vec<HistoryRec>, StoreError> {
        let store = self.inner.store.clone();
        let prefix = persist::history_prefix(incident_id);
        let rows = blocking(move || store.alerts_scan(AlertSpace::History, &prefix)).await?;
        let mut out: Vec<HistoryRec> = rows
            .iter()
            .map(|(_, v)| persist::from_bytes(v))
            .collect::<Result<_, _>>()?;
        out.sort_by_key(|h| h.at_ms);
        Ok(out)
    }

    async fn commit(&self, ops: Vec<AlertOp>) -> Result<(), StoreError> {
        let store = self.inner.store.clone();
        blocking(move || store.alerts_commit(&ops)).await
    }

    fn view(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.inner
            .view
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Task {
    fn apply(&mut self, now: i64, input: Input) {
        match input {
            Input::Incident(s) => self.notifier.handle_incident(now, *s),
            Input::Silence(s) => self.notifier.handle_silence(s),
            Input::SilenceExpire(id) => {
                self.notifier.handle_silence_expire(&id);
            }
            Input::Window(w) => self.notifier.handle_maintenance(w),
            Input::WindowExpire(id) => {
                self.notifier.handle_maintenance_expire(&id);
            }
        }
    }

    /// Ticks the notifier and commits what it emits (outbox entries, history, incident state)
    /// in one durable batch before anything is sent.
    async fn step(&mut self, now: i64) {
        self.notifier.tick(now);
        let mut ops = Vec::new();
        let mut touched = BTreeSet::new();
        let mut new_ids = Vec::new();
        while let Some(n) = self.notifier.poll_notification() {
            touched.insert(n.incident_id.clone());
            let e = self.outbox.push(now, n);
            new_ids.push(e.id);
            match persist::outbox_put(&e)
                .and_then(|put| Ok((put, persist::history_op(&e, now, "queued", None)?)))
            {
                Ok((put, hist)) => {
                    ops.push(put);
                    ops.push(hist);
                }
                Err(err) => error!(error = %err, "Encoding a notification failed"),
            }
        }
        if new_ids.is_empty() {
            return;
        }
        for id in &touched {
            let key = persist::state_key("incident", id);
            let value = match self.notifier.export(id) {
                Some(x) => persist::to_bytes(&persist::IncidentRec::from(&x)).ok(),
                None => None,
            };
            ops.push((AlertSpace::State, key, value));
        }
        let next = new_ids.iter().max().map_or(0, |m| m + 1);
        ops.push((
            AlertSpace::State,
            META_NEXT_ID.to_vec(),
            Some(next.to_be_bytes().to_vec()),
        ));
        let store = self.store.clone();
        if let Err(e) = blocking(move || store.alerts_commit(&ops)).await {
            for id in new_ids {
                self.outbox.forget(id);
            }
            error!(error = %e, "Storing notifications failed; they are dropped");
        }
    }

    /// Applies an attempt's outcome and persists it.
    async fn finish(&mut self, id: u64, outcome: AttemptOutcome) {
        let now = now_unix_ms();
        let ops: Result<Vec<AlertOp>, StoreError> = match self
            .outbox
            .handle_result(now, id, outcome)
        {
            None => return,
            Some(Disposition::Delivered(e)) => {
                self.metrics
                    .notifications_sent
                    .add(&e.notification.receiver, 1);
                info!(receiver = %e.notification.receiver, incident = %e.notification.incident_id, kind = e.notification.kind.as_str(), "Notification delivered");
                persist::history_op(&e, now, "delivered", None)
                    .map(|h| vec![persist::outbox_delete(e.id), h])
            }
            Some(Disposition::Retry(e)) => {
                self.metrics
                    .notifications_failed
                    .add(&e.notification.receiver, 1);
                warn!(receiver = %e.notification.receiver, attempts = e.attempts, error = e.last_error.as_deref().unwrap_or(""), "Notification failed; will retry");
                persist::outbox_put(&e).and_then(|put| {
                    Ok(vec![
                        put,
                        persist::history_op(&e, now, "retrying", Some(e.next_at_ms))?,
                    ])
                })
            }
            Some(Disposition::GaveUp(e)) => {
                self.gave_up_total += 1;
                self.metrics
                    .notifications_failed
                    .add(&e.notification.receiver, 1);
                error!(receiver = %e.notification.receiver, incident = %e.notification.incident_id, attempts = e.attempts, error = e.last_error.as_deref().unwrap_or(""), "Notification given up");
                persist::history_op(&e, now, "gave_up", None).map(|h| {
                    vec![
                        persist::outbox_delete(e.id),
                        h,
                        (
                            AlertSpace::State,
                            META_GAVE_UP.to_vec(),
                            Some(self.gave_up_total.to_be_bytes().to_vec()),
                        ),
                    ]
                })
            }
        };
        let ops = match ops {
            Ok(ops) => ops,
            Err(e) => {
                error!(error = %e, "Encoding a delivery result failed");
                return;
            }
        };
        let store = self.store.clone();
        if let Err(e) = blocking(move || store.alerts_commit(&ops)).await {
            // The entry stays stored as pending and is sent again after a restart.
            error!(error = %e, "Storing a delivery result failed");
        }
    }

    fn publish(&self, now: i64) {
        let pending = self
            .outbox
            .pending()
            .map(|e| PendingView {
                id: e.id,
                incident_id: e.notification.incident_id.clone(),
                receiver: e.notification.receiver.clone(),
                notification: e.notification.kind,
                idempotency_key: e.notification.idempotency_key.clone(),
                attempts: e.attempts,
                next_at_ms: e.next_at_ms,
                last_error: e.last_error.clone(),
            })
            .collect();
        let mut view = self
            .inner
            .view
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        view.outbox = OutboxView {
            pending,
            stats: self.outbox.stats(),
            gave_up_total: self.gave_up_total,
        };
        view.mutes = self.notifier.mutes(now).into_iter().collect();
    }
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").finish_non_exhaustive()
    }
}
