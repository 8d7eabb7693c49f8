//! A collector process for the scale benchmarks: a fresh dev PKI, the collector's own defaults
//! plus whatever TOML the benchmark adds, and helpers to read its `/metrics`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use storepulse_tests::{bin, free_tcp_port, free_udp_port};

/// A running collector process, killed on drop.
#[derive(Debug)]
pub(crate) struct CollectorProc {
    child: Child,
    /// QUIC address.
    pub(crate) quic: SocketAddr,
    /// HTTP address.
    pub(crate) http: SocketAddr,
    /// The PKI directory.
    pub(crate) pki: PathBuf,
    http_client: reqwest::Client,
}

impl CollectorProc {
    /// Creates `dir/pki`, writes `dir/collector.toml` (defaults plus `extra`, which may hold
    /// whole sections such as `[agents]`, and `quic_extra` lines for `[quic]`, `ingest_extra`
    /// lines for `[ingest]`) and starts the collector; waits for `/healthz`.
    pub(crate) async fn start(
        dir: &Path,
        quic_extra: &str,
        ingest_extra: &str,
        extra: &str,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let pki = dir.join("pki");
        storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)?;
        let quic = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
        let http = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let config = format!(
            r#"[quic]
listen = "{quic}"
{quic_extra}

[tls]
ca_cert = "{pki}/ca.pem"
cert = "{pki}/collector.pem"
key = "{pki}/collector.key"
crl = "{pki}/crl.pem"

[store]
path = "{store}"

[http]
listen = "{http}"
public_metrics = true

[ingest]
{ingest_extra}

{extra}
"#,
            pki = pki.display(),
            store = dir.join("store").display(),
        );
        let cfg = dir.join("collector.toml");
        std::fs::write(&cfg, config)?;
        let log = std::fs::File::create(dir.join("collector.log"))?;
        let child = Command::new(bin("storepulse-collector")?)
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn storepulse-collector")?;
        let me = Self {
            child,
            quic,
            http,
            pki,
            http_client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if me.get_text("/healthz").await.is_ok() {
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("collector did not answer /healthz within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET a path, as text.
    pub(crate) async fn get_text(&self, path: &str) -> Result<String> {
        let r = self
            .http_client
            .get(format!("http://{}{path}", self.http))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("GET {path}: {}", r.status());
        }
        Ok(r.text().await?)
    }

    /// Sum of every sample of `/metrics` whose line starts with `prefix` (name plus labels).
    pub(crate) async fn metric(&self, prefix: &str) -> Result<f64> {
        let text = self.get_text("/metrics").await?;
        Ok(metric_sum(&text, prefix))
    }
}

impl Drop for CollectorProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of the samples in a metrics text whose line starts with `prefix`.
pub(crate) fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .fold(0.0, |a, b| a + b)
}

/// Latency percentiles of a sample, milliseconds: (p50, p99, max, count).
pub(crate) fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64, usize) {
    if ms.is_empty() {
        return (0.0, 0.0, 0.0, 0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), ms[ms.len() - 1], ms.len())
}

/// MiB from bytes.
pub(crate) fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}
