//! Enrolment (PROTOCOL.md section 10): a terminal without a certificate generates its key,
//! sends a CSR with its bootstrap token to the collector's enrolment endpoint (QUIC, ALPN
//! `storepulse-enrol/1`, server authentication only), checks the certificate it gets back and
//! stores key and certificate together ([`crate::certs::store_pair`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use storepulse_shared::{
    CertRefusal, CertResult, ENROL_ALPN, ENROL_MAX_FRAME_BYTES, ENROL_PROTOCOL_VERSION,
    EnrolRequest, FrameDecoder, FrameError, Message, close_code, encode_frame,
};
use tokio::time::timeout;

use crate::certs::{self, CertError, CertInfo};
use crate::config::{Config, ConfigError, EnrolConfig};

/// Time allowed for the whole exchange (handshake, request, answer).
const ENROL_TIMEOUT: Duration = Duration::from_secs(20);

/// Why enrolment gave no certificate.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The collector answered with a refusal.
    #[error("enrolment refused ({reason:?}): {detail}")]
    Refused {
        /// Why, broadly.
        reason: CertRefusal,
        /// Do not ask again sooner, seconds.
        retry_after_secs: u32,
        /// The collector's detail (for token problems only a reference; its log has the
        /// reason).
        detail: String,
    },
    /// The bootstrap token could not be read.
    #[error("bootstrap token: {0}")]
    Token(#[from] ConfigError),
    /// Key generation, the issued certificate or storing it failed.
    #[error(transparent)]
    Certificate(#[from] CertError),
    /// The fleet CA file is unusable.
    #[error("collector.ca_cert {path}: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The enrolment address could not be resolved.
    #[error("cannot resolve {address}: {cause}")]
    Resolve {
        /// `enrol.address`.
        address: String,
        /// The resolver's error.
        cause: std::io::Error,
    },
    /// The address resolved to nothing.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// No UDP socket could be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    /// The connection could not be started.
    #[error("cannot start connecting: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake failed or the connection was lost.
    #[error("cannot connect to the enrolment endpoint {addr}: {cause}")]
    Connection {
        /// The endpoint.
        addr: SocketAddr,
        /// quinn's reason.
        cause: quinn::ConnectionError,
    },
    /// Writing the request failed.
    #[error("cannot send the request: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading the answer failed.
    #[error("cannot read the answer: {0}")]
    Read(#[from] quinn::ReadError),
    /// The collector closed the stream without answering.
    #[error("the collector closed the stream without an answer")]
    Closed,
    /// The answer is no valid frame.
    #[error("bad frame from the collector: {0}")]
    Frame(#[from] FrameError),
    /// The answer is another frame than `EnrolResponse`.
    #[error("expected EnrolResponse, got {0}")]
    Unexpected(&'static str),
    /// No answer in time.
    #[error("enrolment with {0} timed out")]
    Timeout(SocketAddr),
    /// The task storing the certificate failed.
    #[error("certificate store task failed: {0}")]
    Task(tokio::task::JoinError),
}

/// Enrols once: new key, CSR, request, check, store. Returns the stored certificate's details.
pub async fn enrol_once(config: &Config, enrol: &EnrolConfig) -> Result<CertInfo, EnrolError> {
    let terminal = config.identity.terminal_id.clone();
    let token = enrol.token.read()?;
    let request = certs::new_request(&terminal)?;
    let tls = client_config(config)?;
    let addr: SocketAddr = tokio::net::lookup_host(&enrol.address)
        .await
        .map_err(|cause| EnrolError::Resolve {
            address: enrol.address.clone(),
            cause,
        })?
        .next()
        .ok_or_else(|| EnrolError::NoAddress(enrol.address.clone()))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(EnrolError::Socket)?;
    endpoint.set_default_client_config(tls);
    let frame = encode_frame(&Message::EnrolRequest(EnrolRequest {
        protocol_version: ENROL_PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        terminal_id: terminal.clone(),
        token,
        csr_der: request.csr_der.clone(),
    }));
    let exchange = async {
        let conn = endpoint
            .connect(addr, &enrol.server_name)?
            .await
            .map_err(|cause| EnrolError::Connection { addr, cause })?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|cause| EnrolError::Connection { addr, cause })?;
        send.write_all(&frame).await?;
        let _ = send.finish();
        let mut decoder = FrameDecoder::new(ENROL_MAX_FRAME_BYTES);
        let mut buf = vec![0u8; 4096];
        let answer = loop {
            if let Some(m) = decoder.next_message()? {
                break m;
            }
            match recv.read(&mut buf).await? {
                Some(n) => decoder.push(&buf[..n]),
                None => return Err(EnrolError::Closed),
            }
        };
        conn.close(VarInt::from_u32(close_code::NORMAL), b"done");
        Ok(answer)
    };
    let answer = timeout(ENROL_TIMEOUT, exchange)
        .await
        .map_err(|_| EnrolError::Timeout(addr))??;
    let _ = timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    let result = match answer {
        Message::EnrolResponse(r) => r.result,
        other => return Err(EnrolError::Unexpected(other.frame_type().name())),
    };
    match result {
        CertResult::Issued { certificate_der } => {
            let c = &config.collector;
            let info = certs::check_issued(&certificate_der, &request.key, &terminal, &c.ca_cert)?;
            let (cert, key) = (c.cert.clone(), c.key.clone());
            tokio::task::spawn_blocking(move || {
                certs::store_pair(&cert, &key, &certificate_der, &request.key)
            })
            .await
            .map_err(EnrolError::Task)??;
            Ok(info)
        }
        CertResult::Refused {
            reason,
            retry_after_secs,
            detail,
        } => Err(EnrolError::Refused {
            reason,
            retry_after_secs,
            detail,
        }),
    }
}

/// TLS for enrolment: the fleet CA as the only root, no client certificate, the enrolment ALPN.
fn client_config(config: &Config) -> Result<quinn::ClientConfig, EnrolError> {
    let path = &config.collector.ca_cert;
    let ca_err = |reason: String| EnrolError::Ca {
        path: path.clone(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_err(e.to_string()))? {
        let cert = cert.map_err(|e| ca_err(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| ca_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![ENROL_ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| ca_err(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(ENROL_TIMEOUT).ok());
    client.transport_config(Arc::new(transport));
    Ok(client)
}
