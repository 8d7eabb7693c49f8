//! Replays the committed cargo-fuzz corpus of the `frame_decoder` target (`fuzz/corpus/`)
//! through the same invariant checks the fuzzer runs (`fuzz/check/frame.rs`), so every CI run
//! exercises it on the stable toolchain, without the fuzzer.

#[path = "../../fuzz/check/frame.rs"]
mod check;

use std::path::Path;

#[test]
fn committed_frame_corpus_passes_the_fuzz_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame_decoder");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let data = std::fs::read(&path).expect("read corpus file");
        // A panic names the file, so a failure can be replayed with `cargo fuzz run`.
        eprintln!("{}", path.display());
        check::check_frames(&data);
        n += 1;
    }
    assert!(n >= 10, "the committed corpus has only {n} inputs");
}

/// PROTOCOL.md's Ack example passes the checks both when it fits the maximum and when its
/// header must be refused; a check that panicked on valid or refused input would fail here.
#[test]
fn the_checks_accept_the_worked_examples() {
    // Selector 4 (1 MiB maximum), split seed 1, then PROTOCOL.md's Ack example.
    check::check_frames(&[4, 1, 0x03, 0, 0, 0, 3, 0xac, 0x02, 0x05]);
    // The same Ack under a 16-byte maximum with an announced length of 17: refused.
    check::check_frames(&[0, 1, 0x03, 0, 0, 0, 17, 0xac, 0x02, 0x05]);
}
