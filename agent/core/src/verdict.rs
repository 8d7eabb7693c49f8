//! The till's diagnosis: the checklist merchants are told to work through (network and the
//! payment hosts, clock, the collector link and certificate, spool, the last hour's outcome
//! codes, the collector's open incidents covering this terminal) turned into one short verdict
//! in English and Chinese ("Network OK; acquirer maintenance, expected back at 14:00; no need
//! to restart the terminal" / "网络正常；收单机构维护中，预计 14:00 恢复，无需重启设备") and one
//! line per check.
//!
//! Pure: the shell gathers [`Facts`] (probes, link state, spool, the collector's answer) and
//! calls [`judge`]. `storepulse-agent diagnose` prints the result; `GET /v1/status` returns
//! it as JSON.

use storepulse_shared::taxonomy::{self, ErrorClass};
use storepulse_shared::{CoveringIncident, EndpointProbe, ProbeError};

use crate::recent::Outcomes;

/// Clock offset beyond which the clock check warns, ms (the collector's skew threshold).
pub const CLOCK_WARN_MS: i64 = 120_000;
/// Clock offset beyond which the clock check fails, ms (TLS and payment hosts may refuse).
pub const CLOCK_FAIL_MS: i64 = 600_000;
/// A certificate expiring within this is a warning, ms.
pub const CERT_WARN_MS: i64 = 14 * 86_400_000;

/// Everything the diagnosis looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// Now, Unix ms.
    pub now_unix_ms: i64,
    /// The terminal's UTC offset, seconds (times in the texts are local).
    pub utc_offset_secs: i32,
    /// False when the agent is not running and `diagnose` checked what it could itself.
    pub agent_running: bool,
    /// The collector link.
    pub link: Link,
    /// Agent clock minus collector clock at the last `Welcome`, ms; `None` if never connected.
    pub clock_offset_ms: Option<i64>,
    /// The agent's certificate.
    pub certificate: Certificate,
    /// The spool.
    pub spool: SpoolFacts,
    /// DNS and TCP probes of the configured payment hosts (empty: none configured).
    pub endpoints: Vec<EndpointProbe>,
    /// Payment outcomes reported by the POS app in the last hour (while the agent ran).
    pub outcomes: Outcomes,
    /// The collector's open incidents covering this terminal.
    pub incidents: Incidents,
}

/// The collector link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// A connection is up.
    pub connected: bool,
    /// The link's last error, if any.
    pub last_error: Option<String>,
}

/// The agent's client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    /// Readable, valid until then (Unix ms).
    Valid {
        /// Expiry, Unix ms.
        not_after_unix_ms: i64,
    },
    /// Unreadable or unusable, and why.
    Problem(String),
}

/// The spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolFacts {
    /// Records waiting.
    pub records: u64,
    /// Bytes used.
    pub bytes: u64,
    /// Size bound, bytes.
    pub max_bytes: u64,
    /// Payment outcomes dropped since the spool was created.
    pub dropped_txn_outcomes: u64,
}

/// What the collector said about incidents covering this terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incidents {
    /// Its answer (empty: nothing covers the terminal).
    Known(Vec<CoveringIncident>),
    /// No answer, and why.
    Unknown(Unknown),
}

/// Why the collector could not be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// No connection to the collector.
    NotConnected,
    /// The collector speaks message set 1 (no incident queries).
    CollectorTooOld,
    /// The question went out; no answer in time.
    NoAnswer,
    /// The agent is not running.
    AgentNotRunning,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine.
    Ok,
    /// Could not be checked.
    Unknown,
    /// Worth knowing, payments not necessarily affected.
    Warn,
    /// Payments are (or will be) affected.
    Fail,
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `network`, `payment_hosts`, `collector`, `certificate`, `clock`, `spool`, `payments`,
    /// `incidents`.
    pub name: &'static str,
    /// Outcome.
    pub level: Level,
    /// What was found, English.
    pub en: String,
    /// The same in Chinese.
    pub zh: String,
}

/// The finding that decides the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing wrong found.
    AllClear,
    /// The agent is not running.
    AgentNotRunning,
    /// An open incident covers this terminal.
    Incident,
    /// Neither the payment hosts nor the collector can be reached.
    NoNetwork,
    /// The payment hosts cannot be reached (the collector can).
    PaymentHosts,
    /// The certificate expired or is unusable.
    Certificate,
    /// The clock is far off.
    Clock,
    /// Many of this terminal's payments fail and no incident explains it (yet).
    LocalFailures,
    /// storepulse cannot reach its collector; payments are not affected.
    Collector,
    /// The spool is nearly full or dropped payment outcomes.
    Spool,
}

/// The diagnosis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The worst level of any check that matters for the cause.
    pub level: Level,
    /// What decided it.
    pub cause: Cause,
    /// One line, English.
    pub summary_en: String,
    /// One line, Chinese.
    pub summary_zh: String,
    /// What to do, English.
    pub action_en: String,
    /// What to do, Chinese.
    pub action_zh: String,
    /// The checklist, in the order merchants are taught.
    pub checks: Vec<Check>,
    /// The covering incidents, most severe first (empty if none or unknown).
    pub incidents: Vec<CoveringIncident>,
}

impl Level {
    /// `ok`, `unknown`, `warning`, `problem`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unknown => "unknown",
            Self::Warn => "warning",
            Self::Fail => "problem",
        }
    }
}

impl Cause {
    /// Snake-case name, for programs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllClear => "all_clear",
            Self::AgentNotRunning => "agent_not_running",
            Self::Incident => "incident",
            Self::NoNetwork => "no_network",
            Self::PaymentHosts => "payment_hosts_unreachable",
            Self::Certificate => "certificate",
            Self::Clock => "clock",
            Self::LocalFailures => "local_failures",
            Self::Collector => "collector_unreachable",
            Self::Spool => "spool",
        }
    }
}

fn check(name: &'static str, level: Level, en: impl Into<String>, zh: impl Into<String>) -> Check {
    Check {
        name,
        level,
        en: en.into(),
        zh: zh.into(),
    }
}

/// `HH:MM` at the terminal's offset.
pub fn hhmm(unix_ms: i64, utc_offset_secs: i32) -> String {
    let s = (unix_ms.div_euclid(1000) + i64::from(utc_offset_secs)).rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, s % 3600 / 60)
}

fn probe_error(e: ProbeError) -> (&'static str, &'static str) {
    match e {
        ProbeError::DnsFailed => ("name lookup (DNS) failed", "域名解析失败"),
        ProbeError::Timeout => ("timed out", "连接超时"),
        ProbeError::Refused => ("connection refused", "连接被拒绝"),
        ProbeError::Other => ("unreachable", "无法连接"),
    }
}

/// The short phrase for an incident kind (English, Chinese), and whether a restart is useless.
fn kind_phrase(kind: &str) -> Option<(&'static str, &'static str, bool)> {
    Some(match kind {
        "terminal_fault" => ("this terminal looks faulty", "本终端疑似故障", false),
        "terminal_config" => ("this terminal's settings are wrong", "本终端参数有误", true),
        "store_network" => ("this shop's network is poor", "本门店网络质量差", false),
        "store_offline" => ("this shop is offline", "本门店终端离线", false),
        "merchant_config" => (
            "merchant record wrong at the acquirer",
            "商户资料有误",
            true,
        ),
        "firmware_regression" => ("terminal software defect", "终端软件版本缺陷", true),
        "carrier_outage" => (
            "mobile network outage in your area",
            "本地区移动网络故障",
            true,
        ),
        "regional_outage" => (
            "network or power outage in your area",
            "本地区网络或电力故障",
            true,
        ),
        "acquirer_outage" => ("payment platform outage", "支付平台故障", true),
        "acquirer_maintenance" => ("acquirer maintenance", "收单机构维护中", true),
        "qr_notification_delay" => ("QR payment confirmations delayed", "扫码到账通知延迟", true),
        _ => return None,
    })
}

fn scope_values(i: &CoveringIncident) -> String {
    i.scope
        .iter()
        .map(|s| s.value.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to do when the terminal's own payments fail with codes of `class` (English, Chinese).
fn class_action(class: ErrorClass) -> (&'static str, &'static str) {
    match class {
        ErrorClass::MerchantConfig => (
            "The acquirer says the merchant record is wrong: check the merchant number and QR code, then call the acquirer with the terminal number, time and code.",
            "收单机构提示商户信息有误：请核对商户号和收款码，然后携终端号、时间和响应码联系收单机构。",
        ),
        ErrorClass::TerminalConfig => (
            "This terminal's settings are rejected: check the merchant number and terminal binding in its settings, or ask your service provider to push them again.",
            "本终端参数被拒绝：请检查终端设置中的商户号和绑定关系，或请服务商重新下发参数。",
        ),
        ErrorClass::TerminalFault => (
            "The terminal sends malformed requests or its hardware fails: restart it once; if that does not help, use another terminal and call for service.",
            "终端报文异常或硬件故障：可重启一次；无效时请改用其他终端并报修。",
        ),
        ErrorClass::Network => (
            "Payments time out: check the router, Wi-Fi or 4G signal, then retry.",
            "交易超时：请检查路由器、Wi-Fi 或 4G 信号后重试。",
        ),
        ErrorClass::Platform | ErrorClass::Issuer => (
            "The payment platform or the card's bank is failing; no need to restart. Retry later or take payment another way.",
            "支付平台或发卡行故障，无需重启设备。请稍后重试或改用其他方式收款。",
        ),
        ErrorClass::Settlement => (
            "Confirmations are missing: check the payment in the wallet app before charging again.",
            "到账通知缺失：请先在收款 App 中核实，再决定是否重新收款。",
        ),
        ErrorClass::Cardholder | ErrorClass::FraudRisk | ErrorClass::Other => (
            "Ask the customer to use another card or way to pay.",
            "请顾客更换银行卡或支付方式。",
        ),
    }
}

/// Judges the facts. See the module documentation.
pub fn judge(f: &Facts) -> Verdict {
    let tz = f.utc_offset_secs;
    let mut checks = Vec::new();

    // 1. Network: the payment hosts, and the collector as a second witness.
    let reachable = f.endpoints.iter().filter(|e| e.error.is_none()).count();
    let failing: Vec<&EndpointProbe> = f.endpoints.iter().filter(|e| e.error.is_some()).collect();
    let hosts_down = !f.endpoints.is_empty() && reachable == 0;
    let no_network = hosts_down && (!f.link.connected || !f.agent_running);
    let network_ok = reachable > 0 || f.link.connected;
    checks.push(if no_network {
        check(
            "network",
            Level::Fail,
            "No network: neither the payment hosts nor the collector can be reached.",
            "网络不通：支付主机和采集端均无法连接。",
        )
    } else if network_ok {
        check("network", Level::Ok, "Network OK.", "网络正常。")
    } else {
        check(
            "network",
            Level::Unknown,
            "No payment host configured and no collector link: cannot tell.",
            "未配置支付主机且未连上采集端，无法判断网络。",
        )
    });
    checks.push(if f.endpoints.is_empty() {
        check(
            "payment_hosts",
            Level::Unknown,
            "No payment hosts configured ([[probes.endpoints]]).",
            "未配置支付主机（[[probes.endpoints]]）。",
        )
    } else if failing.is_empty() {
        let times: Vec<String> = f
            .endpoints
            .iter()
            .map(|e| format!("{} {:.0} ms", e.name, e.tcp_connect_ms.unwrap_or(0.0)))
            .collect();
        check(
            "payment_hosts",
            Level::Ok,
            format!("Payment hosts reachable ({}).", times.join(", ")),
            format!("支付主机连接正常（{}）。", times.join("，")),
        )
    } else {
        let en: Vec<String> = failing
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.name,
                    probe_error(e.error.unwrap_or(ProbeError::Other)).0
                )
            })
            .collect();
        let zh: Vec<String> = failing
            .iter()
            .map(|e| {
                format!(
                    "{}：{}",
                    e.name,
                    probe_error(e.error.unwrap_or(ProbeError::Other)).1
                )
            })
            .collect();
        check(
            "payment_hosts",
            if hosts_down { Level::Fail } else { Level::Warn },
            format!(
                "{} of {} payment hosts unreachable ({}).",
                failing.len(),
                f.endpoints.len(),
                en.join("; ")
            ),
            format!(
                "{} 个支付主机中有 {} 个无法连接（{}）。",
                f.endpoints.len(),
                failing.len(),
                zh.join("；")
            ),
        )
    });

    // 2. The clock.
    checks.push(match f.clock_offset_ms {
        None => check(
            "clock",
            Level::Unknown,
            "Clock not checked: no connection to the collector yet.",
            "尚未连上采集端，未能校验时钟。",
        ),
        Some(o) if o.abs() >= CLOCK_WARN_MS => {
            let min = (o.abs() as f64 / 60_000.0).round() as i64;
            let (en_dir, zh_dir) = if o > 0 {
                ("ahead", "快")
            } else {
                ("behind", "慢")
            };
            check(
                "clock",
                if o.abs() >= CLOCK_FAIL_MS {
                    Level::Fail
                } else {
                    Level::Warn
                },
                format!(
                    "The terminal's clock is {min} min {en_dir}: set the time (or enable NTP)."
                ),
                format!("终端时钟{zh_dir}了 {min} 分钟：请校正时间（或开启自动对时）。"),
            )
        }
        Some(o) => check(
            "clock",
            Level::Ok,
            format!("Clock OK ({:+.1} s from the collector).", o as f64 / 1000.0),
            format!("时钟正常（与采集端相差 {:+.1} 秒）。", o as f64 / 1000.0),
        ),
    });

    // 3. The collector link and the certificate.
    checks.push(if !f.agent_running {
        check(
            "collector",
            Level::Fail,
            "The storepulse agent is not running on this terminal.",
            "本终端上的 storepulse 代理未运行。",
        )
    } else if f.link.connected {
        check("collector", Level::Ok, "Connected to the collector.", "已连接采集端。")
    } else {
        let why = f.link.last_error.as_deref().unwrap_or("not connected yet");
        check(
            "collector",
            Level::Warn,
            format!("Collector unreachable ({why}). Payments are not affected; records wait on the terminal."),
            format!("无法连接采集端（{why}）。不影响交易，记录暂存在终端上。"),
        )
    });
    checks.push(match &f.certificate {
        Certificate::Valid { not_after_unix_ms } if *not_after_unix_ms <= f.now_unix_ms => check(
            "certificate",
            Level::Fail,
            "The agent's certificate has expired: ask operations for a new one.",
            "代理证书已过期：请向运维申请新证书。",
        ),
        Certificate::Valid { not_after_unix_ms }
            if *not_after_unix_ms - f.now_unix_ms <= CERT_WARN_MS =>
        {
            let days = (*not_after_unix_ms - f.now_unix_ms) / 86_400_000;
            check(
                "certificate",
                Level::Warn,
                format!(
                    "The agent's certificate expires in {days} days: ask operations for a new one."
                ),
                format!("代理证书将在 {days} 天后过期：请向运维申请新证书。"),
            )
        }
        Certificate::Valid { .. } => {
            check("certificate", Level::Ok, "Certificate valid.", "证书有效。")
        }
        Certificate::Problem(p) => check(
            "certificate",
            Level::Fail,
            format!("Certificate unusable: {p}."),
            format!("证书不可用：{p}。"),
        ),
    });

    // 4. The spool.
    let s = f.spool;
    let full = s.max_bytes > 0 && s.bytes * 10 >= s.max_bytes * 9;
    checks.push(if s.dropped_txn_outcomes > 0 || full {
        check(
            "spool",
            Level::Warn,
            format!(
                "Spool {} records, {}% full; {} payment outcomes dropped.",
                s.records,
                s.bytes * 100 / s.max_bytes.max(1),
                s.dropped_txn_outcomes
            ),
            format!(
                "待发记录 {} 条，已用 {}%；已丢弃 {} 条交易结果。",
                s.records,
                s.bytes * 100 / s.max_bytes.max(1),
                s.dropped_txn_outcomes
            ),
        )
    } else {
        check(
            "spool",
            Level::Ok,
            format!("Spool OK ({} records waiting).", s.records),
            format!("待发记录正常（{} 条）。", s.records),
        )
    });

    // 5. The last hour's payments.
    let o = &f.outcomes;
    let mut worst: Option<(ErrorClass, u64)> = None;
    let mut alertable = 0u64;
    let mut failed_en = Vec::new();
    let mut failed_zh = Vec::new();
    for c in &o.codes {
        let cls = taxonomy::classify(c.scheme, &c.code);
        if cls.approved {
            continue;
        }
        if cls.alertable {
            alertable += c.count;
            if worst.is_none_or(|(_, n)| c.count > n) {
                worst = Some((cls.class, c.count));
            }
        }
        if failed_en.len() < 3 {
            let info = taxonomy::lookup(c.scheme, &c.code);
            failed_en.push(format!(
                "{} {} ×{} ({})",
                c.scheme.as_str(),
                c.code,
                c.count,
                info.map_or("unknown code", |i| i.meaning_en.as_str())
            ));
            failed_zh.push(format!(
                "{} {} ×{}（{}）",
                c.scheme.as_str(),
                c.code,
                c.count,
                info.map_or("未知响应码", |i| i.meaning_zh.as_str())
            ));
        }
    }
    let local_failures = alertable >= 3 && alertable * 2 >= o.attempts;
    checks.push(if o.attempts == 0 {
        check(
            "payments",
            Level::Ok,
            "No payments reported in the last hour.",
            "近一小时没有交易上报。",
        )
    } else if failed_en.is_empty() {
        check(
            "payments",
            Level::Ok,
            format!("{} payments in the last hour, all approved.", o.attempts),
            format!("近一小时 {} 笔交易，全部成功。", o.attempts),
        )
    } else {
        check(
            "payments",
            if local_failures {
                Level::Fail
            } else if alertable > 0 {
                Level::Warn
            } else {
                Level::Ok
            },
            format!(
                "{} of {} payments in the last hour not approved: {}.",
                o.attempts - o.approved,
                o.attempts,
                failed_en.join("; ")
            ),
            format!(
                "近一小时 {} 笔交易中 {} 笔未成功：{}。",
                o.attempts,
                o.attempts - o.approved,
                failed_zh.join("；")
            ),
        )
    });

    // 6. The collector's incidents covering this terminal.
    let incidents = match &f.incidents {
        Incidents::Known(v) => v.clone(),
        Incidents::Unknown(_) => Vec::new(),
    };
    checks.push(match &f.incidents {
        Incidents::Known(v) if v.is_empty() => check(
            "incidents",
            Level::Ok,
            "No open incident covers this terminal.",
            "没有涉及本终端的进行中事件。",
        ),
        Incidents::Known(v) => {
            let en: Vec<String> = v
                .iter()
                .map(|i| format!("#{} {}", i.id, i.explanation_en))
                .collect();
            let zh: Vec<String> = v
                .iter()
                .map(|i| format!("#{} {}", i.id, i.explanation_zh))
                .collect();
            check("incidents", Level::Fail, en.join(" "), zh.join(" "))
        }
        Incidents::Unknown(why) => {
            let (en, zh) = match why {
                Unknown::NotConnected => (
                    "Could not ask the collector about incidents: not connected.",
                    "未连上采集端，无法查询相关事件。",
                ),
                Unknown::CollectorTooOld => (
                    "The collector is too old to tell incidents (message set 1).",
                    "采集端版本过旧，不支持查询事件。",
                ),
                Unknown::NoAnswer => (
                    "The collector did not answer about incidents in time.",
                    "采集端未及时答复事件查询。",
                ),
                Unknown::AgentNotRunning => (
                    "Could not ask the collector about incidents: the agent is not running.",
                    "代理未运行，无法查询相关事件。",
                ),
            };
            check("incidents", Level::Unknown, en, zh)
        }
    });

    // The verdict: the first finding that explains what the merchant sees.
    let net_en = if no_network {
        "No network"
    } else if network_ok {
        "Network OK"
    } else {
        "Network not checked"
    };
    let net_zh = if no_network {
        "网络不通"
    } else if network_ok {
        "网络正常"
    } else {
        "网络未检查"
    };
    let level_of = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .map_or(Level::Unknown, |c| c.level)
    };
    let cert_bad = level_of("certificate") == Level::Fail;
    let clock_bad = level_of("clock") == Level::Fail;
    let (cause, level, summary_en, summary_zh, action_en, action_zh): (
        Cause,
        Level,
        String,
        String,
        String,
        String,
    ) = if !f.agent_running {
        (
                Cause::AgentNotRunning,
                Level::Fail,
                format!("{net_en}; the storepulse agent is not running"),
                format!("{net_zh}；storepulse 代理未运行"),
                "Start the agent (storepulse-agent --config ...) or restart the terminal; payment outcomes are not reported meanwhile.".into(),
                "请启动代理（storepulse-agent --config ...）或重启终端；在此之前交易结果不会上报。".into(),
            )
    } else if let Some(i) = incidents.first() {
        let (pen, pzh, no_restart) = kind_phrase(&i.kind).unwrap_or(("", "", false));
        let what_en = if pen.is_empty() {
            i.explanation_en.clone()
        } else {
            format!("{pen} ({})", scope_values(i))
        };
        let what_zh = if pzh.is_empty() {
            i.explanation_zh.clone()
        } else {
            format!("{pzh}（{}）", scope_values(i))
        };
        let (end_en, end_zh) = i
            .expected_end_unix_ms
            .map_or((String::new(), String::new()), |e| {
                (
                    format!(", expected back at {}", hhmm(e, tz)),
                    format!("，预计 {} 恢复", hhmm(e, tz)),
                )
            });
        let (r_en, r_zh) = if no_restart {
            ("; no need to restart the terminal", "，无需重启设备")
        } else {
            ("", "")
        };
        (
            Cause::Incident,
            Level::Fail,
            format!("{net_en}; {what_en}{end_en}{r_en}"),
            format!("{net_zh}；{what_zh}{end_zh}{r_zh}"),
            format!(
                "Incident #{} since {}: {}",
                i.id,
                hhmm(i.started_unix_ms, tz),
                i.advice_en
            ),
            format!(
                "事件 #{}（{} 起）：{}",
                i.id,
                hhmm(i.started_unix_ms, tz),
                i.advice_zh
            ),
        )
    } else if no_network {
        (
                Cause::NoNetwork,
                Level::Fail,
                "No network: the terminal reaches neither the payment hosts nor the collector".into(),
                "网络不通：终端既连不上支付主机，也连不上采集端".into(),
                "Check the cable or Wi-Fi, restart the router, or switch the terminal to 4G; then run diagnose again.".into(),
                "请检查网线或 Wi-Fi、重启路由器，或将终端切换到 4G 网络，然后再次诊断。".into(),
            )
    } else if hosts_down {
        (
                Cause::PaymentHosts,
                Level::Fail,
                "The payment hosts cannot be reached (the collector can)".into(),
                "无法连接支付主机（采集端可以连接）".into(),
                "The internet works but the payment hosts do not answer: check the DNS and firewall settings, or call your acquirer.".into(),
                "网络可用但支付主机无响应：请检查 DNS 和防火墙设置，或联系收单机构。".into(),
            )
    } else if cert_bad {
        (
            Cause::Certificate,
            Level::Fail,
            format!("{net_en}; the agent's certificate is not usable"),
            format!("{net_zh}；代理证书不可用"),
            "Ask operations for a new certificate for this terminal.".into(),
            "请向运维为本终端申请新证书。".into(),
        )
    } else if clock_bad {
        (
                Cause::Clock,
                Level::Fail,
                format!("{net_en}; the terminal's clock is wrong"),
                format!("{net_zh}；终端时钟不准"),
                "Set the terminal's date and time (or enable automatic time); payment hosts may refuse a terminal whose clock is off.".into(),
                "请校正终端日期和时间（或开启自动对时）；时钟偏差过大时支付主机可能拒绝交易。".into(),
            )
    } else if local_failures {
        let class = worst.map_or(ErrorClass::Other, |(c, _)| c);
        let (a_en, a_zh) = class_action(class);
        let known = matches!(f.incidents, Incidents::Known(_));
        (
            Cause::LocalFailures,
            Level::Fail,
            format!(
                "{net_en}; most payments on this terminal fail ({}){}",
                class.as_str(),
                if known {
                    ", and no fleet incident explains it"
                } else {
                    ""
                }
            ),
            format!(
                "{net_zh}；本终端大部分交易失败（{}）{}",
                class.as_str(),
                if known {
                    "，且不属于已知的集群事件"
                } else {
                    ""
                }
            ),
            a_en.into(),
            a_zh.into(),
        )
    } else if !f.link.connected {
        (
                Cause::Collector,
                Level::Warn,
                format!("{net_en}; storepulse cannot reach its collector (payments are not affected)"),
                format!("{net_zh}；storepulse 无法连接采集端（不影响交易）"),
                "Nothing to do at the till; records are kept on the terminal and sent when the collector is back. Tell operations if it lasts.".into(),
                "收银台无需处理；记录暂存在终端上，采集端恢复后自动上报。如持续存在请告知运维。".into(),
            )
    } else if level_of("spool") == Level::Warn {
        (
            Cause::Spool,
            Level::Warn,
            format!("{net_en}; the agent's spool is nearly full"),
            format!("{net_zh}；代理待发记录即将占满"),
            "Tell operations: the terminal keeps more records than it can send.".into(),
            "请告知运维：终端积压的待发记录过多。".into(),
        )
    } else {
        (
                Cause::AllClear,
                Level::Ok,
                format!("{net_en}; all checks passed"),
                format!("{net_zh}；各项检查均正常"),
                "Nothing to do. If a payment still fails, note the code shown on the terminal and call your acquirer.".into(),
                "无需处理。如仍有交易失败，请记下终端显示的响应码并联系收单机构。".into(),
            )
    };
    Verdict {
        level,
        cause,
        summary_en,
        summary_zh,
        action_en,
        action_zh,
        checks,
        incidents,
    }
}

#[cfg(test)]
mod tests;
