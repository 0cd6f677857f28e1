//! Kafka over TLS against a real TLS endpoint: stunnel (Debian's `stunnel4`) with a CA and
//! certificates made here by the `openssl` command, in front of a tansu broker (the
//! Kafka-protocol broker the benchmarks use) that advertises the TLS port. What arrived is
//! read back over TLS by an independent client: Python confluent-kafka (Debian's kcat, built
//! on librdkafka 2.0, cannot read tansu 0.6's ApiVersions answer).
//!
//! Needs `tansu` (`FLEETLOAD_TEST_TANSU`, built by ci/test.sh), `stunnel4`, `openssl` and
//! confluent-kafka in the test venv (`FLEETLOAD_TEST_PYTHON`); ci/test.sh installs them. A test
//! fails, never skips, when one is missing.
//!
//! What tansu 0.6 can enforce: with `--authentication` it checks SCRAM against the credentials
//! in its storage (its in-memory storage keeps none, so every SCRAM login is refused, as a wrong
//! password is) and drops PLAIN handshakes. A successful SASL login cannot be had here, so the
//! SASL tests check that the settings reach the broker and that its refusal is clear.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{kafka_env, msk_iam, KAFKA_TASK};
use fleetload::model::report::Summary;

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

/// How long a preflight may take to name a TLS or authentication problem (the issue's limit).
const PREFLIGHT_LIMIT: Duration = Duration::from_secs(30);

fn tansu() -> PathBuf {
    let path = std::env::var("FLEETLOAD_TEST_TANSU").expect(
        "FLEETLOAD_TEST_TANSU is not set: run the tests through ci/test.sh, which builds the tansu broker",
    );
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "FLEETLOAD_TEST_TANSU={} does not exist",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (ci/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A CA, and certificates it signed, as PEM files in a directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { dir };
        pki.ca("ca");
        // Another CA, which signed nothing the broker shows.
        pki.ca("other-ca");
        // The broker's name is localhost (and only that, so that hostname checks are real).
        pki.leaf(
            "server",
            "ca",
            "localhost",
            Some("subjectAltName=DNS:localhost"),
        );
        pki.leaf("client", "ca", "fleetload-client", None);
        pki
    }

    fn ca(&self, name: &str) {
        run(
            Command::new("openssl").current_dir(self.dir.path()).args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=fleetload test {name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ]),
            "openssl req (CA)",
        );
    }

    fn leaf(&self, name: &str, ca: &str, cn: &str, ext: Option<&str>) {
        run(
            Command::new("openssl").current_dir(self.dir.path()).args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]),
            "openssl req (key)",
        );
        let mut cmd = Command::new("openssl");
        cmd.current_dir(self.dir.path()).args([
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
        ]);
        if let Some(ext) = ext {
            std::fs::write(self.path(&format!("{name}.ext")), ext).unwrap();
            cmd.args(["-extfile", &format!("{name}.ext")]);
        }
        run(&mut cmd, "openssl x509 (sign)");
    }
}

/// Between stunnel and tansu: relays every connection and appends what the clients sent, in
/// plain text after TLS, to a file. What a worker put on the wire (its SASL tokens) is read
/// there.
const TAP: &str = r#"
import socket, sys, threading
listen, target, capture = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
def pipe(src, dst, record):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if record:
                with lock, open(capture, "ab") as f:
                    f.write(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen))
server.listen(64)
while True:
    client, _ = server.accept()
    upstream = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pipe, args=(client, upstream, True), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client, False), daemon=True).start()
"#;

/// A tansu broker on a plaintext loopback port, advertising `localhost:TLS_PORT`, with stunnel
/// terminating TLS on that port and a tap ([`TAP`]) between the two. All are stopped when it is
/// dropped.
struct TlsBroker {
    tls_port: u16,
    children: Vec<Child>,
    /// What the clients sent through TLS, as the broker read it.
    capture: std::path::PathBuf,
    _stunnel_dir: tempfile::TempDir,
}

impl TlsBroker {
    fn start(pki: &Pki, require_client_cert: bool, tansu_args: &[&str]) -> TlsBroker {
        let plain_port = free_port();
        let tls_port = free_port();
        let mut children = Vec::new();
        let broker = Command::new(tansu())
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{plain_port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://localhost:{tls_port}"))
            .args(tansu_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        children.push(broker);
        let stunnel_dir = tempfile::tempdir().unwrap();
        let capture = stunnel_dir.path().join("sent-by-clients.bin");
        let tap_port = free_port();
        let tap = Command::new(python())
            .args(["-c", TAP, &tap_port.to_string(), &plain_port.to_string()])
            .arg(&capture)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the tap (the test venv's Python)");
        children.push(tap);
        let mut conf = format!(
            "foreground = yes\npid =\ndebug = 4\n[kafka]\naccept = 127.0.0.1:{tls_port}\n\
             connect = 127.0.0.1:{tap_port}\ncert = {}\nkey = {}\n",
            pki.path("server.pem").display(),
            pki.path("server.key").display()
        );
        if require_client_cert {
            // verify = 2: a client certificate signed by the CA is required.
            conf.push_str(&format!(
                "verify = 2\nCAfile = {}\n",
                pki.path("ca.pem").display()
            ));
        }
        let conf_path = stunnel_dir.path().join("stunnel.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let stunnel = Command::new("stunnel4")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel4 is needed as the TLS endpoint: ci/test.sh installs it");
        children.push(stunnel);
        let tb = TlsBroker {
            tls_port,
            children,
            capture,
            _stunnel_dir: stunnel_dir,
        };
        wait_for_port(plain_port, "tansu");
        wait_for_port(tap_port, "the tap");
        wait_for_port(tls_port, "stunnel");
        if tansu_args.contains(&"--authentication") {
            // Its topic command cannot log in; the tests against it stop before the topic.
            return tb;
        }
        run(
            Command::new(tansu())
                .args(["topic", "create", "events", "--partitions", "2", "--broker"])
                .arg(format!("tcp://127.0.0.1:{plain_port}")),
            "tansu topic create",
        );
        tb
    }

    fn servers(&self) -> String {
        format!("localhost:{}", self.tls_port)
    }

    /// The SASL/OAUTHBEARER tokens clients sent so far.
    fn oauthbearer_tokens(&self) -> Vec<String> {
        msk_iam::oauthbearer_tokens(&std::fs::read(&self.capture).unwrap_or_default())
    }
}

/// The credentials the MSK IAM tests give the worker.
const MSK_IAM_KEY: &str = "ASIAFLEETLOADTEST";
const MSK_IAM_SECRET: &str = "secret-key-of-the-test";
const MSK_IAM_SESSION: &str = "session-token-of-the-test";

/// Every token the broker was sent verifies with botocore against the worker's credentials
/// (and fails against another secret: the check can fail), and there was at least one.
fn assert_tokens_signed_with_the_credentials(broker: &TlsBroker) {
    let tokens = broker.oauthbearer_tokens();
    assert!(
        !tokens.is_empty(),
        "no OAUTHBEARER token reached the broker"
    );
    for token in &tokens {
        let (ok, out) = msk_iam::botocore_check(
            MSK_IAM_KEY,
            MSK_IAM_SECRET,
            MSK_IAM_SESSION,
            "eu-west-1",
            token,
            None,
        );
        assert!(ok, "{out}");
        let (ok, out) = msk_iam::botocore_check(
            MSK_IAM_KEY,
            "another-secret",
            MSK_IAM_SESSION,
            "eu-west-1",
            token,
            None,
        );
        assert!(!ok && out.contains("signature mismatch"), "{out}");
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The worker with only the given environment (and a path), bounded by `limit`.
fn run_worker(env: &[(String, String)], limit: Duration) -> (Output, Duration) {
    let mut cmd = Command::new(WORKER);
    cmd.env_clear();
    if let Ok(v) = std::env::var("PATH") {
        cmd.env("PATH", v);
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("start the worker");
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "worker still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn summary(root: &Path, run: &str) -> Summary {
    let path = root
        .join(run)
        .join("tasks")
        .join(KAFKA_TASK)
        .join("summary.json");
    Summary::from_json(&std::fs::read(&path).expect("summary.json written")).unwrap()
}

fn python() -> String {
    std::env::var("FLEETLOAD_TEST_PYTHON").expect(
        "FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh, which installs confluent-kafka",
    )
}

/// Reads every partition of topic `events` from the beginning until nothing more arrives for
/// 3 s (bounded at 60 s), and prints how many distinct (partition, offset) messages it read.
/// Not by the high watermarks: tansu 0.6 reports some one short.
const READ_BACK: &str = r#"
import sys, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
config = {"group.id": "read-back", "enable.auto.commit": False, "broker.address.family": "v4"}
for kv in sys.argv[1:]:
    k, _, v = kv.partition("=")
    config[k] = v
c = Consumer(config)
parts = c.list_topics("events", timeout=20).topics["events"].partitions
c.assign([TopicPartition("events", p, OFFSET_BEGINNING) for p in parts])
seen, last, start = set(), time.monotonic(), time.monotonic()
while time.monotonic() - last < 3:
    if time.monotonic() - start > 60:
        sys.exit(f"still reading after 60 s ({len(seen)} messages)")
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        sys.exit(str(m.error()))
    seen.add((m.partition(), m.offset()))
    last = time.monotonic()
c.close()
print(len(seen))
"#;

/// Every message in topic `events`, read over TLS with `props` by confluent-kafka.
fn read_back_count(servers: &str, props: &[(&str, String)]) -> u64 {
    let mut cmd = Command::new(python());
    cmd.args(["-c", READ_BACK])
        .arg(format!("bootstrap.servers={servers}"));
    for (k, v) in props {
        cmd.arg(format!("{k}={v}"));
    }
    let out = run(&mut cmd, "confluent-kafka read-back");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Produce at 500/s for 3 s with `extra`, and check that the run completed and what an
/// independent client reads back over TLS (with `reader`) equals what the worker counted
/// acknowledged.
fn produce_and_read_back(
    broker: &TlsBroker,
    run_id: &str,
    extra: &[(&str, &str)],
    reader: &[(&str, String)],
) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = vec![
        ("FLEETLOAD_RATE", "500"),
        ("FLEETLOAD_DURATION", "3s"),
        ("FLEETLOAD_KEYS", "20"),
        ("FLEETLOAD_KAFKA_BROKER_ADDRESS_FAMILY", "v4"),
    ];
    settings.extend_from_slice(extra);
    let (out, _) = run_worker(
        &kafka_env(&broker.servers(), run_id, dir.path(), &settings),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = summary(dir.path(), run_id);
    assert_eq!(s.counts.attempted, 1500, "{:?}", s.counts);
    assert_eq!(s.counts.acknowledged, 1500, "{:?}", s.counts);
    assert_eq!(
        read_back_count(&broker.servers(), reader),
        s.counts.acknowledged,
        "messages read back over TLS = acknowledged in the report"
    );
}

/// A run that must stop in preflight: exit 3 within the limit, a report that says it failed,
/// and stderr (returned) naming the cause.
fn refused(servers: &str, run_id: &str, extra: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = vec![
        ("FLEETLOAD_RATE", "100"),
        ("FLEETLOAD_DURATION", "2s"),
        ("FLEETLOAD_KAFKA_BROKER_ADDRESS_FAMILY", "v4"),
    ];
    settings.extend_from_slice(extra);
    let (out, took) = run_worker(
        &kafka_env(servers, run_id, dir.path(), &settings),
        Duration::from_secs(90),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(took < PREFLIGHT_LIMIT, "took {took:?}: {stderr}");
    let s = summary(dir.path(), run_id);
    assert_eq!(s.counts.attempted, 0, "{:?}", s.counts);
    assert!(
        !stderr.contains("did not answer"),
        "a generic message: {stderr}"
    );
    stderr
}

#[test]
fn tls_with_ca_file_every_acknowledged_message_is_read_back_over_tls() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, false, &[]);
    let ca = pki.path("ca.pem").display().to_string();
    produce_and_read_back(
        &broker,
        "tls-file",
        &[
            ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", &ca),
        ],
        &[
            ("security.protocol", "ssl".into()),
            ("ssl.ca.location", ca.clone()),
        ],
    );
}

#[test]
fn mtls_with_client_certificate_and_ca_as_pem_in_variables() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, true, &[]);
    let (ca, cert, key) = (
        pki.read("ca.pem"),
        pki.read("client.pem"),
        pki.read("client.key"),
    );
    produce_and_read_back(
        &broker,
        "mtls-pem",
        &[
            ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("FLEETLOAD_KAFKA_SSL_CA_PEM", &ca),
            ("FLEETLOAD_KAFKA_SSL_CERTIFICATE_PEM", &cert),
            ("FLEETLOAD_KAFKA_SSL_KEY_PEM", &key),
        ],
        &[
            ("security.protocol", "ssl".into()),
            ("ssl.ca.location", pki.path("ca.pem").display().to_string()),
            (
                "ssl.certificate.location",
                pki.path("client.pem").display().to_string(),
            ),
            (
                "ssl.key.location",
                pki.path("client.key").display().to_string(),
            ),
        ],
    );
}

#[test]
fn mtls_without_client_certificate_fails_preflight_with_exit_3() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, true, &[]);
    let ca = pki.path("ca.pem").display().to_string();
    let stderr = refused(
        &broker.servers(),
        "mtls-missing",
        &[
            ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", &ca),
        ],
    );
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert!(stderr.to_lowercase().contains("ssl"), "{stderr}");
}

#[test]
fn wrong_ca_fails_preflight_with_exit_3_naming_the_certificate_problem() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, false, &[]);
    let other = pki.path("other-ca.pem").display().to_string();
    let stderr = refused(
        &broker.servers(),
        "wrong-ca",
        &[
            ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", &other),
        ],
    );
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
}

#[test]
fn hostname_is_verified_by_default() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, false, &[]);
    let ca = pki.path("ca.pem").display().to_string();
    // The certificate names localhost only.
    let stderr = refused(
        &format!("127.0.0.1:{}", broker.tls_port),
        "wrong-host",
        &[
            ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", &ca),
        ],
    );
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
}

#[test]
fn plaintext_client_on_tls_port_fails_preflight_with_exit_3_naming_security_protocol() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, false, &[]);
    let stderr = refused(&broker.servers(), "plain-on-tls", &[]);
    assert!(stderr.contains("security.protocol"), "{stderr}");
}

#[test]
fn scram_unknown_user_fails_preflight_with_exit_3_naming_authentication() {
    let pki = Pki::new();
    // tansu with --authentication verifies SCRAM against the credentials in its storage;
    // its in-memory storage keeps none, so every SCRAM login is refused, as a wrong
    // password is.
    let broker = TlsBroker::start(&pki, false, &["--authentication"]);
    let ca = pki.path("ca.pem").display().to_string();
    let stderr = refused(
        &broker.servers(),
        "scram-refused",
        &[
            ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", &ca),
            ("FLEETLOAD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("FLEETLOAD_KAFKA_SASL_USERNAME", "loader"),
            ("FLEETLOAD_KAFKA_SASL_PASSWORD", "not-the-password"),
        ],
    );
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert!(stderr.contains("SASL authentication"), "{stderr}");
    assert!(
        !stderr.contains("not-the-password"),
        "the password leaked: {stderr}"
    );
}

#[test]
fn sasl_plain_settings_reach_the_broker_and_its_refusal_fails_preflight_with_exit_3() {
    let pki = Pki::new();
    // tansu drops PLAIN handshakes: what can be checked is that the mechanism was offered
    // over TLS and that the refusal is named, quickly, without the password.
    let broker = TlsBroker::start(&pki, false, &["--authentication"]);
    let ca = pki.path("ca.pem").display().to_string();
    let stderr = refused(
        &broker.servers(),
        "sasl-plain",
        &[
            ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", &ca),
            ("FLEETLOAD_KAFKA_SASL_MECHANISM", "PLAIN"),
            ("FLEETLOAD_KAFKA_SASL_USERNAME", "loader"),
            (
                "FLEETLOAD_KAFKA_SASL_PASSWORD",
                "plain-password-of-the-test",
            ),
        ],
    );
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert!(stderr.contains("sasl_ssl://"), "{stderr}");
    assert!(stderr.contains("SASL PLAIN"), "{stderr}");
    assert!(!stderr.contains("plain-password-of-the-test"), "{stderr}");
}

#[test]
fn msk_iam_without_aws_credentials_fails_preflight_naming_the_credential_chain() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, false, &["--authentication"]);
    let ca = pki.path("ca.pem").display().to_string();
    // No credentials anywhere in the chain (no variables, no profile, IMDS disabled).
    let stderr = refused(
        &broker.servers(),
        "msk-iam-no-credentials",
        &[
            ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", &ca),
            ("FLEETLOAD_KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
            ("AWS_REGION", "eu-west-1"),
            ("HOME", "/nonexistent"),
        ],
    );
    assert!(stderr.contains("no SASL token"), "{stderr}");
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
}

#[test]
fn msk_iam_refused_by_the_broker_fails_preflight_with_exit_3() {
    let pki = Pki::new();
    // tansu does not take MSK IAM tokens: it refuses the OAUTHBEARER login, as MSK refuses a
    // role without kafka-cluster:Connect.
    let broker = TlsBroker::start(&pki, false, &["--authentication"]);
    let ca = pki.path("ca.pem").display().to_string();
    let stderr = refused(
        &broker.servers(),
        "msk-iam-refused",
        &[
            ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", &ca),
            ("FLEETLOAD_KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", MSK_IAM_KEY),
            ("AWS_SECRET_ACCESS_KEY", MSK_IAM_SECRET),
            ("AWS_SESSION_TOKEN", MSK_IAM_SESSION),
        ],
    );
    // The whole path ran: credentials from the chain, a token signed with them (as botocore
    // verifies it from what reached the broker), the OAUTHBEARER exchange over TLS, and the
    // broker's refusal named.
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert!(stderr.contains("SASL authentication error"), "{stderr}");
    assert!(!stderr.contains(MSK_IAM_SECRET), "{stderr}");
    assert_tokens_signed_with_the_credentials(&broker);
}

#[test]
fn oidc_token_endpoint_unreachable_fails_preflight_naming_the_token() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, false, &["--authentication"]);
    let ca = pki.path("ca.pem").display().to_string();
    let closed = format!("http://127.0.0.1:{}/token", free_port());
    // librdkafka's own OIDC client-credentials flow (built with libcurl).
    let stderr = refused(
        &broker.servers(),
        "oidc-unreachable",
        &[
            ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", &ca),
            ("FLEETLOAD_KAFKA_SASL_MECHANISM", "OAUTHBEARER"),
            ("FLEETLOAD_KAFKA_SASL_OAUTHBEARER_METHOD", "oidc"),
            ("FLEETLOAD_KAFKA_SASL_OAUTHBEARER_CLIENT_ID", "loader"),
            (
                "FLEETLOAD_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
                "oidc-secret-of-the-test",
            ),
            (
                "FLEETLOAD_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
                &closed,
            ),
        ],
    );
    assert!(stderr.contains("no SASL token"), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1"),
        "the endpoint is named: {stderr}"
    );
    assert!(!stderr.contains("oidc-secret-of-the-test"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// A consumer task connects through the producer's configuration path: the same TLS settings,
// the same MSK IAM token source, the same preflight.

/// The worker variables that make a task a consumer of topic `events`.
const CONSUMER: [(&str, &str); 2] = [("FLEETLOAD_ROLE", "consume"), ("FLEETLOAD_SETTLE", "4s")];

#[test]
fn a_consumer_over_mtls_reads_back_every_event_a_producer_wrote_over_mtls() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, true, &[]);
    let (ca, cert, key) = (
        pki.read("ca.pem"),
        pki.read("client.pem"),
        pki.read("client.key"),
    );
    let dir = tempfile::tempdir().unwrap();
    let run = "tls-e2e";
    let start_at = (chrono::Utc::now() + chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let shared = [
        ("FLEETLOAD_RATE", "300"),
        ("FLEETLOAD_DURATION", "3s"),
        ("FLEETLOAD_KEYS", "20"),
        ("FLEETLOAD_START_AT", start_at.as_str()),
        ("FLEETLOAD_KAFKA_BROKER_ADDRESS_FAMILY", "v4"),
        ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SSL"),
        ("FLEETLOAD_KAFKA_SSL_CA_PEM", ca.as_str()),
        ("FLEETLOAD_KAFKA_SSL_CERTIFICATE_PEM", cert.as_str()),
        ("FLEETLOAD_KAFKA_SSL_KEY_PEM", key.as_str()),
    ];
    let mut consumer_env = shared.to_vec();
    consumer_env.extend(CONSUMER);
    // Beside the producer's report (task KAFKA_TASK), under its own id.
    consumer_env.push(("FLEETLOAD_TASK_ID", "consumer-1"));
    let consumer = {
        let env = kafka_env(&broker.servers(), run, dir.path(), &consumer_env);
        std::thread::spawn(move || run_worker(&env, Duration::from_secs(60)))
    };
    let mut producer_env = shared.to_vec();
    producer_env.push(("FLEETLOAD_TRACE", "on"));
    let (out, _) = run_worker(
        &kafka_env(&broker.servers(), run, dir.path(), &producer_env),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (out, _) = consumer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // The launcher's merge reconciles the consumer's delivery set with the producer's report.
    let merged = Command::new(env!("CARGO_BIN_EXE_launcher"))
        .args(["merge", dir.path().join(run).to_str().unwrap()])
        .args(["--threshold", "lost==0", "--threshold", "duplicates==0"])
        .output()
        .unwrap();
    assert_eq!(
        merged.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&merged.stdout),
        String::from_utf8_lossy(&merged.stderr)
    );
    let merged = Summary::from_json(
        &std::fs::read(dir.path().join(run).join("merged/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(merged.counts.acknowledged, 900, "{:?}", merged.counts);
    let e = merged.end_to_end.e2e.as_ref().unwrap();
    assert_eq!(e.unique, Some(900));
    assert_eq!((e.seen, e.lost, e.duplicates), (900, Some(0), 0));
}

#[test]
fn a_consumer_with_the_wrong_ca_fails_preflight_naming_the_certificate_problem() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, false, &[]);
    let other = pki.path("other-ca.pem").display().to_string();
    let mut extra = vec![
        ("FLEETLOAD_KAFKA_SECURITY_PROTOCOL", "SSL"),
        ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", other.as_str()),
    ];
    extra.extend(CONSUMER);
    let stderr = refused(&broker.servers(), "consumer-wrong-ca", &extra);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
}

#[test]
fn an_msk_iam_consumer_signs_its_token_and_the_brokers_refusal_is_named() {
    let pki = Pki::new();
    let broker = TlsBroker::start(&pki, false, &["--authentication"]);
    let ca = pki.path("ca.pem").display().to_string();
    let mut extra = vec![
        ("FLEETLOAD_KAFKA_SSL_CA_LOCATION", ca.as_str()),
        ("FLEETLOAD_KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", MSK_IAM_KEY),
        ("AWS_SECRET_ACCESS_KEY", MSK_IAM_SECRET),
        ("AWS_SESSION_TOKEN", MSK_IAM_SESSION),
    ];
    extra.extend(CONSUMER);
    let stderr = refused(&broker.servers(), "consumer-msk-iam", &extra);
    // Credentials from the chain, a token signed by the consumer's own context (botocore
    // verifies what reached the broker), the OAUTHBEARER exchange over TLS (SASL_SSL chosen for
    // MSK IAM), and the refusal named.
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert!(stderr.contains("SASL authentication error"), "{stderr}");
    assert!(stderr.contains("sasl_ssl://"), "{stderr}");
    assert!(!stderr.contains(MSK_IAM_SECRET), "{stderr}");
    assert_tokens_signed_with_the_credentials(&broker);
}
