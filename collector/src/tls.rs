//! TLS and QUIC endpoint configuration: mandatory client certificates chained to the fleet CA,
//! checked against the CRL; the terminal id is the client certificate's subject CN.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use quinn::crypto::rustls::QuicServerConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use storepulse_shared::{ALPN, TerminalId};

use crate::config::{QuicSettings, TlsConfig};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The PEM error.
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file held no certificate.
    #[error("{0}: no certificate found")]
    NoCertificate(PathBuf),
    /// rustls refused the certificates or key.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (bad CA or CRL).
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The rustls config is unusable for QUIC.
    #[error("quic: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The idle timeout is out of range.
    #[error("quic idle timeout out of range")]
    IdleTimeout,
}

fn pem_err(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// Builds the QUIC server config from the PKI files (reads the CRL afresh).
pub(crate) fn server_config(
    tls: &TlsConfig,
    quic: &QuicSettings,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&tls.ca_cert)? {
        roots.add(ca)?;
    }
    let crls: Vec<CertificateRevocationListDer<'static>> = match &tls.crl {
        Some(path) => CertificateRevocationListDer::pem_file_iter(path)
            .map_err(pem_err(path))?
            .collect::<Result<_, _>>()
            .map_err(pem_err(path))?,
        None => Vec::new(),
    };
    let no_crl = crls.is_empty();
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .with_crls(crls)
            // The CA is the trust anchor; only terminal certificates are ever revoked.
            .only_check_end_entity_revocation();
    if no_crl {
        verifier = verifier.allow_unknown_revocation_status();
    }
    let verifier = verifier.build()?;

    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(pem_err(&tls.key))?;
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&tls.cert)?, key)?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];

    let mut transport = quinn::TransportConfig::default();
    let idle =
        quinn::IdleTimeout::try_from(quic.idle_timeout).map_err(|_| TlsError::IdleTimeout)?;
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(quic.keep_alive)
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into());
    let mut server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(crypto)?));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// The terminal id in the peer certificate's subject CN, if it is a valid id.
pub(crate) fn peer_terminal(conn: &quinn::Connection) -> Option<TerminalId> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    TerminalId::new(cn).ok()
}

/// What identifies a version of the CRL file: modification time and length.
pub(crate) fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
