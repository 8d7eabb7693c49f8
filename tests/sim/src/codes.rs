//! Which response codes each effect produces, per scheme, with weights.
//!
//! The lists are curated from the taxonomy (`storepulse_shared::taxonomy`): a test checks every
//! code is in the table with the class the effect claims, so the simulator and the detector
//! agree on what a code means.

use storepulse_shared::Scheme;
#[cfg(test)]
use storepulse_shared::taxonomy::ErrorClass;

/// A weighted list of codes per scheme: `[iso8583, cup, wechatpay, alipay]`.
pub(crate) type CodeTable = [&'static [(&'static str, u32)]; 4];

/// What a code set represents (and the class its codes must have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Approved.
    Approve,
    /// Cardholder declines: funds, PIN, expired card, limits.
    CardholderDecline,
    /// Insufficient funds only (holiday rush).
    InsufficientFunds,
    /// Risk decisions.
    Fraud,
    /// Network timeouts (terminal cannot reach the host in time).
    NetworkTimeout,
    /// Terminal hardware/software failure.
    TerminalFault,
    /// Terminal not registered or not bound to the merchant.
    TerminalConfig,
    /// Merchant record invalid / does not exist.
    MerchantConfig,
    /// No routing information for the merchant (a branch registration incomplete).
    RoutingMissing,
    /// Firmware defect: malformed messages, MAC/signature failures, routing-type errors.
    FirmwareDefect,
    /// Acquirer or channel platform failure, issuer unreachable.
    PlatformOutage,
    /// Planned maintenance / cut-over.
    Maintenance,
    /// QR paid but no final state / notice.
    NoFinalState,
}

impl Effect {
    /// The weighted codes per scheme.
    pub(crate) fn table(self) -> &'static CodeTable {
        match self {
            Self::Approve => &[
                &[("00", 1)],
                &[("00", 1)],
                &[("SUCCESS", 1)],
                &[("10000", 1)],
            ],
            Self::CardholderDecline => &[
                &[
                    ("51", 40),
                    ("55", 25),
                    ("54", 10),
                    ("61", 10),
                    ("75", 5),
                    ("14", 5),
                    ("05", 5),
                ],
                &[
                    ("51", 40),
                    ("55", 25),
                    ("54", 10),
                    ("61", 10),
                    ("75", 5),
                    ("14", 5),
                    ("05", 5),
                ],
                &[
                    ("NOTENOUGH", 50),
                    ("AUTHCODEEXPIRE", 20),
                    ("AUTH_CODE_ERROR", 15),
                    ("NOTSUPORTCARD", 15),
                ],
                &[
                    ("ACQ.BUYER_BALANCE_NOT_ENOUGH", 50),
                    ("ACQ.PAYMENT_FAIL", 20),
                    ("ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR", 15),
                    ("ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH", 15),
                ],
            ],
            Self::InsufficientFunds => &[
                &[("51", 1)],
                &[("51", 1)],
                &[("NOTENOUGH", 1)],
                &[
                    ("ACQ.BUYER_BALANCE_NOT_ENOUGH", 3),
                    ("ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH", 1),
                ],
            ],
            Self::Fraud => &[
                &[("59", 1), ("04", 1)],
                &[("59", 1), ("34", 1)],
                // WeChat Pay has no risk class in the table; its risk declines look like this.
                &[("NOTENOUGH", 1)],
                &[("ACQ.PAYMENT_REQUEST_HAS_RISK", 1)],
            ],
            // WeChat Pay and Alipay report a client/host timeout as "system error, result
            // unknown"; the table classes those as platform, the closest they have.
            Self::NetworkTimeout => &[
                &[("68", 1)],
                &[("68", 1)],
                &[("SYSTEMERROR", 1)],
                &[("20000", 1)],
            ],
            Self::TerminalFault => &[
                &[("30", 3), ("88", 2), ("94", 1)],
                &[("A0", 3), ("30", 2), ("A8", 1)],
                &[
                    ("SIGNERROR", 2),
                    ("AUTH_CODE_INVALID", 2),
                    ("PARAM_ERROR", 1),
                ],
                &[
                    ("isv.invalid-signature", 2),
                    ("ACQ.INVALID_PARAMETER", 2),
                    ("40002", 1),
                ],
            ],
            Self::TerminalConfig => &[
                &[("58", 3), ("12", 1)],
                &[("97", 3), ("58", 2), ("77", 1)],
                // A terminal bound to the wrong merchant number: QR channels see a mismatch.
                &[("APPID_MCHID_NOT_MATCH", 1)],
                &[("ACQ.SECONDARY_MERCHANT_NOT_MATCH", 1)],
            ],
            Self::MerchantConfig => &[
                &[("03", 1)],
                &[("03", 1)],
                &[("MCHID_NOT_EXIST", 2), ("MCH_NOT_EXISTS", 1), ("NOAUTH", 1)],
                &[
                    ("ACQ.SELLER_NOT_EXIST", 2),
                    ("ACQ.MERCHANT_AGREEMENT_INVALID", 1),
                    ("ACQ.SECONDARY_MERCHANT_STATUS_ERROR", 1),
                ],
            ],
            Self::RoutingMissing => &[
                &[("03", 1)],
                &[("03", 1)],
                &[("MCH_NOT_EXISTS", 1)],
                &[
                    ("ACQ.INVALID_STORE_ID", 2),
                    ("ACQ.SECONDARY_MERCHANT_NOT_MATCH", 1),
                ],
            ],
            Self::FirmwareDefect => &[
                &[("30", 3), ("88", 1), ("92", 1)],
                &[("30", 3), ("A0", 2)],
                &[
                    ("SIGNERROR", 2),
                    ("XML_FORMAT_ERROR", 1),
                    ("PARAM_ERROR", 1),
                ],
                &[
                    ("isv.invalid-signature", 2),
                    ("ACQ.INVALID_PARAMETER", 1),
                    ("40002", 1),
                ],
            ],
            Self::PlatformOutage => &[
                &[("96", 4), ("91", 3), ("68", 3), ("92", 1)],
                &[("96", 4), ("91", 3), ("98", 2), ("68", 2)],
                &[("SYSTEMERROR", 3), ("BANKERROR", 1)],
                &[("20000", 3), ("isp.unknow-error", 1)],
            ],
            Self::Maintenance => &[
                &[("90", 2), ("96", 1), ("91", 1)],
                &[("90", 2), ("96", 1), ("91", 1)],
                &[("SYSTEMERROR", 1)],
                &[("20000", 1)],
            ],
            Self::NoFinalState => &[
                &[("25", 1)],
                &[("25", 1)],
                &[("ORDERNOTEXIST", 2), ("USERPAYING", 1)],
                &[("ACQ.TRADE_NOT_EXIST", 1)],
            ],
        }
    }

    /// The classes the effect's codes may have (per scheme some effects borrow a neighbour
    /// class, documented in [`Self::table`]).
    #[cfg(test)]
    fn allowed(self) -> &'static [ErrorClass] {
        use ErrorClass::*;
        match self {
            Self::Approve => &[Other],
            Self::CardholderDecline | Self::InsufficientFunds => &[Cardholder],
            Self::Fraud => &[FraudRisk, Cardholder],
            Self::NetworkTimeout => &[Network, Platform],
            Self::TerminalFault => &[TerminalFault],
            Self::TerminalConfig => &[TerminalConfig, MerchantConfig],
            Self::MerchantConfig | Self::RoutingMissing => &[MerchantConfig],
            Self::FirmwareDefect => &[TerminalFault, Platform],
            Self::PlatformOutage | Self::Maintenance => &[Platform, Issuer, Network],
            Self::NoFinalState => &[Settlement, Cardholder],
        }
    }
}

/// Index of a scheme in a [`CodeTable`].
pub(crate) fn scheme_index(s: Scheme) -> usize {
    match s {
        Scheme::Iso8583 => 0,
        Scheme::Cup => 1,
        Scheme::Wechatpay => 2,
        Scheme::Alipay => 3,
    }
}

/// Picks a code from a weighted list with `u` uniform in `[0, 1)`.
pub(crate) fn pick(list: &'static [(&'static str, u32)], u: f64) -> &'static str {
    let total: u32 = list.iter().map(|(_, w)| w).sum();
    // Truncation is the intent: u * total is in [0, total).
    let mut x = (u * f64::from(total)) as u32;
    for (code, w) in list {
        if x < *w {
            return code;
        }
        x -= w;
    }
    list.last().map_or("96", |(c, _)| c)
}

#[cfg(test)]
mod tests {
    use storepulse_shared::taxonomy::{classify, lookup};

    use super::*;

    const ALL: [Effect; 13] = [
        Effect::Approve,
        Effect::CardholderDecline,
        Effect::InsufficientFunds,
        Effect::Fraud,
        Effect::NetworkTimeout,
        Effect::TerminalFault,
        Effect::TerminalConfig,
        Effect::MerchantConfig,
        Effect::RoutingMissing,
        Effect::FirmwareDefect,
        Effect::PlatformOutage,
        Effect::Maintenance,
        Effect::NoFinalState,
    ];
    const SCHEMES: [Scheme; 4] = [
        Scheme::Iso8583,
        Scheme::Cup,
        Scheme::Wechatpay,
        Scheme::Alipay,
    ];

    #[test]
    fn every_code_is_in_the_taxonomy_with_the_claimed_class() {
        for e in ALL {
            for s in SCHEMES {
                let list = e.table()[scheme_index(s)];
                assert!(!list.is_empty(), "{e:?} has no {s:?} codes");
                for (code, _) in list {
                    let c = classify(s, code);
                    if e == Effect::Approve {
                        assert!(c.approved, "{s:?} {code} is not an approval");
                        continue;
                    }
                    assert!(
                        lookup(s, code).is_some(),
                        "{s:?} {code} is not in the table"
                    );
                    assert!(
                        e.allowed().contains(&c.class),
                        "{e:?}: {s:?} {code} is {:?}",
                        c.class
                    );
                }
            }
        }
    }

    #[test]
    fn merchant_config_is_only_merchant_config_class() {
        for s in SCHEMES {
            for (code, _) in Effect::MerchantConfig.table()[scheme_index(s)] {
                assert_eq!(classify(s, code).class, ErrorClass::MerchantConfig);
                assert!(classify(s, code).alertable);
            }
        }
    }

    #[test]
    fn pick_respects_weights() {
        let list: &'static [(&'static str, u32)] = &[("a", 3), ("b", 1)];
        assert_eq!(pick(list, 0.0), "a");
        assert_eq!(pick(list, 0.74), "a");
        assert_eq!(pick(list, 0.76), "b");
        assert_eq!(pick(list, 0.999), "b");
    }
}
