//! The worker process from start to exit.

use std::time::Duration;

use crate::model::scenario::Scenario;
use crate::worker::exit::{WorkerExit, HARD_DEADLINE_EXIT, HARD_DEADLINE_GRACE};
use crate::worker::sink::{Files, Target};
use crate::worker::task::run;

/// The worker process from start to exit: logging, the scenario from the environment, the
/// runtime, signals and the hard deadline. The `worker` binary is this function; the launcher's
/// local backend runs it too (`launcher __worker`), so a local run needs one executable only.
pub fn process_main() -> std::process::ExitCode {
    use std::process::ExitCode;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let vars = match utf8_environment(std::env::vars_os()) {
        Ok(vars) => vars,
        Err(name) => {
            // The value is not quoted: it may be a secret, and it is not text.
            eprintln!(
                "fleetload worker: {name} is not valid: its value is not UTF-8 text; accepted: \
                 UTF-8 text"
            );
            return ExitCode::from(WorkerExit::BadConfig.code());
        }
    };
    let scenario =
        match Scenario::from_env(vars).and_then(|s| Target::check(&s, Files::Here).map(|()| s)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("fleetload worker: {e}");
                return ExitCode::from(WorkerExit::BadConfig.code());
            }
        };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetload worker: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    start_hard_deadline(&scenario);
    let result = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(None);
        tokio::spawn(forward_signals(tx));
        run(scenario, rx).await
    });
    // Dropping the runtime could wait on a target's blocked I/O; the report is stored, so leave.
    runtime.shutdown_timeout(Duration::from_secs(2));
    ExitCode::from(result.exit.code())
}

/// The environment as text. A `FLEETLOAD_*` variable whose value is not UTF-8 is refused by
/// its name (read lossily it would become another value, a password that silently fails);
/// other variables are not the worker's to judge and are read lossily.
fn utf8_environment(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (k, v) in vars {
        let name = k.to_string_lossy().into_owned();
        match v.into_string() {
            Ok(v) => out.push((name, v)),
            Err(_) if name.starts_with("FLEETLOAD_") => return Err(name),
            Err(v) => out.push((name, v.to_string_lossy().into_owned())),
        }
    }
    Ok(out)
}

/// No task may run on forever and cost money: past the planned end plus a grace period the
/// process ends, whatever the target or the report store is doing.
fn start_hard_deadline(scenario: &Scenario) {
    let wait_for_start = scenario
        .start_at
        .and_then(|t| (t - chrono::Utc::now()).to_std().ok())
        .unwrap_or_default();
    // A consumer reads for the settle time after the producers' planned end.
    let settle = match scenario.end_to_end.role {
        crate::model::trace::Role::Consume => scenario.end_to_end.settle,
        crate::model::trace::Role::Produce => Duration::ZERO,
    };
    let deadline =
        wait_for_start + scenario.profile.total_duration() + settle + HARD_DEADLINE_GRACE;
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!(
            "fleetload worker: hard deadline reached ({}s after start); exiting",
            deadline.as_secs()
        );
        std::process::exit(HARD_DEADLINE_EXIT as i32);
    });
}

/// SIGTERM (ECS stopping the task) and SIGINT (Ctrl-C) both ask the worker to stop producing,
/// drain, and store its report.
async fn forward_signals(tx: tokio::sync::watch::Sender<Option<&'static str>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if tx.borrow().is_some() {
            tracing::warn!("{name} again: no longer waiting for acknowledgements");
        } else {
            tracing::warn!("{name}: stopping production, then storing the report");
        }
        // Every signal is a change, so a second one cuts the wait for acknowledgements short.
        tx.send_modify(|v| *v = Some(v.unwrap_or(name)));
    }
}
