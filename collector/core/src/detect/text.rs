//! What an incident says to people: one-sentence explanations and remediation hints per kind,
//! in English and Chinese (hints digest `pos-faults.md`, "Remediation hints per diagnosis").

use super::{Evidence, Family, Incident, IncidentKind};

/// Remediation hints for a kind: `(english, chinese)` pairs, most useful first.
pub(crate) fn remediation(kind: IncidentKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        IncidentKind::TerminalFault => &[
            (
                "Send a technician or a replacement terminal.",
                "派技术人员上门或更换终端。",
            ),
            (
                "Meanwhile the merchant can take payment on a spare terminal or another channel.",
                "在此期间商户可使用备用终端或其他收款渠道。",
            ),
        ],
        IncidentKind::TerminalConfig => &[
            (
                "Push the correct settings or rebind the terminal to its merchant number.",
                "下发正确参数，或将终端重新绑定到正确的商户号。",
            ),
            (
                "Check the terminal number, serial/IMEI binding and transaction limits.",
                "核对终端号、序列号/IMEI 绑定及交易限额设置。",
            ),
        ],
        IncidentKind::StoreNetwork => &[
            (
                "Tell the merchant to restart the router or move the terminals to 4G.",
                "通知商户重启路由器，或将终端切换到 4G 网络。",
            ),
            ("Check the store's ISP line.", "检查门店的宽带/运营商线路。"),
        ],
        IncidentKind::StoreOffline => &[
            (
                "Call the store: check power, router and broadband line; move terminals to 4G if possible.",
                "联系门店：检查电源、路由器和宽带线路，必要时切换到 4G。",
            ),
            (
                "Payments taken offline will replay when the link returns; watch for the backlog.",
                "恢复连接后离线交易会补传，请关注积压数据。",
            ),
        ],
        IncidentKind::MerchantConfig => &[
            (
                "Correct the merchant record at the acquirer (merchant number, branch address, payee account) or re-submit qualification.",
                "在收单机构后台更正商户信息（商户号、门店地址、收款账户），或重新提交资质审核。",
            ),
            (
                "If the merchant is closed or deregistered, stop its terminals and inform sales.",
                "若商户已关闭或注销，停用其终端并通知销售。",
            ),
        ],
        IncidentKind::FirmwareRegression => &[
            (
                "Halt the rollout of this version.",
                "暂停该版本的升级推送。",
            ),
            (
                "Roll the affected terminals back to the last good version.",
                "将受影响终端回滚到上一个正常版本。",
            ),
        ],
        IncidentKind::CarrierOutage => &[
            (
                "Open a ticket with the carrier for the affected area.",
                "向运营商提交该区域的故障工单。",
            ),
            (
                "Proactively notify merchants in the area; suggest Wi-Fi or wired fallback.",
                "主动通知该区域商户，建议改用 Wi-Fi 或有线网络。",
            ),
        ],
        IncidentKind::RegionalOutage => &[
            (
                "Check for a power or ISP failure in the area and open a ticket with the ISP.",
                "核实该区域是否停电或宽带故障，并向运营商报障。",
            ),
            (
                "Proactively notify merchants of the region.",
                "主动通知该区域的商户。",
            ),
        ],
        IncidentKind::AcquirerOutage => &[
            (
                "Confirm the failure with the acquirer / payment platform.",
                "与收单机构/支付平台确认故障。",
            ),
            (
                "Notify affected merchants proactively; fail over to another channel where contracts allow.",
                "主动通知受影响商户；合同允许时切换到其他通道。",
            ),
        ],
        IncidentKind::AcquirerMaintenance => &[
            (
                "This matches an announced maintenance window: tell merchants when it ends.",
                "与已公告的维护窗口吻合：告知商户维护结束时间。",
            ),
            (
                "Fail over to another channel where contracts allow; escalate if it outlasts the window.",
                "合同允许时切换通道；若超出维护窗口仍未恢复则升级处理。",
            ),
        ],
        IncidentKind::QrNotificationDelay => &[
            (
                "Ask the QR channel about delayed payment notices.",
                "向扫码渠道服务商确认支付通知（回调）延迟。",
            ),
            (
                "Tell merchants to confirm payments by querying the order before handing over goods.",
                "提醒商户在交付商品前主动查询订单确认到账。",
            ),
        ],
        IncidentKind::Unknown => &[(
            "Inspect the evidence and the affected terminals; the pattern matches no known cause.",
            "请查看证据与受影响终端；该模式不符合已知故障类型。",
        )],
    }
}

/// Remediation hints for payments that stopped while terminals report (an `unknown`
/// incident of the volume family).
pub(crate) const VOLUME_REMEDIATION: &[(&str, &str)] = &[
    (
        "Call a store in scope: is the POS app open and taking payments, or are customers paying another way?",
        "联系范围内的门店：收银应用是否正常开启并可收款，顾客是否改用了其他支付方式？",
    ),
    (
        "Check whether a POS app or configuration change was pushed to these terminals.",
        "检查是否向这些终端推送了收银应用或参数变更。",
    ),
    (
        "Ask the acquirer whether the merchant's transactions are being routed or blocked.",
        "向收单机构确认该商户的交易是否被改路由或拦截。",
    ),
];

/// One-sentence explanation of an incident, `(english, chinese)`.
pub(crate) fn explain(inc: &Incident) -> (String, String) {
    let scope_en = inc.scope_text();
    let e = &inc.evidence;
    let n = inc.affected_terminals;
    let rate = |r: f64| format!("{:.1}%", 100.0 * r);
    let codes = e
        .top_codes
        .iter()
        .take(3)
        .map(|c| c.code.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let fail_en = format!(
        "{} of {} payments failed ({} vs {} usual{}{})",
        e.observed as u64,
        e.attempts,
        rate(e.observed_rate()),
        rate(e.baseline_rate),
        if codes.is_empty() { "" } else { "; codes " },
        codes
    );
    let fail_zh = format!(
        "{} 笔交易中 {} 笔失败（失败率 {}，平时 {}{}{}）",
        e.attempts,
        e.observed as u64,
        rate(e.observed_rate()),
        rate(e.baseline_rate),
        if codes.is_empty() {
            ""
        } else {
            "；错误码 "
        },
        codes
    );
    let silent_en = format!(
        "{} of {} terminals stopped reporting",
        e.silent_terminals, n
    );
    let silent_zh = format!("{} 台终端中 {} 台失联", n, e.silent_terminals);
    match inc.kind {
        IncidentKind::TerminalFault if e.silent_terminals > 0 => (
            format!(
                "Terminal {scope_en} went silent (no heartbeats) while its neighbours still report: likely a dead device."
            ),
            format!("终端 {scope_en} 失联（无心跳），同店其他终端正常：疑似设备故障。"),
        ),
        IncidentKind::TerminalFault if e.device.is_some() && e.observed < 1.0 => {
            let (den, dzh) = device_text(e);
            (
                format!(
                    "Terminal {scope_en} runs hot and busy ({den}) before any payment failed: likely failing hardware."
                ),
                format!("终端 {scope_en} 温度和 CPU 异常（{dzh}），交易尚未失败：疑似硬件故障。"),
            )
        }
        IncidentKind::TerminalFault if e.device.is_some() => {
            let (den, dzh) = device_text(e);
            (
                format!(
                    "Only terminal {scope_en} fails with terminal-fault codes: {fail_en}; it runs hot and busy ({den}); its neighbours are fine."
                ),
                format!(
                    "仅终端 {scope_en} 返回终端故障类错误：{fail_zh}；设备温度和 CPU 异常（{dzh}）；同店其他终端正常。"
                ),
            )
        }
        IncidentKind::TerminalFault => (
            format!(
                "Only terminal {scope_en} fails with terminal-fault codes: {fail_en}; its neighbours are fine."
            ),
            format!("仅终端 {scope_en} 返回终端故障类错误：{fail_zh}；同店其他终端正常。"),
        ),
        IncidentKind::TerminalConfig => (
            format!(
                "Terminal {scope_en} is rejected as not registered or wrongly bound: {fail_en}."
            ),
            format!("终端 {scope_en} 被拒绝（未登记或绑定错误）：{fail_zh}。"),
        ),
        IncidentKind::StoreNetwork => (
            format!(
                "Store {scope_en} has a network problem: {fail_en}{}.",
                e.net_text_en()
            ),
            format!("门店 {scope_en} 网络异常：{fail_zh}{}。", e.net_text_zh()),
        ),
        IncidentKind::StoreOffline => (
            format!("Store {scope_en} is offline: {silent_en}."),
            format!("门店 {scope_en} 断网：{silent_zh}。"),
        ),
        IncidentKind::MerchantConfig => (
            format!(
                "Merchant configuration rejected for {scope_en}: {fail_en}; other merchants are fine."
            ),
            format!("{scope_en} 的商户配置被拒绝：{fail_zh}；其他商户正常。"),
        ),
        IncidentKind::FirmwareRegression => (
            format!("Terminals running {scope_en} fail across merchants and regions: {fail_en}."),
            format!("运行 {scope_en} 的终端在各商户、各区域均报错：{fail_zh}。"),
        ),
        IncidentKind::CarrierOutage if e.silent_terminals > 0 => (
            format!("Carrier outage in {scope_en}: {silent_en}; other carriers are fine."),
            format!("{scope_en} 运营商故障：{silent_zh}；其他运营商正常。"),
        ),
        IncidentKind::CarrierOutage => (
            format!("Carrier trouble in {scope_en}: {fail_en}."),
            format!("{scope_en} 运营商网络劣化：{fail_zh}。"),
        ),
        IncidentKind::RegionalOutage if e.silent_terminals > 0 => (
            format!("Regional outage in {scope_en}: {silent_en} at once."),
            format!("{scope_en} 区域性故障：{silent_zh}。"),
        ),
        IncidentKind::RegionalOutage => (
            format!("Regional network trouble in {scope_en}: {fail_en}."),
            format!("{scope_en} 区域网络故障：{fail_zh}。"),
        ),
        IncidentKind::AcquirerOutage => (
            format!("Payments routed through {scope_en} fail for all its merchants: {fail_en}."),
            format!("经 {scope_en} 的交易在其全部商户均失败：{fail_zh}。"),
        ),
        IncidentKind::AcquirerMaintenance => (
            format!("{scope_en} is in its announced maintenance window: {fail_en}."),
            format!("{scope_en} 处于已公告的维护窗口：{fail_zh}。"),
        ),
        IncidentKind::QrNotificationDelay => (
            format!("QR payments on {scope_en} are left without a final state: {fail_en}."),
            format!("{scope_en} 的扫码交易无最终状态（到账通知缺失）：{fail_zh}。"),
        ),
        IncidentKind::Unknown if e.family == Family::Volume => (
            format!(
                "Payments in {scope_en} stopped while its terminals still report: {:.0} in the last {} min against {:.0} usual at this hour.",
                e.observed,
                e.window_ms / 60_000,
                e.expected
            ),
            format!(
                "{scope_en} 的交易量骤降而终端仍在上报：最近 {} 分钟 {:.0} 笔，此时段平时约 {:.0} 笔。",
                e.window_ms / 60_000,
                e.observed,
                e.expected
            ),
        ),
        IncidentKind::Unknown if e.silent_terminals > 0 => (
            format!("Unexplained silence in {scope_en}: {silent_en}."),
            format!("{scope_en} 出现未知原因的失联：{silent_zh}。"),
        ),
        IncidentKind::Unknown => (
            format!("Unexplained failures in {scope_en}: {fail_en}."),
            format!("{scope_en} 出现未知原因的失败：{fail_zh}。"),
        ),
    }
}

/// The device reading of `e` in English and Chinese (empty without one).
fn device_text(e: &Evidence) -> (String, String) {
    let Some(d) = e.device else {
        return (String::new(), String::new());
    };
    (
        format!(
            "{:.0} °C vs {:.0} °C usual, CPU {:.0}% vs {:.0}%",
            d.temperature_c, d.temperature_baseline_c, d.cpu_percent, d.cpu_baseline_percent
        ),
        format!(
            "{:.0} °C，平时 {:.0} °C；CPU {:.0}%，平时 {:.0}%",
            d.temperature_c, d.temperature_baseline_c, d.cpu_percent, d.cpu_baseline_percent
        ),
    )
}
