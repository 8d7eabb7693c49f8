//! The verdict for the situations a merchant meets.

use storepulse_shared::{CoveringIncident, EndpointProbe, ProbeError, Scheme, ScopeLabel};

use super::*;
use crate::recent::{CodeCount, Outcomes};

const NOW: i64 = 1_772_424_000_000; // 2026-03-02T04:00:00Z = 12:00 at UTC+8

fn host(name: &str, error: Option<ProbeError>) -> EndpointProbe {
    EndpointProbe {
        name: name.into(),
        dns_ms: Some(3.0),
        tcp_connect_ms: error.is_none().then_some(40.0),
        error,
    }
}

fn healthy() -> Facts {
    Facts {
        now_unix_ms: NOW,
        utc_offset_secs: 8 * 3600,
        agent_running: true,
        link: Link {
            connected: true,
            last_error: None,
        },
        clock_offset_ms: Some(150),
        certificate: Certificate::Valid {
            not_after_unix_ms: NOW + 365 * 86_400_000,
        },
        spool: SpoolFacts {
            records: 3,
            bytes: 300,
            max_bytes: 1 << 20,
            dropped_txn_outcomes: 0,
        },
        endpoints: vec![host("cup-host", None), host("wechat", None)],
        outcomes: Outcomes {
            attempts: 20,
            approved: 19,
            codes: vec![
                CodeCount {
                    scheme: Scheme::Cup,
                    code: "00".into(),
                    count: 19,
                },
                CodeCount {
                    scheme: Scheme::Cup,
                    code: "51".into(),
                    count: 1,
                },
            ],
        },
        incidents: Incidents::Known(vec![]),
    }
}

fn incident(kind: &str, key: &str, value: &str, end: Option<i64>) -> CoveringIncident {
    CoveringIncident {
        id: 12,
        kind: kind.into(),
        severity: "major".into(),
        tier: "paged".into(),
        scope: vec![ScopeLabel {
            key: key.into(),
            value: value.into(),
        }],
        started_unix_ms: NOW - 20 * 60_000,
        expected_end_unix_ms: end,
        explanation_en: "Something is wrong.".into(),
        explanation_zh: "出了问题。".into(),
        advice_en: "Do this.".into(),
        advice_zh: "这样做。".into(),
    }
}

fn level(v: &Verdict, name: &str) -> Level {
    v.checks.iter().find(|c| c.name == name).expect(name).level
}

#[test]
fn all_clear() {
    let v = judge(&healthy());
    assert_eq!(v.cause, Cause::AllClear, "{v:#?}");
    assert_eq!(v.level, Level::Ok);
    assert!(v.summary_zh.starts_with("网络正常"), "{}", v.summary_zh);
    let names: Vec<&str> = v.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "network",
            "payment_hosts",
            "clock",
            "collector",
            "certificate",
            "spool",
            "payments",
            "incidents"
        ]
    );
    // A cardholder decline is not a problem.
    assert_eq!(level(&v, "payments"), Level::Ok);
}

#[test]
fn acquirer_maintenance_reads_like_the_till_expects() {
    let mut f = healthy();
    // Ends at 14:00 local (06:00Z).
    let end = NOW + 2 * 3_600_000;
    f.incidents = Incidents::Known(vec![incident(
        "acquirer_maintenance",
        "acquirer",
        "ACQ-B",
        Some(end),
    )]);
    let v = judge(&f);
    assert_eq!(v.cause, Cause::Incident);
    assert_eq!(
        v.summary_zh,
        "网络正常；收单机构维护中（ACQ-B），预计 14:00 恢复，无需重启设备"
    );
    assert_eq!(
        v.summary_en,
        "Network OK; acquirer maintenance (ACQ-B), expected back at 14:00; no need to restart the terminal"
    );
    assert!(
        v.action_zh.contains("事件 #12（11:40 起）：这样做。"),
        "{}",
        v.action_zh
    );
    assert_eq!(v.incidents.len(), 1);
}

#[test]
fn merchant_config_incident_names_it_and_says_what_to_do() {
    let mut f = healthy();
    f.outcomes.codes[1].code = "03".into();
    f.incidents = Incidents::Known(vec![incident(
        "merchant_config",
        "merchant_id",
        "M0003",
        None,
    )]);
    let v = judge(&f);
    assert_eq!(v.cause, Cause::Incident);
    assert!(
        v.summary_en
            .contains("merchant record wrong at the acquirer (M0003)"),
        "{}",
        v.summary_en
    );
    assert!(
        v.action_en.contains("#12") && v.action_en.contains("Do this."),
        "{}",
        v.action_en
    );
    assert_eq!(level(&v, "incidents"), Level::Fail);
}

#[test]
fn collector_unreachable_still_reports_local_checks() {
    let mut f = healthy();
    f.link = Link {
        connected: false,
        last_error: Some("handshake timed out".into()),
    };
    f.incidents = Incidents::Unknown(Unknown::NotConnected);
    let v = judge(&f);
    assert_eq!(v.cause, Cause::Collector, "{v:#?}");
    assert_eq!(v.level, Level::Warn);
    assert!(v.summary_zh.contains("无法连接采集端"), "{}", v.summary_zh);
    assert_eq!(level(&v, "collector"), Level::Warn);
    assert_eq!(level(&v, "incidents"), Level::Unknown);
    // The local checks are still there and fine.
    assert_eq!(level(&v, "payment_hosts"), Level::Ok);
    assert_eq!(level(&v, "spool"), Level::Ok);
    assert_eq!(level(&v, "network"), Level::Ok);
}

#[test]
fn no_network_when_nothing_answers() {
    let mut f = healthy();
    f.link.connected = false;
    f.endpoints = vec![
        host("cup-host", Some(ProbeError::DnsFailed)),
        host("wechat", Some(ProbeError::Timeout)),
    ];
    f.incidents = Incidents::Unknown(Unknown::NotConnected);
    let v = judge(&f);
    assert_eq!(v.cause, Cause::NoNetwork);
    assert!(v.summary_zh.starts_with("网络不通"));
    assert!(
        v.checks[1].zh.contains("域名解析失败"),
        "{}",
        v.checks[1].zh
    );
}

#[test]
fn payment_hosts_down_with_the_collector_up() {
    let mut f = healthy();
    f.endpoints = vec![host("cup-host", Some(ProbeError::Refused))];
    let v = judge(&f);
    assert_eq!(v.cause, Cause::PaymentHosts);
}

#[test]
fn local_failures_without_an_incident() {
    let mut f = healthy();
    f.outcomes = Outcomes {
        attempts: 6,
        approved: 1,
        codes: vec![
            CodeCount {
                scheme: Scheme::Cup,
                code: "03".into(),
                count: 5,
            },
            CodeCount {
                scheme: Scheme::Cup,
                code: "00".into(),
                count: 1,
            },
        ],
    };
    let v = judge(&f);
    assert_eq!(v.cause, Cause::LocalFailures, "{v:#?}");
    assert!(
        v.checks
            .iter()
            .any(|c| c.name == "payments" && c.zh.contains("×5"))
    );
}

#[test]
fn clock_certificate_spool_and_a_stopped_agent() {
    let mut f = healthy();
    f.clock_offset_ms = Some(-15 * 60_000);
    let v = judge(&f);
    assert_eq!(v.cause, Cause::Clock);
    assert!(
        v.checks[2].zh.contains("慢了 15 分钟"),
        "{}",
        v.checks[2].zh
    );

    let mut f = healthy();
    f.certificate = Certificate::Valid {
        not_after_unix_ms: NOW - 1,
    };
    assert_eq!(judge(&f).cause, Cause::Certificate);
    f.certificate = Certificate::Valid {
        not_after_unix_ms: NOW + 3 * 86_400_000,
    };
    let v = judge(&f);
    assert_eq!(
        (v.cause, level(&v, "certificate")),
        (Cause::AllClear, Level::Warn)
    );

    let mut f = healthy();
    f.spool.dropped_txn_outcomes = 4;
    assert_eq!(judge(&f).cause, Cause::Spool);

    let mut f = healthy();
    f.agent_running = false;
    f.link.connected = false;
    f.clock_offset_ms = None;
    f.incidents = Incidents::Unknown(Unknown::AgentNotRunning);
    let v = judge(&f);
    assert_eq!(v.cause, Cause::AgentNotRunning);
    assert!(
        v.summary_zh.starts_with("网络正常"),
        "the hosts answer: {}",
        v.summary_zh
    );
}

#[test]
fn hhmm_uses_the_offset() {
    assert_eq!(hhmm(NOW, 8 * 3600), "12:00");
    assert_eq!(hhmm(NOW, 0), "04:00");
    assert_eq!(hhmm(NOW, -5 * 3600), "23:00");
}
