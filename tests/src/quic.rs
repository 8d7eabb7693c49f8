//! A raw QUIC client with mutual TLS: speaks the storepulse framing directly, or sends garbage
//! on purpose. Used by the end-to-end tests and the ingest load generator.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use storepulse_shared::{FrameDecoder, MAX_FRAME_BYTES_DEFAULT, Message, encode_frame};

/// Server name the collector's certificate carries.
pub const SERVER_NAME: &str = "collector.storepulse.local";

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse {}", path.display()))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())?
        .with_context(|| format!("no key in {}", path.display()))
}

/// A quinn client config that trusts `ca` and presents `cert`/`key`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(read_certs(cert)?, read_key(key)?)?;
    tls.alpn_protocols = vec![storepulse_shared::ALPN.to_vec()];
    let mut cfg = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    transport.max_idle_timeout(Some(Duration::from_secs(30).try_into()?));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// A client endpoint on an ephemeral loopback port.
pub fn endpoint() -> Result<quinn::Endpoint> {
    Ok(quinn::Endpoint::client(SocketAddr::from((
        [127, 0, 0, 1],
        0,
    )))?)
}

/// One raw connection with its bidirectional stream.
#[derive(Debug)]
pub struct RawConn {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// Send half of the stream.
    pub send: quinn::SendStream,
    /// Receive half of the stream.
    pub recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl RawConn {
    /// Connects and opens the stream.
    pub async fn connect(
        ep: &quinn::Endpoint,
        cfg: quinn::ClientConfig,
        addr: SocketAddr,
    ) -> Result<Self> {
        let conn = ep.connect_with(cfg, addr, SERVER_NAME)?.await?;
        let (send, recv) = conn.open_bi().await?;
        Ok(Self {
            conn,
            send,
            recv,
            decoder: FrameDecoder::new(MAX_FRAME_BYTES_DEFAULT),
        })
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// Writes one message as a frame.
    pub async fn send(&mut self, msg: &Message) -> Result<()> {
        self.write_raw(&encode_frame(msg)).await
    }

    /// Reads the next message; `Ok(None)` when the stream ended.
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(m) = self.decoder.next_message()? {
                return Ok(Some(m));
            }
            match self.recv.read(&mut buf).await? {
                Some(n) => self.decoder.push(&buf[..n]),
                None => return Ok(None),
            }
        }
    }

    /// Waits until the peer closes the connection and returns its application close code.
    pub async fn closed_code(&self, timeout: Duration) -> Result<u64> {
        match tokio::time::timeout(timeout, self.conn.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(c)) => Ok(c.error_code.into_inner()),
            Ok(other) => bail!("connection ended without an application close: {other}"),
            Err(_) => bail!("connection still open after {timeout:?}"),
        }
    }
}
