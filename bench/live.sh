#!/usr/bin/env bash
# What live windows cost the worker: the same worker at its top rate with
# FLEETLOAD_LIVE_INTERVAL=off, 10s (the default) and 1s, alternating, as events per CPU-second.
#
#   bash bench/live.sh                 # null target (the worker's top rate) and the Kinesis double
#   LIVE_ONLY=null bash bench/live.sh
#
# Each round runs the three settings one after the other (the order turns every round, so none
# always runs on a warmer or busier machine), each LIVE_SECONDS long, unpaced, reports and
# windows to a local directory. Cost is user + sys CPU of the worker process (GNU time), events
# are acknowledged ones. The table gives, per target and setting, events per CPU-second pooled
# over the rounds and the overhead against `off` with its range over single rounds.
#
# Environment: LIVE_ROUNDS (5), LIVE_SECONDS (10), LIVE_ONLY (null,kinesis),
# LIVE_OUT (target/bench/live-<timestamp>).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
ROUNDS=${LIVE_ROUNDS:-5}
SECS=${LIVE_SECONDS:-10}
ONLY=${LIVE_ONLY:-null,kinesis}
OUT=${LIVE_OUT:-$ROOT/target/bench/live-$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

log() { printf '[live %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
command -v /usr/bin/time >/dev/null || {
    echo "bench/live.sh: GNU time is needed (apt-get install time)" >&2
    exit 1
}

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "release builds of the worker and the Kinesis double"
cargo build --quiet --release --bin worker --example kinesis_double
WORKER=$ROOT/target/release/worker
DOUBLE=$ROOT/target/release/examples/kinesis_double

AWS_ENV=(AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
    AWS_EC2_METADATA_DISABLED=true)
if wants kinesis; then
    "$DOUBLE" --shards 8 --stream-name bench --max-seconds 3600 >"$OUT/double.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do
        grep -q 'listening on' "$OUT/double.out" && break
        sleep 0.1
    done
    ENDPOINT=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$OUT/double.out" | head -1)
    [[ -n $ENDPOINT ]] || {
        echo "bench/live.sh: the Kinesis double did not start" >&2
        exit 1
    }
fi

# run TARGET SETTING ROUND : one measured worker run.
run() {
    local target=$1 setting=$2 round=$3 name="$1-$2-$3"
    local env=(FLEETLOAD_TARGET="$target" FLEETLOAD_RATE=0 FLEETLOAD_DURATION="${SECS}s"
        FLEETLOAD_REPORT_URL="$OUT/reports" FLEETLOAD_RUN_ID="$name" FLEETLOAD_TASK_ID=worker
        FLEETLOAD_SEED=1 FLEETLOAD_LIVE_INTERVAL="$setting" RUST_LOG=warn)
    if [[ $target == kinesis ]]; then
        env+=(FLEETLOAD_STREAM=bench AWS_ENDPOINT_URL="$ENDPOINT" "${AWS_ENV[@]}")
    fi
    timeout -k 5 $((SECS + 60)) /usr/bin/time -f '%U %S' -o "$OUT/$name.time" \
        env "${env[@]}" "$WORKER" >"$OUT/$name.out" 2>"$OUT/$name.err"
    local cpu acked
    cpu=$(awk '{printf "%.3f", $1 + $2}' "$OUT/$name.time")
    acked=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["acknowledged"])' \
        "$OUT/reports/$name/tasks/worker/summary.json")
    printf '{"target":"%s","setting":"%s","round":%d,"cpu":%s,"events":%d}\n' \
        "$target" "$setting" "$round" "$cpu" "$acked" >>"$RESULTS"
    log "$name: $acked events, $cpu CPU-s"
}

SETTINGS=(off 10s 1s)
for target in null kinesis; do
    wants "$target" || continue
    for r in $(seq "$ROUNDS"); do
        # Turn the order every round.
        for i in 0 1 2; do
            run "$target" "${SETTINGS[$(((i + r) % 3))]}" "$r"
        done
    done
done

python3 - "$RESULTS" <<'EOF' | tee "$OUT/table.md"
import json, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(list)
for r in rows:
    by[(r["target"], r["setting"])].append(r)
print("| target | live interval | events per CPU-second (pooled) | CPU per event vs off (range over rounds) |")
print("|---|---|---|---|")
for target in ["null", "kinesis"]:
    base = by.get((target, "off"))
    if not base:
        continue
    off = sum(r["events"] for r in base) / sum(r["cpu"] for r in base)
    per_round_off = {r["round"]: r["cpu"] / r["events"] for r in base}
    for setting in ["off", "10s", "1s"]:
        rs = by.get((target, setting), [])
        if not rs:
            continue
        rate = sum(r["events"] for r in rs) / sum(r["cpu"] for r in rs)
        if setting == "off":
            print(f"| {target} | off | {rate:,.0f} | — |")
            continue
        pooled = off / rate - 1
        singles = [(r["cpu"] / r["events"]) / per_round_off[r["round"]] - 1 for r in rs if r["round"] in per_round_off]
        print(f"| {target} | {setting} | {rate:,.0f} | {pooled:+.1%} ({min(singles):+.1%} … {max(singles):+.1%}) |")
EOF
log "results in $OUT"
