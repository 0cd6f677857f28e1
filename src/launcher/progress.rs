//! What the launcher's screen shows while a fleet runs: the plan of the run, then a progress bar
//! on a terminal or a plain line every 10 s in a CI log, and the live view's windows (a table
//! under the bar, or a line each).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::launcher::fleet::TaskEnd;
use crate::model::report_url::ReportUrl;
use crate::model::scenario::Scenario;
use crate::model::target::TargetConfig;

/// What the launcher's screen shows during a run: a progress bar on a terminal, a plain line
/// every 10 s in a CI log.
pub struct Display {
    bar: ProgressBar,
    /// On a terminal: the bar and the live view's lines under it.
    multi: Option<MultiProgress>,
    tty: bool,
    start_at: chrono::DateTime<Utc>,
    duration: Duration,
    last_line: Instant,
    total: u32,
    /// Consumer tasks among `total`, and how long they read after the producers' end.
    consumers: u32,
    settle: Duration,
}

impl Display {
    /// A display for a run of `total` tasks producing for `duration` from `start_at`.
    pub fn new(total: u32, start_at: chrono::DateTime<Utc>, duration: Duration) -> Self {
        Self::with_consumers(total, 0, start_at, duration, Duration::ZERO)
    }

    /// A display for a run of `producers` tasks producing for `duration` from `start_at`, and
    /// `consumers` tasks reading until `settle` after that.
    pub fn with_consumers(
        producers: u32,
        consumers: u32,
        start_at: chrono::DateTime<Utc>,
        duration: Duration,
        settle: Duration,
    ) -> Self {
        let total = producers + consumers;
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = ProgressBar::new(duration.as_secs().max(1));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len}s  {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        let multi = if tty {
            let multi = MultiProgress::new();
            let bar = multi.add(bar.clone());
            bar.tick();
            Some(multi)
        } else {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            None
        };
        Display {
            bar,
            multi,
            tty,
            start_at,
            duration,
            last_line: Instant::now() - Duration::from_secs(60),
            total,
            consumers,
            settle: if consumers > 0 {
                settle
            } else {
                Duration::ZERO
            },
        }
    }

    /// Tasks are starting: `started` of `requested` so far.
    pub fn started(&mut self, started: u32, requested: u32) {
        self.bar
            .set_message(format!("started {started}/{requested}"));
        self.bar.tick();
    }

    /// The fleet's state now: `running` tasks (of which `running_consumers` are consumers),
    /// and those that `ended`.
    pub fn tasks(&mut self, running: u32, running_consumers: u32, ended: &[&TaskEnd]) {
        let now = Utc::now();
        let phase = if now < self.start_at {
            format!("starts in {}s", (self.start_at - now).num_seconds() + 1)
        } else {
            let elapsed = (now - self.start_at).to_std().unwrap_or_default();
            self.bar
                .set_position(elapsed.as_secs().min(self.duration.as_secs()));
            if elapsed < self.duration {
                format!("{}s left", (self.duration - elapsed).as_secs())
            } else if elapsed < self.duration + self.settle {
                format!(
                    "producers' end passed; consumers read {}s more",
                    (self.duration + self.settle - elapsed).as_secs()
                )
            } else {
                "draining and storing reports".to_string()
            }
        };
        let tally = |consumer: bool, running: u32, of: u32| {
            let ended: Vec<&&TaskEnd> = ended.iter().filter(|e| e.consumer == consumer).collect();
            let ok = ended.iter().filter(|e| e.ok).count();
            format!(
                "running {running} · done {ok} · failed {} (of {of})",
                ended.len() - ok
            )
        };
        let msg = if self.consumers == 0 {
            format!("{phase} · {}", tally(false, running, self.total))
        } else {
            format!(
                "{phase} · producers: {} · consumers: {}",
                tally(
                    false,
                    running - running_consumers,
                    self.total - self.consumers
                ),
                tally(true, running_consumers, self.consumers)
            )
        };
        if self.tty {
            self.bar.set_message(msg);
        } else if self.last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!("fleet: {msg}");
            self.last_line = Instant::now();
        }
    }

    /// A line above the bar.
    pub fn note(&self, text: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Where the live view shows its windows: under the bar on a terminal, else as lines.
    pub(crate) fn live_output(&self) -> LiveOutput {
        LiveOutput {
            multi: self.multi.clone(),
            lines: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Clears the bar (and the live view's lines under it).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

/// Where the live view shows a window: a table of lines under the progress bar on a terminal
/// (each line a bar of its own, so the table is redrawn in place), or one line per window in
/// a CI log.
#[derive(Clone)]
pub(crate) struct LiveOutput {
    multi: Option<MultiProgress>,
    lines: Arc<Mutex<Vec<ProgressBar>>>,
}

impl LiveOutput {
    /// Shows a window: `table` under the bar on a terminal, else `line`.
    pub(crate) fn show(&self, table: &[String], line: &str) {
        let Some(multi) = &self.multi else {
            eprintln!("{line}");
            return;
        };
        let mut bars = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        while bars.len() < table.len() {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            bars.push(bar);
        }
        for (i, bar) in bars.iter().enumerate() {
            bar.set_message(table.get(i).cloned().unwrap_or_default());
        }
    }

    /// A line above the bar (or in the log).
    pub(crate) fn note(&self, text: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

/// What a run's tasks write to or read from, in words.
fn target_text(s: &Scenario, embedded: Option<&str>) -> String {
    match &s.target {
        TargetConfig::Kinesis { stream, aggregate } => format!(
            "kinesis stream {stream}{}",
            if *aggregate { " (KPL aggregation)" } else { "" }
        ),
        TargetConfig::Kafka { topic, properties } => match embedded {
            Some(servers) => format!("kafka topic {topic} on the embedded broker ({servers})"),
            None => format!(
                "kafka topic {topic} on {}",
                properties
                    .get("bootstrap.servers")
                    .map(String::as_str)
                    .unwrap_or("?")
            ),
        },
        TargetConfig::Null => "null (nothing is sent)".to_string(),
    }
}

/// The consumer tasks of a run, for [`print_plan`]: how many, and their scenario.
pub(crate) struct ConsumersShown<'a> {
    /// How many consumer tasks.
    pub(crate) count: u32,
    /// Their scenario (what they read, the settle time).
    pub(crate) scenario: &'a Scenario,
}

/// Prints what is about to run: run id, fleet and target, consumers, load, start instant,
/// report.
#[allow(clippy::too_many_arguments)]
pub(crate) fn print_plan(
    run_id: &str,
    tasks: u32,
    s: &Scenario,
    consumers: Option<&ConsumersShown>,
    url: &ReportUrl,
    embedded: Option<String>,
    logs: Option<&std::path::Path>,
    start_at: chrono::DateTime<Utc>,
) {
    println!("run id: {run_id}");
    let target = target_text(s, embedded.as_deref());
    let rate = match s.profile.planned_events() {
        None => "as fast as the target accepts".to_string(),
        Some(n) => format!(
            "{:.0} events/s per task, {:.0} in all",
            n as f64 / s.profile.total_duration().as_secs_f64(),
            n as f64 * tasks as f64 / s.profile.total_duration().as_secs_f64()
        ),
    };
    println!("fleet:  {tasks} task(s) → {target}");
    if let Some(c) = consumers {
        let same_broker = matches!(
            (&s.target, &c.scenario.target),
            (TargetConfig::Kafka { properties: a, .. }, TargetConfig::Kafka { properties: b, .. })
                if a.get("bootstrap.servers") == b.get("bootstrap.servers")
        );
        println!(
            "        {} consumer task(s) ← {}, until {} after the producers' end; every produced \
             event carries a trace",
            c.count,
            target_text(c.scenario, embedded.as_deref().filter(|_| same_broker)),
            humantime::format_duration(c.scenario.end_to_end.settle)
        );
    }
    println!(
        "load:   {rate} for {}",
        humantime::format_duration(s.profile.total_duration())
    );
    println!(
        "start:  {}",
        start_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    println!("report: {}", url.run_url(run_id));
    if let Some(logs) = logs {
        println!("logs:   {}", logs.display());
    }
}
