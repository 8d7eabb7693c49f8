//! Fuzzes `FrameDecoder` (arbitrary streams, arbitrary read splits, several maximum sizes) and
//! `decode_payload` for every frame type. The invariants are in `check/frame.rs`.
#![no_main]

#[path = "../check/frame.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check_frames(data));
