//! Validated identity newtypes: wire strings become these at the edge, so cores never see raw
//! strings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier or label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value is empty.
    #[error("must not be empty")]
    Empty,
    /// The value is longer than allowed.
    #[error("is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Actual length in bytes.
        len: usize,
        /// Maximum length in bytes.
        max: usize,
    },
    /// The value contains a character that is not allowed.
    #[error("contains {0:?}, allowed are A-Z a-z 0-9 and . _ : -")]
    BadChar(char),
    /// The value contains a control character.
    #[error("contains a control character")]
    Control,
    /// A response code contains something other than printable ASCII without spaces.
    #[error("contains {0:?}; codes are printable ASCII without spaces")]
    NotPrintable(char),
}

/// Maximum length of an identifier (terminal, merchant, store) in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Maximum length of a label value in bytes.
pub const MAX_LABEL_BYTES: usize = 128;
/// Maximum length of a transaction response code in bytes (Alipay sub-codes reach 50).
pub const MAX_TXN_CODE_BYTES: usize = 64;

/// A terminal identifier: 1 to 64 ASCII letters, digits, `.`, `_`, `:` or `-`.
///
/// The same syntax applies to merchant and store identifiers, which travel as [`Label`]s but are
/// checked with [`validate_id`] by the collector.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TerminalId(String);

/// A free-form label value (region, city, carrier, ...): 1 to 128 bytes of UTF-8 without control
/// characters. Chinese place names are fine.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

/// A per-terminal record sequence number. It only grows within one spool epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Seq(pub u64);

/// Checks the identifier syntax shared by terminal, merchant and store ids.
pub fn validate_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong {
            len: s.len(),
            max: MAX_ID_BYTES,
        });
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        Some(c) => Err(IdError::BadChar(c)),
        None => Ok(()),
    }
}

/// Checks a transaction response code: 1 to 64 bytes of printable ASCII without spaces
/// (`00`, `A5`, `SYSTEMERROR`, `ACQ.TRADE_HAS_SUCCESS`, `aop.invalid-app-auth-token`).
pub fn validate_txn_code(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_TXN_CODE_BYTES {
        return Err(IdError::TooLong {
            len: s.len(),
            max: MAX_TXN_CODE_BYTES,
        });
    }
    match s.chars().find(|c| !('!'..='~').contains(c)) {
        Some(c) => Err(IdError::NotPrintable(c)),
        None => Ok(()),
    }
}

/// Checks the label syntax.
pub fn validate_label(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_LABEL_BYTES {
        return Err(IdError::TooLong {
            len: s.len(),
            max: MAX_LABEL_BYTES,
        });
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::Control);
    }
    Ok(())
}

impl TerminalId {
    /// Parses and validates a terminal id.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        validate_id(&s)?;
        Ok(Self(s))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Label {
    /// Parses and validates a label value.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        validate_label(&s)?;
        Ok(Self(s))
    }

    /// The label as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TerminalId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl From<TerminalId> for String {
    fn from(t: TerminalId) -> String {
        t.0
    }
}

impl TryFrom<String> for Label {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.0
    }
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TerminalId({:?})", self.0)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({:?})", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(TerminalId::new("T-0001.a:b_c").is_ok());
        assert_eq!(TerminalId::new(""), Err(IdError::Empty));
        assert_eq!(TerminalId::new("T 1"), Err(IdError::BadChar(' ')));
        assert!(matches!(
            TerminalId::new("x".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
        assert!(Label::new("上海").is_ok());
        assert_eq!(Label::new("a\nb"), Err(IdError::Control));
    }

    #[test]
    fn txn_codes_are_checked() {
        for ok in [
            "00",
            "A5",
            "SYSTEMERROR",
            "ACQ.TRADE_HAS_SUCCESS",
            "aop.invalid-app-auth-token-no-api",
        ] {
            assert_eq!(validate_txn_code(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_txn_code(""), Err(IdError::Empty));
        assert_eq!(validate_txn_code("A B"), Err(IdError::NotPrintable(' ')));
        assert_eq!(validate_txn_code("é"), Err(IdError::NotPrintable('é')));
        assert!(matches!(
            validate_txn_code(&"x".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
        // Every code of the embedded table passes.
        for row in crate::taxonomy::all() {
            assert_eq!(validate_txn_code(&row.code), Ok(()), "{}", row.code);
        }
    }

    #[test]
    fn invalid_id_is_rejected_when_decoded() {
        let bytes = postcard::to_stdvec(&"bad id".to_string()).expect("encode");
        assert!(postcard::from_bytes::<TerminalId>(&bytes).is_err());
    }
}
