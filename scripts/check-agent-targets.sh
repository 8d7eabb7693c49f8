#!/usr/bin/env bash
# The agent must build for the terminals and gateways it runs on (docs/CROSS.md): aarch64 and
# armv7 Linux (musl) and aarch64 Android. Their standard libraries cannot be fetched here, so
# this checks what can be checked without them: the agent's dependency tree resolves for each
# target, and the only dependency that compiles C (needs the target's C compiler) is ring.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
for target in aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf aarch64-linux-android; do
    # Crates whose build script uses the `cc` crate, i.e. compile C or assembly for the target.
    if ! tree=$(cargo tree --locked -p storepulse-agent --target "$target" -e normal,build \
        -i cc --depth 1 --prefix none 2>&1); then
        echo "storepulse-agent for $target: cargo tree failed: $tree" >&2
        status=1
        continue
    fi
    users=$(printf '%s\n' "$tree" | awk 'NR > 1 && $1 != "[build-dependencies]" {print $1}' | sort -u | tr '\n' ' ' | sed 's/ $//')
    if [ "$users" != "ring" ]; then
        echo "storepulse-agent for $target: C compiled by [$users], expected only ring (docs/CROSS.md)" >&2
        status=1
    fi
done
[ "$status" = 0 ] && echo "agent dependency trees for aarch64/armv7 musl and aarch64 Android: only ring compiles C"
exit "$status"
