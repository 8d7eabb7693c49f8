//! `storepulse-agent diagnose` at the till, with real processes: with the collector
//! unreachable it says so and still reports the local checks (payment hosts, spool, payments);
//! with the agent stopped it says so. (Inside an open merchant-config incident it names the
//! incident and says what to do: `live_replay.rs`, which has the incident at hand.)

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use storepulse_tests::{Agent, AgentSpec, Pki, free_udp_port, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_without_a_collector_still_reports_local_checks() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    pki.issue("T-DIAG")?;
    // A payment host that answers, and a collector address where nothing listens.
    let host = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = host.local_addr()?.port();
    let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let mut spec = AgentSpec::new("T-DIAG", &pki, nowhere);
    spec.endpoints = vec![("cup-host".into(), "127.0.0.1".into(), port)];
    let mut agent = Agent::start(&tmp.path().join("agent"), spec).await?;
    agent
        .post_txn_raw(r#"[{"scheme":"cup","code":"00"},{"scheme":"cup","code":"51"}]"#.into())
        .await?;
    // Let the link fail once so it has an error to report.
    wait_for(Duration::from_secs(20), "a link error", || async {
        let s = agent.status().await.ok()?;
        s["last_error"].is_string().then_some(())
    })
    .await?;

    let (code, text) = agent.diagnose(false).await?;
    ensure!(code == 1, "exit {code}:\n{text}");
    for want in [
        "无法连接采集端",
        "Collector unreachable",
        "支付主机连接正常",
        "Payment hosts reachable (cup-host",
        "Spool OK",
        "2 payments in the last hour",
        "Could not ask the collector about incidents: not connected.",
    ] {
        ensure!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let (_, json) = agent.diagnose(true).await?;
    let v: Value = serde_json::from_str(&json).context("diagnose --json")?;
    ensure!(v["cause"] == "collector_unreachable", "{v}");
    ensure!(v["level"] == "warning", "{v}");
    let level = |name: &str| {
        v["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["level"].clone())
    };
    ensure!(level("payment_hosts") == Some("ok".into()), "{v}");
    ensure!(level("spool") == Some("ok".into()), "{v}");
    ensure!(level("collector") == Some("warning".into()), "{v}");
    // The POS app sees the same verdict on the agent's loopback status.
    let status = agent.status().await?;
    ensure!(
        status["verdict"]["cause"] == "collector_unreachable",
        "{status}"
    );

    // The agent stopped: diagnose says so and checks what it can without it.
    agent.stop()?;
    let (code, text) = agent.diagnose(false).await?;
    ensure!(code == 1, "exit {code}:\n{text}");
    ensure!(text.contains("storepulse 代理未运行"), "{text}");
    ensure!(
        text.contains("the storepulse agent is not running"),
        "{text}"
    );
    ensure!(text.contains("Payment hosts reachable"), "{text}");
    drop(host);
    Ok(())
}
