//! API authentication: no token → 401, unknown token → 401, a read-only token can read but
//! change nothing (403), an admin token can change; the dashboard's static files and
//! `/healthz` stay public; `/metrics` needs a token unless configured public; an API on a
//! non-loopback address without tokens is refused at config time.

#[path = "support/schema.rs"]
mod schema;

use std::path::Path;

use reqwest::StatusCode;
use storepulse_collector::config::Config;

const READ: &str = "read-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

async fn start() -> (tempfile::TempDir, storepulse_collector::Collector) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = tmp.path().join("pki");
    storepulse_collector::pki::init(&pki, storepulse_collector::pki::DEFAULT_SERVER_NAME)
        .expect("pki");
    let text = format!(
        r#"[quic]
listen = "127.0.0.1:0"
[tls]
ca_cert = "pki/ca.pem"
cert = "pki/collector.pem"
key = "pki/collector.key"
[store]
path = "store"
[http]
listen = "127.0.0.1:0"
tokens = [
  {{ name = "wall", role = "read", token = "{READ}" }},
  {{ name = "ops", role = "admin", token = "{ADMIN}" }},
]
"#
    );
    let config = Config::from_toml(&text, tmp.path()).expect("config");
    let c = storepulse_collector::start(config).await.expect("start");
    (tmp, c)
}

/// Sends a request, records the answer for the schema check, returns its status.
async fn call(
    r: &schema::Responses,
    c: &storepulse_collector::Collector,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> StatusCode {
    let mut req = reqwest::Client::new().request(method, format!("http://{}{path}", c.http_addr()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let a = r.send(req).await;
    StatusCode::from_u16(a.status).expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_are_enforced() {
    let (_tmp, c) = start().await;
    let r = schema::Responses::new();
    use reqwest::Method;
    for path in [
        "/api/v1/terminals",
        "/api/v1/incidents",
        "/api/v1/alerts/silences",
        "/metrics",
    ] {
        assert_eq!(
            call(&r, &c, Method::GET, path, None, None).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            call(
                &r,
                &c,
                Method::GET,
                path,
                Some("wrong-token-0123456789"),
                None
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            call(&r, &c, Method::GET, path, Some(READ), None).await,
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(
            call(&r, &c, Method::GET, path, Some(ADMIN), None).await,
            StatusCode::OK,
            "{path}"
        );
    }
    // The dashboard's static files are not part of the API document: not recorded.
    let assets = schema::Responses::new();
    for path in ["/", "/assets/app.js", "/healthz"] {
        let r = if path == "/healthz" { &r } else { &assets };
        assert_eq!(
            call(r, &c, Method::GET, path, None, None).await,
            StatusCode::OK,
            "{path}"
        );
    }
    let silence = serde_json::json!({
        "matchers": ["merchant=M0001"],
        "ends_at": "2099-01-01T00:00:00Z",
        "author": "test",
        "comment": "auth test",
    });
    assert_eq!(
        call(
            &r,
            &c,
            Method::POST,
            "/api/v1/alerts/silences",
            None,
            Some(silence.clone())
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &r,
            &c,
            Method::POST,
            "/api/v1/alerts/silences",
            Some(READ),
            Some(silence.clone())
        )
        .await,
        StatusCode::FORBIDDEN
    );
    let window =
        serde_json::json!({"scope": {"acquirer": "ACQ-A"}, "ends_at": "2099-01-01T00:00:00Z"});
    assert_eq!(
        call(
            &r,
            &c,
            Method::POST,
            "/api/v1/alerts/maintenance",
            Some(READ),
            Some(window)
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &r,
            &c,
            Method::DELETE,
            "/api/v1/alerts/silences/anything",
            Some(READ),
            None
        )
        .await,
        StatusCode::FORBIDDEN
    );
    // Nothing was created by the refused requests.
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/api/v1/alerts/silences", c.http_addr()))
        .bearer_auth(READ)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(v.to_string().matches("auth test").count(), 0, "{v}");
    let created = call(
        &r,
        &c,
        Method::POST,
        "/api/v1/alerts/silences",
        Some(ADMIN),
        Some(silence),
    )
    .await;
    assert!(
        created.is_success(),
        "admin could not create a silence: {created}"
    );
    // Every answer above, 401 and 403 included, is what the document says.
    r.check();
    c.shutdown().await.expect("shutdown");
}

#[test]
fn an_open_api_off_loopback_is_refused() {
    let text = "[tls]\nca_cert = \"a\"\ncert = \"b\"\nkey = \"c\"\n[store]\npath = \"s\"\n[http]\nlisten = \"0.0.0.0:8080\"\n";
    let e = Config::from_toml(text, Path::new("/tmp")).expect_err("open API on 0.0.0.0");
    assert!(e.to_string().contains("http.tokens"), "{e}");
    let short =
        format!("{text}tokens = [{{ name = \"x\", role = \"read\", token = \"short\" }}]\n");
    let e = Config::from_toml(&short, Path::new("/tmp")).expect_err("short token");
    assert!(e.to_string().contains("16"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_tells_a_token_its_role() {
    let (_tmp, c) = start().await;
    let r = schema::Responses::new();
    let url = format!("http://{}/api/v1/whoami", c.http_addr());
    let client = reqwest::Client::new();
    for (token, name, role, can_change) in
        [(READ, "wall", "read", false), (ADMIN, "ops", "admin", true)]
    {
        let a = r.send(client.get(&url).bearer_auth(token)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let v = a.json;
        assert_eq!(v["token"], name, "{v}");
        assert_eq!(v["role"], role, "{v}");
        assert_eq!(v["can_change"], can_change, "{v}");
    }
    assert_eq!(
        call(&r, &c, reqwest::Method::GET, "/api/v1/whoami", None, None).await,
        StatusCode::UNAUTHORIZED
    );
    r.check();
}
