//! What ships: the Dockerfile (hadolint, and the binaries' dynamic dependencies against what the
//! distroless base image provides; tests/image.rs builds and runs the image), the CI gate
//! (zizmor on the GitHub Actions workflow, shellcheck on the step script), the CloudFormation
//! stack (cfn-lint, checkov, and deployed into the moto server, after which
//! `launcher run --stack NAME` finds everything and starts its tasks there).
//!
//! The linters come from ci/test.sh (hadolint, cfn-lint, checkov and zizmor in its venv, on
//! PATH there; shellcheck from Debian); the moto server's URL from `FLEETLOAD_TEST_MOTO_URL`.
//! Missing tools fail these tests, they never skip.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> Command {
    let mut cmd = Command::new(name);
    cmd.current_dir(root());
    cmd
}

fn run_tool(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what} is needed ({e}): run the tests through ci/test.sh, which installs it")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn dockerfile_passes_hadolint_and_its_final_stage_is_distroless_as_65532_with_the_worker_as_entrypoint(
) {
    let mut cmd = tool("hadolint");
    cmd.arg("docker/Dockerfile");
    run_tool(cmd, "hadolint");
    let dockerfile = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    let final_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        final_stage.starts_with("gcr.io/distroless/cc-debian12"),
        "final stage: {final_stage}"
    );
    assert!(
        final_stage.contains("\nUSER 65532:65532"),
        "runs as non-root"
    );
    assert!(final_stage.contains("ENTRYPOINT [\"/usr/local/bin/worker\"]"));
}

#[test]
fn github_actions_workflow_has_no_zizmor_findings() {
    // --offline: no GitHub API look-ups (those audits need a token and the network). Every
    // persona, so that not even the pedantic findings are left; any finding exits non-zero.
    for persona in ["regular", "pedantic", "auditor"] {
        let mut cmd = tool("zizmor");
        cmd.args([
            "--offline",
            "--no-progress",
            "--color=never",
            &format!("--persona={persona}"),
            "ci/github-actions.yml",
        ]);
        let text = run_tool(cmd, &format!("zizmor --persona={persona}"));
        assert!(text.contains("No findings to report"), "{text}");
    }
}

#[test]
fn ci_scripts_pass_shellcheck() {
    for script in [
        "ci/loadtest-step.sh",
        "ci/test.sh",
        ".cargo/librdkafka-env.sh",
    ] {
        let mut cmd = tool("shellcheck");
        cmd.args(["--severity=style", "--external-sources", script]);
        run_tool(cmd, &format!("shellcheck {script}"));
    }
}

/// Shared libraries `gcr.io/distroless/cc-debian12` provides: glibc and libgcc_s (no libssl,
/// no libz, no libstdc++ needed): librdkafka, zlib and the TLS stack are linked statically.
const BASE_IMAGE_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
];

/// The test build's binaries (this check is fast; the release binary that ships is built and run
/// inside the distroless stand-in, which has only these libraries, by tests/image.rs).
#[test]
fn test_build_binaries_need_only_what_the_base_image_provides() {
    // The libraries a binary needs are decided by its crates, features and link arguments, which
    // the release profile shares with this test build.
    for exe in [env!("CARGO_BIN_EXE_worker"), env!("CARGO_BIN_EXE_launcher")] {
        let mut cmd = Command::new("readelf");
        cmd.args(["-d", exe]);
        let dynamic = run_tool(cmd, "readelf (binutils)");
        let needed: Vec<&str> = dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.split(']').next())
            .collect();
        assert!(needed.contains(&"libc.so.6"), "{exe}: {needed:?}");
        for lib in &needed {
            assert!(
                BASE_IMAGE_LIBRARIES.contains(lib),
                "{exe} needs {lib}, which the distroless cc image does not have"
            );
        }
    }
}

#[test]
fn cloudformation_template_passes_cfn_lint_and_checkov() {
    let mut cmd = tool("cfn-lint");
    cmd.arg("cloudformation/fleetload.yaml");
    run_tool(cmd, "cfn-lint");
    let mut cmd = tool("checkov");
    cmd.args([
        "-f",
        "cloudformation/fleetload.yaml",
        "--quiet",
        "--compact",
        "--skip-download",
        "--framework",
        "cloudformation",
    ]);
    let text = run_tool(cmd, "checkov");
    assert!(!text.contains("FAILED for resource"), "{text}");
}

fn python_aws(script: &str, moto: &str, args: &[&str]) -> String {
    let python = std::env::var("FLEETLOAD_TEST_PYTHON").expect(
        "FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh, which installs boto3",
    );
    let prelude = "import boto3, json, sys, time\nkw = dict(endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n";
    let out = Command::new(python)
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .arg(moto)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_stack_deploys_in_moto_and_launcher_run_stack_starts_23_tasks_and_stops_them_on_ctrl_c() {
    let moto = std::env::var("FLEETLOAD_TEST_MOTO_URL").expect("FLEETLOAD_TEST_MOTO_URL is not set: run the tests through ci/test.sh, which starts the moto server");
    let stack = format!("fleetload-ship-{}", std::process::id());
    let template = root().join("cloudformation/fleetload.yaml");
    // A VPC with DNS hostnames (moto needs them to give awsvpc tasks an address), two subnets,
    // the stack with a demo stream, and tasks held where they are until stopped (moto would
    // otherwise move them along on every DescribeTasks).
    let outputs = python_aws(
        r#"
import urllib.request
ec2 = boto3.client('ec2', **kw)
vpc = ec2.create_vpc(CidrBlock='10.77.0.0/16')['Vpc']['VpcId']
ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={'Value': True})
subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f'10.77.{i}.0/24', AvailabilityZone=f'us-east-1{z}')['Subnet']['SubnetId'] for i, z in ((1, 'a'), (2, 'b'))]
req = urllib.request.Request(sys.argv[1] + '/moto-api/state-manager/set-transition', method='POST',
    data=json.dumps({'model_name': 'ecs::task', 'transition': {'progression': 'manual', 'times': 1000000}}).encode())
urllib.request.urlopen(req).read()
cfn = boto3.client('cloudformation', **kw)
params = {'ImageUri': 'fleetload:test', 'SubnetIds': ','.join(subnets), 'VpcId': vpc, 'CreateDemoStream': 'true'}
cfn.create_stack(StackName=sys.argv[2], TemplateBody=open(sys.argv[3]).read(), Capabilities=['CAPABILITY_IAM'],
    Parameters=[{'ParameterKey': k, 'ParameterValue': v} for k, v in params.items()])
for _ in range(60):
    s = cfn.describe_stacks(StackName=sys.argv[2])['Stacks'][0]
    if s['StackStatus'].endswith('_COMPLETE') or s['StackStatus'].endswith('_FAILED'):
        break
    time.sleep(1)
assert s['StackStatus'] == 'CREATE_COMPLETE', s['StackStatus']
print(json.dumps({o['OutputKey']: o['OutputValue'] for o in s['Outputs']}))
"#,
        &moto,
        &[&stack, template.to_str().unwrap()],
    );
    let outputs: serde_json::Value = serde_json::from_str(outputs.trim()).unwrap();
    for key in [
        "ClusterName",
        "TaskDefinitionArn",
        "ContainerName",
        "SubnetIds",
        "SecurityGroupIds",
        "ReportBucket",
        "ReportUrl",
        "LaunchType",
        "DemoStreamName",
    ] {
        assert!(
            outputs
                .get(key)
                .and_then(|v| v.as_str())
                .is_some_and(|v| !v.is_empty()),
            "output {key} missing: {outputs}"
        );
    }

    let run_id = format!("ship-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_launcher"));
    launcher
        .args([
            "run",
            "--stack",
            &stack,
            "--backend",
            "ecs",
            "--tasks",
            "23",
            "--target",
            "null",
            "--rate",
            "100",
            "--duration",
            "30s",
            "--start-delay",
            "5s",
            "--run-id",
            &run_id,
        ])
        .current_dir(dir.path())
        .env("AWS_ENDPOINT_URL", &moto)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = launcher.spawn().unwrap();

    // The tasks appear in moto with the run id and the scenario; then Ctrl-C stops them all.
    let start = Instant::now();
    let tasks = loop {
        let listed = python_aws(
            "ecs = boto3.client('ecs', **kw)\narns = ecs.list_tasks(cluster=sys.argv[2], startedBy=sys.argv[3])['taskArns']\nprint(json.dumps(ecs.describe_tasks(cluster=sys.argv[2], tasks=arns)['tasks'] if arns else [], default=str))",
            &moto,
            &[outputs["ClusterName"].as_str().unwrap(), &run_id],
        );
        let tasks: Vec<serde_json::Value> = serde_json::from_str(listed.trim()).unwrap();
        if tasks.len() >= 23 {
            break tasks;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the launcher did not start 23 tasks in moto"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(tasks.len(), 23);
    for t in &tasks {
        assert_eq!(t["startedBy"], run_id.as_str());
        assert_eq!(t["taskDefinitionArn"], outputs["TaskDefinitionArn"]);
        let env = &t["overrides"]["containerOverrides"][0]["environment"];
        let has = |k: &str, v: &str| {
            env.as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == k && (v.is_empty() || e["value"] == v))
        };
        assert!(has("FLEETLOAD_RUN_ID", &run_id), "{env}");
        assert!(has("FLEETLOAD_TARGET", "null"), "{env}");
        assert!(
            has(
                "FLEETLOAD_REPORT_URL",
                outputs["ReportUrl"].as_str().unwrap()
            ),
            "{env}"
        );
        assert!(has("FLEETLOAD_START_AT", ""), "{env}");
    }
    // SAFETY: kill(2) on our own child.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal the child");
    let out = child.wait_with_output().unwrap();
    let screen = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{screen}");
    assert!(screen.contains("DescribeTasks confirms"), "{screen}");
    // RunTask starts at most 10 tasks per call: 23 tasks take 10 + 10 + 3.
    assert!(
        screen.contains("starting: 23/23 tasks (3 RunTask calls, 0 throttled"),
        "{screen}"
    );
    let states = python_aws(
        "ecs = boto3.client('ecs', **kw)\narns = ecs.list_tasks(cluster=sys.argv[2], startedBy=sys.argv[3], desiredStatus='STOPPED')['taskArns']\nprint(' '.join(t['lastStatus'] for t in ecs.describe_tasks(cluster=sys.argv[2], tasks=arns)['tasks']))",
        &moto,
        &[outputs["ClusterName"].as_str().unwrap(), &run_id],
    );
    assert_eq!(
        states
            .split_whitespace()
            .filter(|s| *s == "STOPPED")
            .count(),
        23,
        "{states}"
    );
}
