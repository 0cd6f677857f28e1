//! The launcher: `launcher run | merge | stop`. Parses the command line, builds the runtime and
//! hands over to [`fleetload::launcher::run`]; exit codes are those of
//! [`fleetload::launcher::exit::ExitStatus`] (0 held, 1 threshold broken, 2 usage, 3 fleet failed).

use std::process::ExitCode;

use clap::Parser;
use fleetload::launcher::{self, cli::Cli, exit::ExitStatus};

fn main() -> ExitCode {
    // The local backend runs the launcher's own executable as each worker (`launcher __worker`);
    // the image ships this one binary for both roles, `/usr/local/bin/worker` being a link to it.
    let mut args = std::env::args_os();
    let called_worker = args
        .next()
        .is_some_and(|a| std::path::Path::new(&a).file_name() == Some("worker".as_ref()));
    if called_worker
        || args
            .next()
            .is_some_and(|a| a == fleetload::launcher::fleet::local::WORKER_MODE_ARG)
    {
        return fleetload::worker::process_main();
    }
    // An argument that is not UTF-8 (a password from a binary file, say) is refused by what
    // can be said of it without quoting it: clap's own refusal names neither.
    for (i, arg) in std::env::args_os().enumerate().skip(1) {
        if arg.to_str().is_none() {
            let text = arg.to_string_lossy();
            let what = match text.split_once('=') {
                Some((key, _)) if !key.contains('\u{FFFD}') => format!("{key}=…"),
                _ => format!("argument {i}"),
            };
            eprintln!(
                "launcher: {what} is not valid: not UTF-8 text (the value is not shown: it may be \
                 a secret); accepted: UTF-8 text"
            );
            return ExitStatus::Usage.into();
        }
    }
    // clap exits with 2 on a usage error (0 for --help and --version). Its message quotes
    // what was typed, so secret values given with -e are taken out of it first.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let args: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let text = launcher::cli::redact_args(&e.render().to_string(), &args);
            if e.use_stderr() {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,fleetload=info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("launcher: cannot start the async runtime: {e}");
            return ExitStatus::Usage.into();
        }
    };
    match runtime.block_on(launcher::run(cli)) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("launcher: {e:#}");
            ExitStatus::of_error(&e).into()
        }
    }
}
