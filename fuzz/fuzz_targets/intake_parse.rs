//! Fuzzes the agent's `POST /v1/txn` body parser. The invariants are in `check/intake.rs`.
#![no_main]

#[path = "../check/intake.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check_intake(data));
