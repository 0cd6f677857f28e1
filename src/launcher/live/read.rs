//! Reading the tasks' live windows from the report store: one listing of a window's prefix and
//! one read per task that wrote it, each window read once.

use std::collections::BTreeSet;

use futures::StreamExt;

use crate::model::live::LiveWindow;
use crate::store::{live_dir, live_window_dir, ReportStore};

/// Reads at once: enough to hide S3's per-request latency for a fleet of hundreds.
const READ_CONCURRENCY: usize = 32;

/// Reads windows, remembering which `(window, task)` it has read.
pub(super) struct WindowReader {
    store: ReportStore,
    run_id: String,
    read: BTreeSet<(u64, String)>,
    /// Requests made so far: listings and reads.
    pub(super) lists: u64,
    pub(super) gets: u64,
}

/// `<run>/live/w000012/t.json` → `(12, "t")`.
fn parse_key(run_id: &str, key: &str) -> Option<(u64, String)> {
    let rest = key.strip_prefix(&format!("{}/", live_dir(run_id)))?;
    let (dir, file) = rest.split_once('/')?;
    let window = dir.strip_prefix('w')?.parse().ok()?;
    let task = file.strip_suffix(".json")?;
    (!task.is_empty() && !task.contains('/')).then(|| (window, task.to_string()))
}

impl WindowReader {
    pub(super) fn new(store: ReportStore, run_id: &str) -> Self {
        WindowReader {
            store,
            run_id: run_id.to_string(),
            read: BTreeSet::new(),
            lists: 0,
            gets: 0,
        }
    }

    /// The windows `window` of every task that has written it and was not read yet; the
    /// second list says what could not be read (a task's unreadable window counts as stale).
    pub(super) async fn read_window(&mut self, window: u64) -> (Vec<LiveWindow>, Vec<String>) {
        self.lists += 1;
        match self
            .store
            .list(&live_window_dir(&self.run_id, window))
            .await
        {
            Ok(keys) => self.read_keys(keys).await,
            Err(e) => (Vec::new(), vec![format!("{e:#}")]),
        }
    }

    /// Every window not read yet, whatever its number (after the fleet phase: the final windows
    /// and any that came late): one listing of the run's live prefix.
    pub(super) async fn read_rest(&mut self) -> (Vec<LiveWindow>, Vec<String>) {
        self.lists += 1;
        match self
            .store
            .list(&format!("{}/w", live_dir(&self.run_id)))
            .await
        {
            Ok(keys) => self.read_keys(keys).await,
            Err(e) => (Vec::new(), vec![format!("{e:#}")]),
        }
    }

    async fn read_keys(&mut self, keys: Vec<String>) -> (Vec<LiveWindow>, Vec<String>) {
        let new: Vec<(String, (u64, String))> = keys
            .into_iter()
            .filter_map(|k| parse_key(&self.run_id, &k).map(|id| (k, id)))
            .filter(|(_, id)| !self.read.contains(id))
            .collect();
        self.gets += new.len() as u64;
        let store = &self.store;
        let answers: Vec<_> = futures::stream::iter(new)
            .map(|(key, id)| async move {
                let got = store.get(&key).await;
                (key, id, got)
            })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        let mut windows = Vec::new();
        let mut problems = Vec::new();
        for (key, id, got) in answers {
            match got.and_then(|bytes| {
                let bytes = bytes.ok_or_else(|| anyhow::anyhow!("gone"))?;
                LiveWindow::from_json(&bytes)
            }) {
                Ok(w) if w.window == id.0 && w.task_id == id.1 => {
                    self.read.insert(id);
                    windows.push(w);
                }
                Ok(w) => problems.push(format!(
                    "{}: holds window {} of task {}",
                    store.display_url(&key),
                    w.window,
                    w.task_id
                )),
                Err(e) => problems.push(format!("{}: {e:#}", store.display_url(&key))),
            }
        }
        windows.sort_by(|a, b| (a.window, &a.task_id).cmp(&(b.window, &b.task_id)));
        (windows, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_window_and_task() {
        assert_eq!(
            parse_key("r", "r/live/w000012/local-01.json"),
            Some((12, "local-01".to_string()))
        );
        assert_eq!(parse_key("r", "r/live/view.json"), None);
        assert_eq!(parse_key("r", "r/live/w1/a/b.json"), None);
        assert_eq!(parse_key("r", "other/live/w000001/t.json"), None);
        assert_eq!(parse_key("r", "r/live/wx/t.json"), None);
    }
}
