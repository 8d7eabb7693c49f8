//! The fleet's vocabulary, spelled once: the label keys a terminal is grouped by
//! ([`LabelKey`], read from an [`Identity`] with [`Identity::label`]) and the kinds of incident
//! ([`IncidentKind`]). Detection, the simulator, the API, alerting and the dashboard all use
//! these names.
//!
//! The canonical key names are the `Identity` field names (`terminal_id`, `merchant_id`,
//! `store_id`, `region`, ...); every output uses them. [`LabelKey::parse`] also accepts the
//! short forms `terminal`, `merchant` and `store` that scopes, scenario files, silences and
//! routes used before, so those keep working.

use crate::message::{Identity, LinkType};

/// A label a terminal carries: one field of its [`Identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelKey {
    /// `terminal_id`: the terminal itself (alias `terminal`).
    TerminalId,
    /// `merchant_id`: the merchant (alias `merchant`).
    MerchantId,
    /// `store_id`: the store or branch (alias `store`).
    StoreId,
    /// `region`.
    Region,
    /// `city`.
    City,
    /// `acquirer`: the card acquirer.
    Acquirer,
    /// `qr_channel`: the QR payment channel.
    QrChannel,
    /// `carrier`: the mobile carrier or ISP.
    Carrier,
    /// `link`: the link type (`wired`, `wifi`, `cellular`, `unknown`).
    Link,
    /// `model`: the hardware model.
    Model,
    /// `firmware`: the firmware version.
    Firmware,
    /// `app_version`: the POS application version.
    AppVersion,
}

impl LabelKey {
    /// Every key, in `Identity` field order.
    pub const ALL: [LabelKey; 12] = [
        Self::TerminalId,
        Self::MerchantId,
        Self::StoreId,
        Self::Region,
        Self::City,
        Self::Acquirer,
        Self::QrChannel,
        Self::Carrier,
        Self::Link,
        Self::Model,
        Self::Firmware,
        Self::AppVersion,
    ];

    /// The labels a terminal announces besides its own id (what the terminal list filters on
    /// and the breakdown groups by), in `Identity` field order.
    pub const TERMINAL_LABELS: [LabelKey; 11] = [
        Self::MerchantId,
        Self::StoreId,
        Self::Region,
        Self::City,
        Self::Acquirer,
        Self::QrChannel,
        Self::Carrier,
        Self::Link,
        Self::Model,
        Self::Firmware,
        Self::AppVersion,
    ];

    /// Accepted old spellings and the key each stands for.
    pub const ALIASES: [(&'static str, LabelKey); 3] = [
        ("terminal", Self::TerminalId),
        ("merchant", Self::MerchantId),
        ("store", Self::StoreId),
    ];

    /// The canonical name (the `Identity` field name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TerminalId => "terminal_id",
            Self::MerchantId => "merchant_id",
            Self::StoreId => "store_id",
            Self::Region => "region",
            Self::City => "city",
            Self::Acquirer => "acquirer",
            Self::QrChannel => "qr_channel",
            Self::Carrier => "carrier",
            Self::Link => "link",
            Self::Model => "model",
            Self::Firmware => "firmware",
            Self::AppVersion => "app_version",
        }
    }

    /// Parses a canonical name or one of the [`Self::ALIASES`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .or_else(|| Self::ALIASES.iter().find(|a| a.0 == s).map(|a| a.1))
    }

    /// `name` in canonical spelling if it names a label key (an alias included), else `name`
    /// unchanged (for label sets that mix keys with other labels, such as alert matchers).
    pub fn canonical(name: &str) -> &str {
        match Self::parse(name) {
            Some(k) => k.as_str(),
            None => name,
        }
    }
}

impl std::fmt::Display for LabelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LinkType {
    /// The link type's name as used in labels and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wired => "wired",
            Self::Wifi => "wifi",
            Self::Cellular => "cellular",
            Self::Unknown => "unknown",
        }
    }
}

impl Identity {
    /// The value of one label.
    pub fn label(&self, key: LabelKey) -> &str {
        match key {
            LabelKey::TerminalId => self.terminal_id.as_str(),
            LabelKey::MerchantId => self.merchant_id.as_str(),
            LabelKey::StoreId => self.store_id.as_str(),
            LabelKey::Region => self.region.as_str(),
            LabelKey::City => self.city.as_str(),
            LabelKey::Acquirer => self.acquirer.as_str(),
            LabelKey::QrChannel => self.qr_channel.as_str(),
            LabelKey::Carrier => self.carrier.as_str(),
            LabelKey::Link => self.link.as_str(),
            LabelKey::Model => self.model.as_str(),
            LabelKey::Firmware => self.firmware.as_str(),
            LabelKey::AppVersion => self.app_version.as_str(),
        }
    }
}

/// What kind of incident: the 11 kinds of the scenario library, and `Unknown` (significant,
/// localised, matching no known pattern; detection only, never ground truth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IncidentKind {
    /// One terminal's hardware (codes, or a dead device).
    TerminalFault,
    /// One terminal's settings.
    TerminalConfig,
    /// One store's network quality.
    StoreNetwork,
    /// One store offline.
    StoreOffline,
    /// A merchant's (or one branch's) configuration at the acquirer.
    MerchantConfig,
    /// A firmware cohort.
    FirmwareRegression,
    /// A carrier (in a region).
    CarrierOutage,
    /// A region or city.
    RegionalOutage,
    /// An acquirer or QR channel failing.
    AcquirerOutage,
    /// An acquirer or QR channel failing inside an announced maintenance window.
    AcquirerMaintenance,
    /// QR payments left without a final state.
    QrNotificationDelay,
    /// Significant, localised, but matching no known pattern.
    Unknown,
}

impl IncidentKind {
    /// Every kind, `Unknown` last.
    pub const ALL: [IncidentKind; 12] = [
        Self::TerminalFault,
        Self::TerminalConfig,
        Self::StoreNetwork,
        Self::StoreOffline,
        Self::MerchantConfig,
        Self::FirmwareRegression,
        Self::CarrierOutage,
        Self::RegionalOutage,
        Self::AcquirerOutage,
        Self::AcquirerMaintenance,
        Self::QrNotificationDelay,
        Self::Unknown,
    ];

    /// The kind's name as used by the scenario library, the API and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TerminalFault => "terminal_fault",
            Self::TerminalConfig => "terminal_config",
            Self::StoreNetwork => "store_network",
            Self::StoreOffline => "store_offline",
            Self::MerchantConfig => "merchant_config",
            Self::FirmwareRegression => "firmware_regression",
            Self::CarrierOutage => "carrier_outage",
            Self::RegionalOutage => "regional_outage",
            Self::AcquirerOutage => "acquirer_outage",
            Self::AcquirerMaintenance => "acquirer_maintenance",
            Self::QrNotificationDelay => "qr_notification_delay",
            Self::Unknown => "unknown",
        }
    }

    /// Parses a kind's name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Label, TerminalId};

    #[test]
    fn keys_parse_in_both_spellings_and_print_canonically() {
        for k in LabelKey::ALL {
            assert_eq!(LabelKey::parse(k.as_str()), Some(k));
        }
        assert_eq!(LabelKey::parse("merchant"), Some(LabelKey::MerchantId));
        assert_eq!(LabelKey::parse("store"), Some(LabelKey::StoreId));
        assert_eq!(LabelKey::parse("terminal"), Some(LabelKey::TerminalId));
        assert_eq!(LabelKey::parse("Merchant"), None);
        assert_eq!(LabelKey::parse("kind"), None);
        assert_eq!(LabelKey::canonical("merchant"), "merchant_id");
        assert_eq!(LabelKey::canonical("severity"), "severity");
        assert_eq!(&LabelKey::ALL[1..], &LabelKey::TERMINAL_LABELS[..]);
    }

    #[test]
    fn identity_label_reads_each_field() {
        let l = |s: &str| Label::new(s).expect("label");
        let id = Identity {
            terminal_id: TerminalId::new("T1").expect("id"),
            merchant_id: l("M1"),
            store_id: l("S1"),
            region: l("R1"),
            city: l("C1"),
            acquirer: l("A1"),
            qr_channel: l("Q1"),
            carrier: l("K1"),
            link: LinkType::Cellular,
            model: l("P1"),
            firmware: l("F1"),
            app_version: l("V1"),
        };
        let values: Vec<&str> = LabelKey::ALL.iter().map(|&k| id.label(k)).collect();
        assert_eq!(
            values,
            [
                "T1", "M1", "S1", "R1", "C1", "A1", "Q1", "K1", "cellular", "P1", "F1", "V1"
            ]
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in IncidentKind::ALL {
            assert_eq!(IncidentKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(IncidentKind::parse("outage"), None);
    }
}
