#!/usr/bin/env bash
# fleetload load test as one CI step, for any CI system (GitLab, Jenkins, Buildkite, ...):
# build and push the worker image, deploy or update the CloudFormation stack, run the fleet on
# ECS with thresholds, fetch the merged report, and exit with the launcher's exit code.
# The launcher runs from the same image (docker run --entrypoint /usr/local/bin/launcher), so
# the CI machine needs no Rust toolchain.
#
#   STACK=fleetload AWS_REGION=eu-west-1 \
#   IMAGE_REPO=123456789012.dkr.ecr.eu-west-1.amazonaws.com/fleetload \
#   SUBNET_IDS=subnet-0abc,subnet-0def VPC_ID=vpc-0123 \
#   WORKER_ENV=$'FLEETLOAD_TARGET=kinesis\nFLEETLOAD_STREAM=orders' \
#       bash ci/loadtest-step.sh
#
# Needs: aws (CLI v2) with credentials, docker (with BuildKit). cargo only with SKIP_IMAGE=1 and
# neither IMAGE_URI nor LAUNCHER set (then the launcher is built from source).
#
# Environment (required):
#   STACK          CloudFormation stack name (created on first use from cloudformation/fleetload.yaml)
#   AWS_REGION     region of the stack, the ECR repository and the target
#   IMAGE_REPO     ECR repository URI, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/fleetload
#                  (not needed with SKIP_IMAGE=1 SKIP_DEPLOY=1)
# Environment (optional):
#   TASKS          worker tasks                                   (default 20)
#   DURATION       length of the run                              (default 2m)
#   RATE           events per second per task                     (default 5000)
#   THRESHOLDS     thresholds separated by ';' or newlines        (default 'p99<250ms;error_rate<0.1%')
#   WORKER_ENV     worker settings, one KEY=VALUE per line, passed as -e KEY=VALUE
#   WORKER_ENV_FILE  a file of KEY=VALUE lines, passed as --env-file
#   IMAGE_TAG      tag to push                                    (default: git commit, else the run id)
#   DOCKER_PLATFORM  linux/amd64 or linux/arm64                   (default linux/amd64)
#   SUBNET_IDS, VPC_ID, SECURITY_GROUP_IDS
#                  stack parameters (needed on the first deploy; later deploys keep the old values)
#   STACK_PARAMETERS  further stack parameters, space-separated Key=Value
#   SKIP_IMAGE=1   do not build or push; deploy with IMAGE_URI or keep the stack's image
#   IMAGE_URI      full image reference to deploy with SKIP_IMAGE=1
#   SKIP_DEPLOY=1  use the stack as it is
#   LAUNCHER       path of a launcher binary to run instead of the one in the image
#                  (default: the image's /usr/local/bin/launcher through docker run, with the
#                  AWS credentials passed as environment variables; cargo build --release
#                  when no image is known, i.e. SKIP_IMAGE=1 without IMAGE_URI)
#   RUN_ID         run id (default ci-YYYYMMDD-HHMMSS-RANDOM)
#   ARTIFACTS_DIR  where the merged report and the launcher log go (default artifacts)
#   JUNIT          JUnit file the launcher writes                 (default results.xml)
#   BASELINE_RUN_ID  compare every run with the run kept under this id of the stack's report URL,
#                  e.g. main-latest (default: no comparison); when nothing is kept there yet (the
#                  first run), the run goes on without a baseline and says so
#   BASELINE_THRESHOLDS  thresholds relative to the baseline, separated by ';' or newlines
#                  (default 'p99<baseline+10%;rate>=baseline-5%')
#   FAIL_ON_REGRESSION  1: fail (exit 1) when the comparison calls a metric regressed, beyond the
#                  runs' own noise; 0: report it only                (default 1)
#   PROMOTE_BASELINE=1  after a run that passed (exit 0), keep it as BASELINE_RUN_ID for the runs
#                  that follow (set it on the main branch only)
#
# Exit codes (those of `launcher run`):
#   0  every threshold held
#   1  a threshold was broken, or (BASELINE_RUN_ID, FAIL_ON_REGRESSION=1) a metric regressed
#   2  bad usage or configuration (also: a required variable or tool of this script is missing)
#   3  the fleet failed: tasks did not start, exited non-zero, or reports are missing
#      (also: the image build or push, the stack deploy or the launcher build failed)
set -uo pipefail

EXIT_PASS=0
EXIT_USAGE=2
EXIT_FLEET=3

log() { printf '[loadtest] %s\n' "$*" >&2; }
fail() {
    local code=$1
    shift
    log "error: $*"
    exit "$code"
}

cd "$(dirname "${BASH_SOURCE[0]}")/.." || fail "$EXIT_USAGE" "cannot enter the repository root"

# ------------------------------------------------------------------------------ settings
TASKS=${TASKS:-20}
DURATION=${DURATION:-2m}
RATE=${RATE:-5000}
THRESHOLDS=${THRESHOLDS:-'p99<250ms;error_rate<0.1%'}
ARTIFACTS_DIR=${ARTIFACTS_DIR:-artifacts}
JUNIT=${JUNIT:-results.xml}
DOCKER_PLATFORM=${DOCKER_PLATFORM:-linux/amd64}
SKIP_IMAGE=${SKIP_IMAGE:-0}
SKIP_DEPLOY=${SKIP_DEPLOY:-0}
RUN_ID=${RUN_ID:-ci-$(date +%Y%m%d-%H%M%S)-$RANDOM}
BASELINE_RUN_ID=${BASELINE_RUN_ID:-}
BASELINE_THRESHOLDS=${BASELINE_THRESHOLDS:-'p99<baseline+10%;rate>=baseline-5%'}
FAIL_ON_REGRESSION=${FAIL_ON_REGRESSION:-1}
PROMOTE_BASELINE=${PROMOTE_BASELINE:-0}

[[ -n "${STACK:-}" ]] || fail "$EXIT_USAGE" "STACK is not set (the CloudFormation stack name)"
[[ -n "${AWS_REGION:-}" ]] || fail "$EXIT_USAGE" "AWS_REGION is not set"
export AWS_REGION AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
[[ "$TASKS" =~ ^[1-9][0-9]*$ ]] || fail "$EXIT_USAGE" "TASKS='$TASKS' is not a positive integer"
case "$DOCKER_PLATFORM" in
    linux/amd64) CPU_ARCH=X86_64 ;;
    linux/arm64) CPU_ARCH=ARM64 ;;
    *) fail "$EXIT_USAGE" "DOCKER_PLATFORM='$DOCKER_PLATFORM' (accepted: linux/amd64, linux/arm64)" ;;
esac
if [[ "$SKIP_IMAGE" != 1 ]]; then
    [[ -n "${IMAGE_REPO:-}" ]] || fail "$EXIT_USAGE" "IMAGE_REPO is not set (ECR repository URI), or set SKIP_IMAGE=1"
fi
command -v aws >/dev/null 2>&1 || fail "$EXIT_USAGE" "the AWS CLI (aws) is not installed"
if [[ "$SKIP_IMAGE" != 1 ]]; then
    command -v docker >/dev/null 2>&1 || fail "$EXIT_USAGE" "docker is not installed (or set SKIP_IMAGE=1)"
fi
# Where the launcher comes from: LAUNCHER, else the image (built here or IMAGE_URI), else cargo.
if [[ -n "${LAUNCHER:-}" ]]; then
    [[ -x "$LAUNCHER" ]] || fail "$EXIT_USAGE" "LAUNCHER='$LAUNCHER' is not an executable file"
    LAUNCHER_FROM=binary
elif [[ "$SKIP_IMAGE" != 1 || -n "${IMAGE_URI:-}" ]]; then
    command -v docker >/dev/null 2>&1 || fail "$EXIT_USAGE" "docker is not installed (needed to run the launcher from the image; or set LAUNCHER)"
    LAUNCHER_FROM=image
else
    command -v cargo >/dev/null 2>&1 || fail "$EXIT_USAGE" "cargo is not installed (or set LAUNCHER or IMAGE_URI)"
    LAUNCHER_FROM=cargo
fi
if [[ -n "$BASELINE_RUN_ID" ]]; then
    [[ "$BASELINE_RUN_ID" =~ ^[A-Za-z0-9._-]+$ ]] ||
        fail "$EXIT_USAGE" "BASELINE_RUN_ID='$BASELINE_RUN_ID' (accepted: letters, digits, '.', '_', '-')"
    [[ "$BASELINE_RUN_ID" != "$RUN_ID" ]] || fail "$EXIT_USAGE" "BASELINE_RUN_ID is the run's own id"
fi
[[ "$FAIL_ON_REGRESSION" == 0 || "$FAIL_ON_REGRESSION" == 1 ]] ||
    fail "$EXIT_USAGE" "FAIL_ON_REGRESSION='$FAIL_ON_REGRESSION' (accepted: 0, 1)"
[[ "$PROMOTE_BASELINE" == 0 || "$PROMOTE_BASELINE" == 1 ]] ||
    fail "$EXIT_USAGE" "PROMOTE_BASELINE='$PROMOTE_BASELINE' (accepted: 0, 1)"
if [[ "$PROMOTE_BASELINE" == 1 && -z "$BASELINE_RUN_ID" ]]; then
    fail "$EXIT_USAGE" "PROMOTE_BASELINE=1 needs BASELINE_RUN_ID (where to keep the run)"
fi
if [[ -n "${WORKER_ENV_FILE:-}" && ! -r "$WORKER_ENV_FILE" ]]; then
    fail "$EXIT_USAGE" "WORKER_ENV_FILE='$WORKER_ENV_FILE' cannot be read"
fi

threshold_args=()
threshold_list=
while IFS= read -r t; do
    t="${t#"${t%%[![:space:]]*}"}"
    t="${t%"${t##*[![:space:]]}"}"
    [[ -n "$t" ]] || continue
    threshold_args+=(--threshold "$t")
    threshold_list+="${threshold_list:+, }$t"
done < <(printf '%s\n' "$THRESHOLDS" | tr ';' '\n')

env_args=()
while IFS= read -r kv; do
    kv="${kv%$'\r'}"
    [[ -z "$kv" || "$kv" == \#* ]] && continue
    [[ "$kv" == *=* ]] || fail "$EXIT_USAGE" "WORKER_ENV line '$kv' is not KEY=VALUE"
    env_args+=(-e "$kv")
done <<<"${WORKER_ENV:-}"
[[ -n "${WORKER_ENV_FILE:-}" ]] && env_args+=(--env-file "$WORKER_ENV_FILE")

mkdir -p "$ARTIFACTS_DIR" || fail "$EXIT_USAGE" "cannot create ARTIFACTS_DIR='$ARTIFACTS_DIR'"
log "run id: $RUN_ID"

# ------------------------------------------------------------------------------ image
IMAGE=${IMAGE_URI:-}
if [[ "$SKIP_IMAGE" != 1 ]]; then
    if [[ -z "${IMAGE_TAG:-}" ]]; then
        IMAGE_TAG=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
        IMAGE_TAG=${IMAGE_TAG:-$RUN_ID}
    fi
    IMAGE="$IMAGE_REPO:$IMAGE_TAG"
    registry=${IMAGE_REPO%%/*}
    log "building $IMAGE ($DOCKER_PLATFORM)"
    DOCKER_BUILDKIT=1 docker build --platform "$DOCKER_PLATFORM" -f docker/Dockerfile -t "$IMAGE" . ||
        fail "$EXIT_FLEET" "docker build failed"
    log "pushing $IMAGE"
    aws ecr get-login-password --region "$AWS_REGION" |
        docker login --username AWS --password-stdin "$registry" >/dev/null ||
        fail "$EXIT_FLEET" "docker login to $registry failed"
    docker push "$IMAGE" || fail "$EXIT_FLEET" "docker push $IMAGE failed"
fi

# ------------------------------------------------------------------------------ stack
if [[ "$SKIP_DEPLOY" != 1 ]]; then
    params=("CpuArchitecture=$CPU_ARCH")
    [[ -n "$IMAGE" ]] && params+=("ImageUri=$IMAGE")
    [[ -n "${SUBNET_IDS:-}" ]] && params+=("SubnetIds=$SUBNET_IDS")
    [[ -n "${VPC_ID:-}" ]] && params+=("VpcId=$VPC_ID")
    [[ -n "${SECURITY_GROUP_IDS:-}" ]] && params+=("SecurityGroupIds=$SECURITY_GROUP_IDS")
    if [[ -n "${STACK_PARAMETERS:-}" ]]; then
        read -r -a extra <<<"$STACK_PARAMETERS"
        params+=(${extra[@]+"${extra[@]}"})
    fi
    log "deploying stack $STACK"
    aws cloudformation deploy \
        --stack-name "$STACK" \
        --template-file cloudformation/fleetload.yaml \
        --capabilities CAPABILITY_IAM \
        --no-fail-on-empty-changeset \
        --parameter-overrides "${params[@]}" ||
        fail "$EXIT_FLEET" "aws cloudformation deploy of $STACK failed"
fi

# ------------------------------------------------------------------------------ launcher
launcher_cmd=()
case "$LAUNCHER_FROM" in
    binary) launcher_cmd=("$LAUNCHER") ;;
    cargo)
        log "building the launcher"
        cargo build --release --locked --bin launcher || fail "$EXIT_FLEET" "cargo build of the launcher failed"
        launcher_cmd=(target/release/launcher)
        ;;
    image)
        # The launcher of the image, as this user (so results.xml belongs to it), with the
        # repository root mounted at the same path (relative paths keep working) and the AWS
        # credentials as environment variables: resolved here from the CLI's chain when they
        # are not in the environment already (profiles, SSO, instance roles).
        if [[ -z "${AWS_ACCESS_KEY_ID:-}" ]]; then
            creds=$(aws configure export-credentials --format env-no-export 2>/dev/null) ||
                fail "$EXIT_USAGE" "no AWS credentials to pass to the launcher (aws configure export-credentials failed)"
            while IFS='=' read -r key value; do
                case "$key" in
                    AWS_ACCESS_KEY_ID | AWS_SECRET_ACCESS_KEY | AWS_SESSION_TOKEN) export "$key=$value" ;;
                esac
            done <<<"$creds"
        fi
        launcher_cmd=(docker run --rm --user "$(id -u):$(id -g)" -e HOME=/tmp
            -v "$PWD:$PWD" -w "$PWD"
            -e AWS_REGION -e AWS_DEFAULT_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY
            -e AWS_SESSION_TOKEN -e AWS_ENDPOINT_URL)
        # Files named outside the repository root are mounted at their own paths.
        for f in "$JUNIT" "${WORKER_ENV_FILE:-}"; do
            [[ -n "$f" ]] || continue
            dir=$(cd "$(dirname "$f")" && pwd) || fail "$EXIT_USAGE" "the directory of '$f' does not exist"
            [[ "$dir/" == "$PWD/"* ]] || launcher_cmd+=(-v "$dir:$dir")
        done
        launcher_cmd+=(--entrypoint /usr/local/bin/launcher "$IMAGE")
        log "launcher: /usr/local/bin/launcher of $IMAGE"
        ;;
esac

# ------------------------------------------------------------------------------ baseline
# Where the stack's tasks write their reports, and so where the baseline is kept.
report_url=$(aws cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='ReportUrl'].OutputValue" --output text 2>/dev/null)
[[ "$report_url" == None ]] && report_url=
baseline_args=()
if [[ -n "$BASELINE_RUN_ID" ]]; then
    if [[ -z "$report_url" ]]; then
        log "warning: stack $STACK has no ReportUrl output; no comparison with $BASELINE_RUN_ID"
    elif aws s3 ls "$report_url/$BASELINE_RUN_ID/merged/summary.json" >/dev/null 2>&1; then
        baseline_args+=(--baseline "$report_url/$BASELINE_RUN_ID")
        while IFS= read -r t; do
            t="${t#"${t%%[![:space:]]*}"}"
            t="${t%"${t##*[![:space:]]}"}"
            [[ -n "$t" ]] || continue
            baseline_args+=(--threshold "$t")
            threshold_list+="${threshold_list:+, }$t"
        done < <(printf '%s\n' "$BASELINE_THRESHOLDS" | tr ';' '\n')
        [[ "$FAIL_ON_REGRESSION" == 1 ]] && baseline_args+=(--fail-on-regression)
        log "baseline: $report_url/$BASELINE_RUN_ID"
    else
        log "no baseline kept at $report_url/$BASELINE_RUN_ID yet: this run is not compared"
    fi
fi

# ------------------------------------------------------------------------------ run
launcher_log="$ARTIFACTS_DIR/launcher.log"
log "launcher run: $TASKS tasks, $DURATION at $RATE/s per task, thresholds: ${threshold_list:-none}"

# The launcher runs in the background so that a SIGTERM/SIGINT sent to this step (a cancelled
# pipeline) is passed on to it (docker run passes it on to the container): it then stops every
# task it started instead of leaving them running (and billing).
exec 3> >(tee "$launcher_log")
tee_pid=$!
"${launcher_cmd[@]}" run \
    --stack "$STACK" \
    --backend ecs \
    --tasks "$TASKS" \
    --duration "$DURATION" \
    --rate "$RATE" \
    --run-id "$RUN_ID" \
    --junit "$JUNIT" \
    ${threshold_args[@]+"${threshold_args[@]}"} \
    ${baseline_args[@]+"${baseline_args[@]}"} \
    ${env_args[@]+"${env_args[@]}"} >&3 2>&1 &
launcher_pid=$!
trap 'log "stopping the run"; kill -TERM "$launcher_pid" 2>/dev/null' INT TERM
while :; do
    wait "$launcher_pid"
    code=$?
    # wait also returns when a trapped signal arrives: keep waiting until the launcher is gone.
    kill -0 "$launcher_pid" 2>/dev/null || break
done
trap - INT TERM
exec 3>&-
wait "$tee_pid" 2>/dev/null || true

# The launcher prints `run id: <RUN_ID>`; trust it over ours if they differ.
printed_id=$(sed -n 's/^run id: *\([^ ]*\).*/\1/p' "$launcher_log" | head -n 1)
if [[ -n "$printed_id" && "$printed_id" != "$RUN_ID" ]]; then
    log "the launcher reports run id $printed_id"
    RUN_ID=$printed_id
fi

# ------------------------------------------------------------------------------ report
if [[ -n "$report_url" ]]; then
    printf 'run id: %s\nreport: %s/%s/\n' "$RUN_ID" "$report_url" "$RUN_ID" >"$ARTIFACTS_DIR/run-id.txt"
    # s3 cp --recursive succeeds on an empty prefix: the summary tells whether there was a report.
    if aws s3 cp --recursive --only-show-errors "$report_url/$RUN_ID/merged" "$ARTIFACTS_DIR/merged" &&
        [[ -f "$ARTIFACTS_DIR/merged/summary.json" ]]; then
        log "merged report: $ARTIFACTS_DIR/merged/ (report.html, summary.json, timeseries.csv)"
        [[ -f "$ARTIFACTS_DIR/merged/compare.html" ]] &&
            log "comparison with the baseline: $ARTIFACTS_DIR/merged/compare.html (compare.json)"
    else
        log "warning: could not download $report_url/$RUN_ID/merged"
    fi
    # The main branch's run that passed becomes the baseline of the runs that follow.
    if [[ "$PROMOTE_BASELINE" == 1 && "$code" == "$EXIT_PASS" ]]; then
        if aws s3 sync --delete --only-show-errors "$report_url/$RUN_ID/" "$report_url/$BASELINE_RUN_ID/"; then
            log "kept as the baseline: $report_url/$BASELINE_RUN_ID (run $RUN_ID)"
        else
            log "warning: could not keep run $RUN_ID as the baseline $report_url/$BASELINE_RUN_ID"
        fi
    fi
else
    log "warning: stack $STACK has no ReportUrl output; report not downloaded"
fi

case "$code" in
    "$EXIT_PASS") log "passed: every threshold held" ;;
    1) log "FAILED: a threshold was broken or a metric regressed against the baseline (see $JUNIT and $ARTIFACTS_DIR/merged/report.html, compare.html)" ;;
    "$EXIT_USAGE") log "FAILED: bad usage or configuration (see $launcher_log)" ;;
    "$EXIT_FLEET") log "FAILED: the fleet failed - tasks did not start, exited non-zero, or reports are missing" ;;
    *) log "FAILED: the launcher exited with $code" ;;
esac
exit "$code"
