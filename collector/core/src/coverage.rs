//! The collector's answer to an agent's `IncidentQuery` (message set 2, PROTOCOL.md): which
//! open incidents cover one terminal, and what to tell the merchant standing at its till.
//!
//! An incident covers a terminal when every label of its scope equals the terminal's own label
//! (from the terminal's `Hello`). The answer lists the most severe first, then the oldest, and
//! carries no other terminal's data: only incidents the terminal is itself part of.

use storepulse_shared::{CoveringIncident, Identity, IncidentList, LabelKey, ScopeLabel};

use crate::detect::{Incident, IncidentKind};

/// One open incident with what the shell knows about it besides the detector's view.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The incident.
    pub incident: &'a Incident,
    /// `critical`, `major`, `minor` or `info`.
    pub severity: &'a str,
    /// `suspected` or `paged`.
    pub tier: &'a str,
    /// The end of an announced maintenance window it lies in, Unix ms.
    pub expected_end_unix_ms: Option<i64>,
}

/// Whether a terminal lies inside a scope (every label equal).
pub fn covers(scope: &[(LabelKey, String)], id: &Identity) -> bool {
    scope.iter().all(|(k, v)| id.label(*k) == v)
}

/// Rank of a severity name, most severe first.
fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 0,
        "major" => 1,
        "minor" => 2,
        "info" => 3,
        _ => 4,
    }
}

/// The `IncidentList` answering query `query_id` of the terminal `id` at `now_unix_ms`.
pub fn answer<'a>(
    query_id: u64,
    now_unix_ms: i64,
    id: &Identity,
    candidates: impl IntoIterator<Item = Candidate<'a>>,
) -> IncidentList {
    let mut mine: Vec<Candidate<'a>> = candidates
        .into_iter()
        .filter(|c| c.incident.resolved_ms.is_none() && covers(&c.incident.scope, id))
        .collect();
    mine.sort_by_key(|c| {
        (
            severity_rank(c.severity),
            c.incident.started_ms,
            c.incident.id,
        )
    });
    mine.truncate(IncidentList::MAX_INCIDENTS);
    IncidentList {
        query_id,
        collector_time_unix_ms: now_unix_ms,
        incidents: mine.into_iter().map(covering).collect(),
    }
}

fn covering(c: Candidate<'_>) -> CoveringIncident {
    let i = c.incident;
    let (advice_en, advice_zh) = till_advice(i.kind);
    CoveringIncident {
        id: i.id,
        kind: i.kind.as_str().to_owned(),
        severity: c.severity.to_owned(),
        tier: c.tier.to_owned(),
        scope: i
            .scope
            .iter()
            .map(|(d, v)| ScopeLabel {
                key: d.as_str().to_owned(),
                value: v.clone(),
            })
            .collect(),
        started_unix_ms: i.started_ms,
        expected_end_unix_ms: c.expected_end_unix_ms,
        explanation_en: i.explanation_en.clone(),
        explanation_zh: i.explanation_zh.clone(),
        advice_en: advice_en.to_owned(),
        advice_zh: advice_zh.to_owned(),
    }
}

/// What the merchant at the till should do during an incident of `kind` (English, Chinese):
/// the field guides' advice (whether a restart or a retry helps, how to keep taking payments),
/// not on-call's remediation.
pub fn till_advice(kind: IncidentKind) -> (&'static str, &'static str) {
    match kind {
        IncidentKind::TerminalFault => (
            "This terminal looks faulty (hardware). Take payments on another terminal or another way; operations have been told and will repair or replace it.",
            "本终端疑似硬件故障。请改用其他终端或其他方式收款；运维已收到通知，将安排维修或更换。",
        ),
        IncidentKind::TerminalConfig => (
            "This terminal's settings are wrong (merchant number or binding). Retrying will not help; operations will push the correct settings.",
            "本终端参数有误（商户号或绑定关系），重试无效；运维将下发正确参数。",
        ),
        IncidentKind::StoreNetwork => (
            "This shop's network is poor: restart the router or switch the terminal to 4G. Payments may time out until then.",
            "本门店网络质量差：请重启路由器或将终端切换到 4G 网络，在此之前交易可能超时。",
        ),
        IncidentKind::StoreOffline => (
            "This shop's terminals cannot reach the network: check the router, cables and broadband. Records stay on the terminal and are sent later.",
            "本门店终端无法联网：请检查路由器、网线和宽带。记录保存在终端上，恢复后自动上报。",
        ),
        IncidentKind::MerchantConfig => (
            "Your merchant record at the acquirer is wrong or incomplete; retrying or restarting the terminal will not help. Operations are on it; take payments another way meanwhile.",
            "您的商户资料在收单机构处有误或不完整，重试或重启终端都无济于事。运维正在处理，请暂时改用其他方式收款。",
        ),
        IncidentKind::FirmwareRegression => (
            "This terminal's software version has a defect. Do not restart it repeatedly; operations will roll the version back. A failed payment may be retried once.",
            "本终端当前软件版本存在缺陷。请勿反复重启，运维将回退版本；失败的交易可重试一次。",
        ),
        IncidentKind::CarrierOutage => (
            "The mobile network in your area is failing. Switch the terminal to Wi-Fi or wired broadband if you can; no need to restart the terminal.",
            "您所在地区的移动网络故障。如有条件请将终端切换到 Wi-Fi 或有线宽带；无需重启设备。",
        ),
        IncidentKind::RegionalOutage => (
            "There is a network or power outage in your area. Nothing to fix on this terminal; no need to restart it.",
            "您所在地区出现网络或电力故障，本终端无需处理，无需重启设备。",
        ),
        IncidentKind::AcquirerOutage => (
            "The payment platform (acquirer or QR channel) is failing for many shops. Nothing to fix here and no need to restart; take payments another way if you can.",
            "支付平台（收单机构或扫码渠道）故障，影响众多商户。本机无需处理，无需重启设备；如可以请改用其他支付方式。",
        ),
        IncidentKind::AcquirerMaintenance => (
            "The acquirer is under planned maintenance; no need to restart the terminal. Payments through it resume when the maintenance ends.",
            "收单机构计划维护中，无需重启设备；维护结束后即可恢复。",
        ),
        IncidentKind::QrNotificationDelay => (
            "QR payment confirmations arrive late. Check the payment in the wallet app before asking the customer to pay again.",
            "扫码支付到账通知延迟。请先在收款 App 中核实是否到账，再决定是否让顾客重新付款。",
        ),
        IncidentKind::Unknown => (
            "storepulse sees an unusual failure pattern here and has told operations.",
            "storepulse 发现异常的失败情况，已通知运维。",
        ),
    }
}

#[cfg(test)]
mod tests {
    use storepulse_shared::{Label, LinkType, TerminalId};

    use super::*;
    use crate::detect::{Evidence, Family};

    fn id(t: &str, merchant: &str, acquirer: &str) -> Identity {
        let l = |s: &str| Label::new(s).expect("label");
        Identity {
            terminal_id: TerminalId::new(t).expect("id"),
            merchant_id: l(merchant),
            store_id: l(&format!("{merchant}-S001")),
            region: l("R01"),
            city: l("R01-C01"),
            acquirer: l(acquirer),
            qr_channel: l("QR-A"),
            carrier: l("CMCC"),
            link: LinkType::Wired,
            model: l("P300"),
            firmware: l("2.4.0"),
            app_version: l("5.0"),
        }
    }

    fn incident(n: u64, kind: IncidentKind, scope: &[(LabelKey, &str)], started: i64) -> Incident {
        Incident {
            id: n,
            kind,
            scope: scope.iter().map(|(d, v)| (*d, (*v).to_owned())).collect(),
            affected_terminals: 1,
            affected_stores: 1,
            affected_merchants: 1,
            scope_terminals: 1,
            evidence: Evidence {
                family: Family::MerchantConfig,
                window_ms: 0,
                attempts: 0,
                observed: 0.0,
                expected: 0.0,
                baseline_rate: 0.0,
                significance: 0.0,
                silent_terminals: 0,
                top_codes: vec![],
                examples: vec![],
                rtt_ms: None,
                loss_percent: None,
                device: None,
            },
            started_ms: started,
            opened_ms: started,
            updated_ms: started,
            resolved_ms: None,
            explanation_en: format!("incident {n}"),
            explanation_zh: format!("事件 {n}"),
            remediation_en: vec![],
            remediation_zh: vec![],
            merged_into: None,
        }
    }

    #[test]
    fn only_covering_open_incidents_most_severe_first() {
        let mine = incident(
            1,
            IncidentKind::MerchantConfig,
            &[(LabelKey::MerchantId, "M1")],
            10,
        );
        let other = incident(
            2,
            IncidentKind::MerchantConfig,
            &[(LabelKey::MerchantId, "M2")],
            5,
        );
        let acq = incident(
            3,
            IncidentKind::AcquirerMaintenance,
            &[(LabelKey::Acquirer, "ACQ-A")],
            1,
        );
        let two_labels = incident(
            4,
            IncidentKind::CarrierOutage,
            &[(LabelKey::Carrier, "CMCC"), (LabelKey::Region, "R02")],
            1,
        );
        let mut over = incident(
            5,
            IncidentKind::StoreOffline,
            &[(LabelKey::MerchantId, "M1")],
            1,
        );
        over.resolved_ms = Some(20);
        let c = |i, sev| Candidate {
            incident: i,
            severity: sev,
            tier: "paged",
            expected_end_unix_ms: None,
        };
        let list = answer(
            7,
            100,
            &id("T1", "M1", "ACQ-A"),
            [
                c(&acq, "minor"),
                c(&mine, "major"),
                c(&other, "critical"),
                c(&two_labels, "critical"),
                c(&over, "critical"),
            ],
        );
        assert_eq!(list.query_id, 7);
        assert_eq!(list.collector_time_unix_ms, 100);
        let ids: Vec<u64> = list.incidents.iter().map(|i| i.id).collect();
        assert_eq!(ids, [1, 3], "{list:?}");
        let first = &list.incidents[0];
        assert_eq!(first.kind, "merchant_config");
        assert_eq!(first.severity, "major");
        assert_eq!(
            first.scope,
            [ScopeLabel {
                key: "merchant_id".into(),
                value: "M1".into()
            }]
        );
        assert!(first.advice_zh.contains("重启"), "{}", first.advice_zh);
    }

    #[test]
    fn every_kind_has_advice_in_both_languages() {
        for k in [
            IncidentKind::TerminalFault,
            IncidentKind::TerminalConfig,
            IncidentKind::StoreNetwork,
            IncidentKind::StoreOffline,
            IncidentKind::MerchantConfig,
            IncidentKind::FirmwareRegression,
            IncidentKind::CarrierOutage,
            IncidentKind::RegionalOutage,
            IncidentKind::AcquirerOutage,
            IncidentKind::AcquirerMaintenance,
            IncidentKind::QrNotificationDelay,
            IncidentKind::Unknown,
        ] {
            let (en, zh) = till_advice(k);
            assert!(en.is_ascii() && en.len() > 20, "{k:?}");
            assert!(!zh.is_ascii(), "{k:?}");
        }
    }

    #[test]
    fn the_answer_is_bounded() {
        let many: Vec<Incident> = (0..40)
            .map(|n| {
                incident(
                    n,
                    IncidentKind::Unknown,
                    &[(LabelKey::Region, "R01")],
                    n as i64,
                )
            })
            .collect();
        let list = answer(
            1,
            0,
            &id("T1", "M1", "ACQ-A"),
            many.iter().map(|i| Candidate {
                incident: i,
                severity: "minor",
                tier: "paged",
                expected_end_unix_ms: None,
            }),
        );
        assert_eq!(list.incidents.len(), IncidentList::MAX_INCIDENTS);
    }
}
