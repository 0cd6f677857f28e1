//! The worker: the Docker image's entrypoint. Reads `FLEETLOAD_*` from the environment, produces
//! for the scenario's duration and stores its report. Exit codes: 0 completed, 1 failed during
//! the run, 2 bad scenario, 3 preflight failed, 4 report not stored (printed on stdout instead),
//! 5 hard deadline, 130/143 interrupted by SIGINT/SIGTERM (report stored).

use std::process::ExitCode;

fn main() -> ExitCode {
    fleetload::worker::process_main()
}
