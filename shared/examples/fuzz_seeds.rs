//! Writes the seed corpus: real encoded frames (every message type and record kind, the two
//! worked examples of PROTOCOL.md, a whole conversation) and real intake bodies.
//!
//! `cargo run -p storepulse-shared --example fuzz_seeds -- fuzz/corpus` (from the repository root).
//! The intake bodies are plain JSON, written here too so one generator makes the whole seed set.
//! The fuzzers then grow the corpus and `cargo fuzz cmin` minimises it.

use std::path::{Path, PathBuf};

use storepulse_shared::*;

fn label(s: &str) -> Label {
    Label::new(s).expect("valid label")
}

fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "0.1.0".into(),
        spool_epoch: 0x1234_5678_9abc_def0,
        identity: Identity {
            terminal_id: TerminalId::new("SH-0001").expect("valid"),
            merchant_id: label("M123"),
            store_id: label("S1"),
            region: label("east"),
            city: label("上海"),
            acquirer: label("acq-a"),
            qr_channel: label("wechatpay"),
            carrier: label("cmcc"),
            link: LinkType::Cellular,
            model: label("P300"),
            firmware: label("2.3.1"),
            app_version: label("5.0.2"),
        },
        agent_time_unix_ms: 1_700_000_000_000,
    }
}

fn bodies() -> Vec<RecordBody> {
    vec![
        RecordBody::Heartbeat(Heartbeat {
            cpu_percent: 12.5,
            mem_used_bytes: 1 << 20,
            mem_total_bytes: 1 << 30,
            disk_free_bytes: 1 << 33,
            uptime_secs: 3600,
            temperature_c: Some(41.0),
            battery_percent: None,
            spool_records: 3,
        }),
        RecordBody::NetQuality(NetQuality {
            rtt_ms: Some(20.0),
            jitter_ms: Some(3.5),
            loss_percent: None,
            endpoints: vec![
                EndpointProbe {
                    name: "cup".into(),
                    dns_ms: Some(4.0),
                    tcp_connect_ms: Some(30.0),
                    error: None,
                },
                EndpointProbe {
                    name: "alipay".into(),
                    dns_ms: None,
                    tcp_connect_ms: None,
                    error: Some(ProbeError::Timeout),
                },
            ],
        }),
        RecordBody::TxnOutcome(TxnOutcome {
            scheme: Scheme::Alipay,
            code: "ACQ.TRADE_HAS_SUCCESS".into(),
            latency_ms: 812,
            method: PayMethod::Qr,
            route: Some(label("alipay-direct")),
        }),
        RecordBody::SpoolDrops(SpoolDrops {
            reason: DropReason::SpoolFull,
            heartbeats: 10,
            net_quality: 2,
            txn_outcomes: 0,
        }),
    ]
}

fn batch(batch_id: u64, first_seq: u64) -> Message {
    Message::Batch(Batch {
        batch_id,
        records: bodies()
            .into_iter()
            .enumerate()
            .map(|(i, body)| Record {
                seq: Seq(first_seq + i as u64),
                time_unix_ms: 1_700_000_000_000 + i as i64 * 500,
                body,
            })
            .collect(),
    })
}

fn messages() -> Vec<(&'static str, Message)> {
    vec![
        ("hello", Message::Hello(hello())),
        ("batch", batch(1, 0)),
        (
            "batch-protocol-md",
            Message::Batch(Batch {
                batch_id: 1,
                records: vec![Record {
                    seq: Seq(7),
                    time_unix_ms: 1_700_000_000_000,
                    body: RecordBody::TxnOutcome(TxnOutcome {
                        scheme: Scheme::Cup,
                        code: "03".into(),
                        latency_ms: 420,
                        method: PayMethod::Card,
                        route: None,
                    }),
                }],
            }),
        ),
        (
            "ack-protocol-md",
            Message::Ack(Ack {
                batch_id: 300,
                highest_seq: Seq(5),
            }),
        ),
        (
            "welcome",
            Message::Welcome(Welcome {
                protocol_version: 1,
                collector_time_unix_ms: 1_700_000_000_123,
                heartbeat_interval_secs: 30,
                net_probe_interval_secs: 60,
                max_batch_records: 256,
                backlog_records_per_sec: 500,
            }),
        ),
        (
            "goodbye",
            Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Overloaded,
                retry_after_secs: 30,
                detail: "busy / 繁忙".into(),
            }),
        ),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let frames = root.join("frame_decoder");
    let intake = root.join("intake_parse");
    std::fs::create_dir_all(&frames).expect("mkdir");
    std::fs::create_dir_all(&intake).expect("mkdir");

    // Byte 0 selects the maximum payload (4: 1 MiB, 2: 256 bytes), byte 1 the read splits.
    for (name, msg) in messages() {
        let mut seed = vec![4, 7];
        seed.extend(encode_frame(&msg));
        write(&frames, &format!("seed-{name}"), &seed);
    }
    // A whole conversation in one stream, and the same under a 256-byte maximum.
    let mut convo = Vec::new();
    convo.extend(encode_frame(&Message::Hello(hello())));
    for b in 1..=3 {
        convo.extend(encode_frame(&batch(b, (b - 1) * 4)));
    }
    convo.extend(encode_frame(&Message::Goodbye(Goodbye {
        reason: GoodbyeReason::Shutdown,
        retry_after_secs: 0,
        detail: String::new(),
    })));
    for (name, sel) in [
        ("seed-conversation", 4u8),
        ("seed-conversation-small-max", 2),
    ] {
        let mut seed = vec![sel, 201];
        seed.extend(&convo);
        write(&frames, name, &seed);
    }

    let bodies: &[(&str, &str)] = &[
        (
            "one",
            r#"{"scheme":"cup","code":"00","latency_ms":420,"method":"card","route":"acq-a"}"#,
        ),
        (
            "array",
            r#"[{"scheme":"wechatpay","code":"SYSTEMERROR","latency_ms":3100},{"scheme":"alipay","code":"ACQ.TRADE_HAS_SUCCESS","method":"qr","route":"支付宝","time_unix_ms":1700000000000},{"scheme":"iso8583","code":"91","latency_ms":null,"route":null}]"#,
        ),
        ("minimal", r#"{"scheme":"iso8583","code":"05"}"#),
        (
            "pan-field",
            r#"{"scheme":"cup","code":"00","pan":"4111111111111111"}"#,
        ),
        (
            "pan-value",
            r#"{"scheme":"cup","code":"4111 1111 1111 1111"}"#,
        ),
        ("bad-code", r#"{"scheme":"cup","code":"A B"}"#),
        (
            "unknown-field",
            r#"{"scheme":"cup","code":"00","amount":12.5}"#,
        ),
        ("empty-array", "[]"),
        ("not-object", r#"[1,"x",null]"#),
    ];
    for (name, body) in bodies {
        write(&intake, &format!("seed-{name}"), body.as_bytes());
    }
    println!("seed corpus written to {}", root.display());
}
