//! Between detection and alerting: how urgent an incident is ([`severity`]), which wider
//! incident explains it ([`explained_by`]), what the notifier sees of it ([`snapshot`]) and the
//! flap damping of resolutions ([`AlertBridge`]).

use std::collections::{BTreeMap, HashMap};

use storepulse_shared::{Identity, IncidentKind, TerminalId};

use crate::coverage::covers;
use crate::detect::{Incident, IncidentEvent, IncidentId};
use crate::notify::{IncidentSnapshot, Severity};

/// How urgent an incident is, from its kind and size.
pub fn severity(inc: &Incident) -> Severity {
    let wide = inc.affected_terminals >= 50 || inc.affected_merchants >= 10;
    match inc.kind {
        IncidentKind::RegionalOutage
        | IncidentKind::CarrierOutage
        | IncidentKind::AcquirerOutage => {
            if wide {
                Severity::Critical
            } else {
                Severity::Major
            }
        }
        IncidentKind::AcquirerMaintenance => Severity::Minor,
        IncidentKind::MerchantConfig
        | IncidentKind::FirmwareRegression
        | IncidentKind::QrNotificationDelay => {
            if wide {
                Severity::Critical
            } else {
                Severity::Major
            }
        }
        IncidentKind::StoreOffline | IncidentKind::StoreNetwork => Severity::Minor,
        IncidentKind::TerminalFault | IncidentKind::TerminalConfig => Severity::Minor,
        IncidentKind::Unknown => {
            if inc.affected_terminals >= 10 {
                Severity::Major
            } else {
                Severity::Minor
            }
        }
    }
}

/// The wide incident (region, carrier, acquirer) whose scope contains every terminal of `inc`'s
/// scope, if `inc` is a narrow availability symptom it explains. A merchant's configuration
/// fault is never explained by an outage: it is a different cause.
pub fn explained_by<'a>(
    inc: &Incident,
    open: impl Iterator<Item = &'a Incident>,
    fleet: &HashMap<TerminalId, Identity>,
) -> Option<IncidentId> {
    let narrow = matches!(
        inc.kind,
        IncidentKind::StoreOffline
            | IncidentKind::StoreNetwork
            | IncidentKind::TerminalFault
            | IncidentKind::Unknown
    );
    if !narrow {
        return None;
    }
    let members: Vec<&Identity> = fleet.values().filter(|i| covers(&inc.scope, i)).collect();
    if members.is_empty() {
        return None;
    }
    open.filter(|w| {
        w.id != inc.id
            && matches!(
                w.kind,
                IncidentKind::RegionalOutage
                    | IncidentKind::CarrierOutage
                    | IncidentKind::AcquirerOutage
                    | IncidentKind::AcquirerMaintenance
            )
    })
    .find(|w| members.iter().all(|m| covers(&w.scope, m)))
    .map(|w| w.id)
}

/// What the notifier needs to know about an incident.
pub fn snapshot(inc: &Incident, explained: Option<IncidentId>) -> IncidentSnapshot {
    IncidentSnapshot {
        id: inc.id.to_string(),
        kind: inc.kind.as_str().to_owned(),
        severity: severity(inc),
        scope: inc
            .scope
            .iter()
            .map(|(d, v)| (d.as_str().to_owned(), v.clone()))
            .collect(),
        summary_en: inc.explanation_en.clone(),
        summary_zh: inc.explanation_zh.clone(),
        remediation_en: inc.remediation_en.join(" "),
        remediation_zh: inc.remediation_zh.join(""),
        affected_terminals: inc.affected_terminals,
        affected_stores: inc.affected_stores,
        affected_merchants: inc.affected_merchants,
        started_at_ms: inc.started_ms,
        resolved_at_ms: inc.resolved_ms,
        explained_by: explained.map(|e| e.to_string()),
        merged_into: inc.merged_into.map(|e| e.to_string()),
    }
}

/// Between detection and the notifier: damps flapping. A resolution is held back for the
/// hold ([`AlertBridge::HOLD_MS`] unless configured); if an incident of the same kind and scope
/// opens meanwhile (an outage ending in waves, a cohort failing on and off), it continues the
/// held one under the held one's identity instead of paging anew. A merged incident (folded
/// into a wider one) is not held: its resolution, "merged into N", goes out at once. Pure
/// logic, driven with the detector's events; [`AlertBridge::export`] and
/// [`AlertBridge::restore`] carry its state across restarts.
#[derive(Debug)]
pub struct AlertBridge {
    hold_ms: i64,
    /// Resolutions waiting out the hold: (kind, scope) → (snapshot, resolved at).
    held: BTreeMap<(String, String), (IncidentSnapshot, i64)>,
    /// Detector ids continuing an earlier incident → that incident's (id, started).
    alias: HashMap<IncidentId, (String, i64)>,
    /// The highest severity each open incident has had: severity only rises while an incident
    /// is open (terminals coming back at the end of an outage must not re-page on-call under
    /// a lower severity label).
    peak: HashMap<IncidentId, Severity>,
}

/// The bridge's state as plain data, for persistence across restarts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BridgeExport {
    /// Resolutions waiting out the hold, with when they resolved.
    pub held: Vec<(IncidentSnapshot, i64)>,
    /// Detector ids continuing an earlier incident: (detector id, notified id, started).
    pub alias: Vec<(IncidentId, String, i64)>,
}

impl Default for AlertBridge {
    fn default() -> Self {
        Self::new(Self::HOLD_MS)
    }
}

impl AlertBridge {
    /// How long a resolution is held back by default, ms.
    pub const HOLD_MS: i64 = 15 * 60_000;

    /// A bridge holding resolutions `hold_ms` (0: not at all).
    pub fn new(hold_ms: i64) -> Self {
        Self {
            hold_ms: hold_ms.max(0),
            held: BTreeMap::new(),
            alias: HashMap::new(),
            peak: HashMap::new(),
        }
    }

    fn key(s: &IncidentSnapshot) -> (String, String) {
        let scope: Vec<String> = s.scope.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (s.kind.clone(), scope.join(","))
    }

    /// The id receivers know a detector incident by.
    pub fn notified_id(&self, id: IncidentId) -> String {
        self.alias
            .get(&id)
            .map_or_else(|| id.to_string(), |(n, _)| n.clone())
    }

    /// Maps one detector event to what the notifier should see now (zero or one snapshot).
    pub fn on_event(
        &mut self,
        now_ms: i64,
        event: &IncidentEvent,
        explained: Option<IncidentId>,
    ) -> Option<IncidentSnapshot> {
        let (inc, opened, resolved) = match event {
            IncidentEvent::Opened(i) => (i, true, false),
            IncidentEvent::Updated(i) => (i, false, false),
            IncidentEvent::Resolved(i) => (i, false, true),
        };
        let mut snap = snapshot(inc, explained);
        let peak = self.peak.entry(inc.id).or_insert(snap.severity);
        *peak = (*peak).max(snap.severity);
        snap.severity = *peak;
        if resolved {
            self.peak.remove(&inc.id);
        }
        if let Some(into) = inc.merged_into {
            snap.merged_into = Some(self.notified_id(into));
        }
        if opened {
            let key = Self::key(&snap);
            if let Some((held, _)) = self.held.remove(&key) {
                self.alias
                    .insert(inc.id, (held.id.clone(), held.started_at_ms));
            }
        }
        if let Some((id, started)) = self.alias.get(&inc.id) {
            snap.id.clone_from(id);
            snap.started_at_ms = *started;
        }
        if resolved {
            self.alias.remove(&inc.id);
            if snap.merged_into.is_some() || self.hold_ms == 0 {
                return Some(snap);
            }
            let key = Self::key(&snap);
            self.held.insert(key, (snap, now_ms));
            return None;
        }
        Some(snap)
    }

    /// Resolutions whose hold has passed.
    pub fn tick(&mut self, now_ms: i64) -> Vec<IncidentSnapshot> {
        let due: Vec<(String, String)> = self
            .held
            .iter()
            .filter(|(_, (_, at))| now_ms - *at >= self.hold_ms)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.held.remove(&k).map(|(s, _)| s))
            .collect()
    }

    /// The state to persist.
    pub fn export(&self) -> BridgeExport {
        let mut alias: Vec<(IncidentId, String, i64)> = self
            .alias
            .iter()
            .map(|(&d, (n, s))| (d, n.clone(), *s))
            .collect();
        alias.sort_by_key(|a| a.0);
        BridgeExport {
            held: self.held.values().cloned().collect(),
            alias,
        }
    }

    /// Takes back exported state (after a restart).
    pub fn restore(&mut self, state: BridgeExport) {
        for (snap, at) in state.held {
            self.held.insert(Self::key(&snap), (snap, at));
        }
        for (d, n, s) in state.alias {
            self.alias.insert(d, (n, s));
        }
    }
}
