//! A live fleet: many real agents (the agent library's spool, outbox core and QUIC link, the
//! same code as `storepulse-agent`) inside one process, each with its own certificate, redb
//! spool and QUIC connection to a real collector. The driver appends observations to each
//! agent's spool instead of running host probes, and can cut and restore an agent's link to
//! play outages. Used by the demo and the live end-to-end tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use storepulse_agent::Agent;
use storepulse_agent_core::NewRecord;
use storepulse_shared::{Identity, TerminalId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Uplink settings shared by every agent of a live fleet.
#[derive(Debug, Clone, Copy)]
pub struct LiveUplink {
    /// First reconnect delay, milliseconds.
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay, seconds.
    pub backoff_max_secs: u64,
    /// Spool bound per agent, bytes.
    pub spool_max_bytes: u64,
    /// Agents start their links spread evenly over this many milliseconds, as a real fleet
    /// powers on over a morning rather than in one instant.
    pub start_spread_ms: u64,
    /// QUIC keep-alive, seconds (the agent's default: 15).
    pub keep_alive_secs: u64,
    /// QUIC idle timeout, seconds (the agent's default: 60); a shorter one lets tests see a
    /// partitioned connection die sooner.
    pub idle_timeout_secs: u64,
}

impl LiveUplink {
    /// Short backoff for tests: reconnects within about a second.
    pub fn fast() -> Self {
        Self {
            backoff_initial_ms: 200,
            backoff_max_secs: 2,
            ..Self::default()
        }
    }
}

/// A fresh dev PKI in `dir/pki` and an in-process collector on ephemeral loopback ports with its
/// store in `dir/store`. Returns the collector and the PKI directory.
pub async fn start_collector(dir: &Path) -> Result<(storepulse_collector::Collector, PathBuf)> {
    use storepulse_collector::config::{Config, TlsConfig};
    let pki = dir.join("pki");
    storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)?;
    let mut config = Config::with_defaults(TlsConfig::from_pki_dir(&pki), dir.join("store"));
    config.quic.listen = "127.0.0.1:0".parse()?;
    config.http.listen = "127.0.0.1:0".parse()?;
    Ok((storepulse_collector::start(config).await?, pki))
}

impl Default for LiveUplink {
    fn default() -> Self {
        Self {
            backoff_initial_ms: 1000,
            backoff_max_secs: 30,
            spool_max_bytes: 8 << 20,
            start_spread_ms: 0,
            keep_alive_secs: 15,
            idle_timeout_secs: 60,
        }
    }
}

/// One agent of the fleet.
#[derive(Debug)]
struct LiveAgent {
    agent: Arc<Agent>,
    link: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

/// Many real agents in one process.
#[derive(Debug)]
pub struct LiveFleet {
    agents: HashMap<TerminalId, LiveAgent>,
}

fn agent_config(
    id: &Identity,
    dir: &Path,
    pki: &Path,
    collector: SocketAddr,
    up: LiveUplink,
) -> String {
    let t = id.terminal_id.as_str();
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"[identity]
terminal_id = "{t}"
merchant_id = "{merchant}"
store_id = "{store}"
region = "{region}"
city = "{city}"
acquirer = "{acquirer}"
qr_channel = "{qr}"
carrier = "{carrier}"
link = "{link}"
model = "{model}"
firmware = "{firmware}"
app_version = "{app}"

[collector]
address = "{collector}"
ca_cert = "{ca}"
cert = "{cert}"
key = "{key}"

[spool]
path = "{spool}"
max_bytes = {max_bytes}

[intake]
listen = "127.0.0.1:9"

[uplink]
backoff_initial_ms = {b0}
backoff_max_secs = {b1}
keep_alive_secs = {ka}
idle_timeout_secs = {idle}
"#,
        merchant = q(id.merchant_id.as_str()),
        store = q(id.store_id.as_str()),
        region = q(id.region.as_str()),
        city = q(id.city.as_str()),
        acquirer = q(id.acquirer.as_str()),
        qr = q(id.qr_channel.as_str()),
        carrier = q(id.carrier.as_str()),
        link = id.link.as_str(),
        model = q(id.model.as_str()),
        firmware = q(id.firmware.as_str()),
        app = q(id.app_version.as_str()),
        ca = pki.join("ca.pem").display(),
        cert = pki.join("terminals").join(format!("{t}.pem")).display(),
        key = pki.join("terminals").join(format!("{t}.key")).display(),
        spool = dir.join(format!("{t}.redb")).display(),
        max_bytes = up.spool_max_bytes,
        b0 = up.backoff_initial_ms,
        b1 = up.backoff_max_secs,
        ka = up.keep_alive_secs,
        idle = up.idle_timeout_secs,
    )
}

impl LiveFleet {
    /// Issues a certificate for every identity (in the PKI at `pki`, which must exist), opens
    /// each agent's spool under `dir` and connects every agent to `collector`.
    pub async fn start(
        dir: &Path,
        pki: &Path,
        collector: SocketAddr,
        identities: &[Identity],
        uplink: LiveUplink,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut agents = HashMap::with_capacity(identities.len());
        for id in identities {
            let t = id.terminal_id.as_str();
            if !pki.join("terminals").join(format!("{t}.pem")).exists() {
                storepulse_collector::pki::issue(pki, t, false)
                    .with_context(|| format!("issue {t}"))?;
            }
            let text = agent_config(id, dir, pki, collector, uplink);
            let config = storepulse_agent::Config::parse(&text, dir)
                .with_context(|| format!("config of {t}"))?;
            // Fails early on bad TLS files; the link reads them again at each connection.
            storepulse_agent::link::client_config(&config.collector, &config.uplink)?;
            let agent = tokio::task::spawn_blocking(move || Agent::open(config)).await??;
            agents.insert(id.terminal_id.clone(), LiveAgent { agent, link: None });
        }
        let mut fleet = Self { agents };
        let ids: Vec<TerminalId> = fleet.agents.keys().cloned().collect();
        let gap = std::time::Duration::from_millis(uplink.start_spread_ms)
            / u32::try_from(ids.len().max(1)).unwrap_or(u32::MAX);
        for t in &ids {
            fleet.restore(t);
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
        Ok(fleet)
    }

    /// The agents' terminal ids.
    pub fn terminals(&self) -> impl Iterator<Item = &TerminalId> {
        self.agents.keys()
    }

    /// The agent of a terminal.
    pub fn agent(&self, t: &TerminalId) -> Option<&Arc<Agent>> {
        self.agents.get(t).map(|a| &a.agent)
    }

    /// Commits observations to a terminal's spool (they are sent when its link is up).
    pub async fn append(&self, t: &TerminalId, records: Vec<NewRecord>) -> Result<()> {
        let a = self
            .agents
            .get(t)
            .with_context(|| format!("unknown terminal {t}"))?;
        a.agent.append(records).await?;
        Ok(())
    }

    /// Cuts a terminal's link without a goodbye, as a network outage would; its spool keeps
    /// what is appended meanwhile.
    pub fn cut(&mut self, t: &TerminalId) {
        if let Some((_, task)) = self.agents.get_mut(t).and_then(|a| a.link.take()) {
            task.abort();
        }
    }

    /// Restores a terminal's link (no-op if it is up).
    pub fn restore(&mut self, t: &TerminalId) {
        let Some(a) = self.agents.get_mut(t) else {
            return;
        };
        if a.link.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let agent = Arc::clone(&a.agent);
        let task = tokio::spawn(storepulse_agent::link::run(agent, stop_rx));
        a.link = Some((stop_tx, task));
    }

    /// Whether a terminal's link task is running (not whether it is connected right now).
    pub fn is_linked(&self, t: &TerminalId) -> bool {
        self.agents.get(t).is_some_and(|a| a.link.is_some())
    }

    /// Stops every link with a goodbye and waits for them, then closes the spools.
    pub async fn shutdown(mut self) {
        self.stop_links().await;
        self.close().await;
    }

    /// Stops every link with a goodbye and waits for them.
    pub async fn stop_links(&mut self) {
        let mut tasks = Vec::new();
        for a in self.agents.values_mut() {
            if let Some((stop, task)) = a.link.take() {
                let _ = stop.send(true);
                tasks.push(task);
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Closes every agent's spool. A redb database commits and fsyncs once more when it
    /// closes (about 11 ms each here): 3,000 closed one after another took half a minute, so
    /// they close in parallel on the blocking pool.
    pub async fn close(self) {
        const PARALLEL: usize = 32;
        let mut agents: Vec<Arc<Agent>> = self.agents.into_values().map(|a| a.agent).collect();
        let per = agents.len().div_ceil(PARALLEL).max(1);
        let mut closing = tokio::task::JoinSet::new();
        while !agents.is_empty() {
            let chunk: Vec<Arc<Agent>> = agents.drain(..per.min(agents.len())).collect();
            closing.spawn_blocking(move || drop(chunk));
        }
        while closing.join_next().await.is_some() {}
    }

    /// Directory layout helper: where a terminal's spool lives.
    pub fn spool_path(dir: &Path, t: &TerminalId) -> PathBuf {
        dir.join(format!("{t}.redb"))
    }
}
