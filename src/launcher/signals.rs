//! Stop requests from the person or the CI system (Ctrl-C, SIGTERM) while the launcher runs a
//! fleet. The handlers are installed for the run only: dropping the [`StopRequest`] releases
//! them.

use anyhow::Context;

/// A stop request from the person or the CI system: Ctrl-C or SIGTERM.
pub struct StopRequest {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopRequest {
    /// Listens for SIGTERM and SIGINT from now on.
    pub fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopRequest {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// The next signal's name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
