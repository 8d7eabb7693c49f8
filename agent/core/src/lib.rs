//! storepulse agent core: the sans-IO half of the agent.
//!
//! Nothing here reads a clock, touches the network or the disk, or draws from an unseeded RNG:
//! time comes in as [`std::time::Instant`] arguments and randomness from a seeded
//! [`rand::rngs::SmallRng`]. The IO shell (`storepulse-agent`) drives these types.
//!
//! - [`uplink::Uplink`]: the outbox state machine (which spooled records go into which batch,
//!   live-first ordering after a reconnect, backlog rate limit, acks, reconnect backoff).
//! - [`spool`]: the [`spool::Spool`] trait the shell's redb store implements, its in-memory twin
//!   [`spool::MemSpool`], and the shared vocabulary (record kinds, drop counters).
//! - [`shed`]: the spool shedding policy (what to evict when the size bound is reached).
//! - [`backoff`]: full-jitter exponential reconnect backoff.
//! - [`netstats`]: jitter and loss bookkeeping for network-quality samples.
//! - [`recent`]: the last hour's payment outcomes by code, for the diagnosis.
//! - [`renew`]: when to renew the terminal certificate (two thirds into its lifetime, backoff
//!   after refusals).
//! - [`verdict`]: the till's diagnosis (`diagnose`, `GET /v1/status`): checks and a verdict in
//!   English and Chinese.

pub mod backoff;
pub mod netstats;
pub mod recent;
pub mod renew;
pub mod shed;
pub mod spool;
pub mod uplink;
pub mod verdict;

pub use backoff::{Backoff, BackoffConfig};
pub use renew::Renewal;
pub use shed::{ShedPlan, SpoolIndex};
pub use spool::{
    Appended, DropCounts, EntryInfo, MemSpool, NewRecord, RecordKind, Spool, SpoolMeta, encoded_len,
};
pub use uplink::{AckError, PlannedBatch, Uplink, UplinkConfig};
