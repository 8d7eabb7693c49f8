//! Disk full on the collector (issue 7, faults): the real collector's store lives on a small
//! tmpfs that fills up while a real agent streams. The collector must say so clearly (log,
//! `/healthz` 503, `storepulse_store_failing`), stop acking (the agent keeps the records in its
//! spool), keep running, and once space returns (the tmpfs is remounted bigger) resume by
//! itself with every record stored exactly once; the store must also reopen after a restart.
//!
//! And disk full on the agent: the real agent's spool on a tmpfs that fills up while it has
//! unsent records. It must keep running and sending what it has, refuse new outcomes (503),
//! report the telemetry it lost as `SpoolDrops` with reason `disk_error` once space returns,
//! and its spool must still open after a restart. (`agent/tests/disk_full.rs` checks the
//! spool itself.)
//!
//! Runs as root (as CI does): it mounts a tmpfs. If the mount fails the test fails, it does
//! not skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use storepulse_tests::{Agent, AgentSpec, Collector, Pki, assert_exactly_once, wait_for};

const LONG: Duration = Duration::from_secs(60);

/// A tmpfs mounted at `dir` for the test's lifetime; unmounted (lazily) when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .context("run mount")?;
        if !out.status.success() {
            bail!(
                "this test needs to mount a tmpfs (run it as root, as CI does): mount failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, size: &str) -> Result<()> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()?;
        ensure!(
            out.status.success(),
            "remount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes a file taking all the free space left on the file system.
fn fill(path: &Path) -> Result<u64> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    while f.write_all(&[0]).is_ok() {
        written += 1;
    }
    Ok(written)
}

async fn metric(c: &Collector, name: &str) -> Option<u64> {
    let text = reqwest::get(c.url("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn healthz(c: &Collector) -> Option<(u16, String)> {
    let r = reqwest::get(c.url("/healthz")).await.ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

async fn wait_stored(c: &Collector, terminal: &str, expected: &[u64]) -> Result<()> {
    let want = expected.len();
    let got = wait_for(LONG, &format!("{want} outcomes stored"), || async {
        let m = c.txn_markers(terminal).await.ok()?;
        (m.len() >= want).then_some(m)
    })
    .await?;
    assert_exactly_once(&got, expected.iter().copied())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_disk_full_stops_acking_says_so_and_resumes_when_space_returns() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    pki.issue("DF1")?;
    let cdir = tmp.path().join("c");
    // `Collector` keeps its store in `<dir>/store`: put that on the tmpfs.
    let fs = Tmpfs::mount(&cdir.join("store"), "48m")?;
    let mut c = Collector::start(&cdir, &pki).await?;
    let a = Agent::start(
        &tmp.path().join("a"),
        AgentSpec::new("DF1", &pki, c.quic_addr()),
    )
    .await?;
    a.post_markers(0..50).await?;
    wait_stored(&c, "DF1", &(0..50).collect::<Vec<_>>()).await?;

    // The disk fills up.
    let filler = cdir.join("store").join("filler");
    fill(&filler)?;
    a.post_markers(50..100).await?;

    // Clear error, visible to monitoring; the collector stops acking but keeps running.
    wait_for(LONG, "storepulse_store_failing 1", || async {
        (metric(&c, "storepulse_store_failing").await? == 1).then_some(())
    })
    .await
    .with_context(|| c.log())?;
    let (code, body) = healthz(&c).await.context("healthz answers")?;
    ensure!(code == 503, "healthz while the disk is full: {code} {body}");
    ensure!(body.contains("store failing"), "healthz body: {body}");
    let log = c.log();
    ensure!(
        log.contains("Store commit failed") && log.contains("No space left on device"),
        "the log names the failure and its cause:\n{log}"
    );
    ensure!(
        log.contains("free space there"),
        "the log says what to do:\n{log}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(c.running(), "the collector must not exit on a full disk");
    let stored = c.txn_markers("DF1").await?;
    ensure!(
        stored.len() == 50,
        "nothing new committed while the disk is full: {} outcomes stored",
        stored.len()
    );
    let s = a.status().await?;
    ensure!(
        s["spool_records"].as_u64().unwrap_or(0) >= 50,
        "the agent keeps the unacked outcomes in its spool: {s}"
    );

    // Space returns: the collector reopens its store by itself and everything arrives once.
    fs.resize("256m")?;
    wait_stored(&c, "DF1", &(0..100).collect::<Vec<_>>())
        .await
        .with_context(|| c.log())?;
    wait_for(LONG, "healthz ok again", || async {
        (healthz(&c).await?.0 == 200).then_some(())
    })
    .await?;
    ensure!(metric(&c, "storepulse_store_failing").await == Some(0));
    ensure!(
        c.log().contains("Store reopened after a write failure"),
        "recovery is logged"
    );
    a.post_markers(100..120).await?;
    wait_stored(&c, "DF1", &(0..120).collect::<Vec<_>>()).await?;

    // The store is not corrupt: it reopens after a restart with the same contents.
    c.stop()?;
    c.restart().await?;
    let after = c.txn_markers("DF1").await?;
    assert_exactly_once(&after, 0..120).context("after restart")?;
    drop(a);
    c.stop()?;
    drop(fs);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_disk_full_keeps_sending_what_it_has_and_reports_disk_drops() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki = Pki::init(&tmp.path().join("pki"))?;
    pki.issue("DF2")?;
    let mut c = Collector::start(&tmp.path().join("c"), &pki).await?;
    // The harness keeps the spool at `<dir>/spool.redb`; make that a link onto the tmpfs so
    // the agent's log stays writable.
    let fs = Tmpfs::mount(&tmp.path().join("spoolfs"), "8m")?;
    let adir = tmp.path().join("a");
    std::fs::create_dir_all(&adir)?;
    std::os::unix::fs::symlink(fs.dir.join("spool.redb"), adir.join("spool.redb"))?;
    let mut a = Agent::start(&adir, AgentSpec::new("DF2", &pki, c.quic_addr())).await?;
    a.post_markers(0..30).await?;
    wait_stored(&c, "DF2", &(0..30).collect::<Vec<_>>()).await?;

    // Records spooled while the collector is away, then the agent's disk fills up.
    c.stop()?;
    a.post_markers(30..60).await?;
    let filler = fs.dir.join("filler");
    fill(&filler)?;
    // Heartbeats (1 s) now fail; new outcomes are refused, not lost silently.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, body) = a
        .post_txn_raw(
            r#"[{"scheme":"cup","code":"00","latency_ms":999999,"method":"card"}]"#.into(),
        )
        .await?;
    ensure!(code == 503, "an outcome on a full disk: {code} {body}");
    let log = a.log();
    ensure!(
        log.contains("Spool write failed") && log.contains("No space left on device"),
        "the agent log names the failure and its cause:\n{log}"
    );

    // The collector returns: what was spooled arrives although the disk is still full.
    c.restart().await?;
    wait_stored(&c, "DF2", &(0..60).collect::<Vec<_>>())
        .await
        .with_context(|| a.log())?;
    ensure!(a.status().await.is_ok(), "the agent keeps running");

    // Space returns: writes resume and the lost heartbeats are reported.
    std::fs::remove_file(&filler)?;
    wait_for(LONG, "outcomes accepted again", || async {
        a.post_markers(60..70).await.ok()
    })
    .await?;
    wait_stored(&c, "DF2", &(0..70).collect::<Vec<_>>()).await?;
    let drops = wait_for(LONG, "SpoolDrops with reason disk_error stored", || async {
        let recs = c.records("DF2").await.ok()?;
        let lost: u64 = recs
            .iter()
            .filter(|r| r["kind"] == "spool_drops" && r["body"]["reason"] == "disk_error")
            .filter_map(|r| r["body"]["heartbeats"].as_u64())
            .sum();
        (lost > 0).then_some(lost)
    })
    .await?;
    ensure!(
        a.log().contains("Spool is writable again"),
        "recovery is logged"
    );

    // The spool file still opens.
    a.stop()?;
    a.restart().await?;
    a.post_markers(70..75).await?;
    wait_stored(&c, "DF2", &(0..75).collect::<Vec<_>>()).await?;
    eprintln!("agent disk full: {drops} heartbeats reported lost (disk_error), no outcome lost");
    drop(fs);
    Ok(())
}
