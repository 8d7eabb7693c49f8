//! storepulse-lab: the offline tools, kept out of the production collector so that it does not
//! depend on the simulator.
//!
//! - [`eval`]: replays scenarios (a directory's, or generated ones from a seed range) through
//!   the simulator into the collector core's `IncidentEngine` in virtual time and scores
//!   detection against their ground truth, one to one ([`score`]), with the tables of
//!   [`report`].
//! - [`rca_bench`]: runs the core's root-cause localisation on a Squeeze-layout benchmark.
//! - `generate` (in `main.rs`): writes the simulator's seeded scenarios
//!   (`storepulse_sim::generate`).
//!
//! The binary in `main.rs` only parses arguments and calls these. Everything the tools run is
//! the collector core's code (`storepulse-collector-core`), not a copy.

pub mod eval;
pub mod rca_bench;
pub mod report;
pub mod score;
