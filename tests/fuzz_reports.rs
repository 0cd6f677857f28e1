//! The report readers and the merge under arbitrary and mutated input (proptest, a bounded number
//! of cases so the run stays within seconds): they refuse what they cannot read, they never
//! panic, and a task whose files were damaged is either merged from what is still sound or
//! named as unreadable, never dropped.
//!
//! The scenario parser has its own fuzz test next to it (`model::scenario`), since the scenario
//! is not part of the library's public names.

mod common;

use common::synthetic_task;
use fleetload::launcher::merge::{merge_reports, TaskInput};
use fleetload::model::report::{
    decode_histogram, parse_hlog, parse_timeseries, timeseries_csv, write_hlog, Outcome, Summary,
};
use proptest::prelude::*;

const RUN: &str = "fuzz-run";

/// The three files of a sound task.
fn sound(task_id: &str) -> [Vec<u8>; 3] {
    let t = synthetic_task(
        RUN,
        task_id,
        &[1000, 2500, 40_000, 7],
        1,
        3,
        Outcome::Completed,
    );
    [
        t.summary.to_json(),
        timeseries_csv(&t.rows),
        write_hlog(t.summary.planned_start, &t.per_second),
    ]
}

/// One damage done to a file: bytes overwritten, cut short, or inserted.
#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Flip(at, b)),
        any::<usize>().prop_map(Damage::Truncate),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![any::<u8>(), Just(b'9'), Just(b'-'), Just(b','), Just(b'"')],
                1..24
            )
        )
            .prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
    ]
}

fn apply(mut bytes: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        let len = bytes.len().max(1);
        match d {
            Damage::Flip(at, b) => {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] = *b;
                }
            }
            Damage::Truncate(at) => bytes.truncate(at % len),
            Damage::Insert(at, more) => {
                let i = at % len.min(bytes.len() + 1);
                bytes.splice(i..i, more.iter().copied());
            }
        }
    }
    bytes
}

/// The inputs random bytes rarely are: nothing, a blank line, spaces. Each reader refuses them,
/// naming its file; the interval log's may also read them as a log of no seconds.
#[test]
fn the_report_readers_refuse_empty_and_blank_input_naming_the_file() {
    for bytes in [&b""[..], b"\n", b"   ", b"\r\n\r\n"] {
        let e = Summary::from_json(bytes).unwrap_err();
        assert!(
            format!("{e:#}").contains("summary.json"),
            "{bytes:?}: {e:#}"
        );
        let e = parse_timeseries(bytes).unwrap_err();
        assert!(
            format!("{e:#}").contains("timeseries.csv"),
            "{bytes:?}: {e:#}"
        );
        let e = decode_histogram(&String::from_utf8_lossy(bytes)).unwrap_err();
        assert!(format!("{e:#}").contains("histogram"), "{bytes:?}: {e:#}");
        match parse_hlog(bytes) {
            Ok(seconds) => assert!(seconds.is_empty(), "{bytes:?}"),
            Err(e) => assert!(format!("{e:#}").contains("histograms.hlog"), "{e:#}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, max_shrink_time: 10_000, ..ProptestConfig::default() })]

    /// Each reader refuses what is not its format, with a message naming the file (the merge
    /// passes it on when it names a task it could not read). The one exception is an interval
    /// log with nothing but blank or comment lines: that is a valid log of no seconds.
    #[test]
    fn the_report_readers_refuse_arbitrary_bytes_naming_the_file(
        bytes in prop::collection::vec(any::<u8>(), 0..2048)
    ) {
        let refused = |what: &str, r: anyhow::Result<()>, names: &str| -> Result<(), TestCaseError> {
            let e = r.err().ok_or_else(|| TestCaseError::fail(format!("{what} accepted {bytes:?}")))?;
            let message = format!("{e:#}");
            prop_assert!(message.contains(names), "{what}: {message}");
            Ok(())
        };
        refused("Summary::from_json", Summary::from_json(&bytes).map(drop), "summary.json")?;
        refused("parse_timeseries", parse_timeseries(&bytes).map(drop), "timeseries.csv")?;
        refused(
            "decode_histogram",
            decode_histogram(&String::from_utf8_lossy(&bytes)).map(drop),
            "histogram",
        )?;
        match parse_hlog(&bytes) {
            Ok(seconds) => {
                prop_assert!(seconds.is_empty(), "{seconds:?}");
                let text = String::from_utf8_lossy(&bytes);
                prop_assert!(
                    text.lines().all(|l| l.trim().is_empty() || l.starts_with('#')),
                    "parse_hlog accepted {bytes:?}"
                );
            }
            Err(e) => prop_assert!(format!("{e:#}").contains("histograms.hlog"), "{e:#}"),
        }
    }

    #[test]
    fn a_damaged_task_is_merged_or_named_never_dropped_and_the_merge_never_panics(
        file in 0usize..3,
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let good = sound("task-a");
        let mut bad = sound("task-z");
        bad[file] = apply(std::mem::take(&mut bad[file]), &damages);
        let [summary, timeseries, hlog] = bad;
        let inputs = vec![
            TaskInput {
                task_id: "task-a".into(),
                summary: Some(good[0].clone()),
                timeseries: Some(good[1].clone()),
                hlog: Some(good[2].clone()),
            },
            TaskInput {
                task_id: "task-z".into(),
                summary: Some(summary),
                timeseries: Some(timeseries),
                hlog: Some(hlog),
            },
        ];
        let merged = merge_reports(RUN, inputs, None, Some(2));
        let info = merged.summary.merge.as_ref().expect("merge info");
        let readable = merged.tasks.iter().any(|t| t.task_id == "task-z");
        let named = format!("{:?}", info).contains("task-z");
        prop_assert!(readable || named, "task-z vanished: {info:?}");
        // What was merged reconciles: the sound task's counts are always in.
        prop_assert!(merged.summary.counts.attempted >= 5);
        prop_assert_eq!(
            merged.summary.counts.attempted,
            merged.summary.counts.acknowledged + merged.summary.counts.failed
        );
        let _ = merged.summary.to_json();
    }
}
