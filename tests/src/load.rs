//! Load generation support for the storm, rate-limit and scale tests and benchmarks: client
//! certificates issued in memory by the fleet CA (tens of thousands in seconds, no files), and a
//! light raw agent connection that holds no read buffer while idle, so one process can keep
//! 100,000 of them open.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use quinn::crypto::rustls::QuicClientConfig;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use storepulse_shared::{
    FrameDecoder, Heartbeat, Hello, Identity, Label, LinkType, MAX_FRAME_BYTES_DEFAULT, Message,
    NetQuality, PayMethod, RecordBody, Scheme, TerminalId, TxnOutcome, encode_frame,
};

use crate::quic::SERVER_NAME;

/// Issues client certificates from a fleet PKI directory (as `pki init` writes it) in memory.
pub struct FleetIssuer {
    issuer: Issuer<'static, KeyPair>,
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for FleetIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetIssuer").finish_non_exhaustive()
    }
}

/// QUIC transport settings of a load-generating client.
#[derive(Debug, Clone, Copy)]
pub struct ClientTransport {
    /// Keep-alive interval (`None`: rely on the collector's keep-alives).
    pub keep_alive: Option<Duration>,
    /// Idle timeout.
    pub idle_timeout: Duration,
}

impl Default for ClientTransport {
    fn default() -> Self {
        // The reference agent's defaults.
        Self {
            keep_alive: Some(Duration::from_secs(15)),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl FleetIssuer {
    /// Loads the CA certificate and key from `pki_dir`.
    pub fn load(pki_dir: &Path) -> Result<Self> {
        let key = KeyPair::from_pem(&std::fs::read_to_string(pki_dir.join("ca.key"))?)?;
        let ca_pem = std::fs::read_to_string(pki_dir.join("ca.pem"))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(c?)?;
        }
        Ok(Self {
            issuer,
            roots: Arc::new(roots),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// A client certificate (CN = `terminal`) and its key.
    pub fn issue(
        &self,
        terminal: &str,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, terminal);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), der))
    }

    /// A quinn client config presenting a fresh certificate for `terminal`.
    pub fn client_config(
        &self,
        terminal: &str,
        transport: ClientTransport,
    ) -> Result<quinn::ClientConfig> {
        let (cert, key) = self.issue(terminal)?;
        let mut tls = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(vec![cert], key)?;
        tls.alpn_protocols = vec![storepulse_shared::ALPN.to_vec()];
        let mut cfg = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
        let mut t = quinn::TransportConfig::default();
        t.keep_alive_interval(transport.keep_alive);
        t.max_idle_timeout(Some(transport.idle_timeout.try_into()?));
        cfg.transport_config(Arc::new(t));
        Ok(cfg)
    }
}

fn label(s: &str) -> Label {
    Label::new(s).expect("static label is valid")
}

/// A `Hello` for a load-generating terminal (`store` groups terminals into stores).
pub fn hello(terminal: &str, store: &str, spool_epoch: u64) -> Result<Hello> {
    Ok(Hello {
        protocol_version: storepulse_shared::PROTOCOL_VERSION,
        agent_version: "load".into(),
        spool_epoch,
        identity: Identity {
            terminal_id: TerminalId::new(terminal)?,
            merchant_id: label("M0001"),
            store_id: Label::new(store)?,
            region: label("R01"),
            city: label("R01-C01"),
            acquirer: label("ACQ-A"),
            qr_channel: label("QR-A"),
            carrier: label("CMCC"),
            link: LinkType::Cellular,
            model: label("P300"),
            firmware: label("2.3.1"),
            app_version: label("5.0.2"),
        },
        agent_time_unix_ms: now_ms(),
    })
}

/// The machine's clock, Unix ms: what a real agent puts in its `Hello` (a 0 would make the
/// collector see a clock 56 years slow and correct every record).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The record bodies a real agent sends: heartbeat, network quality, a payment outcome.
pub fn heartbeat(spool_records: u64) -> RecordBody {
    RecordBody::Heartbeat(Heartbeat {
        cpu_percent: 3.5,
        mem_used_bytes: 180 << 20,
        mem_total_bytes: 1 << 30,
        disk_free_bytes: 2 << 30,
        uptime_secs: 86_400,
        temperature_c: Some(41.0),
        battery_percent: None,
        spool_records,
    })
}

/// A network-quality sample like the agent's probe produces.
pub fn net_quality() -> RecordBody {
    RecordBody::NetQuality(NetQuality {
        rtt_ms: Some(38.0),
        jitter_ms: Some(4.0),
        loss_percent: Some(0.0),
        endpoints: vec![storepulse_shared::EndpointProbe {
            name: "cup-host".into(),
            dns_ms: Some(12.0),
            tcp_connect_ms: Some(30.0),
            error: None,
        }],
    })
}

/// An approved card payment.
pub fn payment(i: u64) -> RecordBody {
    RecordBody::TxnOutcome(TxnOutcome {
        scheme: Scheme::Cup,
        code: if i.is_multiple_of(50) { "51" } else { "00" }.into(),
        latency_ms: 300 + (i % 200) as u32,
        method: if i.is_multiple_of(3) {
            PayMethod::Qr
        } else {
            PayMethod::Card
        },
        route: Some(label("ACQ-A")),
    })
}

/// One raw agent connection that allocates nothing while it waits (reads with `read_chunk`).
#[derive(Debug)]
pub struct LightConn {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl LightConn {
    /// Connects (handshake within `timeout`) and opens the stream.
    pub async fn connect(
        ep: &quinn::Endpoint,
        cfg: quinn::ClientConfig,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Self> {
        let connecting = ep.connect_with(cfg, addr, SERVER_NAME)?;
        let conn = tokio::time::timeout(timeout, connecting)
            .await
            .context("handshake timed out")??;
        let (send, recv) = conn.open_bi().await?;
        Ok(Self {
            conn,
            send,
            recv,
            decoder: FrameDecoder::new(MAX_FRAME_BYTES_DEFAULT),
        })
    }

    /// Writes one message.
    pub async fn send(&mut self, msg: &Message) -> Result<()> {
        self.send.write_all(&encode_frame(msg)).await?;
        Ok(())
    }

    /// Reads the next message; an error when the stream ends.
    pub async fn recv(&mut self) -> Result<Message> {
        loop {
            if let Some(m) = self.decoder.next_message()? {
                return Ok(m);
            }
            match self.recv.read_chunk(64 * 1024, true).await? {
                Some(chunk) => self.decoder.push(&chunk.bytes),
                None => bail!("the collector closed the stream"),
            }
        }
    }
}
