//! Fleet PKI: the CA, the collector's server certificate, per-terminal client certificates and
//! the CRL, as files in one directory (layout in `docs/CONTRACT.md`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevokedCertParams, SanType, SerialNumber,
};
use storepulse_shared::civil::{civil_from_days, days_from_civil};
use storepulse_shared::ids::{IdError, validate_id};
use x509_parser::time::ASN1Time;

/// Default DNS name in the collector certificate.
pub const DEFAULT_SERVER_NAME: &str = "collector.storepulse.local";

/// Common name of the fleet CA.
pub const CA_COMMON_NAME: &str = "storepulse fleet CA";

/// Validity of terminal certificates, days.
pub const TERMINAL_CERT_DAYS: u64 = 730;
/// Validity of the CA and collector certificates, days.
const CA_CERT_DAYS: u64 = 3650;
/// How far `not_before` is backdated to tolerate clock skew, seconds.
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
}

/// Paths of a freshly issued terminal certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, mode 0600).
    pub key: PathBuf,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
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

struct Line {
    terminal: String,
    serial_hex: String,
    time: String,
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
    set_validity(&mut ca, now, CA_CERT_DAYS)?;
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
    set_validity(&mut server, now, CA_CERT_DAYS)?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    write_secret(&p.ca_key, issuer.key().serialize_pem().as_bytes())?;
    write_public(&p.ca_cert, ca_cert.pem().as_bytes())?;
    write_secret(&p.collector_key, server_key.serialize_pem().as_bytes())?;
    write_public(&p.collector_cert, server_cert.pem().as_bytes())?;
    write_public(&p.issued, b"")?;
    write_public(&p.revoked, b"")?;
    write_crl(&p, &issuer, &[], now)
}

/// Issues a client certificate (CN = `terminal`, EKU clientAuth) into `dir/terminals/`.
///
/// Refuses an invalid terminal id, and a second certificate for the same terminal unless
/// `force` is set.
pub fn issue(dir: &Path, terminal: &str, force: bool) -> Result<Issued, PkiError> {
    validate_id(terminal).map_err(|source| PkiError::InvalidTerminal {
        id: terminal.to_owned(),
        source,
    })?;
    let p = PkiPaths::new(dir);
    let issuer = load_issuer(&p)?;
    let already = read_lines(&p.issued)?
        .iter()
        .any(|l| l.terminal == terminal);
    if already && !force {
        return Err(PkiError::AlreadyIssued(terminal.to_owned()));
    }
    let now = SystemTime::now();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, terminal);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let serial = random_serial();
    let serial_hex = hex(&serial.to_bytes());
    params.serial_number = Some(serial);
    let not_after = set_validity(&mut params, now, TERMINAL_CERT_DAYS)?;
    let cert = params.signed_by(&key, &issuer)?;

    fs::create_dir_all(&p.terminals).map_err(io(&p.terminals))?;
    let issued = Issued {
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
    Ok(issued)
}

/// Revokes every unrevoked certificate issued to `terminal` and regenerates `crl.pem`.
/// Returns the revoked serials (hex).
pub fn revoke(dir: &Path, terminal: &str) -> Result<Vec<String>, PkiError> {
    let p = PkiPaths::new(dir);
    let issuer = load_issuer(&p)?;
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
    write_crl(&p, &issuer, &read_lines(&p.revoked)?, now)?;
    Ok(serials)
}

fn load_issuer(p: &PkiPaths) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key_pem = fs::read_to_string(&p.ca_key).map_err(io(&p.ca_key))?;
    let cert_pem = fs::read_to_string(&p.ca_cert).map_err(io(&p.ca_cert))?;
    let key = KeyPair::from_pem(&key_pem)?;
    Ok(Issuer::from_ca_cert_pem(&cert_pem, key)?)
}

fn write_crl(
    p: &PkiPaths,
    issuer: &Issuer<'_, KeyPair>,
    revoked: &[Line],
    now: SystemTime,
) -> Result<(), PkiError> {
    let mut certs = Vec::with_capacity(revoked.len());
    for (i, l) in revoked.iter().enumerate() {
        let bad = || PkiError::Malformed {
            path: p.revoked.clone(),
            line: i + 1,
        };
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

fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    valid_days: u64,
) -> Result<SystemTime, PkiError> {
    let not_after = now + days(valid_days);
    params.not_before = asn1_time(now - Duration::from_secs(BACKDATE_SECS))?.to_datetime();
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses what [`rfc3339`] writes.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, se) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let days = days_from_civil(
        i64::try_from(y).ok()?,
        i64::try_from(mo).ok()?,
        i64::try_from(d).ok()?,
    );
    u64::try_from(days)
        .ok()
        .map(|days| days * 86_400 + h * 3600 + mi * 60 + se)
}

fn read_lines(path: &Path) -> Result<Vec<Line>, PkiError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let mut f = l.split('\t');
            match (f.next(), f.next(), f.next(), f.next()) {
                (Some(t), Some(s), Some(time), None) => Ok(Line {
                    terminal: t.to_owned(),
                    serial_hex: s.to_owned(),
                    time: time.to_owned(),
                }),
                _ => Err(PkiError::Malformed {
                    path: path.to_owned(),
                    line: i + 1,
                }),
            }
        })
        .collect()
}

fn append_line(path: &Path, a: &str, b: &str, c: &str) -> Result<(), PkiError> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    writeln!(f, "{a}\t{b}\t{c}")
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    fs::write(path, bytes).map_err(io(path))
}

/// Writes a private key readable by the owner only.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts.open(path).map_err(io(path))?;
        // An existing file keeps its mode on open; force 0600 in case of --force re-issue.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(io(path))
    }
    #[cfg(not(unix))]
    {
        let mut f = opts.open(path).map_err(io(path))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(io(path))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
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
    fn dates_roundtrip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        for s in [0, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(s)), Some(s));
        }
        assert_eq!(parse_rfc3339("2023-11-14 22:13:20Z"), None);
        assert_eq!(unhex("0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(unhex("0g"), None);
    }
}
