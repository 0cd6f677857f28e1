//! Amazon MSK IAM tokens, checked by an independent SigV4 implementation: botocore (in the
//! test's Python venv, `FLEETLOAD_TEST_PYTHON`) recomputes the presigned URL's signature from
//! the same credentials (session token included) and the signing time the token carries, and
//! checks the token's format as AWS's `aws-msk-iam-sasl-signer` libraries make it.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use fleetload::worker::{sign_msk_iam_token, MSK_IAM_TOKEN_LIFETIME};

fn python() -> String {
    std::env::var("FLEETLOAD_TEST_PYTHON").expect(
        "FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh, which installs botocore",
    )
}

/// botocore's verdict on `token`, given the credentials the checker is told about.
const CHECKER: &str = r#"
import base64, datetime, json, sys
from urllib.parse import urlsplit, parse_qsl
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

case = json.load(sys.stdin)
token = case["token"]
assert "=" not in token and "+" not in token and "/" not in token, "not base64url without padding"
url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
parts = urlsplit(url)
query = dict(parse_qsl(parts.query, keep_blank_values=True))
assert parts.scheme == "https", url
assert parts.netloc == f"kafka.{case['region']}.amazonaws.com", url
assert query["Action"] == "kafka-cluster:Connect", query
assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256", query
assert query["X-Amz-Expires"] == "900", query
assert query["X-Amz-SignedHeaders"] == "host", query
assert query["User-Agent"].startswith("fleetload/"), query
assert query["X-Amz-Security-Token"] == case["session_token"], query
assert query["X-Amz-Credential"].startswith(case["access_key"] + "/"), query
amz_date = query["X-Amz-Date"]
signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
assert int(signed_at.timestamp()) * 1000 + 900_000 == case["expires_at_ms"], (amz_date, case["expires_at_ms"])

# What aws-msk-iam-sasl-signer-python signs, at the token's own time.
credentials = Credentials(case["access_key"], case["secret_key"], case["session_token"])
request = AWSRequest(method="GET", url=f"https://kafka.{case['region']}.amazonaws.com/",
                     params={"Action": "kafka-cluster:Connect"})
signer = SigV4QueryAuth(credentials, "kafka-cluster", case["region"], expires=900)
request.context["timestamp"] = amz_date
signer._modify_request_before_signing(request)
canonical = signer.canonical_request(request)
expected = signer.signature(signer.string_to_sign(request, canonical), request)
if query["X-Amz-Signature"] != expected:
    print(f"signature mismatch: token {query['X-Amz-Signature']} botocore {expected}")
    sys.exit(1)
print("ok")
"#;

struct Case {
    access_key: &'static str,
    secret_key: &'static str,
    session_token: &'static str,
    region: &'static str,
}

const TASK_ROLE: Case = Case {
    access_key: "ASIAFLEETLOADTEST",
    secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    // Session tokens carry '/', '+' and '=', which must be encoded in the URL.
    session_token: "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+session/token==",
    region: "eu-west-1",
};

/// Runs botocore's check of `token`, telling it `secret_key`; returns (passed, output).
fn botocore_check(
    case: &Case,
    secret_key: &str,
    token: &str,
    expires_at_ms: i64,
) -> (bool, String) {
    let input = serde_json::json!({
        "token": token,
        "expires_at_ms": expires_at_ms,
        "access_key": case.access_key,
        "secret_key": secret_key,
        "session_token": case.session_token,
        "region": case.region,
    });
    let mut child = Command::new(python())
        .args(["-c", CHECKER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the test's Python (botocore)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn credentials(case: &Case) -> Credentials {
    Credentials::new(
        case.access_key,
        case.secret_key,
        Some(case.session_token.to_string()),
        None,
        "test",
    )
}

#[test]
fn msk_iam_token_signature_verifies_with_botocore_session_token_included() {
    let now = SystemTime::now();
    let token = sign_msk_iam_token(
        &credentials(&TASK_ROLE),
        TASK_ROLE.region,
        now,
        MSK_IAM_TOKEN_LIFETIME,
    )
    .unwrap();
    let (ok, out) = botocore_check(
        &TASK_ROLE,
        TASK_ROLE.secret_key,
        &token.token,
        token.expires_at_ms,
    );
    assert!(ok, "{out}");
    // Expiry: the signing time (whole seconds) plus 900 s.
    let now_s = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(token.expires_at_ms, (now_s + 900) * 1000);
}

#[test]
fn msk_iam_token_with_another_secret_does_not_verify() {
    // The check can fail: botocore told of another secret rejects the signature.
    let token = sign_msk_iam_token(
        &credentials(&TASK_ROLE),
        TASK_ROLE.region,
        SystemTime::now(),
        MSK_IAM_TOKEN_LIFETIME,
    )
    .unwrap();
    let (ok, out) = botocore_check(
        &TASK_ROLE,
        "another-secret",
        &token.token,
        token.expires_at_ms,
    );
    assert!(!ok, "{out}");
    assert!(out.contains("signature mismatch"), "{out}");
}

#[test]
fn msk_iam_tokens_signed_later_expire_later_and_both_verify() {
    let first_at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let later_at = first_at + Duration::from_secs(720);
    let c = credentials(&TASK_ROLE);
    let first = sign_msk_iam_token(&c, TASK_ROLE.region, first_at, MSK_IAM_TOKEN_LIFETIME).unwrap();
    let later = sign_msk_iam_token(&c, TASK_ROLE.region, later_at, MSK_IAM_TOKEN_LIFETIME).unwrap();
    assert_ne!(first.token, later.token);
    assert_eq!(later.expires_at_ms - first.expires_at_ms, 720_000);
    for t in [&first, &later] {
        let (ok, out) = botocore_check(&TASK_ROLE, TASK_ROLE.secret_key, &t.token, t.expires_at_ms);
        assert!(ok, "{out}");
    }
}
