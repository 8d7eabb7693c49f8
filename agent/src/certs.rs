//! The terminal's own TLS material: a key pair it generates itself (the private key never
//! leaves the terminal), the certificate signing request for it, the certificate the fleet CA
//! returned, and how the pair is replaced on disk without ever leaving a key and a certificate
//! that do not belong together.
//!
//! Replacing the pair ([`store_pair`]): write `key.tmp` and rename it to `key.new`, write
//! `cert.tmp` and rename it to `cert.new` (each written and fsync'd first), then rename
//! `key.new` over the key and `cert.new` over the certificate and fsync the directories.
//! `cert.new` exists only once both new files are complete, so [`recover`] (run before the
//! files are read) finishes an interrupted replacement when it sees `cert.new`, and otherwise
//! deletes the leftovers: either way the pair on disk matches.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData as _};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use storepulse_shared::TerminalId;

/// Why TLS material could not be made, read or accepted.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        cause: std::io::Error,
    },
    /// Key or CSR generation failed.
    #[error("cannot generate the key or CSR: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate could not be parsed.
    #[error("{0}")]
    Parse(String),
    /// A certificate is not acceptable for this terminal.
    #[error("{0}")]
    Refused(String),
}

/// What the agent needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject common name.
    pub common_name: String,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
    /// Not before, Unix ms.
    pub not_before_ms: i64,
    /// Not after, Unix ms.
    pub not_after_ms: i64,
}

/// A key pair generated for a request, and the request (DER).
#[derive(Debug)]
pub struct Request {
    /// The new key pair; stored only with the certificate issued for it.
    pub key: KeyPair,
    /// PKCS#10 CSR, DER, subject CN = the terminal id.
    pub csr_der: Vec<u8>,
}

/// Generates an ECDSA P-256 key pair and a CSR for it with subject CN = `terminal`.
pub fn new_request(terminal: &TerminalId) -> Result<Request, CertError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, terminal.as_str());
    let csr_der = params.serialize_request(&key)?.der().to_vec();
    Ok(Request { key, csr_der })
}

/// Parses a DER certificate.
pub fn inspect(der: &[u8]) -> Result<CertInfo, CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertError::Parse(format!("not an X.509 certificate: {e}")))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_owned();
    let v = cert.validity();
    Ok(CertInfo {
        common_name,
        serial_hex: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        not_before_ms: v.not_before.timestamp().saturating_mul(1000),
        not_after_ms: v.not_after.timestamp().saturating_mul(1000),
    })
}

/// Reads the first certificate of a PEM file and parses it.
pub fn read_info(path: &Path) -> Result<CertInfo, CertError> {
    let der = read_cert(path)?;
    inspect(&der)
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, CertError> {
    CertificateDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::Io(cause) => CertError::Io {
            path: path.to_owned(),
            cause,
        },
        other => CertError::Parse(format!("{}: no certificate: {other}", path.display())),
    })
}

/// Checks a certificate the collector issued for `request`: its CN is `terminal`, it carries
/// the request's public key, and the fleet CA in `ca_pem` signed it. Returns what it says.
pub fn check_issued(
    der: &[u8],
    key: &KeyPair,
    terminal: &TerminalId,
    ca_pem: &Path,
) -> Result<CertInfo, CertError> {
    let info = inspect(der)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse(e.to_string()))?;
    if info.common_name != terminal.as_str() {
        return Err(CertError::Refused(format!(
            "the issued certificate names {:?}, not this terminal {terminal}",
            info.common_name
        )));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
        return Err(CertError::Refused(
            "the issued certificate is not for the key this terminal generated".into(),
        ));
    }
    check_chain(der, ca_pem)?;
    Ok(info)
}

/// Checks that a fleet CA certificate in `ca_pem` signed `der`.
pub fn check_chain(der: &[u8], ca_pem: &Path) -> Result<(), CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let cas = CertificateDer::pem_file_iter(ca_pem)
        .map_err(|e| CertError::Parse(format!("{}: {e}", ca_pem.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Parse(format!("{}: {e}", ca_pem.display())))?;
    for ca in &cas {
        if let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca.as_ref())
            && cert.verify_signature(Some(ca.public_key())).is_ok()
        {
            return Ok(());
        }
    }
    Err(CertError::Refused(format!(
        "the certificate was not issued by the fleet CA in {}",
        ca_pem.display()
    )))
}

/// Checks the installed pair for `terminal`: the certificate's CN, that the key belongs to it,
/// that the fleet CA signed it. Returns what it says (the caller judges the dates).
pub fn check_installed(
    cert_path: &Path,
    key_path: &Path,
    terminal: &TerminalId,
    ca_pem: &Path,
) -> Result<CertInfo, CertError> {
    let der = read_cert(cert_path)?;
    let key_pem = fs::read_to_string(key_path).map_err(|cause| CertError::Io {
        path: key_path.to_owned(),
        cause,
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| {
        CertError::Parse(format!(
            "{}: not a usable private key: {e}",
            key_path.display()
        ))
    })?;
    check_issued(&der, &key, terminal, ca_pem).map_err(|e| match e {
        CertError::Refused(m) => CertError::Refused(format!("{}: {m}", cert_path.display())),
        other => other,
    })
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |cause| CertError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// Writes `bytes` to `path` (mode 0600 if `secret`) and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8], secret: bool) -> Result<(), CertError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

fn sync_dir(path: &Path) -> Result<(), CertError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// Replaces the key and the certificate (see the module documentation for the order).
pub fn store_pair(
    cert_path: &Path,
    key_path: &Path,
    cert_der: &[u8],
    key: &KeyPair,
) -> Result<(), CertError> {
    recover(cert_path, key_path)?;
    for p in [cert_path, key_path] {
        if let Some(dir) = p.parent()
            && !dir.as_os_str().is_empty()
        {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    let cert_pem = CertificateDer::from(cert_der.to_vec());
    let cert_pem = pem_encode("CERTIFICATE", cert_pem.as_ref());
    let (key_tmp, key_new) = (sibling(key_path, ".tmp"), sibling(key_path, ".new"));
    let (cert_tmp, cert_new) = (sibling(cert_path, ".tmp"), sibling(cert_path, ".new"));
    write_synced(&key_tmp, key.serialize_pem().as_bytes(), true)?;
    fs::rename(&key_tmp, &key_new).map_err(io(&key_new))?;
    write_synced(&cert_tmp, cert_pem.as_bytes(), false)?;
    fs::rename(&cert_tmp, &cert_new).map_err(io(&cert_new))?;
    sync_dir(&cert_new)?;
    sync_dir(&key_new)?;
    finish(cert_path, key_path)
}

/// Installs `key.new` and `cert.new` (the latter last) and fsyncs the directories.
fn finish(cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
    let key_new = sibling(key_path, ".new");
    let cert_new = sibling(cert_path, ".new");
    if key_new.exists() {
        fs::rename(&key_new, key_path).map_err(io(key_path))?;
    }
    fs::rename(&cert_new, cert_path).map_err(io(cert_path))?;
    sync_dir(key_path)?;
    sync_dir(cert_path)
}

/// Completes or undoes a replacement interrupted by a crash (module documentation).
pub fn recover(cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
    if sibling(cert_path, ".new").exists() {
        tracing::warn!(cert = %cert_path.display(), "Completing an interrupted certificate replacement");
        return finish(cert_path, key_path);
    }
    for p in [
        sibling(key_path, ".new"),
        sibling(key_path, ".tmp"),
        sibling(cert_path, ".tmp"),
    ] {
        match fs::remove_file(&p) {
            Ok(()) => tracing::warn!(file = %p.display(), "Removed a half-written TLS file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
    }
    Ok(())
}

/// Writes a private key alone (for the offline flow: the operator signs the CSR and installs
/// the certificate later). Refuses to replace a key that has a certificate beside it.
pub fn store_key_alone(cert_path: &Path, key_path: &Path, key: &KeyPair) -> Result<(), CertError> {
    if cert_path.exists() {
        return Err(CertError::Refused(format!(
            "{} exists: a certificate is installed already; remove it first (its key would be replaced)",
            cert_path.display()
        )));
    }
    if let Some(dir) = key_path.parent()
        && !dir.as_os_str().is_empty()
    {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = sibling(key_path, ".tmp");
    write_synced(&tmp, key.serialize_pem().as_bytes(), true)?;
    fs::rename(&tmp, key_path).map_err(io(key_path))?;
    sync_dir(key_path)
}

/// PEM with 64-column base64 lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TerminalId {
        TerminalId::new(s).expect("id")
    }

    /// A CA in `dir` (ca.pem) that signs requests, as the collector's does.
    fn ca(dir: &Path) -> impl Fn(&Request) -> Vec<u8> {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("ca key");
        let mut params = CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let ca_cert = params.self_signed(&ca_key).expect("ca");
        fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca");
        let issuer = rcgen::Issuer::new(params, ca_key);
        move |req: &Request| {
            let csr = rcgen::CertificateSigningRequestParams::from_der(&req.csr_der.clone().into())
                .expect("csr");
            csr.signed_by(&issuer).expect("sign").der().to_vec()
        }
    }

    #[test]
    fn request_issue_check_store() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sign = ca(tmp.path());
        let ca_pem = tmp.path().join("ca.pem");
        let req = new_request(&t("T-1")).expect("request");
        let der = sign(&req);
        let info = check_issued(&der, &req.key, &t("T-1"), &ca_pem).expect("accepted");
        assert_eq!(info.common_name, "T-1");
        assert!(info.not_after_ms > info.not_before_ms);

        let other = new_request(&t("T-1")).expect("another key");
        assert!(matches!(
            check_issued(&der, &other.key, &t("T-1"), &ca_pem),
            Err(CertError::Refused(m)) if m.contains("not for the key")
        ));
        assert!(matches!(
            check_issued(&der, &req.key, &t("T-2"), &ca_pem),
            Err(CertError::Refused(m)) if m.contains("not this terminal")
        ));
        let foreign = tempfile::tempdir().expect("tempdir");
        let _ = ca(foreign.path());
        assert!(matches!(
            check_issued(&der, &req.key, &t("T-1"), &foreign.path().join("ca.pem")),
            Err(CertError::Refused(m)) if m.contains("fleet CA")
        ));

        let cert = tmp.path().join("tls/terminal.pem");
        let key = tmp.path().join("tls/terminal.key");
        store_pair(&cert, &key, &der, &req.key).expect("stored");
        assert_eq!(
            check_installed(&cert, &key, &t("T-1"), &ca_pem).expect("installed"),
            info
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&key).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // The PEM we write is what rustls reads.
        assert_eq!(read_cert(&cert).expect("pem").as_ref(), der.as_slice());
    }

    #[test]
    fn interrupted_replacements_never_leave_a_mismatched_pair() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sign = ca(tmp.path());
        let ca_pem = tmp.path().join("ca.pem");
        let cert = tmp.path().join("c.pem");
        let key = tmp.path().join("c.key");
        let old = new_request(&t("T-1")).expect("old");
        store_pair(&cert, &key, &sign(&old), &old.key).expect("stored");
        let new = new_request(&t("T-1")).expect("new");
        let new_der = sign(&new);
        let new_pem = pem_encode("CERTIFICATE", &new_der);
        let installed = || check_installed(&cert, &key, &t("T-1"), &ca_pem).expect("matching pair");

        // Crash after key.new, while cert.tmp was being written: the old pair stays.
        fs::write(sibling(&key, ".new"), new.key.serialize_pem()).expect("w");
        fs::write(sibling(&cert, ".tmp"), &new_pem[..40]).expect("w");
        recover(&cert, &key).expect("recover");
        let before = installed();
        assert!(!sibling(&key, ".new").exists() && !sibling(&cert, ".tmp").exists());

        // Crash after both .new files, before any rename: the new pair is installed.
        fs::write(sibling(&key, ".new"), new.key.serialize_pem()).expect("w");
        fs::write(sibling(&cert, ".new"), &new_pem).expect("w");
        recover(&cert, &key).expect("recover");
        let after = installed();
        assert_ne!(before.serial_hex, after.serial_hex);

        // Crash between the two renames (key already new, cert.new pending).
        let third = new_request(&t("T-1")).expect("third");
        let third_der = sign(&third);
        fs::write(&key, third.key.serialize_pem()).expect("w");
        fs::write(
            sibling(&cert, ".new"),
            pem_encode("CERTIFICATE", &third_der),
        )
        .expect("w");
        recover(&cert, &key).expect("recover");
        assert_eq!(installed(), inspect(&third_der).expect("info"));
    }

    #[test]
    fn key_alone_refuses_to_orphan_a_certificate() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cert = tmp.path().join("c.pem");
        let key = tmp.path().join("k/c.key");
        let req = new_request(&t("T-1")).expect("request");
        store_key_alone(&cert, &key, &req.key).expect("stored");
        assert!(key.exists());
        fs::write(&cert, "x").expect("w");
        assert!(matches!(
            store_key_alone(&cert, &key, &req.key),
            Err(CertError::Refused(_))
        ));
    }

    #[test]
    fn pem_encoding_matches_a_known_vector() {
        assert_eq!(
            pem_encode("X", b"foobar!"),
            "-----BEGIN X-----\nZm9vYmFyIQ==\n-----END X-----\n"
        );
    }
}
