//! Incidents that stay true across restarts (issue 16 items 1-3, issue 14 root 8), with real
//! processes: a scenario (a store offline, a chain's merchant misconfigured store after store)
//! played live through in-process agents to a collector process that is SIGKILLed and
//! restarted three times, with a real Prometheus Alertmanager and a receiver that always
//! fails. After every start the incidents API shows the incidents it showed before, under the
//! same ids; once each step has settled, Alertmanager's active alerts are exactly the
//! collector's open incidents (one alert each, no stale label set); detection is not blind
//! after a restart; the notification counters move.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use storepulse_sim::Scenario;
use storepulse_tests::live::LiveUplink;
use storepulse_tests::replay::{Timeline, play, start_fleet};
use storepulse_tests::{Collector, Pki, free_tcp_port, wait_for};
use tokio::sync::watch;

const AM_BIN: &str = "/usr/bin/prometheus-alertmanager";

struct Am(Child);

impl Drop for Am {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_alertmanager(dir: &Path, port: u16) -> Result<Am> {
    ensure!(
        Path::new(AM_BIN).exists(),
        "{AM_BIN} is missing: run scripts/install-test-deps.sh (Debian package prometheus-alertmanager)"
    );
    let config = dir.join("am.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )?;
    let child = Command::new(AM_BIN)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start alertmanager")?;
    Ok(Am(child))
}

/// The collector's incidents: id → (state, kind, scope text).
async fn incidents(c: &Collector) -> Result<BTreeMap<u64, (String, String, String)>> {
    let v = c.get("/api/v1/incidents?state=all&limit=1000").await?;
    let mut out = BTreeMap::new();
    for i in v["incidents"].as_array().context("incidents")? {
        out.insert(
            i["id"].as_u64().context("id")?,
            (
                i["state"].as_str().unwrap_or_default().to_owned(),
                i["kind"].as_str().unwrap_or_default().to_owned(),
                i["scope_text"].as_str().unwrap_or_default().to_owned(),
            ),
        );
    }
    Ok(out)
}

fn open_ids(all: &BTreeMap<u64, (String, String, String)>) -> Vec<u64> {
    all.iter()
        .filter(|(_, (s, _, _))| s == "active")
        .map(|(id, _)| *id)
        .collect()
}

/// Alertmanager's active alerts from this collector: the incident id of each (from the
/// `incident` label, `<id>@<started>[.<n>]`), one entry per alert.
async fn am_alerts(http: &reqwest::Client, base: &str) -> Option<Vec<u64>> {
    let v: Value = http
        .get(format!(
            "{base}/api/v2/alerts?active=true&silenced=true&inhibited=true"
        ))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut ids: Vec<u64> = v
        .as_array()?
        .iter()
        .filter(|a| a["labels"]["source"] == "restart-test")
        .filter_map(|a| {
            a["labels"]["incident"]
                .as_str()?
                .split('@')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    Some(ids)
}

/// Waits until Alertmanager's active alerts are exactly the collector's open incidents, one
/// alert each; returns the open ids.
async fn settled(c: &Collector, http: &reqwest::Client, am: &str, step: &str) -> Result<Vec<u64>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let open = open_ids(&incidents(c).await?);
        let alerts = am_alerts(http, am).await.unwrap_or_default();
        if alerts == open {
            return Ok(open);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{step}: Alertmanager never matched the collector: open {open:?}, alerts {alerts:?}\n{}",
                c.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn counter(text: &str, name: &str, receiver: &str) -> Option<f64> {
    let prefix = format!("{name}{{receiver=\"{receiver}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_and_alerts_stay_true_across_three_sigkills() -> Result<()> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/live-small.toml");
    let scenario = Scenario::from_file(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let timeline = Timeline::record(&scenario);
    let tmp = tempfile::tempdir()?;
    let am_port = free_tcp_port();
    let _am = start_alertmanager(tmp.path(), am_port)?;
    let am = format!("http://127.0.0.1:{am_port}");
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(30), "alertmanager ready", || async {
        http.get(format!("{am}/-/ready"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await?;
    // A receiver that always fails: a port nobody listens on.
    let dead = format!("http://127.0.0.1:{}/hook", free_tcp_port());
    let extra = format!(
        r#"
[alerts]
group_wait_secs = 0
resolution_hold_secs = 0
source = "restart-test"
default_receivers = ["am", "dead"]

[[alerts.receivers]]
name = "am"
type = "alertmanager"
url = "{am}"

[[alerts.receivers]]
name = "dead"
type = "webhook"
url = "{dead}"
"#
    );
    let pki = Pki::init(&tmp.path().join("pki"))?;
    let mut collector =
        Collector::start_custom(&tmp.path().join("collector"), &pki, 1, 2, extra, None).await?;
    let mut fleet = start_fleet(
        &tmp.path().join("agents"),
        &pki.dir,
        collector.quic_addr(),
        &scenario,
        // A SIGKILLed collector closes nothing: agents notice by their idle timeout, short
        // here so they come back within seconds (the agent's default is 60 s).
        LiveUplink {
            keep_alive_secs: 1,
            idle_timeout_secs: 3,
            ..LiveUplink::fast()
        },
    )
    .await?;

    // 20 virtual minutes at 30x: 40 s. Faults: the store offline from 10 s to 20 s, the
    // merchant misconfigured from 16 s to 30 s.
    let (_stop_tx, stop_rx) = watch::channel(false);
    let start_ms = scenario.start_ms;
    let t0 = tokio::time::Instant::now();
    let player = tokio::spawn(async move {
        let stats = play(
            &timeline,
            &mut fleet,
            30.0,
            start_ms,
            Duration::from_millis(100),
            stop_rx,
            |_, _| {},
        )
        .await;
        (fleet, stats)
    });

    let mut seen: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let mut kinds_after_restart: BTreeSet<String> = BTreeSet::new();
    let (mut sent, mut failed) = (0.0, 0.0);
    for (k, at_secs) in [14u64, 22, 30].into_iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_secs(at_secs)).await;
        let before = incidents(&collector).await?;
        // Counters live in the process: add up what each one counted before its kill.
        let text = collector.metrics_text().await?;
        sent += counter(&text, "storepulse_notifications_sent_total", "am").unwrap_or(0.0);
        failed += counter(&text, "storepulse_notifications_failed_total", "dead").unwrap_or(0.0);
        collector.kill9();
        collector.restart().await?;
        let after = incidents(&collector).await?;
        // Every incident shown before the kill is shown again under the same id, with the
        // same kind and scope (its state may only move on from active to resolved).
        for (id, (state, kind, scope)) in &before {
            let (s2, k2, sc2) = after
                .get(id)
                .with_context(|| format!("restart {k}: incident {id} gone: {after:?}"))?;
            ensure!(
                k2 == kind && sc2 == scope,
                "restart {k}: incident {id} changed: {kind} {scope} -> {k2} {sc2}"
            );
            ensure!(
                s2 == state || (state == "active" && s2 == "resolved"),
                "restart {k}: incident {id} {state} -> {s2}"
            );
        }
        let open = settled(&collector, &http, &am, &format!("restart {k}")).await?;
        for id in &open {
            if let Some((_, kind, _)) = after.get(id) {
                kinds_after_restart.insert(kind.clone());
            }
        }
        seen.extend(after);
    }
    let (fleet, stats) = player.await?;
    stats?;
    // After the scenario: incidents resolve as the faults ended; Alertmanager follows.
    let open = settled(&collector, &http, &am, "after the scenario").await?;
    let all = incidents(&collector).await?;
    for id in seen.keys() {
        ensure!(all.contains_key(id), "incident {id} lost: {all:?}");
    }
    // Ids never repeat: each id names one incident from first to last.
    for (id, (_, kind, _)) in &all {
        if let Some((_, k0, _)) = seen.get(id) {
            ensure!(k0 == kind, "incident {id} was {k0}, now {kind}");
        }
    }
    // Detection was not blind after the restarts: the merchant's misconfiguration, which
    // began after the first restart, was found.
    ensure!(
        all.values()
            .any(|(_, kind, scope)| kind == "merchant_config" && scope.contains("M0002")),
        "merchant_config for M0002 not found after restarts: {all:?}\nopen {open:?}\n{}",
        collector.log()
    );
    // Notification counters moved: deliveries to Alertmanager succeed, the dead receiver's
    // fail.
    let text = collector.metrics_text().await?;
    sent += counter(&text, "storepulse_notifications_sent_total", "am").unwrap_or(0.0);
    failed += counter(&text, "storepulse_notifications_failed_total", "dead").unwrap_or(0.0);
    ensure!(sent > 0.0, "no delivery counted:\n{text}");
    ensure!(failed > 0.0, "no failure counted:\n{text}");
    ensure!(
        counter(&text, "storepulse_notifications_failed_total", "am") == Some(0.0),
        "{text}"
    );
    ensure!(
        text.contains("storepulse_build_info{version=")
            && text.contains("storepulse_tls_certificate_expiry_seconds{cert=\"ca\"}"),
        "{text}"
    );
    // A clean stop writes the detector's snapshot; the next start restores from it (not from
    // a replay of hours) and shows the same incidents.
    collector.stop()?;
    collector.restart().await?;
    let again = incidents(&collector).await?;
    ensure!(again == all, "after a clean restart: {again:?} vs {all:?}");
    let log = collector.log();
    let restored = log
        .lines()
        .rfind(|l| l.contains("Incident book and detection restored"))
        .context("no restore line")?;
    ensure!(
        restored.contains("snapshot_age_ms") && !log.contains("Detector snapshot refused"),
        "the clean restart did not use the snapshot: {restored}"
    );
    settled(&collector, &http, &am, "after a clean restart").await?;
    eprintln!(
        "incidents: {all:?}\nkinds open after restarts: {kinds_after_restart:?}\nsent {sent}, failed {failed}"
    );
    fleet.shutdown().await;
    collector.stop()?;
    Ok(())
}
