#!/usr/bin/env bash
# End-to-end costs, measured in CPU-seconds (user + sys, GNU time) of the worker process:
#
#   consumer  records a consumer task reads per CPU-second from Kafka (a tansu broker in its
#             own process, the topic filled first by a traced producer), target
#             >= 1,000,000 /CPU-s
#   trace     producer cost per event with FLEETLOAD_TRACE=on against off, same run, rounds
#             taking turns: the null target (generation alone, the worst case) and Kafka
#
#   bash bench/e2e.sh            (E2E_ROUNDS=3 E2E_SECONDS=8 E2E_RECORDS_RATE=200000
#                                 E2E_CONSUME_SECONDS=40 E2E_TANSU=target/tools/bin/tansu)
#
# Uses CARGO_TARGET_DIR (default target/) for the release binaries.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${E2E_ROUNDS:-3}
SECS=${E2E_SECONDS:-8}
FILL_RATE=${E2E_RECORDS_RATE:-200000}
CONSUME_SECS=${E2E_CONSUME_SECONDS:-40}
TANSU_VERSION=0.6.0
# The broker the consumer reads from; bench/run.sh and ci/test.sh install the same one.
TANSU=${E2E_TANSU:-$ROOT/target/tools/bin/tansu}
OUT=$(mktemp -d /tmp/fleetload-e2e-bench.XXXXXX)
log() { echo "[e2e-bench] $*" >&2; }

log "building release binaries"
(cd "$ROOT" && cargo build --release --quiet --bin worker --example mock_broker)
mkdir -p "$OUT/bin"
cp "$TARGET/release/worker" "$TARGET/release/examples/mock_broker" "$OUT/bin/"
WORKER=$OUT/bin/worker

cpu() { awk '{printf "%.3f", $1 + $2}' "$1"; }
summary_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$1" "$2"; }

run_worker() { # NAME ENV...
    local name=$1
    shift
    /usr/bin/time -f '%U %S' -o "$OUT/$name.time" env -i PATH="$PATH" RUST_LOG=warn \
        FLEETLOAD_REPORT_URL="$OUT/reports" FLEETLOAD_RUN_ID="$name" FLEETLOAD_TASK_ID=w \
        FLEETLOAD_SEED=1 "$@" "$WORKER" >"$OUT/$name.out" 2>"$OUT/$name.err"
}

# --- the consumer ---------------------------------------------------------------------------
# A real Kafka-protocol broker (tansu, as in bench/run.sh, its own process): librdkafka's mock
# cluster keeps only the newest records of a partition and serves fetches slowly while it takes
# produce requests, so a consumer reading it measures the mock cluster.
if [[ ! -x $TANSU ]]; then
    log "installing tansu $TANSU_VERSION into $(dirname "$(dirname "$TANSU")") (compiles for several minutes, once)"
    cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore \
        --root "$(dirname "$(dirname "$TANSU")")" >"$OUT/tansu-install.log" 2>&1 ||
        { log "cargo install tansu failed; see $OUT/tansu-install.log"; exit 1; }
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SERVERS=127.0.0.1:$port
"$TANSU" broker --storage-engine memory://tansu/ --listener-url "tcp://$SERVERS" \
    --advertised-listener-url "tcp://$SERVERS" >"$OUT/tansu.log" 2>&1 &
TANSU_PID=$!
trap 'kill "$TANSU_PID" 2>/dev/null || true' EXIT
sleep 2
log "tansu at $SERVERS"
for r in $(seq "$ROUNDS"); do
    # A topic per round, so that a consumer finds only its round's records.
    topic=bench-$r
    "$TANSU" topic create "$topic" --partitions 4 --broker "tcp://$SERVERS" >>"$OUT/tansu.log" 2>&1
    start=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%S.%3NZ)
    run_worker "fill-$r" FLEETLOAD_TARGET=kafka FLEETLOAD_TOPIC="$topic" FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS="$SERVERS" \
        FLEETLOAD_TRACE=on FLEETLOAD_RATE="$FILL_RATE" FLEETLOAD_DURATION="${SECS}s" FLEETLOAD_START_AT="$start"
    acked=$(summary_field "$OUT/reports/fill-$r/tasks/w/summary.json" 'd["counts"]["acknowledged"]')
    # The consumer starts once the topic is full and reads it as fast as the broker serves it,
    # from the start instant (the broker looks the offset up by time) until the producers'
    # planned end plus its settle time, set to end CONSUME_SECS from now.
    elapsed=$(($(date +%s) - $(date -d "$start" +%s)))
    settle=$((elapsed - SECS + CONSUME_SECS))
    run_worker "consume-$r" FLEETLOAD_TARGET=kafka FLEETLOAD_TOPIC="$topic" FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS="$SERVERS" \
        FLEETLOAD_ROLE=consume FLEETLOAD_RUN_ID="fill-$r" FLEETLOAD_TASK_ID=consumer FLEETLOAD_REPORT_URL="$OUT/reports" \
        FLEETLOAD_RATE="$FILL_RATE" FLEETLOAD_DURATION="${SECS}s" FLEETLOAD_START_AT="$start" FLEETLOAD_SETTLE="${settle}s"
    seen=$(summary_field "$OUT/reports/fill-$r/tasks/consumer/summary.json" 'd["e2e"]["seen"]')
    foreign=$(summary_field "$OUT/reports/fill-$r/tasks/consumer/summary.json" 'd["e2e"]["foreign"]')
    c=$(cpu "$OUT/consume-$r.time")
    # The CPU-seconds are the whole process's, waiting for the deadline included.
    whole=$([[ $seen == "$acked" ]] && echo "all read" || echo "NOT all read: raise E2E_CONSUME_SECONDS")
    echo "consumer round $r: acknowledged $acked, seen $seen ($whole), foreign $foreign, consumer CPU ${c}s, $(python3 -c "print(f'{($seen + $foreign)/$c:,.0f}')") records/CPU-s"
done
kill "$TANSU_PID"

# The trace's cost on Kafka below is measured against the mock cluster (no consumer there).
start_broker() { # NAME : starts a mock broker; sets SERVERS and BROKER_PID
    "$OUT/bin/mock_broker" bench 4 < <(sleep 3600) >"$OUT/$1.out" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 100); do
        SERVERS=$(sed -n 's/^bootstrap //p' "$OUT/$1.out")
        [[ -n $SERVERS ]] && return
        sleep 0.1
    done
    log "the mock broker did not start"
    exit 1
}

# --- the trace's cost -----------------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
    for trace in off on; do
        run_worker "null-$trace-$r" FLEETLOAD_TARGET=null FLEETLOAD_RATE=0 FLEETLOAD_DURATION="${SECS}s" FLEETLOAD_TRACE=$trace
        n=$(summary_field "$OUT/reports/null-$trace-$r/tasks/w/summary.json" 'd["counts"]["acknowledged"]')
        c=$(cpu "$OUT/null-$trace-$r.time")
        echo "null trace=$trace round $r: $n events, ${c} CPU-s, $(python3 -c "print(f'{$n/$c:,.0f}')") events/CPU-s, $(python3 -c "print(f'{$c/$n*1e9:.1f}')") ns/event"
    done
done
start_broker broker-2
for r in $(seq "$ROUNDS"); do
    for trace in off on; do
        run_worker "kafka-$trace-$r" FLEETLOAD_TARGET=kafka FLEETLOAD_TOPIC=bench FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS="$SERVERS" \
            FLEETLOAD_RATE=200000 FLEETLOAD_DURATION="${SECS}s" FLEETLOAD_TRACE=$trace
        n=$(summary_field "$OUT/reports/kafka-$trace-$r/tasks/w/summary.json" 'd["counts"]["acknowledged"]')
        c=$(cpu "$OUT/kafka-$trace-$r.time")
        echo "kafka 200k/s trace=$trace round $r: $n events, ${c} CPU-s, $(python3 -c "print(f'{$c/$n*1e9:.1f}')") ns/event"
    done
done
kill "$BROKER_PID"
log "files in $OUT"
