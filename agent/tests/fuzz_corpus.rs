//! Replays the committed cargo-fuzz corpus of the `intake_parse` target (`fuzz/corpus/`)
//! through the same invariant checks the fuzzer runs (`fuzz/check/intake.rs`), so every CI run
//! exercises it on the stable toolchain, without the fuzzer.

#[path = "../../fuzz/check/intake.rs"]
mod check;

use std::path::Path;

#[test]
fn committed_intake_corpus_passes_the_fuzz_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/intake_parse");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let data = std::fs::read(&path).expect("read corpus file");
        eprintln!("{}", path.display());
        check::check_intake(&data);
        n += 1;
    }
    assert!(n >= 10, "the committed corpus has only {n} inputs");
}
