//! storepulse collector core: the collector's decisions as pure logic (sans-IO): the fleet
//! registry, the per-connection protocol state machine, detection, the incident layer (book,
//! severity, explanation links, alert bridge, breakdown rollup), the notifier and root-cause
//! localisation.
//!
//! Nothing here reads a clock, touches a socket or a disk: time comes in as an argument
//! (`now_unix_ms`), decisions go out as return values. The IO shell lives in the
//! `storepulse-collector` crate.

pub mod coverage;
pub mod detect;
pub mod fleet;
pub mod incident;
pub mod inventory;
pub mod notify;
pub mod ratelimit;
pub mod rca;
pub mod rollup;
pub mod session;

pub use fleet::{
    ClockPolicy, DropTotals, Fleet, TerminalEntry, TerminalState, Thresholds, TimeFix,
};
pub use session::{BatchError, Refusal, Session, Step, validate_batch};
