//! Receivers: how a notification becomes an HTTP request for Alertmanager (API v2),
//! PagerDuty (Events API v2), the generic webhook (HMAC-signed JSON, `docs/ALERTS.md`), Slack,
//! WeCom (企业微信) and DingTalk (钉钉), and how a response becomes an attempt outcome.
//! Request building is pure; [`send`] is the only IO.

use std::time::{Duration, SystemTime};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use storepulse_collector_core::notify::{
    AttemptOutcome, Notification, NotificationKind, Severity, rfc3339,
};

use super::config::{ReceiverKind, ResolvedReceiver};

/// What the payloads need besides the notification.
#[derive(Debug, Clone)]
pub struct Context {
    /// `source` for PagerDuty and Alertmanager.
    pub source: String,
    /// Public base URL of the collector API, for links.
    pub external_url: Option<String>,
}

/// A request ready to send.
#[derive(Debug)]
pub struct Request {
    /// Full URL (secret: may hold tokens; never log it).
    pub url: String,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body bytes.
    pub body: Vec<u8>,
}

/// PagerDuty's limit on `payload.summary`, characters.
pub const PD_SUMMARY_MAX_CHARS: usize = 1024;
/// PagerDuty's limit on `dedup_key`, characters.
pub const PD_DEDUP_KEY_MAX_CHARS: usize = 255;
/// WeCom's limit on text content, bytes.
const WECOM_TEXT_MAX_BYTES: usize = 2048;
/// DingTalk's limit on text content we keep to, bytes.
const DINGTALK_TEXT_MAX_BYTES: usize = 4000;

type HmacSha256 = Hmac<Sha256>;

/// Builds the request for `n` at `now_ms`.
pub fn build(r: &ResolvedReceiver, n: &Notification, ctx: &Context, now_ms: i64) -> Request {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("idempotency-key", n.idempotency_key.clone()),
    ];
    let url = r.url.expose().to_owned();
    match r.kind {
        ReceiverKind::Alertmanager => Request {
            url: format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            headers,
            body: alertmanager_body(n, ctx, now_ms).to_string().into_bytes(),
        },
        ReceiverKind::Pagerduty => {
            let key = r.routing_key.as_ref().map_or("", |k| k.expose());
            Request {
                url,
                headers,
                body: pagerduty_body(n, ctx, key).to_string().into_bytes(),
            }
        }
        ReceiverKind::Webhook => {
            let body = webhook_body(n, ctx).to_string().into_bytes();
            let ts = (now_ms / 1000).to_string();
            headers.push(("x-storepulse-timestamp", ts.clone()));
            headers.push(("x-storepulse-idempotency-key", n.idempotency_key.clone()));
            if let Some(secret) = &r.secret {
                headers.push((
                    "x-storepulse-signature",
                    format!("sha256={}", webhook_signature(secret.expose(), &ts, &body)),
                ));
            }
            Request { url, headers, body }
        }
        ReceiverKind::Slack => Request {
            url,
            headers,
            body: json!({ "text": chat_text(n, ctx, usize::MAX) })
                .to_string()
                .into_bytes(),
        },
        ReceiverKind::Wecom => Request {
            url,
            headers,
            body: json!({
                "msgtype": "text",
                "text": { "content": chat_text(n, ctx, WECOM_TEXT_MAX_BYTES) },
            })
            .to_string()
            .into_bytes(),
        },
        ReceiverKind::Dingtalk => {
            let url = match &r.secret {
                Some(secret) => {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    let sign = dingtalk_sign(secret.expose(), now_ms);
                    format!("{url}{sep}timestamp={now_ms}&sign={}", url_encode(&sign))
                }
                None => url,
            };
            Request {
                url,
                headers,
                body: json!({
                    "msgtype": "text",
                    "text": { "content": chat_text(n, ctx, DINGTALK_TEXT_MAX_BYTES) },
                })
                .to_string()
                .into_bytes(),
            }
        }
    }
}

/// Sends a request and classifies the answer.
pub async fn send(client: &reqwest::Client, kind: ReceiverKind, req: Request) -> AttemptOutcome {
    let mut rb = client.post(&req.url).body(req.body);
    for (k, v) in &req.headers {
        rb = rb.header(*k, v);
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            return AttemptOutcome::Failed {
                retryable: true,
                retry_after_ms: None,
                error: what.to_owned(),
            };
        }
    };
    let status = resp.status().as_u16();
    let retry_after_ms = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after_ms(v, SystemTime::now()));
    let body = resp.text().await.unwrap_or_default();
    classify(kind, status, retry_after_ms, &body)
}

/// An HTTP answer as an attempt outcome: 2xx delivered (WeCom and DingTalk also need
/// `errcode` 0), 408/429/5xx and chat rate limits retryable, other errors permanent.
pub fn classify(
    kind: ReceiverKind,
    status: u16,
    retry_after_ms: Option<i64>,
    body: &str,
) -> AttemptOutcome {
    let failed = |retryable: bool, error: String| AttemptOutcome::Failed {
        retryable,
        retry_after_ms,
        error,
    };
    if (200..300).contains(&status) {
        if matches!(kind, ReceiverKind::Wecom | ReceiverKind::Dingtalk) {
            let errcode = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("errcode").and_then(Value::as_i64));
            return match errcode {
                Some(0) => AttemptOutcome::Delivered,
                // WeCom 45009 and DingTalk 130101: sending too fast.
                Some(c @ (45009 | 130101)) => failed(true, format!("rate limited (errcode {c})")),
                Some(c) => failed(false, format!("errcode {c}")),
                None => failed(true, "unreadable answer".into()),
            };
        }
        return AttemptOutcome::Delivered;
    }
    let retryable = status == 408 || status == 429 || status >= 500;
    failed(retryable, format!("http {status}"))
}

/// `Retry-After` as milliseconds from `now`: delta-seconds or an HTTP date.
pub fn parse_retry_after_ms(value: &str, now: SystemTime) -> Option<i64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return i64::try_from(secs.saturating_mul(1000)).ok();
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let d = at.duration_since(now).unwrap_or(Duration::ZERO);
    i64::try_from(d.as_millis()).ok()
}

/// Hex HMAC-SHA256 of `timestamp + "." + body` with `secret` (the webhook signature).
pub fn webhook_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        // HMAC takes keys of any length; this cannot fail.
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// DingTalk's `sign`: Base64(HMAC-SHA256(key = secret, message = "{timestamp}\n{secret}")).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn incident_url(n: &Notification, ctx: &Context) -> Option<String> {
    ctx.external_url.as_ref().map(|u| {
        format!(
            "{}/api/v1/incidents/{}",
            u.trim_end_matches('/'),
            n.incident_id
        )
    })
}

/// A label name Alertmanager accepts (`[a-zA-Z_][a-zA-Z0-9_]*`).
fn label_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The Alertmanager API v2 body: one postable alert. Resolved sets `endsAt` to the
/// resolution; otherwise `endsAt` is four repeat intervals ahead, so Alertmanager resolves the
/// alert by itself if the collector disappears.
pub fn alertmanager_body(n: &Notification, ctx: &Context, now_ms: i64) -> Value {
    let i = &n.incident;
    let mut labels = Map::new();
    labels.insert(
        "alertname".into(),
        json!(format!("storepulse_{}", label_name(&i.kind))),
    );
    labels.insert("incident".into(), json!(n.incident_key));
    labels.insert("kind".into(), json!(i.kind));
    labels.insert("severity".into(), json!(i.severity.as_str()));
    labels.insert("source".into(), json!(ctx.source));
    for (k, v) in &i.scope {
        let name = label_name(k);
        if !labels.contains_key(&name) {
            labels.insert(name, json!(v));
        }
    }
    if n.maintenance.is_some() {
        labels.insert("maintenance".into(), json!("true"));
    }
    let mut annotations = Map::new();
    annotations.insert("summary".into(), json!(i.summary_en));
    annotations.insert("summary_zh".into(), json!(i.summary_zh));
    annotations.insert("description".into(), json!(i.remediation_en));
    annotations.insert("description_zh".into(), json!(i.remediation_zh));
    annotations.insert(
        "affected".into(),
        json!(format!(
            "{} terminals, {} stores, {} merchants",
            i.affected_terminals, i.affected_stores, i.affected_merchants
        )),
    );
    if let Some(m) = &n.maintenance {
        annotations.insert("maintenance".into(), json!(m));
    }
    if let Some(into) = &i.merged_into {
        annotations.insert("merged_into".into(), json!(into));
        annotations.insert("resolution".into(), json!(merged_text(into)));
    }
    let ends_at = match (n.kind, i.resolved_at_ms) {
        (NotificationKind::Resolved, Some(r)) => r,
        (NotificationKind::Resolved, None) => n.created_at_ms,
        _ => now_ms.saturating_add(n.repeat_interval_ms.saturating_mul(4)),
    };
    let mut alert = json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339::format_ms(i.started_at_ms),
        "endsAt": rfc3339::format_ms(ends_at),
    });
    if let Some(u) = incident_url(n, ctx) {
        alert["generatorURL"] = json!(u);
    }
    json!([alert])
}

/// PagerDuty severity for ours.
pub fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Major => "error",
        Severity::Minor => "warning",
        Severity::Info => "info",
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The PagerDuty Events API v2 body: `trigger` for firing, update and repeat (same
/// `dedup_key`, so PagerDuty keeps one alert), `resolve` for resolved.
pub fn pagerduty_body(n: &Notification, ctx: &Context, routing_key: &str) -> Value {
    let i = &n.incident;
    let dedup_key = truncate_chars(&n.incident_key, PD_DEDUP_KEY_MAX_CHARS);
    if n.kind == NotificationKind::Resolved {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let scope = i.scope_text();
    let summary = format!(
        "[{}] {}{} / {}",
        i.kind,
        i.summary_en,
        if scope.is_empty() {
            String::new()
        } else {
            format!(" ({scope})")
        },
        i.summary_zh
    );
    let mut details = Map::new();
    details.insert("incident_id".into(), json!(i.id));
    details.insert("scope".into(), json!(scope));
    details.insert("summary_zh".into(), json!(i.summary_zh));
    details.insert("remediation_en".into(), json!(i.remediation_en));
    details.insert("remediation_zh".into(), json!(i.remediation_zh));
    details.insert("affected_terminals".into(), json!(i.affected_terminals));
    details.insert("affected_stores".into(), json!(i.affected_stores));
    details.insert("affected_merchants".into(), json!(i.affected_merchants));
    details.insert("notification".into(), json!(n.kind.as_str()));
    details.insert("idempotency_key".into(), json!(n.idempotency_key));
    if let Some(m) = &n.maintenance {
        details.insert("maintenance".into(), json!(m));
    }
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "storepulse",
        "payload": {
            "summary": truncate_chars(&summary, PD_SUMMARY_MAX_CHARS),
            "source": ctx.source,
            "severity": pagerduty_severity(i.severity),
            "timestamp": rfc3339::format_ms(i.started_at_ms),
            "component": if scope.is_empty() { "fleet".to_owned() } else { scope },
            "group": i.kind,
            "class": i.kind,
            "custom_details": details,
        },
    });
    if let Some(u) = incident_url(n, ctx) {
        body["client_url"] = json!(u);
    }
    body
}

/// The generic webhook body (schema version 1, `docs/ALERTS.md`).
pub fn webhook_body(n: &Notification, ctx: &Context) -> Value {
    let i = &n.incident;
    let scope: Map<String, Value> = i.scope.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({
        "version": 1,
        "idempotency_key": n.idempotency_key,
        "notification": n.kind.as_str(),
        "created_at": rfc3339::format_ms(n.created_at_ms),
        "receiver": n.receiver,
        "source": ctx.source,
        "maintenance": n.maintenance,
        "url": incident_url(n, ctx),
        "incident": {
            "id": i.id,
            "key": n.incident_key,
            "kind": i.kind,
            "severity": i.severity.as_str(),
            "scope": scope,
            "summary_en": i.summary_en,
            "summary_zh": i.summary_zh,
            "remediation_en": i.remediation_en,
            "remediation_zh": i.remediation_zh,
            "affected_terminals": i.affected_terminals,
            "affected_stores": i.affected_stores,
            "affected_merchants": i.affected_merchants,
            "started_at": rfc3339::format_ms(i.started_at_ms),
            "resolved_at": i.resolved_at_ms.map(rfc3339::format_ms),
            "explained_by": i.explained_by,
            "merged_into": i.merged_into,
        },
    })
}

/// What a merged incident's resolution says, in English and Chinese.
fn merged_text(into: &str) -> String {
    format!("merged into incident {into} / 已合并至事件 {into}")
}

/// The short bilingual chat text, at most `max_bytes`.
pub fn chat_text(n: &Notification, ctx: &Context, max_bytes: usize) -> String {
    let i = &n.incident;
    let (tag, tag_zh) = match n.kind {
        NotificationKind::Firing => ("FIRING", "告警"),
        NotificationKind::Update => ("UPDATE", "更新"),
        NotificationKind::Repeat => ("STILL FIRING", "持续"),
        NotificationKind::Resolved => ("RESOLVED", "恢复"),
    };
    let scope = i.scope_text();
    let mut text = format!(
        "[{tag} {tag_zh}] {} {} {}\n{}\n{}\nAffected 影响: {} terminals 终端 / {} stores 门店 / {} merchants 商户",
        i.severity.as_str(),
        i.kind,
        if scope.is_empty() { "fleet" } else { &scope },
        i.summary_en,
        i.summary_zh,
        i.affected_terminals,
        i.affected_stores,
        i.affected_merchants,
    );
    if n.kind != NotificationKind::Resolved && !i.remediation_en.is_empty() {
        text.push_str(&format!(
            "\nDo 处置: {} / {}",
            i.remediation_en, i.remediation_zh
        ));
    }
    if let Some(m) = &n.maintenance {
        text.push_str(&format!("\nMaintenance 维护: {m}"));
    }
    if let Some(into) = &i.merged_into {
        text.push('\n');
        text.push_str(&merged_text(into));
    }
    if let Some(u) = incident_url(n, ctx) {
        text.push('\n');
        text.push_str(&u);
    }
    truncate_bytes(&text, max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        // Expected values computed independently (Python's hmac module).
        assert_eq!(
            webhook_signature("topsecret", "1700000000", br#"{"a":1}"#),
            "6a939b0c71853d606167625a15168ee9188c6a511c773ef4f42d307f3849e50f"
        );
        assert_eq!(
            dingtalk_sign("SECabc", 1_700_000_000_000),
            "jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM="
        );
        assert_eq!(url_encode("a+b/c="), "a%2Bb%2Fc%3D");
    }

    #[test]
    fn classification() {
        use ReceiverKind::*;
        assert_eq!(
            classify(Alertmanager, 200, None, ""),
            AttemptOutcome::Delivered
        );
        assert!(matches!(
            classify(Pagerduty, 429, Some(5), ""),
            AttemptOutcome::Failed {
                retryable: true,
                retry_after_ms: Some(5),
                ..
            }
        ));
        assert!(matches!(
            classify(Webhook, 503, None, ""),
            AttemptOutcome::Failed {
                retryable: true,
                ..
            }
        ));
        assert!(matches!(
            classify(Webhook, 400, None, ""),
            AttemptOutcome::Failed {
                retryable: false,
                ..
            }
        ));
        assert_eq!(
            classify(Wecom, 200, None, r#"{"errcode":0,"errmsg":"ok"}"#),
            AttemptOutcome::Delivered
        );
        assert!(matches!(
            classify(Wecom, 200, None, r#"{"errcode":45009}"#),
            AttemptOutcome::Failed {
                retryable: true,
                ..
            }
        ));
        assert!(matches!(
            classify(Dingtalk, 200, None, r#"{"errcode":310000}"#),
            AttemptOutcome::Failed {
                retryable: false,
                ..
            }
        ));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after_ms("7", now), Some(7000));
        assert_eq!(
            parse_retry_after_ms("Sun, 09 Sep 2001 01:46:50 GMT", now),
            Some(10_000)
        );
        assert_eq!(parse_retry_after_ms("soon", now), None);
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let s = "告警".repeat(1000);
        let t = truncate_bytes(&s, 2048);
        assert!(t.len() <= 2048 && t.ends_with('…'));
        assert_eq!(
            truncate_chars(&"x".repeat(2000), 1024).chars().count(),
            1024
        );
    }
}
