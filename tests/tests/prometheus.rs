//! `/metrics` against the real Prometheus tools (Debian package `prometheus`): `promtool check
//! metrics` accepts the exposition, and a real Prometheus server scrapes the collector and can
//! query its metrics.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use storepulse_collector::config::{Config, TlsConfig};
use storepulse_tests::{Agent, AgentSpec, Pki, free_tcp_port, wait_for};

async fn collector_with_traffic(
    tmp: &std::path::Path,
) -> Result<(storepulse_collector::Collector, Agent)> {
    let pki_dir = tmp.join("pki");
    storepulse_collector::pki::init(&pki_dir, storepulse_collector::pki::DEFAULT_SERVER_NAME)?;
    storepulse_collector::pki::issue(&pki_dir, "PROM1", false)?;
    let mut config = Config::with_defaults(TlsConfig::from_pki_dir(&pki_dir), tmp.join("store"));
    config.quic.listen = "127.0.0.1:0".parse()?;
    config.http.listen = "127.0.0.1:0".parse()?;
    let collector = storepulse_collector::start(config).await?;
    let pki = Pki { dir: pki_dir };
    let agent = Agent::start(
        &tmp.join("agent"),
        AgentSpec::new("PROM1", &pki, collector.quic_addr()),
    )
    .await?;
    agent.post_markers(0..20).await?;
    Ok((collector, agent))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (collector, _agent) = collector_with_traffic(tmp.path()).await?;
    let url = format!("http://{}/metrics", collector.http_addr());
    let text = wait_for(
        Duration::from_secs(30),
        "records counted in /metrics",
        || async {
            let t = reqwest::get(&url).await.ok()?.text().await.ok()?;
            t.lines()
                .find(|l| l.starts_with("storepulse_ingest_records_total "))
                .and_then(|l| l.split(' ').nth(1)?.parse::<u64>().ok())
                .filter(|n| *n >= 20)
                .map(|_| t)
        },
    )
    .await?;
    ensure!(
        !text.contains("PROM1"),
        "a terminal id leaked into a metric label"
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "promtool not found: run scripts/install-test-deps.sh (Debian package prometheus)",
        )?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}\n--- exposition:\n{text}"
    );
    collector.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_collector() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (collector, _agent) = collector_with_traffic(tmp.path()).await?;
    let prom_port = free_tcp_port();
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: storepulse\n    static_configs:\n      - targets: ['{}']\n",
            collector.http_addr()
        ),
    )?;
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            tmp.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context(
            "prometheus not found: run scripts/install-test-deps.sh (Debian package prometheus)",
        )?;
    let query =
        format!("http://127.0.0.1:{prom_port}/api/v1/query?query=storepulse_ingest_records_total");
    let result = wait_for(
        Duration::from_secs(60),
        "Prometheus has scraped storepulse_ingest_records_total",
        || async {
            let v: serde_json::Value = reqwest::get(&query).await.ok()?.json().await.ok()?;
            let value = v["data"]["result"][0]["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()?;
            (value >= 20.0).then_some(v)
        },
    )
    .await;
    let up =
        format!("http://127.0.0.1:{prom_port}/api/v1/query?query=up%7Bjob%3D%22storepulse%22%7D");
    let up_value: Option<String> = async {
        let v: serde_json::Value = reqwest::get(&up).await.ok()?.json().await.ok()?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned)
    }
    .await;
    let _ = prom.kill();
    let _ = prom.wait();
    let v = result?;
    if up_value.as_deref() != Some("1") {
        bail!("target not up: {up_value:?} ({v})");
    }
    collector.shutdown().await?;
    Ok(())
}

/// The example Prometheus config and alert rules under `dashboards/prometheus/` are valid, and
/// every metric the rules and the Grafana dashboard query is one the collector exposes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_rules_config_and_dashboard_match_the_metrics() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    for args in [
        vec!["check", "rules", "storepulse-rules.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(root.join("prometheus"))
            .output()?;
        ensure!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tmp = tempfile::tempdir()?;
    let (collector, _agent) = collector_with_traffic(tmp.path()).await?;
    let text = reqwest::get(format!("http://{}/metrics", collector.http_addr()))
        .await?
        .text()
        .await?;
    let exposed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let dashboard = std::fs::read_to_string(root.join("grafana/storepulse-collector.json"))?;
    let _: serde_json::Value = serde_json::from_str(&dashboard).context("dashboard JSON")?;
    let rules = std::fs::read_to_string(root.join("prometheus/storepulse-rules.yml"))?;
    for source in [&dashboard, &rules] {
        for word in source.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(name) = word.strip_prefix("storepulse_") {
                let base = format!("storepulse_{name}");
                let base = base.trim_end_matches("_bucket");
                ensure!(exposed.contains(&base), "{base} is queried but not exposed");
            }
        }
    }
    collector.shutdown().await?;
    Ok(())
}
