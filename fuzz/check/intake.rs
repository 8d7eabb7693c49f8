//! The invariants the intake fuzz target checks, shared with the corpus replay test
//! (`agent/tests/fuzz_corpus.rs`), which includes this file with `#[path]`.
//!
//! The input is a `POST /v1/txn` body as the POS application would send it.

use serde_json::Value;
use storepulse_agent::intake::{MAX_ITEMS, parse_txns};
use storepulse_shared::{
    Batch, FrameDecoder, MAX_FRAME_BYTES_DEFAULT, Message, Record, RecordBody, Seq, encode_frame,
    validate_txn_code,
};

/// The agent's clock in these checks (2023-11-14T22:13:20Z).
pub(crate) const NOW_UNIX_MS: i64 = 1_700_000_000_000;

/// What the intake treats as a card number: 13 to 19 digits, only spaces or dashes between.
fn looks_like_pan(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    (13..=19).contains(&digits)
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
}

/// Checks every invariant of `parse_txns` on one body. Panics on a violation.
pub(crate) fn check_intake(body: &[u8]) {
    let Ok(records) = parse_txns(body, NOW_UNIX_MS) else {
        return;
    };
    // Accepted: the body was JSON, an object or an array of as many objects as records.
    let value: Value = serde_json::from_slice(body).expect("an accepted body is valid JSON");
    let items = match &value {
        Value::Array(items) => items.len(),
        Value::Object(_) => 1,
        other => panic!("accepted a body that is neither an object nor an array: {other}"),
    };
    assert_eq!(records.len(), items, "one record per item");
    assert!(
        (1..=MAX_ITEMS).contains(&records.len()),
        "1 to {MAX_ITEMS} items, got {}",
        records.len()
    );
    for (i, r) in records.iter().enumerate() {
        assert!(
            r.time_unix_ms >= 0,
            "item {i}: negative time {}",
            r.time_unix_ms
        );
        let RecordBody::TxnOutcome(t) = &r.body else {
            panic!(
                "item {i}: the intake only makes transaction outcomes: {:?}",
                r.body
            );
        };
        assert_eq!(
            validate_txn_code(&t.code),
            Ok(()),
            "item {i}: accepted code {:?}",
            t.code
        );
        assert!(!looks_like_pan(&t.code), "item {i}: a card number as code");
        if let Some(route) = &t.route {
            assert!(
                !looks_like_pan(route.as_str()),
                "item {i}: a card number as route"
            );
        }
    }
    // Whatever the intake accepts, the collector can decode: sent in batches of at most 256
    // records (the reference agent's cap), each frame is under the collector's default maximum
    // and decodes to the same bytes.
    for (n, chunk) in records.chunks(256).enumerate() {
        let batch = Message::Batch(Batch {
            batch_id: n as u64 + 1,
            records: chunk
                .iter()
                .enumerate()
                .map(|(i, r)| Record {
                    seq: Seq((n * 256 + i) as u64),
                    time_unix_ms: r.time_unix_ms,
                    body: r.body.clone(),
                })
                .collect(),
        });
        let frame = encode_frame(&batch);
        let mut dec = FrameDecoder::new(MAX_FRAME_BYTES_DEFAULT);
        dec.push(&frame);
        let got = dec
            .next_message()
            .unwrap_or_else(|e| panic!("the collector refuses an accepted batch: {e}"))
            .expect("one whole frame was pushed");
        assert_eq!(got, batch, "the batch survives the wire");
    }
}
