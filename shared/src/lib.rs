//! storepulse-shared: the wire protocol between agents and the collector.
//!
//! This crate is pure data and pure functions: frame encoding and a sans-IO frame decoder
//! ([`frame`]), the messages ([`message`]), the validated identity newtypes ([`ids`]), the
//! error-code taxonomy ([`taxonomy`]) and the fleet's vocabulary: label keys and incident kinds
//! ([`vocab`]).
//! It does no IO and pulls in no async runtime, QUIC or storage crate.
//! `PROTOCOL.md` at the repository root is the normative description of the same format.

pub mod check;
pub mod civil;
pub mod frame;
pub mod ids;
pub mod message;
pub mod taxonomy;
pub mod vocab;

pub use frame::{
    AgentFrame, FrameDecoder, FrameError, FrameType, MAX_FRAME_BYTES_DEFAULT, encode_frame,
};
pub use ids::{IdError, Label, MAX_TXN_CODE_BYTES, Seq, TerminalId, validate_txn_code};
pub use message::*;
pub use vocab::{IncidentKind, LabelKey};

/// ALPN protocol identifier negotiated on every QUIC connection.
pub const ALPN: &[u8] = b"storepulse/1";

/// The newest message set, carried in `Hello` and echoed in `Welcome`: 2 adds
/// `IncidentQuery` and `IncidentList` to the messages of 1; 3 adds certificate renewal
/// (`RenewRequest`, `RenewResponse`) and the `Goodbye` reasons `Revoked` and
/// `CertificateExpired` (PROTOCOL.md section 7).
pub const PROTOCOL_VERSION: u16 = 3;

/// The oldest message set a collector of this version still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The first message set with `IncidentQuery` and `IncidentList`.
pub const INCIDENTS_PROTOCOL_VERSION: u16 = 2;

/// The first message set with certificate renewal and the `Goodbye` reasons `Revoked` and
/// `CertificateExpired`.
pub const RENEWAL_PROTOCOL_VERSION: u16 = 3;

/// ALPN of enrolment connections (a separate endpoint without client certificates).
pub const ENROL_ALPN: &[u8] = b"storepulse-enrol/1";

/// Version carried in [`EnrolRequest`].
pub const ENROL_PROTOCOL_VERSION: u16 = 1;

/// Largest frame payload on an enrolment connection, bytes (a CSR is well under 1 KiB).
pub const ENROL_MAX_FRAME_BYTES: u32 = 16 * 1024;

/// Largest CSR the collector signs, bytes of DER.
pub const MAX_CSR_BYTES: usize = 4096;

/// QUIC application error codes used when a peer closes a connection.
///
/// The numbers are part of the protocol; see `PROTOCOL.md` ("Closing a connection").
pub mod close_code {
    /// Normal close: shutdown or the peer is done.
    pub const NORMAL: u32 = 0;
    /// A frame could not be decoded, or a message arrived out of order (for example a `Batch`
    /// before `Hello`).
    pub const PROTOCOL_ERROR: u32 = 1;
    /// A frame header announced a payload longer than the receiver's maximum.
    pub const FRAME_TOO_LARGE: u32 = 2;
    /// The `Hello` carried a protocol version the collector does not speak.
    pub const UNSUPPORTED_VERSION: u32 = 3;
    /// The `Hello` named a terminal other than the one in the client certificate.
    pub const IDENTITY_MISMATCH: u32 = 4;
    /// The certificate is not acceptable (unknown or revoked); usually the TLS handshake already
    /// failed, this is the application-level twin.
    pub const UNAUTHORIZED: u32 = 5;
    /// The collector is overloaded; a `Goodbye` with `retry_after_secs` was sent first.
    pub const OVERLOADED: u32 = 6;
    /// The collector is shutting down; a `Goodbye` was sent first.
    pub const SHUTTING_DOWN: u32 = 7;
    /// An internal error on the collector (for example its store failed); retry later.
    pub const INTERNAL_ERROR: u32 = 8;
    /// The agent exceeded its rate limit.
    pub const RATE_LIMITED: u32 = 9;
    /// No `Hello` arrived within the handshake timeout.
    pub const HELLO_TIMEOUT: u32 = 10;
    /// The same terminal opened a newer connection; this older one is closed.
    pub const SUPERSEDED: u32 = 11;
}
