//! The demo as a user runs it: the `storepulse-demo` binary starts a collector and a fleet of
//! real agents, plays a small scenario (`tests/demo/demo-test.toml`: one store offline), and
//! through its HTTP API the store's incident is seen open and then resolved, after the
//! timeline has ended (the demo keeps serving). SIGINT stops it within 5 s. It also refuses to
//! wipe a non-empty `--data` it did not create.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use storepulse_tests::wait_for;

const BIN: &str = env!("CARGO_BIN_EXE_storepulse-demo");

/// Whether `i` is the scripted store's incident (either spelling of the scope key).
fn is_the_store(i: &Value) -> bool {
    i["kind"] == "store_offline"
        && (i["scope"]["store_id"] == "M0001-S001" || i["scope"]["store"] == "M0001-S001")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_an_incident_open_then_resolved_and_stops_on_sigint() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("demo-data");
    let mut child = Command::new(BIN)
        .arg("--scenario")
        .arg(root.join("demo/demo-test.toml"))
        .arg("--data")
        .arg(&data)
        .args([
            "--speed",
            "15",
            "--http",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting storepulse-demo")?;
    let out = Arc::new(Mutex::new(String::new()));
    let reader = {
        let out = Arc::clone(&out);
        let stdout = child.stdout.take().context("stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut o = out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                o.push_str(&line);
                o.push('\n');
            }
        })
    };
    let text = || {
        out.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    let result = async {
        let base = wait_for(Duration::from_secs(60), "the dashboard URL", || async {
            text().lines().find_map(|l| {
                l.contains("dashboard")
                    .then(|| l.split_whitespace().find(|w| w.starts_with("http://")))
                    .flatten()
                    .map(|u| u.trim_end_matches('/').to_owned())
            })
        })
        .await?;
        let http = reqwest::Client::new();
        let url = format!("{base}/api/v1/incidents?state=all");
        let incident = |want: &'static str| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                v["incidents"]
                    .as_array()?
                    .iter()
                    .find(|i| is_the_store(i) && i["state"] == want)
                    .cloned()
            }
        };
        let open = wait_for(Duration::from_secs(90), "the store's incident open", || {
            incident("active")
        })
        .await?;
        let resolved = wait_for(
            Duration::from_secs(150),
            "the store's incident resolved",
            || incident("resolved"),
        )
        .await?;
        ensure!(open["id"] == resolved["id"], "{open} / {resolved}");
        // The demo prints what detection did (it polls the API every 3 s).
        wait_for(Duration::from_secs(15), "the printed resolution", || async {
            text().contains("resolved / 已恢复").then_some(())
        })
        .await?;
        let printed = text();
        ensure!(
            printed.contains("timeline over"),
            "the incident should resolve after the timeline, with the demo still serving:\n{printed}"
        );
        for what in ["scripted fault starts", "scripted fault ends", "detected / 发现事件"] {
            ensure!(printed.contains(what), "no {what:?} line:\n{printed}");
        }
        // The dashboard is still served after the timeline.
        let page = http.get(format!("{base}/")).send().await?;
        ensure!(page.status().is_success(), "dashboard: {}", page.status());
        Ok(())
    }
    .await;
    let sigint = Instant::now();
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    ensure!(killed.success(), "kill -INT failed");
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if sigint.elapsed() > Duration::from_secs(20) {
            child.kill()?;
            bail!("the demo did not stop within 20 s of SIGINT:\n{}", text());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = sigint.elapsed();
    let _ = reader.join();
    result.with_context(|| format!("demo output:\n{}", text()))?;
    ensure!(status.success(), "demo exited with {status}:\n{}", text());
    ensure!(
        took <= Duration::from_secs(5),
        "stopping took {took:?} (at most 5 s):\n{}",
        text()
    );
    ensure!(text().contains("stopped cleanly"), "{}", text());
    Ok(())
}

#[test]
fn the_demo_refuses_to_wipe_a_directory_it_did_not_create() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("notes.txt"), "keep me")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(BIN)
        .arg("--scenario")
        .arg(root.join("demo/demo-test.toml"))
        .arg("--data")
        .arg(tmp.path())
        .output()?;
    ensure!(!out.status.success(), "the demo ran on a foreign directory");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(err.contains("refusing to wipe"), "{err}");
    ensure!(tmp.path().join("notes.txt").is_file(), "the file is gone");
    Ok(())
}
