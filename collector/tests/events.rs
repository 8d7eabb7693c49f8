//! The live event stream: `GET /api/v1/events` sends an `update` at once and `tick`s after,
//! and a collector shutting down ends open streams instead of waiting for the browser.

#[path = "support/schema.rs"]
mod schema;

use std::time::Duration;

use futures_util::StreamExt;
use storepulse_collector::config::{Config, TlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_updates_and_ends_on_shutdown() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = tmp.path().join("pki");
    storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)
        .expect("pki");
    let mut config = Config::with_defaults(TlsConfig::from_pki_dir(&pki), tmp.path().join("store"));
    config.quic.listen = "127.0.0.1:0".parse().expect("addr");
    config.http.listen = "127.0.0.1:0".parse().expect("addr");
    let c = storepulse_collector::start(config).await.expect("start");
    let resp = reqwest::get(format!("http://{}/api/v1/events", c.http_addr()))
        .await
        .expect("events");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(text.contains("event: update") && text.contains("event: tick")) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("events in time");
        text.push_str(&String::from_utf8_lossy(
            &chunk.expect("stream open").expect("chunk"),
        ));
    }
    assert!(text.contains("\"incidents_active\":0"), "{text}");
    // Each event's data is a `LiveEvent` of the document; the summary is what it says.
    let responses = schema::Responses::new();
    let mut events = 0;
    for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
        let v: serde_json::Value = serde_json::from_str(data.trim()).expect("event data is JSON");
        responses.record_component("LiveEvent", v);
        events += 1;
    }
    assert!(events >= 2, "{text}");
    let summary = responses
        .send(reqwest::Client::new().get(format!("http://{}/api/v1/summary", c.http_addr())))
        .await
        .json;
    assert_eq!(summary["terminals"]["total"], 0, "{summary}");
    responses.check();
    // The stream is still open: shutdown must end it, not wait for the client.
    tokio::time::timeout(Duration::from_secs(15), c.shutdown())
        .await
        .expect("shutdown did not wait for the open event stream")
        .expect("shutdown");
}
