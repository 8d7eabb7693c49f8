#!/usr/bin/env bash
# Architecture invariant: the sans-IO cores depend on no runtime, network, storage or OS probe
# crate. Fails if one appears in their normal dependency tree.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for core in storepulse-shared storepulse-agent-core storepulse-collector-core storepulse-sim; do
    bad=$(cargo tree --locked -e normal -p "$core" --prefix none --format '{p}' \
        | awk '{print $1}' | sort -u \
        | grep -E '^(tokio|quinn|quinn-proto|rustls|redb|fjall|lsm-tree|sysinfo|axum|hyper|mio|socket2)$' || true)
    if [ -n "$bad" ]; then
        echo "error: $core depends on IO crates: $bad" >&2
        status=1
    else
        echo "ok: $core is IO-free"
    fi
done
exit $status
