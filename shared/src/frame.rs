//! Framing: `type (u8) | length (u32, big-endian) | payload (postcard)`.
//!
//! [`FrameDecoder`] is sans-IO: push bytes in with [`FrameDecoder::push`], pull messages out with
//! [`FrameDecoder::next_message`]. The announced length is checked against the maximum before
//! any buffer is reserved for the payload, so a hostile header cannot make the receiver allocate.

use serde::Serialize;

use crate::check::{RawBatch, RawHello};
use crate::message::{
    Ack, Batch, EnrolRequest, EnrolResponse, Goodbye, Hello, IncidentList, IncidentQuery, Message,
    RenewRequest, RenewResponse, Welcome,
};

/// Default maximum payload length, bytes (1 MiB).
pub const MAX_FRAME_BYTES_DEFAULT: u32 = 1 << 20;

/// Length of the frame header: one type byte and a four-byte big-endian length.
pub const HEADER_BYTES: usize = 5;

/// The frame type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// [`Hello`], agent to collector.
    Hello = 0x01,
    /// [`Batch`], agent to collector.
    Batch = 0x02,
    /// [`Ack`], collector to agent.
    Ack = 0x03,
    /// [`Welcome`], collector to agent.
    Welcome = 0x04,
    /// [`Goodbye`], either direction.
    Goodbye = 0x05,
    /// [`IncidentQuery`], agent to collector (message set 2).
    IncidentQuery = 0x06,
    /// [`IncidentList`], collector to agent (message set 2).
    IncidentList = 0x07,
    /// [`EnrolRequest`], agent to collector, enrolment connections only.
    EnrolRequest = 0x08,
    /// [`EnrolResponse`], collector to agent, enrolment connections only.
    EnrolResponse = 0x09,
    /// [`RenewRequest`], agent to collector (message set 3).
    RenewRequest = 0x0a,
    /// [`RenewResponse`], collector to agent (message set 3).
    RenewResponse = 0x0b,
}

/// Why bytes could not be turned into a message. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header announced more payload than allowed.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: u32,
        /// The receiver's maximum.
        max: u32,
    },
    /// The type byte is not a known frame type.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// The payload is not a valid postcard encoding of the message for its type.
    #[error("malformed {kind} payload: {reason}")]
    Malformed {
        /// Frame type name.
        kind: &'static str,
        /// Decoder's reason.
        reason: String,
    },
    /// The payload decoded but left unread bytes behind.
    #[error("{kind} payload has {extra} trailing bytes")]
    TrailingBytes {
        /// Frame type name.
        kind: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
}

/// Sans-IO frame decoder with a payload size limit.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_payload: u32,
    /// Set once an error was returned: the stream cannot be resynchronised.
    failed: bool,
}

impl FrameType {
    /// Maps a type byte to a frame type.
    pub fn from_byte(b: u8) -> Result<Self, FrameError> {
        Ok(match b {
            0x01 => Self::Hello,
            0x02 => Self::Batch,
            0x03 => Self::Ack,
            0x04 => Self::Welcome,
            0x05 => Self::Goodbye,
            0x06 => Self::IncidentQuery,
            0x07 => Self::IncidentList,
            0x08 => Self::EnrolRequest,
            0x09 => Self::EnrolResponse,
            0x0a => Self::RenewRequest,
            0x0b => Self::RenewResponse,
            other => return Err(FrameError::UnknownType(other)),
        })
    }

    /// The frame type's name, as used in PROTOCOL.md.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hello => "Hello",
            Self::Batch => "Batch",
            Self::Ack => "Ack",
            Self::Welcome => "Welcome",
            Self::Goodbye => "Goodbye",
            Self::IncidentQuery => "IncidentQuery",
            Self::IncidentList => "IncidentList",
            Self::EnrolRequest => "EnrolRequest",
            Self::EnrolResponse => "EnrolResponse",
            Self::RenewRequest => "RenewRequest",
            Self::RenewResponse => "RenewResponse",
        }
    }
}

impl Message {
    /// The frame type this message travels in.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Hello(_) => FrameType::Hello,
            Self::Batch(_) => FrameType::Batch,
            Self::Ack(_) => FrameType::Ack,
            Self::Welcome(_) => FrameType::Welcome,
            Self::Goodbye(_) => FrameType::Goodbye,
            Self::IncidentQuery(_) => FrameType::IncidentQuery,
            Self::IncidentList(_) => FrameType::IncidentList,
            Self::EnrolRequest(_) => FrameType::EnrolRequest,
            Self::EnrolResponse(_) => FrameType::EnrolResponse,
            Self::RenewRequest(_) => FrameType::RenewRequest,
            Self::RenewResponse(_) => FrameType::RenewResponse,
        }
    }
}

/// Encodes a message as one frame (header and payload).
///
/// Callers keep batches under the peer's maximum frame size (1 MiB by default); the receiver
/// refuses larger frames.
pub fn encode_frame(msg: &Message) -> Vec<u8> {
    use encode_raw_frame as enc;
    match msg {
        Message::Hello(m) => enc(FrameType::Hello, m),
        Message::Batch(m) => enc(FrameType::Batch, m),
        Message::Ack(m) => enc(FrameType::Ack, m),
        Message::Welcome(m) => enc(FrameType::Welcome, m),
        Message::Goodbye(m) => enc(FrameType::Goodbye, m),
        Message::IncidentQuery(m) => enc(FrameType::IncidentQuery, m),
        Message::IncidentList(m) => enc(FrameType::IncidentList, m),
        Message::EnrolRequest(m) => enc(FrameType::EnrolRequest, m),
        Message::EnrolResponse(m) => enc(FrameType::EnrolResponse, m),
        Message::RenewRequest(m) => enc(FrameType::RenewRequest, m),
        Message::RenewResponse(m) => enc(FrameType::RenewResponse, m),
    }
}

/// A frame from an agent as the collector reads it (see [`crate::check`]): a `Hello` and a
/// `Batch` with their labels and numbers not yet checked, so that one bad value is refused or
/// quarantined by name instead of failing the whole frame.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentFrame {
    /// A `Hello`, labels unchecked.
    Hello(RawHello),
    /// A `Batch`, records unchecked.
    Batch(RawBatch),
    /// Any other frame, decoded as usual.
    Message(Message),
}

/// Decodes one payload from an agent: `Hello` and `Batch` into their raw twins, the rest as
/// [`decode_payload`] does.
pub fn decode_agent_payload(ty: FrameType, payload: &[u8]) -> Result<AgentFrame, FrameError> {
    Ok(match ty {
        FrameType::Hello => AgentFrame::Hello(dec::<RawHello>(ty, payload)?),
        FrameType::Batch => AgentFrame::Batch(dec::<RawBatch>(ty, payload)?),
        _ => AgentFrame::Message(decode_payload(ty, payload)?),
    })
}

fn dec<'a, T: serde::Deserialize<'a>>(ty: FrameType, p: &'a [u8]) -> Result<T, FrameError> {
    let (v, rest) = postcard::take_from_bytes::<T>(p).map_err(|e| FrameError::Malformed {
        kind: ty.name(),
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            kind: ty.name(),
            extra: rest.len(),
        });
    }
    Ok(v)
}

/// Encodes any serialisable payload as one frame of type `ty` (tests and tools that build
/// frames by hand, e.g. a [`RawBatch`] with a record the checked types cannot express).
pub fn encode_raw_frame<T: Serialize>(ty: FrameType, v: &T) -> Vec<u8> {
    let header = vec![ty as u8, 0, 0, 0, 0];
    // Invariant: as in `encode_frame`, serialising into a growable Vec cannot fail.
    let mut out = match postcard::to_extend(v, header) {
        Ok(out) => out,
        Err(e) => unreachable!("postcard encoding into a Vec failed: {e}"),
    };
    let len = u32::try_from(out.len() - HEADER_BYTES).unwrap_or(u32::MAX);
    out[1..HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decodes one payload of the given type.
pub fn decode_payload(ty: FrameType, payload: &[u8]) -> Result<Message, FrameError> {
    Ok(match ty {
        FrameType::Hello => Message::Hello(dec::<Hello>(ty, payload)?),
        FrameType::Batch => Message::Batch(dec::<Batch>(ty, payload)?),
        FrameType::Ack => Message::Ack(dec::<Ack>(ty, payload)?),
        FrameType::Welcome => Message::Welcome(dec::<Welcome>(ty, payload)?),
        FrameType::Goodbye => Message::Goodbye(dec::<Goodbye>(ty, payload)?),
        FrameType::IncidentQuery => Message::IncidentQuery(dec::<IncidentQuery>(ty, payload)?),
        FrameType::IncidentList => Message::IncidentList(dec::<IncidentList>(ty, payload)?),
        FrameType::EnrolRequest => Message::EnrolRequest(dec::<EnrolRequest>(ty, payload)?),
        FrameType::EnrolResponse => Message::EnrolResponse(dec::<EnrolResponse>(ty, payload)?),
        FrameType::RenewRequest => Message::RenewRequest(dec::<RenewRequest>(ty, payload)?),
        FrameType::RenewResponse => Message::RenewResponse(dec::<RenewResponse>(ty, payload)?),
    })
}

impl FrameDecoder {
    /// A decoder that refuses payloads longer than `max_payload` bytes.
    pub fn new(max_payload: u32) -> Self {
        Self {
            buf: Vec::new(),
            max_payload,
            failed: false,
        }
    }

    /// Appends received bytes. Call [`Self::next_message`] until it returns `Ok(None)`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes are needed before the next frame can be decoded; 0 if one is ready.
    ///
    /// Errors as [`Self::next_message`] would, before anything is allocated for the payload.
    pub fn needed(&self) -> Result<usize, FrameError> {
        if self.buf.len() < HEADER_BYTES {
            return Ok(HEADER_BYTES - self.buf.len());
        }
        let (_, len) = self.header()?;
        let total = HEADER_BYTES + len as usize;
        Ok(total.saturating_sub(self.buf.len()))
    }

    fn header(&self) -> Result<(FrameType, u32), FrameError> {
        let ty = FrameType::from_byte(self.buf[0])?;
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len > self.max_payload {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_payload,
            });
        }
        Ok((ty, len))
    }

    /// Decodes the next complete frame, if one is buffered.
    ///
    /// After an error the decoder stays failed: a byte stream cannot be resynchronised, the
    /// connection must be closed.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        self.next_with(decode_payload)
    }

    /// Decodes the next complete frame from an agent ([`decode_agent_payload`]), if one is
    /// buffered. Errors as [`Self::next_message`].
    pub fn next_agent_frame(&mut self) -> Result<Option<AgentFrame>, FrameError> {
        self.next_with(decode_agent_payload)
    }

    fn next_with<T>(
        &mut self,
        decode: impl FnOnce(FrameType, &[u8]) -> Result<T, FrameError>,
    ) -> Result<Option<T>, FrameError> {
        if self.failed {
            return Err(FrameError::Malformed {
                kind: "stream",
                reason: "decoder already failed".into(),
            });
        }
        if self.buf.len() < HEADER_BYTES {
            return Ok(None);
        }
        let (ty, len) = self.header().inspect_err(|_| self.failed = true)?;
        let total = HEADER_BYTES + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let result = decode(ty, &self.buf[HEADER_BYTES..total]);
        self.buf.drain(..total);
        result.map(Some).inspect_err(|_| self.failed = true)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ids::{Label, Seq, TerminalId};
    use crate::message::*;

    fn label(s: &str) -> Label {
        Label::new(s).expect("valid label")
    }

    pub(crate) fn sample_hello() -> Hello {
        Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            agent_version: "0.1.0".into(),
            spool_epoch: 42,
            identity: Identity {
                terminal_id: TerminalId::new("T0001").expect("valid"),
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

    fn sample_batch() -> Batch {
        Batch {
            batch_id: 7,
            records: vec![
                Record {
                    seq: Seq(1),
                    time_unix_ms: 1_700_000_000_000,
                    body: RecordBody::Heartbeat(Heartbeat {
                        cpu_percent: 12.5,
                        mem_used_bytes: 1 << 20,
                        mem_total_bytes: 1 << 30,
                        disk_free_bytes: 1 << 33,
                        uptime_secs: 3600,
                        temperature_c: Some(41.0),
                        battery_percent: None,
                        spool_records: 3,
                    }),
                },
                Record {
                    seq: Seq(2),
                    time_unix_ms: 1_700_000_000_500,
                    body: RecordBody::TxnOutcome(TxnOutcome {
                        scheme: Scheme::Cup,
                        code: "03".into(),
                        latency_ms: 420,
                        method: PayMethod::Card,
                        route: Some(label("acq-a")),
                    }),
                },
            ],
        }
    }

    /// The `IncidentList` of PROTOCOL.md section 8.
    fn sample_incident_list() -> IncidentList {
        IncidentList {
            query_id: 5,
            collector_time_unix_ms: 1_700_000_000_000,
            incidents: vec![CoveringIncident {
                id: 12,
                kind: "merchant_config".into(),
                severity: "major".into(),
                tier: "paged".into(),
                scope: vec![ScopeLabel {
                    key: "merchant_id".into(),
                    value: "M0003".into(),
                }],
                started_unix_ms: 1_699_999_400_000,
                expected_end_unix_ms: None,
                explanation_en: "Bad merchant record".into(),
                explanation_zh: "商户资料有误".into(),
                advice_en: "Call your acquirer".into(),
                advice_zh: "请联系收单机构".into(),
            }],
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn incident_query_bytes_match_protocol_md() {
        let bytes = encode_frame(&Message::IncidentQuery(IncidentQuery { query_id: 5 }));
        assert_eq!(bytes, [0x06, 0, 0, 0, 1, 0x05]);
    }

    #[test]
    fn incident_list_bytes_match_protocol_md() {
        let bytes = encode_frame(&Message::IncidentList(sample_incident_list()));
        assert_eq!(
            hex(&bytes),
            concat!(
                "070000008f",
                "05",
                "80a0abfef962",
                "01",
                "0c",
                "0f6d65726368616e745f636f6e666967",
                "056d616a6f72",
                "057061676564",
                "01",
                "0b6d65726368616e745f6964",
                "054d30303033",
                "8081e2fdf962",
                "00",
                "13426164206d65726368616e74207265636f7264",
                "12e59586e688b7e8b584e69699e69c89e8afaf",
                "1243616c6c20796f7572206163717569726572",
                "15e8afb7e88194e7b3bbe694b6e58d95e69cbae69e84",
            )
        );
    }

    #[test]
    fn roundtrip_every_message() {
        let msgs = vec![
            Message::Hello(sample_hello()),
            Message::Batch(sample_batch()),
            Message::Ack(Ack {
                batch_id: 7,
                highest_seq: Seq(2),
            }),
            Message::Welcome(Welcome {
                protocol_version: 1,
                collector_time_unix_ms: 5,
                heartbeat_interval_secs: 30,
                net_probe_interval_secs: 60,
                max_batch_records: 256,
                backlog_records_per_sec: 500,
            }),
            Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Overloaded,
                retry_after_secs: 30,
                detail: "busy".into(),
            }),
            Message::IncidentQuery(IncidentQuery { query_id: 9 }),
            Message::IncidentList(sample_incident_list()),
            Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Revoked,
                retry_after_secs: 3600,
                detail: String::new(),
            }),
            Message::EnrolRequest(EnrolRequest {
                protocol_version: crate::ENROL_PROTOCOL_VERSION,
                agent_version: "0.1.0".into(),
                terminal_id: TerminalId::new("T0001").expect("valid"),
                token: "tok".into(),
                csr_der: vec![0x30, 0x82, 1, 2],
            }),
            Message::EnrolResponse(EnrolResponse {
                result: CertResult::Refused {
                    reason: CertRefusal::NotAccepted,
                    retry_after_secs: 60,
                    detail: "no".into(),
                },
            }),
            Message::RenewRequest(RenewRequest {
                csr_der: vec![1, 2, 3],
            }),
            Message::RenewResponse(RenewResponse {
                result: CertResult::Issued {
                    certificate_der: vec![0x30; 300],
                },
            }),
        ];
        let mut dec = FrameDecoder::new(MAX_FRAME_BYTES_DEFAULT);
        for m in &msgs {
            dec.push(&encode_frame(m));
        }
        for m in &msgs {
            assert_eq!(dec.next_message().expect("decodes").as_ref(), Some(m));
        }
        assert_eq!(dec.next_message().expect("empty"), None);
        assert_eq!(dec.buffered(), 0);
    }

    /// The byte layout documented in PROTOCOL.md ("Worked example").
    #[test]
    fn ack_bytes_match_protocol_md() {
        let bytes = encode_frame(&Message::Ack(Ack {
            batch_id: 300,
            highest_seq: Seq(5),
        }));
        assert_eq!(bytes, vec![0x03, 0, 0, 0, 3, 0xac, 0x02, 0x05]);
    }

    /// The second worked example of PROTOCOL.md: a Batch with one transaction outcome.
    #[test]
    fn batch_bytes_match_protocol_md() {
        let batch = Batch {
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
        };
        let hex: Vec<String> = encode_frame(&Message::Batch(batch))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex.join(" "),
            "02 00 00 00 12 01 01 07 80 a0 ab fe f9 62 02 01 02 30 33 a4 03 00 00"
        );
    }

    /// The renewal worked examples of PROTOCOL.md section 8.
    #[test]
    fn renewal_bytes_match_protocol_md() {
        let bytes = encode_frame(&Message::RenewResponse(RenewResponse {
            result: CertResult::Refused {
                reason: CertRefusal::Unavailable,
                retry_after_secs: 3600,
                detail: "no CA".into(),
            },
        }));
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "0b 00 00 00 0a 01 02 90 1c 05 6e 6f 20 43 41"
        );
        let req = encode_frame(&Message::RenewRequest(RenewRequest {
            csr_der: vec![0x30, 0x81, 0xf0],
        }));
        assert_eq!(req, vec![0x0a, 0, 0, 0, 4, 3, 0x30, 0x81, 0xf0]);
    }

    #[test]
    fn oversized_header_is_refused_before_allocation() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&[0x02, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            dec.needed(),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: 1024
            })
        );
        assert!(matches!(
            dec.next_message(),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(dec.next_message().is_err(), "a failed decoder stays failed");
    }

    #[test]
    fn unknown_type_and_garbage_are_errors() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&[0x7f, 0, 0, 0, 0]);
        assert_eq!(dec.next_message(), Err(FrameError::UnknownType(0x7f)));

        let mut dec = FrameDecoder::new(1024);
        dec.push(&[0x01, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
        assert!(matches!(
            dec.next_message(),
            Err(FrameError::Malformed { kind: "Hello", .. })
        ));

        let mut frame = encode_frame(&Message::Ack(Ack {
            batch_id: 1,
            highest_seq: Seq(1),
        }));
        frame.push(0);
        let len = u32::try_from(frame.len() - HEADER_BYTES).expect("small");
        frame[1..5].copy_from_slice(&len.to_be_bytes());
        let mut dec = FrameDecoder::new(1024);
        dec.push(&frame);
        assert!(matches!(
            dec.next_message(),
            Err(FrameError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn byte_at_a_time_is_the_same() {
        let frame = encode_frame(&Message::Batch(sample_batch()));
        let mut dec = FrameDecoder::new(MAX_FRAME_BYTES_DEFAULT);
        for (i, b) in frame.iter().enumerate() {
            dec.push(&[*b]);
            let got = dec.next_message().expect("no error");
            assert_eq!(got.is_some(), i + 1 == frame.len());
        }
    }

    proptest! {
        /// Arbitrary bytes never panic the decoder, and it never buffers a payload over the limit.
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32)) {
            let mut dec = FrameDecoder::new(256);
            for c in chunks {
                dec.push(&c);
                let last = loop {
                    match dec.next_message() {
                        Ok(Some(_)) => {}
                        other => break other,
                    }
                };
                match last {
                    // Waiting for more: it never asks a reader for more than one maximal frame.
                    Ok(_) => prop_assert!(dec.needed().is_ok_and(|n| n <= HEADER_BYTES + 256)),
                    Err(_) => break,
                }
            }
        }
    }
}
