#!/usr/bin/env bash
# The demo: a collector with its embedded store and a dev PKI, plus a small fleet of real agents
# over real QUIC (mutual TLS) on loopback, fed with payment outcomes by the agents' own
# `report-txn` command. Ctrl-C stops everything. (The simulated fleet of thousands of terminals
# with scripted incidents replaces this driver in issue 3.)
set -euo pipefail
cd "$(dirname "$0")/.."

AGENTS=${DEMO_AGENTS:-20}
DATA=${DEMO_DATA:-demo-data}
QUIC_PORT=${DEMO_QUIC_PORT:-4433}
HTTP_PORT=${DEMO_HTTP_PORT:-8080}

echo "==> building (first run takes a few minutes)"
cargo build --locked --bins -p storepulse-agent -p storepulse-collector
BIN=target/debug

rm -rf "$DATA"
mkdir -p "$DATA"
pids=()
cleanup() {
    echo
    echo "==> stopping"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "==> dev PKI in $DATA/pki"
$BIN/storepulse-collector pki init --dir "$DATA/pki" >/dev/null
cat > "$DATA/collector.toml" <<TOML
[quic]
listen = "127.0.0.1:$QUIC_PORT"
[tls]
ca_cert = "pki/ca.pem"
cert = "pki/collector.pem"
key = "pki/collector.key"
crl = "pki/crl.pem"
[store]
path = "store"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[agents]
heartbeat_interval_secs = 5
net_probe_interval_secs = 10
TOML
$BIN/storepulse-collector serve --config "$DATA/collector.toml" 2>"$DATA/collector.log" &
pids+=($!)

regions=(east north south west)
cities=(上海 北京 广州 成都)
acquirers=(acq-a acq-b acq-c)
for i in $(seq 1 "$AGENTS"); do
    t=$(printf 'T%05d' "$i")
    r=$(( i % 4 ))
    $BIN/storepulse-collector pki issue --dir "$DATA/pki" --terminal "$t" >/dev/null
    mkdir -p "$DATA/agents/$t"
    cat > "$DATA/agents/$t/agent.toml" <<TOML
[identity]
terminal_id = "$t"
merchant_id = "M$(( i % 7 ))"
store_id = "S$(( i / 2 ))"
region = "${regions[$r]}"
city = "${cities[$r]}"
acquirer = "${acquirers[$(( i % 3 ))]}"
qr_channel = "wechatpay"
carrier = "cmcc"
link = "wifi"
model = "P300"
firmware = "2.3.$(( i % 2 ))"
app_version = "5.0.2"
[collector]
address = "127.0.0.1:$QUIC_PORT"
ca_cert = "../../pki/ca.pem"
cert = "../../pki/terminals/$t.pem"
key = "../../pki/terminals/$t.key"
[spool]
path = "spool.redb"
[intake]
listen = "127.0.0.1:$(( 17000 + i ))"
[probes]
heartbeat_interval_secs = 5
net_probe_interval_secs = 10
TOML
    $BIN/storepulse-agent --config "$DATA/agents/$t/agent.toml" 2>"$DATA/agents/$t/agent.log" &
    pids+=($!)
done

sleep 2
echo
echo "==> storepulse demo running: $AGENTS agents -> collector"
echo "    terminals API:  http://127.0.0.1:$HTTP_PORT/api/v1/terminals"
echo "    health:         http://127.0.0.1:$HTTP_PORT/healthz"
echo "    logs:           $DATA/*.log, $DATA/agents/*/agent.log"
echo "    Ctrl-C to stop."
echo

codes=(00 00 00 00 00 00 00 00 51 55 03 96)
n=0
while true; do
    i=$(( RANDOM % AGENTS + 1 ))
    t=$(printf 'T%05d' "$i")
    code=${codes[$(( RANDOM % ${#codes[@]} ))]}
    $BIN/storepulse-agent report-txn --config "$DATA/agents/$t/agent.toml" \
        --scheme cup --code "$code" --latency-ms $(( 150 + RANDOM % 600 )) --method card >/dev/null 2>&1 || true
    n=$(( n + 1 ))
    if (( n % 50 == 0 )); then echo "    $n payment outcomes reported"; fi
    sleep 0.2
done
