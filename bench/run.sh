#!/usr/bin/env bash
# fleetload performance benchmark: fleetload against its peers, in the same run, alternating.
#
#   bash bench/run.sh            # everything (~6 minutes once set up)
#   BENCH_ONLY=kinesis,null bash bench/run.sh
#
# Set-up, once per machine (skipped when already done):
#   - Debian packages: `time` (GNU time measures the child's CPU and peak RSS), python3-venv and
#     the C toolchain librdkafka is built with;
#   - bench/.venv with locust, boto3 and confluent-kafka;
#   - tansu (a Kafka-protocol broker, crates.io) in bench/.tools: `cargo install` compiles it
#     once, for several minutes;
#   - release builds of the worker and of the Kinesis double (`--example kinesis_double`).
#
# Endpoints, all on 127.0.0.1 and each in its own process: the Kinesis double (accepts every
# record, never the bottleneck) and a tansu broker with in-memory storage. Then, for each pair,
# BENCH_ROUNDS rounds of "fleetload, then its peer", each run BENCH_SECONDS long:
#   kinesis  worker, batch 500, unpaced     vs  Locust headless + boto3 put_records (bench/locustfile.py)
#   kinesis-agg  worker with FLEETLOAD_KINESIS_AGGREGATE=on (user records acknowledged)
#                                           vs  the same worker without aggregation, same double
#   kafka    worker, unpaced                vs  confluent-kafka producing as many messages (bench/kafka_peer.py)
#   kafka-lz4, kafka-zstd  the same pair with compression.type=lz4 / zstd on both sides
#   null     worker, null target, unpaced
#   rate     worker to Kafka at 10k, 50k and 100k events/s (per-second and total accuracy, peak RSS)
#   merge    `cargo bench --bench merge` (1,000 task reports)
#
# Cost is CPU-seconds (user + sys) of the generating process only, from GNU time (fleetload's
# whole process; the Python peers' own getrusage from the start of sending, so their interpreter
# start-up is not held against them). Endpoints are separate processes and not counted.
#
# Every run is bounded by `timeout`; every process started here is stopped on exit. Results go to
# BENCH_OUT (default target/bench/<timestamp>): results.jsonl, the logs, and table.md, which is
# also printed.
#
# Environment:
#   BENCH_ROUNDS (3)  BENCH_SECONDS (12)  BENCH_RATE_SECONDS (15)
#   BENCH_ONLY (all: kinesis,kinesis-agg,kafka,kafka-lz4,kafka-zstd,null,rate,merge)
#   BENCH_TOOLS       where tansu is installed (default: bench/.tools)
#   BENCH_SKIP_APT=1  do not install Debian packages
#   BENCH_KAFKA_PROPS librdkafka settings used by both Kafka producers
#                     (default: acks=all linger.ms=5 batch.size=1000000 compression.type=none)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BENCH=$ROOT/bench
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-12}
RATE_SECS=${BENCH_RATE_SECONDS:-15}
ONLY=${BENCH_ONLY:-kinesis,kinesis-agg,kafka,kafka-lz4,kafka-zstd,null,rate,merge}
OUT=${BENCH_OUT:-$ROOT/target/bench/$(date +%Y%m%dT%H%M%S)}
KAFKA_PROPS=${BENCH_KAFKA_PROPS:-acks=all linger.ms=5 batch.size=1000000 compression.type=none}
VENV=$BENCH/.venv
TOOLS=${BENCH_TOOLS:-$BENCH/.tools}
TANSU_VERSION=0.6.0
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf 'bench/run.sh: %s\n' "$*" >&2
    exit 1
}
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
wants_kafka() { wants kafka || wants kafka-lz4 || wants kafka-zstd || wants rate; }

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Set-up

if [[ ${BENCH_SKIP_APT:-0} != 1 ]]; then
    missing=()
    for p in time python3 python3-venv make g++ perl zlib1g-dev; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    # A python3 from elsewhere (pyenv) with a working venv module needs no Debian python.
    if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then
        missing=("${missing[@]/python3-venv/}")
        missing=("${missing[@]/python3/}")
    fi
    read -r -a missing <<<"${missing[*]}"
    if ((${#missing[@]})); then
        log "installing Debian packages: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is missing: apt-get install time"

if ! "$VENV/bin/python" -c 'import locust, boto3, confluent_kafka' 2>/dev/null; then
    log "creating $VENV with locust, boto3, confluent-kafka"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q locust boto3 confluent-kafka
fi
PY=$VENV/bin/python

TANSU=$TOOLS/bin/tansu
if [[ ! -x $TANSU ]] && wants_kafka; then
    log "installing tansu $TANSU_VERSION into $TOOLS (compiles for several minutes, once)"
    cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore --root "$TOOLS" >"$OUT/tansu-install.log" 2>&1 ||
        die "cargo install tansu failed; see $OUT/tansu-install.log"
fi

log "building release binaries"
cargo build --release --quiet --bin worker --example kinesis_double
# Private copies: a build in the shared target/ during the run must not swap the binaries under
# it.
mkdir -p "$OUT/bin"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cp "$TARGET_DIR/release/worker" "$TARGET_DIR/release/examples/kinesis_double" "$OUT/bin/"
WORKER=$OUT/bin/worker
DOUBLE=$OUT/bin/kinesis_double

# ---------------------------------------------------------------------------------------------
# Helpers

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# measure NAME CMD... : runs CMD under GNU time with a hard time limit; leaves
# "$OUT/NAME.time" = "elapsed user sys maxrss_kib" and the output in NAME.out / NAME.err.
measure() {
    local name=$1 limit=$2
    shift 2
    timeout -k 5 "$limit" /usr/bin/time -f '%e %U %S %M' -o "$OUT/$name.time" "$@" \
        >"$OUT/$name.out" 2>"$OUT/$name.err" || {
        log "$name exited with status $? (see $OUT/$name.err)"
        return 1
    }
}

# record KEY=VALUE... : one line of results.jsonl
record() { "$PY" - "$@" >>"$RESULTS" <<'EOF'
import json, sys
row = {}
for kv in sys.argv[1:]:
    k, _, v = kv.partition("=")
    # Numbers and "quoted strings" are JSON; anything else (kinesis, null, ...) is a word.
    if v[:1].isdigit() or v[:1] in '-"':
        v = json.loads(v)
    row[k] = v
print(json.dumps(row))
EOF
}

# Prints "acknowledged" of a worker's summary.
acknowledged() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["acknowledged"])' "$1"; }

# worker_run NAME TARGET RATE SECONDS [ENV=VALUE...] : a worker run measured with GNU time.
worker_run() {
    local name=$1 target=$2 rate=$3 secs=$4
    shift 4
    measure "$name" $((secs + 120)) env \
        FLEETLOAD_TARGET="$target" FLEETLOAD_RATE="$rate" FLEETLOAD_DURATION="${secs}s" \
        FLEETLOAD_REPORT_URL="$OUT/reports" FLEETLOAD_RUN_ID="$name" FLEETLOAD_TASK_ID=worker \
        FLEETLOAD_SEED=1 RUST_LOG=warn "$@" "$WORKER"
}

worker_summary() { echo "$OUT/reports/$1/tasks/worker/summary.json"; }

# time_fields NAME : "user+sys maxrss_kib"
time_fields() { awk '{printf "%.2f %d\n", $2 + $3, $4}' "$OUT/$1.time"; }

# ---------------------------------------------------------------------------------------------
# Endpoints

AWS_ENV=(AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    AWS_EC2_METADATA_DISABLED=true)

if wants kinesis || wants kinesis-agg; then
    "$DOUBLE" --port 0 --shards 4 --stream-name bench --report-every 0 --max-seconds 3600 \
        >"$OUT/kinesis-double.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        KINESIS_URL=$(sed -n 's/^listening on //p' "$OUT/kinesis-double.log")
        [[ -n $KINESIS_URL ]] && break
        sleep 0.1
    done
    [[ -n ${KINESIS_URL:-} ]] || die "the Kinesis double did not start; see $OUT/kinesis-double.log"
    log "Kinesis double at $KINESIS_URL"
fi

if wants_kafka; then
    KAFKA_PORT=$(free_port)
    KAFKA=127.0.0.1:$KAFKA_PORT
    "$TANSU" broker --storage-engine memory://tansu/ \
        --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
        >"$OUT/tansu.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break
        sleep 0.1
    done
    "$TANSU" topic create bench --partitions 1 --broker "tcp://$KAFKA" >>"$OUT/tansu.log" 2>&1 ||
        die "could not create the topic; see $OUT/tansu.log"
    log "tansu broker at $KAFKA, topic bench"
    KAFKA_WORKER_ENV=(FLEETLOAD_TOPIC=bench FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS="$KAFKA")
    KAFKA_PEER_ARGS=()
    for kv in $KAFKA_PROPS; do
        k=${kv%%=*}
        KAFKA_WORKER_ENV+=("FLEETLOAD_KAFKA_$(tr 'a-z.' 'A-Z_' <<<"$k")=${kv#*=}")
        KAFKA_PEER_ARGS+=(--set "$kv")
    done
fi

# ---------------------------------------------------------------------------------------------
# Pairs, alternating

if wants kinesis; then
    for r in $(seq "$ROUNDS"); do
        log "kinesis round $r/$ROUNDS: fleetload"
        worker_run "kinesis-fleetload-$r" kinesis 0 "$SECS" "${AWS_ENV[@]}" \
            AWS_ENDPOINT_URL="$KINESIS_URL" FLEETLOAD_STREAM=bench FLEETLOAD_BATCH_SIZE=500
        read -r cpu rss < <(time_fields "kinesis-fleetload-$r")
        record what=kinesis who=fleetload round="$r" cpu="$cpu" rss_kib="$rss" \
            count="$(acknowledged "$(worker_summary "kinesis-fleetload-$r")")"

        log "kinesis round $r/$ROUNDS: Locust + boto3"
        measure "kinesis-locust-$r" $((SECS + 60)) env "${AWS_ENV[@]}" \
            AWS_ENDPOINT_URL="$KINESIS_URL" BENCH_STREAM=bench BENCH_BATCH_SIZE=500 \
            BENCH_RESULT="$OUT/kinesis-locust-$r.json" \
            "$VENV/bin/locust" -f "$BENCH/locustfile.py" --headless --only-summary \
            --users 8 --spawn-rate 8 --run-time "${SECS}s" --loglevel WARNING
        read -r _ rss < <(time_fields "kinesis-locust-$r")
        read -r count cpu < <("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["acknowledged"], d["cpu_seconds"])' "$OUT/kinesis-locust-$r.json")
        record what=kinesis who=peer round="$r" cpu="$cpu" rss_kib="$rss" count="$count" \
            cpu_whole_process="$(time_fields "kinesis-locust-$r" | cut -d' ' -f1)"
    done
fi

# User records per CPU-second with KPL aggregation, against the same worker sending one user
# record per Kinesis record, in the same run, alternating. Both count acknowledged user records
# (events); the aggregated run also records how many Kinesis records and calls carried them.
if wants kinesis-agg; then
    for r in $(seq "$ROUNDS"); do
        for mode in on off; do
            name="kinesis-agg-$mode-$r"
            log "kinesis-agg round $r/$ROUNDS: fleetload, aggregation $mode"
            worker_run "$name" kinesis 0 "$SECS" "${AWS_ENV[@]}" \
                AWS_ENDPOINT_URL="$KINESIS_URL" FLEETLOAD_STREAM=bench FLEETLOAD_BATCH_SIZE=500 \
                FLEETLOAD_KINESIS_AGGREGATE="$mode"
            read -r cpu rss < <(time_fields "$name")
            read -r count records calls < <("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); k=d.get("kinesis", {}); print(d["counts"]["acknowledged"], k.get("kinesis_records", 0), k.get("put_records_calls", 0))' "$(worker_summary "$name")")
            who=fleetload
            [[ $mode == off ]] && who=peer
            record what=kinesis-agg who="$who" round="$r" cpu="$cpu" rss_kib="$rss" \
                count="$count" kinesis_records="$records" put_records_calls="$calls"
        done
    done
fi

# kafka_pair WHAT [PROP=VALUE...] : the Kafka pair, both producers with BENCH_KAFKA_PROPS and
# then PROP=VALUE (which wins).
kafka_pair() {
    local what=$1 kv r cpu rss n count
    shift
    local worker_env=("${KAFKA_WORKER_ENV[@]}") peer_args=("${KAFKA_PEER_ARGS[@]}")
    for kv in "$@"; do
        worker_env+=("FLEETLOAD_KAFKA_$(tr 'a-z.' 'A-Z_' <<<"${kv%%=*}")=${kv#*=}")
        peer_args+=(--set "$kv")
    done
    for r in $(seq "$ROUNDS"); do
        log "$what round $r/$ROUNDS: fleetload"
        worker_run "$what-fleetload-$r" kafka 0 "$SECS" "${worker_env[@]}"
        read -r cpu rss < <(time_fields "$what-fleetload-$r")
        n=$(acknowledged "$(worker_summary "$what-fleetload-$r")")
        record what="$what" who=fleetload round="$r" cpu="$cpu" rss_kib="$rss" count="$n"

        log "$what round $r/$ROUNDS: confluent-kafka, $n messages"
        measure "$what-peer-$r" $((SECS + 240)) "$PY" "$BENCH/kafka_peer.py" \
            --bootstrap "$KAFKA" --topic bench --count "$n" --timeout $((SECS + 180)) \
            "${peer_args[@]}" --result "$OUT/$what-peer-$r.json"
        read -r _ rss < <(time_fields "$what-peer-$r")
        read -r count cpu < <("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["acknowledged"], d["cpu_seconds"])' "$OUT/$what-peer-$r.json")
        record what="$what" who=peer round="$r" cpu="$cpu" rss_kib="$rss" count="$count" \
            cpu_whole_process="$(time_fields "$what-peer-$r" | cut -d' ' -f1)"
    done
}

if wants kafka; then
    kafka_pair kafka
fi
for codec in lz4 zstd; do
    if wants "kafka-$codec"; then
        kafka_pair "kafka-$codec" "compression.type=$codec"
    fi
done

if wants null; then
    for r in $(seq "$ROUNDS"); do
        log "null round $r/$ROUNDS"
        worker_run "null-fleetload-$r" null 0 "$SECS"
        read -r cpu rss < <(time_fields "null-fleetload-$r")
        record what=null who=fleetload round="$r" cpu="$cpu" rss_kib="$rss" \
            count="$(acknowledged "$(worker_summary "null-fleetload-$r")")"
    done
fi

if wants rate; then
    for rate in 10000 50000 100000; do
        log "rate accuracy: $rate events/s to Kafka for ${RATE_SECS}s"
        worker_run "rate-$rate" kafka "$rate" "$RATE_SECS" "${KAFKA_WORKER_ENV[@]}"
        read -r cpu rss < <(time_fields "rate-$rate")
        record what=rate rate="$rate" seconds="$RATE_SECS" cpu="$cpu" rss_kib="$rss" \
            summary="\"$(worker_summary "rate-$rate")\""
    done
fi

if wants merge; then
    log "merge of 1,000 task reports (cargo bench --bench merge)"
    cargo bench --quiet --bench merge >"$OUT/merge.out" 2>"$OUT/merge.err" ||
        log "the merge benchmark failed; see $OUT/merge.err"
    secs=$(sed -n 's/.*: \([0-9.]*\) s end to end.*/\1/p' "$OUT/merge.out" | tail -1)
    [[ -n $secs ]] && record what=merge seconds="$secs"
fi

# ---------------------------------------------------------------------------------------------
# The table

machine="$(nproc) vCPU $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
"$PY" "$BENCH/table.py" "$RESULTS" --machine "$machine" --rounds "$ROUNDS" --seconds "$SECS" \
    --kafka-props "$KAFKA_PROPS" | tee "$OUT/table.md"
log "results in $OUT"
