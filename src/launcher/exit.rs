//! How the launcher exits, the codes a CI pipeline reads: **0** every threshold held; **1** a
//! threshold was broken; **2** bad usage or configuration; **3** the fleet failed. 3 beats 1: a
//! run with missing or failed tasks measured only part of the load, so its thresholds say little.

use std::process::ExitCode;

/// How the launcher exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: every threshold held (and the fleet completed).
    Held = 0,
    /// 1: a threshold was broken.
    ThresholdBroken = 1,
    /// 2: bad usage or configuration.
    Usage = 2,
    /// 3: the fleet failed: tasks did not start, exited non-zero, or reports are missing.
    FleetFailed = 3,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit status for an error: [`ExitStatus::FleetFailed`] when a [`FleetFailed`] is in its
    /// chain, otherwise [`ExitStatus::Usage`] (the input or the configuration was wrong).
    pub fn of_error(error: &anyhow::Error) -> ExitStatus {
        if error.chain().any(|e| e.is::<FleetFailed>()) {
            ExitStatus::FleetFailed
        } else {
            ExitStatus::Usage
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}

/// An error meaning the fleet failed (exit code 3) rather than the input being wrong (exit 2):
/// the fleet backends return it (or add it as context) when tasks cannot be started or stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FleetFailed(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_of_errors() {
        let usage = anyhow::anyhow!("bad");
        assert_eq!(ExitStatus::of_error(&usage), ExitStatus::Usage);
        let fleet = anyhow::Error::new(FleetFailed("RunTask failed".into())).context("run");
        assert_eq!(ExitStatus::of_error(&fleet), ExitStatus::FleetFailed);
        assert_eq!(ExitStatus::FleetFailed.code(), 3);
    }
}
