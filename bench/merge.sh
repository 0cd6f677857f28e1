#!/usr/bin/env bash
# The merge benchmark side by side: this checkout's merge against the merge of BASE (a commit,
# by default b1118bf, the last one before the merge kept encoded seconds), 1,000 task reports of
# 300 s each, alternating, in the same run.
#
#   bash bench/merge.sh            # BASE = b1118bf
#   bash bench/merge.sh main       # any commit
#
# Both builds run this checkout's benches/merge.rs (it only calls the merge's public API, which
# BASE has too), so the only difference is the merge and the report writers. Fields the report
# types gained after BASE (`unsent`, `saturation`, `by_shard`, `kinesis`, `end_to_end`) are left out of
# BASE's copy. Each build generates the reports once as its own workers write them (an earlier
# merge refuses the later time-series header, and the interval log's encoding changed), and
# merges those; this checkout also merges BASE's set, as a merge must read reports of earlier
# workers. Each round runs BASE, this checkout, and this checkout on BASE's reports; a run
# reports the CPU-seconds (user + sys, all threads) of merge_run + write_merged and the merge's
# own peak RSS (the high-water mark is reset after the set-up). GNU time's whole-process peak
# is kept in the logs, and the table gives each set's interval log size per task.
#
# Environment:
#   MERGE_ROUNDS (3)  rounds of "BASE, this checkout, this checkout on BASE's reports"
#   MERGE_OUT         where the binaries, reports and logs go (default target/bench/merge-<time>)
#   MERGE_BASE_TARGET_DIR  cargo's target directory for BASE's build (default: this checkout's;
#                     a release profile that differs from this checkout's rebuilds every
#                     dependency there, and a separate directory keeps both builds)
#
# The base worktree is kept in target/bench/base-<commit> and reused by the next run, so its
# build is incremental (`git worktree remove` it when done).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BASE=${1:-b1118bf}
ROUNDS=${MERGE_ROUNDS:-3}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${MERGE_OUT:-$TARGET_DIR/bench/merge-$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BASE_TARGET_DIR=${MERGE_BASE_TARGET_DIR:-$TARGET_DIR}
export CARGO_TARGET_DIR=$TARGET_DIR

log() { printf '[merge %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf 'bench/merge.sh: %s\n' "$*" >&2
    exit 1
}

trap 'exit 130' INT TERM

base_commit=$(git -C "$ROOT" rev-parse --verify "$BASE^{commit}") || die "no commit $BASE"
WORKTREE=$TARGET_DIR/bench/base-${base_commit:0:12}
ours_commit=$(git -C "$ROOT" rev-parse --short HEAD)
dirty=$(git -C "$ROOT" status --porcelain -- src benches Cargo.toml Cargo.lock | head -1)

# Builds the merge benchmark in DIR (cargo target directory TARGET) and copies its executable
# to DEST.
build_bench() {
    local dir=$1 target=$2 dest=$3 exe
    exe=$(cd "$dir" && CARGO_TARGET_DIR=$target cargo bench --bench merge --no-run 2>&1 |
        sed -n 's/.*Executable.*(\(.*\)).*/\1/p' | tail -1)
    [[ -n $exe ]] || die "could not build the merge benchmark in $dir"
    [[ $exe == /* ]] || exe=$dir/$exe
    cp "$exe" "$dest"
}

log "worktree of $BASE (${base_commit:0:7}) with this checkout's benches/merge.rs"
if [[ ! -d $WORKTREE ]]; then
    git -C "$ROOT" worktree add --detach --quiet "$WORKTREE" "$base_commit"
fi
git -C "$WORKTREE" checkout --force --quiet "$base_commit"
cp "$ROOT/benches/merge.rs" "$WORKTREE/benches/merge.rs"
for field in unsent saturation by_shard kinesis end_to_end; do
    if ! grep -rqs "pub $field:" "$WORKTREE/src/model/report/"; then
        sed -i -E "/^\s*$field: [^,]*,\$/d" "$WORKTREE/benches/merge.rs"
    fi
done
log "building the benchmark against $BASE (release; slow the first time)"
build_bench "$WORKTREE" "$BASE_TARGET_DIR" "$OUT/merge-base"
log "building the benchmark against this checkout ($ours_commit${dirty:+, with uncommitted changes})"
build_bench "$ROOT" "$TARGET_DIR" "$OUT/merge-ours"

# Each build merges the reports its own worker writes: BASE's generator writes them as workers of
# BASE did (compressed histograms), this checkout's as its workers do. This checkout also merges
# BASE's set, since a merge must read reports of earlier workers (row "ours-older").
for which in base ours; do
    mkdir -p "$OUT/reports-$which"
    log "generating the reports once with the $which build (1,000 tasks × 300 s) in $OUT/reports-$which"
    FLEETLOAD_BENCH_DIR=$OUT/reports-$which "$OUT/merge-$which" --bench >"$OUT/generate-$which.out" \
        2>"$OUT/generate-$which.err" || die "generating the reports failed; see $OUT/generate-$which.err"
done
# Bytes of one task's interval log in each set (what a merge fetches per task, besides its
# summary and time series).
hlog_bytes() {
    find "$OUT/reports-$1" -name histograms.hlog -path '*/tasks/*' -printf '%s\n' |
        awk '{ s += $1; n++ } END { printf "%.0f", n ? s / n : 0 }'
}
hlog_base=$(hlog_bytes base)
hlog_ours=$(hlog_bytes ours)

: >"$OUT/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    for run in base:base ours:ours ours-older:base; do
        which=${run%%:*}
        set=${run#*:}
        bin=$OUT/merge-${which%-older}
        log "round $round/$ROUNDS: $which (reports of the $set build)"
        FLEETLOAD_BENCH_DIR=$OUT/reports-$set /usr/bin/time -v -o "$OUT/$which-$round.time" \
            "$bin" --bench >"$OUT/$which-$round.out" 2>"$OUT/$which-$round.err" ||
            die "the $which benchmark failed; see $OUT/$which-$round.err"
        line=$(grep '^merge-result' "$OUT/$which-$round.out") ||
            die "no result line in $OUT/$which-$round.out"
        hlog=$hlog_base
        [[ $set == ours ]] && hlog=$hlog_ours
        echo "$which $line hlog_bytes=$hlog load=$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/results.txt"
    done
done

# The table: per build, the median and range of CPU-seconds, peak RSS and wall time.
awk -v base="$BASE (${base_commit:0:7})" -v ours="this checkout ($ours_commit${dirty:+ + changes})" '
    function field(name,   i, kv) {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] }
    }
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        w = $1; n[w]++
        cpu[w, n[w]] = field("cpu_s"); wall[w, n[w]] = field("wall_s")
        rss[w, n[w]] = field("peak_rss_kib") / 1024; load[w] = load[w] " " field("load")
        hlog[w] = field("hlog_bytes")
    }
    END {
        printf "| merge of 1,000 × 300 s | reports | hlog KB per task | CPU s (median) | CPU s (range) | peak RSS MiB | wall s | load avg (1 min) |\n"
        printf "|---|---|---:|---:|---:|---:|---:|---|\n"
        for (k = 0; k < 3; k++) {
            w = k == 0 ? "base" : k == 1 ? "ours" : "ours-older"
            if (!n[w]) continue
            lo = 1e9; hi = 0
            for (i = 1; i <= n[w]; i++) {
                c[i] = cpu[w, i]; r[i] = rss[w, i]; t[i] = wall[w, i]
                if (c[i] < lo) lo = c[i]; if (c[i] > hi) hi = c[i]
            }
            mc[w] = median(c, n[w]); mr[w] = median(r, n[w]); mt = median(t, n[w])
            printf "| %s | %s | %.0f | %.2f | %.2f–%.2f | %.0f | %.2f |%s |\n", (k ? ours : base),
                (k == 1 ? "this checkout'"'"'s" : "BASE'"'"'s"), hlog[w] / 1000, mc[w], lo, hi, mr[w], mt, load[w]
        }
        printf "\nCPU: %.1f× less on its own reports, %.1f× less on BASE'"'"'s; peak RSS: %.1f× less (base / this checkout, medians)\n",
            mc["base"] / mc["ours"], mc["base"] / mc["ours-older"], mr["base"] / mr["ours"]
    }' "$OUT/results.txt" | tee "$OUT/table.md"
log "logs, results.txt and table.md in $OUT"
