//! The error-code taxonomy: scheme + code → class, alertable, meaning (zh/en), source.
//!
//! The table is `shared/data/error-codes.csv`, compiled into the binary and parsed once on first
//! use. Unknown codes classify as [`ErrorClass::Other`], not alertable, with `known == false`, so
//! they can be counted and shown.
//!
//! The failure rule lives here too ([`Classification::failure`]): an outcome is a *failure*
//! when it was declined with an alertable code of a class detection watches. Detection, the
//! breakdown rollup and eval's symptom clock all count failures by this one rule.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::message::Scheme;

/// The embedded table.
pub const ERROR_CODES_CSV: &str = include_str!("../data/error-codes.csv");

/// What kind of failure a code signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The cardholder's problem (funds, PIN, expired card): never alerts by itself.
    Cardholder,
    /// A fraud or risk decision: never alerts by itself.
    FraudRisk,
    /// The merchant's record at the acquirer/channel is wrong, missing, closed or restricted.
    MerchantConfig,
    /// The terminal's own settings (not registered, wrong binding).
    TerminalConfig,
    /// The terminal sent something malformed or its hardware/software failed.
    TerminalFault,
    /// Network trouble between terminal and host (timeouts, offline fallbacks).
    Network,
    /// The acquirer's or channel's platform failed or is in maintenance.
    Platform,
    /// The issuer is unreachable or failing.
    Issuer,
    /// Settlement/reconciliation trouble (approved with defect, notice missing).
    Settlement,
    /// Anything else, including approvals and unknown codes.
    Other,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// Scheme.
    pub scheme: Scheme,
    /// Code as returned by the scheme.
    pub code: String,
    /// Meaning in Simplified Chinese.
    pub meaning_zh: String,
    /// Meaning in English.
    pub meaning_en: String,
    /// Class.
    pub class: ErrorClass,
    /// Whether a surge of this code may raise an incident.
    pub alertable: bool,
    /// Where the row comes from.
    pub source_url: String,
}

/// How one outcome classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// The payment went through.
    pub approved: bool,
    /// Failure class (`Other` for approvals and unknown codes).
    pub class: ErrorClass,
    /// May contribute to an incident.
    pub alertable: bool,
    /// The code is in the table (or is a known success code).
    pub known: bool,
}

/// Why the table could not be parsed (a build-time data error; a test guards against it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error-codes.csv line {line}: {reason}")]
pub struct TableError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

static TABLE: LazyLock<HashMap<(Scheme, String), CodeInfo>> =
    LazyLock::new(|| match parse_table(ERROR_CODES_CSV) {
        Ok(rows) => rows
            .into_iter()
            .map(|r| ((r.scheme, r.code.clone()), r))
            .collect(),
        // Invariant: the embedded table is checked by `embedded_table_parses`; an empty map only
        // means every code classifies as unknown.
        Err(_) => HashMap::new(),
    });

impl ErrorClass {
    /// The class's name as used in the table and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cardholder => "cardholder",
            Self::FraudRisk => "fraud_risk",
            Self::MerchantConfig => "merchant_config",
            Self::TerminalConfig => "terminal_config",
            Self::TerminalFault => "terminal_fault",
            Self::Network => "network",
            Self::Platform => "platform",
            Self::Issuer => "issuer",
            Self::Settlement => "settlement",
            Self::Other => "other",
        }
    }

    /// Parses a class name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cardholder" => Self::Cardholder,
            "fraud_risk" => Self::FraudRisk,
            "merchant_config" => Self::MerchantConfig,
            "terminal_config" => Self::TerminalConfig,
            "terminal_fault" => Self::TerminalFault,
            "network" => Self::Network,
            "platform" => Self::Platform,
            "issuer" => Self::Issuer,
            "settlement" => Self::Settlement,
            "other" => Self::Other,
            _ => return None,
        })
    }

    /// Whether detection watches this class: merchant and terminal configuration, terminal
    /// fault, network, platform, issuer and settlement. Cardholder and fraud/risk decisions
    /// are the customer's, `Other` is approvals and unknown codes: never failures.
    pub fn is_watched(self) -> bool {
        !matches!(self, Self::Cardholder | Self::FraudRisk | Self::Other)
    }

    /// Every class, in a stable order.
    pub const ALL: [ErrorClass; 10] = [
        Self::Cardholder,
        Self::FraudRisk,
        Self::MerchantConfig,
        Self::TerminalConfig,
        Self::TerminalFault,
        Self::Network,
        Self::Platform,
        Self::Issuer,
        Self::Settlement,
        Self::Other,
    ];
}

impl Classification {
    /// The failure rule: `Some(class)` when the outcome is a failure (declined, alertable code,
    /// watched class), `None` for approvals, declines of the customer's and unknown or
    /// non-alertable codes.
    pub fn failure(&self) -> Option<ErrorClass> {
        (!self.approved && self.alertable && self.class.is_watched()).then_some(self.class)
    }
}

impl Scheme {
    /// The scheme's name as used in the table, config and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iso8583 => "iso8583",
            Self::Cup => "cup",
            Self::Wechatpay => "wechatpay",
            Self::Alipay => "alipay",
        }
    }

    /// Parses a scheme name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "iso8583" => Self::Iso8583,
            "cup" => Self::Cup,
            "wechatpay" => Self::Wechatpay,
            "alipay" => Self::Alipay,
            _ => return None,
        })
    }
}

/// Whether `code` means the payment was approved under `scheme`.
pub fn is_approval(scheme: Scheme, code: &str) -> bool {
    match scheme {
        Scheme::Iso8583 | Scheme::Cup => matches!(code, "00" | "10" | "11" | "16" | "Y1"),
        Scheme::Wechatpay => code == "SUCCESS",
        Scheme::Alipay => code == "10000",
    }
}

/// The table row for a code, if there is one.
pub fn lookup(scheme: Scheme, code: &str) -> Option<&'static CodeInfo> {
    TABLE.get(&(scheme, code.to_string()))
}

/// Classifies one outcome.
pub fn classify(scheme: Scheme, code: &str) -> Classification {
    if is_approval(scheme, code) {
        return Classification {
            approved: true,
            class: ErrorClass::Other,
            alertable: false,
            known: true,
        };
    }
    match lookup(scheme, code) {
        Some(info) => Classification {
            approved: false,
            class: info.class,
            alertable: info.alertable,
            known: true,
        },
        None => Classification {
            approved: false,
            class: ErrorClass::Other,
            alertable: false,
            known: false,
        },
    }
}

/// Every row of the embedded table.
pub fn all() -> impl Iterator<Item = &'static CodeInfo> {
    TABLE.values()
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, ',') => out.push(std::mem::take(&mut cur)),
            (false, '"') if cur.is_empty() => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (_, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(cur);
    Ok(out)
}

/// Parses the table text.
pub fn parse_table(text: &str) -> Result<Vec<CodeInfo>, TableError> {
    let mut rows = Vec::new();
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l).unwrap_or_default();
    if header.trim_end() != "scheme,code,meaning_zh,meaning_en,class,alertable,source_url" {
        return Err(TableError {
            line: 1,
            reason: format!("unexpected header {header:?}"),
        });
    }
    for (i, line) in lines {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: String| TableError {
            line: line_no,
            reason,
        };
        let f = split_csv(line.trim_end_matches('\r')).map_err(err)?;
        let [scheme, code, zh, en, class, alertable, source] = <[String; 7]>::try_from(f)
            .map_err(|f| err(format!("expected 7 fields, found {}", f.len())))?;
        rows.push(CodeInfo {
            scheme: Scheme::parse(&scheme)
                .ok_or_else(|| err(format!("unknown scheme {scheme:?}")))?,
            class: ErrorClass::parse(&class)
                .ok_or_else(|| err(format!("unknown class {class:?}")))?,
            alertable: match alertable.as_str() {
                "yes" => true,
                "no" => false,
                other => return Err(err(format!("alertable must be yes or no, not {other:?}"))),
            },
            code,
            meaning_zh: zh,
            meaning_en: en,
            source_url: source,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_parses() {
        let rows = parse_table(ERROR_CODES_CSV).expect("embedded table parses");
        assert!(rows.len() >= 300, "only {} rows", rows.len());
        assert!(rows.iter().all(|r| r.source_url.starts_with("https://")));
        assert_eq!(all().count(), rows.len(), "duplicate (scheme, code) rows");
    }

    #[test]
    fn classifies_known_codes() {
        let c = classify(Scheme::Iso8583, "03");
        assert_eq!(
            (c.class, c.alertable, c.known, c.approved),
            (ErrorClass::MerchantConfig, true, true, false)
        );
        assert_eq!(
            classify(Scheme::Iso8583, "51").class,
            ErrorClass::Cardholder
        );
        assert!(!classify(Scheme::Iso8583, "51").alertable);
        assert_eq!(
            classify(Scheme::Wechatpay, "SYSTEMERROR").class,
            ErrorClass::Platform
        );
        assert!(classify(Scheme::Cup, "00").approved);
        assert!(classify(Scheme::Wechatpay, "SUCCESS").approved);
        assert!(classify(Scheme::Alipay, "10000").approved);
        assert_eq!(
            lookup(Scheme::Iso8583, "03").map(|i| i.meaning_zh.as_str()),
            Some("无效商户")
        );
    }

    #[test]
    fn unknown_codes_are_other_and_flagged() {
        let c = classify(Scheme::Cup, "ZZ");
        assert_eq!(
            (c.class, c.alertable, c.known),
            (ErrorClass::Other, false, false)
        );
    }

    #[test]
    fn cardholder_and_fraud_never_alert() {
        assert!(
            all()
                .filter(|r| matches!(r.class, ErrorClass::Cardholder | ErrorClass::FraudRisk))
                .all(|r| !r.alertable)
        );
    }

    #[test]
    fn only_watched_classes_are_alertable() {
        // So "declined with an alertable code" and the failure rule are the same thing.
        for r in all() {
            assert!(!r.alertable || r.class.is_watched(), "{r:?}");
            let c = classify(r.scheme, &r.code);
            assert_eq!(c.failure().is_some(), !c.approved && c.alertable, "{r:?}");
        }
        assert_eq!(
            classify(Scheme::Iso8583, "03").failure(),
            Some(ErrorClass::MerchantConfig)
        );
        assert_eq!(classify(Scheme::Iso8583, "51").failure(), None);
        assert_eq!(classify(Scheme::Cup, "00").failure(), None);
        assert_eq!(classify(Scheme::Cup, "ZZ").failure(), None);
    }

    #[test]
    fn bad_tables_name_the_line() {
        let bad = "scheme,code,meaning_zh,meaning_en,class,alertable,source_url\ncup,00,a,b,other,no,https://x\ncup,01,a,b,nonsense,no,https://x\n";
        let e = parse_table(bad).expect_err("bad class");
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("nonsense"));
        assert_eq!(
            split_csv(r#"a,"b, ""c""",d"#).expect("quoted"),
            vec!["a", "b, \"c\"", "d"]
        );
    }
}
