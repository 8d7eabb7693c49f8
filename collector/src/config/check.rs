//! The checks `storepulse-collector check-config` adds to reading the file: what `serve` would
//! meet at start beyond the file itself (the store directory, the certificates' names and
//! dates), said in one line each. Binding the listen addresses is left out on purpose: a
//! running collector holds them while its next config is checked.

use std::path::Path;

use x509_parser::extensions::GeneralName;

use super::TlsConfig;

/// Days before a certificate's end from which `check-config` warns.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Whether the store directory can be created or written: the directory itself if it exists,
/// else its nearest existing ancestor (`serve` creates the rest). Writes and removes a probe
/// file; creates nothing else.
pub fn store_dir(path: &Path) -> Result<String, String> {
    let mut dir = path;
    while !dir.exists() {
        dir = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if dir == Path::new(".") {
            break;
        }
    }
    if !dir.is_dir() {
        return Err(format!("store.path: {} is not a directory", dir.display()));
    }
    let probe = dir.join(".storepulse-check-config");
    std::fs::write(&probe, b"probe")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("store.path: {} cannot be written: {e}", dir.display()))?;
    Ok(if dir == path {
        format!("store {} writable", path.display())
    } else {
        format!(
            "store {} will be created (in writable {})",
            path.display(),
            dir.display()
        )
    })
}

/// The collector's and the CA's certificates: the names agents may use as `server_name`, and
/// how long each has left. Expired is an error; fewer than [`EXPIRY_WARNING_DAYS`] days a
/// warning (in the line).
pub fn certificates(tls: &TlsConfig, now_unix_secs: i64) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for (what, path) in [("tls.cert", &tls.cert), ("tls.ca_cert", &tls.ca_cert)] {
        let pem = std::fs::read(path).map_err(|e| format!("{what}: {}: {e}", path.display()))?;
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| format!("{what}: {}: not PEM: {e}", path.display()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&block.contents)
            .map_err(|e| format!("{what}: {}: not a certificate: {e}", path.display()))?;
        let not_after = cert.validity().not_after.timestamp();
        let days = (not_after - now_unix_secs).div_euclid(86_400);
        if not_after <= now_unix_secs {
            return Err(format!(
                "{what}: {} expired {} day(s) ago",
                path.display(),
                -days
            ));
        }
        let warn = if days < EXPIRY_WARNING_DAYS {
            " (renew it soon)"
        } else {
            ""
        };
        let names: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some((*d).to_owned()),
                        GeneralName::IPAddress(b) if b.len() == 4 => {
                            Some(format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        lines.push(if what == "tls.cert" {
            format!(
                "collector certificate: {days} days left{warn}; agents may use server_name {}",
                if names.is_empty() {
                    "(none: the certificate has no DNS name)".to_owned()
                } else {
                    names.join(", ")
                }
            )
        } else {
            format!("fleet CA: {days} days left{warn}")
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn store_and_certificates_of_a_fresh_pki() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = tmp.path().join("pki");
        crate::pki::init(&pki, "collector.test.local").expect("pki");
        let tls = TlsConfig {
            ca_cert: pki.join("ca.pem"),
            cert: pki.join("collector.pem"),
            key: pki.join("collector.key"),
            crl: None,
            crl_poll_interval: Duration::from_secs(5),
        };
        let now = 1_800_000_000;
        let now = now.max(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs() as i64,
        );
        let lines = certificates(&tls, now).expect("fresh certificates");
        assert!(lines[0].contains("collector.test.local"), "{lines:?}");
        assert!(lines[0].contains("127.0.0.1"), "{lines:?}");
        assert!(lines[1].starts_with("fleet CA:"), "{lines:?}");
        let err = certificates(&tls, now + 100 * 365 * 86_400).expect_err("expired");
        assert!(err.contains("expired"), "{err}");

        let store = tmp.path().join("a/b/store");
        assert!(
            store_dir(&store)
                .expect("creatable")
                .contains("will be created")
        );
        std::fs::write(tmp.path().join("file"), b"x").expect("write");
        assert!(store_dir(&tmp.path().join("file/store")).is_err());
    }
}
