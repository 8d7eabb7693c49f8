//! The OpenAPI document: generated from the API's Rust types (`storepulse_collector::api`),
//! served at /api/v1/openapi.json, valid by the reference validator (`openapi-spec-validator`,
//! installed by the test command), OpenAPI 3.1, and true to the router in both directions:
//! every documented path and method is routed, every API route is registered through
//! `routes!` (so it is documented), and every API path the dashboard calls is documented.
//! Every answer of the probe, errors included, is checked against the document.

#[path = "support/schema.rs"]
mod schema;

use std::process::Command;

use serde_json::Value;
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
    let responses = schema::Responses::new();
    let served = responses
        .send(http.get(format!("{base}/api/v1/openapi.json")))
        .await;
    assert_eq!(served.status, 200);
    let doc = served.json;
    assert_eq!(
        doc,
        serde_json::to_value(storepulse_collector::api::openapi()).expect("document"),
        "the served document is the generated one"
    );
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );

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

    // Every documented path and method is routed; its answer matches the document.
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 19, "{} paths", paths.len());
    for (path, item) in paths {
        let url = format!("{base}{}", path.replace("{id}", "0"));
        for method in item.as_object().expect("path item").keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let mut req = http.request(m.clone(), &url);
            if m == reqwest::Method::POST {
                req = req.json(&serde_json::json!({}));
            }
            let a = responses.send(req).await;
            assert_ne!(a.status, 405, "{method} {path}");
            assert!(
                !a.text.contains("no such endpoint"),
                "{method} {path} is documented but not routed"
            );
        }
    }
    // What is not documented is not routed.
    for path in [
        "/api/v1/terminal",
        "/api/v1/incidents/1/timeline",
        "/api/v2/terminals",
    ] {
        let a = responses.send(http.get(format!("{base}{path}"))).await;
        assert_eq!(a.status, 404, "{path}");
        assert!(a.text.contains("no such endpoint"), "{path}: {}", a.text);
    }
    responses.check();
    c.shutdown().await.expect("shutdown");
}

/// Whether `path` falls under one of the document's templates (a `*` segment stands for
/// any one segment).
fn documented(doc: &Value, path: &str) -> bool {
    doc["paths"].as_object().expect("paths").keys().any(|t| {
        let (ts, ps): (Vec<&str>, Vec<&str>) = (t.split('/').collect(), path.split('/').collect());
        ts.len() == ps.len()
            && ts
                .iter()
                .zip(&ps)
                .all(|(t, p)| t == p || *p == "*" || (t.starts_with('{') && !p.is_empty()))
    })
}

#[test]
fn every_route_is_documented() {
    let doc = serde_json::to_value(storepulse_collector::api::openapi()).expect("document");
    // The API modules register routes only through utoipa-axum's `routes!`, which adds the
    // handler's documentation with its route; a plain `.route(` would bypass the document.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut files = vec![concat!(env!("CARGO_MANIFEST_DIR"), "/src/api.rs").to_owned()];
    for e in std::fs::read_dir(dir).expect("src/api") {
        files.push(e.expect("entry").path().display().to_string());
    }
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        assert!(
            !text.contains(".route("),
            "{f} adds a route outside `routes!`: it would be missing from the document"
        );
    }
    assert!(files.len() >= 9, "{files:?}");

    // Every API path the dashboard calls is documented.
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/web");
    let mut called = 0;
    for e in std::fs::read_dir(web).expect("dashboards/web") {
        let p = e.expect("entry").path();
        if p.extension().is_none_or(|x| x != "js") {
            continue;
        }
        let js = std::fs::read_to_string(&p).expect("read");
        for (i, _) in js.match_indices("/api/v1/") {
            // The path up to a quote, `?`, space or bracket; a `${...}` segment can be anything.
            let rest = &js[i..];
            let end = rest
                .find(|c: char| {
                    c == '"'
                        || c == '`'
                        || c == '\''
                        || c == '?'
                        || c == ','
                        || c == ')'
                        || c == ' '
                })
                .unwrap_or(rest.len());
            let raw = &rest[..end];
            let path = raw
                .split('/')
                .map(|s| if s.contains("${") { "*" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let path = path.trim_end_matches('/');
            if path == "/api/v1" || path.contains("...") {
                continue;
            }
            called += 1;
            assert!(
                documented(&doc, path),
                "{}: the dashboard calls {path} ({raw}), which the document lacks",
                p.display()
            );
        }
    }
    assert!(called >= 10, "found {called} API calls in the dashboard");
}

#[test]
fn enumerated_fields_are_enums() {
    let doc = serde_json::to_value(storepulse_collector::api::openapi()).expect("document");
    let schemas = &doc["components"]["schemas"];
    for (name, some) in [
        ("Notice", "firing"),
        ("Delivery", "gave_up"),
        ("Kind", "merchant_config"),
        ("Severity", "critical"),
        ("LabelName", "terminal_id"),
        ("TerminalLabel", "app_version"),
        ("Liveness", "stale"),
        ("IncidentState", "resolved"),
        ("MuteReason", "maintenance"),
        ("Class", "cardholder"),
        ("PayScheme", "wechatpay"),
        ("Role", "admin"),
    ] {
        let values = schemas[name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is not an enum: {}", schemas[name]));
        assert!(values.iter().any(|v| v == some), "{name}: {values:?}");
    }
    // Error answers are documented with the error body.
    let mut errors = 0;
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("item").values() {
            for (status, r) in op["responses"].as_object().expect("responses") {
                if status.starts_with('4') {
                    errors += 1;
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{status}: {r}"
                    );
                }
            }
        }
    }
    assert!(errors >= 30, "{errors} documented error answers");
}
