//! Amazon MSK IAM tokens, checked by an independent SigV4 implementation: botocore (in the
//! test's Python venv, `FLEETLOAD_TEST_PYTHON`) recomputes the presigned URL's signature from
//! the same credentials (session token included) and the signing time the token carries, and
//! checks the token's format as AWS's `aws-msk-iam-sasl-signer` libraries make it.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use common::msk_iam;
use fleetload::worker::{sign_msk_iam_token, MSK_IAM_TOKEN_LIFETIME};

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
    msk_iam::botocore_check(
        case.access_key,
        secret_key,
        case.session_token,
        case.region,
        token,
        Some(expires_at_ms),
    )
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
