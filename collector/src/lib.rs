//! storepulse collector: QUIC ingest with mutual TLS, group-committed fjall store, fleet
//! registry, HTTP API and the fleet PKI tooling.
//!
//! Entry points: [`start`] (returns a [`Collector`] handle reporting the bound addresses) and
//! [`serve`] (runs until a shutdown future resolves). The binary in `main.rs` only parses
//! arguments and calls these.

pub mod api;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod detection;
mod ingest;
pub mod metrics;
pub mod notify;
pub mod pki;
mod server;
pub mod store;
mod tls;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::info;

pub use crate::config::Config;
use crate::store::{Store, StoreError};
pub use crate::tls::TlsError;

/// Why the collector could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The store could not be opened.
    #[error("opening store {path}: {cause}")]
    OpenStore {
        /// The store directory.
        path: PathBuf,
        /// The store's error.
        cause: StoreError,
    },
    /// The fleet registry could not be read from the store.
    #[error("loading the fleet registry: {0}")]
    LoadFleet(StoreError),
    /// The incident book or detection's state could not be read from the store.
    #[error("loading incidents: {0}")]
    LoadIncidents(StoreError),
    /// The TLS configuration could not be built from the PKI files.
    #[error("tls configuration: {0}")]
    Tls(#[from] TlsError),
    /// A listener could not be bound.
    #[error("binding {what} on {addr}: {cause}")]
    Bind {
        /// `QUIC` or `HTTP`.
        what: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// The IO error.
        cause: std::io::Error,
    },
    /// The alert notifier could not start.
    #[error("starting alert notifications: {0}")]
    Alerts(#[from] notify::AlertsError),
    /// One of the collector's tasks panicked.
    #[error("{task} task failed: {cause}")]
    Task {
        /// Which task.
        task: &'static str,
        /// The join error.
        cause: tokio::task::JoinError,
    },
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(std::io::Error),
    /// The store could not be flushed on shutdown.
    #[error("flushing the store: {0}")]
    Flush(StoreError),
    /// The writer thread could not be started.
    #[error("starting the writer thread: {0}")]
    Writer(std::io::Error),
    /// The writer thread panicked outside a group commit.
    #[error("the writer thread panicked")]
    WriterPanicked,
}

/// Why `dump` failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The store could not be opened.
    #[error("opening store {path}: {cause}")]
    Open {
        /// The store directory.
        path: PathBuf,
        /// The store's error.
        cause: StoreError,
    },
    /// A record could not be read.
    #[error("reading the store: {0}")]
    Read(#[from] StoreError),
    /// The output could not be written.
    #[error("writing the dump: {0}")]
    Write(#[from] std::io::Error),
}

/// Waits for a task, naming it if it panicked.
async fn join<T>(task: &'static str, handle: JoinHandle<T>) -> Result<T, CollectorError> {
    handle
        .await
        .map_err(|cause| CollectorError::Task { task, cause })
}

/// A running collector. Call [`Collector::shutdown`] to stop it cleanly.
#[derive(Debug)]
pub struct Collector {
    quic_addr: SocketAddr,
    http_addr: SocketAddr,
    store: Store,
    shutdown: watch::Sender<bool>,
    endpoint_task: JoinHandle<()>,
    http_task: JoinHandle<std::io::Result<()>>,
    crl_task: JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
    alerts: notify::Alerts,
    alerts_task: JoinHandle<()>,
    detect_task: JoinHandle<()>,
}

/// Collector wall clock, Unix milliseconds. The only place the shell reads the clock for
/// protocol purposes; the core receives it as an argument.
pub(crate) fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Opens the store, binds the QUIC and HTTP listeners and starts every task.
pub async fn start(config: Config) -> Result<Collector, CollectorError> {
    let store_path = config.store.path.clone();
    let store = join(
        "store open",
        tokio::task::spawn_blocking(move || Store::open(&store_path)),
    )
    .await?
    .map_err(|cause| CollectorError::OpenStore {
        path: config.store.path.clone(),
        cause,
    })?;
    let fleet = store
        .load_fleet(config.fleet)
        .map_err(CollectorError::LoadFleet)?;
    info!(terminals = fleet.len(), "Store opened");
    let fleet = Arc::new(RwLock::new(fleet));

    let server_config = tls::server_config(&config.tls, &config.quic)?;
    let bind = |what, addr| move |cause| CollectorError::Bind { what, addr, cause };
    let endpoint = server::bind_endpoint(server_config, &config.quic)
        .map_err(bind("QUIC", config.quic.listen))?;
    let quic_addr = endpoint
        .local_addr()
        .map_err(bind("QUIC", config.quic.listen))?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(bind("HTTP", config.http.listen))?;
    let http_addr = listener
        .local_addr()
        .map_err(bind("HTTP", config.http.listen))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let metrics = metrics::Metrics::new();
    let (alerts, alerts_task) = notify::Alerts::start(
        &config.alerts,
        store.clone(),
        metrics.clone(),
        shutdown_rx.clone(),
    )
    .await?;
    {
        let f = fleet
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let skewed = f.iter().filter(|(_, e)| e.clock_skewed).count() as u64;
        metrics
            .clock_skewed_terminals
            .store(skewed, std::sync::atomic::Ordering::Relaxed);
    }
    let (detect_tx, detect_rx) = mpsc::channel(detection::QUEUE);
    let known = {
        let f = fleet
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        detection::known_identities(&f)
    };
    let (book, engine) = {
        let store = store.clone();
        let detector = config.detector();
        let hold = config.alerts.resolution_hold_ms;
        join(
            "detection restore",
            tokio::task::spawn_blocking(move || {
                detection::load(&store, detector, hold, &known, now_unix_ms())
            }),
        )
        .await?
        .map_err(CollectorError::LoadIncidents)?
    };
    let incidents = Arc::new(RwLock::new(book));
    let detect_task = tokio::spawn(detection::run(
        engine,
        detect_rx,
        incidents.clone(),
        store.clone(),
        metrics.clone(),
        alerts.clone(),
        shutdown_rx.clone(),
    ));
    let feed = detection::DetectFeed::new(detect_tx, incidents.clone(), metrics.clone());
    let (writer_tx, writer_rx) = mpsc::channel(config.ingest.writer_queue_batches);
    let writer = ingest::spawn_writer(
        writer_rx,
        store.clone(),
        fleet.clone(),
        config.ingest.group_commit,
        Some(feed),
        metrics.clone(),
    )
    .map_err(CollectorError::Writer)?;
    // The endpoint task owns the only writer sender: the writer stops once every connection is
    // done, after the last batch was committed.
    let mut shared = server::Shared::new(&config, writer_tx, metrics.clone());
    shared.coverage = Some(detection::Coverage::new(incidents.clone(), alerts.clone()));
    let shared = Arc::new(shared);
    tokio::spawn(sample_store_size(
        config.store.path.clone(),
        vec![
            ("collector", config.tls.cert.clone()),
            ("ca", config.tls.ca_cert.clone()),
        ],
        metrics.clone(),
        shutdown_rx.clone(),
    ));
    let endpoint_task = tokio::spawn(server::run_endpoint(
        endpoint.clone(),
        shared,
        shutdown_rx.clone(),
    ));
    let crl_task = tokio::spawn(server::watch_crl(
        endpoint,
        config.tls.clone(),
        config.quic.clone(),
        shutdown_rx.clone(),
    ));
    let app = api::router_with_time_zone(
        api::ApiState {
            fleet,
            store: store.clone(),
            incidents,
            metrics,
            shutdown: shutdown_rx.clone(),
        },
        config.http.time_zone.as_deref(),
    );
    let app = app.merge(api::alerts::router(alerts.clone()));
    let auth = auth::Auth::new(&config.http);
    let app = app
        .layer(axum::middleware::from_fn_with_state(auth, auth::require))
        .layer(axum::middleware::from_fn(dashboard::security_headers));
    let mut http_shutdown = shutdown_rx;
    let http_task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.wait_for(|s| *s).await;
            })
            .await
    });
    info!(quic = %quic_addr, http = %http_addr, "Collector listening");
    Ok(Collector {
        quic_addr,
        http_addr,
        store,
        shutdown: shutdown_tx,
        endpoint_task,
        http_task,
        crl_task,
        writer,
        alerts,
        alerts_task,
        detect_task,
    })
}

/// Samples the store directory's size on disk every 30 s for `storepulse_store_size_bytes`,
/// and the certificates' `not_after` for `storepulse_tls_certificate_expiry_seconds` (a
/// renewed certificate file shows within 30 s).
async fn sample_store_size(
    dir: std::path::PathBuf,
    certs: Vec<(&'static str, PathBuf)>,
    metrics: Arc<metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    fn du(p: &Path) -> u64 {
        std::fs::read_dir(p).map_or(0, |rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => du(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }
    async fn stopping(rx: &mut watch::Receiver<bool>) {
        // The guard `wait_for` returns is not Send; drop it before any other await.
        let _ = rx.wait_for(|s| *s).await;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tokio::select! {
            () = stopping(&mut shutdown) => return,
            _ = tick.tick() => {
                for (name, path) in &certs {
                    match pki::cert_not_after(path) {
                        Ok(t) => metrics.set_cert_not_after(name, t),
                        Err(e) => tracing::debug!(cert = name, error = %e, "Reading a certificate's expiry failed"),
                    }
                }
                let d = dir.clone();
                if let Ok(size) = tokio::task::spawn_blocking(move || du(&d)).await {
                    metrics.store_size_bytes.store(size, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }
}

/// Checks that the files a config names can be used: the CA, the collector's certificate and
/// key, and the CRL are read and built into the QUIC server config, as `start` would.
pub fn check_files(config: &Config) -> Result<(), TlsError> {
    tls::server_config(&config.tls, &config.quic).map(drop)
}

/// Runs the collector until `shutdown` resolves, then stops it cleanly.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CollectorError> {
    let collector = start(config).await?;
    shutdown.await;
    collector.shutdown().await
}

impl Collector {
    /// The bound UDP address of the QUIC endpoint.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The bound TCP address of the HTTP API.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Alert notifications: hand incident snapshots to [`notify::Alerts::handle_incident`].
    pub fn alerts(&self) -> &notify::Alerts {
        &self.alerts
    }

    /// The store (for tests and tooling).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sends `Goodbye(Shutdown)` to every agent, closes connections with `SHUTTING_DOWN`,
    /// stops the HTTP API, lets the writer commit what it has, then flushes the store.
    pub async fn shutdown(self) -> Result<(), CollectorError> {
        info!("Shutting down");
        let t = std::time::Instant::now();
        let _ = self.shutdown.send(true);
        join("QUIC endpoint", self.endpoint_task).await?;
        let connections_ms = t.elapsed().as_millis() as u64;
        join("CRL", self.crl_task).await?;
        join("HTTP", self.http_task)
            .await?
            .map_err(CollectorError::Http)?;
        let http_ms = t.elapsed().as_millis() as u64;
        let writer = self.writer;
        join("writer", tokio::task::spawn_blocking(move || writer.join()))
            .await?
            .map_err(|_| CollectorError::WriterPanicked)?;
        let writer_ms = t.elapsed().as_millis() as u64;
        join("alerts", self.alerts_task).await?;
        join("detection", self.detect_task).await?;
        let detection_ms = t.elapsed().as_millis() as u64;
        let store = self.store;
        join(
            "store flush",
            tokio::task::spawn_blocking(move || store.flush()),
        )
        .await?
        .map_err(CollectorError::Flush)?;
        info!(
            connections_ms,
            http_ms,
            writer_ms,
            detection_ms,
            total_ms = t.elapsed().as_millis() as u64,
            "Stopped"
        );
        Ok(())
    }
}

/// One line of `dump`: the terminal and the record as the API shows it.
#[derive(serde::Serialize)]
struct DumpLine<'a> {
    terminal_id: &'a str,
    #[serde(flatten)]
    record: api::Record,
}

/// Writes every stored record in `store_dir` to `out` as one JSON object per line
/// (`terminal_id`, `epoch`, `seq`, `time_unix_ms`, `kind`, `body`). Returns the record count.
pub fn dump(store_dir: &Path, out: &mut dyn Write) -> Result<u64, DumpError> {
    let store = Store::open(store_dir).map_err(|cause| DumpError::Open {
        path: store_dir.to_owned(),
        cause,
    })?;
    let mut count = 0u64;
    let mut write_err = None;
    store.for_each_record(|row| {
        let line = DumpLine {
            terminal_id: row.key.terminal.as_str(),
            record: api::Record::from(&row),
        };
        let written = serde_json::to_writer(&mut *out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out));
        if let Err(e) = written {
            write_err.get_or_insert(e);
        }
        count += 1;
        Ok(())
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    Ok(count)
}
