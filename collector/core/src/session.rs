//! The collector side of one agent connection as a state machine: which frames are acceptable
//! when, and how each refusal maps to a `Goodbye` and a QUIC close code.
//!
//! Usage: create a [`Session`] once the TLS handshake named the terminal, feed it every decoded
//! frame with [`Session::handle_frame`] (frames read with
//! `storepulse_shared::FrameDecoder::next_agent_frame`; [`Session::handle_message`] takes an
//! already checked message) (or a decoding failure with
//! [`Session::handle_frame_error`], or the expiry of the hello timer with
//! [`Session::handle_hello_timeout`]) and act on the returned [`Step`] or [`Refusal`]. After a
//! refusal the connection must be closed; the session stays closed.

use storepulse_shared::check::{QuarantinedRecord, RawBatch};
use storepulse_shared::ids::validate_id;
use storepulse_shared::{
    AgentFrame, Batch, FrameError, GoodbyeReason, Hello, INCIDENTS_PROTOCOL_VERSION,
    MIN_PROTOCOL_VERSION, Message, PROTOCOL_VERSION, RENEWAL_PROTOCOL_VERSION, RecordBody, Seq,
    TerminalId, close_code,
};

/// What an invalid transaction code is replaced by (see [`sanitize_codes`]).
pub const INVALID_CODE: &str = "INVALID_CODE";

/// What the shell must do after an accepted message.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The `Hello` was accepted: register the terminal, then send `Welcome` carrying the
    /// `Hello`'s `protocol_version` (the message set both sides now speak).
    Welcome(Box<Hello>),
    /// The agent asks which open incidents cover it (message set 2): answer with an
    /// `IncidentList` carrying `query_id`.
    Incidents {
        /// The query's id, to echo.
        query_id: u64,
    },
    /// A valid batch: store its records under `spool_epoch` and keep its quarantined ones
    /// apart, then `Ack` it (naming `highest_seq`) once durable.
    Store {
        /// Spool epoch announced in the `Hello`.
        spool_epoch: u64,
        /// The validated batch, without its quarantined records.
        batch: Batch,
        /// Records that broke a value rule (a bad label, a number out of range or not
        /// finite): stored apart with the reason, never refused (PROTOCOL.md 5.2).
        quarantined: Vec<QuarantinedRecord>,
        /// The highest seq of the batch as sent (quarantined records included), for the Ack.
        highest_seq: Seq,
        /// Seqs whose transaction code was invalid and replaced by [`INVALID_CODE`].
        invalid_codes: Vec<u64>,
    },
    /// The agent asks for a renewed certificate (message set 3): check and sign the CSR
    /// (DER), answer with a `RenewResponse`. The connection goes on either way.
    Renew(Vec<u8>),
    /// The agent said goodbye: close the connection normally.
    PeerLeft,
}

/// Why the connection must be closed, and how to tell the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// QUIC application close code (see `storepulse_shared::close_code`).
    pub close_code: u32,
    /// `Goodbye` to send before closing, if the stream is still usable.
    pub goodbye: Option<GoodbyeReason>,
    /// Detail for the `Goodbye` and the logs.
    pub detail: String,
}

/// Why a batch is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// More records than the collector accepts in one batch.
    #[error("batch has {len} records, the maximum is {max}")]
    TooManyRecords {
        /// Records in the batch.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Sequence numbers are not strictly ascending.
    #[error("record seq {seq} does not follow {previous}")]
    SeqNotAscending {
        /// The previous record's seq.
        previous: u64,
        /// The offending record's seq.
        seq: u64,
    },
    /// The batch id is not the connection's next one (1 for the first batch, +1 per batch).
    #[error(
        "batch_id {got}, expected {expected} (1 for the first batch of a connection, +1 per batch)"
    )]
    BatchIdOutOfOrder {
        /// The batch id sent.
        got: u64,
        /// The batch id expected.
        expected: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHello,
    Ready {
        spool_epoch: u64,
        version: u16,
        next_batch_id: u64,
    },
    Closed,
}

/// Protocol state of one connection. See the module documentation for the calling order.
#[derive(Debug, Clone)]
pub struct Session {
    cert_terminal: TerminalId,
    max_batch_records: usize,
    phase: Phase,
}

/// Replaces every transaction code that is not a valid code
/// ([`storepulse_shared::validate_txn_code`]) by [`INVALID_CODE`] and returns their seqs.
///
/// A bad value inside one record is not a reason to refuse the batch: the agent would resend
/// the same batch forever and everything behind it in its spool would be stuck. The record is
/// kept (its time and kind still count) and the shell logs the seqs.
pub fn sanitize_codes(batch: &mut Batch) -> Vec<u64> {
    let mut bad = Vec::new();
    for r in &mut batch.records {
        if let RecordBody::TxnOutcome(t) = &mut r.body
            && storepulse_shared::validate_txn_code(&t.code).is_err()
        {
            t.code = INVALID_CODE.to_owned();
            bad.push(r.seq.0);
        }
    }
    bad
}

/// Checks a batch's structure: at most `max_records` records in strictly ascending `seq`.
/// Field values are not refused here (see [`sanitize_codes`] and
/// `storepulse_shared::check`).
pub fn validate_batch(batch: &Batch, max_records: usize) -> Result<(), BatchError> {
    validate_seqs(batch.records.iter().map(|r| r.seq.0), max_records)
}

fn validate_seqs(
    seqs: impl ExactSizeIterator<Item = u64>,
    max_records: usize,
) -> Result<(), BatchError> {
    if seqs.len() > max_records {
        return Err(BatchError::TooManyRecords {
            len: seqs.len(),
            max: max_records,
        });
    }
    let mut previous: Option<u64> = None;
    for seq in seqs {
        if let Some(p) = previous
            && seq <= p
        {
            return Err(BatchError::SeqNotAscending { previous: p, seq });
        }
        previous = Some(seq);
    }
    Ok(())
}

impl Refusal {
    fn new(close_code: u32, goodbye: Option<GoodbyeReason>, detail: impl Into<String>) -> Self {
        Self {
            close_code,
            goodbye,
            detail: detail.into(),
        }
    }

    fn protocol(detail: impl Into<String>) -> Self {
        Self::new(
            close_code::PROTOCOL_ERROR,
            Some(GoodbyeReason::ProtocolError),
            detail,
        )
    }
}

impl Session {
    /// A session for a connection whose client certificate names `cert_terminal`.
    pub fn new(cert_terminal: TerminalId, max_batch_records: usize) -> Self {
        Self {
            cert_terminal,
            max_batch_records,
            phase: Phase::AwaitingHello,
        }
    }

    /// The terminal named by the client certificate.
    pub fn terminal(&self) -> &TerminalId {
        &self.cert_terminal
    }

    /// Whether a `Hello` was accepted and the session is not closed.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready { .. })
    }

    /// The message set agreed at `Hello`; `None` before.
    pub fn version(&self) -> Option<u16> {
        match self.phase {
            Phase::Ready { version, .. } => Some(version),
            _ => None,
        }
    }

    /// A frame from the agent arrived, as read by
    /// `storepulse_shared::FrameDecoder::next_agent_frame`: a `Hello` with a bad label is
    /// refused naming the field (PROTOCOL_ERROR); a `Batch`'s records that break a value rule
    /// are quarantined, the rest stored.
    pub fn handle_frame(&mut self, frame: AgentFrame) -> Result<Step, Refusal> {
        match frame {
            AgentFrame::Message(m) => self.handle_message(m),
            AgentFrame::Batch(b) => self.handle_raw_batch(b),
            AgentFrame::Hello(h) => match (self.phase, h.check()) {
                (Phase::AwaitingHello, Err(e)) => {
                    self.phase = Phase::Closed;
                    Err(Refusal::protocol(format!("Hello: {e}")))
                }
                (_, Ok(hello)) => self.handle_message(Message::Hello(hello)),
                (_, Err(_)) => {
                    self.phase = Phase::Closed;
                    Err(Refusal::protocol("unexpected Hello from an agent"))
                }
            },
        }
    }

    /// A decoded, checked frame arrived.
    pub fn handle_message(&mut self, msg: Message) -> Result<Step, Refusal> {
        let result = match (self.phase, msg) {
            (Phase::Closed, _) => Err(Refusal::protocol("session already closed")),
            (_, Message::Goodbye(_)) => {
                self.phase = Phase::Closed;
                return Ok(Step::PeerLeft);
            }
            (Phase::AwaitingHello, Message::Hello(hello)) => self.accept_hello(hello),
            (Phase::AwaitingHello, other) => Err(Refusal::protocol(format!(
                "expected Hello, got {}",
                other.frame_type().name()
            ))),
            (Phase::Ready { version, .. }, Message::IncidentQuery(q)) => {
                if version >= INCIDENTS_PROTOCOL_VERSION {
                    Ok(Step::Incidents {
                        query_id: q.query_id,
                    })
                } else {
                    Err(Refusal::protocol(format!(
                        "IncidentQuery needs message set {INCIDENTS_PROTOCOL_VERSION}; the Hello said {version}"
                    )))
                }
            }
            (Phase::Ready { version, .. }, Message::RenewRequest(r)) => {
                if version >= RENEWAL_PROTOCOL_VERSION {
                    Ok(Step::Renew(r.csr_der))
                } else {
                    Err(Refusal::protocol(format!(
                        "RenewRequest needs message set {RENEWAL_PROTOCOL_VERSION}; the Hello said {version}"
                    )))
                }
            }
            (_, Message::Batch(batch)) => return self.handle_raw_batch(RawBatch::from(batch)),
            (Phase::Ready { .. }, other) => Err(Refusal::protocol(format!(
                "unexpected {} from an agent",
                other.frame_type().name()
            ))),
        };
        if result.is_err() {
            self.phase = Phase::Closed;
        }
        result
    }

    fn handle_raw_batch(&mut self, raw: RawBatch) -> Result<Step, Refusal> {
        let result = match &mut self.phase {
            Phase::Ready {
                spool_epoch,
                next_batch_id,
                ..
            } => {
                let checked = if raw.batch_id != *next_batch_id {
                    Err(BatchError::BatchIdOutOfOrder {
                        got: raw.batch_id,
                        expected: *next_batch_id,
                    })
                } else {
                    validate_seqs(raw.records.iter().map(|r| r.seq.0), self.max_batch_records)
                };
                match checked {
                    Ok(()) => {
                        *next_batch_id += 1;
                        let highest_seq = raw.records.last().map_or(Seq(0), |r| r.seq);
                        let mut batch = Batch {
                            batch_id: raw.batch_id,
                            records: Vec::with_capacity(raw.records.len()),
                        };
                        let mut quarantined = Vec::new();
                        for r in raw.records {
                            match r.check() {
                                Ok(r) => batch.records.push(r),
                                Err(q) => quarantined.push(*q),
                            }
                        }
                        let invalid_codes = sanitize_codes(&mut batch);
                        Ok(Step::Store {
                            spool_epoch: *spool_epoch,
                            batch,
                            quarantined,
                            highest_seq,
                            invalid_codes,
                        })
                    }
                    Err(e) => Err(Refusal::protocol(e.to_string())),
                }
            }
            Phase::AwaitingHello => Err(Refusal::protocol("expected Hello, got Batch")),
            Phase::Closed => Err(Refusal::protocol("session already closed")),
        };
        if result.is_err() {
            self.phase = Phase::Closed;
        }
        result
    }

    /// The frame decoder failed; the byte stream cannot be resynchronised.
    pub fn handle_frame_error(&mut self, error: &FrameError) -> Refusal {
        self.phase = Phase::Closed;
        let code = match error {
            FrameError::TooLarge { .. } => close_code::FRAME_TOO_LARGE,
            FrameError::UnknownType(_)
            | FrameError::Malformed { .. }
            | FrameError::TrailingBytes { .. } => close_code::PROTOCOL_ERROR,
        };
        Refusal::new(code, Some(GoodbyeReason::ProtocolError), error.to_string())
    }

    /// No `Hello` arrived in time. Harmless once the session is ready.
    pub fn handle_hello_timeout(&mut self) -> Option<Refusal> {
        if self.phase != Phase::AwaitingHello {
            return None;
        }
        self.phase = Phase::Closed;
        Some(Refusal::new(
            close_code::HELLO_TIMEOUT,
            None,
            "no Hello within the timeout",
        ))
    }

    fn accept_hello(&mut self, hello: Hello) -> Result<Step, Refusal> {
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.protocol_version) {
            return Err(Refusal::new(
                close_code::UNSUPPORTED_VERSION,
                Some(GoodbyeReason::UnsupportedVersion),
                format!(
                    "protocol version {} is not supported, this collector speaks {} to {}",
                    hello.protocol_version, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION
                ),
            ));
        }
        if hello.identity.terminal_id != self.cert_terminal {
            return Err(Refusal::new(
                close_code::IDENTITY_MISMATCH,
                Some(GoodbyeReason::IdentityMismatch),
                format!(
                    "Hello names terminal {} but the certificate is for {}",
                    hello.identity.terminal_id, self.cert_terminal
                ),
            ));
        }
        for (what, value) in [
            ("merchant_id", &hello.identity.merchant_id),
            ("store_id", &hello.identity.store_id),
        ] {
            if let Err(e) = validate_id(value.as_str()) {
                return Err(Refusal::protocol(format!("Hello: identity.{what} {e}")));
            }
        }
        self.phase = Phase::Ready {
            spool_epoch: hello.spool_epoch,
            version: hello.protocol_version,
            next_batch_id: 1,
        };
        Ok(Step::Welcome(Box::new(hello)))
    }
}

#[cfg(test)]
mod tests {
    use storepulse_shared::{
        Ack, Goodbye, Identity, Label, LinkType, PayMethod, Record, Scheme, Seq, TxnOutcome,
    };

    use super::*;

    fn label(s: &str) -> Label {
        Label::new(s).expect("valid label")
    }

    fn hello(id: &str, version: u16) -> Hello {
        Hello {
            protocol_version: version,
            agent_version: "0.1.0".into(),
            spool_epoch: 7,
            identity: Identity {
                terminal_id: TerminalId::new(id).expect("valid id"),
                merchant_id: label("M1"),
                store_id: label("S1"),
                region: label("east"),
                city: label("Shanghai"),
                acquirer: label("acq-a"),
                qr_channel: label("alipay"),
                carrier: label("cmcc"),
                link: LinkType::Wired,
                model: label("P300"),
                firmware: label("1.0"),
                app_version: label("5.0"),
            },
            agent_time_unix_ms: 0,
        }
    }

    fn txn(seq: u64, code: &str) -> Record {
        Record {
            seq: Seq(seq),
            time_unix_ms: 0,
            body: RecordBody::TxnOutcome(TxnOutcome {
                scheme: Scheme::Cup,
                code: code.into(),
                latency_ms: 1,
                method: PayMethod::Card,
                route: None,
            }),
        }
    }

    fn session() -> Session {
        Session::new(TerminalId::new("T1").expect("valid"), 4)
    }

    #[test]
    fn hello_then_batches() {
        let mut s = session();
        assert!(matches!(
            s.handle_message(Message::Hello(hello("T1", 1))),
            Ok(Step::Welcome(_))
        ));
        assert!(s.is_ready());
        assert_eq!(s.handle_hello_timeout(), None);
        let batch = Batch {
            batch_id: 1,
            records: vec![txn(1, "00"), txn(5, "SYSTEMERROR")],
        };
        assert_eq!(
            s.handle_message(Message::Batch(batch.clone())),
            Ok(Step::Store {
                spool_epoch: 7,
                batch,
                quarantined: vec![],
                highest_seq: Seq(5),
                invalid_codes: vec![]
            })
        );
        let bye = Goodbye {
            reason: GoodbyeReason::Shutdown,
            retry_after_secs: 0,
            detail: "".into(),
        };
        assert_eq!(s.handle_message(Message::Goodbye(bye)), Ok(Step::PeerLeft));
    }

    #[test]
    fn batch_before_hello_is_a_protocol_error() {
        let mut s = session();
        let r = s.handle_message(Message::Batch(Batch {
            batch_id: 1,
            records: vec![],
        }));
        assert_eq!(
            r.expect_err("refused").close_code,
            close_code::PROTOCOL_ERROR
        );
        assert!(
            s.handle_message(Message::Hello(hello("T1", 1))).is_err(),
            "stays closed"
        );
    }

    #[test]
    fn wrong_version_and_identity_are_refused() {
        let r = session()
            .handle_message(Message::Hello(hello("T1", PROTOCOL_VERSION + 1)))
            .expect_err("refused");
        assert_eq!(r.close_code, close_code::UNSUPPORTED_VERSION);
        let r = session()
            .handle_message(Message::Hello(hello("T1", 0)))
            .expect_err("refused");
        assert_eq!(r.close_code, close_code::UNSUPPORTED_VERSION);
        assert_eq!(r.goodbye, Some(GoodbyeReason::UnsupportedVersion));

        let r = session()
            .handle_message(Message::Hello(hello("T2", 1)))
            .expect_err("refused");
        assert_eq!(r.close_code, close_code::IDENTITY_MISMATCH);
        assert_eq!(r.goodbye, Some(GoodbyeReason::IdentityMismatch));
    }

    #[test]
    fn incident_queries_need_message_set_2() {
        let mut s = session();
        s.handle_message(Message::Hello(hello("T1", 2)))
            .expect("accepted");
        assert_eq!(
            s.handle_message(Message::IncidentQuery(storepulse_shared::IncidentQuery {
                query_id: 4
            })),
            Ok(Step::Incidents { query_id: 4 })
        );
        // Message set 1 has no such frame: an agent that said 1 must not send it.
        let mut s = session();
        s.handle_message(Message::Hello(hello("T1", 1)))
            .expect("accepted");
        let r = s.handle_message(Message::IncidentQuery(storepulse_shared::IncidentQuery {
            query_id: 4,
        }));
        assert_eq!(
            r.expect_err("refused").close_code,
            close_code::PROTOCOL_ERROR
        );
        // Nor before the Hello, nor the collector's answer from an agent.
        let r =
            session().handle_message(Message::IncidentQuery(storepulse_shared::IncidentQuery {
                query_id: 1,
            }));
        assert!(r.is_err());
        let mut s = session();
        s.handle_message(Message::Hello(hello("T1", 2)))
            .expect("accepted");
        let r = s.handle_message(Message::IncidentList(storepulse_shared::IncidentList {
            query_id: 1,
            collector_time_unix_ms: 0,
            incidents: vec![],
        }));
        assert_eq!(
            r.expect_err("refused").close_code,
            close_code::PROTOCOL_ERROR
        );
    }

    #[test]
    fn bad_merchant_id_is_refused() {
        let mut h = hello("T1", 1);
        h.identity.merchant_id = label("商户 1");
        let r = session()
            .handle_message(Message::Hello(h))
            .expect_err("refused");
        assert_eq!(r.close_code, close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn agent_must_not_send_collector_frames() {
        let mut s = session();
        s.handle_message(Message::Hello(hello("T1", 1)))
            .expect("accepted");
        let r = s.handle_message(Message::Ack(Ack {
            batch_id: 1,
            highest_seq: Seq(1),
        }));
        assert_eq!(
            r.expect_err("refused").close_code,
            close_code::PROTOCOL_ERROR
        );
    }

    #[test]
    fn renewal_needs_message_set_3() {
        let renew = || Message::RenewRequest(storepulse_shared::RenewRequest { csr_der: vec![1] });
        let mut s = session();
        s.handle_message(Message::Hello(hello("T1", 2)))
            .expect("version 2 accepted");
        assert_eq!(s.version(), Some(2));
        assert_eq!(
            s.handle_message(renew()).expect_err("refused").close_code,
            close_code::PROTOCOL_ERROR
        );
        let mut s = session();
        assert_eq!(
            s.handle_message(renew())
                .expect_err("before Hello")
                .close_code,
            close_code::PROTOCOL_ERROR
        );
        let mut s = session();
        s.handle_message(Message::Hello(hello("T1", 3)))
            .expect("version 3 accepted");
        assert_eq!(s.version(), Some(3));
        assert_eq!(s.handle_message(renew()), Ok(Step::Renew(vec![1])));
        assert_eq!(
            s.handle_message(renew()),
            Ok(Step::Renew(vec![1])),
            "and again"
        );
    }

    #[test]
    fn batch_validation() {
        let ok = Batch {
            batch_id: 1,
            records: vec![txn(1, "00"), txn(2, "SYSTEMERROR")],
        };
        assert_eq!(validate_batch(&ok, 4), Ok(()));
        let too_many = Batch {
            batch_id: 1,
            records: (1..=5).map(|i| txn(i, "00")).collect(),
        };
        assert!(matches!(
            validate_batch(&too_many, 4),
            Err(BatchError::TooManyRecords { .. })
        ));
        let dup = Batch {
            batch_id: 1,
            records: vec![txn(2, "00"), txn(2, "00")],
        };
        assert!(matches!(
            validate_batch(&dup, 4),
            Err(BatchError::SeqNotAscending { .. })
        ));
    }

    #[test]
    fn invalid_codes_are_replaced_not_refused() {
        let mut s = Session::new(TerminalId::new("T1").expect("valid"), 16);
        s.handle_message(Message::Hello(hello("T1", 1)))
            .expect("accepted");
        let long = "x".repeat(65);
        let good = "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR";
        let records = vec![
            txn(1, ""),
            txn(2, "\u{7f}"),
            txn(3, "é"),
            txn(4, &long),
            txn(5, good),
        ];
        let step = s
            .handle_message(Message::Batch(Batch {
                batch_id: 1,
                records,
            }))
            .expect("kept");
        let Step::Store {
            batch,
            invalid_codes,
            ..
        } = step
        else {
            panic!("expected Store");
        };
        assert_eq!(invalid_codes, vec![1, 2, 3, 4]);
        let codes: Vec<&str> = batch
            .records
            .iter()
            .map(|r| match &r.body {
                RecordBody::TxnOutcome(t) => t.code.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(
            codes,
            vec![INVALID_CODE; 4]
                .into_iter()
                .chain([good])
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn batch_ids_count_from_one_per_connection() {
        let mut s = session();
        s.handle_message(Message::Hello(hello("T1", 1)))
            .expect("accepted");
        for id in 1..=3 {
            let b = Batch {
                batch_id: id,
                records: vec![txn(id, "00")],
            };
            assert!(matches!(
                s.handle_message(Message::Batch(b)),
                Ok(Step::Store { .. })
            ));
        }
        // An empty batch is allowed and counts.
        let empty = Batch {
            batch_id: 4,
            records: vec![],
        };
        assert!(matches!(
            s.handle_message(Message::Batch(empty)),
            Ok(Step::Store {
                highest_seq: Seq(0),
                ..
            })
        ));
        // A repeated id (or a gap) is a protocol error.
        let again = Batch {
            batch_id: 4,
            records: vec![txn(9, "00")],
        };
        let r = s
            .handle_message(Message::Batch(again))
            .expect_err("refused");
        assert_eq!(r.close_code, close_code::PROTOCOL_ERROR);
        assert!(r.detail.contains("batch_id 4, expected 5"), "{}", r.detail);
        let mut s = session();
        s.handle_message(Message::Hello(hello("T1", 1)))
            .expect("accepted");
        let zero = Batch {
            batch_id: 0,
            records: vec![],
        };
        assert!(s.handle_message(Message::Batch(zero)).is_err());
    }

    #[test]
    fn bad_records_are_quarantined_not_refused() {
        use storepulse_shared::check::{RawBatch, RawBody, RawRecord};
        let mut s = session();
        s.handle_message(Message::Hello(hello("T1", 1)))
            .expect("accepted");
        let mut raw = RawBatch::from(Batch {
            batch_id: 1,
            records: vec![txn(1, "00"), txn(2, "00"), txn(3, "05")],
        });
        if let RawBody::TxnOutcome(t) = &mut raw.records[1].body {
            t.route = Some(String::new());
        }
        raw.records.push(RawRecord {
            seq: Seq(4),
            time_unix_ms: 0,
            body: RawBody::Heartbeat(storepulse_shared::Heartbeat {
                cpu_percent: 150.0,
                mem_used_bytes: 0,
                mem_total_bytes: 0,
                disk_free_bytes: 0,
                uptime_secs: 0,
                temperature_c: None,
                battery_percent: None,
                spool_records: 0,
            }),
        });
        let Ok(Step::Store {
            batch,
            quarantined,
            highest_seq,
            ..
        }) = s.handle_frame(AgentFrame::Batch(raw))
        else {
            panic!("expected Store");
        };
        let kept: Vec<u64> = batch.records.iter().map(|r| r.seq.0).collect();
        assert_eq!(kept, [1, 3]);
        let q: Vec<(u64, &str)> = quarantined
            .iter()
            .map(|q| (q.seq.0, q.error.field.as_str()))
            .collect();
        assert_eq!(q, [(2, "route"), (4, "cpu_percent")]);
        assert_eq!(
            highest_seq,
            Seq(4),
            "the Ack covers the quarantined records"
        );
        assert!(s.is_ready(), "the connection goes on");
    }

    #[test]
    fn hello_with_a_bad_label_is_refused_naming_it() {
        let mut raw = storepulse_shared::check::RawHello::from(hello("T1", 3));
        raw.identity.city = "a\u{7}b".into();
        let mut s = session();
        let r = s.handle_frame(AgentFrame::Hello(raw)).expect_err("refused");
        assert_eq!(r.close_code, close_code::PROTOCOL_ERROR);
        assert_eq!(r.goodbye, Some(GoodbyeReason::ProtocolError));
        assert!(r.detail.contains("identity.city"), "{}", r.detail);
        assert!(!s.is_ready());
    }

    #[test]
    fn frame_errors_map_to_close_codes() {
        let mut s = session();
        let r = s.handle_frame_error(&FrameError::TooLarge { len: 10, max: 5 });
        assert_eq!(r.close_code, close_code::FRAME_TOO_LARGE);
        let r = session().handle_frame_error(&FrameError::UnknownType(9));
        assert_eq!(r.close_code, close_code::PROTOCOL_ERROR);
        let mut s = session();
        assert_eq!(
            s.handle_hello_timeout().map(|r| r.close_code),
            Some(close_code::HELLO_TIMEOUT)
        );
    }
}
