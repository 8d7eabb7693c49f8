//! Fleet PKI: the CA, the collector's server certificate, per-terminal client certificates and
//! the CRL, as files in one directory: `ca.pem`, `ca.key`, `collector.pem`, `collector.key`,
//! `crl.pem`, `terminals/<T>.pem|key` (bulk issue), and the bookkeeping `issued.tsv` (terminal,
//! serial, not after) and `revoked.tsv` (terminal, serial, when).
//!
//! Terminal certificates are short-lived (90 days by default) and renewed by the agents;
//! [`sign`] checks and signs certificate signing requests, for online enrolment and renewal
//! ([`Signer`]) and for the offline signer ([`sign_csr_files`]). Issuing and revoking hold the
//! directory's lock, so a running collector and the `pki` command never interleave.

mod files;
pub mod sign;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevokedCertParams, SanType, SerialNumber,
};
use storepulse_shared::TerminalId;
use storepulse_shared::ids::{IdError, validate_id};
use x509_parser::time::ASN1Time;

use self::files::{
    DirLock, Line, append_line, hex, io, parse_rfc3339, read_lines, rfc3339, unhex, write_public,
    write_secret,
};
pub use self::sign::{CheckedCsr, CsrError, SignError, Signed, Signer, check_csr};

/// Default DNS name in the collector certificate.
pub const DEFAULT_SERVER_NAME: &str = "collector.storepulse.local";

/// Common name of the fleet CA.
pub const CA_COMMON_NAME: &str = "storepulse fleet CA";

/// Default validity of terminal certificates: 90 days (agents renew after two thirds).
pub const DEFAULT_TERMINAL_CERT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// Validity of the CA and collector certificates, days.
const CA_CERT_DAYS: u64 = 3650;
/// How far `not_before` is backdated to tolerate clock skew, seconds (at most a tenth of the
/// lifetime, so short test lifetimes stay mostly in the future).
const BACKDATE_SECS: u64 = 3600;
/// How long a CRL is announced valid, days.
const CRL_VALID_DAYS: u64 = 365;

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// Certificate generation or parsing failed.
    #[error("certificate error: {0}")]
    Cert(#[from] rcgen::Error),
    /// `init` found an existing CA.
    #[error("{0} already holds a fleet CA; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    /// The terminal id is not valid.
    #[error("invalid terminal id {id:?}: {source}")]
    InvalidTerminal {
        /// The id given.
        id: String,
        /// Why it is invalid.
        source: IdError,
    },
    /// A certificate was already issued to this terminal.
    #[error("a certificate was already issued to terminal {0}; use --force to issue another")]
    AlreadyIssued(String),
    /// The same terminal appears twice in one bulk request.
    #[error("terminal {0} is listed twice")]
    Duplicate(String),
    /// No unrevoked certificate exists for this terminal.
    #[error("no unrevoked certificate was issued to terminal {0}")]
    NotIssued(String),
    /// A date could not be represented in a certificate.
    #[error("date out of range for a certificate")]
    TimeOutOfRange,
    /// A bookkeeping file is malformed.
    #[error("{path}: malformed line {line}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A CSR given to the offline signer was refused.
    #[error("{path}: {source}")]
    Csr {
        /// The CSR file.
        path: PathBuf,
        /// Why.
        source: CsrError,
    },
    /// A CSR names a terminal outside the list the signer was given.
    #[error("{path}: terminal {terminal} is not in the inventory")]
    NotInInventory {
        /// The CSR file.
        path: PathBuf,
        /// Its terminal.
        terminal: String,
    },
    /// A PEM or CRL file could not be parsed.
    #[error("{path}: {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// Paths of a freshly issued terminal certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The terminal.
    pub terminal: String,
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, mode 0600).
    pub key: PathBuf,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
}

/// One certificate in `issued.tsv`, as `pki list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    /// The terminal.
    pub terminal: String,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
    /// Not after, RFC 3339.
    pub not_after: String,
    /// Listed in `revoked.tsv`.
    pub revoked: bool,
    /// Past its `not_after` now.
    pub expired: bool,
}

/// File layout of a PKI directory.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    /// `ca.pem`.
    pub ca_cert: PathBuf,
    /// `ca.key`.
    pub ca_key: PathBuf,
    /// `collector.pem`.
    pub collector_cert: PathBuf,
    /// `collector.key`.
    pub collector_key: PathBuf,
    /// `terminals/`.
    pub terminals: PathBuf,
    /// `issued.tsv`.
    pub issued: PathBuf,
    /// `revoked.tsv`.
    pub revoked: PathBuf,
    /// `crl.pem`.
    pub crl: PathBuf,
}

impl PkiPaths {
    /// The layout under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            collector_cert: dir.join("collector.pem"),
            collector_key: dir.join("collector.key"),
            terminals: dir.join("terminals"),
            issued: dir.join("issued.tsv"),
            revoked: dir.join("revoked.tsv"),
            crl: dir.join("crl.pem"),
        }
    }

    /// Certificate path of terminal `t`.
    pub fn terminal_cert(&self, t: &str) -> PathBuf {
        self.terminals.join(format!("{t}.pem"))
    }

    /// Key path of terminal `t`.
    pub fn terminal_key(&self, t: &str) -> PathBuf {
        self.terminals.join(format!("{t}.key"))
    }
}

/// Creates the fleet CA, the collector certificate (SAN `server_name`, `localhost`, 127.0.0.1)
/// and an empty CRL in `dir`. Refuses to overwrite an existing CA.
pub fn init(dir: &Path, server_name: &str) -> Result<(), PkiError> {
    let p = PkiPaths::new(dir);
    if p.ca_cert.exists() || p.ca_key.exists() {
        return Err(PkiError::AlreadyInitialised(dir.to_owned()));
    }
    fs::create_dir_all(&p.terminals).map_err(io(&p.terminals))?;
    let now = SystemTime::now();

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca, now, days(CA_CERT_DAYS))?;
    ca.serial_number = Some(random_serial());
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut server = CertificateParams::new(vec![server_name.to_owned(), "localhost".to_owned()])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server.distinguished_name = rcgen::DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, server_name);
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.use_authority_key_identifier_extension = true;
    server.serial_number = Some(random_serial());
    set_validity(&mut server, now, days(CA_CERT_DAYS))?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    write_secret(&p.ca_key, issuer.key().serialize_pem().as_bytes())?;
    write_public(&p.ca_cert, ca_cert.pem().as_bytes())?;
    write_secret(&p.collector_key, server_key.serialize_pem().as_bytes())?;
    write_public(&p.collector_cert, server_cert.pem().as_bytes())?;
    write_public(&p.issued, b"")?;
    write_public(&p.revoked, b"")?;
    write_crl(&p, &issuer, now)
}

/// Issues a client certificate (CN = `terminal`, EKU clientAuth) and its key into
/// `dir/terminals/`, valid for [`DEFAULT_TERMINAL_CERT_LIFETIME`].
///
/// Refuses an invalid terminal id, and a second certificate for the same terminal unless
/// `force` is set.
pub fn issue(dir: &Path, terminal: &str, force: bool) -> Result<Issued, PkiError> {
    let mut issued = issue_many(
        dir,
        &[terminal.to_owned()],
        force,
        DEFAULT_TERMINAL_CERT_LIFETIME,
    )?;
    issued
        .pop()
        .ok_or_else(|| PkiError::NotIssued(terminal.to_owned()))
}

/// Bulk issue for pre-provisioning: a key and a certificate valid for `lifetime` for each
/// terminal, into `dir/terminals/`. Every id is checked (valid, listed once, not issued yet
/// unless `force`) before anything is written.
pub fn issue_many(
    dir: &Path,
    terminals: &[String],
    force: bool,
    lifetime: Duration,
) -> Result<Vec<Issued>, PkiError> {
    let mut seen = HashSet::new();
    for t in terminals {
        validate_id(t).map_err(|source| PkiError::InvalidTerminal {
            id: t.clone(),
            source,
        })?;
        if !seen.insert(t.as_str()) {
            return Err(PkiError::Duplicate(t.clone()));
        }
    }
    let p = PkiPaths::new(dir);
    let issuer = load_issuer(&p)?;
    let _lock = DirLock::acquire(dir)?;
    if !force {
        let lines = read_lines(&p.issued)?;
        if let Some(l) = lines.iter().find(|l| seen.contains(l.terminal.as_str())) {
            return Err(PkiError::AlreadyIssued(l.terminal.clone()));
        }
    }
    fs::create_dir_all(&p.terminals).map_err(io(&p.terminals))?;
    let now = SystemTime::now();
    let mut out = Vec::with_capacity(terminals.len());
    for terminal in terminals {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = terminal_params(terminal);
        let serial = random_serial();
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        let not_after = set_validity(&mut params, now, lifetime)?;
        let cert = params.signed_by(&key, &issuer)?;
        let issued = Issued {
            terminal: terminal.clone(),
            cert: p.terminal_cert(terminal),
            key: p.terminal_key(terminal),
            serial_hex,
        };
        write_secret(&issued.key, key.serialize_pem().as_bytes())?;
        write_public(&issued.cert, cert.pem().as_bytes())?;
        append_line(
            &p.issued,
            terminal,
            &issued.serial_hex,
            &rfc3339(unix_secs(not_after)),
        )?;
        out.push(issued);
    }
    Ok(out)
}

/// The offline signer: checks every CSR file (PEM or DER) in `csrs` first (and, when
/// `inventory` is given, that its terminal is in it), then signs each for `lifetime` and writes
/// `out_dir/<terminal>.pem`. Nothing is signed if any CSR is refused.
pub fn sign_csr_files(
    dir: &Path,
    csrs: &[PathBuf],
    out_dir: &Path,
    lifetime: Duration,
    inventory: Option<&HashSet<TerminalId>>,
) -> Result<Vec<(TerminalId, PathBuf)>, PkiError> {
    let mut checked = Vec::with_capacity(csrs.len());
    let mut seen = HashSet::new();
    for path in csrs {
        let bytes = fs::read(path).map_err(io(path))?;
        let der = pem_or_der(&bytes, "CERTIFICATE REQUEST").ok_or_else(|| PkiError::Csr {
            path: path.clone(),
            source: CsrError::Undecodable,
        })?;
        let csr = check_csr(&der, None).map_err(|source| PkiError::Csr {
            path: path.clone(),
            source,
        })?;
        if inventory.is_some_and(|inv| !inv.contains(&csr.terminal)) {
            return Err(PkiError::NotInInventory {
                path: path.clone(),
                terminal: csr.terminal.to_string(),
            });
        }
        if !seen.insert(csr.terminal.clone()) {
            return Err(PkiError::Duplicate(csr.terminal.to_string()));
        }
        checked.push(csr);
    }
    let signer = Signer::open(dir, lifetime)?;
    fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let now = SystemTime::now();
    let mut out = Vec::with_capacity(checked.len());
    for csr in &checked {
        let signed = signer.sign_checked(csr, now)?;
        let path = out_dir.join(format!("{}.pem", csr.terminal));
        write_public(&path, signed.pem.as_bytes())?;
        out.push((csr.terminal.clone(), path));
    }
    Ok(out)
}

/// Revokes every unrevoked certificate issued to `terminal` and regenerates `crl.pem`.
/// Returns the revoked serials (hex).
pub fn revoke(dir: &Path, terminal: &str) -> Result<Vec<String>, PkiError> {
    let p = PkiPaths::new(dir);
    let issuer = load_issuer(&p)?;
    let _lock = DirLock::acquire(dir)?;
    let revoked = read_lines(&p.revoked)?;
    let serials: Vec<String> = read_lines(&p.issued)?
        .into_iter()
        .filter(|l| l.terminal == terminal)
        .filter(|l| !revoked.iter().any(|r| r.serial_hex == l.serial_hex))
        .map(|l| l.serial_hex)
        .collect();
    if serials.is_empty() {
        return Err(PkiError::NotIssued(terminal.to_owned()));
    }
    let now = SystemTime::now();
    let stamp = rfc3339(unix_secs(now));
    for s in &serials {
        append_line(&p.revoked, terminal, s, &stamp)?;
    }
    write_crl(&p, &issuer, now)?;
    Ok(serials)
}

/// Every certificate in `issued.tsv`, oldest first, with whether it was revoked.
pub fn list(dir: &Path) -> Result<Vec<CertEntry>, PkiError> {
    let p = PkiPaths::new(dir);
    let revoked: HashSet<String> = read_lines(&p.revoked)?
        .into_iter()
        .map(|l| l.serial_hex)
        .collect();
    let now = unix_secs(SystemTime::now());
    Ok(read_lines(&p.issued)?
        .into_iter()
        .map(|l| CertEntry {
            revoked: revoked.contains(&l.serial_hex),
            expired: parse_rfc3339(&l.time).is_some_and(|t| t < now),
            terminal: l.terminal,
            serial_hex: l.serial_hex,
            not_after: l.time,
        })
        .collect())
}

/// The serial numbers (raw bytes, as in the certificates) a PEM CRL file lists.
pub fn crl_serials(path: &Path) -> Result<HashSet<Vec<u8>>, PkiError> {
    let bytes = fs::read(path).map_err(io(path))?;
    let der = pem_or_der(&bytes, "X509 CRL").ok_or_else(|| PkiError::Parse {
        path: path.to_owned(),
        what: "not a PEM or DER CRL".into(),
    })?;
    let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|e| PkiError::Parse {
        path: path.to_owned(),
        what: e.to_string(),
    })?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect())
}

/// `not_after` of the first certificate in a PEM file, Unix seconds.
pub fn cert_not_after(path: &Path) -> Result<i64, PkiError> {
    let bytes = fs::read(path).map_err(io(path))?;
    let der = pem_or_der(&bytes, "CERTIFICATE").ok_or_else(|| PkiError::Parse {
        path: path.to_owned(),
        what: "no certificate".into(),
    })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Parse {
        path: path.to_owned(),
        what: e.to_string(),
    })?;
    Ok(cert.validity().not_after.timestamp())
}

/// The DER inside the first PEM block labelled `label`, or the bytes themselves if they are
/// not PEM.
fn pem_or_der(bytes: &[u8], label: &str) -> Option<Vec<u8>> {
    if bytes.starts_with(b"-----BEGIN") {
        let mut rest = bytes;
        while let Ok((r, pem)) = x509_parser::pem::parse_x509_pem(rest) {
            if pem.label == label {
                return Some(pem.contents);
            }
            rest = r;
        }
        None
    } else if bytes.first() == Some(&0x30) {
        Some(bytes.to_vec())
    } else {
        None
    }
}

fn terminal_params(terminal: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, terminal);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params
}

fn load_issuer(p: &PkiPaths) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key_pem = fs::read_to_string(&p.ca_key).map_err(io(&p.ca_key))?;
    let cert_pem = fs::read_to_string(&p.ca_cert).map_err(io(&p.ca_cert))?;
    let key = KeyPair::from_pem(&key_pem)?;
    Ok(Issuer::from_ca_cert_pem(&cert_pem, key)?)
}

/// Regenerates `crl.pem` from `revoked.tsv`, leaving out certificates that expired more than a
/// day ago (they are refused for their date anyway), so a fleet of short-lived certificates
/// keeps a short CRL.
fn write_crl(p: &PkiPaths, issuer: &Issuer<'_, KeyPair>, now: SystemTime) -> Result<(), PkiError> {
    let revoked: Vec<Line> = read_lines(&p.revoked)?;
    let expiry: std::collections::HashMap<String, String> = read_lines(&p.issued)?
        .into_iter()
        .map(|l| (l.serial_hex, l.time))
        .collect();
    let horizon = unix_secs(now).saturating_sub(86_400);
    let mut certs = Vec::with_capacity(revoked.len());
    for (i, l) in revoked.iter().enumerate() {
        let bad = || PkiError::Malformed {
            path: p.revoked.clone(),
            line: i + 1,
        };
        if expiry
            .get(&l.serial_hex)
            .and_then(|t| parse_rfc3339(t))
            .is_some_and(|not_after| not_after < horizon)
        {
            continue;
        }
        let serial = unhex(&l.serial_hex).ok_or_else(bad)?;
        let at = parse_rfc3339(&l.time).ok_or_else(bad)?;
        certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: asn1_time(UNIX_EPOCH + Duration::from_secs(at))?.to_datetime(),
            reason_code: None,
            invalidity_date: None,
        });
    }
    let crl = CertificateRevocationListParams {
        this_update: asn1_time(now)?.to_datetime(),
        next_update: asn1_time(now + days(CRL_VALID_DAYS))?.to_datetime(),
        // Seconds since the epoch grow with every regeneration, as a CRL number must.
        crl_number: SerialNumber::from(unix_secs(now)),
        issuing_distribution_point: None,
        revoked_certs: certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)?;
    // Write then rename, so a collector polling the file never reads half a CRL.
    let tmp = p.crl.with_extension("pem.tmp");
    write_public(&tmp, crl.pem()?.as_bytes())?;
    fs::rename(&tmp, &p.crl).map_err(io(&p.crl))
}

/// Sets `not_before` (backdated by an hour, at most a tenth of the lifetime) and `not_after`
/// (`now + lifetime`); returns `not_after`.
fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    lifetime: Duration,
) -> Result<SystemTime, PkiError> {
    let not_after = now + lifetime;
    let backdate = Duration::from_secs(BACKDATE_SECS).min(lifetime / 10);
    params.not_before = asn1_time(now - backdate)?.to_datetime();
    params.not_after = asn1_time(not_after)?.to_datetime();
    Ok(not_after)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// rcgen's date type comes from the `time` crate; x509-parser builds it for us, so the
/// collector needs no direct `time` dependency (call `.to_datetime()` on the result).
fn asn1_time(t: SystemTime) -> Result<ASN1Time, PkiError> {
    let secs = i64::try_from(unix_secs(t)).unwrap_or(i64::MAX);
    ASN1Time::from_timestamp(secs).map_err(|_| PkiError::TimeOutOfRange)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // Positive and minimally encoded: clear the sign bit, keep the first byte non-zero.
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_of(path: &Path) -> Vec<u8> {
        let pem = fs::read(path).expect("read cert");
        let (_, p) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
        p.contents
    }

    #[test]
    fn init_issue_revoke() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pki");
        init(&dir, "collector.example").expect("init");
        assert!(matches!(
            init(&dir, "x"),
            Err(PkiError::AlreadyInitialised(_))
        ));
        let p = PkiPaths::new(&dir);
        for f in [
            &p.ca_cert,
            &p.ca_key,
            &p.collector_cert,
            &p.collector_key,
            &p.crl,
            &p.issued,
            &p.revoked,
        ] {
            assert!(f.exists(), "{} missing", f.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p.ca_key).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }

        let der = cert_of(&p.collector_cert);
        let (_, server) = x509_parser::parse_x509_certificate(&der).expect("parse");
        let san = server
            .subject_alternative_name()
            .expect("ok")
            .expect("has SAN");
        let names = format!("{:?}", san.value.general_names);
        assert!(
            names.contains("collector.example") && names.contains("localhost"),
            "{names}"
        );
        assert!(
            server
                .extended_key_usage()
                .expect("ok")
                .expect("eku")
                .value
                .server_auth
        );

        assert!(matches!(
            issue(&dir, "bad id", false),
            Err(PkiError::InvalidTerminal { .. })
        ));
        let issued = issue(&dir, "T-1", false).expect("issue");
        let client_der = cert_of(&issued.cert);
        let (_, client) = x509_parser::parse_x509_certificate(&client_der).expect("parse");
        let cn = client
            .subject()
            .iter_common_name()
            .next()
            .expect("cn")
            .as_str()
            .expect("str");
        assert_eq!(cn, "T-1");
        assert!(
            client
                .extended_key_usage()
                .expect("ok")
                .expect("eku")
                .value
                .client_auth
        );
        assert_eq!(hex(client.raw_serial()), issued.serial_hex);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&issued.key)
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(
            issue(&dir, "T-1", false),
            Err(PkiError::AlreadyIssued(_))
        ));
        let second = issue(&dir, "T-1", true).expect("forced");
        assert_ne!(second.serial_hex, issued.serial_hex);

        assert!(matches!(revoke(&dir, "T-9"), Err(PkiError::NotIssued(_))));
        let revoked = revoke(&dir, "T-1").expect("revoke");
        assert_eq!(revoked.len(), 2);
        assert!(matches!(revoke(&dir, "T-1"), Err(PkiError::NotIssued(_))));
        let crl_pem = fs::read(&p.crl).expect("crl");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&crl_pem).expect("pem");
        let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("crl parses");
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex(r.raw_serial()))
            .collect();
        assert!(serials.contains(&issued.serial_hex) && serials.contains(&second.serial_hex));
    }

    #[test]
    fn bulk_issue_checks_everything_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pki");
        init(&dir, "c").expect("init");
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let day = Duration::from_secs(86_400);
        assert!(matches!(
            issue_many(&dir, &ids(&["A", "B", "A"]), false, day),
            Err(PkiError::Duplicate(t)) if t == "A"
        ));
        assert!(matches!(
            issue_many(&dir, &ids(&["A", "b c"]), false, day),
            Err(PkiError::InvalidTerminal { .. })
        ));
        assert!(list(&dir).expect("list").is_empty(), "nothing issued");
        let issued = issue_many(&dir, &ids(&["A", "B"]), false, day).expect("issued");
        assert_eq!(issued.len(), 2);
        assert!(matches!(
            issue_many(&dir, &ids(&["C", "B"]), false, day),
            Err(PkiError::AlreadyIssued(t)) if t == "B"
        ));
        assert!(!PkiPaths::new(&dir).terminal_cert("C").exists());
        let entries = list(&dir).expect("list");
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| !e.revoked && !e.expired));
    }

    #[test]
    fn offline_signer_checks_every_csr_and_the_inventory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pki");
        init(&dir, "c").expect("init");
        let csr_file = |cn: &str, pem: bool| {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
            let mut params = CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let csr = params.serialize_request(&key).expect("csr");
            let path = tmp.path().join(format!("{cn}.csr"));
            if pem {
                fs::write(&path, csr.pem().expect("pem")).expect("write");
            } else {
                fs::write(&path, csr.der()).expect("write");
            }
            path
        };
        let a = csr_file("T-A", true);
        let b = csr_file("T-B", false);
        let out = tmp.path().join("out");
        let day = Duration::from_secs(86_400);
        let inv: HashSet<TerminalId> = [TerminalId::new("T-A").expect("id")].into();
        assert!(matches!(
            sign_csr_files(&dir, &[a.clone(), b.clone()], &out, day, Some(&inv)),
            Err(PkiError::NotInInventory { terminal, .. }) if terminal == "T-B"
        ));
        assert!(list(&dir).expect("list").is_empty(), "nothing signed");
        let junk = tmp.path().join("junk.csr");
        fs::write(
            &junk,
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        )
        .expect("write");
        assert!(matches!(
            sign_csr_files(&dir, &[a.clone(), junk], &out, day, None),
            Err(PkiError::Csr { .. })
        ));
        let signed = sign_csr_files(&dir, &[a, b], &out, day, None).expect("signed");
        assert_eq!(signed.len(), 2);
        assert!(out.join("T-A.pem").exists() && out.join("T-B.pem").exists());
        let not_after = cert_not_after(&out.join("T-B.pem")).expect("parses");
        let now = i64::try_from(unix_secs(SystemTime::now())).expect("now");
        assert!(
            (not_after - now - 86_400).abs() < 60,
            "{not_after} vs {now}"
        );
        assert_eq!(list(&dir).expect("list").len(), 2);
    }

    #[test]
    fn crl_lists_revoked_serials_and_drops_long_expired_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pki");
        init(&dir, "c").expect("init");
        let p = PkiPaths::new(&dir);
        let live = issue(&dir, "LIVE", false).expect("issue");
        // A certificate that expired two days ago, revoked (as if issued long ago).
        append_line(
            &p.issued,
            "OLD",
            "0a0b",
            &rfc3339(unix_secs(SystemTime::now()) - 2 * 86_400),
        )
        .expect("append");
        revoke(&dir, "OLD").expect("revoke old");
        revoke(&dir, "LIVE").expect("revoke live");
        let serials = crl_serials(&p.crl).expect("crl");
        assert!(serials.contains(&unhex(&live.serial_hex).expect("hex")));
        assert!(
            !serials.contains(&vec![0x0a, 0x0b]),
            "expired entries are pruned"
        );
        assert_eq!(serials.len(), 1);
    }
}
