//! What a run cost: its one job is to turn what the run used (the ECS tasks' size and run time,
//! the Kinesis stream's shards and what was sent to it, the report store's requests) into an
//! estimate from list prices, part by part, with the prices it used and their date. It must never
//! present the estimate as a bill, never price what it could not see (an EC2 instance, a Kafka
//! cluster, a region without prices: said `unknown` or `not charged`, and the total said to be a
//! lower bound), and never call AWS pricing or billing APIs: the prices are the committed table
//! (`prices.json`) or the user's.
//!
//! `usage` records what the run used (`usage.json` next to its reports); `prices` holds the list
//! prices; [`estimate`] computes the `cost` of the merged `summary.json`.

mod prices;
mod usage;

use crate::launcher::compare::{COMPARE_HTML, COMPARE_JSON};
use crate::launcher::fleet::ecs::TaskUsage;
use crate::launcher::merge::Merged;
use crate::launcher::render::format::thousands;
use crate::launcher::render::html::REPORT_FILE;
use crate::model::report::{
    Cost, CostItem, CostPart, CostParts, PricesUsed, Summary, E2E_HLOG_FILE, HLOG_FILE,
    SUMMARY_FILE, TIMESERIES_FILE,
};
use crate::store::ReportStore;

pub use prices::{Prices, RegionPrices, NAMES};
pub use usage::{RunUsage, TargetUsage, USAGE_FILE};

/// Fargate bills at least this many seconds per task.
pub const FARGATE_MIN_SECONDS: u64 = 60;
/// Fargate's ephemeral storage up to this many GiB costs nothing extra.
pub const FARGATE_FREE_EPHEMERAL_GIB: u32 = 20;
/// A Kinesis PUT payload unit: 25 KB of a record.
pub const PUT_PAYLOAD_UNIT_BYTES: u64 = 25 * 1024;
/// Kinesis on demand rounds each record up to this many bytes of data ingested.
pub const ON_DEMAND_RECORD_ROUNDING: u64 = 1024;
/// A GB of data, as AWS bills it.
pub const GB: f64 = (1u64 << 30) as f64;
/// GETs the merge makes per task report, at least: its summary, its time series, its interval
/// log (a long log is read in several ranged GETs).
pub const MERGE_GETS_PER_TASK: u64 = 3;
/// Keys per LIST page.
pub const LIST_PAGE: u64 = 1000;

/// What the run's report store holds, for its request charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageCount {
    /// Objects written under the run (task reports, the merged report, the usage record).
    pub objects: u64,
    /// Task reports the merge read.
    pub tasks: u64,
    /// Whether the store is S3 (a local directory costs no requests).
    pub s3: bool,
}

impl StorageCount {
    /// Counts the run's objects in `store`, plus the `to_write` merged files not written yet.
    pub async fn of(
        store: &ReportStore,
        run_id: &str,
        tasks: u64,
        to_write: &[&str],
    ) -> anyhow::Result<StorageCount> {
        let keys = store.list(&format!("{run_id}/")).await?;
        let missing = to_write
            .iter()
            .filter(|name| !keys.iter().any(|k| k == &format!("{run_id}/merged/{name}")))
            .count();
        Ok(StorageCount {
            objects: (keys.len() + missing) as u64,
            tasks,
            s3: matches!(store, ReportStore::S3 { .. }),
        })
    }
}

/// A task's billed seconds: from the image pull (or the start) to the stop, rounded up to the
/// second, at least [`FARGATE_MIN_SECONDS`]; 0 for a task stopped before it began; `Err` when
/// ECS gave no instants.
fn billed_seconds(t: &TaskUsage) -> Result<u64, String> {
    let start = t.pull_started_at.or(t.started_at);
    match (start, t.stopped_at) {
        (Some(start), Some(stop)) => {
            let ms = (stop - start).num_milliseconds().max(0) as u64;
            Ok(ms.div_ceil(1000).max(FARGATE_MIN_SECONDS))
        }
        (None, Some(_)) => Ok(0),
        _ => Err(format!(
            "ECS gave no start and stop instants for task {}",
            t.task_id
        )),
    }
}

/// The fleet's part: every ECS task priced at Fargate's price of its architecture.
fn fleet(usage: &RunUsage, prices: Option<&RegionPrices>) -> CostPart {
    match usage.backend.as_str() {
        "local" => return CostPart::not_charged("local processes on this machine"),
        "ecs" => {}
        _ => {
            return CostPart::unknown(
                "the fleet is unknown: no usage record of the run's tasks (usage.json) next to \
                 its reports",
            )
        }
    }
    if usage.fleet.is_empty() {
        return CostPart::not_charged("no ECS task was started");
    }
    let Some(prices) = prices else {
        return CostPart::unknown(no_region(usage.region.as_deref()));
    };
    let mut problems: Vec<String> = Vec::new();
    // (vCPU-hours, GB-hours) per architecture, ephemeral GB-hours, spot tasks, seconds.
    let (mut x86, mut arm) = ((0.0, 0.0), (0.0, 0.0));
    let (mut ephemeral, mut spot, mut seconds, mut priced) = (0.0, 0, 0u64, 0);
    for t in &usage.fleet {
        let capacity = t.capacity_provider.as_deref().or(t.launch_type.as_deref());
        match capacity {
            Some("FARGATE") => {}
            Some("FARGATE_SPOT") => spot += 1,
            Some(other) => {
                problems.push(format!(
                    "task {} ran on {other} capacity: its EC2 instances are billed by EC2 \
                     whatever runs on them, not estimated here",
                    t.task_id
                ));
                continue;
            }
            None => {
                problems.push(format!("ECS did not say where task {} ran", t.task_id));
                continue;
            }
        }
        if t.platform_family
            .as_deref()
            .is_some_and(|f| !f.to_ascii_lowercase().starts_with("linux"))
        {
            problems.push(format!(
                "task {} ran on {}: only Linux Fargate is in the price table",
                t.task_id,
                t.platform_family.as_deref().unwrap_or_default()
            ));
            continue;
        }
        let secs = match billed_seconds(t) {
            Ok(s) => s,
            Err(why) => {
                problems.push(why);
                continue;
            }
        };
        let (Some(cpu), Some(memory)) = (t.cpu_units, t.memory_mib) else {
            problems.push(format!("the size of task {} is unknown", t.task_id));
            continue;
        };
        let hours = secs as f64 / 3600.0;
        let slot = match t.cpu_architecture.as_deref() {
            Some("ARM64") => &mut arm,
            _ => &mut x86,
        };
        slot.0 += cpu as f64 / 1024.0 * hours;
        slot.1 += memory as f64 / 1024.0 * hours;
        if let Some(gib) = t.ephemeral_storage_gib {
            ephemeral += gib.saturating_sub(FARGATE_FREE_EPHEMERAL_GIB) as f64 * hours;
        }
        seconds += secs;
        priced += 1;
    }
    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
        return CostPart::unknown(format!(
            "{} of {} tasks could not be priced: {}{}",
            problems.len(),
            usage.fleet.len(),
            shown.join("; "),
            if problems.len() > 3 { "; …" } else { "" }
        ));
    }
    let mut items = Vec::new();
    let mut add = |what: &str, quantity: f64, unit: &str, name: &str| -> Result<(), String> {
        if quantity > 0.0 {
            items.push(CostItem::new(what, quantity, unit, prices.get(name)?));
        }
        Ok(())
    };
    let added = add(
        "Fargate vCPU (Linux/X86_64)",
        x86.0,
        "vCPU-hour",
        "fargate_x86_vcpu_hour",
    )
    .and_then(|_| {
        add(
            "Fargate memory (Linux/X86_64)",
            x86.1,
            "GB-hour",
            "fargate_x86_gb_hour",
        )
    })
    .and_then(|_| {
        add(
            "Fargate vCPU (Linux/ARM64)",
            arm.0,
            "vCPU-hour",
            "fargate_arm_vcpu_hour",
        )
    })
    .and_then(|_| {
        add(
            "Fargate memory (Linux/ARM64)",
            arm.1,
            "GB-hour",
            "fargate_arm_gb_hour",
        )
    })
    .and_then(|_| {
        add(
            "Fargate ephemeral storage beyond 20 GB",
            ephemeral,
            "GB-hour",
            "fargate_ephemeral_gb_hour",
        )
    });
    if let Err(why) = added {
        return CostPart::unknown(why);
    }
    let mut basis = format!(
        "{priced} ECS task(s) on Fargate, {} task-seconds billed (from the image pull to the \
         stop, rounded up to the second, at least {FARGATE_MIN_SECONDS} s each), each task's vCPU \
         and memory at the price of its architecture",
        thousands(seconds)
    );
    if spot > 0 {
        basis.push_str(&format!(
            "; {spot} on FARGATE_SPOT, priced at the on-demand price: an upper bound (Spot's \
             price changes)"
        ));
    }
    CostPart::priced(basis, items)
}

fn no_region(region: Option<&str>) -> String {
    match region {
        None => "no AWS region is configured (AWS_REGION), so no price applies".to_string(),
        Some(r) => format!(
            "the price table has no prices for {r} (give them with --prices FILE or --price \
             NAME=USD)"
        ),
    }
}

/// The target's part: Kinesis shard-hours and PUT payload units, or stream-hours and data
/// ingested on demand, for the run's time of production.
fn target(summary: &Summary, usage: &RunUsage, prices: &Prices) -> CostPart {
    let t = &usage.target;
    match t.kind.as_str() {
        "kinesis" => {}
        "kafka" => {
            let msk = t
                .kafka_servers
                .as_deref()
                .is_some_and(|s| s.contains(".kafka.") && s.contains("amazonaws.com"));
            return CostPart::not_charged(format!(
                "{} is not charged per request: its brokers are charged per hour and its \
                 storage per GB-month whatever the load, so no share of it is estimated",
                if msk { "Amazon MSK" } else { "a Kafka cluster" }
            ));
        }
        "embedded" => return CostPart::not_charged("the embedded broker on this machine"),
        "null" => return CostPart::not_charged("the null target sends nothing"),
        other => return CostPart::unknown(format!("no price for target {other:?}")),
    }
    if let Some(e) = &t.error {
        return CostPart::unknown(e.clone());
    }
    let region = t.region.as_deref().or(usage.region.as_deref());
    let Some(p) = region.and_then(|r| prices.region(r)) else {
        return CostPart::unknown(no_region(region));
    };
    let hours = summary.duration_s.max(0.0) / 3600.0;
    // Kinesis bills Kinesis records: with KPL aggregation, fewer than the user records.
    let records = summary
        .kinesis
        .as_ref()
        .map_or(summary.counts.acknowledged, |k| k.kinesis_records);
    let stream = t.stream.as_deref().unwrap_or("the stream");
    let avg = if records > 0 {
        summary.bytes as f64 / records as f64
    } else {
        0.0
    };
    let result = match t.mode.as_deref() {
        Some("ON_DEMAND") => (|| -> Result<CostPart, String> {
            let per_record = (avg.ceil() as u64)
                .div_ceil(ON_DEMAND_RECORD_ROUNDING)
                .max(1)
                * ON_DEMAND_RECORD_ROUNDING;
            let gb = records as f64 * per_record as f64 / GB;
            let items = vec![
                CostItem::new(
                    format!("Kinesis on-demand stream {stream}"),
                    hours,
                    "stream-hour",
                    p.get("kinesis_on_demand_stream_hour")?,
                ),
                CostItem::new(
                    "Kinesis on-demand data ingested",
                    gb,
                    "GB",
                    p.get("kinesis_on_demand_gb_ingested")?,
                ),
            ];
            Ok(CostPart::priced(
                format!(
                    "on-demand stream {stream} for the run's {:.1} s of production; {} records \
                     acknowledged, {:.0} bytes each on average, each rounded up to 1 KB; reads by \
                     consumer tasks (data retrieval) not included",
                    summary.duration_s,
                    thousands(records),
                    avg
                ),
                items,
            ))
        })(),
        _ => (|| -> Result<CostPart, String> {
            let Some(shards) = t.open_shards else {
                return Err(format!("the open shards of {stream} are unknown"));
            };
            let units_per_record = (avg.ceil() as u64).div_ceil(PUT_PAYLOAD_UNIT_BYTES).max(1);
            let units = records * units_per_record;
            let items = vec![
                CostItem::new(
                    format!("Kinesis shard-hours ({shards} open shards of {stream})"),
                    shards as f64 * hours,
                    "shard-hour",
                    p.get("kinesis_shard_hour")?,
                ),
                CostItem::new(
                    "Kinesis PUT payload units",
                    units as f64 / 1e6,
                    "million units",
                    p.get("kinesis_million_put_payload_units")?,
                ),
            ];
            Ok(CostPart::priced(
                format!(
                    "provisioned stream {stream}: {shards} open shards for the run's {:.1} s of \
                     production; {} records acknowledged, {:.0} bytes each on average, so {} PUT \
                     payload unit(s) of 25 KB each",
                    summary.duration_s,
                    thousands(records),
                    avg,
                    units_per_record
                ),
                items,
            ))
        })(),
    };
    result.unwrap_or_else(CostPart::unknown)
}

/// The report store's part: its requests, estimated from the run's objects.
fn storage(count: Option<&StorageCount>, region: Option<&str>, prices: &Prices) -> CostPart {
    let Some(c) = count else {
        return CostPart::unknown("the run's objects could not be listed");
    };
    if !c.s3 {
        return CostPart::not_charged("reports in a local directory");
    }
    let Some(p) = region.and_then(|r| prices.region(r)) else {
        return CostPart::unknown(no_region(region));
    };
    let lists = 2 * c.objects.div_ceil(LIST_PAGE).max(1);
    let gets = c.tasks * MERGE_GETS_PER_TASK;
    let items = (|| -> Result<Vec<CostItem>, String> {
        Ok(vec![
            CostItem::new(
                "S3 PUT and LIST requests",
                (c.objects + lists) as f64 / 1000.0,
                "thousand requests",
                p.get("s3_thousand_put_requests")?,
            ),
            CostItem::new(
                "S3 GET requests",
                gets as f64 / 1000.0,
                "thousand requests",
                p.get("s3_thousand_get_requests")?,
            ),
        ])
    })();
    match items {
        Ok(items) => CostPart::priced(
            format!(
                "estimated from the run's report layout: {} objects written once each (PUT), {} \
                 LIST pages, {} GETs by the merge ({MERGE_GETS_PER_TASK} per task at least: \
                 summary, time series, interval log); retried and multipart requests and the \
                 storage itself (GB-month) not included",
                thousands(c.objects),
                lists,
                thousands(gets)
            ),
            items,
        ),
        Err(why) => CostPart::unknown(why),
    }
}

/// The cost of a merged run: the fleet, the target and the storage, from what the run `usage`d,
/// its report store's `storage` count and `prices`.
pub fn estimate(
    summary: &Summary,
    usage: &RunUsage,
    storage_count: Option<&StorageCount>,
    prices: &Prices,
) -> Cost {
    let region = usage.region.clone().or_else(|| usage.target.region.clone());
    let region_prices = region.as_deref().and_then(|r| prices.region(r));
    let parts = CostParts {
        fleet: fleet(usage, region_prices.as_ref()),
        target: target(summary, usage, prices),
        storage: storage(storage_count, region.as_deref(), prices),
    };
    let all = [&parts.fleet, &parts.target, &parts.storage];
    // A fold from 0.0: an empty float sum is -0.0, which prints as "$-0.00".
    let usd: f64 = all.iter().filter_map(|p| p.usd).fold(0.0, |a, b| a + b);
    let acknowledged = summary.counts.acknowledged;
    let mut overridden = region_prices
        .as_ref()
        .map(|r| r.overridden.clone())
        .unwrap_or_default();
    if let Some(t) = usage
        .target
        .region
        .as_deref()
        .filter(|t| Some(*t) != region.as_deref())
        .and_then(|t| prices.region(t))
    {
        overridden.extend(t.overridden);
    }
    Cost {
        estimate: format!(
            "estimate from list prices of {} ({}), not a bill",
            prices.date,
            region.as_deref().unwrap_or("no region")
        ),
        usd,
        usd_per_million_acknowledged: (acknowledged > 0).then(|| usd / acknowledged as f64 * 1e6),
        complete: !all.iter().any(|p| p.is_unknown()),
        parts,
        prices: PricesUsed {
            source: prices.source.clone(),
            date: prices.date.clone(),
            region,
            overridden,
        },
    }
}

/// Puts the run's cost into its merged summary, from `usage` (what a run that just ended used,
/// then recorded as `usage.json` next to its reports), else from the run's `usage.json` (a
/// merge later), else from what its summary says. It never fails the run: what cannot be read
/// is logged and its part said unknown. `with_comparison`: `compare.json` and `compare.html`
/// will be written too (their PUTs are counted).
pub async fn attach(
    store: &ReportStore,
    run_id: &str,
    merged: &mut Merged,
    usage: Option<RunUsage>,
    prices: &Prices,
    with_comparison: bool,
) {
    let tasks = merged
        .summary
        .merge
        .as_ref()
        .map_or(0, |m| m.tasks_reported);
    if tasks == 0 {
        // Nothing was merged and nothing will be written: no cost to say.
        return;
    }
    let usage = match usage {
        Some(u) => {
            if let Err(e) = u.write(store, run_id).await {
                tracing::warn!("the run's usage record was not written: {e:#}");
            }
            u
        }
        None => match RunUsage::read(store, run_id).await {
            Ok(Some(u)) => u,
            Ok(None) => RunUsage::of_summary(&merged.summary).await,
            Err(e) => {
                tracing::warn!("{e:#}");
                RunUsage::of_summary(&merged.summary).await
            }
        },
    };
    let mut to_write = vec![SUMMARY_FILE, TIMESERIES_FILE, HLOG_FILE, REPORT_FILE];
    if merged
        .summary
        .end_to_end
        .e2e
        .as_ref()
        .is_some_and(|e| !e.per_second.is_empty())
    {
        to_write.push(E2E_HLOG_FILE);
    }
    if with_comparison {
        to_write.extend([COMPARE_JSON, COMPARE_HTML]);
    }
    let count = match StorageCount::of(store, run_id, tasks, &to_write).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("the run's objects could not be counted for its cost: {e:#}");
            None
        }
    };
    merged.summary.cost = Some(estimate(&merged.summary, &usage, count.as_ref(), prices));
}

/// Dollars as the table and the page show them: cents, or four decimals below a cent.
pub fn dollars(v: f64) -> String {
    // -0.0 + 0.0 is 0.0: no "$-0.00".
    let v = v + 0.0;
    if v.abs() >= 0.01 || v == 0.0 {
        format!("${v:.2}")
    } else {
        format!("${v:.4}")
    }
}

/// One part in words: `$1.87`, `not charged`, `unknown`.
pub fn part_words(p: &CostPart) -> String {
    match p.usd {
        Some(usd) => dollars(usd),
        None => p.status.clone(),
    }
}

/// The cost in one line, for the table: `≈ $2.41 (fleet $1.87, target $0.54, storage $0.0008),
/// $0.40 per million acknowledged — estimate from list prices of DATE (REGION), not a bill`.
pub fn line(c: &Cost) -> String {
    let total = if c.complete {
        format!("≈ {}", dollars(c.usd))
    } else {
        format!("≥ {} (a part is unknown)", dollars(c.usd))
    };
    let per_million = c
        .usd_per_million_acknowledged
        .map(|v| format!(", {} per million acknowledged", dollars(v)))
        .unwrap_or_default();
    format!(
        "{total} (fleet {}, target {}, storage {}){per_million} — {}",
        part_words(&c.parts.fleet),
        part_words(&c.parts.target),
        part_words(&c.parts.storage),
        c.estimate
    )
}

#[cfg(test)]
mod tests;
