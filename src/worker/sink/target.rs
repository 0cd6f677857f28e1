//! The closed set of targets: [`Target`] connects the one the scenario names and dispatches to it.

use std::time::Instant;

use super::boundary::{Event, PreflightError, Sink};
use super::kafka::{Files, KafkaSink};
use super::kinesis::KinesisSink;
use super::null::NullSink;
use crate::model::input::ScenarioError;
use crate::model::measure::SharedRecorder;
use crate::model::scenario::Scenario;
use crate::model::target::TargetConfig;

/// A connected, checked target.
pub enum Target {
    /// Kinesis PutRecords.
    Kinesis(KinesisSink),
    /// Kafka via librdkafka.
    Kafka(KafkaSink),
    /// Nothing is sent; every event is acknowledged at once.
    Null(NullSink),
}

impl Target {
    /// What can be known about the target without reaching it, checked while the scenario is
    /// validated (exit 2, before anything is written): librdkafka's verdict on the Kafka
    /// properties. The worker and `launcher run` both call it; `files` says whether the files
    /// the properties name are on this machine.
    pub fn check(scenario: &Scenario, files: Files) -> Result<(), ScenarioError> {
        match &scenario.target {
            TargetConfig::Kafka { properties, .. } => {
                super::kafka::check_properties(properties, &scenario.secrets, files)
            }
            TargetConfig::Kinesis { .. } | TargetConfig::Null => Ok(()),
        }
    }

    /// Connects to the scenario's target and checks it is there (stream active, topic
    /// present), before the clock starts. Nothing is produced here.
    pub async fn connect(
        scenario: &Scenario,
        task_id: &str,
        recorder: SharedRecorder,
    ) -> Result<Target, PreflightError> {
        Ok(match &scenario.target {
            TargetConfig::Kinesis { stream, aggregate } => Target::Kinesis(
                KinesisSink::connect(
                    stream.clone(),
                    *aggregate,
                    scenario.batch_size,
                    scenario.max_in_flight,
                    recorder,
                )
                .await?,
            ),
            TargetConfig::Kafka { topic, properties } => {
                Target::Kafka(KafkaSink::connect(topic, properties, task_id, recorder).await?)
            }
            TargetConfig::Null => Target::Null(NullSink::new(recorder)),
        })
    }
}

impl Sink for Target {
    async fn send(&mut self, event: Event<'_>) {
        match self {
            Target::Kinesis(s) => s.send(event).await,
            Target::Kafka(s) => s.send(event).await,
            Target::Null(s) => s.send(event).await,
        }
    }

    async fn flush(&mut self) {
        match self {
            Target::Kinesis(s) => s.flush().await,
            Target::Kafka(s) => s.flush().await,
            Target::Null(s) => s.flush().await,
        }
    }

    fn flush_due(&self) -> Option<Instant> {
        match self {
            Target::Kinesis(s) => s.flush_due(),
            Target::Kafka(s) => s.flush_due(),
            Target::Null(s) => s.flush_due(),
        }
    }

    async fn drain(&mut self, deadline: Instant) {
        match self {
            Target::Kinesis(s) => s.drain(deadline).await,
            Target::Kafka(s) => s.drain(deadline).await,
            Target::Null(s) => s.drain(deadline).await,
        }
    }
}
