//! A merged run as a comparison reads it, through the report store: `merged/summary.json`,
//! `merged/timeseries.csv`, and `merged/histograms.hlog` (and `merged/e2e.hlog` when the run had
//! consumer tasks). What is missing or unreadable is named, with where it was looked for; nothing
//! is filled in.

use anyhow::Context;
use hdrhistogram::Histogram;

use super::bootstrap::{Units, UnitsBuilder};
use crate::launcher::parse_run_location;
use crate::model::report::{
    decode_histogram, malformed_hlog, next_hlog_line, parse_timeseries, HlogLine, SecondRow,
    Summary, E2E_HLOG_FILE, HLOG_FILE, SCHEMA_VERSION, SUMMARY_FILE, THROTTLE_CODES,
    TIMESERIES_FILE,
};
use crate::store::{merged_dir, tasks_dir, ReportStore};

/// Bytes of an interval log read at a time: a long run's log is never held whole.
const HLOG_CHUNK: usize = 8 << 20;

/// Columns every run's seconds carry into the bootstrap (see [`Columns`]).
pub const ATTEMPTED: usize = 0;
/// Events acknowledged in the second.
pub const ACKNOWLEDGED: usize = 1;
/// Events finally failed in the second.
pub const FAILED: usize = 2;
/// Events intended in the second and never handed over.
pub const UNSENT: usize = 3;
/// `attempted + unsent`.
pub const PLANNED: usize = 4;
/// Events refused for throughput in the second (the error timeline of [`THROTTLE_CODES`]).
pub const THROTTLED: usize = 5;
/// Bytes acknowledged in the second.
pub const BYTES: usize = 6;
/// 1 for a whole second inside production, after its first second; 0 for the others.
pub const STEADY: usize = 7;
/// Events acknowledged in a [`STEADY`] second (0 in the others). The rate's interval comes from
/// these seconds only: the first second of production lacks the acknowledgements still on their
/// way (one latency's worth), and the last, partial one holds them with almost no production, so
/// either would add the target's latency to the rate's noise.
pub const STEADY_ACKNOWLEDGED: usize = 8;
/// The first per-error-code column.
const FIRST_CODE: usize = 9;

/// The columns of both runs' seconds: the fixed ones, then one per error code either run has.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// Error codes, each with its column at `FIRST_CODE + i`.
    pub codes: Vec<String>,
}

impl Columns {
    /// The error codes of either run.
    pub fn of(a: &Summary, b: &Summary) -> Self {
        let mut codes: Vec<String> = [a, b]
            .iter()
            .flat_map(|s| {
                s.errors_timeline
                    .keys()
                    .chain(s.counts.failed_by_code.keys())
                    .chain(s.counts.retried_by_code.keys())
            })
            .cloned()
            .collect();
        codes.sort();
        codes.dedup();
        Columns { codes }
    }

    /// How many columns.
    pub fn len(&self) -> usize {
        FIRST_CODE + self.codes.len()
    }

    /// The column of error code `code`.
    pub fn code(&self, code: &str) -> Option<usize> {
        self.codes
            .iter()
            .position(|c| c == code)
            .map(|i| FIRST_CODE + i)
    }
}

/// A merged run, read for a comparison.
#[derive(Debug, Clone)]
pub struct Run {
    /// `BASE` or `NEW`: how messages name it.
    pub role: &'static str,
    /// The location as given (`s3://bucket/prefix/RUN`, `./fleetload-runs/RUN`).
    pub location: String,
    /// Where the report is.
    pub store: ReportStore,
    /// The run id.
    pub run_id: String,
    /// `merged/summary.json`.
    pub summary: Summary,
    /// `merged/timeseries.csv`.
    pub rows: Vec<SecondRow>,
    /// Whether `merged/e2e.hlog` exists (end-to-end latency per second).
    pub has_e2e_log: bool,
}

impl Run {
    /// Reads the run at `location` (`<REPORT_URL>/<RUN_ID>`) from its store.
    pub async fn load(role: &'static str, location: &str) -> anyhow::Result<Run> {
        let (url, run_id) = parse_run_location(location)
            .with_context(|| format!("{role} {location:?} is not a run location"))?;
        let store = ReportStore::open(&url).await?;
        Run::from_store(role, location, store, &run_id).await
    }

    /// Reads run `run_id` from `store`; `location` is how messages name it.
    pub async fn from_store(
        role: &'static str,
        location: &str,
        store: ReportStore,
        run_id: &str,
    ) -> anyhow::Result<Run> {
        let dir = merged_dir(run_id);
        let key = |name: &str| format!("{dir}/{name}");
        let where_ = |name: &str| store.display_url(&key(name));
        let summary_bytes = store.get(&key(SUMMARY_FILE)).await.with_context(|| {
            format!("{role} {location}: could not read {}", where_(SUMMARY_FILE))
        })?;
        let Some(summary_bytes) = summary_bytes else {
            let tasks = store
                .list(&format!("{}/", tasks_dir(run_id)))
                .await
                .unwrap_or_default();
            anyhow::bail!(
                "{role} {location}: there is no {} — {}",
                where_(SUMMARY_FILE),
                if tasks.is_empty() {
                    "no report of this run is there either: check the location \
                     (<REPORT_URL>/<RUN_ID>)"
                        .to_string()
                } else {
                    format!(
                        "its tasks reported but the run was never merged: run `launcher merge \
                         {location}` first"
                    )
                }
            );
        };
        let summary = read_summary(&summary_bytes).with_context(|| {
            format!(
                "{role} {location}: {} cannot be compared",
                where_(SUMMARY_FILE)
            )
        })?;
        if summary.merge.is_none() {
            anyhow::bail!(
                "{role} {location}: {} is a task's summary (task {}), not a merged one",
                where_(SUMMARY_FILE),
                summary.task_id
            );
        }
        let rows = match store.get(&key(TIMESERIES_FILE)).await? {
            Some(bytes) => parse_timeseries(&bytes).with_context(|| {
                format!(
                    "{role} {location}: {} cannot be read",
                    where_(TIMESERIES_FILE)
                )
            })?,
            None => anyhow::bail!(
                "{role} {location}: there is no {} (the per-second rows the rate's and the error \
                 ratios' intervals come from); merge the run again with this launcher: `launcher \
                 merge {location}`",
                where_(TIMESERIES_FILE)
            ),
        };
        if store.get_range(&key(HLOG_FILE), 0, 1).await?.is_none() {
            anyhow::bail!(
                "{role} {location}: there is no {} (the per-second latency histograms the \
                 percentiles' intervals come from); merge the run again with this launcher: \
                 `launcher merge {location}`",
                where_(HLOG_FILE)
            );
        }
        let has_e2e_log = summary.end_to_end.e2e.is_some()
            && store.get_range(&key(E2E_HLOG_FILE), 0, 1).await?.is_some();
        Ok(Run {
            role,
            location: location.to_string(),
            store,
            run_id: run_id.to_string(),
            summary,
            rows,
            has_e2e_log,
        })
    }

    /// Where a file of the merged report is, for people.
    pub fn display(&self, name: &str) -> String {
        self.store
            .display_url(&format!("{}/{name}", merged_dir(&self.run_id)))
    }

    /// How many seconds from the planned start the run's seconds span.
    fn seconds(&self) -> u64 {
        let rows = self.rows.last().map_or(0, |r| r.second + 1);
        let errors = self
            .summary
            .errors_timeline
            .values()
            .flat_map(|p| p.iter().map(|(s, _)| s + 1))
            .max()
            .unwrap_or(0);
        rows.max(errors)
    }

    /// The run's seconds for the bootstrap: the per-second rows, the error timeline and the
    /// per-second latency histograms of `histograms.hlog`.
    pub async fn units(&self, columns: &Columns) -> anyhow::Result<Units> {
        let mut b = UnitsBuilder::new(self.seconds(), columns.len());
        for r in &self.rows {
            b.add(r.second, ATTEMPTED, r.attempted as f64);
            b.add(r.second, ACKNOWLEDGED, r.acknowledged as f64);
            b.add(r.second, FAILED, r.failed as f64);
            b.add(r.second, UNSENT, r.unsent as f64);
            b.add(r.second, PLANNED, (r.attempted + r.unsent) as f64);
            b.add(r.second, BYTES, r.bytes as f64);
        }
        // Production ran from the earliest start for `duration_s`, in seconds from the planned
        // start.
        let s = &self.summary;
        let from = s.actual_start.map_or(0.0, |a| {
            (a - s.planned_start).num_milliseconds().max(0) as f64 / 1000.0
        });
        let to = from + s.duration_s.max(0.0);
        for r in &self.rows {
            let second = r.second as f64;
            if second >= from.floor() + 1.0 && second + 1.0 <= to {
                b.add(r.second, STEADY, 1.0);
                b.add(r.second, STEADY_ACKNOWLEDGED, r.acknowledged as f64);
            }
        }
        for (code, points) in &self.summary.errors_timeline {
            let column = columns.code(code).expect("every code has a column");
            let throttle = THROTTLE_CODES.contains(&code.as_str());
            for (second, n) in points {
                b.add(*second, column, *n as f64);
                if throttle {
                    b.add(*second, THROTTLED, *n as f64);
                }
            }
        }
        self.read_log(HLOG_FILE, &mut |second, h| b.add_histogram(second, h))
            .await?;
        Ok(b.finish())
    }

    /// The run's end-to-end latency per second of the intended send time (`e2e.hlog`), `None`
    /// when the run has none.
    pub async fn e2e_units(&self) -> anyhow::Result<Option<Units>> {
        let Some(e2e) = self.summary.end_to_end.e2e.as_ref() else {
            return Ok(None);
        };
        if !self.has_e2e_log {
            return Ok(None);
        }
        let seconds = e2e.timeline.last().map_or(0, |t| t.second + 1);
        let mut b = UnitsBuilder::new(seconds, 0);
        self.read_log(E2E_HLOG_FILE, &mut |second, h| b.add_histogram(second, h))
            .await?;
        Ok(Some(b.finish()))
    }

    /// Reads the interval log `name` of `merged/` a chunk at a time, handing each second's
    /// histogram to `visit`.
    async fn read_log(
        &self,
        name: &str,
        visit: &mut dyn FnMut(u64, &Histogram<u64>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let key = format!("{}/{name}", merged_dir(&self.run_id));
        let what = || format!("{} {}: {}", self.role, self.location, self.display(name));
        let mut offset = 0u64;
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let chunk = self
                .store
                .get_range(&key, offset, HLOG_CHUNK)
                .await
                .with_context(what)?
                .with_context(|| format!("{} disappeared while it was read", what()))?;
            let last = chunk.len() < HLOG_CHUNK;
            offset += chunk.len() as u64;
            pending.extend_from_slice(&chunk);
            let mut at = 0;
            loop {
                match next_hlog_line(&pending[at..]) {
                    HlogLine::Line { len, interval } => {
                        if let Some((second, text)) = interval {
                            let h = decode_histogram(text).with_context(|| {
                                format!("{}: the histogram of second {second}", what())
                            })?;
                            visit(second, &h).with_context(what)?;
                        }
                        at += len;
                    }
                    HlogLine::Incomplete if !last => break,
                    HlogLine::Incomplete | HlogLine::Malformed => {
                        if at == pending.len() {
                            break;
                        }
                        let at_byte = offset - (pending.len() - at) as u64;
                        return Err(malformed_hlog(at_byte)).with_context(what);
                    }
                }
            }
            pending.drain(..at);
            if last {
                if !pending.is_empty() {
                    let at_byte = offset - pending.len() as u64;
                    return Err(malformed_hlog(at_byte)).with_context(what);
                }
                return Ok(());
            }
        }
    }
}

/// Parses a merged `summary.json`, saying first when it is of another schema version (a report
/// of an older fleetload), then which field does not match.
fn read_summary(bytes: &[u8]) -> anyhow::Result<Summary> {
    let value: serde_json::Value = serde_json::from_slice(bytes).context("it is not JSON")?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == SCHEMA_VERSION as u64 => {}
        Some(v) => anyhow::bail!(
            "it has schema_version {v}, and this launcher reads schema_version {SCHEMA_VERSION} \
             only: compare runs whose reports have the same schema"
        ),
        None => anyhow::bail!(
            "it has no schema_version (accepted: a merged summary.json of schema_version \
             {SCHEMA_VERSION})"
        ),
    }
    Summary::from_json(bytes)
}
