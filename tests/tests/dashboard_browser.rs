//! The dashboard in a real browser: headless Chromium (Debian's), driven by playwright-core
//! (`dashboards/tests/browser.mjs`), against a running collector with read and admin tokens,
//! fed by a scenario played through real agents. The dashboard must ask for a token; the
//! incident must appear on the overview without a reload, its detail page must show its
//! explanation, and the language switch must work; the heat table must show the faulty
//! merchant's failures; the terminal search must open a terminal's detail; a read-only token
//! must be refused a silence and an admin token must create and end one. Then, in English and
//! Chinese (issue 19): cards in severity order with absolute times (zone) and relative ones, the
//! kind filter, chart axes; the breakdown newest bucket first, sticky header, counts on hover,
//! worst first, the window choice; the incident page; the wall view; a terminal's history
//! from first contact; and no English string of the catalogue on any Chinese page. Also: the
//! severity badge in the page's language on every card, the incident page and the wall; a
//! merged incident links the wider one; "failing since" is the incident's onset and "detected"
//! its opening; every time is in the collector's `http.time_zone` (Asia/Shanghai here, the
//! browser running in America/Sao_Paulo) and the zone is named; an open incident's evidence
//! follows the API without a reload. Screenshots of each are saved in
//! `target/dashboard-screenshots/`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use storepulse_sim::Scenario;
use storepulse_tests::live::LiveUplink;
use storepulse_tests::replay::{Timeline, play, start_fleet};
use tokio::sync::watch;

const READ: &str = "wall-read-token-0123456789";
const ADMIN: &str = "ops-admin-token-0123456789";
/// The dashboard's zone set on the collector (the browser runs in another one).
const ZONE: &str = "Asia/Shanghai";

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
    let pki = tmp.path().join("pki");
    storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)?;
    let config = storepulse_collector::config::Config::from_toml(
        &format!(
            r#"[quic]
listen = "127.0.0.1:0"
[tls]
ca_cert = "pki/ca.pem"
cert = "pki/collector.pem"
key = "pki/collector.key"
[store]
path = "store"
[http]
listen = "127.0.0.1:0"
time_zone = "{ZONE}"
tokens = [
  {{ name = "wall", role = "read", token = "{READ}" }},
  {{ name = "ops", role = "admin", token = "{ADMIN}" }},
]
"#
        ),
        tmp.path(),
    )?;
    let collector = storepulse_collector::start(config).await?;
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
                .args([READ, ADMIN, "M0002", ZONE])
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
    // What the browser saw (e.g. whether detection changed the evidence while it watched).
    println!("{text}");
    for shot in [
        "0-token-prompt.png",
        "2-overview-incident.png",
        "3-incident-detail.png",
        "4-incident-detail-zh.png",
        "6-heat-table.png",
        "7-terminal-search.png",
        "8-terminal-detail.png",
        "9-silence-forbidden.png",
        "10-silence-created.png",
        "11-silence-ended.png",
        "12-maintenance-created.png",
        "en-1-overview.png",
        "zh-1-overview.png",
        "en-2-breakdown.png",
        "zh-2-breakdown.png",
        "en-3-incident.png",
        "zh-3-incident.png",
        "en-4-wall.png",
        "zh-4-wall.png",
        "en-5-terminal.png",
        "zh-5-terminal.png",
        "en-6-merged-incident.png",
        "zh-6-merged-incident.png",
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
