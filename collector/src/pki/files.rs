//! The PKI directory's bookkeeping files (`issued.tsv`, `revoked.tsv`), key and certificate
//! writes (private keys 0600, fsync'd), the directory lock, and the date and hex helpers they
//! share.

use std::fs;
use std::io::Write;
use std::path::Path;

use storepulse_shared::civil::{civil_from_days, days_from_civil};

use super::PkiError;

/// One line of `issued.tsv` (terminal, serial, not_after) or `revoked.tsv` (terminal, serial,
/// revocation time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) terminal: String,
    pub(crate) serial_hex: String,
    pub(crate) time: String,
}

/// An exclusive lock on the PKI directory (`.lock`), held while a certificate is issued or
/// revoked, so a running collector and `storepulse-collector pki` never interleave their
/// bookkeeping. Released on drop.
#[derive(Debug)]
pub(crate) struct DirLock(fs::File);

impl DirLock {
    /// Blocks until the lock on `dir` is held.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, PkiError> {
        let path = dir.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        f.lock().map_err(io(&path))?;
        Ok(Self(f))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

pub(crate) fn read_lines(path: &Path) -> Result<Vec<Line>, PkiError> {
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

pub(crate) fn append_line(path: &Path, a: &str, b: &str, c: &str) -> Result<(), PkiError> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    writeln!(f, "{a}\t{b}\t{c}")
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let mut f = fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

/// Writes a private key readable by the owner only.
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
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
pub(crate) fn parse_rfc3339(s: &str) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let held = DirLock::acquire(tmp.path()).expect("lock");
        let f = fs::File::open(tmp.path().join(".lock")).expect("open");
        assert!(f.try_lock().is_err(), "a second holder must wait");
        drop(held);
        assert!(f.try_lock().is_ok(), "released on drop");
    }
}
