//! Intake tests: the router is called in-process, without a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use storepulse_agent_core::Spool;
use tower::ServiceExt;

use super::*;
use crate::config::tests::test_config;

async fn call(app: Router, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request");
    let resp = app.oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn agent() -> (tempfile::TempDir, Arc<Agent>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::open(test_config(dir.path())).expect("open");
    (dir, agent)
}

fn spooled(agent: &Agent) -> u64 {
    agent.inner().spool.meta().records
}

#[tokio::test]
async fn one_object_is_stored() {
    let (_dir, agent) = agent();
    let body = r#"{"scheme":"cup","code":"03","latency_ms":420,"method":"card","route":"acq-a"}"#;
    let (status, v) = call(router(Arc::clone(&agent)), "POST", "/v1/txn", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["first_seq"], v["last_seq"]);
    let records = agent.inner().spool.records().expect("read");
    assert_eq!(records.len(), 1);
    let RecordBody::TxnOutcome(t) = &records[0].body else {
        panic!("not a txn outcome")
    };
    assert_eq!(
        (t.scheme, t.code.as_str(), t.latency_ms, t.method),
        (Scheme::Cup, "03", 420, PayMethod::Card)
    );
    assert_eq!(t.route.as_ref().map(Label::as_str), Some("acq-a"));
}

#[tokio::test]
async fn an_array_is_stored_in_one_go() {
    let (_dir, agent) = agent();
    let body = r#"[{"scheme":"wechatpay","code":"SYSTEMERROR"},{"scheme":"iso8583","code":"00","time_unix_ms":1700000000000}]"#;
    let (status, v) = call(router(Arc::clone(&agent)), "POST", "/v1/txn", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 2);
    assert_eq!(
        v["last_seq"].as_u64(),
        v["first_seq"].as_u64().map(|s| s + 1)
    );
    let records = agent.inner().spool.records().expect("read");
    assert_eq!(records[1].time_unix_ms, 1_700_000_000_000);
    let RecordBody::TxnOutcome(t) = &records[0].body else {
        panic!("not a txn outcome")
    };
    assert_eq!(t.method, PayMethod::Qr, "method defaults from the scheme");
}

#[tokio::test]
async fn one_bad_item_refuses_the_whole_request() {
    let (_dir, agent) = agent();
    let cases = [
        (
            r#"[{"scheme":"cup","code":"00"},{"scheme":"visa","code":"00"}]"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "item 1: scheme",
        ),
        (
            r#"{"scheme":"cup","code":"00","pan":"4111111111111111"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "card",
        ),
        (
            r#"{"scheme":"cup","code":"4111111111111111"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "card number",
        ),
        (
            r#"{"scheme":"cup","code":"00","note":"4111 1111 1111 1111"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "card number",
        ),
        (
            r#"{"scheme":"cup","code":"00","extra":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field",
        ),
        (
            r#"{"scheme":"cup","code":"0 0"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "code",
        ),
        (
            r#"{"scheme":"cup","code":""}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "code",
        ),
        (
            r#"{"scheme":"cup"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "code is missing",
        ),
        (
            r#"{"scheme":"cup","code":"00","latency_ms":-1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "latency_ms",
        ),
        (
            r#"{"scheme":"cup","code":"00","latency_ms":5000000000}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "latency_ms",
        ),
        (
            r#"{"scheme":"cup","code":"00","latency_ms":1.5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "latency_ms",
        ),
        (
            r#"{"scheme":"cup","code":"00","latency_ms":1e300}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "latency_ms",
        ),
        (
            r#"{"scheme":"cup","code":"00","time_unix_ms":1.0e40}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "time_unix_ms",
        ),
        (
            r#"{"scheme":"cup","code":"00","method":"cash"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "method",
        ),
        (
            r#"{"scheme":"cup","code":"00","route":""}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "route",
        ),
        (r#"[]"#, StatusCode::UNPROCESSABLE_ENTITY, "no items"),
        (r#"[1]"#, StatusCode::UNPROCESSABLE_ENTITY, "item 0"),
        (
            r#"{"scheme":"cup","#,
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (r#""cup""#, StatusCode::BAD_REQUEST, "object"),
    ];
    for (body, want, needle) in cases {
        let (status, v) = call(router(Arc::clone(&agent)), "POST", "/v1/txn", body).await;
        assert_eq!(status, want, "{body} -> {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg:?} lacks {needle:?}");
    }
    assert_eq!(spooled(&agent), 0, "nothing stored");
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let (_dir, agent) = agent();
    let item = r#"{"scheme":"cup","code":"00"}"#;
    let many = format!("[{}]", vec![item; MAX_ITEMS + 1].join(","));
    let (status, v) = call(router(Arc::clone(&agent)), "POST", "/v1/txn", many).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let huge = format!(
        "{{\"scheme\":\"cup\",\"code\":\"00\",\"route\":\"{}\"}}",
        "x".repeat(MAX_BODY_BYTES)
    );
    let (status, v) = call(router(Arc::clone(&agent)), "POST", "/v1/txn", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"].is_string());
    assert_eq!(spooled(&agent), 0);
}

#[tokio::test]
async fn status_reports_the_spool() {
    let (_dir, agent) = agent();
    let body =
        r#"[{"scheme":"alipay","code":"ACQ SYSTEM_ERROR"},{"scheme":"alipay","code":"10000"}]"#;
    let (status, _) = call(router(Arc::clone(&agent)), "POST", "/v1/txn", body).await;
    // A space is not part of any scheme's codes.
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Real Alipay codes carry dots.
    let body =
        r#"[{"scheme":"alipay","code":"ACQ.SYSTEM_ERROR"},{"scheme":"alipay","code":"10000"}]"#;
    let (status, _) = call(router(Arc::clone(&agent)), "POST", "/v1/txn", body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = call(
        router(Arc::clone(&agent)),
        "GET",
        "/v1/status",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["terminal_id"], "T0001");
    assert_eq!(v["connected"], false);
    assert_eq!(v["spool_records"], 2);
    assert_eq!(v["next_seq"], 2);
    assert!(v["spool_bytes"].as_u64().unwrap_or(0) > 0);
    assert_eq!(v["acked_records_total"], 0);
    assert_eq!(v["dropped"]["txn_outcomes"], 0);
    assert!(v["last_error"].is_null());
    assert!(v["spool_epoch"].is_u64());
}
