//! `cost` in the merged `summary.json`: what a run cost, estimated from list prices. Only the
//! schema lives here; the launcher (`launcher::cost`) fills it in.
//!
//! It is never a bill: every cost carries the words `estimate` and the date of the list prices it
//! was computed with, and each part says what it counted, so a reader can check it by hand.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A part that was priced.
pub const PRICED: &str = "priced";
/// A part that costs nothing per run (local processes, a Kafka cluster paid per broker-hour).
pub const NOT_CHARGED: &str = "not charged";
/// A part that could not be priced (no price for the region, no run time from ECS…); the total
/// is then a lower bound.
pub const UNKNOWN: &str = "unknown";

/// What a run cost, estimated from list prices (`cost` in the merged `summary.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Says it is an estimate and from which list prices: `estimate from list prices of
    /// 2025-01-01 (us-east-1), not a bill`.
    pub estimate: String,
    /// USD: the sum of the parts that were priced.
    pub usd: f64,
    /// `usd` per million acknowledged events (`None` when none was acknowledged).
    pub usd_per_million_acknowledged: Option<f64>,
    /// Whether every part could be priced; when not, `usd` is a lower bound and the unknown part
    /// says why.
    pub complete: bool,
    /// The fleet, the target and the report storage.
    pub parts: CostParts,
    /// The prices used: where they come from, of when, for which region, and which were given on
    /// the command line or in a file instead of the committed table.
    pub prices: PricesUsed,
}

/// The parts of a run's cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostParts {
    /// The tasks that produced and consumed (ECS: vCPU and memory × run time).
    pub fleet: CostPart,
    /// The system under test's per-use charges (Kinesis shard-hours and PUT payload units, or
    /// on-demand stream-hours and data ingested).
    pub target: CostPart,
    /// The report store's requests (S3 PUT, GET, LIST).
    pub storage: CostPart,
}

/// One part of a run's cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostPart {
    /// [`PRICED`], [`NOT_CHARGED`] or [`UNKNOWN`].
    pub status: String,
    /// USD, when priced.
    pub usd: Option<f64>,
    /// What was counted and how, in words (or why it is not charged or unknown).
    pub basis: String,
    /// The lines of the estimate, each a quantity times a unit price.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<CostItem>,
}

/// One line of an estimate: `quantity` `unit`s at `usd_per_unit` each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostItem {
    /// What is counted, e.g. `Fargate vCPU-hours (Linux/X86_64)`.
    pub what: String,
    /// How many units.
    pub quantity: f64,
    /// The unit, e.g. `vCPU-hour`, `shard-hour`, `million PUT payload units`.
    pub unit: String,
    /// The list price of one unit, USD.
    pub usd_per_unit: f64,
    /// `quantity × usd_per_unit`.
    pub usd: f64,
}

/// The prices a cost was computed with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PricesUsed {
    /// Where the list prices come from (the pricing pages, or the file given).
    pub source: String,
    /// When they were read from there.
    pub date: String,
    /// The region priced (`None` when none was configured).
    pub region: Option<String>,
    /// Prices given with `--price` or `--prices` instead of the committed table, `name → USD`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overridden: BTreeMap<String, f64>,
}

impl CostPart {
    /// A part priced from `items` (their sum), with `basis` saying what was counted.
    pub fn priced(basis: String, items: Vec<CostItem>) -> Self {
        CostPart {
            status: PRICED.to_string(),
            usd: Some(items.iter().fold(0.0, |sum, i| sum + i.usd)),
            basis,
            items,
        }
    }

    /// A part that costs nothing per run, and why.
    pub fn not_charged(why: impl Into<String>) -> Self {
        CostPart {
            status: NOT_CHARGED.to_string(),
            usd: None,
            basis: why.into(),
            items: Vec::new(),
        }
    }

    /// A part that could not be priced, and why.
    pub fn unknown(why: impl Into<String>) -> Self {
        CostPart {
            status: UNKNOWN.to_string(),
            usd: None,
            basis: why.into(),
            items: Vec::new(),
        }
    }

    /// Whether the part could not be priced.
    pub fn is_unknown(&self) -> bool {
        self.status == UNKNOWN
    }
}

impl CostItem {
    /// `quantity` `unit`s of `what` at `usd_per_unit`.
    pub fn new(what: impl Into<String>, quantity: f64, unit: &str, usd_per_unit: f64) -> Self {
        CostItem {
            what: what.into(),
            quantity,
            unit: unit.to_string(),
            usd_per_unit,
            usd: quantity * usd_per_unit,
        }
    }
}
