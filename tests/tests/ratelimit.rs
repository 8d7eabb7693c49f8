//! The per-agent rate limit: an agent that floods the collector is slowed to its limit (and,
//! when it keeps on, sent away with a retry hint), while an honest agent sending in parallel is
//! not slowed at all.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use storepulse_collector::config::{Config, TlsConfig};
use storepulse_shared::{Batch, GoodbyeReason, Message, Record, Seq, close_code};
use storepulse_tests::load::{ClientTransport, FleetIssuer, LightConn, hello, payment};

const LIMIT: u64 = 1000;

async fn collector(
    dir: &std::path::Path,
    disconnect_after_secs: u64,
) -> Result<(storepulse_collector::Collector, FleetIssuer)> {
    let pki = dir.join("pki");
    storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)?;
    let mut config = Config::with_defaults(TlsConfig::from_pki_dir(&pki), dir.join("store"));
    config.quic.listen = "127.0.0.1:0".parse()?;
    config.http.listen = "127.0.0.1:0".parse()?;
    config.ingest.rate_limit.records_per_sec = LIMIT;
    config.ingest.rate_limit.burst_secs = 1;
    config.ingest.rate_limit.disconnect_after = Duration::from_secs(disconnect_after_secs);
    let c = storepulse_collector::start(config).await?;
    Ok((c, FleetIssuer::load(&pki)?))
}

async fn connect(
    issuer: &FleetIssuer,
    c: &storepulse_collector::Collector,
    terminal: &str,
) -> Result<LightConn> {
    let ep = storepulse_tests::quic::endpoint()?;
    let cfg = issuer.client_config(terminal, ClientTransport::default())?;
    let mut conn = LightConn::connect(&ep, cfg, c.quic_addr(), Duration::from_secs(10)).await?;
    conn.send(&Message::Hello(hello(terminal, "S1", 7)?))
        .await?;
    match conn.recv().await? {
        Message::Welcome(_) => Ok(conn),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

fn batch(id: u64, first: u64, n: u64) -> Message {
    Message::Batch(Batch {
        batch_id: id,
        records: (first..first + n)
            .map(|s| Record {
                seq: Seq(s),
                time_unix_ms: 1_700_000_000_000 + s as i64,
                body: payment(s),
            })
            .collect(),
    })
}

/// How a flood ended.
#[derive(Debug)]
struct Flood {
    acked: u64,
    goodbye: Option<(GoodbyeReason, u32, u64)>,
}

/// Sends batches of 256 with 8 in flight as fast as the collector takes them, for `secs`.
async fn flood(mut c: LightConn, secs: u64) -> Result<Flood> {
    let stop = Instant::now() + Duration::from_secs(secs);
    let (mut next, mut outstanding, mut acked) = (1u64, 0u64, 0u64);
    loop {
        while outstanding < 8 && Instant::now() < stop {
            c.send(&batch(next, next * 256, 256)).await?;
            next += 1;
            outstanding += 1;
        }
        if outstanding == 0 {
            return Ok(Flood {
                acked,
                goodbye: None,
            });
        }
        match c.recv().await? {
            Message::Ack(_) => {
                outstanding -= 1;
                acked += 256;
            }
            Message::Goodbye(g) => {
                let code = match c.conn.closed().await {
                    quinn::ConnectionError::ApplicationClosed(a) => a.error_code.into_inner(),
                    other => bail!("closed without an application code: {other}"),
                };
                return Ok(Flood {
                    acked,
                    goodbye: Some((g.reason, g.retry_after_secs, code)),
                });
            }
            other => bail!("unexpected {other:?}"),
        }
    }
}

/// 100 records every 200 ms (500/s, an agent draining its backlog at the default rate);
/// returns the slowest ack.
async fn honest(mut c: LightConn, secs: u64) -> Result<Duration> {
    let mut slowest = Duration::ZERO;
    for i in 0..secs * 5 {
        let t = Instant::now();
        c.send(&batch(i + 1, i * 100, 100)).await?;
        match c.recv().await? {
            Message::Ack(a) if a.batch_id == i + 1 => {}
            other => bail!("honest agent: unexpected {other:?}"),
        }
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(200).saturating_sub(t.elapsed())).await;
    }
    Ok(slowest)
}

async fn metric(c: &storepulse_collector::Collector, prefix: &str) -> Result<f64> {
    let text = reqwest::get(format!("http://{}/metrics", c.http_addr()))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_agent_is_held_to_its_limit_and_an_honest_one_is_not_slowed() -> Result<()> {
    const SECS: u64 = 6;
    let tmp = tempfile::tempdir()?;
    let (c, issuer) = collector(tmp.path(), 0).await?;
    let flooder = connect(&issuer, &c, "FLOOD1").await?;
    let good = connect(&issuer, &c, "HONEST1").await?;
    let t0 = Instant::now();
    let (f, slowest) = tokio::join!(flood(flooder, SECS), honest(good, SECS));
    let (f, slowest) = (f?, slowest?);
    let elapsed = t0.elapsed().as_secs_f64();
    let rate = f.acked as f64 / elapsed;
    println!(
        "flooder: {} acked in {elapsed:.1} s ({rate:.0}/s); honest agent's slowest ack {slowest:?}",
        f.acked
    );
    // Limit x time, plus the 1 s burst, plus what was in flight when a pause began.
    let ceiling = LIMIT as f64 * elapsed + LIMIT as f64 + 8.0 * 256.0;
    assert!(
        (f.acked as f64) <= ceiling,
        "flooder got {} through, limit allows {ceiling:.0}",
        f.acked
    );
    assert!(
        f.acked >= LIMIT * (SECS - 2),
        "the flooder is slowed, not stopped"
    );
    assert!(
        f.goodbye.is_none(),
        "never sent away when disconnecting is off"
    );
    assert!(
        slowest < Duration::from_millis(1500),
        "the honest agent is not held back: slowest ack {slowest:?}"
    );
    assert!(metric(&c, "storepulse_ingest_rate_limit_delays_total ").await? > 0.0);
    c.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_that_keeps_on_is_sent_away_with_a_retry_hint() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (c, issuer) = collector(tmp.path(), 2).await?;
    let flooder = connect(&issuer, &c, "FLOOD2").await?;
    let good = connect(&issuer, &c, "HONEST2").await?;
    let (f, slowest) = tokio::join!(flood(flooder, 20), honest(good, 4));
    let (f, slowest) = (f?, slowest?);
    let (reason, secs, code) = f.goodbye.expect("the flooder is sent away");
    assert_eq!(reason, GoodbyeReason::RateLimited);
    assert!(secs >= 1, "with a retry hint");
    assert_eq!(code, u64::from(close_code::RATE_LIMITED));
    assert!(slowest < Duration::from_millis(1500), "{slowest:?}");
    assert_eq!(
        metric(
            &c,
            "storepulse_ingest_refusals_total{reason=\"rate_limited\"} "
        )
        .await?,
        1.0
    );
    c.shutdown().await?;
    Ok(())
}
