//! Runs the Kinesis double (`fleetload_testkit::kinesis`) as a separate process on loopback, for
//! benchmarks and manual tests: point a worker at it with an endpoint override.
//!
//! ```text
//! cargo run --release --example kinesis_double -- --port 4567 --shards 8 --throttle-share 0.01
//! cargo run --release --example kinesis_double -- --shards 4 --throttle-share 0.5 --throttled-shard 2
//! ```
//!
//! Prints `listening on http://127.0.0.1:PORT` once it accepts connections, the counters every
//! `--report-every` seconds and once more on exit. Exits after `--max-seconds`, on Ctrl-C or on
//! SIGTERM.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Parser;
use fleetload_testkit::kinesis::{DoubleConfig, DoubleStats, KinesisDouble};

#[derive(Parser, Debug)]
#[command(about = "Kinesis-compatible test double on 127.0.0.1 (awsJson1_1)")]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one (printed on the first line).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Open shards of the stream.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Name of the stream served (also reachable by its ARN
    /// arn:aws:kinesis:us-east-1:123456789012:stream/NAME).
    #[arg(long, default_value = "fleetload")]
    stream_name: String,
    /// Share of records answered ProvisionedThroughputExceededException (0-1).
    #[arg(long, default_value_t = 0.0)]
    throttle_share: f64,
    /// A shard (by index) that --throttle-share applies to, repeatable: a hot shard. None
    /// given: every shard.
    #[arg(long = "throttled-shard")]
    throttled_shards: Vec<u32>,
    /// Share of records answered InternalFailure (0-1).
    #[arg(long, default_value_t = 0.0)]
    internal_failure_share: f64,
    /// Share of whole PutRecords/PutRecord requests answered HTTP 500 (0-1).
    #[arg(long, default_value_t = 0.0)]
    http500_share: f64,
    /// Seed of the injected failures.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Delay before every answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Time each PutRecords/PutRecord call takes to be processed, milliseconds.
    #[arg(long, default_value_t = 0)]
    service_time_ms: u64,
    /// Process one PutRecords/PutRecord call at a time (with --service-time-ms: a saturated
    /// stream taking at most records-per-call / service time records per second).
    #[arg(long)]
    one_at_a_time: bool,
    /// Open KPL aggregated records to count the user records they carry (printed with the
    /// counters; costs the double a base64 decoding and an MD5 per record).
    #[arg(long)]
    count_user_records: bool,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
    /// Print the counters every this many seconds (0: only on exit).
    #[arg(long, default_value_t = 10)]
    report_every: u64,
}

fn counters(s: &DoubleStats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "after {:.1} s: requests={} http500s={} client_errors={} records_received={} \
         records_accepted={} bytes_accepted={} throttled={} internal_failures={} \
         user_records_accepted={} user_records_off_shard={} accepted_per_s={:.0}",
        elapsed.as_secs_f64(),
        s.requests,
        s.http500s,
        s.client_errors,
        s.records_received,
        s.records_accepted,
        s.bytes_accepted,
        s.throttled,
        s.internal_failures,
        s.user_records_accepted,
        s.user_records_off_shard,
        s.records_accepted as f64 / secs
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = DoubleConfig {
        shards: args.shards,
        stream_name: args.stream_name,
        throttle_share: args.throttle_share,
        throttled_shards: args.throttled_shards,
        internal_failure_share: args.internal_failure_share,
        http500_share: args.http500_share,
        seed: args.seed,
        keep_records: false,
        latency: (args.latency_ms > 0).then(|| Duration::from_millis(args.latency_ms)),
        service_time: (args.service_time_ms > 0)
            .then(|| Duration::from_millis(args.service_time_ms)),
        one_at_a_time: args.one_at_a_time,
        count_user_records: args.count_user_records,
    };
    let double =
        KinesisDouble::start_on(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    println!("listening on {}", double.endpoint_url());
    println!("stream {}", double.stream_arn());

    let started = Instant::now();
    let deadline = tokio::time::sleep(Duration::from_secs(args.max_seconds));
    tokio::pin!(deadline);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let period = Duration::from_secs(args.report_every.max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let why = loop {
        tokio::select! {
            _ = &mut deadline => break format!("--max-seconds {} reached", args.max_seconds),
            _ = tokio::signal::ctrl_c() => break "interrupted".to_string(),
            _ = sigterm.recv() => break "terminated".to_string(),
            _ = tick.tick(), if args.report_every > 0 => {
                println!("{}", counters(&double.stats(), started.elapsed()));
            }
        }
    };
    let stats = double.stats();
    let elapsed = started.elapsed();
    double.shutdown().await;
    println!("stopped ({why}); {}", counters(&stats, elapsed));
    Ok(())
}
