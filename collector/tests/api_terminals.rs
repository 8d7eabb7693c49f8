//! The terminal search, terminal detail and breakdown endpoints on a known fleet: filters by
//! label, state and id substring; pagination that visits every terminal once; 400 for unknown
//! parameters and bad values; 404 for an unknown terminal; the detail's state history, health,
//! outcome counts and recent errors from stored records; the breakdown's numbers from a known
//! set of outcomes; and the rollup's eviction. Every response, errors included, is checked
//! against the generated OpenAPI document (`support/schema.rs`).

#[path = "support/schema.rs"]
mod schema;

use std::sync::{Arc, RwLock};

use serde_json::Value;
use storepulse_collector::api::{ApiState, router};
use storepulse_collector::store::{RecordKey, Store, StoredQuarantine, StoredRecord, WriteSet};
use storepulse_collector_core::detect::{
    CodeCount, DeviceReading, Evidence, Example, Family, Incident, IncidentEvent,
};
use storepulse_collector_core::incident::IncidentBook;
use storepulse_collector_core::rollup::{BreakdownError, RETENTION_MS, Rollup};
use storepulse_collector_core::{Fleet, TerminalEntry, Thresholds};
use storepulse_shared::taxonomy::ErrorClass;
use storepulse_shared::{
    DropReason, EndpointProbe, Heartbeat, Identity, IncidentKind, Label, LabelKey, LinkType,
    NetQuality, PayMethod, ProbeError, Record, RecordBody, Scheme, Seq, SpoolDrops, TerminalId,
    TxnOutcome,
};

const TH: Thresholds = Thresholds {
    stale_after_ms: 90_000,
    offline_after_ms: 300_000,
};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn identity(t: &str, region: &str, acquirer: &str, firmware: &str) -> Identity {
    let l = |s: &str| Label::new(s).expect("label");
    Identity {
        terminal_id: TerminalId::new(t).expect("id"),
        merchant_id: l(&format!("M-{region}")),
        store_id: l(&format!("S-{t}")),
        region: l(region),
        city: l(&format!("{region}-C01")),
        acquirer: l(acquirer),
        qr_channel: l("QR-A"),
        carrier: l("CMCC"),
        link: LinkType::Wired,
        model: l("P1"),
        firmware: l(firmware),
        app_version: l("1.0"),
    }
}

fn txn(code: &str) -> RecordBody {
    RecordBody::TxnOutcome(TxnOutcome {
        scheme: Scheme::Cup,
        code: code.into(),
        latency_ms: 300,
        method: PayMethod::Card,
        route: None,
    })
}

struct Fixture {
    base: String,
    responses: schema::Responses,
    book: Arc<RwLock<IncidentBook>>,
    ids: Vec<Identity>,
    now: i64,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

/// 12 labelled terminals (T01..T12) and one without labels (X1); T11 stale, T12 offline.
/// T01 has an hour of records with a 20-minute silence in the middle.
async fn fixture() -> Fixture {
    let now = now_ms();
    let mut fleet = Fleet::new(TH);
    let mut ids = Vec::new();
    for i in 1..=12 {
        let t = format!("T{i:02}");
        let (region, acq, fw) = if i <= 6 {
            ("R01", "ACQ-A", "2.3.0")
        } else {
            ("R02", "ACQ-B", "2.4.0")
        };
        let id = identity(&t, region, acq, fw);
        let mut e = TerminalEntry::new(now - 3_600_000);
        e.observe_hello(now - 3_600_000, &id, "0.1.0", 1);
        e.last_seen_unix_ms = match i {
            11 => now - 120_000,
            12 => now - 600_000,
            _ => now,
        };
        fleet.insert(id.terminal_id.clone(), e);
        ids.push(id);
    }
    fleet.insert(
        TerminalId::new("X1").expect("id"),
        TerminalEntry::new(now - 1000),
    );
    assert!(
        fleet
            .entry(&ids[0].terminal_id)
            .is_some_and(|e| { e.identity.as_ref() == Some(&ids[0]) })
    );

    let store = Store::in_memory();
    let t01 = ids[0].terminal_id.clone();
    let mut set = WriteSet::default();
    let mut seq = 0u64;
    let mut put = |at: i64, body: RecordBody, set: &mut WriteSet| {
        seq += 1;
        set.records.push((
            RecordKey {
                terminal: t01.clone(),
                epoch: 1,
                seq,
            },
            StoredRecord {
                time_unix_ms: at,
                received_unix_ms: at,
                body,
                agent_time_unix_ms: None,
            },
        ));
    };
    // Heartbeats every 30 s over the last hour, except between 40 and 20 minutes ago.
    let start = now - 3_600_000;
    // First (seq 1 and 2): a network sample with endpoint probes and a drop report, so the
    // records endpoint shows every body kind.
    put(
        start + 1,
        RecordBody::NetQuality(NetQuality {
            rtt_ms: None,
            jitter_ms: None,
            loss_percent: Some(100.0),
            endpoints: vec![
                EndpointProbe {
                    name: "cup-host".into(),
                    dns_ms: Some(3.5),
                    tcp_connect_ms: Some(20.0),
                    error: None,
                },
                EndpointProbe {
                    name: "wx-host".into(),
                    dns_ms: None,
                    tcp_connect_ms: None,
                    error: Some(ProbeError::Timeout),
                },
            ],
        }),
        &mut set,
    );
    put(
        start + 2,
        RecordBody::SpoolDrops(SpoolDrops {
            reason: DropReason::SpoolFull,
            heartbeats: 4,
            net_quality: 2,
            txn_outcomes: 0,
        }),
        &mut set,
    );
    let mut at = start;
    while at <= now - 5_000 {
        let silent = at > now - 2_400_000 && at < now - 1_200_000;
        if !silent {
            put(
                at,
                RecordBody::Heartbeat(Heartbeat {
                    cpu_percent: 12.5,
                    mem_used_bytes: 100,
                    mem_total_bytes: 1000,
                    disk_free_bytes: 5000,
                    uptime_secs: 60,
                    temperature_c: Some(41.0),
                    battery_percent: None,
                    spool_records: 3,
                }),
                &mut set,
            );
            put(
                at + 1,
                RecordBody::NetQuality(NetQuality {
                    rtt_ms: Some(35.0),
                    jitter_ms: Some(4.0),
                    loss_percent: Some(0.5),
                    endpoints: Vec::new(),
                }),
                &mut set,
            );
        }
        at += 30_000;
    }
    // 10 approvals, 3 merchant-config failures, 2 cardholder declines in the last 10 minutes;
    // one approval two days ago (outside the window).
    for i in 0..15 {
        let code = match i {
            0..10 => "00",
            10..13 => "03",
            _ => "51",
        };
        put(now - 600_000 + i * 1000, txn(code), &mut set);
    }
    put(now - 2 * 86_400_000, txn("00"), &mut set);
    store.commit(&set).expect("commit");
    // T02: three spool epochs (a reinstalled agent starts again at seq 0), 12 records each,
    // and two quarantined records.
    let t02 = ids[1].terminal_id.clone();
    let mut set = WriteSet::default();
    for epoch in [3u64, 9, 20] {
        for seq in 0..12u64 {
            set.records.push((
                RecordKey {
                    terminal: t02.clone(),
                    epoch,
                    seq,
                },
                StoredRecord {
                    time_unix_ms: now - 1000,
                    received_unix_ms: now - 1000,
                    body: txn("00"),
                    agent_time_unix_ms: None,
                },
            ));
        }
    }
    for (seq, kind, field, reason) in [
        (
            12u64,
            "heartbeat",
            "cpu_percent",
            "is NaN, not a finite number",
        ),
        (13, "txn_outcome", "route", "must not be empty"),
    ] {
        set.quarantined.push((
            RecordKey {
                terminal: t02.clone(),
                epoch: 20,
                seq,
            },
            StoredQuarantine {
                time_unix_ms: now - 500,
                received_unix_ms: now - 400,
                kind: kind.into(),
                field: field.into(),
                reason: reason.into(),
                body: "...".into(),
            },
        ));
    }
    store.commit(&set).expect("commit");

    let book = Arc::new(RwLock::new(IncidentBook::default()));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let app = router(ApiState {
        fleet: Arc::new(RwLock::new(fleet)),
        store,
        incidents: book.clone(),
        metrics: storepulse_collector::metrics::Metrics::new(),
        shutdown: shutdown_rx,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fixture {
        base,
        responses: schema::Responses::new(),
        book,
        ids,
        now,
        _shutdown: shutdown_tx,
    }
}

/// GETs `path`, records the response for the schema check, returns status and JSON body.
async fn get(f: &Fixture, path: &str) -> (u16, Value) {
    let client = reqwest::Client::new();
    let a = f
        .responses
        .send(client.get(format!("{}{path}", f.base)))
        .await;
    assert!(!a.json.is_null(), "{path}: not JSON: {}", a.text);
    (a.status, a.json)
}

fn ids_of(v: &Value) -> Vec<String> {
    v["terminals"]
        .as_array()
        .expect("terminals")
        .iter()
        .map(|t| t["terminal_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_list_filters_and_pages() {
    let f = fixture().await;
    let (s, all) = get(&f, "/api/v1/terminals").await;
    assert_eq!(s, 200);
    assert_eq!(all["total"], 13);
    assert_eq!(all["next"], Value::Null);
    let ids = ids_of(&all);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "sorted by terminal id");
    // The fields of each terminal are kept.
    let t = &all["terminals"][0];
    for k in [
        "labels",
        "state",
        "first_seen_unix_ms",
        "last_seen_unix_ms",
        "agent_version",
        "records_received",
        "spool_drops",
    ] {
        assert!(t.get(k).is_some(), "{k} missing: {t}");
    }

    let (_, v) = get(&f, "/api/v1/terminals?region=R02").await;
    assert_eq!(v["total"], 6);
    assert!(ids_of(&v).iter().all(|i| i.as_str() >= "T07"));
    let (_, v) = get(&f, "/api/v1/terminals?region=R02&firmware=2.3.0").await;
    assert_eq!(v["total"], 0);
    let (_, v) = get(
        &f,
        "/api/v1/terminals?acquirer=ACQ-A&firmware=2.3.0&link=wired",
    )
    .await;
    assert_eq!(v["total"], 6);
    let (_, v) = get(&f, "/api/v1/terminals?store_id=S-T03").await;
    assert_eq!(ids_of(&v), vec!["T03"]);
    let (_, v) = get(&f, "/api/v1/terminals?state=offline").await;
    assert_eq!(ids_of(&v), vec!["T12"]);
    let (_, v) = get(&f, "/api/v1/terminals?state=stale").await;
    assert_eq!(ids_of(&v), vec!["T11"]);
    let (_, v) = get(&f, "/api/v1/terminals?state=online&region=R02").await;
    assert_eq!(v["total"], 4);
    let (_, v) = get(&f, "/api/v1/terminals?q=t1").await;
    assert_eq!(ids_of(&v), vec!["T10", "T11", "T12"]);

    // Pages of 5 visit every terminal once, in order.
    let mut seen = Vec::new();
    let mut path = "/api/v1/terminals?limit=5".to_owned();
    let mut pages = 0;
    loop {
        let (s, v) = get(&f, &path).await;
        assert_eq!(s, 200);
        assert_eq!(v["total"], 13);
        pages += 1;
        seen.extend(ids_of(&v));
        match v["next"].as_str() {
            Some(n) => path = format!("/api/v1/terminals?limit=5&after={n}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);
    // A filtered page's cursor keeps the filter's order.
    let (_, v) = get(&f, "/api/v1/terminals?region=R01&limit=4&after=T01").await;
    assert_eq!(ids_of(&v), vec!["T02", "T03", "T04", "T05"]);
    assert_eq!(v["next"], "T05");
    assert_eq!(v["total"], 6);

    for bad in [
        "/api/v1/terminals?foo=1",
        "/api/v1/terminals?state=sleeping",
        // Issue 16: `unknown` was in the document's enum for `state` and answered 400; it is
        // no filter value (only the state history has it), and the document now says so.
        "/api/v1/terminals?state=unknown",
        "/api/v1/terminals?limit=0",
        "/api/v1/terminals?limit=1001",
        "/api/v1/terminals?limit=abc",
    ] {
        let (s, v) = get(&f, bad).await;
        assert_eq!(s, 400, "{bad}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: {v}"
        );
    }
    let (_, doc) = get(&f, "/api/v1/openapi.json").await;
    let state = doc["paths"]["/api/v1/terminals"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "state")
        .expect("a state parameter")
        .clone();
    let values: Vec<&str> = state["schema"]["enum"]
        .as_array()
        .or_else(|| state["schema"]["oneOf"][0]["enum"].as_array())
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(values, ["online", "stale", "offline"], "{state}");
    f.responses.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_detail_from_stored_records() {
    let f = fixture().await;
    let (s, v) = get(&f, "/api/v1/terminals/T01").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["terminal_id"], "T01");
    assert_eq!(v["state"], "online");
    assert_eq!(v["labels"]["region"], "R01");
    assert_eq!(v["window"]["truncated"], false);

    // Outcomes of the last day by class (the two-day-old approval is not counted).
    assert_eq!(v["outcomes"]["attempts"], 15, "{}", v["outcomes"]);
    assert_eq!(v["outcomes"]["approved"], 10);
    assert_eq!(v["outcomes"]["by_class"]["merchant_config"], 3);
    assert_eq!(v["outcomes"]["by_class"]["cardholder"], 2);
    let errors = v["recent_errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 5);
    // Newest first: the two declines, then the merchant-config failures with their meaning.
    assert_eq!(errors[0]["code"], "51");
    assert_eq!(errors[0]["class"], "cardholder");
    assert_eq!(errors[2]["code"], "03");
    assert_eq!(errors[2]["class"], "merchant_config");
    assert_eq!(errors[2]["alertable"], true);
    assert!(
        errors[2]["meaning"]["en"]
            .as_str()
            .is_some_and(|m| m.contains("merchant")),
        "{}",
        errors[2]
    );
    assert_eq!(errors[2]["meaning"]["zh"], "无效商户");

    // Recent health and network quality, newest first, bounded.
    let health = v["health"].as_array().expect("health");
    assert_eq!(health.len(), 20);
    assert_eq!(health[0]["heartbeat"]["cpu_percent"], 12.5);
    assert!(health[0]["time_unix_ms"].as_i64() > health[1]["time_unix_ms"].as_i64());
    let net = v["network"].as_array().expect("network");
    assert_eq!(net.len(), 20);
    assert_eq!(net[0]["net_quality"]["rtt_ms"], 35.0);

    // State history: registered an hour ago (unknown before), online, a 20-minute gap that
    // turns stale then offline, online again until now.
    let h: Vec<(i64, i64, String)> = v["state_history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|x| {
            (
                x["from_unix_ms"].as_i64().expect("from"),
                x["to_unix_ms"].as_i64().expect("to"),
                x["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    let states: Vec<&str> = h.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(
        states,
        vec!["unknown", "online", "stale", "offline", "online"],
        "{h:?}"
    );
    let offline = &h[3];
    assert!(
        (offline.1 - offline.0 - (1_200_000 - 300_000)).abs() <= 60_000,
        "{offline:?}"
    );
    assert_eq!(
        h.last().expect("last").1,
        v["window"]["to_unix_ms"].as_i64().expect("to")
    );
    for w in h.windows(2) {
        assert_eq!(w[0].1, w[1].0, "contiguous: {h:?}");
    }

    // A terminal without records has an empty detail, not an error.
    let (s, v) = get(&f, "/api/v1/terminals/X1").await;
    assert_eq!(s, 200);
    assert_eq!(v["labels"], Value::Null);
    assert_eq!(v["outcomes"]["attempts"], 0);

    for unknown in ["/api/v1/terminals/NOPE", "/api/v1/terminals/bad%20id%21"] {
        let (s, v) = get(&f, unknown).await;
        assert_eq!(s, 404, "{unknown}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("unknown terminal"))
        );
    }

    // The stored records in (epoch, seq) order, every body kind typed.
    let (s, v) = get(&f, "/api/v1/terminals/T01/records?limit=5").await;
    assert_eq!(s, 200, "{v}");
    let records = v["records"].as_array().expect("records");
    assert_eq!(records.len(), 5);
    assert_eq!(records[0]["kind"], "net_quality");
    assert_eq!(records[0]["body"]["endpoints"][1]["error"], "timeout");
    assert_eq!(records[1]["kind"], "spool_drops");
    assert_eq!(records[1]["body"]["reason"], "spool_full");
    assert_eq!(records[2]["kind"], "heartbeat");
    let (s, v) = get(&f, "/api/v1/terminals/T01/records?limit=1000").await;
    assert_eq!(s, 200, "{v}");
    let txn = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["kind"] == "txn_outcome")
        .expect("a payment outcome");
    assert_eq!(
        (
            txn["body"]["scheme"].as_str(),
            txn["body"]["method"].as_str()
        ),
        (Some("cup"), Some("card")),
        "{txn}"
    );
    assert_eq!(v["next"], Value::Null, "one page holds all of T01");
    for (bad, status) in [
        ("/api/v1/terminals/T01/records?limit=0", 400),
        ("/api/v1/terminals/T01/records?after_seq=3", 400),
        ("/api/v1/terminals/T01/records?after=zz", 400),
        ("/api/v1/terminals/T01/quarantined?after=1", 400),
        ("/api/v1/terminals/NOPE/quarantined", 404),
        ("/api/v1/terminals/T01/records?epoch=1", 400),
        ("/api/v1/terminals/NOPE/records", 404),
    ] {
        let (s, v) = get(&f, bad).await;
        assert_eq!(s, status, "{bad}: {v}");
    }
    f.responses.check();
}

/// Issue 16: `after_seq` filtered `seq > n` in every epoch, so paging a terminal with two
/// epochs lost records. The cursor pages over (epoch, seq): every record once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_page_over_epochs_with_a_cursor() {
    let f = fixture().await;
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut path = "/api/v1/terminals/T02/records?limit=5".to_owned();
    let mut pages = 0;
    loop {
        let (s, v) = get(&f, &path).await;
        assert_eq!(s, 200, "{v}");
        pages += 1;
        for r in v["records"].as_array().expect("records") {
            seen.push((
                r["epoch"].as_u64().expect("epoch"),
                r["seq"].as_u64().expect("seq"),
            ));
        }
        match v["next"].as_str() {
            Some(next) => path = format!("/api/v1/terminals/T02/records?limit=5&after={next}"),
            None => break,
        }
    }
    let want: Vec<(u64, u64)> = [3u64, 9, 20]
        .into_iter()
        .flat_map(|e| (0..12u64).map(move |s| (e, s)))
        .collect();
    assert_eq!(seen, want, "every record once, in (epoch, seq) order");
    assert_eq!(pages, 8, "36 records in pages of 5, no empty last page");

    // The quarantined records are apart and visible per terminal.
    let (s, v) = get(&f, "/api/v1/terminals/T02/quarantined?limit=1").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["records"][0]["seq"], 12);
    assert_eq!(v["records"][0]["kind"], "heartbeat");
    assert_eq!(v["records"][0]["field"], "cpu_percent");
    let next = v["next"].as_str().expect("a second page");
    let (s, v) = get(
        &f,
        &format!("/api/v1/terminals/T02/quarantined?after={next}"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["records"][0]["field"], "route");
    assert_eq!(v["next"], Value::Null);
    let (s, v) = get(&f, "/api/v1/terminals/T01/quarantined").await;
    assert_eq!((s, v["records"].as_array().map(Vec::len)), (200, Some(0)));
    f.responses.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakdown_numbers_on_a_known_input() {
    let f = fixture().await;
    let now = f.now;
    {
        let mut book = f.book.write().expect("book");
        // R01 (T01..T06): 20 outcomes each, of which 4 platform failures ("96") and 1 decline.
        // R02 (T07..T12): 10 approvals each. X1 has no labels: not counted.
        for (i, id) in f.ids.iter().enumerate() {
            let records: Vec<Record> = (0..if i < 6 { 20 } else { 10 })
                .map(|k| Record {
                    seq: Seq(k),
                    time_unix_ms: now - 30 * 60_000 + i64::try_from(k).expect("k") * 60_000,
                    body: txn(match (i < 6, k) {
                        (true, 0..4) => "96",
                        (true, 4) => "51",
                        _ => "00",
                    }),
                })
                .collect();
            book.rollup.record(now, Some(id), &records);
        }
        book.rollup.record(
            now,
            None,
            &[Record {
                seq: Seq(0),
                time_unix_ms: now,
                body: txn("96"),
            }],
        );
    }
    let from = now - 3_600_000;
    let (s, v) = get(
        &f,
        &format!("/api/v1/breakdown?by=region&from={from}&to={now}"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["by"], "region");
    assert_eq!(v["bucket_ms"], 600_000);
    assert_eq!(v["clipped"], false);
    let buckets = v["buckets"].as_array().expect("buckets");
    assert!((6..=7).contains(&buckets.len()), "{}", buckets.len());
    let values = v["values"].as_array().expect("values");
    assert_eq!(values.len(), 2);
    let r01 = &values[0];
    assert_eq!(r01["value"], "R01");
    assert_eq!(r01["attempts"], 120);
    assert_eq!(r01["failures"], 24);
    assert_eq!(r01["declines"], 6);
    assert_eq!(r01["approved"], 90);
    assert!((r01["failure_rate"].as_f64().expect("rate") - 0.2).abs() < 1e-9);
    assert_eq!(r01["failures_by_class"]["platform"], 24);
    let series_sum: u64 = r01["series"]["failures"]
        .as_array()
        .expect("series")
        .iter()
        .map(|x| x.as_u64().expect("n"))
        .sum();
    assert_eq!(series_sum, 24);
    assert_eq!(
        r01["series"]["attempts"].as_array().expect("a").len(),
        buckets.len()
    );
    let r02 = &values[1];
    assert_eq!(
        (
            r02["value"].as_str(),
            r02["attempts"].as_u64(),
            r02["failures"].as_u64()
        ),
        (Some("R02"), Some(60), Some(0))
    );

    // A high-cardinality label: hourly buckets, top N by failures.
    let (s, v) = get(
        &f,
        &format!("/api/v1/breakdown?by=store_id&from={from}&limit=2"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["bucket_ms"], 3_600_000);
    assert_eq!(v["total_values"], 12);
    let values = v["values"].as_array().expect("values");
    assert_eq!(values.len(), 2);
    assert!(values.iter().all(|x| x["failures"] == 4), "{values:?}");
    // Coarser buckets on request.
    let (s, v) = get(
        &f,
        &format!("/api/v1/breakdown?by=acquirer&from={from}&to={now}&bucket=1h"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["bucket_ms"], 3_600_000);
    assert_eq!(v["values"][0]["value"], "ACQ-A");
    assert_eq!(v["values"][0]["failures"], 24);
    // A range before the retention is clipped and flagged.
    let (s, v) = get(
        &f,
        &format!(
            "/api/v1/breakdown?by=region&from={}",
            now - 3 * RETENTION_MS
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["clipped"], true);
    assert!(v["from_unix_ms"].as_i64() >= v["retained_from_unix_ms"].as_i64());

    for bad in [
        "/api/v1/breakdown".to_owned(),
        "/api/v1/breakdown?by=colour".to_owned(),
        "/api/v1/breakdown?by=region&foo=1".to_owned(),
        "/api/v1/breakdown?by=region&bucket=7m".to_owned(),
        "/api/v1/breakdown?by=region&bucket=soon".to_owned(),
        "/api/v1/breakdown?by=region&limit=0".to_owned(),
        format!("/api/v1/breakdown?by=region&from={now}&to={from}"),
        format!(
            "/api/v1/breakdown?by=region&from={}&to={}",
            now - 3 * RETENTION_MS,
            now - 2 * RETENTION_MS
        ),
    ] {
        let (s, v) = get(&f, &bad).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    f.responses.check();
}

fn incident(id: u64, now: i64, t: &Identity) -> Incident {
    Incident {
        id,
        kind: IncidentKind::MerchantConfig,
        scope: vec![(LabelKey::MerchantId, t.merchant_id.as_str().to_owned())],
        affected_terminals: 6,
        affected_stores: 6,
        affected_merchants: 1,
        scope_terminals: 6,
        evidence: Evidence {
            family: Family::MerchantConfig,
            window_ms: 900_000,
            attempts: 120,
            observed: 24.0,
            expected: 0.5,
            baseline_rate: 0.004,
            significance: 30.0,
            silent_terminals: 0,
            top_codes: vec![CodeCount {
                scheme: Scheme::Cup,
                code: "03".into(),
                class: ErrorClass::MerchantConfig,
                count: 24,
                meaning_en: "Invalid merchant".into(),
                meaning_zh: "无效商户".into(),
            }],
            examples: vec![Example {
                terminal: t.terminal_id.clone(),
                time_ms: now - 60_000,
                scheme: Scheme::Cup,
                code: "03".into(),
            }],
            rtt_ms: Some((40.0, 35.0)),
            loss_percent: None,
            device: Some(DeviceReading {
                temperature_c: 70.0,
                temperature_baseline_c: 40.0,
                cpu_percent: 90.0,
                cpu_baseline_percent: 10.0,
            }),
        },
        started_ms: now - 600_000,
        opened_ms: now - 300_000,
        updated_ms: now - 300_000,
        resolved_ms: None,
        explanation_en: "Payments fail with invalid-merchant codes.".into(),
        explanation_zh: "交易因商户无效而失败。".into(),
        remediation_en: vec!["Check the merchant record with the acquirer."],
        remediation_zh: vec!["请联系收单机构核对商户信息。"],
        merged_into: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_summary_and_meta_match_the_document() {
    let f = fixture().await;
    let now = f.now;
    {
        let mut book = f.book.write().expect("book");
        book.handle_records(
            now,
            Some(&f.ids[0]),
            &[
                Record {
                    seq: Seq(1),
                    time_unix_ms: now,
                    body: txn("00"),
                },
                Record {
                    seq: Seq(2),
                    time_unix_ms: now,
                    body: txn("03"),
                },
            ],
        );
        book.handle_event(
            now - 300_000,
            IncidentEvent::Opened(incident(1, now, &f.ids[0])),
        );
        let mut gone = incident(2, now, &f.ids[6]);
        book.handle_event(now - 200_000, IncidentEvent::Opened(gone.clone()));
        gone.resolved_ms = Some(now - 100_000);
        book.handle_event(now - 100_000, IncidentEvent::Resolved(gone));
    }
    let (s, v) = get(&f, "/api/v1/incidents").await;
    assert_eq!(s, 200, "{v}");
    let list = v["incidents"].as_array().expect("incidents");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["kind"], "merchant_config");
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["scope"]["merchant_id"], "M-R01");
    assert_eq!(
        list[0]["evidence"]["top_codes"][0]["class"],
        "merchant_config"
    );
    let (_, v) = get(&f, "/api/v1/incidents?state=all&limit=5").await;
    assert_eq!(v["incidents"].as_array().map(Vec::len), Some(2));
    let (_, v) = get(&f, "/api/v1/incidents?state=resolved").await;
    assert_eq!(v["incidents"][0]["state"], "resolved");
    let (s, v) = get(&f, "/api/v1/incidents/2").await;
    assert_eq!(s, 200, "{v}");
    let events: Vec<&str> = v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(events, ["opened", "resolved"]);
    for (bad, status) in [
        ("/api/v1/incidents?state=sleeping", 400),
        ("/api/v1/incidents?colour=red", 400),
        ("/api/v1/incidents/99", 404),
        ("/api/v1/incidents/abc", 404),
        ("/api/v1/nothing-here", 404),
    ] {
        let (s, v) = get(&f, bad).await;
        assert_eq!(s, status, "{bad}: {v}");
    }

    let (s, v) = get(&f, "/api/v1/summary").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["terminals"]["total"], 13);
    assert_eq!(v["incidents_active"], 1);
    assert_eq!(v["last_hour"]["attempts"], 2);
    assert_eq!(v["last_hour"]["failures_by_class"]["merchant_config"], 1);
    let (s, v) = get(&f, "/api/v1/labels").await;
    assert_eq!(s, 200, "{v}");
    let labels: Vec<&str> = v["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        labels,
        LabelKey::TERMINAL_LABELS.map(LabelKey::as_str).to_vec()
    );
    assert_eq!(v["aliases"]["merchant"], "merchant_id");
    let (s, v) = get(&f, "/api/v1/whoami").await;
    assert_eq!((s, v["role"].as_str()), (200, Some("read")), "{v}");
    let client = reqwest::Client::new();
    for path in ["/healthz", "/metrics"] {
        let a = f
            .responses
            .send(client.get(format!("{}{path}", f.base)))
            .await;
        assert_eq!(a.status, 200, "{path}");
    }
    f.responses.check();
}

#[test]
fn rollup_evicts_by_the_time_passed_in() {
    let t0: i64 = 1_800_000_000_000;
    let id = identity("T1", "R01", "ACQ-A", "2.3.0");
    let rec = |at: i64, code: &str| Record {
        seq: Seq(0),
        time_unix_ms: at,
        body: txn(code),
    };
    let mut r = Rollup::new();
    r.record(t0, Some(&id), &[rec(t0, "96"), rec(t0, "00")]);
    r.record(t0 + 3_600_000, Some(&id), &[rec(t0 + 3_600_000, "00")]);
    let cells = r.cells();
    assert!(cells > 0);
    // Still there a day after the first outcome, minus a bucket.
    r.evict(t0 + RETENTION_MS - 600_000);
    let b = r
        .breakdown(LabelKey::Region, t0 - 1, t0 + RETENTION_MS, None, 10)
        .expect("breakdown");
    assert_eq!(b.rows[0].total.attempts, 3);
    assert_eq!(b.rows[0].total.failures, 1);
    // Half an hour later the first 10-minute bucket is gone, the one an hour later stays.
    r.evict(t0 + RETENTION_MS + 30 * 60_000);
    let b = r
        .breakdown(
            LabelKey::Region,
            t0,
            t0 + RETENTION_MS + 2 * 3_600_000,
            None,
            10,
        )
        .expect("breakdown");
    assert!(b.clipped);
    assert_eq!(b.rows[0].total.attempts, 1);
    assert_eq!(b.rows[0].total.failures, 0);
    assert!(r.cells() < cells);
    // And after another day nothing is left.
    r.evict(t0 + 3 * RETENTION_MS);
    assert_eq!(r.cells(), 0);
    assert_eq!(
        r.breakdown(LabelKey::Region, t0, t0 + 1, None, 10),
        Err(BreakdownError::TooOld)
    );
}
