//! The report store: what the worker and the launcher talk through, a local directory or S3.
//!
//! Tasks take no inbound connections (on Fargate there is no way in), so everything that passes
//! between a running fleet and its launcher is an object here: the tasks' reports and live
//! windows going out, the launcher's control object coming in. The store knows keys and bytes,
//! nothing of what they mean (the formats live in `model`); it sits under both the worker and
//! the launcher and depends on neither.
//!
//! Keys are relative to the store's root and `/`-separated. The layout under the root is the one
//! of DESIGN.md, and the functions below are its single source:
//!
//! ```text
//! <run_id>/tasks/<task_id>/started.json, summary.json, timeseries.csv, histograms.hlog
//! <run_id>/live/w<window>/<task_id>.json        one task's live window (window numbered from 0)
//! <run_id>/live/view.json                       what the launcher saw live (stale tasks, abort)
//! <run_id>/control.json                         what the launcher tells the running tasks
//! <run_id>/merged/summary.json, timeseries.csv, histograms.hlog, report.html
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::primitives::ByteStream;

use crate::model::report_url::ReportUrl;

/// Attempts per S3 request (the first one included), with the SDK's standard backoff: a report
/// must survive a throttled or briefly unreachable S3, but a wrong bucket must not hang the merge.
pub const S3_MAX_ATTEMPTS: u32 = 5;
/// Upper bound on one S3 operation, retries included.
pub const S3_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on one attempt of an S3 operation, so a stalled connection is retried.
pub const S3_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// S3 ListObjectsV2 returns at most this many keys per page; longer listings are paginated.
pub const S3_LIST_PAGE: i32 = 1000;

/// `<run_id>/tasks`: the directory holding one directory per task.
pub fn tasks_dir(run_id: &str) -> String {
    format!("{run_id}/tasks")
}

/// `<run_id>/tasks/<task_id>`: where one task writes its report.
pub fn task_dir(run_id: &str, task_id: &str) -> String {
    format!("{run_id}/tasks/{task_id}")
}

/// `<run_id>/merged`: where the launcher writes the merged report.
pub fn merged_dir(run_id: &str) -> String {
    format!("{run_id}/merged")
}

/// `<run_id>/live`: the run's live windows and the launcher's live record.
pub fn live_dir(run_id: &str) -> String {
    format!("{run_id}/live")
}

/// `<run_id>/live/w<window>/`: every task's window `window`, so one listing finds them all. The
/// number is zero-padded to six digits (a day of 1 s windows), so listings sort in order.
pub fn live_window_dir(run_id: &str, window: u64) -> String {
    format!("{run_id}/live/w{window:06}/")
}

/// `<run_id>/live/w<window>/<task_id>.json`: one task's live window.
pub fn live_window_key(run_id: &str, window: u64, task_id: &str) -> String {
    format!("{}{task_id}.json", live_window_dir(run_id, window))
}

/// `<run_id>/live/view.json`: what the launcher saw while the run ran (tasks that were stale,
/// the abort), kept so that a later `launcher merge` shows it too.
pub fn live_view_key(run_id: &str) -> String {
    format!("{run_id}/live/view.json")
}

/// `<run_id>/control.json`: what the launcher tells the running tasks (a new rate, an earlier
/// end), read by every task each live interval.
pub fn control_key(run_id: &str) -> String {
    format!("{run_id}/control.json")
}

/// Where reports are read and written.
#[derive(Debug, Clone)]
pub enum ReportStore {
    /// A local directory (the root; keys are paths below it).
    Local(PathBuf),
    /// An S3 bucket and key prefix.
    S3 {
        /// The S3 client (region, credentials and endpoint from the standard AWS chain).
        client: aws_sdk_s3::Client,
        /// The bucket.
        bucket: String,
        /// Key prefix without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

impl ReportStore {
    /// Opens the store a report URL names. For S3, the region, credentials and endpoint come
    /// from the standard AWS chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, the ECS task
    /// role…); nothing is contacted yet.
    pub async fn open(url: &ReportUrl) -> anyhow::Result<Self> {
        match url {
            ReportUrl::Local(dir) => Ok(ReportStore::Local(dir.clone())),
            ReportUrl::S3 { bucket, prefix } => {
                let sdk = aws_config::defaults(BehaviorVersion::latest())
                    .retry_config(retry_config())
                    .timeout_config(timeout_config())
                    .load()
                    .await;
                let endpoint_in_env = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
                    .iter()
                    .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
                Ok(Self::s3_with_config(
                    &sdk,
                    endpoint_in_env,
                    bucket.clone(),
                    prefix.clone(),
                ))
            }
        }
    }

    /// An S3 store from an already loaded SDK configuration (tests build one pointing at the
    /// moto server instead of touching the process environment). Path-style addressing is used
    /// when an endpoint is configured (`endpoint_configured`, or one set in `sdk`): the moto
    /// server, MinIO and LocalStack do not serve `bucket.host` names.
    pub fn s3_with_config(
        sdk: &SdkConfig,
        endpoint_configured: bool,
        bucket: String,
        prefix: String,
    ) -> Self {
        let custom_endpoint = endpoint_configured || sdk.endpoint_url().is_some();
        let mut config = aws_sdk_s3::config::Builder::from(sdk);
        if sdk.retry_config().is_none() {
            config = config.retry_config(retry_config());
        }
        if sdk.timeout_config().is_none() {
            config = config.timeout_config(timeout_config());
        }
        if custom_endpoint {
            // S3-compatible servers differ in their support of the newer default request
            // checksums (aws-chunked trailers); only send them where S3 requires one.
            config = config.force_path_style(true).request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            );
        }
        ReportStore::S3 {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// Writes `bytes` at `key`, replacing what was there. Locally the file appears whole or not
    /// at all (written to a temporary file in the same directory, then renamed), so a merge
    /// running at the same time never reads half a report.
    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> anyhow::Result<()> {
        match self {
            ReportStore::Local(root) => {
                let path = local_path(root, key)?;
                let result = write_atomically(&path, Content::Bytes(bytes)).await;
                result.with_context(|| format!("could not write {}", path.display()))
            }
            ReportStore::S3 { client, bucket, .. } => {
                let full = self.full_key(key);
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&full)
                    .content_type(content_type)
                    .body(ByteStream::from(bytes))
                    .send()
                    .await
                    .map_err(aws_sdk_s3::Error::from)
                    .with_context(|| format!("could not write s3://{bucket}/{full}"))?;
                Ok(())
            }
        }
    }

    /// Reads `key`; `None` when there is no such object or file.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            ReportStore::Local(root) => {
                let path = local_path(root, key)?;
                match tokio::fs::read(&path).await {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
                }
            }
            ReportStore::S3 { client, bucket, .. } => {
                get_s3_object(client, bucket, &self.full_key(key), None).await
            }
        }
    }

    /// Reads at most `len` bytes of `key` from byte `offset` on: fewer only at the end of the
    /// object or file (none at or past it); `None` when there is no such object or file. The
    /// merge reads each task's interval log this way, a window of seconds at a time, so it never
    /// holds a long run's logs whole.
    pub async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: usize,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        match self {
            ReportStore::Local(root) => {
                let path = local_path(root, key)?;
                // One trip to the blocking pool for the open, seek and read (each through
                // tokio::fs would be one).
                tokio::task::spawn_blocking(move || read_local_range(&path, offset, len))
                    .await
                    .context("reading a report file panicked")?
            }
            ReportStore::S3 { client, bucket, .. } => {
                let last = offset.saturating_add(len as u64 - 1);
                let range = Some(format!("bytes={offset}-{last}"));
                let full = self.full_key(key);
                let Some(mut bytes) = get_s3_object(client, bucket, &full, range).await? else {
                    return Ok(None);
                };
                // A server that ignores Range answers with the whole object.
                if bytes.len() > len {
                    let start = (offset as usize).min(bytes.len());
                    bytes = bytes[start..(start + len).min(bytes.len())].to_vec();
                }
                Ok(Some(bytes))
            }
        }
    }

    /// [`ReportStore::get_range`] of every `(key, offset, len, buffer)`, each appended to its
    /// buffer, which comes back with the answer (`false` when there is no such object or file),
    /// in the same order: on S3 `concurrency` at a time, locally all in one trip to the blocking
    /// pool, read straight into the buffers. The merge reads a thousand tasks' logs a window at a
    /// time into buffers it keeps: a fresh buffer per read cost more in page faults than the read.
    pub async fn append_ranges(
        &self,
        reads: Vec<(String, u64, usize, Vec<u8>)>,
        concurrency: usize,
    ) -> Vec<(Vec<u8>, anyhow::Result<bool>)> {
        use futures::StreamExt;
        match self {
            ReportStore::Local(root) => {
                let root = root.clone();
                let keys: Vec<String> = reads.iter().map(|r| r.0.clone()).collect();
                let answers = tokio::task::spawn_blocking(move || {
                    reads
                        .into_iter()
                        .map(|(key, offset, len, mut buf)| {
                            let read = local_path(&root, &key)
                                .and_then(|path| append_local_range(&path, offset, len, &mut buf));
                            (buf, read)
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                match answers {
                    Ok(answers) => answers,
                    Err(e) => keys
                        .iter()
                        .map(|key| {
                            let e = anyhow::anyhow!("reading {key} panicked: {e}");
                            (Vec::new(), Err(e))
                        })
                        .collect(),
                }
            }
            ReportStore::S3 { .. } => {
                futures::stream::iter(reads)
                    .map(|(key, offset, len, mut buf)| async move {
                        let read = self
                            .get_range(&key, offset, len)
                            .await
                            .map(|bytes| bytes.map(|b| buf.extend_from_slice(&b)).is_some());
                        (buf, read)
                    })
                    .buffered(concurrency.max(1))
                    .collect()
                    .await
            }
        }
    }

    /// Writes the file at `path` to `key`, replacing what was there, without reading it into
    /// memory: a long run's merged interval log is written this way. Locally it appears whole or
    /// not at all, as with [`ReportStore::put`].
    pub async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> anyhow::Result<()> {
        match self {
            ReportStore::Local(root) => {
                let target = local_path(root, key)?;
                let result = write_atomically(&target, Content::CopyOf(path)).await;
                result.with_context(|| format!("could not write {}", target.display()))
            }
            ReportStore::S3 { client, bucket, .. } => {
                let full = self.full_key(key);
                let body = ByteStream::from_path(path)
                    .await
                    .with_context(|| format!("could not read {}", path.display()))?;
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&full)
                    .content_type(content_type)
                    .body(body)
                    .send()
                    .await
                    .map_err(aws_sdk_s3::Error::from)
                    .with_context(|| format!("could not write s3://{bucket}/{full}"))?;
                Ok(())
            }
        }
    }

    /// Every key that starts with `prefix`, sorted. On S3 the listing follows continuation
    /// tokens, so a run of a thousand tasks (three thousand objects) is listed whole; locally the
    /// directory tree is walked.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        match self {
            ReportStore::Local(root) => {
                let root = root.clone();
                let prefix = prefix.to_string();
                tokio::task::spawn_blocking(move || list_local(&root, &prefix))
                    .await
                    .context("listing the report directory panicked")?
            }
            ReportStore::S3 {
                client,
                bucket,
                prefix: root,
            } => {
                let full_prefix = self.full_key(prefix);
                let strip = if root.is_empty() { 0 } else { root.len() + 1 };
                let mut keys = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let page = client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(&full_prefix)
                        .max_keys(S3_LIST_PAGE)
                        .set_continuation_token(token.take())
                        .send()
                        .await
                        .map_err(aws_sdk_s3::Error::from)
                        .with_context(|| format!("could not list s3://{bucket}/{full_prefix}"))?;
                    for object in page.contents() {
                        if let Some(key) = object.key() {
                            if key.len() >= strip {
                                keys.push(key[strip..].to_string());
                            }
                        }
                    }
                    match page.next_continuation_token() {
                        Some(next) if page.is_truncated().unwrap_or(false) => {
                            token = Some(next.to_string());
                        }
                        _ => break,
                    }
                }
                keys.sort();
                Ok(keys)
            }
        }
    }

    /// Where `key` is, for people: a local path or an `s3://` URL.
    pub fn display_url(&self, key: &str) -> String {
        match self {
            ReportStore::Local(root) => {
                let mut path = root.clone();
                path.extend(key.split('/').filter(|s| !s.is_empty()));
                path.display().to_string()
            }
            ReportStore::S3 { bucket, .. } => format!("s3://{bucket}/{}", self.full_key(key)),
        }
    }

    fn full_key(&self, key: &str) -> String {
        match self {
            ReportStore::S3 { prefix, .. } if !prefix.is_empty() => {
                format!("{prefix}/{}", key.trim_start_matches('/'))
            }
            _ => key.trim_start_matches('/').to_string(),
        }
    }
}

fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(S3_MAX_ATTEMPTS)
}

fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_timeout(S3_OPERATION_TIMEOUT)
        .operation_attempt_timeout(S3_ATTEMPT_TIMEOUT)
        .build()
}

/// The path of `key` under `root`, refusing keys that would leave the root.
fn local_path(root: &Path, key: &str) -> anyhow::Result<PathBuf> {
    let mut path = root.to_path_buf();
    for part in key.split('/').filter(|s| !s.is_empty()) {
        anyhow::ensure!(
            part != ".." && part != ".",
            "report key {key:?} has a `{part}` segment; keys are plain names separated by /"
        );
        path.push(part);
    }
    Ok(path)
}

/// Temporary files are named `.<name>.tmp-<pid>-<n>` and skipped by [`list_local`].
const TEMP_MARKER: &str = ".tmp-";

/// A temporary name next to `path`, unique in this process.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(
        ".{name}{TEMP_MARKER}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// What [`write_atomically`] writes.
enum Content<'a> {
    Bytes(Vec<u8>),
    /// A copy of this file.
    CopyOf(&'a Path),
}

/// Writes `content` to `path` through a temporary file in `path`'s directory, renamed at the
/// end: the file appears whole or not at all.
async fn write_atomically(path: &Path, content: Content<'_>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await?;
    let temp = temp_path(path);
    let written = match content {
        Content::Bytes(bytes) => tokio::fs::write(&temp, &bytes).await,
        Content::CopyOf(from) => tokio::fs::copy(from, &temp).await.map(drop),
    };
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e);
    }
    if let Err(e) = tokio::fs::rename(&temp, path).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e);
    }
    Ok(())
}

/// An S3 object, or the bytes `range` (an HTTP Range) of it; `None` when there is no such
/// object, empty when the range starts at or past its end.
async fn get_s3_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    full: &str,
    range: Option<String>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let response = client
        .get_object()
        .bucket(bucket)
        .key(full)
        .set_range(range)
        .send()
        .await;
    let output = match response {
        Ok(output) => output,
        Err(err) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            if err.as_service_error().is_some_and(|e| e.is_no_such_key()) || status == Some(404) {
                return Ok(None);
            }
            // 416: the range starts at or past the end of the object.
            if status == Some(416) {
                return Ok(Some(Vec::new()));
            }
            return Err(aws_sdk_s3::Error::from(err))
                .with_context(|| format!("could not read s3://{bucket}/{full}"));
        }
    };
    let body = output
        .body
        .collect()
        .await
        .with_context(|| format!("could not read s3://{bucket}/{full}"))?;
    Ok(Some(body.into_bytes().to_vec()))
}

/// At most `len` bytes of the file at `path` from `offset` on; `None` when there is no file.
fn read_local_range(path: &Path, offset: u64, len: usize) -> anyhow::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::with_capacity(len);
    let found = append_local_range(path, offset, len, &mut bytes)?;
    Ok(found.then_some(bytes))
}

/// Appends at most `len` bytes of the file at `path` from byte `offset` on to `buf` (straight
/// into its spare capacity); `false` when there is no such file.
fn append_local_range(
    path: &Path,
    offset: u64,
    len: usize,
    buf: &mut Vec<u8>,
) -> anyhow::Result<bool> {
    use std::io::{Read, Seek};
    let read = |buf: &mut Vec<u8>| {
        let mut file = std::fs::File::open(path)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        buf.reserve(len);
        file.take(len as u64).read_to_end(buf)?;
        Ok::<_, std::io::Error>(())
    };
    match read(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
    }
}

fn list_local(root: &Path, prefix: &str) -> anyhow::Result<Vec<String>> {
    // Walk only the deepest directory the prefix names; filter the rest by string prefix.
    let dir_part = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let start = local_path(root, dir_part)?;
    let mut keys = Vec::new();
    let mut stack = vec![(start, dir_part.trim_matches('/').to_string())];
    while let Some((dir, key_dir)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("could not list {}", dir.display()));
            }
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = if key_dir.is_empty() {
                name.clone()
            } else {
                format!("{key_dir}/{name}")
            };
            let file_type = entry
                .file_type()
                .with_context(|| format!("could not stat {}", entry.path().display()))?;
            if file_type.is_dir() {
                stack.push((entry.path(), key));
            } else if !(name.starts_with('.') && name.contains(TEMP_MARKER))
                && key.starts_with(prefix)
            {
                keys.push(key);
            }
        }
    }
    keys.sort();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_helpers() {
        assert_eq!(task_dir("r1", "t7"), "r1/tasks/t7");
        assert_eq!(tasks_dir("r1"), "r1/tasks");
        assert_eq!(merged_dir("r1"), "r1/merged");
        assert_eq!(live_window_key("r1", 7, "t7"), "r1/live/w000007/t7.json");
        assert!(live_window_key("r1", 7, "t7").starts_with(&live_window_dir("r1", 7)));
        assert!(live_view_key("r1").starts_with(&live_dir("r1")));
        assert_eq!(control_key("r1"), "r1/control.json");
    }

    #[tokio::test]
    async fn local_put_get_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReportStore::Local(dir.path().to_path_buf());
        assert_eq!(store.get("run/tasks/a/summary.json").await.unwrap(), None);
        store
            .put(
                "run/tasks/a/summary.json",
                b"{}".to_vec(),
                "application/json",
            )
            .await
            .unwrap();
        store
            .put("run/tasks/b/timeseries.csv", b"x".to_vec(), "text/csv")
            .await
            .unwrap();
        store
            .put(
                "run/tasks/a/summary.json",
                b"{\"v\":2}".to_vec(),
                "application/json",
            )
            .await
            .unwrap();
        store
            .put("other/x", b"y".to_vec(), "text/plain")
            .await
            .unwrap();
        assert_eq!(
            store.get("run/tasks/a/summary.json").await.unwrap(),
            Some(b"{\"v\":2}".to_vec())
        );
        assert_eq!(
            store.list("run/tasks/").await.unwrap(),
            vec!["run/tasks/a/summary.json", "run/tasks/b/timeseries.csv"]
        );
        assert_eq!(
            store.list("run/tasks/a").await.unwrap(),
            vec!["run/tasks/a/summary.json"]
        );
        assert_eq!(store.list("").await.unwrap().len(), 3);
        assert!(store.list("nothing/here/").await.unwrap().is_empty());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("run/tasks/a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["summary.json"]);
        assert!(store
            .put("run/../../escape", vec![], "text/plain")
            .await
            .is_err());
        assert_eq!(
            store.display_url("run/merged/summary.json"),
            dir.path()
                .join("run")
                .join("merged")
                .join("summary.json")
                .display()
                .to_string()
        );
    }

    #[tokio::test]
    async fn s3_keys_and_urls_carry_the_prefix() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let store = ReportStore::s3_with_config(&sdk, false, "bkt".into(), "/a/b/".into());
        assert_eq!(store.full_key("r/merged/x"), "a/b/r/merged/x");
        assert_eq!(
            store.display_url("r/merged/summary.json"),
            "s3://bkt/a/b/r/merged/summary.json"
        );
        let bare = ReportStore::s3_with_config(&sdk, false, "bkt".into(), String::new());
        assert_eq!(bare.display_url("r/x"), "s3://bkt/r/x");
    }
}
