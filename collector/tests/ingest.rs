//! In-process end-to-end tests of the collector: real PKI, real QUIC on loopback, fjall store,
//! HTTP API over a socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use storepulse_collector::config::{Config, TlsConfig};
use storepulse_collector::{Collector, pki};
use storepulse_shared::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Fixture {
    _tmp: tempfile::TempDir,
    pki: PathBuf,
    store: PathBuf,
    collector: Collector,
}

async fn start(terminals: &[&str], crl_poll_secs: u64) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki_dir = tmp.path().join("pki");
    pki::init(&pki_dir, pki::DEFAULT_SERVER_NAME).expect("pki init");
    for t in terminals {
        pki::issue(&pki_dir, t, false).expect("issue");
    }
    let store = tmp.path().join("store");
    let mut tls = TlsConfig::from_pki_dir(&pki_dir);
    tls.crl_poll_interval = Duration::from_secs(crl_poll_secs);
    let mut config = Config::with_defaults(tls, store.clone());
    config.quic.listen = "127.0.0.1:0".parse().expect("addr");
    config.http.listen = "127.0.0.1:0".parse().expect("addr");
    config.ingest.max_frame_bytes = 64 * 1024;
    let collector = storepulse_collector::start(config)
        .await
        .expect("collector starts");
    Fixture {
        _tmp: tmp,
        pki: pki_dir,
        store,
        collector,
    }
}

fn client_config(pki_dir: &Path, terminal: &str) -> quinn::ClientConfig {
    client_config_from(pki_dir, pki_dir, terminal)
}

/// Trusts the CA of `ca_dir`, presents `terminal`'s certificate from `cert_dir`.
fn client_config_from(ca_dir: &Path, pki_dir: &Path, terminal: &str) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca_dir.join("ca.pem")).expect("ca"))
        .expect("add ca");
    let certs: Vec<_> =
        CertificateDer::pem_file_iter(pki_dir.join("terminals").join(format!("{terminal}.pem")))
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("certs");
    let key =
        PrivateKeyDer::from_pem_file(pki_dir.join("terminals").join(format!("{terminal}.key")))
            .expect("key");
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("client cert");
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(cfg).expect("quic client"),
    ))
}

/// Trusts the CA of `ca_dir` and presents no certificate.
fn no_client_cert(ca_dir: &Path) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca_dir.join("ca.pem")).expect("ca"))
        .expect("add ca");
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(cfg).expect("quic client"),
    ))
}

struct Agent {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

/// Whether the collector accepts the terminal's certificate. With TLS 1.3 the client finishes
/// its handshake before the server has checked the client certificate, so a refusal shows up
/// as the connection being closed right after.
async fn accepted(pki_dir: &Path, terminal: &str, addr: SocketAddr) -> bool {
    match connect(pki_dir, terminal, addr).await {
        Err(_) => false,
        Ok(conn) => tokio::time::timeout(Duration::from_secs(1), conn.closed())
            .await
            .is_err(),
    }
}

/// The QUIC transport error code a handshake with `terminal`'s certificate from `cert_dir`
/// (trusting the CA of `ca_dir`) ends with; `None` if it is accepted.
async fn refused_with(
    ca_dir: &Path,
    cert_dir: &Path,
    terminal: &str,
    addr: SocketAddr,
) -> Option<u64> {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
    endpoint.set_default_client_config(if terminal.is_empty() {
        no_client_cert(ca_dir)
    } else {
        client_config_from(ca_dir, cert_dir, terminal)
    });
    let closed = match endpoint.connect(addr, "localhost").expect("connect").await {
        Err(e) => e,
        // TLS 1.3: the server checks the client's certificate after the client finished.
        Ok(conn) => tokio::time::timeout(Duration::from_secs(2), conn.closed())
            .await
            .ok()?,
    };
    match closed {
        quinn::ConnectionError::ConnectionClosed(c) => Some(u64::from(c.error_code)),
        other => panic!("expected a transport close, got {other}"),
    }
}

async fn connect(
    pki_dir: &Path,
    terminal: &str,
    addr: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
    endpoint.set_default_client_config(client_config(pki_dir, terminal));
    let conn = endpoint.connect(addr, "localhost").expect("connect").await;
    // Keep the endpoint alive as long as the connection: leak-free since tests are short.
    std::mem::forget(endpoint);
    conn
}

impl Agent {
    async fn open(pki_dir: &Path, terminal: &str, addr: SocketAddr) -> Self {
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
        endpoint.set_default_client_config(client_config(pki_dir, terminal));
        let conn = endpoint
            .connect(addr, "localhost")
            .expect("connect")
            .await
            .expect("handshake");
        let (send, recv) = conn.open_bi().await.expect("stream");
        Self {
            _endpoint: endpoint,
            conn,
            send,
            recv,
            decoder: FrameDecoder::new(MAX_FRAME_BYTES_DEFAULT),
        }
    }

    async fn send(&mut self, msg: Message) {
        self.send
            .write_all(&encode_frame(&msg))
            .await
            .expect("write");
    }

    async fn recv(&mut self) -> Option<Message> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = self
                .decoder
                .next_message()
                .expect("valid frame from collector")
            {
                return Some(m);
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.recv.read(&mut buf))
                .await
                .expect("collector answers in time");
            match n {
                Ok(Some(n)) => self.decoder.push(&buf[..n]),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn close_code(&self) -> Option<u64> {
        match tokio::time::timeout(Duration::from_secs(10), self.conn.closed())
            .await
            .expect("closed in time")
        {
            quinn::ConnectionError::ApplicationClosed(c) => Some(c.error_code.into_inner()),
            _ => None,
        }
    }
}

fn label(s: &str) -> Label {
    Label::new(s).expect("label")
}

fn hello(terminal: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "0.1.0-test".into(),
        spool_epoch: 99,
        identity: Identity {
            terminal_id: TerminalId::new(terminal).expect("id"),
            merchant_id: label("M1"),
            store_id: label("S1"),
            region: label("east"),
            city: label("上海"),
            acquirer: label("acq-a"),
            qr_channel: label("wechatpay"),
            carrier: label("cmcc"),
            link: LinkType::Cellular,
            model: label("P300"),
            firmware: label("1.0"),
            app_version: label("5.0"),
        },
        agent_time_unix_ms: 1_700_000_000_000,
    }
}

fn records() -> Vec<Record> {
    vec![
        Record {
            seq: Seq(1),
            time_unix_ms: 1_700_000_000_000,
            body: RecordBody::Heartbeat(Heartbeat {
                cpu_percent: 12.5,
                mem_used_bytes: 1,
                mem_total_bytes: 2,
                disk_free_bytes: 3,
                uptime_secs: 4,
                temperature_c: None,
                battery_percent: Some(80.0),
                spool_records: 2,
            }),
        },
        Record {
            seq: Seq(2),
            time_unix_ms: 1_700_000_000_500,
            body: RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Cup,
                code: "03".into(),
                latency_ms: 420,
                method: PayMethod::Card,
                route: Some(label("acq-a")),
            }),
        },
    ]
}

/// Minimal HTTP/1.1 GET; returns status and JSON body.
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("http connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    let status: u16 = resp[9..12].parse().expect("status");
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let body = if body == "ok" {
        Value::String("ok".into())
    } else {
        serde_json::from_str(body).expect("json body")
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_acked_stored_and_deduplicated() {
    let f = start(&["T0001"], 5).await;
    let addr = f.collector.quic_addr();
    let http = f.collector.http_addr();
    assert_eq!(
        get(http, "/healthz").await,
        (200, Value::String("ok".into()))
    );

    let mut agent = Agent::open(&f.pki, "T0001", addr).await;
    agent.send(Message::Hello(hello("T0001"))).await;
    let Some(Message::Welcome(w)) = agent.recv().await else {
        panic!("expected Welcome")
    };
    assert_eq!(w.heartbeat_interval_secs, 30);
    assert_eq!(w.max_batch_records, 256);

    agent
        .send(Message::Batch(Batch {
            batch_id: 1,
            records: records(),
        }))
        .await;
    assert_eq!(
        agent.recv().await,
        Some(Message::Ack(Ack {
            batch_id: 1,
            highest_seq: Seq(2)
        }))
    );

    let (status, body) = get(http, "/api/v1/terminals").await;
    assert_eq!(status, 200);
    let t = &body["terminals"][0];
    assert_eq!(t["terminal_id"], "T0001");
    assert_eq!(t["state"], "online");
    assert_eq!(t["records_received"], 2);
    assert_eq!(t["agent_version"], "0.1.0-test");
    assert_eq!(t["labels"]["city"], "上海");
    assert_eq!(t["labels"]["link"], "cellular");

    let (status, body) = get(http, "/api/v1/terminals/T0001/records").await;
    assert_eq!(status, 200);
    let recs = body["records"].as_array().expect("array");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["kind"], "heartbeat");
    assert_eq!(recs[0]["epoch"], 99);
    assert_eq!(recs[1]["kind"], "txn_outcome");
    assert_eq!(recs[1]["body"]["scheme"], "cup");
    assert_eq!(recs[1]["body"]["code"], "03");

    // Replay (as after a lost Ack): acked again, stored and counted once.
    agent
        .send(Message::Batch(Batch {
            batch_id: 2,
            records: records(),
        }))
        .await;
    assert_eq!(
        agent.recv().await,
        Some(Message::Ack(Ack {
            batch_id: 2,
            highest_seq: Seq(2)
        }))
    );
    let (_, body) = get(http, "/api/v1/terminals").await;
    assert_eq!(body["terminals"][0]["records_received"], 2);
    let (_, body) = get(http, "/api/v1/terminals/T0001/records?limit=1").await;
    let next = body["next"].as_str().expect("a second page");
    let (_, body) = get(
        http,
        &format!("/api/v1/terminals/T0001/records?after={next}&limit=10"),
    )
    .await;
    assert_eq!(body["records"].as_array().expect("array").len(), 1);
    assert_eq!(body["records"][0]["seq"], 2);
    assert_eq!(body["next"], serde_json::Value::Null);

    let (status, body) = get(http, "/api/v1/terminals/T9999/records").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, _) = get(http, "/api/v1/terminals/T0001/records?limit=abc").await;
    assert_eq!(status, 400);

    // Shutdown: the agent is told, the connection closed with SHUTTING_DOWN.
    let store = f.store.clone();
    let stopping = tokio::spawn(f.collector.shutdown());
    assert!(matches!(
        agent.recv().await,
        Some(Message::Goodbye(Goodbye {
            reason: GoodbyeReason::Shutdown,
            ..
        }))
    ));
    assert_eq!(
        agent.close_code().await,
        Some(u64::from(close_code::SHUTTING_DOWN))
    );
    stopping.await.expect("join").expect("clean shutdown");

    let mut out = Vec::new();
    assert_eq!(
        storepulse_collector::dump(&store, &mut out).expect("dump"),
        2
    );
    let first: Value =
        serde_json::from_slice(out.split(|b| *b == b'\n').next().expect("line")).expect("json");
    assert_eq!(first["terminal_id"], "T0001");
    assert_eq!(first["seq"], 1);
    drop(f._tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_naming_another_terminal_is_refused() {
    let f = start(&["T0001", "T0002"], 5).await;
    let mut agent = Agent::open(&f.pki, "T0002", f.collector.quic_addr()).await;
    agent.send(Message::Hello(hello("T0001"))).await;
    assert!(matches!(
        agent.recv().await,
        Some(Message::Goodbye(Goodbye {
            reason: GoodbyeReason::IdentityMismatch,
            ..
        }))
    ));
    assert_eq!(
        agent.close_code().await,
        Some(u64::from(close_code::IDENTITY_MISMATCH))
    );
    let (_, body) = get(f.collector.http_addr(), "/api/v1/terminals").await;
    assert_eq!(
        body["terminals"].as_array().expect("array").len(),
        0,
        "nothing stored"
    );
    f.collector.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_and_bad_batch_close_only_that_connection() {
    let f = start(&["T0001", "T0002"], 5).await;
    let addr = f.collector.quic_addr();
    let mut good = Agent::open(&f.pki, "T0001", addr).await;
    good.send(Message::Hello(hello("T0001"))).await;
    assert!(matches!(good.recv().await, Some(Message::Welcome(_))));

    let mut big = Agent::open(&f.pki, "T0001", addr).await;
    big.send
        .write_all(&[0x02, 0xff, 0xff, 0xff, 0xff])
        .await
        .expect("write");
    assert_eq!(
        big.close_code().await,
        Some(u64::from(close_code::FRAME_TOO_LARGE))
    );

    // Another terminal: a welcomed connection of T0001 itself would supersede `good`.
    let mut bad = Agent::open(&f.pki, "T0002", addr).await;
    bad.send(Message::Hello(hello("T0002"))).await;
    assert!(matches!(bad.recv().await, Some(Message::Welcome(_))));
    let mut recs = records();
    recs.reverse();
    bad.send(Message::Batch(Batch {
        batch_id: 1,
        records: recs,
    }))
    .await;
    assert!(matches!(
        bad.recv().await,
        Some(Message::Goodbye(Goodbye {
            reason: GoodbyeReason::ProtocolError,
            ..
        }))
    ));
    assert_eq!(
        bad.close_code().await,
        Some(u64::from(close_code::PROTOCOL_ERROR))
    );

    // The first connection is unaffected.
    good.send(Message::Batch(Batch {
        batch_id: 1,
        records: records(),
    }))
    .await;
    assert_eq!(
        good.recv().await,
        Some(Message::Ack(Ack {
            batch_id: 1,
            highest_seq: Seq(2)
        }))
    );
    f.collector.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificate_is_refused_after_crl_reload() {
    let f = start(&["T0001", "T0002"], 1).await;
    let addr = f.collector.quic_addr();
    assert!(
        accepted(&f.pki, "T0002", addr).await,
        "valid before revocation"
    );
    pki::revoke(&f.pki, "T0002").expect("revoke");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !accepted(&f.pki, "T0002", addr).await,
        "refused after revocation"
    );
    // What a refused handshake looks like (PROTOCOL.md section 6): QUIC CRYPTO_ERROR carrying
    // the TLS alert, 0x100 + alert.
    assert_eq!(
        refused_with(&f.pki, &f.pki, "T0002", addr).await,
        Some(0x12c),
        "certificate_revoked (44)"
    );
    let other = f._tmp.path().join("other-pki");
    pki::init(&other, pki::DEFAULT_SERVER_NAME).expect("pki init");
    pki::issue(&other, "T0001", false).expect("issue");
    // Another storepulse PKI names its CA like ours: the issuer is found by name and the
    // signature does not verify, which rustls reports as decrypt_error (51); a CA of another
    // name would be unknown_ca (48).
    assert_eq!(
        refused_with(&f.pki, &other, "T0001", addr).await,
        Some(0x133),
        "decrypt_error (51)"
    );
    assert_eq!(
        refused_with(&f.pki, &f.pki, "", addr).await,
        Some(0x174),
        "certificate_required (116)"
    );
    assert!(
        accepted(&f.pki, "T0001", addr).await,
        "others still accepted"
    );
    f.collector.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_connection_supersedes_the_older_one() {
    let f = start(&["T0001"], 5).await;
    let addr = f.collector.quic_addr();
    let mut old = Agent::open(&f.pki, "T0001", addr).await;
    old.send(Message::Hello(hello("T0001"))).await;
    assert!(matches!(old.recv().await, Some(Message::Welcome(_))));

    let mut new = Agent::open(&f.pki, "T0001", addr).await;
    new.send(Message::Hello(hello("T0001"))).await;
    assert!(matches!(new.recv().await, Some(Message::Welcome(_))));
    assert_eq!(
        old.close_code().await,
        Some(u64::from(close_code::SUPERSEDED))
    );

    // The newer connection works.
    new.send(Message::Batch(Batch {
        batch_id: 1,
        records: records(),
    }))
    .await;
    assert_eq!(
        new.recv().await,
        Some(Message::Ack(Ack {
            batch_id: 1,
            highest_seq: Seq(2)
        }))
    );
    f.collector.shutdown().await.expect("shutdown");
}

/// PROTOCOL.md's batch_id rule: 1 for the first batch of a connection, +1 per batch. A batch
/// that breaks it closes the connection with PROTOCOL_ERROR and a Goodbye naming the id
/// expected; a new connection starts again at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_ids_count_from_one_per_connection() {
    let f = start(&["T0001"], 5).await;
    let addr = f.collector.quic_addr();
    let mut a = Agent::open(&f.pki, "T0001", addr).await;
    a.send(Message::Hello(hello("T0001"))).await;
    assert!(matches!(a.recv().await, Some(Message::Welcome(_))));
    a.send(Message::Batch(Batch {
        batch_id: 1,
        records: records(),
    }))
    .await;
    assert!(matches!(
        a.recv().await,
        Some(Message::Ack(Ack { batch_id: 1, .. }))
    ));
    // An empty batch is allowed and takes the next id.
    a.send(Message::Batch(Batch {
        batch_id: 2,
        records: vec![],
    }))
    .await;
    assert_eq!(
        a.recv().await,
        Some(Message::Ack(Ack {
            batch_id: 2,
            highest_seq: Seq(0)
        }))
    );
    // A skipped id.
    a.send(Message::Batch(Batch {
        batch_id: 4,
        records: records(),
    }))
    .await;
    match a.recv().await {
        Some(Message::Goodbye(g)) => {
            assert_eq!(g.reason, GoodbyeReason::ProtocolError);
            assert!(g.detail.contains("expected 3"), "{}", g.detail);
        }
        other => panic!("expected a Goodbye, got {other:?}"),
    }
    assert_eq!(
        a.close_code().await,
        Some(u64::from(close_code::PROTOCOL_ERROR))
    );
    // A new connection starts again at 1.
    let mut b = Agent::open(&f.pki, "T0001", addr).await;
    b.send(Message::Hello(hello("T0001"))).await;
    assert!(matches!(b.recv().await, Some(Message::Welcome(_))));
    b.send(Message::Batch(Batch {
        batch_id: 1,
        records: records(),
    }))
    .await;
    assert!(matches!(
        b.recv().await,
        Some(Message::Ack(Ack { batch_id: 1, .. }))
    ));
    f.collector.shutdown().await.expect("shutdown");
}
