//! The live engine end to end: a scenario played on the wall clock through real agents over
//! real QUIC to a real collector. Every observation committed to an agent's spool, including
//! those made while its store was offline, is stored by the collector exactly once; live
//! detection opens the merchant's incident, and `diagnose` at one of its tills names it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use storepulse_sim::Scenario;
use storepulse_tests::live::{LiveUplink, start_collector};
use storepulse_tests::replay::{LiveEvent, Timeline, play, start_fleet};
use storepulse_tests::{Agent, AgentSpec, Pki, wait_for};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_played_live_arrives_whole_and_once() -> Result<()> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/live-small.toml");
    let scenario = Scenario::from_file(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let timeline = Timeline::record(&scenario);
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut cuts = 0;
    for (_, e) in &timeline.events {
        match e {
            LiveEvent::Observed(t, _) => *expected.entry(t.to_string()).or_default() += 1,
            LiveEvent::Link(_, false) => cuts += 1,
            _ => {}
        }
    }
    ensure!(cuts > 0, "the scenario should cut some links");

    let tmp = tempfile::tempdir()?;
    let (collector, pki) = start_collector(tmp.path()).await?;
    let mut fleet = start_fleet(
        &tmp.path().join("agents"),
        &pki,
        collector.quic_addr(),
        &scenario,
        LiveUplink::fast(),
    )
    .await?;

    // 20 virtual minutes at 60x: about 20 s.
    let (_stop_tx, stop_rx) = watch::channel(false);
    let stats = play(
        &timeline,
        &mut fleet,
        60.0,
        scenario.start_ms,
        Duration::from_millis(100),
        stop_rx,
        |_, _| {},
    )
    .await?;
    ensure!(
        stats.observed == expected.values().sum::<u64>(),
        "played {stats:?}"
    );
    ensure!(
        stats.cuts == cuts && stats.restores >= cuts,
        "links: {stats:?}"
    );

    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/api/v1/terminals?limit=1000",
        collector.http_addr()
    );
    let received = wait_for(
        Duration::from_secs(60),
        "every observation stored",
        || async {
            let v: serde_json::Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            let got: HashMap<String, u64> = v["terminals"]
                .as_array()?
                .iter()
                .filter_map(|t| {
                    Some((
                        t["terminal_id"].as_str()?.to_string(),
                        t["records_received"].as_u64()?,
                    ))
                })
                .collect();
            expected
                .iter()
                .all(|(t, n)| got.get(t).is_some_and(|g| g >= n))
                .then_some(got)
        },
    )
    .await?;
    // Exactly once: not one record more than was observed (spool drops would show as fewer).
    for (t, n) in &expected {
        let g = received.get(t).copied().context("terminal missing")?;
        ensure!(g == *n, "{t}: stored {g}, observed {n}");
    }
    fleet.shutdown().await;
    collector.shutdown().await?;
    Ok(())
}

/// Detection runs live on what the collector stores: a merchant misconfiguration played through
/// real agents opens a `merchant_config` incident scoped to that merchant, visible in the API
/// with its explanation in both languages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_detection_opens_the_incident_in_the_api() -> Result<()> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/live-small.toml");
    let scenario = Scenario::from_file(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let timeline = Timeline::record(&scenario);
    let tmp = tempfile::tempdir()?;
    let (collector, pki) = start_collector(tmp.path()).await?;
    let mut fleet = start_fleet(
        &tmp.path().join("agents"),
        &pki,
        collector.quic_addr(),
        &scenario,
        LiveUplink::fast(),
    )
    .await?;
    let (_stop_tx, stop_rx) = watch::channel(false);
    play(
        &timeline,
        &mut fleet,
        60.0,
        scenario.start_ms,
        Duration::from_millis(100),
        stop_rx,
        |_, _| {},
    )
    .await?;

    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/api/v1/incidents?state=all",
        collector.http_addr()
    );
    let found = wait_for(
        Duration::from_secs(60),
        "merchant_config incident for M0002",
        || async {
            let v: serde_json::Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            v["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["kind"] == "merchant_config" && i["scope"]["merchant_id"] == "M0002")
                .cloned()
        },
    )
    .await?;
    ensure!(
        found["explanation"]["en"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{found}"
    );
    ensure!(
        found["explanation"]["zh"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{found}"
    );
    let detail: serde_json::Value = http
        .get(format!(
            "http://{}/api/v1/incidents/{}",
            collector.http_addr(),
            found["id"]
        ))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        detail["timeline"].as_array().is_some_and(|t| !t.is_empty()),
        "{detail}"
    );

    // At the till of a terminal of that merchant, `storepulse-agent diagnose` names the
    // incident (the collector says which of its incidents cover the terminal) and says what
    // to do.
    storepulse_collector::pki::issue(&pki, "M0002-TILL", false)?;
    let mut spec = AgentSpec::new(
        "M0002-TILL",
        &Pki { dir: pki.clone() },
        collector.quic_addr(),
    );
    spec.merchant = "M0002".into();
    let till = Agent::start(&tmp.path().join("till"), spec).await?;
    let id = found["id"].as_u64().context("incident id")?;
    let text = wait_for(
        Duration::from_secs(30),
        "diagnose naming the incident",
        || async {
            let (code, text) = till.diagnose(false).await.ok()?;
            (code == 1 && text.contains(&format!("#{id}"))).then_some(text)
        },
    )
    .await?;
    for want in [
        "商户资料有误（M0002）",
        "merchant record wrong at the acquirer (M0002)",
        "无需重启设备",
        "retrying or restarting the terminal will not help",
    ] {
        ensure!(text.contains(want), "no {want:?} in:\n{text}");
    }
    fleet.shutdown().await;
    collector.shutdown().await?;
    Ok(())
}
