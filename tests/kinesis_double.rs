//! The Kinesis double driven through the real `aws-sdk-kinesis` client.

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use aws_sdk_kinesis::Client;
use fleetload_testkit::kinesis::{DoubleConfig, KinesisDouble};

const STREAM: &str = "sensors";

fn client(double: &KinesisDouble) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDTESTDOUBLE",
            "test-secret",
            None,
            None,
            "static",
        ))
        .endpoint_url(double.endpoint_url())
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

fn config() -> DoubleConfig {
    DoubleConfig {
        shards: 4,
        stream_name: STREAM.into(),
        seed: 42,
        ..Default::default()
    }
}

fn entries(n: usize) -> Vec<PutRecordsRequestEntry> {
    (0..n)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(format!(
                    r#"{{"sensorId":"s_{i}","temperature":20.5,"status":"OK"}}"#
                )))
                .partition_key(format!("s_{i}"))
                .build()
                .unwrap()
        })
        .collect()
}

/// Per record: `Some(sequence number)` or `None` when it failed; and the failed count.
async fn put_500_throttled(seed: u64) -> (Vec<Option<String>>, i32, KinesisDouble) {
    let double = KinesisDouble::start(DoubleConfig {
        throttle_share: 0.3,
        seed,
        ..config()
    })
    .await
    .unwrap();
    let out = client(&double)
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries(500)))
        .send()
        .await
        .unwrap();
    assert_eq!(out.records().len(), 500);
    let mut outcomes = Vec::new();
    for r in out.records() {
        match r.error_code() {
            None => {
                let shard = r.shard_id().expect("accepted records have a shard id");
                assert!(shard.starts_with("shardId-00000000000"), "{shard}");
                outcomes.push(Some(
                    r.sequence_number()
                        .expect("accepted records have a sequence number")
                        .to_owned(),
                ));
            }
            Some(code) => {
                assert_eq!(code, "ProvisionedThroughputExceededException");
                assert!(r.error_message().unwrap().contains("Rate exceeded"));
                assert!(r.sequence_number().is_none());
                assert!(r.shard_id().is_none());
                outcomes.push(None);
            }
        }
    }
    let failed = out.failed_record_count().unwrap();
    (outcomes, failed, double)
}

#[tokio::test]
async fn put_records_fails_the_configured_share_deterministically() {
    let (outcomes, failed, double) = put_500_throttled(42).await;
    let counted = outcomes.iter().filter(|o| o.is_none()).count() as i32;
    assert_eq!(failed, counted);
    assert!((120..=180).contains(&failed), "FailedRecordCount {failed}");
    eprintln!("seed 42, throttle_share 0.3, 500 records: FailedRecordCount {failed}");

    // Sequence numbers increase, as numbers and as strings.
    let seqs: Vec<u128> = outcomes
        .iter()
        .flatten()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    let stats = double.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.records_received, 500);
    assert_eq!(stats.throttled, failed as u64);
    assert_eq!(stats.records_accepted, 500 - failed as u64);
    assert_eq!(stats.internal_failures, 0);
    assert!(double.accepted_records().is_empty(), "not kept by default");
    double.shutdown().await;

    // The same seed fails the same records; another seed, others.
    let (again, failed_again, double) = put_500_throttled(42).await;
    double.shutdown().await;
    assert_eq!(failed_again, failed);
    let failed_at = |o: &[Option<String>]| -> Vec<usize> {
        o.iter()
            .enumerate()
            .filter(|(_, x)| x.is_none())
            .map(|(i, _)| i)
            .collect()
    };
    assert_eq!(failed_at(&again), failed_at(&outcomes));
    let (other, _, double) = put_500_throttled(43).await;
    double.shutdown().await;
    assert_ne!(failed_at(&other), failed_at(&outcomes));
}

#[tokio::test]
async fn internal_failures_are_per_record_errors() {
    let double = KinesisDouble::start(DoubleConfig {
        internal_failure_share: 0.5,
        ..config()
    })
    .await
    .unwrap();
    let out = client(&double)
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries(200)))
        .send()
        .await
        .unwrap();
    let failed: Vec<_> = out
        .records()
        .iter()
        .filter(|r| r.error_code().is_some())
        .collect();
    assert!(failed
        .iter()
        .all(|r| r.error_code() == Some("InternalFailure")));
    assert_eq!(out.failed_record_count(), Some(failed.len() as i32));
    assert!((60..=140).contains(&failed.len()), "{}", failed.len());
    assert_eq!(double.stats().internal_failures, failed.len() as u64);
    double.shutdown().await;
}

#[tokio::test]
async fn describe_stream_summary_by_name_and_by_arn() {
    let double = KinesisDouble::start(config()).await.unwrap();
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/sensors";
    assert_eq!(double.stream_arn(), arn);
    let c = client(&double);
    let by_name = c
        .describe_stream_summary()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap();
    let by_arn = c
        .describe_stream_summary()
        .stream_arn(arn)
        .send()
        .await
        .unwrap();
    for out in [by_name, by_arn] {
        let s = out.stream_description_summary().unwrap();
        assert_eq!(s.stream_name(), STREAM);
        assert_eq!(s.stream_arn(), arn);
        assert_eq!(s.stream_status(), &StreamStatus::Active);
        assert_eq!(s.open_shard_count(), 4);
        assert_eq!(s.retention_period_hours(), 24);
        assert!(s.stream_creation_timestamp().secs() > 1_600_000_000);
    }

    // PutRecords by ARN too.
    let out = c
        .put_records()
        .stream_arn(arn)
        .set_records(Some(entries(10)))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    double.shutdown().await;
}

#[tokio::test]
async fn unknown_stream_is_resource_not_found() {
    let double = KinesisDouble::start(config()).await.unwrap();
    let c = client(&double);
    let err = c
        .describe_stream_summary()
        .stream_name("nope")
        .send()
        .await
        .unwrap_err();
    let service = err.as_service_error().expect("a service error");
    assert!(service.is_resource_not_found_exception(), "{service:?}");
    assert_eq!(service.code(), Some("ResourceNotFoundException"));
    assert!(service.message().unwrap().contains("nope"));

    let err = c
        .put_records()
        .stream_arn("arn:aws:kinesis:us-east-1:123456789012:stream/other")
        .set_records(Some(entries(3)))
        .send()
        .await
        .unwrap_err();
    let service = err.as_service_error().expect("a service error");
    assert!(service.is_resource_not_found_exception(), "{service:?}");
    assert_eq!(double.stats().client_errors, 2);
    assert_eq!(double.stats().records_received, 0);
    double.shutdown().await;
}

#[tokio::test]
async fn http500_is_an_error_with_a_code() {
    let double = KinesisDouble::start(DoubleConfig {
        http500_share: 1.0,
        ..config()
    })
    .await
    .unwrap();
    let err = client(&double)
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries(5)))
        .send()
        .await
        .unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let service = err.as_service_error().expect("a service error");
    eprintln!(
        "HTTP 500 → code {:?}, message {:?}, status {status:?}, internal_failure_exception {}, \
         error {service:?}",
        service.code(),
        service.message(),
        service.is_internal_failure_exception(),
    );
    assert_eq!(status, Some(500));
    assert_eq!(service.code(), Some("InternalFailure"));
    assert_eq!(err.code(), Some("InternalFailure"));
    let stats = double.stats();
    assert_eq!(stats.http500s, 1);
    assert_eq!(stats.records_received, 5);
    assert_eq!(stats.records_accepted, 0);
    double.shutdown().await;
}

#[tokio::test]
async fn keep_records_returns_the_data() {
    let double = KinesisDouble::start(DoubleConfig {
        keep_records: true,
        throttle_share: 0.2,
        ..config()
    })
    .await
    .unwrap();
    let c = client(&double);
    let out = c
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries(50)))
        .send()
        .await
        .unwrap();
    let single = c
        .put_record()
        .stream_name(STREAM)
        .partition_key("one")
        .data(Blob::new(vec![0u8, 1, 2, 255]))
        .send()
        .await;
    let mut expected: Vec<(String, Vec<u8>)> = out
        .records()
        .iter()
        .zip(entries(50))
        .filter(|(r, _)| r.error_code().is_none())
        .map(|(_, e)| {
            (
                e.partition_key().unwrap().to_owned(),
                e.data().as_ref().to_vec(),
            )
        })
        .collect();
    match single {
        Ok(o) => {
            assert!(o.sequence_number().parse::<u128>().is_ok());
            assert!(o.shard_id().starts_with("shardId-"));
            expected.push(("one".into(), vec![0, 1, 2, 255]));
        }
        Err(e) => assert_eq!(
            e.as_service_error().unwrap().code(),
            Some("ProvisionedThroughputExceededException")
        ),
    }
    assert_eq!(double.accepted_records(), expected);
    let stats = double.stats();
    assert_eq!(stats.records_accepted, expected.len() as u64);
    assert_eq!(
        stats.bytes_accepted,
        expected.iter().map(|(_, d)| d.len() as u64).sum::<u64>()
    );
    double.shutdown().await;
}

#[tokio::test]
async fn list_shards_and_describe_stream() {
    let double = KinesisDouble::start(DoubleConfig {
        shards: 5,
        ..config()
    })
    .await
    .unwrap();
    let c = client(&double);
    let first = c
        .list_shards()
        .stream_name(STREAM)
        .max_results(3)
        .send()
        .await
        .unwrap();
    assert_eq!(first.shards().len(), 3);
    let rest = c
        .list_shards()
        .next_token(first.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.shards().len(), 2);
    assert!(rest.next_token().is_none());
    let ids: Vec<&str> = first
        .shards()
        .iter()
        .chain(rest.shards())
        .map(|s| s.shard_id())
        .collect();
    assert_eq!(
        ids,
        [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003",
            "shardId-000000000004"
        ]
    );
    let described = c
        .describe_stream()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap();
    let d = described.stream_description().unwrap();
    assert_eq!(d.shards().len(), 5);
    assert!(!d.has_more_shards());
    assert_eq!(
        d.shards()[0].hash_key_range().unwrap().starting_hash_key(),
        "0"
    );
    assert_eq!(
        d.shards()[4].hash_key_range().unwrap().ending_hash_key(),
        u128::MAX.to_string()
    );
    double.shutdown().await;
}

#[tokio::test]
async fn kinesis_limits_are_enforced() {
    let double = KinesisDouble::start(config()).await.unwrap();
    let c = client(&double);
    let err = c
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries(501)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    let big = PutRecordsRequestEntry::builder()
        .data(Blob::new(vec![b'x'; (1 << 20) + 1]))
        .partition_key("k")
        .build()
        .unwrap();
    let err = c
        .put_records()
        .stream_name(STREAM)
        .records(big)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().code(),
        Some("InvalidArgumentException")
    );
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_argument_exception());
    assert_eq!(double.stats().records_received, 0);
    double.shutdown().await;
}

#[tokio::test]
async fn latency_delays_answers_and_shutdown_is_prompt() {
    let double = KinesisDouble::start(DoubleConfig {
        latency: Some(Duration::from_millis(50)),
        ..config()
    })
    .await
    .unwrap();
    let c = client(&double);
    let t = Instant::now();
    c.put_records()
        .stream_name(STREAM)
        .set_records(Some(entries(1)))
        .send()
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(50));
    let endpoint = double.endpoint_url();
    let t = Instant::now();
    double.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Nothing listens any more.
    let addr = endpoint.trim_start_matches("http://");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn only_loopback() {
    let err = KinesisDouble::start_on(config(), "0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}

/// Four PutRecords calls at once against a 100 ms service time: `(elapsed, records accepted)`.
async fn four_calls_at_once(one_at_a_time: bool) -> (Duration, u64) {
    let double = KinesisDouble::start(DoubleConfig {
        service_time: Some(Duration::from_millis(100)),
        one_at_a_time,
        ..config()
    })
    .await
    .unwrap();
    let c = client(&double);
    let start = Instant::now();
    let calls = (0..4).map(|_| {
        c.put_records()
            .stream_name(STREAM)
            .set_records(Some(entries(10)))
            .send()
    });
    for out in futures::future::join_all(calls).await {
        assert_eq!(out.unwrap().failed_record_count(), Some(0));
    }
    let elapsed = start.elapsed();
    let accepted = double.stats().records_accepted;
    double.shutdown().await;
    (elapsed, accepted)
}

#[tokio::test]
async fn service_time_one_at_a_time_caps_the_records_per_second() {
    // One call at a time: four calls take four service times.
    let (elapsed, accepted) = four_calls_at_once(true).await;
    assert_eq!(accepted, 40);
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    // Concurrent: about one service time.
    let (elapsed, accepted) = four_calls_at_once(false).await;
    assert_eq!(accepted, 40);
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(350), "{elapsed:?}");
}
