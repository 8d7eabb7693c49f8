//! Browser hardening (issue 16 §8), with a real collector process and headless Chromium.
//!
//! A terminal declares markup as its labels (`<svg/onload=...>` as its city, an `<img onerror>`
//! as its region, a closing tag and a `<script>` as its acquirer) and reports markup as its
//! payment codes and route, and sends a record the collector quarantines with markup in it.
//! `dashboards/tests/hostile.mjs` then visits the overview (heat table
//! by city), the terminal search, the terminal's page and the wall view and fails if any of it
//! runs (`window.__pwned`, a dialog) or if any Content-Security-Policy violation happens. Before
//! that, every kind of HTTP response (dashboard, asset, API, error, metrics, health) must carry
//! the hardening headers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use storepulse_shared::check::{RawBatch, RawBody};
use storepulse_shared::frame::encode_raw_frame;
use storepulse_shared::{
    Batch, FrameType, Heartbeat, Hello, Identity, Label, LinkType, Message, PROTOCOL_VERSION,
    PayMethod, Record, RecordBody, Scheme, Seq, TerminalId, TxnOutcome,
};
use storepulse_tests::quic::{RawConn, client_config, endpoint};
use storepulse_tests::{Collector, Pki, wait_for};

const TERMINAL: &str = "T-EVIL";
const CITY: &str = "<svg/onload=window.__pwned=1>";
const CODES: [&str; 3] = [
    "<svg/onload=window.__pwned=5>",
    "\"><img/src=x/onerror=window.__pwned=6>",
    "<script>window.__pwned=7</script>",
];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hostile_hello() -> Hello {
    let l = |s: &str| Label::new(s).expect("a valid label");
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "<b>0.0.0</b>".into(),
        spool_epoch: 1,
        identity: Identity {
            terminal_id: TerminalId::new(TERMINAL).expect("id"),
            merchant_id: l("M-EVIL"),
            store_id: l("S-EVIL"),
            region: l("<img src=x onerror=window.__pwned=2>"),
            city: l(CITY),
            acquirer: l("\"></td><script>window.__pwned=3</script>"),
            qr_channel: l("javascript:window.__pwned=4"),
            carrier: l("'><svg onload=alert(1)>"),
            link: LinkType::Wifi,
            model: l("<iframe src=javascript:alert(1)>"),
            firmware: l("{{7*7}}"),
            app_version: l("<style>*{display:none}</style>"),
        },
        agent_time_unix_ms: now_ms(),
    }
}

fn records() -> Vec<Record> {
    let now = now_ms();
    let mut out = vec![Record {
        seq: Seq(1),
        time_unix_ms: now,
        body: RecordBody::Heartbeat(Heartbeat {
            cpu_percent: 10.0,
            mem_used_bytes: 1 << 20,
            mem_total_bytes: 1 << 30,
            disk_free_bytes: 1 << 30,
            uptime_secs: 60,
            temperature_c: None,
            battery_percent: None,
            spool_records: 0,
        }),
    }];
    for (i, code) in CODES.iter().cycle().take(9).enumerate() {
        out.push(Record {
            seq: Seq(2 + i as u64),
            time_unix_ms: now - 1000 + i as i64,
            body: RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Wechatpay,
                code: (*code).into(),
                latency_ms: 100,
                method: PayMethod::Qr,
                route: Some(Label::new("<svg onload=window.__pwned=8>").expect("label")),
            }),
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_labels_and_codes_never_execute() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("dashboards/tests/hostile.mjs");
    if !root
        .join("dashboards/tests/node_modules/playwright-core")
        .exists()
    {
        bail!("playwright-core is not installed: run scripts/install-test-deps.sh");
    }
    let dir = tempfile::tempdir()?;
    let pki = Pki::init(&dir.path().join("pki"))?;
    pki.issue(TERMINAL)?;
    let collector = Collector::start(&dir.path().join("collector"), &pki).await?;

    // Every kind of answer carries the hardening headers.
    let http = reqwest::Client::new();
    for path in [
        "/",
        "/assets/app.js",
        "/assets/style.css",
        "/api/v1/terminals",
        "/api/v1/terminals?limit=0",
        "/api/v1/no-such-route",
        "/api/v1/openapi.json",
        "/metrics",
        "/healthz",
    ] {
        let res = http.get(collector.url(path)).send().await?;
        let h = res.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let csp = get("content-security-policy");
        ensure!(
            csp.contains("default-src 'none'")
                && csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe"),
            "{path}: CSP {csp:?}"
        );
        ensure!(get("x-content-type-options") == "nosniff", "{path}");
        ensure!(get("x-frame-options") == "DENY", "{path}");
        ensure!(get("referrer-policy") == "no-referrer", "{path}");
    }

    let ep = endpoint()?;
    let cfg = client_config(&pki.ca(), &pki.cert(TERMINAL), &pki.key(TERMINAL))?;
    let mut c = RawConn::connect(&ep, cfg, collector.quic_addr()).await?;
    c.send(&Message::Hello(hostile_hello())).await?;
    match c.recv().await? {
        Some(Message::Welcome(_)) => {}
        other => bail!("expected Welcome, got {other:?}"),
    }
    c.send(&Message::Batch(Batch {
        batch_id: 1,
        records: records(),
    }))
    .await?;
    match c.recv().await? {
        Some(Message::Ack(_)) => {}
        other => bail!("expected the Ack, got {other:?}"),
    }
    // A record the collector quarantines (its route holds a control character), with markup
    // in it: the terminal page lists it, as text.
    let mut raw = RawBatch::from(Batch {
        batch_id: 2,
        records: vec![Record {
            seq: Seq(100),
            time_unix_ms: now_ms(),
            body: RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Cup,
                code: "00".into(),
                latency_ms: 1,
                method: PayMethod::Card,
                route: None,
            }),
        }],
    });
    if let RawBody::TxnOutcome(t) = &mut raw.records[0].body {
        t.route = Some("<img src=x onerror=window.__pwned=9>\u{7}".into());
    }
    c.write_raw(&encode_raw_frame(FrameType::Batch, &raw))
        .await?;
    match c.recv().await? {
        Some(Message::Ack(_)) => {}
        other => bail!("expected the Ack of the quarantined record, got {other:?}"),
    }
    wait_for(
        Duration::from_secs(30),
        "the hostile city in the breakdown",
        || async {
            let v = collector.get("/api/v1/breakdown?by=city").await.ok()?;
            v.to_string().contains("svg/onload").then_some(())
        },
    )
    .await?;

    let base = collector.url("");
    let base = base.trim_end_matches('/').to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .arg(&base)
            .arg(TERMINAL)
            .arg(CITY)
            .output()
    })
    .await?
    .context("running node")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "browser test failed:\n{text}");
    ensure!(text.contains("ok: hostile"), "{text}");
    // Keep the connection (and so the terminal online) until the browser is done.
    c.conn.close(0u32.into(), b"done");
    Ok(())
}
