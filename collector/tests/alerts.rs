//! Alert delivery end to end: a real Prometheus Alertmanager, a receiver that fails for a
//! while across a notifier restart (exactly once by idempotency key), PagerDuty Events v2
//! field rules checked by a strict test receiver, and the alerting API (silences, maintenance,
//! history).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use storepulse_collector::notify::config::{AlertSettings, AlertsConfig};
use storepulse_collector::notify::{Alerts, IncidentSnapshot, Severity};
use storepulse_collector::store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[path = "support/schema.rs"]
mod schema;

const AM_BIN: &str = "/usr/bin/prometheus-alertmanager";

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

fn snapshot(id: &str, kind: &str, severity: Severity, scope: &[(&str, &str)]) -> IncidentSnapshot {
    IncidentSnapshot {
        id: id.into(),
        kind: kind.into(),
        severity,
        scope: scope
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        summary_en: format!("{kind}: payments failing"),
        summary_zh: "交易失败".into(),
        remediation_en: "Check the merchant record with the acquirer.".into(),
        remediation_zh: "请联系收单机构核对商户信息。".into(),
        affected_terminals: 40,
        affected_stores: 8,
        affected_merchants: 1,
        started_at_ms: now_ms() - 60_000,
        resolved_at_ms: None,
        explained_by: None,
        merged_into: None,
    }
}

fn resolved(mut s: IncidentSnapshot) -> IncidentSnapshot {
    s.resolved_at_ms = Some(now_ms());
    s
}

fn alerts_config(extra: &str) -> AlertSettings {
    let text = format!(
        "group_wait_secs = 0\ntick_interval_ms = 20\nupdate_min_interval_secs = 3600\n{extra}"
    );
    let cfg: AlertsConfig = toml::from_str(&text).expect("alerts config parses");
    cfg.settings(&|var| std::env::var(var).ok())
        .expect("alerts config is valid")
}

struct Notifier {
    alerts: Alerts,
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

async fn start_notifier(cfg: &AlertSettings, store: Store) -> Notifier {
    let (stop, rx) = watch::channel(false);
    let (alerts, task) = Alerts::start(
        cfg,
        store,
        storepulse_collector::metrics::Metrics::new(),
        rx,
    )
    .await
    .expect("alerts start");
    Notifier { alerts, task, stop }
}

impl Notifier {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("notifier task");
    }
}

async fn eventually<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Am(Child);

impl Drop for Am {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_alertmanager(dir: &Path, port: u16) -> Am {
    assert!(
        Path::new(AM_BIN).exists(),
        "{AM_BIN} is missing: run scripts/install-test-deps.sh (Debian package prometheus-alertmanager)"
    );
    let config = dir.join("am.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .expect("am config");
    let child = Command::new(AM_BIN)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alertmanager");
    Am(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_receives_alert_then_resolution() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _am = start_alertmanager(tmp.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually("alertmanager ready", 30, async || {
        let r = http.get(format!("{base}/-/ready")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    let cfg = alerts_config(&format!(
        "default_receivers = [\"am\"]\n[[receivers]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"{base}\"\n"
    ));
    let n = start_notifier(&cfg, Store::in_memory()).await;
    let inc = snapshot(
        "I-am-1",
        "regional_outage",
        Severity::Critical,
        &[("carrier", "CUCC"), ("region", "R02")],
    );
    let key = inc.key();
    n.alerts.handle_incident(inc.clone());

    let find = async |http: &reqwest::Client| -> Option<Value> {
        let list: Value = http
            .get(format!("{base}/api/v2/alerts"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.as_array()?
            .iter()
            .find(|a| a["labels"]["incident"] == json!(key))
            .cloned()
    };
    let alert = eventually("the alert in Alertmanager", 20, async || find(&http).await).await;
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["region"], "R02");
    assert_eq!(alert["labels"]["alertname"], "storepulse_regional_outage");
    assert_eq!(alert["annotations"]["summary_zh"], "交易失败");

    n.alerts.handle_incident(resolved(inc.clone()));
    // Alertmanager's GET /api/v2/alerts leaves out alerts whose endsAt is in the past, so a
    // delivered resolution makes the alert disappear from the list.
    eventually("the resolution in Alertmanager", 20, async || {
        let list: Value = http
            .get(format!("{base}/api/v2/alerts"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let present = list
            .as_array()?
            .iter()
            .any(|a| a["labels"]["incident"] == json!(inc.key()));
        (!present).then_some(())
    })
    .await;
    // The history line is written after the receiver answered, so it may trail Alertmanager's
    // view by a moment.
    let delivered = eventually("both deliveries in the history", 20, async || {
        let history = n.alerts.history("I-am-1").await.ok()?;
        let delivered: Vec<String> = history
            .iter()
            .filter(|h| h.result == "delivered")
            .map(|h| h.notification.clone())
            .collect();
        (delivered.len() >= 2).then_some(delivered)
    })
    .await;
    assert_eq!(delivered, ["firing", "resolved"]);
    n.stop().await;
}

/// A webhook receiver that fails in a scripted way, checks signatures and counts accepted
/// deliveries per idempotency key.
#[derive(Default)]
struct Flaky {
    script: Vec<&'static str>,
    requests: usize,
    accepted: BTreeMap<String, usize>,
    order: Vec<(String, String)>,
    bad_signatures: usize,
}

async fn flaky_hook(
    State(st): State<Arc<Mutex<Flaky>>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let step = {
        let mut s = st.lock().expect("lock");
        let step = s.script.get(s.requests).copied().unwrap_or("ok");
        s.requests += 1;
        step
    };
    match step {
        "500" => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "429" => return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response(),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        _ => {}
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let ts = h("x-storepulse-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"hook-secret").expect("key");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut s = st.lock().expect("lock");
    if h("x-storepulse-signature") != format!("sha256={want}") {
        s.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let v: Value = serde_json::from_slice(&body).expect("json body");
    let key = h("x-storepulse-idempotency-key");
    assert_eq!(v["idempotency_key"], json!(key));
    *s.accepted.entry(key).or_default() += 1;
    s.order.push((
        v["incident"]["id"].as_str().unwrap_or("").to_owned(),
        v["notification"].as_str().unwrap_or("").to_owned(),
    ));
    StatusCode::OK.into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_receiver_gets_everything_exactly_once_across_a_restart() {
    let state = Arc::new(Mutex::new(Flaky {
        script: vec![
            "500", "429", "hang", "500", "500", "429", "500", "hang", "500", "500", "500", "429",
        ],
        ..Flaky::default()
    }));
    let addr = serve(
        Router::new()
            .route("/hook", post(flaky_hook))
            .with_state(state.clone()),
    )
    .await;
    let cfg = alerts_config(&format!(
        "default_receivers = [\"hook\"]\n\
         [delivery]\ninitial_backoff_ms = 100\nmax_backoff_secs = 1\nrequest_timeout_secs = 1\nmax_attempts = 1000\n\
         [[receivers]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret = \"hook-secret\"\n"
    ));
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path()).expect("store");
    let n = start_notifier(&cfg, store).await;
    let incidents: Vec<_> = (0..3)
        .map(|i| {
            snapshot(
                &format!("F{i}"),
                "merchant_config",
                Severity::Major,
                &[("merchant_id", "M1")],
            )
        })
        .collect();
    for i in &incidents {
        n.alerts.handle_incident(i.clone());
    }
    eventually("three firing notifications queued", 10, async || {
        (n.alerts.outbox().pending.len() + state.lock().expect("lock").accepted.len() >= 3)
            .then_some(())
    })
    .await;
    for i in &incidents {
        n.alerts.handle_incident(resolved(i.clone()));
    }
    // Restart while the receiver is still failing: everything pending is in the store.
    eventually("some failures", 10, async || {
        (state.lock().expect("lock").requests >= 4).then_some(())
    })
    .await;
    let pending_before = n.alerts.outbox().pending.len();
    assert!(pending_before > 0, "the restart happens with work pending");
    n.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let store = Store::open(tmp.path()).expect("reopen store");
    let n = start_notifier(&cfg, store).await;
    eventually("every notification delivered", 60, async || {
        let o = n.alerts.outbox();
        (o.pending.is_empty() && state.lock().expect("lock").accepted.len() == 6).then_some(())
    })
    .await;
    {
        let s = state.lock().expect("lock");
        assert_eq!(s.bad_signatures, 0);
        let mut want: Vec<String> = incidents
            .iter()
            .flat_map(|i| {
                [
                    format!("sp:{}:hook:0:firing", i.key()),
                    format!("sp:{}:hook:1:resolved", i.key()),
                ]
            })
            .collect();
        want.sort();
        assert_eq!(s.accepted.keys().cloned().collect::<Vec<_>>(), want);
        assert!(s.accepted.values().all(|&c| c == 1), "{:?}", s.accepted);
        for i in &incidents {
            let seq: Vec<_> = s
                .order
                .iter()
                .filter(|(id, _)| *id == i.id)
                .map(|(_, k)| k.as_str())
                .collect();
            assert_eq!(seq, ["firing", "resolved"], "firing before resolution");
        }
    }
    let history = n.alerts.history("F0").await.expect("history");
    assert_eq!(
        history.iter().filter(|h| h.result == "delivered").count(),
        2
    );
    assert_eq!(n.alerts.outbox().gave_up_total, 0);
    n.stop().await;
}

/// PagerDuty Events API v2 field rules, as a strict receiver checks them.
fn pagerduty_violations(v: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    if s("/routing_key").is_none_or(|k| k.len() != 32) {
        bad.push("routing_key must be the 32-character integration key".into());
    }
    let action = s("/event_action").unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        bad.push(format!("event_action {action:?}"));
    }
    match s("/dedup_key") {
        Some(k) if !k.is_empty() && k.chars().count() <= 255 => {}
        Some(_) => bad.push("dedup_key empty or over 255 characters".into()),
        None if action != "trigger" => {
            bad.push("dedup_key required for acknowledge/resolve".into())
        }
        None => {}
    }
    if action == "trigger" {
        match s("/payload/summary") {
            Some(x) if !x.is_empty() && x.chars().count() <= 1024 => {}
            _ => bad.push("payload.summary missing, empty or over 1024 characters".into()),
        }
        if s("/payload/source").is_none_or(str::is_empty) {
            bad.push("payload.source required".into());
        }
        let sev = s("/payload/severity").unwrap_or("");
        if !["critical", "error", "warning", "info"].contains(&sev) {
            bad.push(format!("payload.severity {sev:?}"));
        }
        if let Some(t) = s("/payload/timestamp")
            && storepulse_collector_core::notify::rfc3339::parse_ms(t).is_none()
        {
            bad.push(format!("payload.timestamp {t:?} is not ISO 8601"));
        }
        if v.pointer("/payload/custom_details")
            .is_some_and(|d| !d.is_object())
        {
            bad.push("payload.custom_details must be an object".into());
        }
    }
    bad
}

async fn pagerduty(
    State(st): State<Arc<Mutex<Vec<Value>>>>,
    Json(v): Json<Value>,
) -> axum::response::Response {
    let bad = pagerduty_violations(&v);
    if !bad.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": bad})),
        )
            .into_response();
    }
    let dedup = v["dedup_key"].clone();
    st.lock().expect("lock").push(v);
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "success", "message": "Event processed", "dedup_key": dedup})),
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_events_follow_the_v2_field_rules() {
    assert!(!pagerduty_violations(&json!({"routing_key": "x", "event_action": "fire"})).is_empty());
    let events = Arc::new(Mutex::new(Vec::new()));
    let addr = serve(
        Router::new()
            .route("/v2/enqueue", post(pagerduty))
            .with_state(events.clone()),
    )
    .await;
    let key = "0123456789abcdef0123456789abcdef";
    let cfg = alerts_config(&format!(
        "default_receivers = [\"pd\"]\nexternal_url = \"https://storepulse.example.com\"\n\
         [delivery]\nmax_attempts = 1\n\
         [[receivers]]\nname = \"pd\"\ntype = \"pagerduty\"\nurl = \"http://{addr}/v2/enqueue\"\nrouting_key = \"{key}\"\n"
    ));
    let n = start_notifier(&cfg, Store::in_memory()).await;
    let mut long = snapshot(
        "P1",
        "acquirer_outage",
        Severity::Major,
        &[("acquirer", "ACQ-A")],
    );
    long.summary_en = "acquirer ACQ-A refuses payments ".repeat(60);
    long.summary_zh = "收单机构拒绝交易".repeat(100);
    let minor = snapshot(
        "P2",
        "store_offline",
        Severity::Minor,
        &[("store_id", "M1-S1")],
    );
    n.alerts.handle_incident(long.clone());
    n.alerts.handle_incident(minor.clone());
    eventually("two triggers", 10, async || {
        (events.lock().expect("lock").len() == 2).then_some(())
    })
    .await;
    n.alerts.handle_incident(resolved(long.clone()));
    eventually("a resolve", 10, async || {
        (events.lock().expect("lock").len() == 3).then_some(())
    })
    .await;

    let ev = events.lock().expect("lock").clone();
    let trigger = ev
        .iter()
        .find(|e| e["dedup_key"] == json!(long.key()) && e["event_action"] == "trigger")
        .expect("P1 trigger");
    assert_eq!(trigger["dedup_key"], json!(long.key()));
    assert_eq!(
        trigger["payload"]["severity"], "error",
        "major maps to error"
    );
    assert_eq!(
        trigger["payload"]["summary"]
            .as_str()
            .expect("summary")
            .chars()
            .count(),
        1024
    );
    assert_eq!(trigger["payload"]["source"], "storepulse-collector");
    assert_eq!(
        trigger["client_url"],
        "https://storepulse.example.com/api/v1/incidents/P1"
    );
    let p2 = ev
        .iter()
        .find(|e| e["dedup_key"] == json!(minor.key()))
        .expect("P2 trigger");
    assert_eq!(
        p2["payload"]["severity"], "warning",
        "minor maps to warning"
    );
    let resolve = ev
        .iter()
        .find(|e| e["event_action"] == "resolve")
        .expect("resolve");
    assert_eq!(resolve["dedup_key"], json!(long.key()));
    let o = n.alerts.outbox();
    assert_eq!(
        (o.stats.gave_up, o.pending.len()),
        (0, 0),
        "no event was refused"
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_silences_and_maintenance_mute_without_hiding() {
    let state = Arc::new(Mutex::new(Flaky::default()));
    let hook = serve(
        Router::new()
            .route("/hook", post(flaky_hook))
            .with_state(state.clone()),
    )
    .await;
    let cfg = alerts_config(&format!(
        "default_receivers = [\"hook\"]\nmaintenance_mode = \"mute\"\n\
         [[receivers]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{hook}/hook\"\nsecret = \"hook-secret\"\n"
    ));
    let n = start_notifier(&cfg, Store::in_memory()).await;
    let api = serve(storepulse_collector::api::alerts::router(n.alerts.clone())).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{api}{p}");
    let in_an_hour = storepulse_collector_core::notify::rfc3339::format_ms(now_ms() + 3_600_000);
    // Every answer below is checked against the OpenAPI document at the end.
    let responses = schema::Responses::new();

    let r = responses
        .send(http.post(url("/api/v1/alerts/silences")).json(
            &json!({"matchers": ["merchant=M0003"], "ends_at": in_an_hour, "author": "ops", "comment": "known"}),
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let silence = r.json;
    // The old short name is accepted and kept in the canonical spelling incidents carry.
    assert_eq!(silence["matchers"][0], "merchant_id=M0003", "{silence}");
    let r = responses
        .send(http.post(url("/api/v1/alerts/maintenance")).json(
            &json!({"scope": {"acquirer": "ACQ-A"}, "ends_at": in_an_hour, "announcement": "ACQ-A upgrade / 升级"}),
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for bad in [
        json!({"matchers": ["merchant"], "ends_at": in_an_hour, "author": "ops"}),
        json!({"matchers": ["merchant=M1"], "ends_at": "tomorrow", "author": "ops"}),
        json!({"matchers": ["merchant=M1"], "ends_at": in_an_hour, "author": "ops", "colour": 1}),
    ] {
        let r = responses
            .send(http.post(url("/api/v1/alerts/silences")).json(&bad))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    let r = responses
        .send(
            http.post(url("/api/v1/alerts/maintenance"))
                .json(&json!({"scope": {}, "ends_at": in_an_hour})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = responses
        .send(http.delete(url("/api/v1/alerts/maintenance/no-such-window")))
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    n.alerts.handle_incident(snapshot(
        "S1",
        "merchant_config",
        Severity::Major,
        &[("merchant_id", "M0003")],
    ));
    n.alerts.handle_incident(snapshot(
        "W1",
        "acquirer_outage",
        Severity::Critical,
        &[("acquirer", "ACQ-A")],
    ));
    n.alerts.handle_incident(snapshot(
        "X1",
        "merchant_config",
        Severity::Major,
        &[("merchant_id", "M0009")],
    ));
    eventually("X1 delivered", 10, async || {
        (state.lock().expect("lock").accepted.len() == 1).then_some(())
    })
    .await;
    let outbox = responses
        .send(http.get(url("/api/v1/alerts/outbox")))
        .await
        .json;
    assert_eq!(outbox["muted_incidents"]["S1"]["reason"], "silenced");
    assert_eq!(outbox["muted_incidents"]["W1"]["reason"], "maintenance");
    let silences = responses
        .send(http.get(url("/api/v1/alerts/silences")))
        .await
        .json;
    assert_eq!(silences["silences"][0]["author"], "ops", "{silences}");

    // Expiring the silence lets S1 page.
    let id = silence["id"].as_str().expect("id");
    let r = responses
        .send(http.delete(url(&format!("/api/v1/alerts/silences/{id}"))))
        .await;
    assert_eq!(r.status, 204);
    let r = responses
        .send(http.delete(url(&format!("/api/v1/alerts/silences/{id}"))))
        .await;
    assert_eq!(r.status, 404, "an expired silence is gone");
    // The receiver's accepting the request is not the end of the delivery: the notifier
    // records `delivered` once it has read the answer, so wait for the history to say so
    // (reading it as soon as the hook had the request raced with that and failed once in CI).
    let results = eventually("S1 delivered and recorded", 10, async || {
        let hist = responses
            .send(http.get(url("/api/v1/incidents/S1/notifications")))
            .await
            .json;
        let results: Vec<(String, String)> = hist["notifications"]
            .as_array()
            .expect("list")
            .iter()
            .map(|h| {
                (
                    h["notification"].as_str().unwrap_or("").to_owned(),
                    h["result"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        results
            .iter()
            .any(|(_, r)| r != "queued")
            .then_some(results)
    })
    .await;
    assert_eq!(
        results,
        [("firing", "queued"), ("firing", "delivered")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(state.lock().expect("lock").accepted.len(), 2);
    let windows = responses
        .send(http.get(url("/api/v1/alerts/maintenance")))
        .await
        .json;
    assert_eq!(windows["maintenance"][0]["scope"]["acquirer"], "ACQ-A");
    assert!(
        !state
            .lock()
            .expect("lock")
            .order
            .iter()
            .any(|(id, _)| id == "W1")
    );
    responses.check();
    n.stop().await;
}
