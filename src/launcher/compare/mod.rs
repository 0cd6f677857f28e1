//! Comparing runs: `launcher compare BASE NEW`, and `launcher run | merge … --baseline LOCATION`.
//! Its one job is to say, metric by metric, how one run differs from another and whether the
//! difference is larger than the two runs' own second-to-second noise (`regressed`, `improved`,
//! `within noise`, or `not judged` when the reports keep nothing to measure the noise with). It
//! reads both runs through the report store and must never change them: it only adds
//! `compare.json` and `compare.html` (next to NEW's merged report, or in `--out`); it never
//! re-merges a run, never averages a percentile (each is read from merged histograms), never fills
//! in a missing file, and never calls a change regressed without an interval that shows it.
//!
//! `load` reads a merged run; `scenario` lists how the scenarios differ; `bootstrap` resamples
//! seconds; `metrics` decides what is compared and the verdict rule; `report` is `compare.json`;
//! `table` and `page` show it.

pub(crate) mod bootstrap;
mod load;
mod metrics;
mod page;
pub mod report;
mod scenario;
mod table;

use std::path::Path;

use anyhow::Context;

pub use bootstrap::{Interval, Settings, DEFAULT_RESAMPLES, DEFAULT_SEED};
pub use load::Run;
pub use metrics::{judge, Rules, DEFAULT_MIN_EFFECT, DEFAULT_MIN_SHARE_EFFECT};
pub use report::{Comparison, MetricRow, Unit, Verdict, COMPARE_HTML, COMPARE_JSON};
pub use table::MAX_WIDTH;

use crate::launcher::cli::{CompareArgs, GateArgs, NoiseArgs};
use crate::launcher::exit::ExitStatus;
use crate::launcher::gate::junit::JunitCase;
use crate::launcher::gate::Threshold;
use crate::launcher::render::format::timestamp;
use crate::model::report::Summary;
use crate::store::{merged_dir, ReportStore};
use load::Columns;
use metrics::SecondsOf;
use report::{Method, RunInfo, COMPARE_SCHEMA_VERSION};

/// How a comparison judges: the bootstrap's settings and the minimum effects.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Options {
    /// Replicates, seed, confidence.
    pub settings: Settings,
    /// Minimum effects.
    pub rules: Rules,
}

/// The run a `run` or `merge` is compared with (`--baseline`): read, and checked complete,
/// before any task starts.
#[derive(Debug, Clone)]
pub struct Baseline {
    run: Run,
    /// How the comparison judges.
    pub options: Options,
    /// Exit 1 when a metric is `regressed`.
    pub fail_on_regression: bool,
}

impl Options {
    /// The options as typed.
    pub fn of(noise: &NoiseArgs) -> Options {
        Options {
            settings: Settings {
                resamples: noise.resamples,
                seed: noise.seed,
                ..Settings::default()
            },
            rules: Rules {
                min_effect: noise.min_effect,
                min_share_effect: noise.min_share_effect,
            },
        }
    }
}

impl Baseline {
    /// The baseline `--baseline` names, read now (before any task starts), or `None`; a
    /// threshold relative to a baseline without `--baseline` is refused (exit 2).
    pub async fn of_gate(
        gate: &GateArgs,
        thresholds: &[Threshold],
    ) -> anyhow::Result<Option<Baseline>> {
        crate::launcher::gate::check_baseline_given(thresholds, gate.baseline.is_some())?;
        let Some(location) = &gate.baseline else {
            return Ok(None);
        };
        let baseline =
            Baseline::load(location, Options::of(&gate.noise), gate.fail_on_regression).await?;
        println!(
            "baseline: run {} at {} ({} events acknowledged, p99 {} ms)",
            baseline.run.summary.run_id,
            location,
            crate::launcher::render::format::thousands(baseline.run.summary.counts.acknowledged),
            baseline.run.summary.latency_ms.p99
        );
        Ok(Some(baseline))
    }

    /// Reads the baseline run at `location`; an error (exit 2) names what is missing.
    pub async fn load(
        location: &str,
        options: Options,
        fail_on_regression: bool,
    ) -> anyhow::Result<Baseline> {
        let run = Run::load("baseline", location)
            .await
            .context("--baseline cannot be used")?;
        Ok(Baseline {
            run,
            options,
            fail_on_regression,
        })
    }

    /// The baseline's merged summary (what `baseline` in a threshold refers to).
    pub fn summary(&self) -> &Summary {
        &self.run.summary
    }

    /// Where the baseline is, as given.
    pub fn location(&self) -> &str {
        &self.run.location
    }

    /// Compares run `run_id`, just merged into `store`, with the baseline: prints the table and
    /// writes `compare.json` and `compare.html` next to the run's merged report.
    pub async fn compare_with(
        &self,
        store: &ReportStore,
        run_id: &str,
    ) -> anyhow::Result<Comparison> {
        let location = store.display_url(run_id);
        let new = Run::from_store("this run", &location, store.clone(), run_id).await?;
        let comparison = compare(&self.run, &new, &self.options).await?;
        print!("\n{}", table::render(&comparison));
        let (json, html) = write(&comparison, &self.run, &new, None).await?;
        println!("comparison: {json} and {html}");
        Ok(comparison)
    }
}

/// Compares `new` with `base`.
pub async fn compare(base: &Run, new: &Run, options: &Options) -> anyhow::Result<Comparison> {
    let columns = Columns::of(&base.summary, &new.summary);
    let (base_units, new_units) = tokio::try_join!(base.units(&columns), new.units(&columns))?;
    let (base_e2e, new_e2e) = tokio::try_join!(base.e2e_units(), new.e2e_units())?;
    let (base, new, options) = (base.clone(), new.clone(), *options);
    // Resampling is CPU work: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let seconds = SecondsOf {
            base: &base_units,
            new: &new_units,
            e2e: base_e2e.as_ref().zip(new_e2e.as_ref()),
        };
        let metrics = metrics::rows(
            &base,
            &new,
            &columns,
            &seconds,
            &options.settings,
            &options.rules,
        );
        let notes = notes_of(&metrics);
        let count = |v: Verdict| metrics.iter().filter(|m| m.verdict == v).count();
        let block_s = |u: &bootstrap::Units| u.block() as u64 * u.unit_seconds;
        Comparison {
            schema_version: COMPARE_SCHEMA_VERSION,
            base: run_info(&base),
            new: run_info(&new),
            scenario_differences: scenario::differences(&base.summary, &new.summary),
            method: Method {
                name: "moving-block bootstrap over seconds".into(),
                resamples: options.settings.resamples,
                seed: options.settings.seed,
                confidence: options.settings.confidence,
                base_block_s: block_s(&base_units),
                new_block_s: block_s(&new_units),
                min_effect: options.rules.min_effect,
                min_share_effect: options.rules.min_share_effect,
                rule: format!(
                    "regressed (improved): the whole {} % interval of the change lies on the \
                     worse (better) side of zero, and the change is at least {} % of BASE ({} \
                     percentage points for shares); otherwise within noise",
                    options.settings.confidence * 100.0,
                    options.rules.min_effect * 100.0,
                    options.rules.min_share_effect * 100.0
                ),
            },
            regressed: count(Verdict::Regressed),
            improved: count(Verdict::Improved),
            metrics,
            notes,
        }
    })
    .await
    .context("the comparison panicked")
}

/// One line per reason a metric was not judged, naming the metrics: the whole group when all of
/// its metrics share the reason (`service time`), else each one (`latency max`).
fn notes_of(metrics: &[MetricRow]) -> Vec<String> {
    let mut by_why: Vec<(&str, Vec<String>)> = Vec::new();
    for m in metrics.iter().filter(|m| m.verdict == Verdict::NotJudged) {
        let Some(why) = m.why.as_deref() else {
            continue;
        };
        let whole_group = metrics
            .iter()
            .filter(|o| o.group == m.group)
            .all(|o| o.why.as_deref() == Some(why));
        let name = if whole_group {
            m.group.clone()
        } else {
            m.label()
        };
        match by_why.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) => {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            None => by_why.push((why, vec![name])),
        }
    }
    by_why
        .into_iter()
        .map(|(why, names)| format!("{}: {why}", names.join(", ")))
        .collect()
}

fn run_info(r: &Run) -> RunInfo {
    let s = &r.summary;
    RunInfo {
        location: r.location.clone(),
        run_id: s.run_id.clone(),
        target: s.target.clone(),
        planned_start: timestamp(Some(s.planned_start)),
        tasks_expected: s.merge.as_ref().map_or(0, |m| m.tasks_expected),
        tasks_reported: s.merge.as_ref().map_or(0, |m| m.tasks_reported),
        duration_s: s.duration_s,
        outcome: s.outcome.status().to_string(),
        fleetload_version: s.fleetload_version.clone(),
    }
}

/// Writes `compare.json` and `compare.html` into `out`, or next to NEW's merged report; where
/// they went.
pub async fn write(
    comparison: &Comparison,
    base: &Run,
    new: &Run,
    out: Option<&Path>,
) -> anyhow::Result<(String, String)> {
    let json = serde_json::to_vec_pretty(comparison).expect("a comparison serializes");
    let html = page::render(comparison, base, new);
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--out {}: could not create it", dir.display()))?;
            let (j, h) = (dir.join(COMPARE_JSON), dir.join(COMPARE_HTML));
            std::fs::write(&j, json).with_context(|| format!("could not write {}", j.display()))?;
            std::fs::write(&h, html).with_context(|| format!("could not write {}", h.display()))?;
            Ok((j.display().to_string(), h.display().to_string()))
        }
        None => {
            let dir = merged_dir(&new.run_id);
            let (j, h) = (
                format!("{dir}/{COMPARE_JSON}"),
                format!("{dir}/{COMPARE_HTML}"),
            );
            new.store
                .put(&j, json, "application/json")
                .await
                .with_context(|| format!("could not write {}", new.store.display_url(&j)))?;
            new.store
                .put(&h, html.into_bytes(), "text/html")
                .await
                .with_context(|| format!("could not write {}", new.store.display_url(&h)))?;
            Ok((new.store.display_url(&j), new.store.display_url(&h)))
        }
    }
}

/// The comparison's JUnit cases, one per metric: a failure for a `regressed` one when
/// `fail_on_regression`, the verdict and the numbers in every case's output.
pub fn junit_cases(c: &Comparison, fail_on_regression: bool) -> Vec<JunitCase> {
    c.metrics
        .iter()
        .map(|m| {
            let line = format!(
                "{}: {} → {}, {} — {}{}",
                m.label(),
                report::value_text(m.unit, m.base),
                report::value_text(m.unit, m.new),
                m.change_text(),
                m.verdict.text(),
                m.why
                    .as_ref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default()
            );
            let failure = (fail_on_regression && m.verdict == Verdict::Regressed).then(|| {
                (
                    format!("{} regressed: {}", m.label(), m.change_text()),
                    format!(
                        "{line}\ncompared with baseline {} ({})",
                        c.base.location, c.base.run_id
                    ),
                )
            });
            JunitCase {
                name: format!("baseline: {}", m.label()),
                failure,
                output: Some(line),
            }
        })
        .collect()
}

/// `launcher compare BASE NEW`.
pub async fn compare_command(args: &CompareArgs) -> anyhow::Result<ExitStatus> {
    if let Some(path) = &args.junit {
        crate::launcher::gate::check_junit_path(path)?;
    }
    let options = Options::of(&args.noise);
    let (base, new) = tokio::try_join!(Run::load("BASE", &args.base), Run::load("NEW", &args.new))?;
    let comparison = compare(&base, &new, &options).await?;
    print!("{}", table::render(&comparison));
    let (json, html) = write(&comparison, &base, &new, args.out.as_deref()).await?;
    println!("comparison: {json}");
    println!("html page: {html}");
    if args.open {
        match args.out.as_deref() {
            Some(dir) => println!(
                "{}",
                crate::launcher::render::open::open_from_store(
                    &ReportStore::Local(dir.to_path_buf()),
                    COMPARE_HTML
                )
            ),
            None => println!(
                "{}",
                crate::launcher::render::open::open_from_store(
                    &new.store,
                    &format!("{}/{COMPARE_HTML}", merged_dir(&new.run_id))
                )
            ),
        }
    }
    if let Some(path) = &args.junit {
        let xml = crate::launcher::gate::junit::suites_xml(
            &format!("fleetload compare {} {}", base.run_id, new.run_id),
            &[(
                "comparison with the baseline".to_string(),
                junit_cases(&comparison, args.fail_on_regression),
            )],
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        std::fs::write(path, xml)
            .with_context(|| format!("could not write the JUnit report {}", path.display()))?;
    }
    let status = if args.fail_on_regression && comparison.regressed > 0 {
        ExitStatus::ThresholdBroken
    } else {
        ExitStatus::Held
    };
    println!(
        "result: {} (exit {})",
        match (comparison.regressed, status) {
            (0, _) => "NO REGRESSION".to_string(),
            (n, ExitStatus::ThresholdBroken) => format!("{n} REGRESSED"),
            (n, _) => format!("{n} regressed (not failing: no --fail-on-regression)"),
        },
        status.code()
    );
    Ok(status)
}
