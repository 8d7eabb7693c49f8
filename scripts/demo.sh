#!/usr/bin/env bash
# The demo: a collector with its embedded store and a dev PKI, plus a simulated fleet of
# 3,000 real agents (one redb spool and one QUIC connection with mutual TLS each) on loopback,
# playing a scripted lunch rush with overlapping incidents over about ten minutes, then
# carrying on without faults (incidents resolve) until Ctrl-C, which stops everything within a
# few seconds. Options are passed on, e.g. `--speed 30`, `--http ADDR`, `--data DIR`.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> building (release; the first build takes a few minutes)"
cargo build --release --locked -p storepulse-tests --bin storepulse-demo
exec target/release/storepulse-demo "$@"
