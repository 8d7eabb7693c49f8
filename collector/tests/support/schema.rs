//! Checks API responses against the OpenAPI document the collector generates
//! (`storepulse_collector::api::openapi()`, the one served at `/api/v1/openapi.json`).
//! A test records every response it gets ([`Responses::send`], [`Responses::record`]) and
//! ends with [`Responses::check`], which validates them all in one run of Python's
//! `jsonschema` (installed with `openapi-spec-validator` by scripts/install-test-deps.sh):
//! the path must be documented, the status documented for that path and method, the
//! content type declared, and a JSON body valid against the response's schema (JSON Schema
//! 2020-12, the dialect of OpenAPI 3.1). Error answers (400, 401, 403, 404) are checked like
//! any other.

#![allow(dead_code)]

use std::process::Command;
use std::sync::Mutex;

use serde_json::{Value, json};

/// Responses seen by one test.
#[derive(Debug, Default)]
pub(crate) struct Responses {
    samples: Mutex<Vec<Value>>,
}

/// What [`Responses::send`] got back.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status code.
    pub(crate) status: u16,
    /// The body as JSON (`null` when it is not JSON).
    pub(crate) json: Value,
    /// The body as text.
    pub(crate) text: String,
}

const CHECK: &str = r##"
import json, re, sys
from jsonschema import Draft202012Validator

data = json.load(open(sys.argv[1]))
doc, samples = data["doc"], data["samples"]

def escape(s):
    return s.replace("~", "~0").replace("/", "~1")

def template(path):
    found = []
    for t in doc["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)) + "$"
        if re.match(pattern, path):
            found.append((t.count("{"), t))
    return min(found)[1] if found else None

errors = []
def validate(instance, pointer, what):
    schema = dict(doc)
    schema["$ref"] = pointer
    for e in Draft202012Validator(schema).iter_errors(instance):
        at = "/".join(str(p) for p in e.absolute_path)
        errors.append(f"{what}: at '{at}': {e.message}")

for s in samples:
    if "component" in s:
        validate(s["value"], "#/components/schemas/" + escape(s["component"]), "schema " + s["component"])
        continue
    what = f'{s["method"]} {s["path"]} -> {s["status"]}'
    t = template(s["path"])
    if t is None:
        # The router's fallback: a JSON 404 for any path the document does not have.
        if s["status"] == 404 and s["content_type"].startswith("application/json"):
            validate(json.loads(s["body"]), "#/components/schemas/Error", what)
        else:
            errors.append(f"{what}: path not in the document")
        continue
    op = doc["paths"][t].get(s["method"].lower())
    if op is None:
        errors.append(f"{what}: method not documented for {t}")
        continue
    resp = op["responses"].get(str(s["status"]))
    if resp is None:
        errors.append(f"{what}: status not documented for {s['method']} {t} (documented: {sorted(op['responses'])})")
        continue
    content = resp.get("content", {})
    ctype = s["content_type"].split(";")[0].strip()
    if not content:
        if s["body"]:
            errors.append(f"{what}: a body where the document says none")
        continue
    if ctype not in content:
        errors.append(f"{what}: content type {ctype!r} not documented ({sorted(content)})")
        continue
    if ctype == "application/json":
        try:
            body = json.loads(s["body"])
        except ValueError as e:
            errors.append(f"{what}: not JSON: {e}")
            continue
        pointer = "#/paths/" + escape(t) + "/" + s["method"].lower() + "/responses/" + str(s["status"]) + "/content/" + escape(ctype) + "/schema"
        validate(body, pointer, what)

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"{len(samples)} responses valid")
"##;

impl Responses {
    /// No responses yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records one response.
    pub(crate) fn record(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: &str,
        body: &str,
    ) {
        self.samples.lock().expect("samples").push(json!({
            "method": method,
            "path": path,
            "status": status,
            "content_type": content_type,
            "body": body,
        }));
    }

    /// Records a value that must match the named component schema (e.g. the data of an
    /// event-stream event).
    pub(crate) fn record_component(&self, component: &str, value: Value) {
        self.samples
            .lock()
            .expect("samples")
            .push(json!({ "component": component, "value": value }));
    }

    /// Sends `req`, records the response and returns it (an event stream is not read).
    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let (client, req) = req.build_split();
        let req = req.expect("request");
        let method = req.method().as_str().to_owned();
        let path = req.url().path().to_owned();
        let resp = client.execute(req).await.expect("send");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = if content_type.starts_with("text/event-stream") {
            String::new()
        } else {
            resp.text().await.expect("body")
        };
        self.record(&method, &path, status, &content_type, &text);
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, json, text }
    }

    /// How many responses were recorded.
    pub(crate) fn len(&self) -> usize {
        self.samples.lock().expect("samples").len()
    }

    /// Validates every recorded response against the document; panics listing the ones that
    /// do not match.
    pub(crate) fn check(&self) {
        let samples = std::mem::take(&mut *self.samples.lock().expect("samples"));
        assert!(!samples.is_empty(), "no responses were recorded");
        let doc = serde_json::to_value(storepulse_collector::api::openapi()).expect("document");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("responses.json");
        std::fs::write(&file, json!({ "doc": doc, "samples": samples }).to_string())
            .expect("write");
        let out = Command::new("python3")
            .args(["-c", CHECK, file.to_str().expect("utf-8 path")])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "responses do not match the OpenAPI document (or python3's jsonschema is missing: \
             run scripts/install-test-deps.sh):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
