//! librdkafka's mock cluster as a separate process on loopback, for benchmarks and manual tests
//! (the consumer benchmark in `bench/e2e.sh` reads from it, so the broker's CPU is not counted
//! as the consumer's).
//!
//! ```text
//! cargo run --release --example mock_broker -- TOPIC[,TOPIC...] PARTITIONS
//! ```
//!
//! Prints `bootstrap HOST:PORT,...` once the topics exist, then serves until its standard input
//! is closed (or it is killed).

use std::io::Read;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let topics = args.get(1).map_or("bench", String::as_str);
    let partitions: i32 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(4);
    let cluster: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(1).expect("start the mock cluster");
    for topic in topics.split(',') {
        cluster
            .create_topic(topic, partitions, 1)
            .expect("create the topic");
    }
    println!("bootstrap {}", cluster.bootstrap_servers());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
