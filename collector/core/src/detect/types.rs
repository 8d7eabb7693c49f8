//! What detection reports: incidents with their evidence, incident events, and the announced
//! maintenance windows it is told about.

use storepulse_shared::taxonomy::ErrorClass;
use storepulse_shared::{LabelKey, Scheme, TerminalId};

use super::{Family, IncidentKind};

/// A stable incident id (sequential per detector).
pub type IncidentId = u64;

/// One response code seen in an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeCount {
    /// Scheme.
    pub scheme: Scheme,
    /// Code.
    pub code: String,
    /// Taxonomy class.
    pub class: ErrorClass,
    /// Occurrences in the evidence window.
    pub count: u32,
    /// Meaning, English (empty for unknown codes).
    pub meaning_en: String,
    /// Meaning, Chinese.
    pub meaning_zh: String,
}

/// One example failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Terminal.
    pub terminal: TerminalId,
    /// Observation time, Unix ms.
    pub time_ms: i64,
    /// Scheme.
    pub scheme: Scheme,
    /// Code.
    pub code: String,
}

/// Why detection believes in an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The signal family.
    pub family: Family,
    /// Window the counts cover, milliseconds.
    pub window_ms: i64,
    /// Payment attempts in scope in the window.
    pub attempts: u64,
    /// Failures of the family in scope in the window.
    pub observed: f64,
    /// Failures expected from the baseline.
    pub expected: f64,
    /// Baseline failure rate of the family in scope.
    pub baseline_rate: f64,
    /// `-log10 p` of the observation (silence: log-likelihood ratio / ln 10).
    pub significance: f64,
    /// Terminals in scope that stopped reporting.
    pub silent_terminals: u32,
    /// Most frequent codes, most frequent first.
    pub top_codes: Vec<CodeCount>,
    /// A few example failures.
    pub examples: Vec<Example>,
    /// Mean RTT in scope now and its baseline, ms.
    pub rtt_ms: Option<(f32, f32)>,
    /// Mean loss in scope now and its baseline, percent.
    pub loss_percent: Option<(f32, f32)>,
    /// A one-terminal terminal fault whose device is hot and busy: its latest reading
    /// against its own baselines.
    pub device: Option<DeviceReading>,
}

/// A terminal's latest device reading against its own baselines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceReading {
    /// Temperature now, degrees Celsius.
    pub temperature_c: f32,
    /// The terminal's usual temperature, degrees Celsius.
    pub temperature_baseline_c: f32,
    /// CPU now, percent.
    pub cpu_percent: f32,
    /// The terminal's usual CPU, percent.
    pub cpu_baseline_percent: f32,
}

/// An incident as the detector sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Stable id.
    pub id: IncidentId,
    /// Kind.
    pub kind: IncidentKind,
    /// Scope: label key and value pairs, in the detector's key order (`terminal_id`,
    /// `store_id`, `merchant_id`, `city`, `region`, `acquirer`, `qr_channel`, `carrier`,
    /// `model`, `firmware`; a carrier's refinements name `carrier` first).
    pub scope: Vec<(LabelKey, String)>,
    /// Terminals affected (silent, or with failures of the family in the window).
    pub affected_terminals: u32,
    /// Distinct stores of those terminals.
    pub affected_stores: u32,
    /// Distinct merchants of those terminals.
    pub affected_merchants: u32,
    /// Terminals in scope.
    pub scope_terminals: u32,
    /// Evidence.
    pub evidence: Evidence,
    /// Estimated onset, Unix ms.
    pub started_ms: i64,
    /// When it was opened, Unix ms.
    pub opened_ms: i64,
    /// Last update, Unix ms.
    pub updated_ms: i64,
    /// When it resolved, Unix ms.
    pub resolved_ms: Option<i64>,
    /// One sentence, English.
    pub explanation_en: String,
    /// One sentence, Chinese.
    pub explanation_zh: String,
    /// Remediation hints, English.
    pub remediation_en: Vec<&'static str>,
    /// Remediation hints, Chinese.
    pub remediation_zh: Vec<&'static str>,
    /// The wider incident this one was merged into, when it resolved that way.
    pub merged_into: Option<IncidentId>,
}

/// What happened to an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentEvent {
    /// A new incident.
    Opened(Incident),
    /// Scope, kind, counts or evidence changed.
    Updated(Incident),
    /// The incident is over (or was merged into a wider one).
    Resolved(Incident),
}

/// An announced maintenance window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Which acquirer / channel: label pairs (`acquirer` or `qr_channel`).
    pub scope: Vec<(LabelKey, String)>,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms.
    pub end_ms: i64,
}

impl Evidence {
    /// Observed failure rate.
    pub fn observed_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.observed / self.attempts as f64
        }
    }

    pub(super) fn net_text_en(&self) -> String {
        match (self.rtt_ms, self.loss_percent) {
            (Some((r, rb)), Some((l, lb))) if r > 1.5 * rb || l > lb + 2.0 => {
                format!("; RTT {r:.0} ms vs {rb:.0} ms, loss {l:.1}% vs {lb:.1}%")
            }
            _ => String::new(),
        }
    }

    pub(super) fn net_text_zh(&self) -> String {
        match (self.rtt_ms, self.loss_percent) {
            (Some((r, rb)), Some((l, lb))) if r > 1.5 * rb || l > lb + 2.0 => {
                format!("；时延 {r:.0} 毫秒（平时 {rb:.0}），丢包 {l:.1}%（平时 {lb:.1}%）")
            }
            _ => String::new(),
        }
    }
}

impl Incident {
    /// The scope as `key=value` pairs joined by commas.
    pub fn scope_text(&self) -> String {
        self.scope
            .iter()
            .map(|(d, v)| format!("{}={v}", d.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
