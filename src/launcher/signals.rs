//! Stop requests from the person or the CI system (Ctrl-C, SIGTERM) while the launcher runs a
//! fleet, and what those signals do once the fleet phase is over.
//!
//! While a [`StopRequest`] exists, SIGINT and SIGTERM are requests to stop the fleet: the run
//! hears them and stops every task it started. Dropping it ends that: from then on the next
//! SIGINT or SIGTERM ends the launcher at once (exit 130 or 143, as a shell reports a process
//! killed by them), as if no handler had ever been installed.
//!
//! Why not "uninstall" the handlers: tokio's signal handling, once set up for a signal, stays
//! installed for the life of the process (the OS-level handler only records the signal for
//! tokio's driver), so with no listener left a Ctrl-C would simply be swallowed. Resetting the
//! disposition to SIG_DFL behind tokio's back would break any later [`StopRequest::listen`] in
//! the same process (tokio would not install its handler again). So dropping a [`StopRequest`]
//! restores the default behaviour explicitly: it spawns a listener that exits the process on
//! the next signal — unless another [`StopRequest`] is listening by then, whose run the signal
//! belongs to. A listener created now sees only signals delivered from now on, so a Ctrl-C
//! already handled by the run does not end the launcher afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::model::live::Aborted;

/// The name [`StopRequest::recv`] gives a stop asked for by a live threshold.
pub const ABORT: &str = "live threshold";

/// How many [`StopRequest`]s are listening in this process.
static LISTENING: AtomicUsize = AtomicUsize::new(0);

/// A stop request from the person or the CI system: Ctrl-C or SIGTERM.
pub struct StopRequest {
    term: Signal,
    int: Signal,
    /// The live view's abort, when the run has `--abort-on-fail`.
    abort: Option<watch::Receiver<Option<Aborted>>>,
}

impl StopRequest {
    /// Listens for SIGTERM and SIGINT from now on, until dropped.
    pub fn listen() -> anyhow::Result<Self> {
        let (term, int) = listeners()?;
        LISTENING.fetch_add(1, Ordering::SeqCst);
        Ok(StopRequest {
            term,
            int,
            abort: None,
        })
    }

    /// A live threshold that breaks (`Some` on `aborts`) is a stop request too, named [`ABORT`].
    pub fn with_abort(mut self, aborts: watch::Receiver<Option<Aborted>>) -> Self {
        self.abort = Some(aborts);
        self
    }

    /// The next stop request's name: the signal's, or [`ABORT`].
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            (name, _) = next(&mut self.term, &mut self.int) => name,
            () = aborted(&mut self.abort) => ABORT,
        }
    }
}

impl Drop for StopRequest {
    fn drop(&mut self) {
        LISTENING.fetch_sub(1, Ordering::SeqCst);
        // Outside a runtime there is nothing to restore: no tokio handler can be delivering.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok((mut term, mut int)) = listeners() else {
            return;
        };
        runtime.spawn(async move {
            loop {
                let (name, code) = next(&mut term, &mut int).await;
                if LISTENING.load(Ordering::SeqCst) == 0 {
                    eprintln!("launcher: {name} after the fleet phase: exiting");
                    std::process::exit(code);
                }
            }
        });
    }
}

fn listeners() -> anyhow::Result<(Signal, Signal)> {
    Ok((
        signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
    ))
}

/// Resolves once the live view has aborted the run; never without an abort to watch.
async fn aborted(abort: &mut Option<watch::Receiver<Option<Aborted>>>) {
    let Some(rx) = abort else {
        return std::future::pending().await;
    };
    loop {
        if rx.borrow_and_update().is_some() {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The next of SIGTERM and SIGINT: its name and the exit code of a process it ended.
async fn next(term: &mut Signal, int: &mut Signal) -> (&'static str, i32) {
    tokio::select! {
        _ = term.recv() => ("SIGTERM", 143),
        _ = int.recv() => ("SIGINT", 130),
    }
}
