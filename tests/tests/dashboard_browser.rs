//! The dashboard in a real browser: headless Chromium (Debian's), driven by playwright-core
//! (`dashboards/tests/browser.mjs`), against a running collector fed by a scenario played
//! through real agents. The incident must appear on the overview without a reload, its detail
//! page must show its explanation, and the language switch must work. Screenshots are saved in
//! `target/dashboard-screenshots/`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use storepulse_sim::Scenario;
use storepulse_tests::live::{LiveUplink, start_collector};
use storepulse_tests::replay::{Timeline, play, start_fleet};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_shows_live_with_detail_and_language_switch() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("dashboards/tests/browser.mjs");
    if !root
        .join("dashboards/tests/node_modules/playwright-core")
        .exists()
    {
        bail!("playwright-core is not installed: run scripts/install-test-deps.sh");
    }
    let scenario = Scenario::from_file(&root.join("tests/demo/live-small.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let timeline = Timeline::record(&scenario);
    let tmp = tempfile::tempdir()?;
    let (collector, pki) = start_collector(tmp.path()).await?;
    let base = format!("http://{}", collector.http_addr());
    let mut fleet = start_fleet(
        &tmp.path().join("agents"),
        &pki,
        collector.quic_addr(),
        &scenario,
        LiveUplink::fast(),
    )
    .await?;

    // The browser opens the overview before the fault starts and waits for the incident.
    let out = root.join("target/dashboard-screenshots");
    // Screenshots of an earlier run must not count for this one.
    let _ = std::fs::remove_dir_all(&out);
    let browser = {
        let (script, base, out) = (script.clone(), base.clone(), out.clone());
        tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(&script)
                .arg(&base)
                .arg(&out)
                .arg("merchant_config")
                .output()
        })
    };
    let (_stop_tx, stop_rx) = watch::channel(false);
    let player = async {
        // Let the browser load the empty overview first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        play(
            &timeline,
            &mut fleet,
            60.0,
            scenario.start_ms,
            Duration::from_millis(100),
            stop_rx,
            |_, _| {},
        )
        .await
    };
    let (played, browsed) = tokio::join!(player, browser);
    played?;
    let output = browsed?.context("running node")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("browser test failed:\n{text}");
    }
    for shot in [
        "2-overview-incident.png",
        "3-incident-detail.png",
        "4-incident-detail-zh.png",
    ] {
        let meta =
            std::fs::metadata(out.join(shot)).with_context(|| format!("screenshot {shot}"))?;
        anyhow::ensure!(
            meta.len() > 10_000,
            "screenshot {shot} is suspiciously small"
        );
    }
    fleet.shutdown().await;
    collector.shutdown().await?;
    Ok(())
}
