#!/usr/bin/env bash
# A short fuzzing run for CI: each cargo-fuzz target for FUZZ_SECONDS (default 30) over its
# committed corpus (fuzz/corpus/<target>/). A crash, an assertion of fuzz/check/*.rs or a timeout
# fails the step; the reproducer lands in fuzz/artifacts/<target>/.
#
# cargo fuzz needs nightly-only compiler flags (-Z sanitizer coverage). The project pins a stable
# toolchain, so RUSTC_BOOTSTRAP=1 lets that stable compiler accept them for this build only; the
# workspace itself never uses unstable features. The fuzz crate is its own workspace (excluded
# from the root one) with its own target dir, so these flags never touch target/.
#
# No sanitizer (-s none): the fuzzed code is safe Rust (unsafe_code is forbidden), the checks are
# assertions, and an AddressSanitizer build of the dependencies would double the build time.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

cd fuzz
cargo fuzz build -s none --release
for target in frame_decoder intake_parse; do
    extra=()
    if [ "$target" = intake_parse ]; then
        extra=(-dict=intake.dict)
    fi
    # New inputs go to a scratch directory (the first one), so CI never rewrites the
    # committed corpus, which libFuzzer reads from the second.
    scratch="$(mktemp -d)"
    echo "fuzzing $target for ${seconds}s over $(ls corpus/"$target" | wc -l) corpus inputs"
    if ! cargo fuzz run -s none --release "$target" "$scratch" corpus/"$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 "${extra[@]}"; then
        rm -rf "$scratch"
        echo "fuzz target $target failed; reproducer in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    rm -rf "$scratch"
done
