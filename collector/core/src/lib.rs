//! storepulse collector core: the fleet registry and the per-connection protocol state machine,
//! as pure logic (sans-IO).
//!
//! Nothing here reads a clock, touches a socket or a disk: time comes in as an argument
//! (`now_unix_ms`), decisions go out as return values. The IO shell lives in the
//! `storepulse-collector` crate.

pub mod coverage;
pub mod detect;
pub mod fleet;
pub mod inventory;
pub mod notify;
pub mod ratelimit;
pub mod rca;
pub mod session;

pub use fleet::{
    ClockPolicy, DropTotals, Fleet, TerminalEntry, TerminalState, Thresholds, TimeFix,
};
pub use session::{BatchError, Refusal, Session, Step, validate_batch};
