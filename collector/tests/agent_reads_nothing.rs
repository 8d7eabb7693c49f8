//! An agent's certificate reads nothing from the collector but what concerns the agent itself.
//!
//! Over QUIC the collector only ever answers an agent's own conversation: `Welcome` to its
//! `Hello`, an `Ack` per batch it sent (naming that batch and its highest seq), an
//! `IncidentList` per `IncidentQuery` (message set 2; no incident covers these test terminals,
//! so it is empty) and a `Goodbye` before closing. Any other frame from the agent (a
//! collector-to-agent type, an unknown type, a second `Hello`, a message of a newer set than
//! its `Hello` named) closes the connection with PROTOCOL_ERROR; the collector grants one
//! bidirectional stream and no unidirectional stream, and never opens a stream itself. The HTTP
//! API is plain HTTP with bearer tokens: the agent's certificate is no credential there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use storepulse_collector::config::Config;
use storepulse_collector::{Collector, pki};
use storepulse_shared::*;

const TOKEN: &str = "read-token-0123456789";

async fn start(tmp: &Path, terminals: &[&str]) -> (PathBuf, Collector) {
    let pki_dir = tmp.join("pki");
    pki::init(&pki_dir, pki::DEFAULT_SERVER_NAME).expect("pki init");
    for t in terminals {
        pki::issue(&pki_dir, t, false).expect("issue");
    }
    let text = format!(
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
tokens = [{{ name = "wall", role = "read", token = "{TOKEN}" }}]
"#
    );
    let config = Config::from_toml(&text, tmp).expect("config");
    let c = storepulse_collector::start(config)
        .await
        .expect("collector starts");
    (pki_dir, c)
}

fn client_config(pki_dir: &Path, terminal: &str) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki_dir.join("ca.pem")).expect("ca"))
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

/// A connection with its one stream, recording every frame the collector sent.
struct Conn {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    received: Vec<Message>,
}

impl Conn {
    async fn open(pki_dir: &Path, terminal: &str, c: &Collector) -> Self {
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        endpoint.set_default_client_config(client_config(pki_dir, terminal));
        let conn = endpoint
            .connect(c.quic_addr(), "localhost")
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
            received: Vec::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.expect("write");
    }

    async fn send(&mut self, msg: &Message) {
        self.write(&encode_frame(msg)).await;
    }

    /// The next frame from the collector; `None` once the stream or connection ended.
    async fn recv(&mut self) -> Option<Message> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = self
                .decoder
                .next_message()
                .expect("the collector sends valid frames")
            {
                self.received.push(m.clone());
                return Some(m);
            }
            let read = tokio::time::timeout(Duration::from_secs(10), self.recv.read(&mut buf))
                .await
                .expect("the collector answers or closes in time");
            match read {
                Ok(Some(n)) => self.decoder.push(&buf[..n]),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn hello(&mut self, terminal: &str) {
        self.hello_v(terminal, PROTOCOL_VERSION).await;
    }

    /// Hello with message set `version`; the Welcome echoes it.
    async fn hello_v(&mut self, terminal: &str, version: u16) {
        let mut h = hello(terminal);
        h.protocol_version = version;
        self.send(&Message::Hello(h)).await;
        match self.recv().await {
            Some(Message::Welcome(w)) => {
                assert_eq!(w.protocol_version, version);
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Reads to the end and returns the application close code.
    async fn refused(mut self) -> (u64, Vec<Message>) {
        while self.recv().await.is_some() {}
        let code = match tokio::time::timeout(Duration::from_secs(10), self.conn.closed())
            .await
            .expect("closed in time")
        {
            quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
            other => panic!("closed without an application code: {other}"),
        };
        (code, self.received)
    }
}

fn label(s: &str) -> Label {
    Label::new(s).expect("label")
}

fn hello(terminal: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "0.1.0-test".into(),
        spool_epoch: 7,
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

fn batch(batch_id: u64, first_seq: u64) -> Message {
    Message::Batch(Batch {
        batch_id,
        records: (0..3)
            .map(|i| Record {
                seq: Seq(first_seq + i),
                time_unix_ms: 1_700_000_000_000,
                body: RecordBody::TxnOutcome(TxnOutcome {
                    scheme: Scheme::Cup,
                    code: "05".into(),
                    latency_ms: 300,
                    method: PayMethod::Card,
                    route: None,
                }),
            })
            .collect(),
    })
}

fn ack() -> Message {
    Message::Ack(Ack {
        batch_id: 1,
        highest_seq: Seq(1),
    })
}

fn welcome() -> Message {
    Message::Welcome(Welcome {
        protocol_version: 1,
        collector_time_unix_ms: 0,
        heartbeat_interval_secs: 1,
        net_probe_interval_secs: 1,
        max_batch_records: 1,
        backlog_records_per_sec: 1,
    })
}

/// The only thing a refused connection may have received after its Welcome: a Goodbye.
fn assert_only_goodbye(received: &[Message], what: &str) {
    for m in received {
        match m {
            Message::Welcome(_) | Message::Goodbye(_) => {}
            other => panic!("{what}: the collector sent {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_certificate_reads_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (pki_dir, c) = start(tmp.path(), &["T-OTHER", "T-ATTACK"]).await;

    // Another terminal stores data the attacker would like to read.
    let mut other = Conn::open(&pki_dir, "T-OTHER", &c).await;
    other.hello("T-OTHER").await;
    other.send(&batch(1, 100)).await;
    assert!(matches!(other.recv().await, Some(Message::Ack(_))));

    // 1. Before Hello, a collector-to-agent frame or a Batch is a protocol error.
    for (what, msg) in [
        ("Ack", ack()),
        ("Welcome", welcome()),
        ("Batch", batch(1, 0)),
    ] {
        let mut a = Conn::open(&pki_dir, "T-ATTACK", &c).await;
        a.send(&msg).await;
        let (code, received) = a.refused().await;
        assert_eq!(code, u64::from(close_code::PROTOCOL_ERROR), "{what} first");
        assert_only_goodbye(&received, what);
        assert!(
            received.iter().all(|m| !matches!(m, Message::Welcome(_))),
            "{what} first: no Welcome without a Hello"
        );
    }

    // 2. After Welcome, the same frames, a second Hello and unknown types are protocol errors.
    let after_hello: Vec<(&str, Vec<u8>)> = vec![
        ("Ack", encode_frame(&ack())),
        ("Welcome", encode_frame(&welcome())),
        (
            "second Hello",
            encode_frame(&Message::Hello(hello("T-OTHER"))),
        ),
        (
            "IncidentList",
            encode_frame(&Message::IncidentList(IncidentList {
                query_id: 1,
                collector_time_unix_ms: 0,
                incidents: vec![],
            })),
        ),
        ("type 0x00", vec![0x00, 0, 0, 0, 0]),
        ("type 0x08", vec![0x08, 0, 0, 0, 1, 0]),
        ("type 0xff", vec![0xff, 0, 0, 0, 0]),
    ];
    for (what, bytes) in after_hello {
        let mut a = Conn::open(&pki_dir, "T-ATTACK", &c).await;
        a.hello("T-ATTACK").await;
        a.write(&bytes).await;
        let (code, received) = a.refused().await;
        assert_eq!(
            code,
            u64::from(close_code::PROTOCOL_ERROR),
            "{what} after Hello"
        );
        assert_only_goodbye(&received, what);
    }

    // An agent that said message set 1 must not use set 2's query.
    let mut a = Conn::open(&pki_dir, "T-ATTACK", &c).await;
    a.hello_v("T-ATTACK", 1).await;
    a.send(&Message::IncidentQuery(IncidentQuery { query_id: 3 }))
        .await;
    let (code, received) = a.refused().await;
    assert_eq!(code, u64::from(close_code::PROTOCOL_ERROR), "set 1 query");
    assert_only_goodbye(&received, "set 1 query");

    // 3. A well-behaved conversation gets exactly Welcome, one Ack per own batch, naming
    //    that batch and its highest seq, and an answer per incident query covering only
    //    itself: nothing about any other terminal.
    let mut a = Conn::open(&pki_dir, "T-ATTACK", &c).await;
    a.hello("T-ATTACK").await;
    a.send(&Message::IncidentQuery(IncidentQuery { query_id: 77 }))
        .await;
    match a.recv().await {
        Some(Message::IncidentList(l)) => {
            assert_eq!(l.query_id, 77);
            assert!(l.incidents.is_empty(), "{l:?}");
        }
        other => panic!("expected the IncidentList, got {other:?}"),
    }
    for b in 1..=3u64 {
        a.send(&batch(b, b * 10)).await;
        match a.recv().await {
            Some(Message::Ack(ack)) => {
                assert_eq!(ack.batch_id, b);
                assert_eq!(ack.highest_seq, Seq(b * 10 + 2));
            }
            other => panic!("expected the Ack of batch {b}, got {other:?}"),
        }
    }
    // A second bidirectional stream or any unidirectional stream is refused by stream limits
    // (one bidi, no uni): opening blocks; and the collector never opens a stream to the agent.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), a.conn.open_bi())
            .await
            .is_err(),
        "a second bidirectional stream was granted"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(1), a.conn.open_uni())
            .await
            .is_err(),
        "a unidirectional stream was granted"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), a.conn.accept_uni())
            .await
            .is_err(),
        "the collector opened a stream to the agent"
    );
    // The first stream still works after those attempts.
    a.send(&batch(4, 40)).await;
    assert!(matches!(a.recv().await, Some(Message::Ack(ack)) if ack.batch_id == 4));
    for m in &a.received {
        assert!(
            matches!(
                m,
                Message::Welcome(_) | Message::Ack(_) | Message::IncidentList(_)
            ),
            "unexpected frame {m:?}"
        );
    }

    // 4. HTTP: plain HTTP with bearer tokens. Without a token, or with the agent's certificate
    //    or key offered as a token, every data route answers 401; a TLS client presenting the
    //    certificate cannot even talk to it.
    let http = reqwest::Client::new();
    let cert_pem = std::fs::read_to_string(pki_dir.join("terminals/T-ATTACK.pem")).expect("pem");
    let key_pem = std::fs::read_to_string(pki_dir.join("terminals/T-ATTACK.key")).expect("key");
    let cert_b64: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let key_b64: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for path in [
        "/api/v1/terminals",
        "/api/v1/terminals/T-OTHER/records",
        "/api/v1/terminals/T-ATTACK/records",
        "/api/v1/incidents",
        "/api/v1/summary",
        "/metrics",
    ] {
        let url = format!("http://{}{path}", c.http_addr());
        for bearer in [
            None,
            Some("T-ATTACK"),
            Some(cert_b64.as_str()),
            Some(key_b64.as_str()),
        ] {
            let mut req = http.get(&url);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            let status = req.send().await.expect("request").status();
            assert_eq!(
                status,
                reqwest::StatusCode::UNAUTHORIZED,
                "{path} with {bearer:?}"
            );
        }
        let ok = http
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request");
        assert_eq!(
            ok.status(),
            reqwest::StatusCode::OK,
            "{path} with the read token"
        );
    }
    let identity =
        reqwest::Identity::from_pem(format!("{cert_pem}{key_pem}").as_bytes()).expect("identity");
    let tls_client = reqwest::Client::builder()
        .identity(identity)
        .danger_accept_invalid_certs(true)
        .build()
        .expect("tls client");
    let tls = tls_client
        .get(format!("https://{}/api/v1/terminals", c.http_addr()))
        .send()
        .await;
    assert!(tls.is_err(), "the API answered a TLS client: {tls:?}");

    c.shutdown().await.expect("shutdown");
}
