#!/usr/bin/env bash
# The demo: a collector with its embedded store and a dev PKI, plus a simulated fleet of
# 3,000 real agents (one redb spool and one QUIC connection with mutual TLS each) on loopback,
# playing a scripted lunch rush with overlapping incidents over about ten minutes.
# Ctrl-C stops everything cleanly. Options are passed on, e.g. `--speed 30`, `--http ADDR`.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> building (release; the first build takes a few minutes)"
cargo build --release --locked -p storepulse-tests --bin storepulse-demo
exec target/release/storepulse-demo "$@"
