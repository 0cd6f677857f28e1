//! The launcher: `launcher run | merge | stop`.
//!
//! [`cli`] is the command line as typed (the only module that sees clap); `plan` resolves `run`'s
//! arguments into one run plan (the workers' environment, validated with the worker's own
//! scenario rules, the run id, the start delay, the backend); `run` drives the plan through a
//! [`fleet`] backend (local processes or ECS tasks) while `live` shows the fleet window by window
//! (and may stop it: `--abort-on-fail`), then [`merge`] adds every task's report up
//! exactly and `verdict` writes the merged report, evaluates the `gate` (thresholds, JUnit),
//! prints the [`render`]ed table and page, and decides the [`exit`] status. [`cost`] estimates
//! what a run cost from list prices; [`compare`] compares a run with another (`launcher compare`,
//! `--baseline`), saying whether each change is larger than the runs' own noise.

pub mod cli;
pub mod compare;
pub mod cost;
pub mod exit;
pub mod fleet;
pub(crate) mod gate;
pub(crate) mod live;
pub mod merge;
pub(crate) mod plan;
mod progress;
pub mod render;
mod run;
mod signals;
mod verdict;

use anyhow::Context;

use crate::launcher::cli::{Cli, Command, MergeArgs};
use crate::launcher::exit::{ExitStatus, FleetFailed};
use crate::launcher::merge::merge_run;
use crate::launcher::verdict::{verdict, Gate};
use crate::model::report_url::ReportUrl;
use crate::store::ReportStore;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Run(args) => run::run_command(&args).await,
        Command::Merge(args) => merge_command(&args).await,
        Command::Stop(args) => run::stop_command(&args).await,
        Command::Compare(args) => compare::compare_command(&args).await,
    }
}

async fn merge_command(args: &MergeArgs) -> anyhow::Result<ExitStatus> {
    let thresholds = crate::launcher::gate::parse_all(&args.gate.thresholds)?;
    if let Some(path) = &args.gate.junit {
        crate::launcher::gate::check_junit_path(path)?;
    }
    let prices = cost::Prices::load(args.cost.prices.as_deref(), &args.cost.price)?;
    let baseline = compare::Baseline::of_gate(&args.gate, &thresholds).await?;
    let (url, run_id) = parse_run_location(&args.location)?;
    if let ReportUrl::Local(dir) = &url {
        // No directory means no task of the run wrote a report there (the fleet failed, or
        // the path is mistyped): said as such, rather than as an all-zero table.
        let run_dir = dir.join(&run_id);
        if !run_dir.is_dir() {
            return Err(FleetFailed(format!(
                "{:?}: {} does not exist, so no task of run {run_id} reported there; check the \
                 path (<REPORT_URL>/<RUN_ID>, such as ./fleetload-runs/RUN_ID)",
                args.location,
                run_dir.display()
            ))
            .into());
        }
    }
    let store = ReportStore::open(&url).await?;
    let mut merged = merge_run(&store, &run_id, None, args.expected_tasks).await?;
    // What the launcher saw live (the abort, stale tasks), when it kept it.
    match store.get(&crate::store::live_view_key(&run_id)).await {
        Ok(Some(bytes)) => match crate::model::live::LiveRecord::from_json(&bytes) {
            Ok(live) => run::apply_live(&mut merged.summary, &live),
            Err(e) => eprintln!("live view record not used: {e:#}"),
        },
        Ok(None) => {}
        Err(e) => eprintln!("live view record not read: {e:#}"),
    }
    cost::attach(
        &store,
        &run_id,
        &mut merged,
        None,
        &prices,
        baseline.is_some(),
    )
    .await;
    let gate = Gate {
        thresholds: &thresholds,
        junit: args.gate.junit.as_deref(),
        open: args.gate.open,
        baseline: baseline.as_ref(),
    };
    verdict(&store, &run_id, &merged, &gate, &[]).await
}

/// Splits `<REPORT_URL>/<RUN_ID>`: the last path segment is the run id, the rest the report URL.
pub fn parse_run_location(text: &str) -> anyhow::Result<(ReportUrl, String)> {
    let accepted = "accepted: <REPORT_URL>/<RUN_ID>, e.g. s3://bucket/prefix/RUN_ID, \
                    file:///dir/RUN_ID or ./fleetload-runs/RUN_ID";
    let trimmed = text.trim_end_matches('/');
    let Some((url, run_id)) = trimmed.rsplit_once('/') else {
        anyhow::bail!("{text:?} names no run: {accepted}");
    };
    if run_id.is_empty()
        || run_id == "."
        || run_id == ".."
        || url.ends_with(':')
        || url.ends_with(":/")
    {
        anyhow::bail!("{text:?} names no run: {accepted}");
    }
    // `file:///RUN` names run RUN in the root directory.
    let url = if url == "file://" { "file:///" } else { url };
    let url = if url.is_empty() { "/" } else { url };
    let report_url = ReportUrl::parse(url)
        .with_context(|| format!("{text:?} is not a run location ({accepted})"))?;
    Ok((report_url, run_id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_run_locations() {
        let (url, run) = parse_run_location("s3://bucket/some/prefix/run-1").unwrap();
        assert_eq!(
            url,
            ReportUrl::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(run, "run-1");
        let (url, run) = parse_run_location("s3://bucket/run-1/").unwrap();
        assert_eq!(url.to_string(), "s3://bucket");
        assert_eq!(run, "run-1");
        let (url, run) = parse_run_location("./fleetload-runs/r").unwrap();
        assert_eq!(url, ReportUrl::Local("./fleetload-runs".into()));
        assert_eq!(run, "r");
        let (url, _) = parse_run_location("file:///tmp/runs/r").unwrap();
        assert_eq!(url, ReportUrl::Local("/tmp/runs".into()));
        let (url, _) = parse_run_location("/r").unwrap();
        assert_eq!(url, ReportUrl::Local("/".into()));
        for bad in [
            "run-only",
            "s3://bucket",
            "s3://bucket/",
            "ftp://host/dir/run",
            "s3://B/run",
            "dir/..",
        ] {
            let err = parse_run_location(bad).unwrap_err();
            assert!(
                format!("{err:#}").contains("<REPORT_URL>/<RUN_ID>"),
                "{bad}: {err:#}"
            );
        }
    }
}
