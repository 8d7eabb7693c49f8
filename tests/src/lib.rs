//! storepulse test support: starts the real binaries, talks to their HTTP endpoints, and
//! speaks raw QUIC for the tests that must misbehave on purpose.
//!
//! Everything here works against processes, so the end-to-end tests can SIGKILL them. The
//! binaries are taken from `STOREPULSE_BIN_DIR`, or from the workspace's `target/debug`
//! (the test command builds them before running the tests).

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub mod demo;
pub mod garbage;
pub mod impair;
pub mod live;
pub mod load;
pub mod procstat;
pub mod quic;
pub mod replay;

/// Where the storepulse binaries are.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STOREPULSE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

/// Path of one binary; fails with a hint if it was not built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!(
            "{} not found: run `cargo build --workspace --bins` first",
            p.display()
        );
    }
    Ok(p)
}

/// A loopback TCP port that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind tcp 0");
    l.local_addr().expect("addr").port()
}

/// A loopback UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp 0");
    s.local_addr().expect("addr").port()
}

/// Polls `f` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `storepulse-collector` with the given arguments and fails on a non-zero exit.
pub fn collector_cli(args: &[&str]) -> Result<String> {
    let out = Command::new(bin("storepulse-collector")?)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "storepulse-collector {:?} failed: {}{}",
            args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A PKI directory made by `storepulse-collector pki init`.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The directory.
    pub dir: PathBuf,
}

impl Pki {
    /// `pki init --dir dir`.
    pub fn init(dir: &Path) -> Result<Self> {
        collector_cli(&["pki", "init", "--dir", &dir.to_string_lossy()])?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// `pki issue --dir dir --terminal t`.
    pub fn issue(&self, terminal: &str) -> Result<()> {
        collector_cli(&[
            "pki",
            "issue",
            "--dir",
            &self.dir.to_string_lossy(),
            "--terminal",
            terminal,
        ])?;
        Ok(())
    }

    /// `pki issue` for many terminals in one run (through a terminals file).
    pub fn issue_many(&self, terminals: &[String]) -> Result<()> {
        let list = self.dir.join("issue-many.txt");
        std::fs::write(&list, terminals.join("\n"))?;
        collector_cli(&[
            "pki",
            "issue",
            "--dir",
            &self.dir.to_string_lossy(),
            "--terminals-file",
            &list.to_string_lossy(),
        ])?;
        Ok(())
    }

    /// `pki revoke --dir dir --terminal t`.
    pub fn revoke(&self, terminal: &str) -> Result<()> {
        collector_cli(&[
            "pki",
            "revoke",
            "--dir",
            &self.dir.to_string_lossy(),
            "--terminal",
            terminal,
        ])?;
        Ok(())
    }

    /// The fleet CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A terminal's certificate.
    pub fn cert(&self, terminal: &str) -> PathBuf {
        self.dir.join("terminals").join(format!("{terminal}.pem"))
    }

    /// A terminal's private key.
    pub fn key(&self, terminal: &str) -> PathBuf {
        self.dir.join("terminals").join(format!("{terminal}.key"))
    }
}

/// A child process that is killed when dropped.
#[derive(Debug)]
struct Proc {
    child: Option<Child>,
}

impl Proc {
    fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("STOREPULSE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        Ok(Self { child: Some(child) })
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn terminate(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status()?;
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if c.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    bail!("process {pid} did not stop within 15 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Settings for a test collector.
#[derive(Debug, Clone)]
pub struct CollectorSpec {
    /// PKI directory.
    pub pki: Pki,
    /// Store directory.
    pub store: PathBuf,
    /// QUIC (UDP) address.
    pub quic: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// Heartbeat interval announced to agents in `Welcome`.
    pub heartbeat_interval_secs: u32,
    /// Network probe interval announced to agents in `Welcome`.
    pub net_probe_interval_secs: u32,
    /// TOML appended to the config (whole sections, e.g. `[runtime]` or `[ingest]`).
    pub extra_toml: String,
    /// CPUs the process may run on (`taskset -c` list, e.g. `0` or `0,1`); `None`: any.
    pub cpus: Option<String>,
}

/// A collector process.
#[derive(Debug)]
pub struct Collector {
    spec: CollectorSpec,
    dir: PathBuf,
    proc: Option<Proc>,
    http: reqwest::Client,
}

impl Collector {
    /// Writes its config into `dir` and starts it with test intervals (1 s heartbeats); waits
    /// until `/healthz` answers.
    pub async fn start(dir: &Path, pki: &Pki) -> Result<Self> {
        Self::start_with_intervals(dir, pki, 1, 2).await
    }

    /// As [`Self::start`], announcing the given probe intervals to agents.
    pub async fn start_with_intervals(
        dir: &Path,
        pki: &Pki,
        heartbeat_secs: u32,
        net_secs: u32,
    ) -> Result<Self> {
        Self::start_custom(dir, pki, heartbeat_secs, net_secs, String::new(), None).await
    }

    /// As [`Self::start_with_intervals`], with `extra_toml` appended to the config and the
    /// process pinned to `cpus` (a `taskset -c` list) if given.
    pub async fn start_custom(
        dir: &Path,
        pki: &Pki,
        heartbeat_secs: u32,
        net_secs: u32,
        extra_toml: String,
        cpus: Option<String>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let spec = CollectorSpec {
            pki: pki.clone(),
            store: dir.join("store"),
            quic: SocketAddr::from(([127, 0, 0, 1], free_udp_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_tcp_port())),
            heartbeat_interval_secs: heartbeat_secs,
            net_probe_interval_secs: net_secs,
            extra_toml,
            cpus,
        };
        let mut c = Self {
            spec,
            dir: dir.to_path_buf(),
            proc: None,
            http: reqwest::Client::new(),
        };
        c.restart().await?;
        Ok(c)
    }

    /// The QUIC address agents connect to.
    pub fn quic_addr(&self) -> SocketAddr {
        self.spec.quic
    }

    /// The HTTP base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.spec.http, path)
    }

    fn config(&self) -> String {
        let p = &self.spec.pki.dir;
        format!(
            r#"[quic]
listen = "{quic}"

[tls]
ca_cert = "{ca}"
cert = "{cert}"
key = "{key}"
crl = "{crl}"

[store]
path = "{store}"

[http]
listen = "{http}"

[fleet]
stale_after_secs = 5
offline_after_secs = 15

[agents]
heartbeat_interval_secs = {hb}
net_probe_interval_secs = {net}
max_batch_records = 256
backlog_records_per_sec = 5000
{extra}"#,
            quic = self.spec.quic,
            http = self.spec.http,
            ca = p.join("ca.pem").display(),
            cert = p.join("collector.pem").display(),
            key = p.join("collector.key").display(),
            crl = p.join("crl.pem").display(),
            store = self.spec.store.display(),
            hb = self.spec.heartbeat_interval_secs,
            net = self.spec.net_probe_interval_secs,
            extra = self.spec.extra_toml,
        )
    }

    /// (Re)starts the process with the same config and store.
    pub async fn restart(&mut self) -> Result<()> {
        let cfg = self.dir.join("collector.toml");
        std::fs::write(&cfg, self.config())?;
        let mut args = vec![
            "serve".into(),
            "--config".into(),
            cfg.to_string_lossy().into_owned(),
        ];
        let collector = bin("storepulse-collector")?;
        // `taskset` execs the collector: the child's pid is the collector's.
        let program = match &self.spec.cpus {
            Some(cpus) => {
                let mut pinned = vec![
                    "-c".to_owned(),
                    cpus.clone(),
                    collector.to_string_lossy().into_owned(),
                ];
                pinned.append(&mut args);
                args = pinned;
                PathBuf::from("taskset")
            }
            None => collector,
        };
        self.proc = Some(Proc::spawn(
            &program,
            &args,
            &self.dir.join("collector.log"),
        )?);
        let url = self.url("/healthz");
        let http = self.http.clone();
        wait_for(Duration::from_secs(20), "collector /healthz", || {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await
        .with_context(|| format!("collector log:\n{}", self.log()))
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> Result<()> {
        match self.proc.as_mut() {
            Some(p) => p.terminate(),
            None => Ok(()),
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.proc
            .as_ref()
            .and_then(|p| p.child.as_ref())
            .map(Child::id)
    }

    /// Whether the process is alive.
    pub fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::running)
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("collector.log")).unwrap_or_default()
    }

    /// GET a JSON document.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let r = self.http.get(self.url(path)).send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {v}");
        }
        Ok(v)
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> Result<String> {
        let r = self.http.get(self.url("/metrics")).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("GET /metrics: {status} {text}");
        }
        Ok(text)
    }

    /// The terminal's entry in `/api/v1/terminals`, if listed.
    pub async fn terminal(&self, id: &str) -> Result<Option<Value>> {
        Ok(self
            .terminals()
            .await?
            .into_iter()
            .find(|t| t["terminal_id"] == id))
    }

    /// Every terminal `/api/v1/terminals` lists, following its pages.
    pub async fn terminals(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut path = "/api/v1/terminals?limit=1000".to_owned();
        loop {
            let v = self.get(&path).await?;
            out.extend(v["terminals"].as_array().cloned().unwrap_or_default());
            match v["next"].as_str() {
                Some(next) => path = format!("/api/v1/terminals?limit=1000&after={next}"),
                None => return Ok(out),
            }
        }
    }

    /// Every stored record of one terminal, following the `next` cursor.
    pub async fn records(&self, id: &str) -> Result<Vec<Value>> {
        self.paged(&format!("/api/v1/terminals/{id}/records")).await
    }

    /// Every quarantined record of one terminal, following the `next` cursor.
    pub async fn quarantined(&self, id: &str) -> Result<Vec<Value>> {
        self.paged(&format!("/api/v1/terminals/{id}/quarantined"))
            .await
    }

    async fn paged(&self, base: &str) -> Result<Vec<Value>> {
        let mut out: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("{base}?limit=1000&after={a}"),
                None => format!("{base}?limit=1000"),
            };
            let v = self.get(&path).await?;
            out.extend(v["records"].as_array().cloned().unwrap_or_default());
            match v["next"].as_str() {
                Some(next) if after.as_deref() == Some(next) => {
                    bail!("pagination did not advance past {next}")
                }
                Some(next) => after = Some(next.to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// The `latency_ms` of every stored transaction outcome of a terminal (tests use it as a
    /// unique marker per posted outcome).
    pub async fn txn_markers(&self, id: &str) -> Result<Vec<u64>> {
        let recs = self.records(id).await?;
        let mut m: Vec<u64> = recs
            .iter()
            .filter(|r| r["kind"] == "txn_outcome")
            .map(|r| {
                r["body"]["latency_ms"]
                    .as_u64()
                    .context("txn without latency_ms")
            })
            .collect::<Result<_>>()?;
        m.sort_unstable();
        Ok(m)
    }
}

/// Settings for a test agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Terminal id claimed in the Hello.
    pub terminal_id: String,
    /// Certificate (and key) to present; usually the same terminal.
    pub cert_terminal: String,
    /// PKI the certificate comes from.
    pub pki: Pki,
    /// CA the agent trusts for the collector.
    pub ca: PathBuf,
    /// Collector address.
    pub collector: SocketAddr,
    /// Spool size bound.
    pub spool_max_bytes: u64,
    /// Merchant label.
    pub merchant: String,
    /// Heartbeat interval in the agent's own config.
    pub heartbeat_interval_secs: u32,
    /// Network probe interval in the agent's own config.
    pub net_probe_interval_secs: u32,
    /// Payment hosts to probe: name, host, port.
    pub endpoints: Vec<(String, String, u16)>,
}

impl AgentSpec {
    /// An agent for `terminal` with its own certificate from `pki`.
    pub fn new(terminal: &str, pki: &Pki, collector: SocketAddr) -> Self {
        Self {
            terminal_id: terminal.into(),
            cert_terminal: terminal.into(),
            pki: pki.clone(),
            ca: pki.ca(),
            collector,
            spool_max_bytes: 64 << 20,
            merchant: "M100".into(),
            heartbeat_interval_secs: 1,
            net_probe_interval_secs: 2,
            endpoints: Vec::new(),
        }
    }
}

/// An agent process.
#[derive(Debug)]
pub struct Agent {
    /// Its settings.
    pub spec: AgentSpec,
    dir: PathBuf,
    intake: SocketAddr,
    proc: Option<Proc>,
    http: reqwest::Client,
}

impl Agent {
    /// Writes its config into `dir` and starts it; waits until `/v1/status` answers.
    pub async fn start(dir: &Path, spec: AgentSpec) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let intake = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let mut a = Self {
            spec,
            dir: dir.to_path_buf(),
            intake,
            proc: None,
            http: reqwest::Client::new(),
        };
        a.restart().await?;
        Ok(a)
    }

    /// The agent's config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    fn config(&self) -> String {
        let s = &self.spec;
        format!(
            r#"[identity]
terminal_id = "{tid}"
merchant_id = "{merchant}"
store_id = "S-{tid}"
region = "east"
city = "上海"
acquirer = "acq-a"
qr_channel = "wechatpay"
carrier = "cmcc"
link = "wifi"
model = "P300"
firmware = "2.3.1"
app_version = "5.0.2"

[collector]
address = "{collector}"
server_name = "collector.storepulse.local"
ca_cert = "{ca}"
cert = "{cert}"
key = "{key}"

[spool]
path = "{spool}"
max_bytes = {max_bytes}

[intake]
listen = "{intake}"

[probes]
heartbeat_interval_secs = {hb}
net_probe_interval_secs = {net}
endpoints = [{endpoints}]

[uplink]
keep_alive_secs = 2
idle_timeout_secs = 6
backoff_initial_ms = 100
backoff_max_secs = 1
backlog_records_per_sec = 5000
max_batch_records = 256
"#,
            tid = s.terminal_id,
            merchant = s.merchant,
            collector = s.collector,
            ca = s.ca.display(),
            cert = s.pki.cert(&s.cert_terminal).display(),
            key = s.pki.key(&s.cert_terminal).display(),
            spool = self.dir.join("spool.redb").display(),
            max_bytes = s.spool_max_bytes,
            intake = self.intake,
            hb = s.heartbeat_interval_secs,
            net = s.net_probe_interval_secs,
            endpoints = s
                .endpoints
                .iter()
                .map(|(n, h, p)| format!(r#"{{ name = "{n}", host = "{h}", port = {p} }}"#))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// Runs `storepulse-agent diagnose` on this agent's config (with `--json`: the verdict as
    /// JSON); returns its exit code and standard output.
    pub async fn diagnose(&self, json: bool) -> Result<(i32, String)> {
        let mut cmd = Command::new(bin("storepulse-agent")?);
        cmd.arg("diagnose").arg("--config").arg(self.config_path());
        if json {
            cmd.arg("--json");
        }
        let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
        if !out.stderr.is_empty() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// (Re)starts the process with the same config and spool.
    pub async fn restart(&mut self) -> Result<()> {
        std::fs::write(self.config_path(), self.config())?;
        let args = vec![
            "--config".into(),
            self.config_path().to_string_lossy().into_owned(),
        ];
        self.proc = Some(Proc::spawn(
            &bin("storepulse-agent")?,
            &args,
            &self.dir.join("agent.log"),
        )?);
        let this = &*self;
        wait_for(Duration::from_secs(20), "agent /v1/status", || async move {
            this.status().await.ok()
        })
        .await
        .with_context(|| format!("agent log:\n{}", self.log()))?;
        Ok(())
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> Result<()> {
        match self.proc.as_mut() {
            Some(p) => p.terminate(),
            None => Ok(()),
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.proc
            .as_ref()
            .and_then(|p| p.child.as_ref())
            .map(Child::id)
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Value> {
        let r = self
            .http
            .get(format!("http://{}/v1/status", self.intake))
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("status: {status} {v}");
        }
        Ok(v)
    }

    /// `POST /v1/txn` with raw JSON; returns the status code and the body.
    pub async fn post_txn_raw(&self, body: String) -> Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("http://{}/v1/txn", self.intake))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let code = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        Ok((code, v))
    }

    /// Posts outcomes whose `latency_ms` are the given markers (code 00, scheme cup, card);
    /// fails unless the agent accepted them all.
    pub async fn post_markers(&self, markers: impl IntoIterator<Item = u64>) -> Result<()> {
        let items: Vec<Value> = markers
            .into_iter()
            .map(|m| serde_json::json!({"scheme": "cup", "code": "00", "latency_ms": m, "method": "card", "route": "acq-a"}))
            .collect();
        let (code, v) = self.post_txn_raw(Value::Array(items).to_string()).await?;
        if code != 200 {
            bail!("POST /v1/txn: {code} {v}");
        }
        Ok(())
    }
}

/// Asserts that `stored` holds every marker in `expected` exactly once and nothing else.
pub fn assert_exactly_once(stored: &[u64], expected: impl IntoIterator<Item = u64>) -> Result<()> {
    let mut want: Vec<u64> = expected.into_iter().collect();
    want.sort_unstable();
    let mut dups = Vec::new();
    for w in stored.windows(2) {
        if w[0] == w[1] {
            dups.push(w[0]);
        }
    }
    if !dups.is_empty() {
        bail!(
            "{} duplicate(s), e.g. {:?}",
            dups.len(),
            &dups[..dups.len().min(10)]
        );
    }
    let missing: Vec<u64> = want
        .iter()
        .filter(|m| stored.binary_search(m).is_err())
        .copied()
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} of {} missing, e.g. {:?}",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(10)]
        );
    }
    if stored.len() != want.len() {
        bail!("stored {} outcomes, expected {}", stored.len(), want.len());
    }
    Ok(())
}

/// Shared, cheaply cloned rustls client config for raw QUIC tests.
pub type ClientTls = Arc<rustls::ClientConfig>;
