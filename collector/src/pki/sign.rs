//! Signing certificate signing requests: the checks every CSR passes (signature, key type,
//! subject CN = the terminal id) and [`Signer`], the fleet CA loaded once for online enrolment
//! and renewal. The offline signer (`storepulse-collector pki sign`) uses the same checks.
//!
//! Only the CSR's public key and CN are used: the certificate's other contents (validity, key
//! usage clientAuth, serial, authority key id) are the CA's choice, whatever the CSR asks for.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, DnValue, ExtendedKeyUsagePurpose,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateSigningRequestDer;
use storepulse_shared::ids::IdError;
use storepulse_shared::{MAX_CSR_BYTES, TerminalId};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use super::files::{DirLock, append_line, hex, rfc3339};
use super::{PkiError, PkiPaths, load_issuer, random_serial, set_validity, unix_secs};

/// Why a CSR was refused. Every variant is about the request itself and may be told to the
/// device that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Larger than [`MAX_CSR_BYTES`].
    #[error("the CSR is {len} bytes, the maximum is {MAX_CSR_BYTES}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not a DER-encoded PKCS#10 request.
    #[error("the CSR is not a DER-encoded PKCS#10 request")]
    Undecodable,
    /// The request's signature does not verify with its own key (no proof of possession).
    #[error("the CSR's signature does not verify")]
    BadSignature,
    /// A key type the fleet does not use.
    #[error("unsupported key in the CSR ({0}); use ECDSA P-256, ECDSA P-384 or Ed25519")]
    UnsupportedKey(&'static str),
    /// The request asks for an extension this CA does not read.
    #[error("the CSR requests an extension this CA does not support")]
    UnsupportedExtension,
    /// The subject has no usable common name.
    #[error("the CSR's subject has no common name")]
    NoCommonName,
    /// The CN is not a valid terminal id.
    #[error("the CSR's common name {cn:?} is not a valid terminal id: {source}")]
    InvalidCommonName {
        /// The CN.
        cn: String,
        /// Why.
        source: IdError,
    },
    /// The CN is another terminal than the one asking.
    #[error("the CSR's common name {cn:?} differs from the terminal id {terminal}")]
    CommonNameMismatch {
        /// The CN.
        cn: String,
        /// The terminal asking.
        terminal: String,
    },
}

/// Why [`Signer::sign`] issued nothing.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The request is wrong (tell the device).
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The CA failed (tell the operator).
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// A checked CSR: the terminal it names and its public key.
#[derive(Debug)]
pub struct CheckedCsr {
    /// The subject CN, a valid terminal id.
    pub terminal: TerminalId,
    request: CertificateSigningRequestParams,
}

/// A certificate just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// X.509, DER.
    pub der: Vec<u8>,
    /// The same, PEM.
    pub pem: String,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
    /// Not after, Unix seconds.
    pub not_after_unix_secs: u64,
}

/// The fleet CA, loaded once, signing checked CSRs with a fixed certificate lifetime and
/// recording each certificate in `issued.tsv` (under the directory lock, fsync'd) before
/// returning it, so `pki revoke` finds it.
#[derive(Debug)]
pub struct Signer {
    dir: std::path::PathBuf,
    paths: PkiPaths,
    issuer: Issuer<'static, KeyPair>,
    lifetime: Duration,
}

/// Checks a CSR: size, DER, signature, key type, no unsupported extension, a CN that is a valid
/// terminal id and, when `expected` is given, that terminal.
pub fn check_csr(der: &[u8], expected: Option<&TerminalId>) -> Result<CheckedCsr, CsrError> {
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge { len: der.len() });
    }
    check_key(der)?;
    let request =
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
            .map_err(|e| match e {
                rcgen::Error::InvalidCertificationRequestSignature => CsrError::BadSignature,
                rcgen::Error::UnsupportedExtension => CsrError::UnsupportedExtension,
                rcgen::Error::UnsupportedSignatureAlgorithm => {
                    CsrError::UnsupportedKey("signature")
                }
                _ => CsrError::Undecodable,
            })?;
    let cn = match request.params.distinguished_name.get(&DnType::CommonName) {
        Some(DnValue::Utf8String(s)) => s.clone(),
        Some(DnValue::PrintableString(s)) => s.as_str().to_owned(),
        Some(DnValue::Ia5String(s)) => s.as_str().to_owned(),
        _ => return Err(CsrError::NoCommonName),
    };
    let terminal = TerminalId::new(&cn).map_err(|source| CsrError::InvalidCommonName {
        cn: cn.clone(),
        source,
    })?;
    if let Some(expected) = expected
        && *expected != terminal
    {
        return Err(CsrError::CommonNameMismatch {
            cn,
            terminal: expected.to_string(),
        });
    }
    Ok(CheckedCsr { terminal, request })
}

/// The key must be ECDSA P-256 (signed with SHA-256), ECDSA P-384 (SHA-384) or Ed25519, and
/// the signature algorithm must match it: rcgen takes the key type from the signature
/// algorithm, so a P-384 key signed with SHA-256 would otherwise become a broken certificate.
fn check_key(der: &[u8]) -> Result<(), CsrError> {
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|_| CsrError::Undecodable)?;
    let spki = &csr.certification_request_info.subject_pki;
    let sig = &csr.signature_algorithm.algorithm;
    if spki.algorithm.algorithm == OID_SIG_ED25519 {
        return if *sig == OID_SIG_ED25519 {
            Ok(())
        } else {
            Err(CsrError::UnsupportedKey(
                "Ed25519 key with another signature",
            ))
        };
    }
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(CsrError::UnsupportedKey("not an elliptic-curve key"));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    match curve {
        Some(c) if c == OID_EC_P256 && *sig == OID_SIG_ECDSA_WITH_SHA256 => Ok(()),
        Some(c) if c == OID_NIST_EC_P384 && *sig == OID_SIG_ECDSA_WITH_SHA384 => Ok(()),
        Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Err(CsrError::UnsupportedKey(
            "curve and signature hash do not match",
        )),
        _ => Err(CsrError::UnsupportedKey("curve")),
    }
}

impl Signer {
    /// Loads the CA certificate and key from the PKI directory `dir`.
    pub fn open(dir: &Path, lifetime: Duration) -> Result<Self, PkiError> {
        let paths = PkiPaths::new(dir);
        let issuer = load_issuer(&paths)?;
        Ok(Self {
            dir: dir.to_owned(),
            paths,
            issuer,
            lifetime,
        })
    }

    /// The lifetime of the certificates it issues.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Checks `csr_der` (its CN must be `terminal`), issues a certificate valid from `now`
    /// (backdated a little for clock skew) for the signer's lifetime, and records it.
    pub fn sign(
        &self,
        csr_der: &[u8],
        terminal: &TerminalId,
        now: SystemTime,
    ) -> Result<Signed, SignError> {
        let csr = check_csr(csr_der, Some(terminal))?;
        Ok(self.sign_checked(&csr, now)?)
    }

    /// Issues a certificate for an already checked CSR and records it in `issued.tsv`.
    pub fn sign_checked(&self, csr: &CheckedCsr, now: SystemTime) -> Result<Signed, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, csr.terminal.as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        let not_after = set_validity(&mut params, now, self.lifetime)?;
        let cert = params.signed_by(&csr.request.public_key, &self.issuer)?;
        let not_after_unix_secs = unix_secs(not_after);
        {
            let _lock = DirLock::acquire(&self.dir)?;
            append_line(
                &self.paths.issued,
                csr.terminal.as_str(),
                &serial_hex,
                &rfc3339(not_after_unix_secs),
            )?;
        }
        Ok(Signed {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            serial_hex,
            not_after_unix_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};

    use super::*;

    fn csr(cn: &str, alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = KeyPair::generate_for(alg).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serialize_request(&key).expect("csr").der().to_vec()
    }

    fn t(s: &str) -> TerminalId {
        TerminalId::new(s).expect("valid")
    }

    #[test]
    fn accepts_the_three_key_types() {
        for alg in [
            &PKCS_ECDSA_P256_SHA256,
            &PKCS_ECDSA_P384_SHA384,
            &PKCS_ED25519,
        ] {
            let c = check_csr(&csr("T-1", alg), Some(&t("T-1"))).expect("accepted");
            assert_eq!(c.terminal, t("T-1"));
        }
    }

    #[test]
    fn refuses_bad_requests() {
        let good = csr("T-1", &PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            check_csr(&good, Some(&t("T-2"))).map(|_| ()),
            Err(CsrError::CommonNameMismatch {
                cn: "T-1".into(),
                terminal: "T-2".into()
            })
        );
        assert!(matches!(
            check_csr(&csr("bad id", &PKCS_ECDSA_P256_SHA256), None),
            Err(CsrError::InvalidCommonName { .. })
        ));
        assert_eq!(
            check_csr(b"not a csr", None).map(|_| ()),
            Err(CsrError::Undecodable)
        );
        assert_eq!(
            check_csr(&vec![0x30; MAX_CSR_BYTES + 1], None).map(|_| ()),
            Err(CsrError::TooLarge {
                len: MAX_CSR_BYTES + 1
            })
        );
        // A flipped bit in the signature (the last bytes) breaks proof of possession.
        let mut forged = good.clone();
        let n = forged.len();
        forged[n - 3] ^= 0x01;
        assert_eq!(
            check_csr(&forged, None).map(|_| ()),
            Err(CsrError::BadSignature)
        );
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let no_cn = params.serialize_request(&key).expect("csr").der().to_vec();
        assert_eq!(
            check_csr(&no_cn, None).map(|_| ()),
            Err(CsrError::NoCommonName)
        );
    }

    #[test]
    fn signer_issues_client_certificates_and_records_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pki");
        super::super::init(&dir, "collector.example").expect("init");
        let signer = Signer::open(&dir, Duration::from_secs(600)).expect("open");
        let now = SystemTime::now();
        let signed = signer
            .sign(&csr("T-9", &PKCS_ECDSA_P256_SHA256), &t("T-9"), now)
            .expect("signed");
        let (_, cert) = x509_parser::parse_x509_certificate(&signed.der).expect("parses");
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok());
        assert_eq!(cn, Some("T-9"));
        let validity = cert.validity();
        let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
        // 600 s from now, backdated by a tenth of the lifetime.
        assert_eq!(lifetime, 660);
        assert_eq!(
            u64::try_from(validity.not_after.timestamp()).ok(),
            Some(signed.not_after_unix_secs)
        );
        assert!(
            cert.extended_key_usage()
                .expect("ok")
                .expect("eku")
                .value
                .client_auth
        );
        let issued = std::fs::read_to_string(dir.join("issued.tsv")).expect("issued");
        assert!(issued.contains(&format!("T-9\t{}\t", signed.serial_hex)));
        assert!(matches!(
            signer.sign(&csr("T-8", &PKCS_ECDSA_P256_SHA256), &t("T-9"), now),
            Err(SignError::Csr(CsrError::CommonNameMismatch { .. }))
        ));
    }
}
