#!/usr/bin/env bash
# End-to-end costs, measured in CPU-seconds (user + sys, GNU time) of the worker process:
#
#   consumer  records a consumer task reads per CPU-second from Kafka (librdkafka's mock
#             cluster in its own process, topic filled first by a traced producer), target
#             >= 1,000,000 /CPU-s
#   trace     producer cost per event with FLEETLOAD_TRACE=on against off, same run, rounds
#             taking turns: the null target (generation alone, the worst case) and Kafka
#
#   bash bench/e2e.sh            (E2E_ROUNDS=3 E2E_SECONDS=8 E2E_RECORDS_RATE=400000)
#
# Uses CARGO_TARGET_DIR (default target/) for the release binaries.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${E2E_ROUNDS:-3}
SECS=${E2E_SECONDS:-8}
FILL_RATE=${E2E_RECORDS_RATE:-400000}
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
start_broker broker-1
log "mock broker at $SERVERS"
for r in $(seq "$ROUNDS"); do
    start=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%S.%3NZ)
    run_worker "fill-$r" FLEETLOAD_TARGET=kafka FLEETLOAD_TOPIC=bench FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS="$SERVERS" \
        FLEETLOAD_TRACE=on FLEETLOAD_RATE="$FILL_RATE" FLEETLOAD_DURATION="${SECS}s" FLEETLOAD_START_AT="$start"
    acked=$(summary_field "$OUT/reports/fill-$r/tasks/w/summary.json" 'd["counts"]["acknowledged"]')
    # The consumer starts after the topic is full: it reads the round's records from the start
    # instant as fast as it can, then waits out a short settle time.
    run_worker "consume-$r" FLEETLOAD_TARGET=kafka FLEETLOAD_TOPIC=bench FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS="$SERVERS" \
        FLEETLOAD_ROLE=consume FLEETLOAD_RUN_ID="fill-$r" FLEETLOAD_TASK_ID=consumer FLEETLOAD_REPORT_URL="$OUT/reports" \
        FLEETLOAD_RATE="$FILL_RATE" FLEETLOAD_DURATION="${SECS}s" FLEETLOAD_START_AT="$start" FLEETLOAD_SETTLE=1s
    seen=$(summary_field "$OUT/reports/fill-$r/tasks/consumer/summary.json" 'd["e2e"]["seen"]')
    c=$(cpu "$OUT/consume-$r.time")
    echo "consumer round $r: acknowledged $acked, seen $seen, consumer CPU ${c}s, $(python3 -c "print(f'{$seen/$c:,.0f}')") records/CPU-s"
done
kill "$BROKER_PID"

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
