//! The messages carried in frames, in both directions.
//!
//! Encoding is postcard (serde); field order is wire order. Versioning rules (PROTOCOL.md):
//! fields are never added to, removed from or reordered in an existing struct; enums only grow
//! (new variants at the end); the collector is upgraded before agents, so a collector always
//! understands every variant an agent may send.

use serde::{Deserialize, Serialize};

use crate::ids::{Label, Seq, TerminalId};

/// A decoded message of any type. On the wire the variant is the frame type byte, not a
/// postcard enum tag (see [`crate::frame`]).
// One Message lives per decoded frame and is consumed at once; boxing Hello would only add an
// allocation to every connection for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Agent to collector, first frame on the stream.
    Hello(Hello),
    /// Agent to collector: records to store.
    Batch(Batch),
    /// Collector to agent: a batch is durably stored.
    Ack(Ack),
    /// Collector to agent: the `Hello` was accepted; settings follow.
    Welcome(Welcome),
    /// Either direction: the sender is closing the connection, and why.
    Goodbye(Goodbye),
    /// Agent to collector (message set 2): which open incidents cover this terminal?
    IncidentQuery(IncidentQuery),
    /// Collector to agent (message set 2): the answer to an [`IncidentQuery`].
    IncidentList(IncidentList),
    /// Agent to collector, on an enrolment connection (ALPN `storepulse-enrol/1`): a bootstrap
    /// token and a certificate signing request.
    EnrolRequest(EnrolRequest),
    /// Collector to agent, on an enrolment connection: the certificate, or why not.
    EnrolResponse(EnrolResponse),
    /// Agent to collector (message set 3): a new certificate for the connected terminal.
    RenewRequest(RenewRequest),
    /// Collector to agent (message set 3): the renewed certificate, or why not.
    RenewResponse(RenewResponse),
}

/// How the terminal reaches the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LinkType {
    /// Ethernet or another fixed line.
    Wired,
    /// Wi-Fi to the store's router.
    Wifi,
    /// Mobile data (SIM).
    Cellular,
    /// Not known.
    Unknown,
}

/// Who the terminal is, and the labels detection groups it by.
///
/// `terminal_id` must equal the common name of the agent's client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The terminal id; equals the client certificate's CN.
    pub terminal_id: TerminalId,
    /// Merchant (acquirer's merchant number).
    pub merchant_id: Label,
    /// Store (branch) id.
    pub store_id: Label,
    /// Region (province or ops region).
    pub region: Label,
    /// City.
    pub city: Label,
    /// Acquirer for card payments.
    pub acquirer: Label,
    /// QR payment channel (service provider).
    pub qr_channel: Label,
    /// Mobile carrier or ISP.
    pub carrier: Label,
    /// Link type.
    pub link: LinkType,
    /// Hardware model.
    pub model: Label,
    /// Firmware version.
    pub firmware: Label,
    /// POS application version.
    pub app_version: Label,
}

/// First frame of every connection, agent to collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the agent.
    pub protocol_version: u16,
    /// Agent software version, free text (for example `0.1.0`).
    pub agent_version: String,
    /// Random id of the agent's spool, fixed when the spool is created. Sequence numbers are
    /// unique within one epoch; a reinstalled agent starts a new epoch at sequence 0.
    pub spool_epoch: u64,
    /// Identity and labels.
    pub identity: Identity,
    /// Agent wall clock, Unix milliseconds, when the `Hello` was sent. The collector measures
    /// the agent's clock offset from it and, beyond its skew threshold, corrects the
    /// connection's record times and flags the terminal (PROTOCOL.md 5.4).
    pub agent_time_unix_ms: i64,
}

/// Records to store, agent to collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Per-connection batch number, starting at 1 and growing by one per batch.
    pub batch_id: u64,
    /// The records, in ascending `seq` order.
    pub records: Vec<Record>,
}

/// One telemetry record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Per-terminal sequence number within the spool epoch; unique and only growing.
    pub seq: Seq,
    /// When the record was observed, agent wall clock, Unix milliseconds.
    pub time_unix_ms: i64,
    /// What was observed.
    pub body: RecordBody,
}

/// The kinds of record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RecordBody {
    /// Liveness and host health.
    Heartbeat(Heartbeat),
    /// Network quality towards the collector and the payment endpoints.
    NetQuality(NetQuality),
    /// The outcome of one payment attempt, as reported by the POS application.
    TxnOutcome(TxnOutcome),
    /// What the agent had to drop from its spool, and why.
    SpoolDrops(SpoolDrops),
}

/// Host health sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// CPU use over the last interval, percent of all cores (0-100).
    pub cpu_percent: f32,
    /// Memory in use, bytes.
    pub mem_used_bytes: u64,
    /// Memory installed, bytes.
    pub mem_total_bytes: u64,
    /// Free space on the disk that holds the spool, bytes.
    pub disk_free_bytes: u64,
    /// Host uptime, seconds.
    pub uptime_secs: u64,
    /// Hottest temperature sensor, degrees Celsius, where the host has one.
    pub temperature_c: Option<f32>,
    /// Battery charge, percent, where the host has a battery.
    pub battery_percent: Option<f32>,
    /// Records waiting in the spool when the sample was taken.
    pub spool_records: u64,
}

/// Network quality sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetQuality {
    /// Round-trip time to the collector (QUIC path estimate), milliseconds; `None` when offline.
    pub rtt_ms: Option<f32>,
    /// Mean absolute difference between successive RTT samples, milliseconds.
    pub jitter_ms: Option<f32>,
    /// Share of probes or packets lost, percent (0-100).
    pub loss_percent: Option<f32>,
    /// One entry per configured payment endpoint.
    pub endpoints: Vec<EndpointProbe>,
}

/// DNS and TCP connect timing to one payment endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointProbe {
    /// The endpoint's configured name (for example `cup-host`).
    pub name: String,
    /// DNS resolution time, milliseconds; `None` when the host is an IP address or resolution
    /// failed.
    pub dns_ms: Option<f32>,
    /// TCP connect time, milliseconds; `None` when the connect failed.
    pub tcp_connect_ms: Option<f32>,
    /// Why the probe failed, if it did.
    pub error: Option<ProbeError>,
}

/// Why an endpoint probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeError {
    /// The name did not resolve.
    DnsFailed,
    /// The connect timed out.
    Timeout,
    /// The connection was refused.
    Refused,
    /// Another network error (unreachable, reset, ...).
    Other,
}

/// Payment scheme whose response-code table the code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scheme {
    /// ISO 8583 field 39 response codes.
    Iso8583,
    /// China UnionPay (CUP) response codes.
    Cup,
    /// WeChat Pay error codes.
    Wechatpay,
    /// Alipay error codes.
    Alipay,
}

/// How the customer paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PayMethod {
    /// Bank card (chip, swipe, contactless).
    Card,
    /// QR code (customer- or merchant-presented).
    Qr,
}

/// The outcome of one payment attempt. Carries no card number and no personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// Response-code table.
    pub scheme: Scheme,
    /// Response or error code as returned (for example `00`, `03`, `SYSTEMERROR`); 1 to 64
    /// ASCII characters.
    pub code: String,
    /// Time from request to response, milliseconds; 0 when unknown.
    pub latency_ms: u32,
    /// Card or QR.
    pub method: PayMethod,
    /// Acquirer (card) or channel (QR) that handled it, when the POS app knows it.
    pub route: Option<Label>,
}

/// Counts of records the agent dropped since its previous `SpoolDrops` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolDrops {
    /// Why they were dropped.
    pub reason: DropReason,
    /// Heartbeat records dropped.
    pub heartbeats: u64,
    /// Network-quality records dropped.
    pub net_quality: u64,
    /// Transaction outcomes dropped.
    pub txn_outcomes: u64,
}

/// Why records were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DropReason {
    /// The spool reached its configured size bound.
    SpoolFull,
    /// The spool's disk could not be written.
    DiskError,
}

/// The collector durably stored every record of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The acknowledged batch (as sent in [`Batch::batch_id`] on this connection).
    pub batch_id: u64,
    /// Highest sequence number in that batch; every record of the batch, this one included, is
    /// durably stored (newly, or already from an earlier replay).
    pub highest_seq: Seq,
}

/// The collector accepted the `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The collector's protocol version.
    pub protocol_version: u16,
    /// Collector wall clock, Unix milliseconds (agents may use it to flag their own skew).
    pub collector_time_unix_ms: i64,
    /// Heartbeat interval the agent should use, seconds.
    pub heartbeat_interval_secs: u32,
    /// Network probe interval the agent should use, seconds.
    pub net_probe_interval_secs: u32,
    /// Maximum records in one `Batch`.
    pub max_batch_records: u32,
    /// Maximum rate at which the agent should replay backlog, records per second.
    pub backlog_records_per_sec: u32,
}

/// The sender is closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    /// Why.
    pub reason: GoodbyeReason,
    /// Do not reconnect before this many seconds (0: use normal backoff).
    pub retry_after_secs: u32,
    /// Human-readable detail for logs; may be empty.
    pub detail: String,
}

/// Why a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoodbyeReason {
    /// The sender is shutting down.
    Shutdown,
    /// The collector is overloaded; come back after `retry_after_secs`.
    Overloaded,
    /// The `Hello` named another terminal than the certificate.
    IdentityMismatch,
    /// The protocol version is not supported.
    UnsupportedVersion,
    /// The peer broke the protocol.
    ProtocolError,
    /// The agent sent faster than its rate limit.
    RateLimited,
    /// The collector failed internally (for example its store).
    InternalError,
    /// Message set 3: the terminal's certificate was revoked; do not come back before
    /// `retry_after_secs`, and not with the same certificate.
    Revoked,
    /// Message set 3: the certificate the connection was opened with has expired; reconnect
    /// with the renewed one.
    CertificateExpired,
}

/// First and only frame an agent sends on an enrolment connection (ALPN
/// [`crate::ENROL_ALPN`]): who it is, the bootstrap token it was given, and a certificate
/// signing request for a key it generated itself (the key never leaves the terminal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// [`crate::ENROL_PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// Agent software version, free text.
    pub agent_version: String,
    /// The terminal asking; the CSR's subject CN must be the same.
    pub terminal_id: TerminalId,
    /// The bootstrap token, as the operator handed it out.
    pub token: String,
    /// PKCS#10 certificate signing request, DER.
    pub csr_der: Vec<u8>,
}

/// The collector's answer on an enrolment connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolResponse {
    /// The certificate, or why not.
    pub result: CertResult,
}

/// Message set 3, agent to collector on its connection: a certificate signing request for a
/// new key, subject CN = the connected terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// PKCS#10 certificate signing request, DER.
    pub csr_der: Vec<u8>,
}

/// Message set 3, collector to agent: the answer to the connection's oldest unanswered
/// [`RenewRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    /// The certificate, or why not.
    pub result: CertResult,
}

/// A signed certificate, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertResult {
    /// The certificate (DER), issued by the fleet CA, subject CN = the terminal id.
    Issued {
        /// X.509 certificate, DER.
        certificate_der: Vec<u8>,
    },
    /// No certificate.
    Refused {
        /// Why, in broad terms (the collector's log has the exact reason).
        reason: CertRefusal,
        /// Do not ask again before this many seconds (0: at the agent's discretion).
        retry_after_secs: u32,
        /// Human-readable detail; never says whether a token or a terminal exists.
        detail: String,
    },
}

/// Why no certificate was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertRefusal {
    /// The token and terminal id were not accepted (unknown, expired or used-up token, or a
    /// terminal outside the token's scope or the inventory: deliberately not told apart).
    NotAccepted,
    /// The request itself is wrong: undecodable CSR, bad signature, a key type the fleet does
    /// not use, or a subject CN other than the terminal id.
    BadRequest,
    /// The collector cannot issue certificates now (no CA key online, or issuing disabled).
    Unavailable,
    /// Too many requests; retry after `retry_after_secs`.
    RateLimited,
    /// The collector failed internally.
    InternalError,
}

/// Agent to collector, message set 2 and later: asks which of the collector's open incidents
/// cover this terminal. The collector answers with one [`IncidentList`] carrying the same
/// `query_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentQuery {
    /// Chosen by the agent; echoed in the answer.
    pub query_id: u64,
}

/// Collector to agent, message set 2 and later: the open incidents whose scope covers the
/// terminal (every scope label equals the terminal's own label from its `Hello`), most severe
/// first, at most [`IncidentList::MAX_INCIDENTS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentList {
    /// The `query_id` of the [`IncidentQuery`] answered.
    pub query_id: u64,
    /// Collector wall clock when answering, Unix milliseconds.
    pub collector_time_unix_ms: i64,
    /// The covering incidents; empty when nothing covers the terminal.
    pub incidents: Vec<CoveringIncident>,
}

/// One open incident that covers the asking terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoveringIncident {
    /// The collector's incident id (as in its HTTP API).
    pub id: u64,
    /// Kind, as the API names it (`merchant_config`, `acquirer_maintenance`, ...). New kinds
    /// may appear; an agent shows an unknown kind through the texts below.
    pub kind: String,
    /// `critical`, `major`, `minor` or `info`.
    pub severity: String,
    /// `suspected` (detected, not yet paged) or `paged` (on-call was told).
    pub tier: String,
    /// The incident's scope: label key and value pairs (`merchant_id` = `M0003`).
    pub scope: Vec<ScopeLabel>,
    /// First failing payment or missed heartbeat the incident counts, collector clock, Unix ms.
    pub started_unix_ms: i64,
    /// When it is expected to be over (the end of an announced maintenance window), if known.
    pub expected_end_unix_ms: Option<i64>,
    /// What is wrong, one sentence, English.
    pub explanation_en: String,
    /// The same in Chinese.
    pub explanation_zh: String,
    /// What to do at the till (for the merchant, not for on-call), English.
    pub advice_en: String,
    /// The same in Chinese.
    pub advice_zh: String,
}

/// One label of an incident's scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeLabel {
    /// Label key (`merchant_id`, `store_id`, `region`, `acquirer`, ...).
    pub key: String,
    /// Its value.
    pub value: String,
}

impl IncidentList {
    /// Most incidents in one answer.
    pub const MAX_INCIDENTS: usize = 16;
}
