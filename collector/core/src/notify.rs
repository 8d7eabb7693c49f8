//! Alert notification decisions as a sans-IO state machine: which incident pages whom, when
//! (group wait, material updates, repeats, resolution), and what silences, maintenance
//! windows and inhibition mute. Delivery itself (the durable outbox and its retries) is
//! [`outbox`]; the HTTP receivers live in the collector's IO shell.
//!
//! # Call order
//!
//! Feed inputs with [`Notifier::handle_incident`], [`Notifier::handle_silence`],
//! [`Notifier::handle_maintenance`] (and their `_expire` twins), then call
//! [`Notifier::tick`] with the current time, then drain [`Notifier::poll_notification`].
//! Tick at least every second or so: group wait, repeats and window edges are only noticed
//! on a tick. After draining, [`Notifier::export`] gives each touched incident's state to
//! persist, which [`Notifier::restore`] takes back after a restart.
//!
//! # Rules
//!
//! * An incident pages each receiver its labels route to (routes in order, `continue` to keep
//!   matching, the default receivers when none matched) once it has been open for the group
//!   wait and is not muted. Labels are `kind`, `severity`, the scope pairs and, inside a
//!   maintenance window in low-urgency mode, `maintenance=true` (severity then drops to info).
//! * A receiver already paged gets an `Update` when severity or scope changed, or the
//!   affected terminal count moved by the configured percentage (at most one update per
//!   `update_min_interval_ms`), and a `Repeat` every repeat interval while it lasts.
//! * Muted (silenced, inhibited, or in a window in mute mode) means no firing, update or
//!   repeat. A receiver that was paged always gets the resolution, muted or not, so no
//!   page is left dangling. Muting never hides an incident: the notifier only decides pages.
//! * Inhibition: an incident whose `explained_by` names an active incident, or that an
//!   inhibition rule's source incident covers, is muted.

pub mod matcher;
pub mod outbox;
pub mod rfc3339;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use storepulse_shared::LabelKey;

pub use self::matcher::{MatchOp, Matcher, MatcherError, all_match};
pub use self::outbox::{
    AttemptOutcome, Disposition, Outbox, OutboxEntry, OutboxStats, RetryPolicy, SplitMix64,
};

/// Incident severity, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// For the record; no one needs to act.
    Info,
    /// A few terminals or one store.
    Minor,
    /// A merchant, an acquirer route, a city.
    Major,
    /// A region, an acquirer, the fleet.
    Critical,
}

/// An incident as the notifier sees it; the detection loop maps its incidents to this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSnapshot {
    /// Incident id. Must not be reused for another incident, also across restarts (with
    /// `started_at_ms` it forms the notification identity).
    pub id: String,
    /// Kind, e.g. `merchant_config`, `regional_outage`, `acquirer_outage`.
    pub kind: String,
    /// Severity.
    pub severity: Severity,
    /// Scope labels, e.g. `[("carrier","CUCC"),("region","R02")]`.
    pub scope: Vec<(String, String)>,
    /// One-line explanation, English.
    pub summary_en: String,
    /// One-line explanation, Chinese.
    pub summary_zh: String,
    /// What to do, English.
    pub remediation_en: String,
    /// What to do, Chinese.
    pub remediation_zh: String,
    /// Terminals affected.
    pub affected_terminals: u32,
    /// Stores affected.
    pub affected_stores: u32,
    /// Merchants affected.
    pub affected_merchants: u32,
    /// When the incident started, Unix ms.
    pub started_at_ms: i64,
    /// When it resolved, Unix ms; `None` while active.
    pub resolved_at_ms: Option<i64>,
    /// Id of a wider incident that explains this one (inhibition).
    pub explained_by: Option<String>,
    /// Id of the wider incident this one was merged into (set on its resolution).
    pub merged_into: Option<String>,
}

/// What a notification says about its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotificationKind {
    /// First page to this receiver.
    Firing,
    /// Scope, severity or size changed materially.
    Update,
    /// Still going on.
    Repeat,
    /// Over.
    Resolved,
}

/// One message to one receiver about one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Stable key receivers can deduplicate by:
    /// `sp:<incident id>@<started_at_ms>:<receiver>:<n>:<kind>`.
    pub idempotency_key: String,
    /// Receiver name.
    pub receiver: String,
    /// Incident id.
    pub incident_id: String,
    /// `<incident id>@<started_at_ms>`: identifies the incident for receivers that
    /// deduplicate per incident (PagerDuty `dedup_key`).
    pub incident_key: String,
    /// Firing, update, repeat or resolved.
    pub kind: NotificationKind,
    /// When it was decided, Unix ms.
    pub created_at_ms: i64,
    /// The incident at that moment (severity already lowered in maintenance).
    pub incident: IncidentSnapshot,
    /// The maintenance window's announcement, when the incident is inside one.
    pub maintenance: Option<String>,
    /// How often this receiver is re-notified, ms (Alertmanager sets `endsAt` from it).
    pub repeat_interval_ms: i64,
}

/// A route: matchers lead to receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Receivers paged when they do.
    pub receivers: Vec<String>,
    /// Keep evaluating later routes after this one matched.
    pub continue_matching: bool,
}

/// Mutes incidents matching `target` while an active incident matching `source` has the same
/// values for every `equal` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InhibitRule {
    /// Matchers on the wide (muting) incident.
    pub source: Vec<Matcher>,
    /// Matchers on the narrow (muted) incident.
    pub target: Vec<Matcher>,
    /// Labels that must be present and equal in both.
    pub equal: Vec<String>,
}

/// A silence: mutes notifications of matching incidents between `starts_at_ms` and
/// `ends_at_ms`. It never hides them from the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// Id.
    pub id: String,
    /// All must match the incident's labels.
    pub matchers: Vec<Matcher>,
    /// Start, Unix ms.
    pub starts_at_ms: i64,
    /// End, Unix ms (exclusive).
    pub ends_at_ms: i64,
    /// Who set it.
    pub author: String,
    /// Why.
    pub comment: String,
}

/// An announced maintenance window of an acquirer, region or merchant (scope pairs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Id.
    pub id: String,
    /// Incidents whose scope contains every pair are inside it (e.g. `[("acquirer","ACQ-A")]`).
    pub scope: Vec<(String, String)>,
    /// Start, Unix ms.
    pub starts_at_ms: i64,
    /// End, Unix ms (exclusive).
    pub ends_at_ms: i64,
    /// The announcement, shown with notifications.
    pub announcement: String,
}

/// What happens to incidents inside a maintenance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceMode {
    /// Notified at severity info with the label `maintenance=true` (route it as you like).
    LowUrgency,
    /// Not notified.
    Mute,
}

/// The notifier's settings (the shell builds this from `[alerts]`).
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// Wait after an incident opens before its first page, ms (absorbs flapping and lets a
    /// wide incident arrive and inhibit the narrow ones).
    pub group_wait_ms: i64,
    /// Re-notify a lasting incident this often, ms.
    pub repeat_interval_ms: i64,
    /// Per-receiver repeat interval overrides, ms.
    pub receiver_repeat_ms: BTreeMap<String, i64>,
    /// At most one update per receiver and incident this often, ms.
    pub update_min_interval_ms: i64,
    /// An affected-terminal change of at least this percentage is material.
    pub update_affected_change_percent: u32,
    /// Routes, in order.
    pub routes: Vec<Route>,
    /// Receivers for incidents no route matched.
    pub default_receivers: Vec<String>,
    /// Inhibition rules (besides `explained_by`).
    pub inhibit_rules: Vec<InhibitRule>,
    /// What maintenance windows do.
    pub maintenance_mode: MaintenanceMode,
    /// After a restart, an incident the detector has not reported again within this long is
    /// resolved to its receivers, ms.
    pub restore_grace_ms: i64,
}

/// What was last sent to one receiver about one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverMark {
    /// Receiver name.
    pub receiver: String,
    /// Notifications sent so far (the next one's `n`).
    pub sent: u32,
    /// When the last one was decided, Unix ms.
    pub last_sent_ms: i64,
    /// When the last update was decided, Unix ms.
    pub last_update_ms: i64,
    /// Severity in the last one.
    pub severity: Severity,
    /// Scope in the last one.
    pub scope: Vec<(String, String)>,
    /// Affected terminals in the last one.
    pub affected_terminals: u32,
    /// Kind in the last one (empty: not recorded, from an older version).
    pub kind: String,
    /// The maintenance announcement in the last one (Alertmanager's `maintenance` label).
    pub maintenance: Option<String>,
    /// Label sets this receiver was sent for the incident before the current one: its
    /// notifications' incident key is `<id>@<started>` for the first, `<id>@<started>.<n>`
    /// after the n-th change of labels.
    pub generation: u32,
}

/// A tracked incident's state, for persistence across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentExport {
    /// The latest snapshot.
    pub snapshot: IncidentSnapshot,
    /// When the notifier first saw it, Unix ms.
    pub first_seen_ms: i64,
    /// Receivers paged so far.
    pub marks: Vec<ReceiverMark>,
}

/// Why an incident is not paged right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mute {
    /// A silence matches (its id).
    Silenced(String),
    /// A wider active incident explains it (its id).
    Inhibited(String),
    /// Inside a maintenance window in mute mode (its id).
    Maintenance(String),
}

/// The notifier. See the module docs for the call order.
#[derive(Debug)]
pub struct Notifier {
    cfg: NotifyConfig,
    incidents: BTreeMap<String, Tracked>,
    silences: BTreeMap<String, Silence>,
    windows: BTreeMap<String, MaintenanceWindow>,
    out: VecDeque<Notification>,
}

#[derive(Debug, Clone)]
struct Tracked {
    snap: IncidentSnapshot,
    first_seen_ms: i64,
    marks: BTreeMap<String, ReceiverMark>,
    /// Set for incidents restored after a restart until the detector reports them again.
    restore_deadline_ms: Option<i64>,
}

impl Severity {
    /// Lowercase name (`critical`, `major`, `minor`, `info`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Major => "major",
            Self::Minor => "minor",
            Self::Info => "info",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "critical" => Self::Critical,
            "major" => Self::Major,
            "minor" => Self::Minor,
            "info" => Self::Info,
            _ => return None,
        })
    }
}

impl NotificationKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Update => "update",
            Self::Repeat => "repeat",
            Self::Resolved => "resolved",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "firing" => Self::Firing,
            "update" => Self::Update,
            "repeat" => Self::Repeat,
            "resolved" => Self::Resolved,
            _ => return None,
        })
    }
}

/// The incident kind detection gives failures inside an announced maintenance window.
pub const MAINTENANCE_KIND: &str = "acquirer_maintenance";

impl IncidentSnapshot {
    /// `<id>@<started_at_ms>`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.id, self.started_at_ms)
    }

    /// The scope as `k=v, k=v`.
    pub fn scope_text(&self) -> String {
        self.scope
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl MaintenanceWindow {
    /// Whether the window is active at `now_ms` and covers `scope`.
    pub fn covers(&self, now_ms: i64, scope: &[(String, String)]) -> bool {
        self.starts_at_ms <= now_ms
            && now_ms < self.ends_at_ms
            && !self.scope.is_empty()
            && self.scope.iter().all(|p| scope.contains(p))
    }
}

impl Silence {
    /// Whether the silence is active at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            group_wait_ms: 30_000,
            repeat_interval_ms: 4 * 3_600_000,
            receiver_repeat_ms: BTreeMap::new(),
            update_min_interval_ms: 300_000,
            update_affected_change_percent: 50,
            routes: Vec::new(),
            default_receivers: Vec::new(),
            inhibit_rules: Vec::new(),
            maintenance_mode: MaintenanceMode::LowUrgency,
            restore_grace_ms: 900_000,
        }
    }
}

impl Notifier {
    /// A notifier with no incidents, silences or windows.
    pub fn new(mut cfg: NotifyConfig) -> Self {
        // Label keys in their canonical spelling (`merchant` → `merchant_id`), as incidents
        // carry them.
        for rule in &mut cfg.inhibit_rules {
            for k in &mut rule.equal {
                *k = LabelKey::canonical(k).to_owned();
            }
        }
        Self {
            cfg,
            incidents: BTreeMap::new(),
            silences: BTreeMap::new(),
            windows: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &NotifyConfig {
        &self.cfg
    }

    /// A new or changed incident (opened, updated or resolved). A resolved incident the
    /// notifier never paged is forgotten without a message.
    pub fn handle_incident(&mut self, now_ms: i64, snap: IncidentSnapshot) {
        match self.incidents.get_mut(&snap.id) {
            Some(t) => {
                if t.snap.started_at_ms != snap.started_at_ms && snap.resolved_at_ms.is_none() {
                    // Same id, another incident (a detector restarted its numbering): close
                    // the old one to its receivers first.
                    let mut old = t.clone();
                    old.snap.resolved_at_ms = Some(now_ms);
                    old.restore_deadline_ms = None;
                    self.emit_resolved(now_ms, &old);
                    self.incidents
                        .insert(snap.id.clone(), Tracked::new(now_ms, snap));
                    return;
                }
                t.snap = snap;
                t.restore_deadline_ms = None;
            }
            None => {
                if snap.resolved_at_ms.is_some() {
                    return;
                }
                self.incidents
                    .insert(snap.id.clone(), Tracked::new(now_ms, snap));
            }
        }
    }

    /// Adds or replaces a silence.
    pub fn handle_silence(&mut self, silence: Silence) {
        self.silences.insert(silence.id.clone(), silence);
    }

    /// Removes a silence.
    pub fn handle_silence_expire(&mut self, id: &str) -> bool {
        self.silences.remove(id).is_some()
    }

    /// Adds or replaces a maintenance window. Its scope keys take their canonical spelling
    /// (`merchant` → `merchant_id`).
    pub fn handle_maintenance(&mut self, mut window: MaintenanceWindow) {
        for (k, _) in &mut window.scope {
            *k = LabelKey::canonical(k).to_owned();
        }
        self.windows.insert(window.id.clone(), window);
    }

    /// Removes a maintenance window.
    pub fn handle_maintenance_expire(&mut self, id: &str) -> bool {
        self.windows.remove(id).is_some()
    }

    /// Re-tracks an incident persisted before a restart. Unless the detector reports it again
    /// within the restore grace, it is resolved to the receivers that were paged.
    pub fn restore(&mut self, now_ms: i64, state: IncidentExport) {
        let marks = state
            .marks
            .into_iter()
            .map(|m| (m.receiver.clone(), m))
            .collect();
        self.incidents.insert(
            state.snapshot.id.clone(),
            Tracked {
                snap: state.snapshot,
                first_seen_ms: state.first_seen_ms,
                marks,
                restore_deadline_ms: Some(now_ms.saturating_add(self.cfg.restore_grace_ms)),
            },
        );
    }

    /// Decides what to send now; queue it for [`Self::poll_notification`].
    pub fn tick(&mut self, now_ms: i64) {
        self.silences.retain(|_, s| s.ends_at_ms > now_ms);
        self.windows.retain(|_, w| w.ends_at_ms > now_ms);
        let ids: Vec<String> = self.incidents.keys().cloned().collect();
        for id in ids {
            let Some(mut t) = self.incidents.remove(&id) else {
                continue;
            };
            if t.restore_deadline_ms.is_some_and(|d| now_ms >= d) && t.snap.resolved_at_ms.is_none()
            {
                t.snap.resolved_at_ms = Some(now_ms);
            }
            if t.snap.resolved_at_ms.is_some() {
                self.emit_resolved(now_ms, &t);
                continue;
            }
            self.step_active(now_ms, &mut t);
            self.incidents.insert(id, t);
        }
    }

    /// The next notification to store and deliver.
    pub fn poll_notification(&mut self) -> Option<Notification> {
        self.out.pop_front()
    }

    /// A tracked incident's state (`None` once resolved and forgotten).
    pub fn export(&self, incident_id: &str) -> Option<IncidentExport> {
        self.incidents.get(incident_id).map(|t| IncidentExport {
            snapshot: t.snap.clone(),
            first_seen_ms: t.first_seen_ms,
            marks: t.marks.values().cloned().collect(),
        })
    }

    /// Why an incident is not paged right now, if it is not (for the API).
    pub fn mute_of(&self, now_ms: i64, incident_id: &str) -> Option<Mute> {
        let t = self.incidents.get(incident_id)?;
        self.mute(now_ms, &t.snap)
    }

    /// Every tracked incident that is muted now, with the reason.
    pub fn mutes(&self, now_ms: i64) -> Vec<(String, Mute)> {
        self.incidents
            .values()
            .filter_map(|t| Some((t.snap.id.clone(), self.mute(now_ms, &t.snap)?)))
            .collect()
    }

    /// Tracked incidents.
    pub fn incident_count(&self) -> usize {
        self.incidents.len()
    }

    /// Active and future silences.
    pub fn silences(&self) -> impl Iterator<Item = &Silence> {
        self.silences.values()
    }

    /// Active and future maintenance windows.
    pub fn windows(&self) -> impl Iterator<Item = &MaintenanceWindow> {
        self.windows.values()
    }

    /// The window covering an incident's scope at `now_ms`.
    pub fn window_for(
        &self,
        now_ms: i64,
        scope: &[(String, String)],
    ) -> Option<&MaintenanceWindow> {
        self.windows.values().find(|w| w.covers(now_ms, scope))
    }

    /// Whether an incident is in maintenance: inside one of the notifier's windows, or classified
    /// by detection as `acquirer_maintenance` (failures inside an announced window, with its
    /// grace; once it outlasts that, detection relabels it `acquirer_outage`). Returns the
    /// window's id, or `announced` for the latter.
    fn maintenance_of(&self, now_ms: i64, snap: &IncidentSnapshot) -> Option<String> {
        match self.window_for(now_ms, &snap.scope) {
            Some(w) => Some(w.id.clone()),
            None => (snap.kind == MAINTENANCE_KIND).then(|| "announced".to_owned()),
        }
    }

    /// The labels routes, silences and inhibition see, and the effective severity.
    fn labels(&self, now_ms: i64, snap: &IncidentSnapshot) -> (Vec<(String, String)>, Severity) {
        let in_window = self.maintenance_of(now_ms, snap).is_some();
        let severity = if in_window && self.cfg.maintenance_mode == MaintenanceMode::LowUrgency {
            Severity::Info
        } else {
            snap.severity
        };
        let mut labels = Vec::with_capacity(snap.scope.len() + 3);
        labels.push(("kind".to_owned(), snap.kind.clone()));
        labels.push(("severity".to_owned(), severity.as_str().to_owned()));
        if in_window {
            labels.push(("maintenance".to_owned(), "true".to_owned()));
        }
        labels.extend(snap.scope.iter().cloned());
        (labels, severity)
    }

    fn mute(&self, now_ms: i64, snap: &IncidentSnapshot) -> Option<Mute> {
        if let Some(by) = &snap.explained_by
            && self
                .incidents
                .get(by)
                .is_some_and(|w| w.snap.resolved_at_ms.is_none() && w.snap.id != snap.id)
        {
            return Some(Mute::Inhibited(by.clone()));
        }
        let (labels, _) = self.labels(now_ms, snap);
        for rule in &self.cfg.inhibit_rules {
            if !all_match(&rule.target, &labels) {
                continue;
            }
            for other in self.incidents.values() {
                if other.snap.id == snap.id || other.snap.resolved_at_ms.is_some() {
                    continue;
                }
                let (olabels, _) = self.labels(now_ms, &other.snap);
                if !all_match(&rule.source, &olabels) {
                    continue;
                }
                let get = |ls: &[(String, String)], k: &str| {
                    ls.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
                };
                if rule
                    .equal
                    .iter()
                    .all(|k| get(&labels, k).is_some() && get(&labels, k) == get(&olabels, k))
                {
                    return Some(Mute::Inhibited(other.snap.id.clone()));
                }
            }
        }
        if let Some(s) = self
            .silences
            .values()
            .find(|s| s.active(now_ms) && all_match(&s.matchers, &labels))
        {
            return Some(Mute::Silenced(s.id.clone()));
        }
        if self.cfg.maintenance_mode == MaintenanceMode::Mute
            && let Some(w) = self.maintenance_of(now_ms, snap)
        {
            return Some(Mute::Maintenance(w));
        }
        None
    }

    fn route(&self, labels: &[(String, String)]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut matched = false;
        for r in &self.cfg.routes {
            if all_match(&r.matchers, labels) {
                matched = true;
                for rcv in &r.receivers {
                    if !out.contains(rcv) {
                        out.push(rcv.clone());
                    }
                }
                if !r.continue_matching {
                    break;
                }
            }
        }
        if !matched {
            out.clone_from(&self.cfg.default_receivers);
        }
        out
    }

    fn repeat_ms(&self, receiver: &str) -> i64 {
        self.cfg
            .receiver_repeat_ms
            .get(receiver)
            .copied()
            .unwrap_or(self.cfg.repeat_interval_ms)
            .max(1)
    }

    fn step_active(&mut self, now_ms: i64, t: &mut Tracked) {
        if now_ms < t.first_seen_ms.saturating_add(self.cfg.group_wait_ms)
            || self.mute(now_ms, &t.snap).is_some()
        {
            return;
        }
        let (labels, severity) = self.labels(now_ms, &t.snap);
        let maintenance = self.maintenance_text(now_ms, &t.snap);
        for receiver in self.route(&labels) {
            let kind = match t.marks.get(&receiver) {
                None => NotificationKind::Firing,
                Some(m)
                    if m.severity != severity
                        || m.scope != t.snap.scope
                        || (!m.kind.is_empty() && m.kind != t.snap.kind)
                        || m.maintenance.is_some() != maintenance.is_some() =>
                {
                    // The labels receivers identify the alert by changed (widened, narrowed,
                    // kind or severity): the old label set is resolved at once and the new one
                    // fired, so no stale alert lingers until it expires.
                    self.emit_closing(now_ms, t, &receiver, false);
                    if let Some(m) = t.marks.get_mut(&receiver) {
                        m.generation += 1;
                    }
                    NotificationKind::Firing
                }
                Some(m) => {
                    let material = changed_by(
                        m.affected_terminals,
                        t.snap.affected_terminals,
                        self.cfg.update_affected_change_percent,
                    );
                    if material
                        && now_ms
                            >= m.last_update_ms
                                .saturating_add(self.cfg.update_min_interval_ms)
                    {
                        NotificationKind::Update
                    } else if now_ms >= m.last_sent_ms.saturating_add(self.repeat_ms(&receiver)) {
                        NotificationKind::Repeat
                    } else {
                        continue;
                    }
                }
            };
            self.emit(now_ms, t, &receiver, kind, severity);
        }
    }

    fn emit_resolved(&mut self, now_ms: i64, t: &Tracked) {
        let mut t = t.clone();
        let receivers: Vec<String> = t.marks.keys().cloned().collect();
        for receiver in receivers {
            self.emit_closing(now_ms, &mut t, &receiver, true);
        }
    }

    /// Resolves, to `receiver`, the label set it was last sent (kind, scope, severity,
    /// maintenance as in its mark), so the receiver closes exactly the alert it holds. `last`:
    /// the incident is over (else only this label set is, and a firing follows).
    fn emit_closing(&mut self, now_ms: i64, t: &mut Tracked, receiver: &str, last: bool) {
        let Some(m) = t.marks.get_mut(receiver) else {
            return;
        };
        let mut old = t.snap.clone();
        if !m.kind.is_empty() {
            old.kind.clone_from(&m.kind);
        }
        old.scope.clone_from(&m.scope);
        old.severity = m.severity;
        if old.resolved_at_ms.is_none() {
            old.resolved_at_ms = Some(now_ms);
        }
        if !last {
            old.merged_into = None;
        }
        let key = generation_key(&t.snap, m.generation);
        let n = m.sent;
        m.sent += 1;
        m.last_sent_ms = now_ms;
        let maintenance = m.maintenance.clone();
        let kind = NotificationKind::Resolved;
        self.out.push_back(Notification {
            idempotency_key: format!("sp:{key}:{receiver}:{n}:{}", kind.as_str()),
            receiver: receiver.to_owned(),
            incident_id: t.snap.id.clone(),
            incident_key: key,
            kind,
            created_at_ms: now_ms,
            maintenance,
            repeat_interval_ms: self.repeat_ms(receiver),
            incident: old,
        });
    }

    /// The maintenance announcement an incident is sent with now, if it is in maintenance.
    fn maintenance_text(&self, now_ms: i64, snap: &IncidentSnapshot) -> Option<String> {
        match self.window_for(now_ms, &snap.scope) {
            Some(w) => Some(w.announcement.clone()),
            None => (snap.kind == MAINTENANCE_KIND).then(|| {
                "inside an announced maintenance window / 处于已公告的维护窗口".to_owned()
            }),
        }
    }

    fn emit(
        &mut self,
        now_ms: i64,
        t: &mut Tracked,
        receiver: &str,
        kind: NotificationKind,
        severity: Severity,
    ) {
        let maintenance = self.maintenance_text(now_ms, &t.snap);
        let mark = t
            .marks
            .entry(receiver.to_owned())
            .or_insert_with(|| ReceiverMark {
                receiver: receiver.to_owned(),
                sent: 0,
                last_sent_ms: now_ms,
                last_update_ms: now_ms,
                severity,
                scope: Vec::new(),
                affected_terminals: 0,
                kind: String::new(),
                maintenance: None,
                generation: 0,
            });
        let n = mark.sent;
        mark.sent += 1;
        mark.last_sent_ms = now_ms;
        if kind != NotificationKind::Repeat {
            mark.last_update_ms = now_ms;
            mark.severity = severity;
            mark.scope.clone_from(&t.snap.scope);
            mark.affected_terminals = t.snap.affected_terminals;
            mark.kind.clone_from(&t.snap.kind);
            mark.maintenance.clone_from(&maintenance);
        }
        let mut incident = t.snap.clone();
        incident.severity = severity;
        let key = generation_key(&t.snap, mark.generation);
        self.out.push_back(Notification {
            idempotency_key: format!("sp:{key}:{receiver}:{n}:{}", kind.as_str()),
            receiver: receiver.to_owned(),
            incident_id: t.snap.id.clone(),
            incident_key: key,
            kind,
            created_at_ms: now_ms,
            maintenance,
            repeat_interval_ms: self.repeat_ms(receiver),
            incident,
        });
    }
}

impl Tracked {
    fn new(now_ms: i64, snap: IncidentSnapshot) -> Self {
        Self {
            snap,
            first_seen_ms: now_ms,
            marks: BTreeMap::new(),
            restore_deadline_ms: None,
        }
    }
}

/// The key receivers know one label set of an incident by: `<id>@<started_at_ms>` for the
/// first, `<id>@<started_at_ms>.<n>` after the n-th change of labels.
fn generation_key(snap: &IncidentSnapshot, generation: u32) -> String {
    if generation == 0 {
        snap.key()
    } else {
        format!("{}.{generation}", snap.key())
    }
}

/// Whether `new` differs from `old` by at least `percent` % of `old` (of 1 when `old` is 0).
fn changed_by(old: u32, new: u32, percent: u32) -> bool {
    let diff = u64::from(old.abs_diff(new));
    diff > 0 && diff * 100 >= u64::from(percent) * u64::from(old.max(1))
}
