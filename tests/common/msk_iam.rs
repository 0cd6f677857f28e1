//! Amazon MSK IAM tokens checked by an independent SigV4 implementation: botocore (in the test
//! venv, `FLEETLOAD_TEST_PYTHON`) recomputes the presigned URL's signature from the credentials
//! it is told about and the signing time the token carries, and checks the token's format as
//! AWS's `aws-msk-iam-sasl-signer` libraries make it.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// botocore's verdict on `token`, given the credentials the checker is told about.
pub const CHECKER: &str = r#"
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
if case.get("expires_at_ms") is not None:
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

/// Runs botocore's check of `token` against the given credentials (and, when known, the expiry
/// the signer reported); returns (passed, output).
pub fn botocore_check(
    access_key: &str,
    secret_key: &str,
    session_token: &str,
    region: &str,
    token: &str,
    expires_at_ms: Option<i64>,
) -> (bool, String) {
    let python = std::env::var("FLEETLOAD_TEST_PYTHON").expect(
        "FLEETLOAD_TEST_PYTHON is not set: run the tests through ci/test.sh, which installs botocore",
    );
    let input = serde_json::json!({
        "token": token,
        "expires_at_ms": expires_at_ms,
        "access_key": access_key,
        "secret_key": secret_key,
        "session_token": session_token,
        "region": region,
    });
    let mut child = Command::new(python)
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

/// The OAUTHBEARER tokens in what a client sent (SASL/OAUTHBEARER's initial response,
/// `n,,\x01auth=Bearer TOKEN\x01\x01`, RFC 7628), in order.
pub fn oauthbearer_tokens(sent: &[u8]) -> Vec<String> {
    const HEAD: &[u8] = b"auth=Bearer ";
    let mut tokens = Vec::new();
    let mut at = 0;
    while let Some(i) = sent[at..].windows(HEAD.len()).position(|w| w == HEAD) {
        let from = at + i + HEAD.len();
        let len = sent[from..]
            .iter()
            .position(|b| *b == 0x01)
            .unwrap_or(sent.len() - from);
        tokens.push(String::from_utf8_lossy(&sent[from..from + len]).into_owned());
        at = from + len;
    }
    tokens
}
