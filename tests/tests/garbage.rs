//! Garbage connections do not stop an honest agent: while a few hundred connections of each
//! kind of garbage (UDP junk, no client certificate, a certificate from another CA, garbage
//! frames, slowloris) hit an in-process collector, an honest agent keeps getting every batch
//! acked; each garbage connection is refused the right way and counted in `/metrics`; and a new
//! honest agent can still connect afterwards. The throughput and latency figures under 10,000
//! garbage connections are measured by the `garbage-bench` binary (BENCHMARKS.md).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storepulse_collector::config::{Config, TlsConfig};
use storepulse_collector::pki;
use storepulse_shared::close_code;
use storepulse_tests::garbage::{
    Creds, Garbage, HonestLoad, KINDS, Kind, Outcome, honest_agent, metric, summarize,
};
use storepulse_tests::quic::{client_config, endpoint};
use tokio::sync::watch;

const PER_KIND: usize = 150;
const CONCURRENCY: usize = 64;

fn terminal_files(dir: &Path, t: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        dir.join("terminals").join(format!("{t}.pem")),
        dir.join("terminals").join(format!("{t}.key")),
    )
}

async fn scrape(http: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{http}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused_and_honest_agents_keep_acking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki_dir = tmp.path().join("pki");
    pki::init(&pki_dir, pki::DEFAULT_SERVER_NAME).expect("pki init");
    for t in ["HONEST-1", "HONEST-2", "JUNK-1", "JUNK-2", "JUNK-3"] {
        pki::issue(&pki_dir, t, false).expect("issue");
    }
    let rogue_dir = tmp.path().join("rogue");
    pki::init(&rogue_dir, pki::DEFAULT_SERVER_NAME).expect("rogue pki");
    pki::issue(&rogue_dir, "ROGUE", false).expect("issue rogue");

    let mut config =
        Config::with_defaults(TlsConfig::from_pki_dir(&pki_dir), tmp.path().join("store"));
    config.quic.listen = "127.0.0.1:0".parse().expect("addr");
    config.http.listen = "127.0.0.1:0".parse().expect("addr");
    config.ingest.hello_timeout = Duration::from_secs(2);
    let collector = storepulse_collector::start(config)
        .await
        .expect("collector");
    let addr = collector.quic_addr();
    let http = collector.http_addr();
    let ca = pki_dir.join("ca.pem");

    // The honest agent: one 16-record batch every 50 ms, each ack within 10 s or it fails.
    let samples = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (cert, key) = terminal_files(&pki_dir, "HONEST-1");
    let load = HonestLoad {
        addr,
        batch_len: 16,
        interval: Duration::from_millis(50),
        ack_timeout: Duration::from_secs(10),
    };
    let honest = tokio::spawn(honest_agent(
        client_config(&ca, &cert, &key).expect("client config"),
        endpoint().expect("endpoint"),
        "HONEST-1".into(),
        load.clone(),
        samples.clone(),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = scrape(http).await;

    let creds = Creds {
        ca: ca.clone(),
        valid: ["JUNK-1", "JUNK-2", "JUNK-3"]
            .iter()
            .map(|t| terminal_files(&pki_dir, t))
            .collect(),
        rogue: terminal_files(&rogue_dir, "ROGUE"),
    };
    let garbage = Arc::new(Garbage::new(&creds, addr, 4, Duration::from_secs(8)).expect("garbage"));
    let garbage_start = Instant::now();
    // Refusal texts cut to 40 characters: the reason class is what matters.
    let outcomes = garbage
        .run(PER_KIND * KINDS.len(), CONCURRENCY, 40)
        .await
        .expect("garbage tasks");
    let garbage_end = Instant::now();
    let after = scrape(http).await;
    stop_tx.send(true).expect("stop");
    let batches = honest
        .await
        .expect("honest task")
        .expect("the honest agent got every ack in time");
    eprintln!("garbage outcomes: {outcomes:#?}");

    // The honest agent kept going during the garbage.
    let s = samples.lock().expect("samples").clone();
    let during = summarize(&s, garbage_start, garbage_end);
    eprintln!(
        "honest agent: {batches} batches; during {:.1} s of garbage: {} acks, p50 {:?}, p99 {:?}, max {:?}",
        (garbage_end - garbage_start).as_secs_f64(),
        during.acks,
        during.p50,
        during.p99,
        during.max
    );
    let expected = ((garbage_end - garbage_start).as_secs_f64() / 0.2) as usize;
    assert!(
        during.acks >= expected.max(5),
        "only {} acks during {:?} of garbage (expected at least {expected})",
        during.acks,
        garbage_end - garbage_start
    );
    assert!(
        during.p99 < Duration::from_secs(2),
        "honest ack p99 {:?} under garbage",
        during.p99
    );

    // Each kind was refused the right way.
    for ((kind, out), n) in &outcomes {
        let ok = match (kind, out) {
            (Kind::UdpJunk, Outcome::Sent) => true,
            // The TLS alert, or (TLS 1.3: the client finished first) the close that follows.
            (Kind::NoClientCert | Kind::WrongCa, Outcome::Refused(_)) => true,
            // Garbage bytes: undecodable or oversized, or a plausible header announcing more
            // bytes than ever come, which then runs into the Hello timeout.
            (Kind::GarbageFrames, Outcome::AppClosed(c)) => [
                close_code::PROTOCOL_ERROR,
                close_code::FRAME_TOO_LARGE,
                close_code::HELLO_TIMEOUT,
            ]
            .contains(&(*c as u32)),
            (Kind::Slowloris, Outcome::AppClosed(c)) => *c == u64::from(close_code::HELLO_TIMEOUT),
            _ => false,
        };
        assert!(ok, "{n} {kind:?} connections ended as {out:?}");
    }

    // And counted.
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    let tls_refused = delta("storepulse_ingest_handshakes_total{result=\"failed\"}")
        + delta("storepulse_ingest_admission_total{action=\"refused\"}");
    assert!(
        tls_refused >= (2 * PER_KIND) as f64,
        "{tls_refused} failed handshakes counted for {} without a valid certificate",
        2 * PER_KIND
    );
    let app_refused = delta("storepulse_ingest_refusals_total{reason=\"protocol_error\"}")
        + delta("storepulse_ingest_refusals_total{reason=\"frame_too_large\"}")
        + delta("storepulse_ingest_refusals_total{reason=\"hello_timeout\"}");
    assert!(
        app_refused >= (2 * PER_KIND) as f64,
        "{app_refused} refusals counted for {} garbage and slowloris connections",
        2 * PER_KIND
    );
    assert!(
        delta("storepulse_ingest_refusals_total{reason=\"hello_timeout\"}") >= PER_KIND as f64,
        "every slowloris connection ends in a Hello timeout"
    );

    // A new honest agent is welcomed and acked after the storm.
    let (cert, key) = terminal_files(&pki_dir, "HONEST-2");
    let (stop_tx, stop_rx) = watch::channel(false);
    let second_samples = Arc::new(Mutex::new(Vec::new()));
    let second = tokio::spawn(honest_agent(
        client_config(&ca, &cert, &key).expect("client config"),
        endpoint().expect("endpoint"),
        "HONEST-2".into(),
        load,
        second_samples.clone(),
        stop_rx,
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while second_samples.lock().expect("samples").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).expect("stop");
    let n = second.await.expect("task").expect("a new agent is served");
    assert!(n >= 1, "the new agent got no ack");

    collector.shutdown().await.expect("shutdown");
}
