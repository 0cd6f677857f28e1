//! What the launcher's screen shows while a fleet runs: the plan of the run, then a progress bar
//! on a terminal or a plain line every 10 s in a CI log.

use std::time::{Duration, Instant};

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::launcher::fleet::TaskEnd;
use crate::model::report_url::ReportUrl;
use crate::model::scenario::{Scenario, TargetConfig};

/// What the launcher's screen shows during a run: a progress bar on a terminal, a plain line
/// every 10 s in a CI log.
pub struct Display {
    bar: ProgressBar,
    tty: bool,
    start_at: chrono::DateTime<Utc>,
    duration: Duration,
    last_line: Instant,
    total: u32,
}

impl Display {
    /// A display for a run of `total` tasks producing for `duration` from `start_at`.
    pub fn new(total: u32, start_at: chrono::DateTime<Utc>, duration: Duration) -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = ProgressBar::new(duration.as_secs().max(1));
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len}s  {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        if !tty {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Display {
            bar,
            tty,
            start_at,
            duration,
            last_line: Instant::now() - Duration::from_secs(60),
            total,
        }
    }

    /// Tasks are starting: `started` of `requested` so far.
    pub fn started(&mut self, started: u32, requested: u32) {
        self.bar
            .set_message(format!("started {started}/{requested}"));
        self.bar.tick();
    }

    /// The fleet's state now.
    pub fn tasks(&mut self, running: u32, ended: &[&TaskEnd]) {
        let ok = ended.iter().filter(|e| e.ok).count();
        let failed = ended.len() - ok;
        let now = Utc::now();
        let phase = if now < self.start_at {
            format!("starts in {}s", (self.start_at - now).num_seconds() + 1)
        } else {
            let elapsed = (now - self.start_at).to_std().unwrap_or_default();
            self.bar
                .set_position(elapsed.as_secs().min(self.duration.as_secs()));
            if elapsed < self.duration {
                format!("{}s left", (self.duration - elapsed).as_secs())
            } else {
                "draining and storing reports".to_string()
            }
        };
        let msg = format!(
            "{phase} · running {running} · done {ok} · failed {failed} (of {})",
            self.total
        );
        if self.tty {
            self.bar.set_message(msg);
        } else if self.last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!("fleet: {msg}");
            self.last_line = Instant::now();
        }
    }

    /// A line above the bar.
    pub fn note(&self, text: &str) {
        if self.tty {
            self.bar.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Prints what is about to run: run id, fleet and target, load, start instant, report.
pub(crate) fn print_plan(
    run_id: &str,
    tasks: u32,
    s: &Scenario,
    url: &ReportUrl,
    embedded: Option<String>,
    logs: Option<&std::path::Path>,
    start_at: chrono::DateTime<Utc>,
) {
    println!("run id: {run_id}");
    let target = match &s.target {
        TargetConfig::Kinesis { stream, aggregate } => format!(
            "kinesis stream {stream}{}",
            if *aggregate { " (KPL aggregation)" } else { "" }
        ),
        TargetConfig::Kafka { topic, properties } => match &embedded {
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
    };
    let rate = match s.profile.planned_events() {
        None => "as fast as the target accepts".to_string(),
        Some(n) => format!(
            "{:.0} events/s per task, {:.0} in all",
            n as f64 / s.profile.total_duration().as_secs_f64(),
            n as f64 * tasks as f64 / s.profile.total_duration().as_secs_f64()
        ),
    };
    println!("fleet:  {tasks} task(s) → {target}");
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
