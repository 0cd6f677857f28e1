//! Inline SVG charts: linear or log y axes, a seconds or a "nines" x axis, line series split at
//! gaps, stacked bars, shaded bands and labelled vertical markers, with a legend above. It knows
//! nothing about runs or reports: the page says which series to draw and how to name them.
//!
//! Every chart carries its data in a machine-checkable form: each series is a
//! `<polyline data-series="NAME">` (bars: `<g class="bars" data-series="NAME">`), and all its
//! points are listed as a `<g class="pts" data-series="NAME">` of one
//! `<circle data-second="X" data-value="V">` per point (`data-quantile` on a nines axis);
//! [`Chart::json`] gives the same arrays. Values are printed in Rust's shortest round-trip form.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use super::escape::esc;
use crate::launcher::render::format::{compact, duration_label, seconds_label, trim};

/// Series with at most this many points show a dot per point; longer ones (a 1-hour run has
/// 3,600) show only the line, and their dots stay in the page as data for tooltips and tests.
const DOTS_UP_TO: usize = 120;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 42.0;

/// The x axis.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum XScale {
    /// Seconds, linear.
    Seconds,
    /// A quantile q placed at `log10(1/(1-q))`: one unit per nine. The domain is `(0, nines)`.
    Nines,
}

/// The y axis.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum YScale {
    Linear,
    Log,
}

/// What the y values are, for tick labels and tooltips.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Unit {
    /// Counts per second, labelled compactly (`1.5k`).
    Events,
    /// Milliseconds, labelled as durations.
    Millis,
}

pub(crate) struct Series {
    /// `data-series`: the name tests and tooltips look the series up by.
    pub(crate) name: String,
    /// What the legend says.
    pub(crate) label: String,
    pub(crate) color: String,
    pub(crate) dashed: bool,
    /// A zero means "nothing measured": the line has a gap there instead of a dive.
    pub(crate) zero_is_gap: bool,
    /// Only recorded points are listed; the other seconds are zero.
    pub(crate) sparse: bool,
    /// `(x, value)`: x is a second or a quantile.
    pub(crate) points: Vec<(f64, f64)>,
}

impl Series {
    /// A solid line of `points`, labelled with its name.
    pub(crate) fn new(name: &str, color: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_string(),
            label: name.to_string(),
            color: color.to_string(),
            dashed: false,
            zero_is_gap: false,
            sparse: false,
            points,
        }
    }
}

/// A dashed vertical line at `x` with a label.
pub(crate) struct Marker {
    pub(crate) x: f64,
    pub(crate) label: String,
    pub(crate) color: String,
    /// Label row, so labels of nearby markers do not overlap.
    pub(crate) row: usize,
}

pub(crate) struct Chart {
    /// `data-chart`, the figure's `chart-ID` and the key of its data.
    pub(crate) id: &'static str,
    pub(crate) x: XScale,
    pub(crate) x_domain: (f64, f64),
    /// The x axis title.
    pub(crate) x_label: &'static str,
    pub(crate) y: YScale,
    pub(crate) unit: Unit,
    /// The y axis title.
    pub(crate) y_label: &'static str,
    pub(crate) series: Vec<Series>,
    /// Shaded x ranges (inclusive seconds).
    pub(crate) bands: Vec<(f64, f64)>,
    /// What a band is, in its tooltip: "LABEL in seconds A–B".
    pub(crate) band_label: &'static str,
    pub(crate) markers: Vec<Marker>,
    /// Stacked bars per second instead of lines (counts of sparse events: a bar starts exactly
    /// at its second, where a line would slope in from the second before).
    pub(crate) bars: bool,
}

/// Draws `chart` as a `<figure>`, or says there is no data.
pub(crate) fn draw(out: &mut String, chart: Option<&Chart>) {
    match chart {
        Some(c) => c.render(out),
        None => out.push_str("<p class=\"empty\">No data.</p>\n"),
    }
}

impl Chart {
    fn x_pos(&self, x: f64) -> f64 {
        let (x0, x1) = self.x_domain;
        let x = match self.x {
            XScale::Seconds => x,
            XScale::Nines => nines(x, x1),
        };
        LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)
    }

    fn y_domain(&self) -> (f64, f64) {
        let values = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite());
        match self.y {
            YScale::Linear => {
                let max = if self.bars {
                    let mut stacks: BTreeMap<u64, f64> = BTreeMap::new();
                    for (x, v) in self.series.iter().flat_map(|s| &s.points) {
                        *stacks.entry(*x as u64).or_default() += v;
                    }
                    stacks.into_values().fold(0.0, f64::max)
                } else {
                    values.fold(0.0, f64::max)
                };
                if max <= 0.0 {
                    (0.0, 1.0)
                } else {
                    let step = nice_step(max / 5.0);
                    (0.0, (max / step).ceil() * step)
                }
            }
            YScale::Log => {
                let (lo, hi) = values
                    .filter(|v| *v > 0.0)
                    .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
                if hi <= 0.0 {
                    return (0.1, 10.0);
                }
                let lo = 10f64.powf(lo.log10().floor());
                let hi = 10f64.powf(hi.log10().ceil());
                (lo, if hi <= lo { lo * 10.0 } else { hi })
            }
        }
    }

    fn y_pos(&self, v: f64, (y0, y1): (f64, f64)) -> f64 {
        let h = HEIGHT - TOP - BOTTOM;
        let f = match self.y {
            YScale::Linear => (v - y0) / (y1 - y0),
            YScale::Log if v <= 0.0 => 0.0,
            YScale::Log => (v.log10() - y0.log10()) / (y1.log10() - y0.log10()),
        };
        TOP + h - f.clamp(0.0, 1.0) * h
    }

    fn y_ticks(&self, (y0, y1): (f64, f64)) -> Vec<f64> {
        match self.y {
            YScale::Linear => {
                let step = nice_step(y1 / 5.0);
                (0..)
                    .map(|i| y0 + i as f64 * step)
                    .take_while(|v| *v <= y1 * (1.0 + 1e-9))
                    .collect()
            }
            YScale::Log => {
                let decades = (y1 / y0).log10().round() as i32;
                let mut ticks = Vec::new();
                for d in 0..=decades {
                    let base = y0 * 10f64.powi(d);
                    ticks.push(base);
                    if decades <= 2 && d < decades {
                        ticks.push(base * 2.0);
                        ticks.push(base * 5.0);
                    }
                }
                ticks
            }
        }
    }

    fn x_ticks(&self) -> Vec<(f64, String)> {
        match self.x {
            XScale::Nines => (0..=self.x_domain.1 as u32)
                .map(|n| {
                    let q = 1.0 - 10f64.powi(-(n as i32));
                    let label = if n == 0 {
                        "0%".to_string()
                    } else {
                        format!("{}%", trim(q * 100.0, n as usize))
                    };
                    (q, label)
                })
                .collect(),
            XScale::Seconds => {
                let (x0, x1) = self.x_domain;
                let span = x1 - x0;
                let step = [
                    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
                    3600.0, 7200.0, 14400.0, 21600.0, 43200.0, 86400.0,
                ]
                .into_iter()
                .find(|s| span / s <= 10.0)
                .unwrap_or(86400.0 * 7.0);
                (0..)
                    .map(|i| x0 + i as f64 * step)
                    .take_while(|v| *v <= x1)
                    .map(|v| (v, seconds_label(v as u64)))
                    .collect()
            }
        }
    }

    fn render(&self, out: &mut String) {
        let yd = self.y_domain();
        let (x0, x1) = self.x_domain;
        let pw = WIDTH - LEFT - RIGHT;
        let ph = HEIGHT - TOP - BOTTOM;
        let x_attr = match self.x {
            XScale::Seconds => "second",
            XScale::Nines => "quantile",
        };

        // The legend is HTML above the chart: it wraps instead of overlapping the lines.
        let _ = write!(
            out,
            "<figure class=\"chart\" id=\"chart-{}\"><div class=\"legend\">",
            self.id
        );
        for s in &self.series {
            let _ = write!(
                out,
                "<span class=\"key\" data-series=\"{}\"><i class=\"{}\" style=\"border-color:{}\">\
                 </i>{}</span>",
                esc(&s.name),
                if s.dashed { "dash" } else { "solid" },
                esc(&s.color),
                esc(&s.label)
            );
        }
        let _ = write!(
            out,
            "</div>\n<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" data-chart=\"{}\" \
             data-x=\"{x_attr}\" data-xscale=\"{}\" data-yscale=\"{}\" data-plot=\"{LEFT},{TOP},\
             {pw},{ph}\" data-xdomain=\"{x0},{x1}\" data-ydomain=\"{},{}\" role=\"img\" \
             aria-label=\"{}\">\n",
            self.id,
            match self.x {
                XScale::Seconds => "seconds",
                XScale::Nines => "nines",
            },
            match self.y {
                YScale::Linear => "linear",
                YScale::Log => "log",
            },
            yd.0,
            yd.1,
            esc(self.y_label),
        );

        // Grid and axes.
        out.push_str("<g class=\"grid\">");
        for v in self.y_ticks(yd) {
            let y = self.y_pos(v, yd);
            let _ = write!(
                out,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
                LEFT + pw
            );
        }
        for (v, _) in self.x_ticks() {
            let x = self.x_pos(v);
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{}\"/>",
                TOP + ph
            );
        }
        out.push_str("</g>\n<g class=\"axis\">");
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{0}\"/><line x1=\"{LEFT}\" \
             x2=\"{1}\" y1=\"{0}\" y2=\"{0}\"/>",
            TOP + ph,
            LEFT + pw
        );
        for v in self.y_ticks(yd) {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" dy=\"0.35em\">{}</text>",
                LEFT - 6.0,
                self.y_pos(v, yd),
                esc(&self.tick_label(v))
            );
        }
        let ticks = self.x_ticks();
        for (i, (v, label)) in ticks.iter().enumerate() {
            let x = self.x_pos(*v);
            // The last label is right-aligned so it stays inside the picture.
            let anchor = if i + 1 == ticks.len() && x > LEFT + pw - 20.0 {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
                TOP + ph + 16.0,
                esc(label)
            );
        }
        let _ = writeln!(
            out,
            "<text class=\"title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text class=\"title\" transform=\"translate(14 {}) rotate(-90)\" \
             text-anchor=\"middle\">{}</text></g>",
            LEFT + pw / 2.0,
            HEIGHT - 6.0,
            esc(self.x_label),
            TOP + ph / 2.0,
            esc(self.y_label)
        );

        for (a, b) in &self.bands {
            let xa = self.x_pos(a - 0.5).max(LEFT);
            let xb = self.x_pos(b + 0.5).min(LEFT + pw);
            let _ = write!(
                out,
                "<rect class=\"band\" data-from=\"{a}\" data-to=\"{b}\" x=\"{xa:.1}\" y=\"{TOP}\" \
                 width=\"{:.1}\" height=\"{ph}\"><title>{} in seconds {a}–{b}</title></rect>",
                (xb - xa).max(1.0),
                esc(self.band_label)
            );
        }

        for m in &self.markers {
            let x = self.x_pos(m.x);
            let _ = write!(
                out,
                "<line class=\"marker\" data-x=\"{}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" \
                 y2=\"{}\" stroke=\"{}\"/>",
                m.x,
                TOP + ph,
                esc(&m.color),
            );
        }

        // Bars or lines, then the points (data carriers, and dots on short series).
        let mut stacks: BTreeMap<u64, f64> = BTreeMap::new();
        let mut tops: Vec<Vec<f64>> = Vec::new();
        for s in self.series.iter().filter(|_| self.bars) {
            let slot = pw / (x1 - x0).max(1.0);
            let width = (slot * 0.8).max(1.0);
            let _ = write!(
                out,
                "<g class=\"bars\" data-series=\"{}\" fill=\"{}\">",
                esc(&s.name),
                esc(&s.color)
            );
            let mut series_tops = Vec::new();
            for (x, v) in &s.points {
                let base = stacks.entry(*x as u64).or_default();
                let (y_low, y_high) = (self.y_pos(*base, yd), self.y_pos(*base + v, yd));
                *base += v;
                series_tops.push(*base);
                let _ = write!(
                    out,
                    "<rect x=\"{:.1}\" y=\"{y_high:.1}\" width=\"{width:.1}\" height=\"{:.1}\"/>",
                    self.x_pos(*x) - width / 2.0,
                    (y_low - y_high).max(0.5)
                );
            }
            tops.push(series_tops);
            out.push_str("</g>\n");
        }
        for s in self.series.iter().filter(|_| !self.bars) {
            for segment in self.segments(s) {
                let points: Vec<String> = segment
                    .iter()
                    .map(|(x, v)| format!("{:.1},{:.1}", self.x_pos(*x), self.y_pos(*v, yd)))
                    .collect();
                let _ = writeln!(
                    out,
                    "<polyline data-series=\"{}\" class=\"line{}\" stroke=\"{}\" points=\"{}\"/>",
                    esc(&s.name),
                    if s.dashed { " dash" } else { "" },
                    esc(&s.color),
                    points.join(" ")
                );
            }
        }
        for (i, s) in self.series.iter().enumerate() {
            // Dots mark the seconds of a short time series; a spectrum is a curve, bars are
            // their own marks.
            let dots = self.x == XScale::Seconds && !self.bars && s.points.len() <= DOTS_UP_TO;
            let _ = write!(
                out,
                "<g class=\"pts{}\" data-series=\"{}\" fill=\"{}\">",
                if dots { " dots" } else { "" },
                esc(&s.name),
                esc(&s.color)
            );
            for (k, (x, v)) in s.points.iter().enumerate() {
                let hidden = s.zero_is_gap && *v == 0.0;
                // On stacked bars the point sits on top of its bar.
                let at = tops.get(i).map_or(*v, |t| t[k]);
                let _ = write!(
                    out,
                    "<circle{} cx=\"{:.1}\" cy=\"{:.1}\" data-{x_attr}=\"{x}\" data-value=\"{v}\"/>",
                    if hidden { " class=\"gap\"" } else { "" },
                    self.x_pos(*x),
                    self.y_pos(at, yd),
                );
            }
            out.push_str("</g>\n");
        }

        for m in &self.markers {
            let x = self.x_pos(m.x);
            let right = x > LEFT + pw * 0.7;
            let _ = write!(
                out,
                "<text class=\"marker\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{}\" fill=\"{}\">{}\
                 </text>",
                if right { x - 4.0 } else { x + 4.0 },
                TOP + 12.0 + (m.row % 4) as f64 * 14.0,
                if right { "end" } else { "start" },
                esc(&m.color),
                esc(&m.label)
            );
        }
        let _ = writeln!(
            out,
            "<line class=\"cursor\" x1=\"0\" x2=\"0\" y1=\"{TOP}\" y2=\"{}\" visibility=\"hidden\"/>\
             <rect class=\"hit\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\"/>\
             </svg></figure>",
            TOP + ph
        );
    }

    /// The polylines of a series: split at gaps; a sparse series is drawn with its missing
    /// seconds at zero.
    fn segments(&self, s: &Series) -> Vec<Vec<(f64, f64)>> {
        if s.sparse {
            let at: BTreeMap<u64, f64> = s.points.iter().map(|(x, v)| (*x as u64, *v)).collect();
            let (x0, x1) = self.x_domain;
            return vec![(x0 as u64..=x1 as u64)
                .map(|sec| (sec as f64, at.get(&sec).copied().unwrap_or(0.0)))
                .collect()];
        }
        let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for p in &s.points {
            if s.zero_is_gap && p.1 == 0.0 {
                if !out.last().is_some_and(Vec::is_empty) {
                    out.push(Vec::new());
                }
            } else {
                out.last_mut().expect("never empty").push(*p);
            }
        }
        out.retain(|seg| !seg.is_empty());
        out
    }

    fn tick_label(&self, v: f64) -> String {
        match self.unit {
            Unit::Events => compact(v),
            Unit::Millis => duration_label(v),
        }
    }

    /// The chart's exact data, for the page's tooltips and for anyone who wants the numbers.
    pub(crate) fn json(&self) -> Value {
        json!({
            "x": match self.x { XScale::Seconds => "second", XScale::Nines => "quantile" },
            "xscale": match self.x { XScale::Seconds => "seconds", XScale::Nines => "nines" },
            "unit": match self.unit { Unit::Events => "events/s", Unit::Millis => "ms" },
            "sparse": self.series.iter().any(|s| s.sparse),
            "series": self.series.iter().map(|s| json!({
                "name": s.name,
                "label": s.label,
                "color": s.color,
                "points": s.points.iter().map(|(x, v)| json!([x, v])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Where quantile `q` sits on a nines axis: `log10(1/(1-q))`, capped at `last` for q = 1.
fn nines(q: f64, last: f64) -> f64 {
    if q >= 1.0 {
        last
    } else {
        -(1.0 - q).log10()
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let exp = 10f64.powf(raw.log10().floor());
    let f = raw / exp;
    exp * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_helpers() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(130.0), 200.0);
        assert_eq!(nice_step(4000.0), 5000.0);
        assert!((nines(0.999, 5.0) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0, 5.0), 5.0);
    }
}
