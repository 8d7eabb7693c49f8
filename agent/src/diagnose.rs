//! The till's diagnosis, IO side: gathers the [`Facts`] the core's [`judge`] needs (payment-host
//! probes, link state and clock offset, the certificate's expiry, spool, the last hour's
//! outcomes, the collector's answer about incidents) from a running agent, or what can be
//! checked without one; turns the [`Verdict`] into the JSON of `GET /v1/status` and into the
//! text `storepulse-agent diagnose` prints.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use storepulse_agent_core::Spool;
use storepulse_agent_core::recent::Outcomes;
use storepulse_agent_core::verdict::{
    self, Certificate, Facts, Incidents, Link, SpoolFacts, Unknown, Verdict,
};

use crate::config::Config;
use crate::probes::probe_endpoints;
use crate::state::{Agent, unix_ms};

/// How old a cached answer about incidents may be for `GET /v1/status`.
pub const INCIDENTS_MAX_AGE: Duration = Duration::from_secs(15);
/// How long `GET /v1/status` waits for the collector's answer.
pub const INCIDENTS_WAIT: Duration = Duration::from_secs(3);

/// The verdict as JSON (`GET /v1/status` → `verdict`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictJson {
    /// `ok`, `warning`, `problem` (or `unknown`).
    pub level: String,
    /// What decided it (`all_clear`, `incident`, `no_network`, `payment_hosts_unreachable`,
    /// `collector_unreachable`, `certificate`, `clock`, `local_failures`, `spool`,
    /// `agent_not_running`).
    pub cause: String,
    /// One line in each language.
    pub summary: Texts,
    /// What to do, in each language.
    pub action: Texts,
    /// The checklist.
    pub checks: Vec<CheckJson>,
    /// Open incidents covering this terminal, most severe first.
    pub incidents: Vec<IncidentJson>,
    /// When the diagnosis was made, Unix ms.
    pub at_unix_ms: i64,
}

/// English and Chinese.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Texts {
    /// English.
    pub en: String,
    /// Simplified Chinese.
    pub zh: String,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckJson {
    /// `network`, `payment_hosts`, `clock`, `collector`, `certificate`, `spool`, `payments`,
    /// `incidents`.
    pub name: String,
    /// `ok`, `unknown`, `warning`, `problem`.
    pub level: String,
    /// What was found.
    pub text: Texts,
}

/// One covering incident, as the collector described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentJson {
    /// The collector's incident id.
    pub id: u64,
    /// Kind (`merchant_config`, ...).
    pub kind: String,
    /// Severity.
    pub severity: String,
    /// `suspected` or `paged`.
    pub tier: String,
    /// Scope labels.
    pub scope: std::collections::BTreeMap<String, String>,
    /// Since, Unix ms.
    pub started_unix_ms: i64,
    /// Expected end, Unix ms, if announced.
    pub expected_end_unix_ms: Option<i64>,
    /// What is wrong.
    pub explanation: Texts,
    /// What to do at the till.
    pub advice: Texts,
}

impl VerdictJson {
    /// The JSON form of a verdict made at `at_unix_ms`.
    pub fn new(v: &Verdict, at_unix_ms: i64) -> Self {
        let texts = |en: &str, zh: &str| Texts {
            en: en.to_owned(),
            zh: zh.to_owned(),
        };
        Self {
            level: v.level.as_str().to_owned(),
            cause: v.cause.as_str().to_owned(),
            summary: texts(&v.summary_en, &v.summary_zh),
            action: texts(&v.action_en, &v.action_zh),
            checks: v
                .checks
                .iter()
                .map(|c| CheckJson {
                    name: c.name.to_owned(),
                    level: c.level.as_str().to_owned(),
                    text: texts(&c.en, &c.zh),
                })
                .collect(),
            incidents: v
                .incidents
                .iter()
                .map(|i| IncidentJson {
                    id: i.id,
                    kind: i.kind.clone(),
                    severity: i.severity.clone(),
                    tier: i.tier.clone(),
                    scope: i
                        .scope
                        .iter()
                        .map(|s| (s.key.clone(), s.value.clone()))
                        .collect(),
                    started_unix_ms: i.started_unix_ms,
                    expected_end_unix_ms: i.expected_end_unix_ms,
                    explanation: texts(&i.explanation_en, &i.explanation_zh),
                    advice: texts(&i.advice_en, &i.advice_zh),
                })
                .collect(),
            at_unix_ms,
        }
    }
}

/// The terminal's UTC offset now, seconds (the system time zone).
pub fn local_offset_secs(unix_ms: i64) -> i32 {
    jiff::Timestamp::from_millisecond(unix_ms)
        .map(|t| jiff::tz::TimeZone::system().to_offset(t).seconds())
        .unwrap_or(0)
}

/// Reads the certificate's expiry from a PEM file.
pub fn certificate(path: &Path) -> Certificate {
    let pem = match std::fs::read(path) {
        Ok(p) => p,
        Err(e) => return Certificate::Problem(format!("cannot read {}: {e}", path.display())),
    };
    let der = match rustls_pemfile::certs(&mut pem.as_slice()).next() {
        Some(Ok(der)) => der,
        _ => return Certificate::Problem(format!("{} holds no certificate", path.display())),
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((_, cert)) => Certificate::Valid {
            not_after_unix_ms: cert.validity().not_after.timestamp() * 1000,
        },
        Err(e) => Certificate::Problem(format!(
            "{} is not a valid certificate: {e}",
            path.display()
        )),
    }
}

/// The facts of a running agent. `fresh`: probe the payment hosts now and ask the collector
/// again, rather than use the latest probe and a recent answer.
pub async fn facts(agent: &Agent, fresh: bool) -> Facts {
    let config = agent.config();
    let endpoints = match (fresh, agent.last_probe()) {
        (false, Some(p)) => p,
        _ => {
            let p = probe_endpoints(&config.probes.endpoints).await;
            agent.set_last_probe(p.clone());
            p
        }
    };
    let max_age = if fresh {
        Duration::ZERO
    } else {
        INCIDENTS_MAX_AGE
    };
    let incidents = agent.incidents(max_age, INCIDENTS_WAIT).await;
    let (link, clock_offset_ms) = {
        let l = agent.link();
        (
            Link {
                connected: l.connection.is_some(),
                last_error: l.last_error.clone(),
            },
            l.clock_offset_ms,
        )
    };
    let status = agent.status();
    let now = unix_ms();
    Facts {
        now_unix_ms: now,
        utc_offset_secs: local_offset_secs(now),
        agent_running: true,
        link,
        clock_offset_ms,
        certificate: certificate(&config.collector.cert),
        spool: SpoolFacts {
            records: status.spool_records,
            bytes: status.spool_bytes,
            max_bytes: config.spool.max_bytes,
            dropped_txn_outcomes: status.dropped.txn_outcomes,
        },
        endpoints,
        outcomes: agent.recent_outcomes(),
        incidents,
    }
}

/// What `diagnose` can check when the agent is not running: the payment hosts, the
/// certificate and the spool (opened read-only for its counts).
pub async fn standalone_facts(config: &Config) -> Facts {
    let now = unix_ms();
    let spool = {
        let path = config.spool.path.clone();
        let max = config.spool.max_bytes;
        tokio::task::spawn_blocking(move || {
            if !path.exists() {
                return SpoolFacts {
                    max_bytes: max,
                    ..SpoolFacts::default()
                };
            }
            match crate::spool::RedbSpool::open(&path, max, 0) {
                Ok(s) => {
                    let m = s.meta();
                    SpoolFacts {
                        records: m.records,
                        bytes: m.bytes,
                        max_bytes: max,
                        dropped_txn_outcomes: m.dropped_total.txn_outcomes,
                    }
                }
                Err(_) => SpoolFacts {
                    max_bytes: max,
                    ..SpoolFacts::default()
                },
            }
        })
        .await
        .unwrap_or_default()
    };
    Facts {
        now_unix_ms: now,
        utc_offset_secs: local_offset_secs(now),
        agent_running: false,
        link: Link {
            connected: false,
            last_error: Some("agent not running".into()),
        },
        clock_offset_ms: None,
        certificate: certificate(&config.collector.cert),
        spool,
        endpoints: probe_endpoints(&config.probes.endpoints).await,
        outcomes: Outcomes::default(),
        incidents: Incidents::Unknown(Unknown::AgentNotRunning),
    }
}

/// Judges a running agent now.
pub async fn diagnose(agent: &Agent, fresh: bool) -> VerdictJson {
    let f = facts(agent, fresh).await;
    VerdictJson::new(&verdict::judge(&f), f.now_unix_ms)
}

fn mark(level: &str) -> &'static str {
    match level {
        "ok" => "[ok]  ",
        "warning" => "[warn]",
        "problem" => "[FAIL]",
        _ => "[ -- ]",
    }
}

/// The text `storepulse-agent diagnose` prints: the verdict and what to do in Chinese and
/// English, then the checklist.
pub fn render(terminal: &str, v: &VerdictJson) -> String {
    let mut out = String::new();
    let at = jiff::Timestamp::from_millisecond(v.at_unix_ms)
        .map(|t| {
            t.to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M %:z")
                .to_string()
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "storepulse 终端诊断 / terminal diagnosis: {terminal}, {at}\n\n"
    ));
    out.push_str(&format!("{} 结论：{}\n", mark(&v.level), v.summary.zh));
    out.push_str(&format!("       Verdict: {}\n", v.summary.en));
    out.push_str(&format!("       处理：{}\n", v.action.zh));
    out.push_str(&format!("       What to do: {}\n\n", v.action.en));
    out.push_str("检查项 / checks:\n");
    for c in &v.checks {
        out.push_str(&format!(
            "{} {:<13} {}\n",
            mark(&c.level),
            c.name,
            c.text.zh
        ));
        out.push_str(&format!("       {:<13} {}\n", "", c.text.en));
    }
    out
}
