//! The OpenAPI document: served at /api/v1/openapi.json, valid by the reference validator
//! (`openapi-spec-validator`, installed by the test command), and true to the router: every
//! documented path and method exists (answers something other than the router's 404/405).

use std::process::Command;

use storepulse_collector::config::{Config, TlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_and_matches_the_router() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = tmp.path().join("pki");
    storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)
        .expect("pki");
    let mut config = Config::with_defaults(TlsConfig::from_pki_dir(&pki), tmp.path().join("store"));
    config.quic.listen = "127.0.0.1:0".parse().expect("addr");
    config.http.listen = "127.0.0.1:0".parse().expect("addr");
    let c = storepulse_collector::start(config).await.expect("start");
    let base = format!("http://{}", c.http_addr());
    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");

    let file = tmp.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write");
    let out = Command::new("python3")
        .args(["-c", "import sys\nfrom openapi_spec_validator import validate\nfrom openapi_spec_validator.readers import read_from_filename\nd, _ = read_from_filename(sys.argv[1])\nvalidate(d)\nprint('valid')", file.to_str().expect("utf8")])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "invalid OpenAPI document (or the validator is not installed: run scripts/install-test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 10);
    for (path, item) in paths {
        let url = format!("{base}{}", path.replace("{id}", "0"));
        for method in item.as_object().expect("path item").keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let mut req = http.request(m.clone(), &url);
            if m == reqwest::Method::POST {
                req = req.json(&serde_json::json!({}));
            }
            let resp = req.send().await.expect("send");
            let status = resp.status();
            // An event stream never ends: its headers are the answer.
            let streaming = resp
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body = if streaming {
                String::new()
            } else {
                resp.text().await.unwrap_or_default()
            };
            assert_ne!(
                status,
                reqwest::StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} is documented but not routed"
            );
        }
    }
    c.shutdown().await.expect("shutdown");
}
