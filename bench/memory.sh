#!/usr/bin/env bash
# Worker memory against the run's length: peak RSS of a release `worker` on the null target at
# 100,000 events/s, for 30 s, 300 s and 600 s, all started at once (side by side, same load),
# with the growth per hour between the two longest runs extrapolated to a 24-hour run against a
# 512 MiB task.
#
#   bash bench/memory.sh                          # builds the release worker, then measures it
#   bash bench/memory.sh before=/path/to/worker   # LABEL=BINARY..., each measured side by side
#
# Peak RSS is GNU time's "Maximum resident set size" (or the worker's VmHWM from
# /proc/PID/status, read once a second, where GNU time is absent). The table also gives each
# run's CPU-seconds and the size of its histograms.hlog and timeseries.csv, the two files that
# grow with the run. The time series stays in memory until the end; the interval log goes to a
# temporary file past 1 MiB, so only its first minutes are held (a worker before that change
# held it whole: its growth shows between the two longest runs).
#
# Environment:
#   MEMORY_SECONDS ("30 300 600")  durations, each a run of every binary
#   MEMORY_RATE (100000)       FLEETLOAD_RATE of every run
#   MEMORY_TASK_MIB (512)      the task size a 24-hour run must fit
#   MEMORY_OUT                 where the reports and logs go (default target/bench/memory-<time>)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SECONDS_LIST=${MEMORY_SECONDS:-30 300 600}
RATE=${MEMORY_RATE:-100000}
TASK_MIB=${MEMORY_TASK_MIB:-512}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${MEMORY_OUT:-$TARGET_DIR/bench/memory-$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"

log() { printf '[memory %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf 'bench/memory.sh: %s\n' "$*" >&2
    exit 1
}

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

# The binaries: LABEL=PATH arguments, else this checkout's release worker. Each is copied so
# that a build during the runs cannot swap it.
declare -a LABELS=() BINS=()
if (($# == 0)); then
    log "building the release worker"
    cargo build --release --quiet --bin worker
    set -- "fleetload=$TARGET_DIR/release/worker"
fi
for arg in "$@"; do
    [[ $arg == *=* ]] || die "expected LABEL=WORKER_BINARY, got $arg"
    label=${arg%%=*}
    bin=${arg#*=}
    [[ -x $bin ]] || die "$bin is not an executable"
    cp "$bin" "$OUT/worker-$label"
    LABELS+=("$label")
    BINS+=("$OUT/worker-$label")
done

GNU_TIME=
if /usr/bin/time -v true >/dev/null 2>&1; then
    GNU_TIME=/usr/bin/time
fi

# Polls VmHWM of PID into FILE until it exits (used without GNU time).
watch_hwm() {
    local pid=$1 file=$2 hwm
    while kill -0 "$pid" 2>/dev/null; do
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [[ -n $hwm ]] && echo "$hwm" >"$file"
        sleep 1
    done
}

longest=0
for secs in $SECONDS_LIST; do
    ((secs > longest)) && longest=$secs
done
log "starting $((${#LABELS[@]} * $(wc -w <<<"$SECONDS_LIST"))) workers at once (null target, ${RATE}/s): $SECONDS_LIST s; about $((longest + 10)) s"
uptime | sed 's/^/[memory] load before: /' >&2

for i in "${!LABELS[@]}"; do
    for secs in $SECONDS_LIST; do
        name=${LABELS[$i]}-$secs
        reports=$OUT/$name
        mkdir -p "$reports"
        env_args=(
            FLEETLOAD_TARGET=null FLEETLOAD_RATE="$RATE" FLEETLOAD_DURATION="${secs}s"
            FLEETLOAD_REPORT_URL="$reports" FLEETLOAD_RUN_ID=memory FLEETLOAD_TASK_ID=task
            FLEETLOAD_SEED=1
        )
        if [[ -n $GNU_TIME ]]; then
            env "${env_args[@]}" timeout $((secs + 120)) \
                "$GNU_TIME" -v -o "$OUT/$name.time" "${BINS[$i]}" \
                >"$OUT/$name.log" 2>&1 &
            PIDS+=($!)
        else
            env "${env_args[@]}" timeout $((secs + 120)) "${BINS[$i]}" >"$OUT/$name.log" 2>&1 &
            pid=$!
            PIDS+=("$pid")
            watch_hwm "$pid" "$OUT/$name.hwm" &
            PIDS+=($!)
        fi
    done
done
failed=0
for pid in "${PIDS[@]}"; do
    wait "$pid" || failed=1
done
PIDS=()
uptime | sed 's/^/[memory] load after: /' >&2
((failed == 0)) || die "a worker failed; see the logs in $OUT"

# One row per run, then the growth of each binary between its shortest and longest run.
kib_of() {
    local name=$1
    if [[ -f $OUT/$name.time ]]; then
        awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/$name.time"
    else
        cat "$OUT/$name.hwm"
    fi
}
cpu_of() {
    local name=$1
    if [[ -f $OUT/$name.time ]]; then
        awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.1f", u + s}' "$OUT/$name.time"
    else
        echo "?"
    fi
}
size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }

{
    printf '| worker | run | acknowledged | peak RSS MiB | CPU s | hlog KiB | hlog B/s | timeseries KiB |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
    for label in "${LABELS[@]}"; do
        for secs in $SECONDS_LIST; do
            name=$label-$secs
            task=$OUT/$name/memory/tasks/task
            acked=$(sed -n 's/.*"acknowledged": *\([0-9]*\).*/\1/p' "$task/summary.json" | head -1)
            hlog=$(size_of "$task/histograms.hlog")
            series=$(size_of "$task/timeseries.csv")
            awk -v l="$label" -v s="$secs" -v a="${acked:-?}" -v k="$(kib_of "$name")" \
                -v c="$(cpu_of "$name")" -v h="$hlog" -v t="$series" 'BEGIN {
                    printf "| %s | %d s | %s | %.1f | %s | %.0f | %.0f | %.0f |\n",
                        l, s, a, k / 1024, c, h / 1024, h / s, t / 1024 }'
        done
    done
    printf '\n| worker | RSS growth MiB/hour (two longest runs) | time series kept MiB/hour | 24 h extrapolated MiB | fits %d MiB |\n' "$TASK_MIB"
    printf '|---|---:|---:|---:|---|\n'
    # The growth between the two longest runs: past the first minutes the interval log goes to
    # a temporary file (1 MiB in memory at most), so what still grows is the time series.
    earlier=$(tr ' ' '\n' <<<"$SECONDS_LIST" | grep . | sort -n | tail -2 | head -1)
    for label in "${LABELS[@]}"; do
        task=$OUT/$label-$longest/memory/tasks/task
        series=$(size_of "$task/timeseries.csv")
        awk -v l="$label" -v s0="$earlier" -v s1="$longest" -v k0="$(kib_of "$label-$earlier")" \
            -v k1="$(kib_of "$label-$longest")" -v kept="$series" -v task="$TASK_MIB" 'BEGIN {
                if (s1 == s0) { print "| " l " | need two durations | | | |"; exit }
                per_h = (k1 - k0) / 1024 / (s1 - s0) * 3600
                if (per_h < 0) per_h = 0
                # The rows a run keeps until its end grow by kept/s1 bytes a second; RSS may
                # lag them (allocator slack), so the larger of the two rates is extrapolated.
                files_h = kept / s1 * 3600 / 1048576
                rate = per_h > files_h ? per_h : files_h
                day = k1 / 1024 + rate * (86400 - s1) / 3600
                printf "| %s | %.1f | %.1f | %.0f | %s |\n", l, per_h, files_h, day, (day <= task ? "yes" : "NO") }'
    done
} | tee "$OUT/table.md"
log "reports, logs and table.md in $OUT"
