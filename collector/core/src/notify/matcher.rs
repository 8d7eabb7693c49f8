//! Label matchers for routes, silences and inhibition rules: `name=value`, `name!=value` and
//! `name=~a|b|c` (one of a `|`-separated list; deliberately not a regex, so the core needs no
//! regex engine and an operator cannot write a pattern that matches more than they meant).

use std::fmt;

use storepulse_shared::LabelKey;

/// How a matcher compares a label's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchOp {
    /// The label equals the value (a missing label equals "").
    Eq(String),
    /// The label differs from the value (a missing label is "").
    NotEq(String),
    /// The label is one of the values.
    OneOf(Vec<String>),
}

/// One condition on one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// Label name (`kind`, `severity`, `maintenance`, or a scope key such as `region`).
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
}

/// Why a matcher could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// No `=`, `!=` or `=~` in the text.
    #[error("matcher {0:?} has no operator (use name=value, name!=value or name=~a|b)")]
    NoOperator(String),
    /// The label name is empty or has characters other than `[A-Za-z0-9_]`.
    #[error("matcher {0:?} has an invalid label name")]
    BadName(String),
}

impl Matcher {
    /// Parses `name=value`, `name!=value` or `name=~a|b|c` (surrounding spaces ignored). A
    /// label key's old short name (`merchant`, `store`, `terminal`) becomes its canonical one.
    pub fn parse(text: &str) -> Result<Self, MatcherError> {
        let t = text.trim();
        let (name, op) = if let Some((n, v)) = t.split_once("!=") {
            (n, MatchOp::NotEq(v.trim().to_owned()))
        } else if let Some((n, v)) = t.split_once("=~") {
            let values = v.split('|').map(|s| s.trim().to_owned()).collect();
            (n, MatchOp::OneOf(values))
        } else if let Some((n, v)) = t.split_once('=') {
            (n, MatchOp::Eq(v.trim().to_owned()))
        } else {
            return Err(MatcherError::NoOperator(text.to_owned()));
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(MatcherError::BadName(text.to_owned()));
        }
        Ok(Self {
            // `merchant=M1` still means the merchant after the keys took their canonical
            // names (`merchant_id`); incident labels always carry the canonical name.
            name: LabelKey::canonical(name).to_owned(),
            op,
        })
    }

    /// Whether `labels` satisfy this matcher.
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        let value = labels
            .iter()
            .find(|(k, _)| *k == self.name)
            .map_or("", |(_, v)| v.as_str());
        match &self.op {
            MatchOp::Eq(v) => value == v,
            MatchOp::NotEq(v) => value != v,
            MatchOp::OneOf(vs) => vs.iter().any(|v| v == value),
        }
    }
}

/// Whether every matcher holds (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &[(String, String)]) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            MatchOp::Eq(v) => write!(f, "{}={}", self.name, v),
            MatchOp::NotEq(v) => write!(f, "{}!={}", self.name, v),
            MatchOp::OneOf(vs) => write!(f, "{}=~{}", self.name, vs.join("|")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parse_and_match() {
        let labels = l(&[("kind", "regional_outage"), ("region", "R02")]);
        for (text, want) in [
            ("kind=regional_outage", true),
            (" region = R02 ", true),
            ("region!=R02", false),
            ("region=~R01|R02", true),
            ("region=~R01|R03", false),
            ("acquirer=", true),
            ("acquirer!=ACQ-A", true),
        ] {
            let m = Matcher::parse(text).expect("parses");
            assert_eq!(m.matches(&labels), want, "{text}");
            assert_eq!(Matcher::parse(&m.to_string()).expect("round trip"), m);
        }
        assert!(matches!(
            Matcher::parse("region"),
            Err(MatcherError::NoOperator(_))
        ));
        assert!(matches!(
            Matcher::parse("re gion=x"),
            Err(MatcherError::BadName(_))
        ));
    }

    #[test]
    fn old_short_label_names_mean_the_canonical_ones() {
        let labels = l(&[("kind", "merchant_config"), ("merchant_id", "M1")]);
        let m = Matcher::parse("merchant=M1").expect("parses");
        assert_eq!(m.name, "merchant_id");
        assert_eq!(m.to_string(), "merchant_id=M1");
        assert!(m.matches(&labels));
        assert_eq!(
            Matcher::parse("store!=S1").expect("parses").name,
            "store_id"
        );
        assert_eq!(Matcher::parse("kind=x").expect("parses").name, "kind");
    }
}
