//! storepulse agent: the IO shell around `storepulse-agent-core`.
//!
//! [`run`] wires the pieces: the redb [`spool`], the loopback HTTP [`intake`] for the POS
//! application, the [`probes`] (heartbeat, network quality) and the QUIC [`link`] to the
//! collector. All of them append to the spool through [`state::Agent`]; the link sends what
//! the core's outbox state machine plans and deletes what the collector acknowledges.

pub mod certs;
pub mod client;
pub mod config;
pub mod diagnose;
pub mod enrol;
pub mod intake;
pub mod link;
pub mod probes;
pub mod spool;
pub mod state;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

pub use config::{Config, ConfigError};
pub use intake::router;
pub use spool::{RedbSpool, SpoolError};
pub use state::Agent;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The TLS files could not be loaded.
    #[error(transparent)]
    Tls(#[from] link::TlsError),
    /// An interrupted certificate replacement could not be completed.
    #[error(transparent)]
    Certificate(#[from] certs::CertError),
    /// The intake could not listen on its address.
    #[error("cannot listen on intake.listen {addr}: {cause}")]
    Intake {
        /// `intake.listen`.
        addr: std::net::SocketAddr,
        /// The IO error.
        cause: std::io::Error,
    },
    /// The spool could not be opened.
    #[error("cannot open the spool: {0}")]
    Spool(#[from] SpoolError),
}

/// Runs the agent until `shutdown` resolves, then says goodbye to the collector and returns.
///
/// Fails early, before anything is started, if the TLS files cannot be loaded
/// ([`RunError::Tls`]; a missing certificate is fine when `[enrol]` is configured: the link
/// enrols first, while the intake already accepts outcomes), the spool cannot be opened, or
/// the intake cannot bind.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    certs::recover(&config.collector.cert, &config.collector.key)?;
    if config.collector.cert.exists() || config.enrol.is_none() {
        link::client_config(&config.collector, &config.uplink)?;
    }
    let addr = config.intake.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| RunError::Intake { addr, cause })?;
    let agent = Agent::open(config)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    tracing::info!(
        terminal = %agent.config().identity.terminal_id,
        epoch = agent.status().spool_epoch,
        listen = %agent.config().intake.listen,
        "Agent started"
    );

    let intake = {
        let mut stop = stop_rx.clone();
        let app = router(Arc::clone(&agent));
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };
    let probes = tokio::spawn(probes::run(Arc::clone(&agent), stop_rx.clone()));
    link::run(Arc::clone(&agent), stop_rx.clone()).await;
    let _ = probes.await;
    match intake.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "Intake server failed"),
        Err(error) => tracing::warn!(%error, "Intake task failed"),
    }
    tracing::info!("Agent stopped");
    Ok(())
}
