//! Bad input through the binaries, table-driven: the worker's environment, `launcher run`'s flags
//! and env files, and `launcher merge` on corrupted report directories.
//!
//! Every case asserts the exit code (2 for bad input, 3 for a bad or missing report), that the
//! message names the input as the user typed it, that nothing was sent or written (no report
//! directory, no `started.json`, no task log; the Kafka brokers and the AWS endpoint are
//! loopback listeners that must see no connection), and that a secret planted in every
//! secret-bearing input appears in nothing printed or written.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{synthetic_task, write_task};
use fleetload::model::report::Outcome;
use fleetload::store::ReportStore;

const WORKER: &str = env!("CARGO_BIN_EXE_worker");
const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");

/// The planted secret: in a Kafka password, in a misspelt secret property, in the AWS secret key
/// of the process environment, in `-e` flags and env files.
const SECRET: &str = "planted-s3cret-7f9c2e";

/// How long a case may take: every one is refused before anything starts, so a case still
/// running after this was accepted, and fails.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// A loopback port that stands for every peer (Kafka brokers, the AWS endpoint): it must see no
/// connection.
struct Peer(TcpListener);

impl Peer {
    fn new() -> Peer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Peer(l)
    }

    fn addr(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    fn assert_untouched(&self, case: &str) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, from)) => panic!("{case}: a connection reached the peer from {from}"),
            Err(e) => panic!("{case}: {e}"),
        }
    }
}

fn run_limited(mut cmd: Command, case: &str) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start the binary");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > CASE_LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{case}: still running after {CASE_LIMIT:?} (the input was accepted); stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every byte of every file under `dir`.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if !dir.exists() {
        return out;
    }
    for entry in walk(dir) {
        if entry.is_file() {
            out.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The secret is in nothing printed and in no file under `dir`.
fn assert_no_secret(case: &str, out: &Output, dir: &Path) {
    assert!(
        !contains(&out.stdout, SECRET) && !contains(&out.stderr, SECRET),
        "{case}: the planted secret was printed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (path, bytes) in files_under(dir) {
        assert!(
            !contains(&bytes, SECRET),
            "{case}: the planted secret is in {path}"
        );
    }
}

/// One refusal: exit `code`, one line on stderr holding `names`, nothing on stdout.
fn assert_refused(case: &str, out: &Output, code: i32, names: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{case}: exit code\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stderr.contains(names),
        "{case}: the message does not name {names:?}:\n{stderr}"
    );
    assert!(
        stdout.trim().is_empty(),
        "{case}: printed on stdout:\n{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// The worker's environment.

/// `(environment, what the one-line message must contain)`. `@PEER` stands for the loopback
/// peer, `@SECRET` for the planted secret. A Kafka case gets a planted
/// `FLEETLOAD_KAFKA_SASL_PASSWORD` too.
type WorkerCase = (&'static [(&'static str, &'static str)], &'static str);

const KAFKA: [(&str, &str); 3] = [
    ("FLEETLOAD_TARGET", "kafka"),
    ("FLEETLOAD_TOPIC", "events"),
    ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "@PEER"),
];

const WORKER_CASES: &[WorkerCase] = &[
    // The target.
    (&[], "FLEETLOAD_TARGET is required"),
    (&[("FLEETLOAD_TARGET", "pulsar")], "FLEETLOAD_TARGET=\"pulsar\""),
    (&[("FLEETLOAD_TARGET", "")], "FLEETLOAD_TARGET=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "   ")], "FLEETLOAD_TARGET=\"   \" is not valid: empty"),
    // Unknown and malformed names.
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATON", "10s")], "did you mean FLEETLOAD_DURATION?"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_NOT_A_THING", "1")], "unknown variable FLEETLOAD_NOT_A_THING"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_SECRET_SAUCE", "@SECRET")], "unknown variable FLEETLOAD_SECRET_SAUCE"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_KAFKA_ACKS", "all")], "FLEETLOAD_KAFKA_ACKS=\"all\""),
    // Kinesis.
    (&[("FLEETLOAD_TARGET", "kinesis")], "FLEETLOAD_STREAM is required"),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "")], "FLEETLOAD_STREAM=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "bad name!")], "FLEETLOAD_STREAM=\"bad name!\""),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "arn:aws:s3:::bucket")], "FLEETLOAD_STREAM=\"arn:aws:s3:::bucket\""),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "s"), ("FLEETLOAD_TOPIC", "t")], "FLEETLOAD_TOPIC=\"t\""),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "s"), ("FLEETLOAD_KAFKA_SASL_PASSWORD", "@SECRET")], "FLEETLOAD_KAFKA_SASL_PASSWORD=\"***redacted***\""),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "s"), ("FLEETLOAD_BATCH_SIZE", "501")], "FLEETLOAD_BATCH_SIZE=\"501\""),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "s"), ("FLEETLOAD_PAYLOAD", "{\"a\":\"{{pad:2000000}}\"}")], "FLEETLOAD_PAYLOAD"),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "s"), ("FLEETLOAD_KINESIS_AGGREGATE", "yes")], "FLEETLOAD_KINESIS_AGGREGATE=\"yes\" is not valid: not on or off; accepted: on (user records packed into KPL aggregated records) or off"),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "s"), ("FLEETLOAD_KINESIS_AGGREGATE", "")], "FLEETLOAD_KINESIS_AGGREGATE=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "s"), ("FLEETLOAD_KINESIS_AGGREGATE", "1")], "FLEETLOAD_KINESIS_AGGREGATE=\"1\" is not valid: not on or off"),
    (&[("FLEETLOAD_TARGET", "kinesis"), ("FLEETLOAD_STREAM", "s"), ("FLEETLOAD_KINESIS_AGGREGATION", "on")], "did you mean FLEETLOAD_KINESIS_AGGREGATE?"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_KINESIS_AGGREGATE", "on")], "FLEETLOAD_KINESIS_AGGREGATE=\"on\" is not valid: aggregation only applies to FLEETLOAD_TARGET=kinesis, the target is null"),
    (&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_TOPIC", "t"), ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "@PEER"), ("FLEETLOAD_KINESIS_AGGREGATE", "off")], "FLEETLOAD_KINESIS_AGGREGATE=\"off\" is not valid: aggregation only applies to FLEETLOAD_TARGET=kinesis, the target is kafka"),
    // Kafka: the scenario's own rules.
    (&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "@PEER")], "FLEETLOAD_TOPIC is required"),
    (&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_TOPIC", "t")], "FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS is required"),
    (&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_TOPIC", "t"), ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "")], "FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_TOPIC", "bad topic"), ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "@PEER")], "FLEETLOAD_TOPIC=\"bad topic\""),
    (&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_TOPIC", "t"), ("FLEETLOAD_STREAM", "s"), ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "@PEER")], "FLEETLOAD_STREAM=\"s\""),
    (&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_TOPIC", "t"), ("FLEETLOAD_KAFKA_", "x"), ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "@PEER")], "FLEETLOAD_KAFKA_=\"x\""),
    (&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_TOPIC", "t"), ("FLEETLOAD_KAFKA_LINGER-MS", "5"), ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "@PEER")], "FLEETLOAD_KAFKA_LINGER-MS=\"5\""),
    (&[("FLEETLOAD_TARGET", "kafka"), ("FLEETLOAD_TOPIC", "t"), ("FLEETLOAD_KAFKA_SASL-PASSWORD", "@SECRET"), ("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", "@PEER")], "FLEETLOAD_KAFKA_SASL-PASSWORD=\"***redacted***\""),
    // Kafka: librdkafka's verdict, at validation, by the name typed.
    (&[("FLEETLOAD_KAFKA_LINGER_MS", "banana")], "FLEETLOAD_KAFKA_LINGER_MS=\"banana\""),
    (&[("FLEETLOAD_KAFKA_ACKS", "7")], "FLEETLOAD_KAFKA_ACKS=\"7\""),
    (&[("FLEETLOAD_KAFKA_COMPRESSION_TYPE", "lz5")], "FLEETLOAD_KAFKA_COMPRESSION_TYPE=\"lz5\""),
    (&[("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"), ("FLEETLOAD_KAFKA_SASL_MECHANISM", "BOGUS")], "Unsupported SASL mechanism: BOGUS"),
    // SASL settings without a SASL security.protocol: refused at once, not after the preflight.
    (&[("FLEETLOAD_KAFKA_SASL_MECHANISM", "BOGUS")], "FLEETLOAD_KAFKA_SASL_MECHANISM=\"BOGUS\" is not valid: a SASL setting, but security.protocol is PLAINTEXT (the default)"),
    (&[("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SSL"), ("FLEETLOAD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")], "FLEETLOAD_KAFKA_SASL_MECHANISM=\"SCRAM-SHA-512\" is not valid: a SASL setting, but security.protocol is SSL"),
    (&[("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "carrier_pigeon")], "FLEETLOAD_KAFKA_SECURITY_PROTOCOL=\"carrier_pigeon\""),
    (&[("FLEETLOAD_KAFKA_SASL_PASSWORD_X", "@SECRET")], "FLEETLOAD_KAFKA_SASL_PASSWORD_X=\"***redacted***\" is not valid: sasl.password.x is not a librdkafka property"),
    (&[("FLEETLOAD_KAFKA_NO_SUCH_PROPERTY", "1")], "FLEETLOAD_KAFKA_NO_SUCH_PROPERTY=\"1\""),
    (&[("FLEETLOAD_KAFKA_BATCH_NUM_MESSAGES", "-5")], "FLEETLOAD_KAFKA_BATCH_NUM_MESSAGES=\"-5\""),
    (&[("FLEETLOAD_KAFKA_MESSAGE_TIMEOUT_MS", "soon")], "FLEETLOAD_KAFKA_MESSAGE_TIMEOUT_MS=\"soon\""),
    (&[("FLEETLOAD_KAFKA_ENABLE_IDEMPOTENCE", "maybe")], "FLEETLOAD_KAFKA_ENABLE_IDEMPOTENCE=\"maybe\""),
    (&[("FLEETLOAD_KAFKA_LINGER_MS", "5"), ("FLEETLOAD_KAFKA_linger_ms", "50")], "also sets librdkafka property linger.ms"),
    (&[("FLEETLOAD_KAFKA_CLIENT_ID", " ")], "FLEETLOAD_KAFKA_CLIENT_ID=\" \" is not valid: empty"),
    // The load profile.
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATION", "")], "FLEETLOAD_DURATION=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATION", "abc")], "FLEETLOAD_DURATION=\"abc\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATION", "-5s")], "FLEETLOAD_DURATION=\"-5s\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATION", "10")], "FLEETLOAD_DURATION=\"10\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATION", "500ms")], "FLEETLOAD_DURATION=\"500ms\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATION", "0s")], "FLEETLOAD_DURATION=\"0s\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATION", "25h")], "FLEETLOAD_DURATION=\"25h\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_DURATION", "99999999999999999999s")], "FLEETLOAD_DURATION=\"99999999999999999999s\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RATE", "")], "FLEETLOAD_RATE=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RATE", "fast")], "FLEETLOAD_RATE=\"fast\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RATE", "-1")], "FLEETLOAD_RATE=\"-1\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RATE", "NaN")], "FLEETLOAD_RATE=\"NaN\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RATE", "inf")], "FLEETLOAD_RATE=\"inf\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RATE", "1e12")], "FLEETLOAD_RATE=\"1e12\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_STAGES", "")], "FLEETLOAD_STAGES=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_STAGES", "100@10s"), ("FLEETLOAD_RATE", "5")], "FLEETLOAD_STAGES and FLEETLOAD_RATE cannot both be given"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_STAGES", "100@10s"), ("FLEETLOAD_DURATION", "5s")], "FLEETLOAD_STAGES and FLEETLOAD_DURATION cannot both be given"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_STAGES", "100@30s,fast@1m")], "FLEETLOAD_STAGES=\"100@30s,fast@1m\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_STAGES", "100")], "FLEETLOAD_STAGES=\"100\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_STAGES", "0@10s")], "FLEETLOAD_STAGES=\"0@10s\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_STAGES", "100@10s,")], "FLEETLOAD_STAGES=\"100@10s,\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_STAGES", "1@20h,1@5h")], "FLEETLOAD_STAGES=\"1@20h,1@5h\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_STAGES", "1@18446744073709551615s,1@18446744073709551615s")], "FLEETLOAD_STAGES=\"1@18446744073709551615s,1@18446744073709551615s\""),
    // Whole numbers.
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_BATCH_SIZE", "")], "FLEETLOAD_BATCH_SIZE=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_BATCH_SIZE", "0")], "FLEETLOAD_BATCH_SIZE=\"0\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_BATCH_SIZE", "1.5")], "FLEETLOAD_BATCH_SIZE=\"1.5\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_MAX_IN_FLIGHT", "0")], "FLEETLOAD_MAX_IN_FLIGHT=\"0\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_MAX_IN_FLIGHT", "5000")], "FLEETLOAD_MAX_IN_FLIGHT=\"5000\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_MAX_IN_FLIGHT", "-1")], "FLEETLOAD_MAX_IN_FLIGHT=\"-1\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_KEYS", "")], "FLEETLOAD_KEYS=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_KEYS", "0")], "FLEETLOAD_KEYS=\"0\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_KEYS", "4294967296")], "FLEETLOAD_KEYS=\"4294967296\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_SEED", "")], "FLEETLOAD_SEED=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_SEED", "-1")], "FLEETLOAD_SEED=\"-1\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_SEED", "18446744073709551616")], "FLEETLOAD_SEED=\"18446744073709551616\""),
    // Payload templates.
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_PAYLOAD", "")], "FLEETLOAD_PAYLOAD=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_PAYLOAD", "{\"a\":{{nope}}}")], "FLEETLOAD_PAYLOAD="),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_PAYLOAD", "not json")], "FLEETLOAD_PAYLOAD="),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_PAYLOAD", "{\"a\":\"{{choice:a=18446744073709551615,b=1}}\"}")], "weights add up to more than"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_PAYLOAD", "{\"a\":{{float:-1e308:1e308}}}")], "beyond the largest float"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_PAYLOAD", "{\"a\":{{int:5:1}}}")], "MIN is above MAX"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_PAYLOAD", "@/nonexistent/template.json")], "FLEETLOAD_PAYLOAD="),
    // Where the report goes, and the ids in its path.
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_REPORT_URL", "")], "FLEETLOAD_REPORT_URL=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_REPORT_URL", "gs://b/p")], "FLEETLOAD_REPORT_URL=\"gs://b/p\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_REPORT_URL", "s3://B")], "FLEETLOAD_REPORT_URL=\"s3://B\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_REPORT_URL", "file://rel")], "FLEETLOAD_REPORT_URL=\"file://rel\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RUN_ID", "")], "FLEETLOAD_RUN_ID=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RUN_ID", "../etc")], "FLEETLOAD_RUN_ID=\"../etc\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_RUN_ID", ".hidden")], "FLEETLOAD_RUN_ID=\".hidden\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_TASK_ID", "")], "FLEETLOAD_TASK_ID=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_TASK_ID", "a/b")], "FLEETLOAD_TASK_ID=\"a/b\""),
    // The start instant.
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_START_AT", "")], "FLEETLOAD_START_AT=\"\" is not valid: empty"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_START_AT", "tomorrow")], "FLEETLOAD_START_AT=\"tomorrow\""),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_START_AT", "1970-01-01T00:00:00Z")], "FLEETLOAD_START_AT=\"1970-01-01T00:00:00Z\" is not valid: more than 1h in the past"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_START_AT", "2000-01-01T00:00:00+02:00")], "FLEETLOAD_START_AT=\"2000-01-01T00:00:00+02:00\" is not valid: more than 1h in the past"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_START_AT", "2999-01-01T00:00:00Z")], "FLEETLOAD_START_AT=\"2999-01-01T00:00:00Z\" is not valid: more than 24h in the future"),
    (&[("FLEETLOAD_TARGET", "null"), ("FLEETLOAD_START_AT", "2026-13-01T00:00:00Z")], "FLEETLOAD_START_AT=\"2026-13-01T00:00:00Z\""),
];

#[test]
fn bad_worker_environments_exit_2_name_the_variable_send_and_write_nothing_and_leak_no_secret() {
    let peer = Peer::new();
    let endpoint = format!("http://{}", peer.addr());
    for (i, (pairs, names)) in WORKER_CASES.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let reports = dir.path().join("reports");
        let mut vars: Vec<(String, String)> = Vec::new();
        let kafka_props =
            pairs.iter().all(|(k, _)| k.starts_with("FLEETLOAD_KAFKA_")) && !pairs.is_empty();
        if kafka_props {
            vars.extend(KAFKA.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        }
        for (k, v) in pairs.iter() {
            vars.retain(|(n, _)| n != k);
            vars.push((k.to_string(), v.to_string()));
        }
        let is_kafka = vars
            .iter()
            .any(|(k, v)| k == "FLEETLOAD_TARGET" && v == "kafka");
        if is_kafka && !vars.iter().any(|(k, _)| k.contains("PASSWORD")) {
            vars.push(("FLEETLOAD_KAFKA_SASL_PASSWORD".into(), SECRET.into()));
        }
        if !vars.iter().any(|(k, _)| k == "FLEETLOAD_REPORT_URL") {
            vars.push(("FLEETLOAD_REPORT_URL".into(), reports.display().to_string()));
        }
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.replace("@PEER", &peer.addr()).replace("@SECRET", SECRET),
                )
            })
            .collect();
        let case = format!("worker case {i} {pairs:?}");
        let mut cmd = Command::new(WORKER);
        cmd.env_clear()
            .current_dir(dir.path())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let out = run_limited(cmd, &case);
        assert_refused(&case, &out, 2, names);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{case}: {stderr}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{case}: something was written: {:?}",
            walk(dir.path())
        );
        assert_no_secret(&case, &out, dir.path());
        peer.assert_untouched(&case);
    }
    eprintln!("{} worker cases", WORKER_CASES.len());
}

// ---------------------------------------------------------------------------------------------
// `launcher run`'s flags and env files.

/// `(arguments after "run", what the one message must contain)`. `@DIR` is the case's inputs
/// directory (holding `afile`, a regular file, and the env files below), `@SECRET` the planted
/// secret. Every case also carries a `--report-url` in the (empty) directory the launcher runs
/// in, and a planted Kafka password.
type LauncherCase = (&'static [&'static str], &'static str);

/// Env files each case's scratch directory holds.
const ENV_FILES: &[(&str, &str)] = &[
    (
        "unterminated.env",
        "# a comment\nFLEETLOAD_RATE=5\nFLEETLOAD_KAFKA_SASL_PASSWORD=\"@SECRET\n",
    ),
    ("negative.env", "# rate\n\nFLEETLOAD_RATE=-5\n"),
    ("foreign.env", "FLEETLOAD_RATE=5\nAWS_REGION=eu-west-1\n"),
    ("blank.env", "FLEETLOAD_RATE=5\nFLEETLOAD_DURATION=\n"),
    (
        "secret.env",
        "FLEETLOAD_KAFKA_SASL_PASSWORD=@SECRET\nFLEETLOAD_KAFKA_LINGER_MS=banana\n",
    ),
    ("taskid.env", "FLEETLOAD_TASK_ID=t1\n"),
    ("nonutf8.env", "FLEETLOAD_RATE=\u{0}\n"),
];

const LAUNCHER_CASES: &[LauncherCase] = &[
    // The number of tasks.
    (&[], "--tasks <N>"),
    (&["--tasks", "0"], "'0' for '--tasks <N>': out of range; accepted: a whole number from 1"),
    (&["--tasks", "-1"], "'-1' for '--tasks <N>': out of range; accepted: a whole number from 1"),
    (&["--tasks", "many"], "'many' for '--tasks <N>': not a whole number"),
    (&["--tasks", "99999999999"], "'99999999999' for '--tasks <N>': out of range"),
    (&["--tasks", "100000"], "--tasks 100000: the local backend runs at most 256 worker processes"),
    // Scenario flags, named as typed.
    (&["--tasks", "1", "--rate", "-5"], "(from --rate): FLEETLOAD_RATE=\"-5\""),
    (&["--tasks", "1", "--rate", "fast"], "(from --rate): FLEETLOAD_RATE=\"fast\""),
    (&["--tasks", "1", "--rate", ""], "--rate \"\": empty"),
    (&["--tasks", "1", "--duration", ""], "--duration \"\": empty"),
    (&["--tasks", "1", "--duration", "25h"], "(from --duration): FLEETLOAD_DURATION=\"25h\""),
    (&["--tasks", "1", "--duration", "-5s"], "(from --duration): FLEETLOAD_DURATION=\"-5s\""),
    (&["--tasks", "1", "--stages", "fast@1m"], "(from --stages): FLEETLOAD_STAGES=\"fast@1m\""),
    (&["--tasks", "1", "--stages", "1@1s", "--rate", "5"], "'--stages <S>' cannot be used with '--rate <R>'"),
    (&["--tasks", "1", "--run-id", ""], "--run-id \"\": empty"),
    (&["--tasks", "1", "--run-id", "../x"], "(from --run-id): FLEETLOAD_RUN_ID=\"../x\""),
    (&["--tasks", "1", "--target", "pulsar"], "(from --target): FLEETLOAD_TARGET=\"pulsar\""),
    (&["--tasks", "1", "--target", ""], "--target \"\": empty"),
    (&["--tasks", "1", "--target", "kinesis"], "FLEETLOAD_STREAM is required"),
    (&["--tasks", "1", "--target", "kinesis", "-e", "FLEETLOAD_STREAM=s", "-e", "FLEETLOAD_KINESIS_AGGREGATE=true"], "FLEETLOAD_KINESIS_AGGREGATE=\"true\" is not valid: not on or off"),
    (&["--tasks", "1", "--target", "kafka", "--topic", "t"], "FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS is required"),
    (&["--tasks", "1", "--report-url", "gs://b/p"], "FLEETLOAD_REPORT_URL=\"gs://b/p\""),
    (&["--tasks", "1", "--report-url", ""], "--report-url \"\": empty"),
    // The start delay, bounded as the workers bound their start instant.
    (&["--tasks", "1", "--start-delay", "1000h"], "--start-delay \"1000h\": the workers refuse a start instant more than 24h away"),
    (&["--tasks", "1", "--start-delay", "0s"], "--start-delay \"0s\""),
    (&["--tasks", "1", "--start-delay", "soon"], "--start-delay \"soon\""),
    (&["--tasks", "1", "--start-delay", "-5s"], "--start-delay \"-5s\""),
    // -e.
    (&["--tasks", "1", "-e", "FLEETLOAD_KAFKA_LINGER_MS=banana"], "FLEETLOAD_KAFKA_LINGER_MS=\"banana\""),
    (&["--tasks", "1", "-e", "FLEETLOAD_KAFKA_ACKS=7"], "FLEETLOAD_KAFKA_ACKS=\"7\""),
    (&["--tasks", "1", "-e", "FLEETLOAD_KAFKA_COMPRESSION_TYPE=lz5"], "FLEETLOAD_KAFKA_COMPRESSION_TYPE=\"lz5\""),
    (&["--tasks", "1", "-e", "FLEETLOAD_KAFKA_SASL_PASSWORD_X=@SECRET"], "FLEETLOAD_KAFKA_SASL_PASSWORD_X=\"***redacted***\""),
    (&["--tasks", "1", "-e", "FLEETLOAD_SEED="], "-e FLEETLOAD_SEED=\"\": empty"),
    (&["--tasks", "1", "-e", "FLEETLOAD_DURATON=5s"], "did you mean FLEETLOAD_DURATION?"),
    (&["--tasks", "1", "-e", "NOT_OURS=1"], "-e NOT_OURS: only FLEETLOAD_* variables"),
    (&["--tasks", "1", "-e", "FLEETLOAD_TASK_ID=t"], "-e FLEETLOAD_TASK_ID: set by the launcher"),
    (&["--tasks", "1", "-e", "FLEETLOAD_START_AT=2026-01-01T00:00:00Z"], "-e FLEETLOAD_START_AT: set by the launcher"),
    (&["--tasks", "1", "-e", "novalue"], "\"novalue\" is not KEY=VALUE"),
    (&["--tasks", "1", "-e", "=@SECRET"], "no KEY before the ="),
    (&["--tasks", "1", "-e", "FLEETLOAD_KAFKA_SASL_PASSWORD", "@SECRET"], "unexpected argument '***redacted***'"),
    (&["--tasks", "1", "-e", "FLEETLOAD_PAYLOAD={\"a\":{{nope}}}"], "FLEETLOAD_PAYLOAD="),
    // --env-file.
    (&["--tasks", "1", "--env-file", "@DIR/missing.env"], "--env-file @DIR/missing.env: cannot read it (No such file or directory (os error 2)); accepted"),
    (&["--tasks", "1", "--env-file", "@DIR"], "--env-file @DIR: cannot read it"),
    (&["--tasks", "1", "--env-file", "@DIR/unterminated.env"], "--env-file @DIR/unterminated.env line 3 (FLEETLOAD_KAFKA_SASL_PASSWORD): not KEY=VALUE"),
    (&["--tasks", "1", "--env-file", "@DIR/negative.env"], "(from --env-file @DIR/negative.env line 3): FLEETLOAD_RATE=\"-5\""),
    (&["--tasks", "1", "--env-file", "@DIR/foreign.env"], "--env-file @DIR/foreign.env line 2 AWS_REGION: only FLEETLOAD_* variables"),
    (&["--tasks", "1", "--env-file", "@DIR/blank.env"], "--env-file @DIR/blank.env line 2 FLEETLOAD_DURATION=\"\": empty"),
    (&["--tasks", "1", "--env-file", "@DIR/secret.env"], "(from --env-file @DIR/secret.env line 2): FLEETLOAD_KAFKA_LINGER_MS=\"banana\""),
    (&["--tasks", "1", "--env-file", "@DIR/taskid.env"], "--env-file @DIR/taskid.env line 1 FLEETLOAD_TASK_ID: set by the launcher"),
    // Thresholds and the JUnit file, checked before the run.
    (&["--tasks", "1", "--threshold", "p99<<5ms"], "bad threshold \"p99<<5ms\""),
    (&["--tasks", "1", "--threshold", "p98<5ms"], "unknown metric \"p98\""),
    (&["--tasks", "1", "--threshold", "error_rate<200%"], "above 100%"),
    (&["--tasks", "1", "--threshold", "p99<5parsecs"], "unknown latency unit"),
    (&["--tasks", "1", "--junit", "@DIR/afile/x.xml"], "--junit \"@DIR/afile/x.xml\": @DIR/afile is not a directory"),
    (&["--tasks", "1", "--junit", "@DIR"], "--junit \"@DIR\": is a directory"),
    // End to end: consumer tasks, what they read, their own variables.
    (&["--tasks", "1", "--consumers", "0"], "'0' for '--consumers <M>': out of range; accepted: a whole number from 1 to 1000"),
    (&["--tasks", "1", "--consumers", "1001"], "'1001' for '--consumers <M>': out of range"),
    (&["--tasks", "1", "--consumers", "two"], "'two' for '--consumers <M>': not a whole number"),
    (&["--tasks", "200", "--consumers", "100"], "--tasks 200 --consumers 100: the local backend runs at most 256 worker processes"),
    (&["--tasks", "1", "--consume-from", ""], "--consume-from \"\": empty; accepted: kinesis:STREAM"),
    (&["--tasks", "1", "--consume-from", "enriched"], "--consume-from \"enriched\": no kinesis: or kafka: before the name; accepted: kinesis:STREAM (a stream name or ARN) or kafka:TOPIC"),
    (&["--tasks", "1", "--consume-from", "pulsar:out"], "--consume-from \"pulsar:out\": \"pulsar\" is not a target consumers can read"),
    (&["--tasks", "1", "--consume-from", "kinesis:"], "--consume-from \"kinesis:\": no stream or topic after the colon"),
    (&["--tasks", "1", "--consume-from", "kafka:out/put"], "the consumer tasks' scenario is not valid (from --consume-from kafka:out/put): FLEETLOAD_TOPIC=\"out/put\""),
    (&["--tasks", "1", "--consume-from", "kinesis:no spaces"], "(from --consume-from kinesis:no spaces): FLEETLOAD_STREAM=\"no spaces\""),
    (&["--tasks", "1", "--consumers", "1", "--target", "null"], "--target null with --consumers: the null target sends nothing"),
    (&["--tasks", "1", "--consumers", "1", "-e", "FLEETLOAD_TRACE=off"], "-e FLEETLOAD_TRACE=\"off\": with --consumers every produced event carries a trace"),
    (&["--tasks", "1", "--consumers", "1", "-e", "FLEETLOAD_ROLE=consume"], "-e FLEETLOAD_ROLE: set by the launcher for each task of a run with --consumers"),
    (&["--tasks", "1", "--consumers", "1", "--consumer-env", "FLEETLOAD_TRACE=off"], "--consumer-env FLEETLOAD_TRACE: a consumer produces nothing"),
    (&["--tasks", "1", "--target", "kafka", "--topic", "events", "-e", "FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9", "-e", "FLEETLOAD_KAFKA_SASL_MECHANISM=BOGUS"], "FLEETLOAD_KAFKA_SASL_MECHANISM=\"BOGUS\" is not valid: a SASL setting, but security.protocol is PLAINTEXT (the default)"),
    (&["--tasks", "1", "--consumer-env", "FLEETLOAD_SETTLE=5s"], "--consumer-env FLEETLOAD_SETTLE: the run has no consumer tasks"),
    (&["--tasks", "1", "--consumers", "1", "--consumer-env", "FLEETLOAD_RATE=5"], "--consumer-env FLEETLOAD_RATE: the consumers share the run, its report location and the producers' schedule"),
    (&["--tasks", "1", "--consumers", "1", "--consumer-env", "FLEETLOAD_TOPIC=x"], "--consumer-env FLEETLOAD_TOPIC: what the consumers read is --consume-from"),
    (&["--tasks", "1", "--consumers", "1", "--consumer-env", "FLEETLOAD_SETTLE=2h"], "(from --consumer-env): FLEETLOAD_SETTLE=\"2h\""),
    (&["--tasks", "1", "--consumers", "1", "--consumer-env", "FLEETLOAD_SETTLE="], "--consumer-env FLEETLOAD_SETTLE: empty"),
    (&["--tasks", "1", "--consumers", "1", "--consumer-env", "FLEETLOAD_KAFKA_SASL_PASSWORD", "@SECRET"], "unexpected argument '***redacted***'"),
    // Producing to Kinesis, reading a Kafka topic: the consumers need their own brokers.
    (&["--tasks", "1", "--target", "kinesis", "--stream", "in", "--consume-from", "kafka:out", "--consumer-env", "FLEETLOAD_KAFKA_SASL_PASSWORD=@SECRET"], "the consumer tasks' scenario is not valid: FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS is required for FLEETLOAD_TARGET=kafka"),
    // Backends.
    (&["--tasks", "1", "--backend", "local", "--cluster", "c"], "ECS options (--stack, --cluster, --subnets, …) were given with --backend local"),
    (&["--tasks", "1", "--backend", "ecs", "--target", "null"], "the ECS backend needs --cluster and --task-definition"),
    (&["--tasks", "1", "--backend", "moon"], "'moon' for '--backend <BACKEND>'"),
    (&["--tasks", "1", "--bogus"], "unexpected argument '--bogus'"),
];

#[test]
fn bad_launcher_runs_exit_2_name_the_input_start_nothing_and_leak_no_secret() {
    let peer = Peer::new();
    let endpoint = format!("http://{}", peer.addr());
    for (i, (args, names)) in LAUNCHER_CASES.iter().enumerate() {
        // The inputs (which hold the secret) apart from where the launcher runs and writes.
        let inputs = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = inputs.path().display().to_string();
        std::fs::write(inputs.path().join("afile"), "a regular file").unwrap();
        for (name, text) in ENV_FILES {
            std::fs::write(inputs.path().join(name), text.replace("@SECRET", SECRET)).unwrap();
        }
        let reports = dir.path().join("reports");
        let mut argv: Vec<String> = vec!["run".into()];
        argv.extend(
            args.iter()
                .map(|a| a.replace("@DIR", &d).replace("@SECRET", SECRET)),
        );
        if !args.is_empty() && !args.contains(&"--bogus") {
            if !args.contains(&"--report-url") {
                argv.push("--report-url".into());
                argv.push(reports.display().to_string());
            }
            // A secret among the Kafka properties of every run (the embedded broker's, or
            // ignored by the target); not a SASL one, which needs a SASL security.protocol.
            if !args.iter().any(|a| a.contains("PASSWORD")) {
                argv.push("-e".into());
                argv.push(format!("FLEETLOAD_KAFKA_SSL_KEY_PASSWORD={SECRET}"));
            }
        }
        let case = format!("launcher case {i} {args:?}");
        let mut cmd = Command::new(LAUNCHER);
        cmd.args(&argv)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (k, _) in std::env::vars() {
            if k.starts_with("FLEETLOAD_") {
                cmd.env_remove(k);
            }
        }
        let out = run_limited(cmd, &case);
        assert_refused(&case, &out, 2, &names.replace("@DIR", &d));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        // One message: the launcher's own line, or clap's usage error (message, usage, hint).
        assert!(
            lines.len() == 1 || (lines[0].starts_with("error: ") && lines.len() <= 4),
            "{case}: more than one message:\n{stderr}"
        );
        if lines.len() == 1 {
            let message = lines[0];
            let once = message.split(": ").collect::<Vec<_>>();
            let mut seen = std::collections::BTreeSet::new();
            for part in once.iter().filter(|p| p.len() > 20) {
                assert!(
                    seen.insert(*part),
                    "{case}: said twice: {part:?} in {message}"
                );
            }
        }
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{case}: something was written: {:?}",
            walk(dir.path())
        );
        assert_no_secret(&case, &out, dir.path());
        peer.assert_untouched(&case);
    }
    eprintln!("{} launcher cases", LAUNCHER_CASES.len());
}

/// A password that is not UTF-8 (bytes of a binary file, say) is refused by its name, by the
/// worker from its environment and by the launcher from `-e`: exit 2, one line, nothing sent or
/// written. Read lossily it would become another password that fails only at the broker.
#[test]
fn a_value_that_is_not_utf8_is_refused_by_name_by_the_worker_and_the_launcher() {
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = std::ffi::OsStr::from_bytes(b"pass\xffword");
    let peer = Peer::new();
    let dir = tempfile::tempdir().unwrap();
    let mut worker = Command::new(WORKER);
    worker
        .env_clear()
        .current_dir(dir.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLEETLOAD_TARGET", "kafka")
        .env("FLEETLOAD_TOPIC", "events")
        .env("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS", peer.addr())
        .env("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        .env("FLEETLOAD_KAFKA_SASL_MECHANISM", "PLAIN")
        .env("FLEETLOAD_KAFKA_SASL_USERNAME", "loader")
        .env("FLEETLOAD_KAFKA_SASL_PASSWORD", not_utf8)
        .env("FLEETLOAD_REPORT_URL", dir.path().join("reports"));
    let out = run_limited(worker, "worker, password not UTF-8");
    assert_refused(
        "worker",
        &out,
        2,
        "FLEETLOAD_KAFKA_SASL_PASSWORD is not valid: its value is not UTF-8 text",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1
    );

    let mut arg = std::ffi::OsString::from("FLEETLOAD_KAFKA_SASL_PASSWORD=");
    arg.push(not_utf8);
    let mut launcher = Command::new(LAUNCHER);
    launcher
        .current_dir(dir.path())
        .args([
            "run", "--tasks", "1", "--target", "kafka", "--topic", "events", "-e",
        ])
        .arg(format!("FLEETLOAD_KAFKA_BOOTSTRAP_SERVERS={}", peer.addr()))
        .arg("-e")
        .arg(arg);
    let out = run_limited(launcher, "launcher, password not UTF-8");
    assert_refused(
        "launcher",
        &out,
        2,
        "FLEETLOAD_KAFKA_SASL_PASSWORD=… is not valid: not UTF-8 text",
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "something was written: {:?}",
        walk(dir.path())
    );
    peer.assert_untouched("not UTF-8");
}

// ---------------------------------------------------------------------------------------------
// `launcher merge` on corrupted reports and bad arguments.

const RUN: &str = "run-bad";

/// A corruption of task `task-z`'s report, written after a sound `task-a` and `task-z`.
type Corrupt = fn(&Path);

fn set_summary(dir: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let path = dir.join("summary.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// `(corruption, exit code, what the output must name)`.
const MERGE_CASES: &[(&str, Corrupt, i32, &str)] = &[
    (
        "truncated summary",
        |d| {
            let s = std::fs::read(d.join("summary.json")).unwrap();
            std::fs::write(d.join("summary.json"), &s[..s.len() / 2]).unwrap();
        },
        3,
        "task-z (unreadable report: summary.json",
    ),
    (
        "empty summary",
        |d| std::fs::write(d.join("summary.json"), b"").unwrap(),
        3,
        "task-z (unreadable report: summary.json",
    ),
    (
        "binary summary",
        |d| std::fs::write(d.join("summary.json"), [0xff, 0xfe, 0, 1, 2]).unwrap(),
        3,
        "task-z (unreadable report: summary.json",
    ),
    (
        "summary is a list",
        |d| std::fs::write(d.join("summary.json"), b"[1,2,3]").unwrap(),
        3,
        "task-z (unreadable report: summary.json",
    ),
    (
        "future schema",
        |d| set_summary(d, |v| v["schema_version"] = 999.into()),
        3,
        "task-z (unreadable report: summary.json",
    ),
    (
        "another run's summary",
        |d| set_summary(d, |v| v["run_id"] = "other-run".into()),
        3,
        "belongs to run \"other-run\"",
    ),
    (
        "garbage histogram",
        |d| {
            set_summary(d, |v| {
                v["histograms"]["latency"] = "bm90IGEgaGlzdG9ncmFt".into()
            })
        },
        3,
        "latency histogram in summary.json",
    ),
    (
        "histogram not base64",
        |d| set_summary(d, |v| v["histograms"]["latency"] = "!!!".into()),
        3,
        "latency histogram in summary.json",
    ),
    (
        "counts that do not add up",
        |d| set_summary(d, |v| v["counts"]["acknowledged"] = 1_000_000.into()),
        3,
        "summary.json counts do not add up",
    ),
    (
        "negative count",
        |d| set_summary(d, |v| v["counts"]["attempted"] = (-5).into()),
        3,
        "task-z (unreadable report: summary.json",
    ),
    (
        "counts past u64 across tasks",
        |d| {
            set_summary(d, |v| {
                v["counts"]["attempted"] = u64::MAX.into();
                v["counts"]["acknowledged"] = u64::MAX.into();
                v["counts"]["failed"] = 0.into();
                v["counts"]["failed_by_code"] = serde_json::json!({});
            })
        },
        3,
        "pass the largest count, 18446744073709551615",
    ),
    (
        "bytes past u64 across tasks",
        |d| set_summary(d, |v| v["bytes"] = u64::MAX.into()),
        3,
        "pass the largest count, 18446744073709551615",
    ),
    (
        "timeseries missing",
        |d| std::fs::remove_file(d.join("timeseries.csv")).unwrap(),
        3,
        "timeseries.csv is missing",
    ),
    (
        "timeseries garbage",
        |d| std::fs::write(d.join("timeseries.csv"), b"what,is,this\n1,2,3\n").unwrap(),
        3,
        "task-z (unreadable report: ",
    ),
    (
        "timeseries row beyond any run",
        |d| {
            let t = std::fs::read_to_string(d.join("timeseries.csv")).unwrap();
            let header = t.lines().next().unwrap();
            let cols = header.split(',').count();
            let row = std::iter::once("99999999999".to_string())
                .chain((1..cols).map(|_| "0".to_string()))
                .collect::<Vec<_>>()
                .join(",");
            std::fs::write(d.join("timeseries.csv"), format!("{header}\n{row}\n")).unwrap();
        },
        3,
        "beyond any run",
    ),
    (
        "hlog missing",
        |d| std::fs::remove_file(d.join("histograms.hlog")).unwrap(),
        3,
        "histograms.hlog is missing",
    ),
    (
        "hlog garbage",
        |d| std::fs::write(d.join("histograms.hlog"), b"0.0,1.0,2.0,not-a-histogram\n").unwrap(),
        3,
        "task-z (unreadable report: ",
    ),
];

async fn two_sound_tasks(root: &Path) {
    let store = ReportStore::Local(root.to_path_buf());
    for (id, values) in [
        ("task-a", &[1000u64, 2000][..]),
        ("task-z", &[3000, 4000][..]),
    ] {
        write_task(
            &store,
            &synthetic_task(RUN, id, values, 0, 2, Outcome::Completed),
        )
        .await;
    }
}

fn merge(args: &[String], cwd: &Path) -> (String, Output) {
    let mut cmd = Command::new(LAUNCHER);
    cmd.arg("merge")
        .args(args)
        .current_dir(cwd)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let case = format!("merge {args:?}");
    let out = run_limited(cmd, &case);
    (case, out)
}

#[tokio::test]
async fn corrupted_reports_exit_3_naming_the_task_and_the_file() {
    for (what, corrupt, code, names) in MERGE_CASES {
        let dir = tempfile::tempdir().unwrap();
        two_sound_tasks(dir.path()).await;
        corrupt(&dir.path().join(RUN).join("tasks/task-z"));
        let location = format!("{}/{RUN}", dir.path().display());
        let (case, out) = merge(&[location], dir.path());
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(*code), "{what}: {case}\n{shown}");
        assert!(
            shown.contains(names),
            "{what}: does not name {names:?}:\n{shown}"
        );
        // A report on every path out: the merged summary is written and names the bad task.
        let merged = std::fs::read_to_string(dir.path().join(RUN).join("merged/summary.json"))
            .unwrap_or_else(|e| panic!("{what}: no merged summary: {e}\n{shown}"));
        assert!(merged.contains("task-z"), "{what}: {merged}");
        assert_no_secret(what, &out, dir.path());
    }
    eprintln!("{} merge report cases", MERGE_CASES.len());
}

#[test]
fn bad_merge_arguments_are_refused_before_reading_and_write_nothing() {
    // (arguments, exit code, what the message names); @DIR is a scratch directory with a sound
    // run `run-bad` whose tasks/ lists nothing, and `afile`, a regular file.
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["@DIR/run-bad", "--expected-tasks", "0"],
            2,
            "'0' for '--expected-tasks <N>': out of range",
        ),
        (
            &["@DIR/run-bad", "--expected-tasks", "-1"],
            2,
            "'-1' for '--expected-tasks <N>': out of range",
        ),
        (
            &["@DIR/run-bad", "--expected-tasks", "many"],
            2,
            "'many' for '--expected-tasks <N>': not a whole number",
        ),
        (
            &["@DIR/no-such-run"],
            3,
            "@DIR/no-such-run does not exist, so no task of run no-such-run reported there",
        ),
        (&["run-only"], 2, "\"run-only\" names no run"),
        (
            &["gs://bucket/run"],
            2,
            "\"gs://bucket/run\" is not a run location",
        ),
        (
            &["@DIR/run-bad", "--threshold", "p99<<5ms"],
            2,
            "bad threshold \"p99<<5ms\"",
        ),
        (
            &["@DIR/run-bad", "--junit", "@DIR/afile/x.xml"],
            2,
            "--junit \"@DIR/afile/x.xml\": @DIR/afile is not a directory",
        ),
        (&[], 2, "<REPORT_URL/RUN_ID>"),
    ];
    for (args, code, names) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("run-bad/tasks")).unwrap();
        std::fs::write(dir.path().join("afile"), "a regular file").unwrap();
        let argv: Vec<String> = args.iter().map(|a| a.replace("@DIR", &d)).collect();
        let (case, out) = merge(&argv, dir.path());
        assert_refused(&case, &out, *code, &names.replace("@DIR", &d));
        assert!(
            !dir.path().join("run-bad/merged").exists(),
            "{case}: merged/ was written"
        );
        assert_no_secret(&case, &out, dir.path());
    }
    eprintln!("{} merge argument cases", cases.len());
}
