//! The invariants the frame fuzz target checks, shared with the corpus replay test
//! (`shared/tests/fuzz_corpus.rs`), which includes this file with `#[path]`.
//!
//! Input layout: byte 0 picks the decoder's maximum payload, byte 1 seeds how the rest is
//! split into reads, bytes 2.. are the stream as it would arrive on a QUIC stream.

use storepulse_shared::AgentFrame;
use storepulse_shared::frame::{HEADER_BYTES, decode_agent_payload, decode_payload};
use storepulse_shared::{FrameDecoder, FrameError, FrameType, Message, encode_frame};

/// Maximum payloads the input can pick from: tiny ones reach the too-large path, the last is
/// the collector's default.
const MAX_PAYLOADS: [u32; 5] = [
    16,
    64,
    256,
    4096,
    storepulse_shared::MAX_FRAME_BYTES_DEFAULT,
];

/// What one decoding run produced: messages (as their re-encoded frames) and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    error: Option<FrameError>,
}

/// Checks every invariant of the frame decoder on one input. Panics on a violation.
pub(crate) fn check_frames(data: &[u8]) {
    let [sel, seed, stream @ ..] = data else {
        return;
    };
    let max = MAX_PAYLOADS[usize::from(*sel) % MAX_PAYLOADS.len()];

    let chunked = decode_chunked(stream, max, *seed);
    let whole = decode_whole(stream, max);
    assert_eq!(
        chunked, whole,
        "decoding must not depend on how the bytes were split into reads"
    );

    // Every frame laid out in the input, decoded as each of the eleven types.
    let mut rest = stream;
    while rest.len() >= HEADER_BYTES {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let end = (HEADER_BYTES + len).min(rest.len());
        let payload = &rest[HEADER_BYTES..end];
        for ty in [
            FrameType::Hello,
            FrameType::Batch,
            FrameType::Ack,
            FrameType::Welcome,
            FrameType::Goodbye,
            FrameType::IncidentQuery,
            FrameType::IncidentList,
            FrameType::EnrolRequest,
            FrameType::EnrolResponse,
            FrameType::RenewRequest,
            FrameType::RenewResponse,
        ] {
            check_payload(ty, payload);
        }
        rest = &rest[end..];
    }
}

/// `decode_payload` for one type: a decoded message has that type and survives a round trip.
/// The collector's tolerant reading (`decode_agent_payload`) accepts every payload the strict
/// one does, with as many records, and checking its records never panics.
pub(crate) fn check_payload(ty: FrameType, payload: &[u8]) {
    let strict = decode_payload(ty, payload);
    let tolerant = decode_agent_payload(ty, payload);
    if let Ok(msg) = &strict {
        match (msg, &tolerant) {
            (Message::Batch(b), Ok(AgentFrame::Batch(raw))) => {
                assert_eq!(b.records.len(), raw.records.len(), "same records");
            }
            (Message::Hello(h), Ok(AgentFrame::Hello(raw))) => {
                assert_eq!(
                    raw.clone().check().as_ref(),
                    Ok(h),
                    "a valid Hello stays valid"
                );
            }
            (Message::Batch(_) | Message::Hello(_), other) => {
                panic!("the tolerant reading refused what the strict one took: {other:?}")
            }
            (_, Ok(AgentFrame::Message(m))) => assert_eq!(m, msg, "other frames read alike"),
            (_, other) => panic!("the tolerant reading differs: {other:?}"),
        }
    }
    if let Ok(AgentFrame::Batch(raw)) = tolerant {
        for r in raw.records {
            let _ = r.check();
        }
    }
    match strict {
        Ok(msg) => {
            assert_eq!(msg.frame_type(), ty, "decoded message has the frame's type");
            let frame = roundtrip(&msg);
            assert!(
                frame.len() - HEADER_BYTES <= payload.len(),
                "re-encoding is canonical, never longer than what was decoded: {} > {}",
                frame.len() - HEADER_BYTES,
                payload.len()
            );
        }
        Err(FrameError::Malformed { kind, .. } | FrameError::TrailingBytes { kind, .. }) => {
            assert_eq!(kind, ty.name(), "the error names the frame type");
        }
        Err(e) => panic!("decode_payload can only fail as malformed or trailing bytes: {e:?}"),
    }
}

/// Re-encodes a decoded message, decodes that again and checks the second encoding is the
/// same bytes (compared as bytes: heartbeats may carry NaN). Returns the frame.
fn roundtrip(msg: &Message) -> Vec<u8> {
    let frame = encode_frame(msg);
    let declared = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    assert_eq!(
        declared,
        frame.len() - HEADER_BYTES,
        "header length is exact"
    );
    assert_eq!(frame[0], msg.frame_type() as u8, "type byte matches");
    let again = decode_payload(msg.frame_type(), &frame[HEADER_BYTES..])
        .unwrap_or_else(|e| panic!("a re-encoded {msg:?} does not decode: {e}"));
    assert_eq!(
        encode_frame(&again),
        frame,
        "encode(decode(encode(m))) == encode(m)"
    );
    frame
}

/// Feeds the stream the way the collector reads it: never more than `needed()` at a time, in
/// reads whose sizes come from `seed`.
fn decode_chunked(stream: &[u8], max: u32, seed: u8) -> Outcome {
    let mut dec = FrameDecoder::new(max);
    let mut out = Outcome {
        frames: Vec::new(),
        error: None,
    };
    let mut rng = u32::from(seed) | 1;
    let mut pos = 0;
    loop {
        loop {
            match dec.next_message() {
                Ok(Some(m)) => out.frames.push(roundtrip(&m)),
                Ok(None) => break,
                Err(e) => {
                    assert!(dec.next_message().is_err(), "a failed decoder stays failed");
                    out.error = Some(e);
                    return out;
                }
            }
        }
        let needed = match dec.needed() {
            Ok(n) => n,
            Err(e) => {
                // `needed` reports the header error before `next_message` would.
                assert_eq!(
                    dec.next_message(),
                    Err(e.clone()),
                    "needed() and next_message agree"
                );
                out.error = Some(e);
                return out;
            }
        };
        assert!(needed > 0, "a complete frame would have been returned");
        assert!(
            dec.buffered() + needed <= HEADER_BYTES + max as usize,
            "never asks for more than one maximal frame: {} buffered + {needed} needed, max {max}",
            dec.buffered()
        );
        if pos == stream.len() {
            return out;
        }
        // xorshift: read sizes of 1 up to 64 bytes, capped at what the decoder asks for.
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let want = (rng % 64 + 1) as usize;
        let n = want.min(needed).min(stream.len() - pos);
        dec.push(&stream[pos..pos + n]);
        pos += n;
        assert!(
            dec.buffered() <= HEADER_BYTES + max as usize,
            "the decoder never buffers more than one maximal frame"
        );
    }
}

/// The whole stream in one push.
fn decode_whole(stream: &[u8], max: u32) -> Outcome {
    let mut dec = FrameDecoder::new(max);
    dec.push(stream);
    let mut out = Outcome {
        frames: Vec::new(),
        error: None,
    };
    loop {
        match dec.next_message() {
            Ok(Some(m)) => out.frames.push(roundtrip(&m)),
            Ok(None) => return out,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
}
