//! How two runs' scenarios differ: target, tasks, how long they produced, the fleetload that
//! merged them, and every `FLEETLOAD_*` setting but those that name the run itself.

use std::collections::BTreeSet;

use super::report::Difference;
use crate::model::report::Summary;

/// Settings that differ between any two runs by design (the run's and task's ids, its start
/// instant, where it reported, a consumer's place among the consumers): not differences of the
/// scenario.
const PER_RUN: [&str; 5] = [
    "FLEETLOAD_RUN_ID",
    "FLEETLOAD_TASK_ID",
    "FLEETLOAD_START_AT",
    "FLEETLOAD_REPORT_URL",
    "FLEETLOAD_CONSUMER",
];

/// Production lengths closer than this are the same (tasks end a few milliseconds apart).
const SAME_DURATION_S: f64 = 1.0;

/// What differs between the scenarios of `base` and `new`, in a fixed order: target, tasks,
/// production length, version, then the settings by name.
pub fn differences(base: &Summary, new: &Summary) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut differ = |name: &str, b: String, n: String| {
        if b != n {
            out.push(Difference {
                name: name.to_string(),
                base: b,
                new: n,
            });
        }
    };
    differ("target", base.target.clone(), new.target.clone());
    let tasks = |s: &Summary| s.merge.as_ref().map_or(0, |m| m.tasks_expected).to_string();
    differ("tasks", tasks(base), tasks(new));
    if (base.duration_s - new.duration_s).abs() >= SAME_DURATION_S {
        differ(
            "production (s)",
            format!("{:.1}", base.duration_s),
            format!("{:.1}", new.duration_s),
        );
    }
    differ(
        "fleetload version",
        base.fleetload_version.clone(),
        new.fleetload_version.clone(),
    );
    let names: BTreeSet<&String> = base
        .scenario
        .keys()
        .chain(new.scenario.keys())
        .filter(|k| !PER_RUN.contains(&k.as_str()))
        .collect();
    let value = |s: &Summary, k: &str| {
        s.scenario
            .get(k)
            .cloned()
            .unwrap_or_else(|| "(not set)".to_string())
    };
    for name in names {
        differ(name, value(base, name), value(new, name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::gate::tests::summary;

    #[test]
    fn lists_what_differs_and_nothing_that_names_the_run() {
        let mut a = summary();
        let mut b = summary();
        for (k, va, vb) in [
            ("FLEETLOAD_RATE", "100", "200"),
            ("FLEETLOAD_RUN_ID", "run-a", "run-b"),
            ("FLEETLOAD_TASK_ID", "t1", "t7"),
            ("FLEETLOAD_PAYLOAD", "sensor", "sensor"),
        ] {
            a.scenario.insert(k.into(), va.into());
            b.scenario.insert(k.into(), vb.into());
        }
        b.scenario.insert("FLEETLOAD_KEYS".into(), "50".into());
        b.merge.as_mut().unwrap().tasks_expected = 4;
        b.target = "kinesis".into();
        let d = differences(&a, &b);
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["target", "tasks", "FLEETLOAD_KEYS", "FLEETLOAD_RATE"]
        );
        assert_eq!(d[3].base, "100");
        assert_eq!(d[3].new, "200");
        assert_eq!(d[2].base, "(not set)");
        assert!(differences(&a, &a).is_empty());
    }
}
