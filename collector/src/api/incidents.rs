//! HTTP API for incidents: `GET /api/v1/incidents` (active, then recently resolved) and
//! `GET /api/v1/incidents/{id}` (detail with evidence and timeline). DTOs are built here from
//! the detection core's types, which derive no `Serialize` (serialization marks a boundary).

use std::collections::BTreeMap;
use std::sync::PoisonError;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use storepulse_collector_core::detect::{Family, Incident as CoreIncident};
use storepulse_collector_core::incident::{self, IncidentRecord, TimelineEntry};
use storepulse_collector_core::notify;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::common::{self, ApiError, ApiState, Class, ErrorBody, Kind, LabelName};
use super::records::PayScheme;

/// Incidents returned when `limit` is not given.
pub const DEFAULT_INCIDENTS_LIMIT: usize = 100;
/// Most incidents returned by one request (a larger `limit` is capped).
pub const MAX_INCIDENTS_LIMIT: usize = 1000;

/// Query of the incident list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Which incidents (default `active`).
    #[param(inline)]
    state: Option<Which>,
    /// Most incidents returned (default 100; more than 1000 is capped to 1000).
    #[param(minimum = 0)]
    limit: Option<usize>,
}

/// Which incidents to list.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    /// Open incidents.
    Active,
    /// Recently resolved incidents, newest first.
    Resolved,
    /// Active, then resolved.
    All,
}

/// Incidents.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentList {
    /// Active ones first.
    pub incidents: Vec<Incident>,
}

/// An incident as detection sees it now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// Stable id.
    pub id: u64,
    /// Open or over.
    pub state: IncidentState,
    /// What kind of problem.
    pub kind: Kind,
    /// How urgent (what receivers are told).
    pub severity: Severity,
    /// Where: label key = value (canonical key names).
    pub scope: BTreeMap<LabelName, String>,
    /// The scope as `key=value` pairs, for people.
    pub scope_text: String,
    /// How much is affected.
    pub affected: Affected,
    /// Estimated onset, Unix ms.
    pub started_unix_ms: i64,
    /// When it was opened, Unix ms.
    pub opened_unix_ms: i64,
    /// Last update, Unix ms.
    pub updated_unix_ms: i64,
    /// When it resolved, Unix ms; null while active.
    pub resolved_unix_ms: Option<i64>,
    /// The wider incident it was merged into when it resolved that way; null otherwise.
    pub merged_into: Option<u64>,
    /// One sentence saying what is wrong.
    pub explanation: Bilingual,
    /// What to do, step by step.
    pub remediation: BilingualList,
    /// Why detection believes it.
    pub evidence: Evidence,
}

/// Whether an incident is open.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// Open.
    Active,
    /// Over (or merged into a wider one).
    Resolved,
}

/// How urgent an incident is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Page now.
    Critical,
    /// Page.
    Major,
    /// Notify.
    Minor,
    /// For the record.
    Info,
}

/// How much an incident affects.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Affected {
    /// Terminals affected (silent, or failing in the window).
    pub terminals: u32,
    /// Distinct stores of those terminals.
    pub stores: u32,
    /// Distinct merchants of those terminals.
    pub merchants: u32,
    /// Terminals in the scope.
    pub terminals_in_scope: u32,
}

/// A text in English and Simplified Chinese.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bilingual {
    /// English.
    pub en: String,
    /// Simplified Chinese.
    pub zh: String,
}

/// Steps in English and Simplified Chinese.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BilingualList {
    /// English.
    pub en: Vec<String>,
    /// Simplified Chinese.
    pub zh: Vec<String>,
}

/// Why detection believes in an incident.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The signal family.
    pub family: SignalFamily,
    /// The window the counts cover, seconds.
    pub window_secs: i64,
    /// Payment attempts in scope in the window.
    pub attempts: u64,
    /// Failures of the family in scope in the window.
    pub failures: f64,
    /// Failures expected from the baseline.
    pub expected_failures: f64,
    /// The baseline failure rate of the family in scope.
    pub baseline_rate: f64,
    /// failures / attempts.
    pub observed_rate: f64,
    /// `-log10 p` of the observation.
    pub significance: f64,
    /// Terminals in scope that stopped reporting.
    pub silent_terminals: u32,
    /// Mean RTT in scope now and its baseline, ms.
    pub rtt_ms: Option<NowAndBaseline>,
    /// Mean loss in scope now and its baseline, percent.
    pub loss_percent: Option<NowAndBaseline>,
    /// A hot and busy terminal's latest reading against its own baselines.
    pub device: Option<Device>,
    /// The most frequent codes, most frequent first.
    pub top_codes: Vec<TopCode>,
    /// A few example failures.
    pub examples: Vec<ExampleFailure>,
}

/// The signal detection watches.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalFamily {
    /// Merchant-configuration codes.
    MerchantConfig,
    /// Terminal-configuration codes.
    TerminalConfig,
    /// Terminal-fault codes.
    TerminalFault,
    /// Network timeouts, platform and issuer failures.
    Availability,
    /// No final state, notice missing.
    Settlement,
    /// Terminals stopped reporting.
    Silence,
    /// Payments stopped while terminals still report.
    Volume,
}

/// A measurement now and its usual value.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NowAndBaseline {
    /// Now.
    pub now: f32,
    /// Usually.
    pub baseline: f32,
}

/// A terminal's device reading.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Degrees Celsius.
    pub temperature_c: NowAndBaseline,
    /// Percent.
    pub cpu_percent: NowAndBaseline,
}

/// A frequent response code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopCode {
    /// The response-code table.
    pub scheme: PayScheme,
    /// The code.
    pub code: String,
    /// Its taxonomy class.
    pub class: Class,
    /// Occurrences in the window.
    pub count: u32,
    /// What it means (empty for unknown codes).
    pub meaning: Bilingual,
}

/// One example failure.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExampleFailure {
    /// The terminal.
    pub terminal_id: String,
    /// When, Unix ms.
    pub time_unix_ms: i64,
    /// The response-code table.
    pub scheme: PayScheme,
    /// The code.
    pub code: String,
}

/// An incident with its timeline.
#[derive(Debug, Serialize)]
pub struct IncidentDetail {
    /// The incident.
    #[serde(flatten)]
    pub incident: Incident,
    /// Its timeline.
    #[serde(flatten)]
    pub history: History,
}

/// The timeline part of [`IncidentDetail`].
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    /// Every event, oldest first.
    pub timeline: Vec<Event>,
}

/// One event of an incident's timeline.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// When, Unix ms.
    pub at_unix_ms: i64,
    /// What happened.
    pub event: EventKind,
    /// The explanation at that moment.
    pub explanation: Bilingual,
    /// Affected terminals at that moment.
    pub affected_terminals: u32,
}

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Detected.
    Opened,
    /// Scope, kind, counts or evidence changed.
    Updated,
    /// Over (or merged into a wider one).
    Resolved,
}

impl Incident {
    fn new(inc: &CoreIncident, state: IncidentState) -> Self {
        let e = &inc.evidence;
        let pair = |(now, baseline): (f32, f32)| NowAndBaseline { now, baseline };
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Self {
            id: inc.id,
            state,
            kind: Kind(inc.kind),
            severity: incident::severity(inc).into(),
            scope: inc
                .scope
                .iter()
                .map(|(k, v)| (LabelName(*k), v.clone()))
                .collect(),
            scope_text: inc.scope_text(),
            affected: Affected {
                terminals: inc.affected_terminals,
                stores: inc.affected_stores,
                merchants: inc.affected_merchants,
                terminals_in_scope: inc.scope_terminals,
            },
            started_unix_ms: inc.started_ms,
            opened_unix_ms: inc.opened_ms,
            updated_unix_ms: inc.updated_ms,
            resolved_unix_ms: inc.resolved_ms,
            merged_into: inc.merged_into,
            explanation: Bilingual {
                en: inc.explanation_en.clone(),
                zh: inc.explanation_zh.clone(),
            },
            remediation: BilingualList {
                en: strings(&inc.remediation_en),
                zh: strings(&inc.remediation_zh),
            },
            evidence: Evidence {
                family: e.family.into(),
                window_secs: e.window_ms / 1000,
                attempts: e.attempts,
                failures: e.observed,
                expected_failures: e.expected,
                baseline_rate: e.baseline_rate,
                observed_rate: e.observed_rate(),
                significance: e.significance,
                silent_terminals: e.silent_terminals,
                rtt_ms: e.rtt_ms.map(pair),
                loss_percent: e.loss_percent.map(pair),
                device: e.device.map(|d| Device {
                    temperature_c: pair((d.temperature_c, d.temperature_baseline_c)),
                    cpu_percent: pair((d.cpu_percent, d.cpu_baseline_percent)),
                }),
                top_codes: e
                    .top_codes
                    .iter()
                    .map(|c| TopCode {
                        scheme: c.scheme.into(),
                        code: c.code.clone(),
                        class: Class(c.class),
                        count: c.count,
                        meaning: Bilingual {
                            en: c.meaning_en.clone(),
                            zh: c.meaning_zh.clone(),
                        },
                    })
                    .collect(),
                examples: e
                    .examples
                    .iter()
                    .map(|x| ExampleFailure {
                        terminal_id: x.terminal.as_str().to_owned(),
                        time_unix_ms: x.time_ms,
                        scheme: x.scheme.into(),
                        code: x.code.clone(),
                    })
                    .collect(),
            },
        }
    }

    fn of(r: &IncidentRecord) -> Self {
        let state = if r.incident.resolved_ms.is_some() {
            IncidentState::Resolved
        } else {
            IncidentState::Active
        };
        Self::new(&r.incident, state)
    }
}

impl From<&TimelineEntry> for Event {
    fn from(t: &TimelineEntry) -> Self {
        Self {
            at_unix_ms: t.at_ms,
            event: EventKind::parse(t.what),
            explanation: Bilingual {
                en: t.explanation_en.clone(),
                zh: t.explanation_zh.clone(),
            },
            affected_terminals: t.affected_terminals,
        }
    }
}

impl EventKind {
    /// The incident book's event name (`opened`, `updated`, `resolved`).
    fn parse(what: &str) -> Self {
        match what {
            "opened" => Self::Opened,
            "resolved" => Self::Resolved,
            other => {
                debug_assert_eq!(other, "updated", "a timeline event the API does not know");
                Self::Updated
            }
        }
    }
}

impl From<notify::Severity> for Severity {
    fn from(s: notify::Severity) -> Self {
        match s {
            notify::Severity::Critical => Self::Critical,
            notify::Severity::Major => Self::Major,
            notify::Severity::Minor => Self::Minor,
            notify::Severity::Info => Self::Info,
        }
    }
}

impl From<Family> for SignalFamily {
    fn from(f: Family) -> Self {
        match f {
            Family::MerchantConfig => Self::MerchantConfig,
            Family::TerminalConfig => Self::TerminalConfig,
            Family::TerminalFault => Self::TerminalFault,
            Family::Availability => Self::Availability,
            Family::Settlement => Self::Settlement,
            Family::Silence => Self::Silence,
            Family::Volume => Self::Volume,
        }
    }
}

impl PartialSchema for IncidentDetail {
    fn schema() -> RefOr<Schema> {
        common::merged(
            [Incident::schema(), History::schema()],
            "One incident with its timeline",
        )
    }
}

impl ToSchema for IncidentDetail {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        Incident::schemas(schemas);
        History::schemas(schemas);
    }
}

/// `GET /api/v1/incidents?state=active|resolved|all&limit=N`.
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    operation_id = "list_incidents",
    tag = "incidents",
    summary = "Incidents: active ones, recently resolved ones, or both",
    params(ListQuery),
    responses(
        (status = 200, description = "Incidents", body = IncidentList),
        (status = 400, description = "Unknown parameter or bad value", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<IncidentList>, ApiError> {
    let q = common::query(query)?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_INCIDENTS_LIMIT)
        .min(MAX_INCIDENTS_LIMIT);
    let book = state
        .incidents
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let records: Vec<&IncidentRecord> = match q.state.unwrap_or(Which::Active) {
        Which::Active => book.active().collect(),
        Which::Resolved => book.resolved().collect(),
        Which::All => book.active().chain(book.resolved()).collect(),
    };
    Ok(Json(IncidentList {
        incidents: records.into_iter().take(limit).map(Incident::of).collect(),
    }))
}

/// `GET /api/v1/incidents/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}",
    operation_id = "incident",
    tag = "incidents",
    summary = "One incident with its timeline",
    params(("id" = String, Path, description = "Incident id")),
    responses(
        (status = 200, description = "The incident", body = IncidentDetail),
        (status = 404, description = "No such incident", body = ErrorBody),
    )
)]
pub(crate) async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no incident {id:?}")))?;
    let book = state
        .incidents
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let r = book
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("no incident {id}")))?;
    Ok(Json(IncidentDetail {
        incident: Incident::of(r),
        history: History {
            timeline: r.timeline.iter().map(Event::from).collect(),
        },
    }))
}
