#!/usr/bin/env bash
# The test command: on a fresh machine it installs what the checks need, then runs every check
# and test of the workspace. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "install test prerequisites"
bash scripts/install-test-deps.sh

step "rustfmt"
cargo fmt --all --check

step "clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo-deny (licenses, bans, sources; the advisory database cannot be fetched here)"
cargo deny --locked check licenses bans sources

step "sans-IO cores pull in no IO crates"
bash scripts/check-core-deps.sh

step "the agent's dependencies build for ARM Linux and Android (docs/CROSS.md)"
bash scripts/check-agent-targets.sh

step "build binaries used by the end-to-end tests"
cargo build --workspace --bins --locked

step "doc tests"
cargo test --workspace --locked --doc --quiet

step "fuzz smoke: each cargo-fuzz target for 30 s over its committed corpus"; bash scripts/fuzz-smoke.sh

# Last, so its summary ("N tests run: N passed") closes the output.
step "tests"
cargo nextest run --workspace --locked --no-fail-fast --profile ci
