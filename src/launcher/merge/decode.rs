//! One task's summary and time series parsed, and the summary's histograms decoded into a
//! batch; a report that cannot be read is a reason, never a panic. (Its per-second histograms
//! are merged a window of seconds at a time, in `seconds`.)

use anyhow::Context;

use crate::model::report::{
    parse_timeseries, SecondRow, Summary, HLOG_FILE, SUMMARY_FILE, TIMESERIES_FILE,
};

use super::hdr::{Batch, Decoder};
use super::merged::MAX_SECOND;

/// Slots of a task's [`Batch`] that are not seconds: the whole-run histograms of the summary.
pub(super) const SLOT_LATENCY: u32 = u32::MAX;
pub(super) const SLOT_SERVICE: u32 = u32::MAX - 1;
/// A task's report, decoded; or why it could not be.
pub(super) struct Decoded {
    pub(super) task_id: String,
    pub(super) report: Result<DecodedReport, String>,
}

impl Decoded {
    pub(super) fn problem(task_id: String, reason: String) -> Self {
        Decoded {
            task_id,
            report: Err(reason),
        }
    }
}

/// A readable report: its summary and rows; its whole-run histograms are in the decoding
/// thread's [`Batch`] (slot [`SLOT_LATENCY`] and [`SLOT_SERVICE`]).
pub(super) struct DecodedReport {
    pub(super) summary: Summary,
    pub(super) rows: Vec<SecondRow>,
    /// Its `histograms.hlog` is to be merged (it has one).
    pub(super) per_second: bool,
}

/// A task's files as the first pass of the merge reads them: the summary and the time series
/// (`None` for a file that is absent), and whether there is an interval log.
pub(super) struct TaskFiles<'a> {
    pub(super) task_id: &'a str,
    pub(super) summary: Option<&'a [u8]>,
    pub(super) timeseries: Option<&'a [u8]>,
    pub(super) has_hlog: bool,
}

/// Parses and decodes one task's summary and time series. A task that measured nothing may
/// lack its time series and interval log; any other missing or malformed file makes the whole
/// report unreadable, so the totals and the time series always cover the same tasks.
pub(super) fn decode_task(
    run_id: &str,
    files: TaskFiles<'_>,
    decoder: &mut Decoder,
    batch: &mut Batch,
) -> Decoded {
    let task_id = files.task_id.to_string();
    let mark = batch.mark();
    match decode_report(run_id, files, decoder, batch) {
        Ok(report) => Decoded {
            task_id,
            report: Ok(report),
        },
        Err(e) => {
            batch.truncate(mark);
            Decoded::problem(task_id, format!("{e:#}"))
        }
    }
}

pub(super) fn decode_report(
    run_id: &str,
    files: TaskFiles<'_>,
    decoder: &mut Decoder,
    batch: &mut Batch,
) -> anyhow::Result<DecodedReport> {
    let summary_bytes = files
        .summary
        .with_context(|| format!("{SUMMARY_FILE} is missing"))?;
    let summary = Summary::from_json(summary_bytes).with_context(|| SUMMARY_FILE.to_string())?;
    anyhow::ensure!(
        summary.run_id == run_id,
        "{SUMMARY_FILE} belongs to run {:?}, not {run_id:?}",
        summary.run_id
    );
    let c = &summary.counts;
    // The contract's identities, in checked arithmetic: a report whose counts do not add up
    // (or whose sums would wrap) is not a measurement. A planned count of 0 is a report from
    // before the count existed.
    anyhow::ensure!(
        c.acknowledged.checked_add(c.failed) == Some(c.attempted)
            && (c.planned == 0 || c.attempted.checked_add(c.unsent) == Some(c.planned)),
        "{SUMMARY_FILE} counts do not add up: attempted {} should be acknowledged {} + failed {}, \
         and planned {} should be attempted + unsent {}",
        c.attempted,
        c.acknowledged,
        c.failed,
        c.planned,
        c.unsent
    );
    let measured_nothing = summary.counts.attempted == 0 && summary.counts.acknowledged == 0;
    for (text, slot, what) in [
        (&summary.histograms.latency, SLOT_LATENCY, "latency"),
        (
            &summary.histograms.service_time,
            SLOT_SERVICE,
            "service-time",
        ),
    ] {
        if text.trim().is_empty() && measured_nothing {
            continue;
        }
        decoder
            .decode_base64(text, slot, batch)
            .with_context(|| format!("{what} histogram in {SUMMARY_FILE}"))?;
    }
    let rows = match files.timeseries {
        Some(bytes) => parse_timeseries(bytes)?,
        None if measured_nothing => Vec::new(),
        None => anyhow::bail!("{TIMESERIES_FILE} is missing"),
    };
    if let Some(row) = rows.iter().find(|r| r.second > MAX_SECOND) {
        anyhow::bail!(
            "{TIMESERIES_FILE} has a row for second {}, beyond any run",
            row.second
        );
    }
    if !files.has_hlog && !measured_nothing {
        anyhow::bail!("{HLOG_FILE} is missing");
    }
    Ok(DecodedReport {
        summary,
        rows,
        per_second: files.has_hlog,
    })
}
