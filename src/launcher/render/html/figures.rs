//! The page's charts, built from a merged run: which series each one draws, in which colour,
//! with which bands and markers. The series names are the names of the data they carry: the
//! columns of `merged/timeseries.csv` (`attempted`, `p99_ms`, …), the error codes, `latency`
//! and `service_time` on the spectrum, and the fields of the merged `e2e.timeline` on the
//! end-to-end chart.

use hdrhistogram::Histogram;

use super::chart::{Chart, Marker, Series, Unit, XScale, YScale};
use super::page::error_spans;
use super::spectrum::{spectrum_quantiles, spectrum_value, SPECTRUM_NINES};
use crate::launcher::merge::Merged;
use crate::launcher::render::format::compact;
use crate::model::profile::LoadProfile;
use crate::model::report::{E2e, SecondRow, Summary};

/// Stage boundaries are drawn on the throughput chart for profiles of at most this many stages.
const MAX_STAGE_MARKS: usize = 24;
/// The x axis title of the time charts.
const SECONDS_AXIS: &str = "seconds from the planned start";

const ERROR_COLORS: [&str; 8] = [
    "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
];

/// The seconds axis shared by the time charts, so they line up one above the other.
pub(super) struct TimeAxis {
    last: u64,
}

impl TimeAxis {
    pub(super) fn of(m: &Merged) -> Self {
        let last_row = m.rows.last().map_or(0, |r| r.second);
        let last_error = m
            .summary
            .errors_timeline
            .values()
            .flat_map(|p| p.iter().map(|(s, _)| *s))
            .max()
            .unwrap_or(0);
        let last_e2e = m
            .summary
            .end_to_end
            .e2e
            .as_ref()
            .and_then(|e| e.timeline.last())
            .map_or(0, |t| t.second);
        TimeAxis {
            last: last_row.max(last_error).max(last_e2e),
        }
    }

    fn domain(&self) -> (f64, f64) {
        (0.0, self.last.max(1) as f64)
    }
}

fn column(rows: &[SecondRow], f: impl Fn(&SecondRow) -> f64) -> Vec<(f64, f64)> {
    rows.iter().map(|r| (r.second as f64, f(r))).collect()
}

/// Events attempted, acknowledged and failed per second with the target rate; seconds with
/// failed events shaded, stage boundaries marked.
pub(super) fn throughput(m: &Merged, time: &TimeAxis) -> Option<Chart> {
    if m.rows.is_empty() {
        return None;
    }
    let rows = &m.rows;
    let mut target = Series::new("target_rate", "#222222", column(rows, |r| r.target_rate));
    target.label = "target rate".into();
    target.dashed = true;
    // Shade contiguous stretches of seconds with failed events.
    let mut bands: Vec<(f64, f64)> = Vec::new();
    for r in rows.iter().filter(|r| r.failed > 0) {
        let s = r.second as f64;
        match bands.last_mut() {
            Some((_, end)) if *end + 1.0 == s => *end = s,
            _ => bands.push((s, s)),
        }
    }
    Some(Chart {
        id: "throughput",
        x: XScale::Seconds,
        x_domain: time.domain(),
        x_label: SECONDS_AXIS,
        y: YScale::Linear,
        unit: Unit::Events,
        y_label: "events per second",
        series: vec![
            Series::new("attempted", "#8a96a3", column(rows, |r| r.attempted as f64)),
            Series::new(
                "acknowledged",
                "#1a8a4a",
                column(rows, |r| r.acknowledged as f64),
            ),
            Series::new("failed", "#d62728", column(rows, |r| r.failed as f64)),
            target,
        ],
        bands,
        band_label: "failed events",
        markers: stage_marks(&m.summary, time)
            .into_iter()
            .chain(abort_mark(&m.summary))
            .collect(),
        bars: false,
    })
}

/// Where a live threshold stopped the run (`--abort-on-fail`): on every time chart.
fn abort_mark(s: &Summary) -> Option<Marker> {
    let a = s.aborted.as_ref()?;
    Some(Marker {
        x: a.second as f64,
        label: format!("aborted: {}", a.threshold),
        color: "#c0392b".into(),
        row: 1,
    })
}

/// Where each stage of `FLEETLOAD_STAGES` begins, labelled with its rate.
fn stage_marks(s: &Summary, time: &TimeAxis) -> Vec<Marker> {
    let Some(profile) = s
        .scenario
        .get("FLEETLOAD_STAGES")
        .and_then(|v| LoadProfile::parse_stages(v).ok())
    else {
        return Vec::new();
    };
    if profile.stages().len() > MAX_STAGE_MARKS || profile.stages().len() < 2 {
        return Vec::new();
    }
    let mut at = 0.0;
    let mut marks = Vec::new();
    for stage in profile.stages() {
        if at > 0.0 && at <= time.last as f64 {
            marks.push(Marker {
                x: at,
                label: format!(
                    "{}{}/s per task",
                    if stage.ramp { "ramp to " } else { "" },
                    compact(stage.rate)
                ),
                color: "#777777".into(),
                row: 0,
            });
        }
        at += stage.duration.as_secs_f64();
    }
    marks
}

/// p50, p99 and max latency per second, on a log scale, with gaps where nothing was measured;
/// an abort marked.
pub(super) fn latency(rows: &[SecondRow], time: &TimeAxis, s: &Summary) -> Option<Chart> {
    if rows.is_empty() {
        return None;
    }
    let gap = |mut s: Series| {
        s.zero_is_gap = true;
        s
    };
    Some(Chart {
        id: "latency",
        x: XScale::Seconds,
        x_domain: time.domain(),
        x_label: SECONDS_AXIS,
        y: YScale::Log,
        unit: Unit::Millis,
        y_label: "latency (log scale)",
        series: vec![
            gap(Series::new("p50_ms", "#1f77b4", column(rows, |r| r.p50_ms))),
            gap(Series::new("p99_ms", "#ff7f0e", column(rows, |r| r.p99_ms))),
            gap(Series::new("max_ms", "#c0392b", column(rows, |r| r.max_ms))),
        ]
        .into_iter()
        .map(|mut s| {
            s.label = s.name.trim_end_matches("_ms").to_string();
            s
        })
        .collect(),
        bands: Vec::new(),
        band_label: "",
        markers: abort_mark(s).into_iter().collect(),
        bars: false,
    })
}

/// End-to-end latency per second of the intended send time (p50, p99 and max of the merged
/// per-second end-to-end histograms), on a log scale; `None` when no consumer read anything.
pub(super) fn e2e_latency(e: &E2e, time: &TimeAxis) -> Option<Chart> {
    if e.timeline.is_empty() {
        return None;
    }
    let column = |f: fn(&crate::model::report::E2eSecond) -> f64| -> Vec<(f64, f64)> {
        e.timeline.iter().map(|t| (t.second as f64, f(t))).collect()
    };
    let series = [
        ("p50_ms", "#1f77b4", column(|t| t.p50_ms)),
        ("p99_ms", "#ff7f0e", column(|t| t.p99_ms)),
        ("max_ms", "#c0392b", column(|t| t.max_ms)),
    ]
    .into_iter()
    .map(|(name, color, points)| {
        let mut s = Series::new(name, color, points);
        s.label = format!("end to end {}", name.trim_end_matches("_ms"));
        s.zero_is_gap = true;
        s
    })
    .collect();
    Some(Chart {
        id: "e2e",
        x: XScale::Seconds,
        x_domain: time.domain(),
        x_label: "second of the intended send time, from the planned start",
        y: YScale::Log,
        unit: Unit::Millis,
        y_label: "end-to-end latency (log scale)",
        series,
        bands: Vec::new(),
        band_label: "",
        markers: Vec::new(),
        bars: false,
    })
}

/// The whole run's latency and service time at each percentile of [`spectrum_quantiles`], from
/// the merged histograms; `None` when neither measured anything.
pub(super) fn spectrum(latency: &Histogram<u64>, service: &Histogram<u64>) -> Option<Chart> {
    let mut out = Vec::new();
    for (name, label, color, h) in [
        ("latency", "intended-time latency", "#1f77b4", latency),
        ("service_time", "service time", "#2ca02c", service),
    ] {
        if h.is_empty() {
            continue;
        }
        let points = spectrum_quantiles()
            .into_iter()
            .map(|q| (q, spectrum_value(h, q)))
            .collect();
        let mut series = Series::new(name, color, points);
        series.label = label.into();
        out.push(series);
    }
    if out.is_empty() {
        return None;
    }
    Some(Chart {
        id: "spectrum",
        x: XScale::Nines,
        x_domain: (0.0, SPECTRUM_NINES as f64),
        x_label: "percentile",
        y: YScale::Log,
        unit: Unit::Millis,
        y_label: "latency (log scale)",
        series: out,
        bands: Vec::new(),
        band_label: "",
        markers: Vec::new(),
        bars: false,
    })
}

/// Events with each error code per second, as stacked bars, with where each code started.
pub(super) fn errors(s: &Summary, time: &TimeAxis) -> Option<Chart> {
    let spans = error_spans(s);
    if spans.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    let mut markers = Vec::new();
    for (i, (code, points)) in s.errors_timeline.iter().enumerate() {
        let color = ERROR_COLORS[i % ERROR_COLORS.len()];
        let mut series = Series::new(
            code,
            color,
            points
                .iter()
                .map(|(sec, n)| (*sec as f64, *n as f64))
                .collect(),
        );
        series.sparse = true;
        if let Some(span) = spans.get(code.as_str()) {
            series.label = format!("{code} (from second {})", span.first);
            markers.push(Marker {
                x: span.first as f64,
                label: format!("{code} starts at {} s", span.first),
                color: color.to_string(),
                row: markers.len(),
            });
        }
        list.push(series);
    }
    if let Some(mut mark) = abort_mark(s) {
        mark.row = markers.len();
        markers.push(mark);
    }
    Some(Chart {
        id: "errors",
        x: XScale::Seconds,
        x_domain: time.domain(),
        x_label: SECONDS_AXIS,
        y: YScale::Linear,
        unit: Unit::Events,
        y_label: "events with this error per second",
        series: list,
        bands: Vec::new(),
        band_label: "",
        markers,
        bars: true,
    })
}
