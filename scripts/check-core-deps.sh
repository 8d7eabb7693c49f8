#!/usr/bin/env bash
# Architecture invariants (ARCHITECTURE.md), each able to fail the build:
# 1. the sans-IO cores depend on no runtime, network, storage or OS probe crate;
# 2. the production collector does not depend on the simulator (the offline tools that do are
#    the separate `storepulse-lab` crate);
# 3. the incident layer (engine, book, alert bridge, severity, explanation links, rollup) lives
#    in the sans-IO collector core, and the collector's IO shell does not define its own.
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

# The collector binary's crate, normal dependencies only (build scripts and dev-dependencies
# excluded: a dev-dependency would not ship either, but there is none today).
sim=$(cargo tree --locked -e normal -p storepulse-collector --prefix none --format '{p}' \
    | awk '{print $1}' | sort -u | grep -Ex 'storepulse-sim' || true)
if [ -n "$sim" ]; then
    echo "error: storepulse-collector depends on the simulator (storepulse-sim); offline tools belong in lab/ (storepulse-lab)" >&2
    status=1
else
    echo "ok: storepulse-collector does not depend on storepulse-sim"
fi

# Where an item is defined (`struct`, `enum`, `type`, `trait` or `fn`, any visibility): the files
# under $1 with a line matching "$2 $3", $3 an extended regex (for a function, its signature:
# a shell helper named `severity` that parses a stored string is not the incident layer's).
defines() { # PATH KIND PATTERN
    grep -rEl --include='*.rs' \
        "^[[:space:]]*(pub(\([^)]*\))?[[:space:]]+)?$2[[:space:]]+$3" "$1" 2>/dev/null || true
}
if grep -qx 'pub mod incident;' collector/core/src/lib.rs; then
    echo "ok: collector/core has the incident module"
else
    echo "error: collector/core/src/lib.rs does not declare \`pub mod incident;\`" >&2
    status=1
fi
core_paths=(collector/core/src/incident.rs collector/core/src/incident collector/core/src/rollup.rs)
for item in 'struct IncidentEngine\b' 'struct IncidentBook\b' 'struct AlertBridge\b' \
    'struct Rollup\b' 'fn severity\([^)]*Incident\b' 'fn explained_by\b'; do
    kind=${item%% *}
    pattern=${item#* }
    in_core=""
    for p in "${core_paths[@]}"; do
        in_core+=$(defines "$p" "$kind" "$pattern")
    done
    in_shell=$(defines collector/src "$kind" "$pattern")
    what="$kind ${pattern%%[\\(]*}"
    if [ -z "$in_core" ]; then
        echo "error: the incident layer's $what is not in collector/core (incident.rs, incident/, rollup.rs)" >&2
        status=1
    elif [ -n "$in_shell" ]; then
        echo "error: the collector's IO shell defines its own $what: $(echo "$in_shell" | tr '\n' ' ')" >&2
        status=1
    else
        echo "ok: $what is in the sans-IO core only"
    fi
done
exit $status
