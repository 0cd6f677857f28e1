//! What the merge takes and gives: one task's files as read, and the merged report.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::model::report::{HlogSpool, HlogWriter, SecondRow, SpooledLog, Summary};

/// Task id of the merged summary.
pub const MERGED_TASK_ID: &str = "merged";
/// A report with a second beyond this (a week) is malformed: no run lasts that long
/// (scenarios are capped at a day), and the merge must not allocate rows for it.
pub const MAX_SECOND: u64 = 7 * 24 * 3600;
/// How many task ids a one-line reason lists before saying "and N more".
pub(super) const REASON_IDS: usize = 10;

/// One task's report files as read from the store; `None` for a file that is absent.
#[derive(Debug, Clone, Default)]
pub struct TaskInput {
    /// The task id: the name of its directory under `<run_id>/tasks/`.
    pub task_id: String,
    /// `summary.json`.
    pub summary: Option<Vec<u8>>,
    /// `timeseries.csv`.
    pub timeseries: Option<Vec<u8>>,
    /// `histograms.hlog`.
    pub hlog: Option<Vec<u8>>,
}

/// The merged report of a run.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The merged `summary.json` (task id `merged`, with [`MergeInfo`](crate::model::report::MergeInfo)).
    pub summary: Summary,
    /// The summed latency histogram (from the intended send time), as encoded in `summary`.
    pub latency: Histogram<u64>,
    /// The summed service-time histogram, as encoded in `summary`.
    pub service: Histogram<u64>,
    /// The merged `timeseries.csv`: one row per second from the planned start.
    pub rows: Vec<SecondRow>,
    /// Per-second latency histograms summed across tasks: the merged `histograms.hlog` itself,
    /// in memory while it is small and in a temporary file beyond that (a second of a thousand
    /// tasks is tens of KB encoded, a day of them gigabytes).
    pub per_second: MergedSeconds,
    /// The summaries of the tasks whose report was readable, sorted by task id. Their
    /// `errors_timeline` is in the merged summary's and left empty here, so that what the
    /// merge keeps per task does not grow with the run's length.
    pub tasks: Vec<Summary>,
}

/// One second of the merged interval log.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedSecond {
    /// The second, from the planned start.
    pub second: u64,
    /// The largest latency of the second, µs.
    pub max_us: u64,
    /// The summed histogram, HdrHistogram V2 deflate (as `histograms.hlog` carries it).
    pub encoded: Vec<u8>,
}

impl MergedSecond {
    /// The summed histogram, decoded.
    pub fn histogram(&self) -> anyhow::Result<Histogram<u64>> {
        use hdrhistogram::serialization::Deserializer;
        Deserializer::new()
            .deserialize(&mut &self.encoded[..])
            .map_err(|e| anyhow::anyhow!("merged histogram of second {}: {e:?}", self.second))
    }
}

/// The merged interval log and where each second is in it.
#[derive(Debug, Clone, Default)]
pub struct MergedSeconds {
    seconds: Vec<SecondAt>,
    /// In memory, or in a temporary file removed when the last [`MergedSeconds`] holding it is
    /// dropped.
    log: Option<Arc<SpooledLog>>,
}

/// Where one merged second is in the log.
#[derive(Debug, Clone, Copy)]
struct SecondAt {
    second: u64,
    max_us: u64,
    offset: u64,
    len: u32,
}

impl MergedSeconds {
    /// How many seconds have a histogram (seconds in which no event was acknowledged have none).
    pub fn len(&self) -> usize {
        self.seconds.len()
    }

    /// Whether no second has a histogram.
    pub fn is_empty(&self) -> bool {
        self.seconds.is_empty()
    }

    /// The `i`-th merged second, read back from the log.
    pub fn get(&self, i: usize) -> anyhow::Result<MergedSecond> {
        let at = *self
            .seconds
            .get(i)
            .with_context(|| format!("the merge has {} seconds, not {}", self.len(), i + 1))?;
        let line = self.read(at.offset, at.len as usize)?;
        let mut encoded = None;
        crate::model::report::read_hlog(&line, |_, text| {
            encoded = Some(
                base64_simd::STANDARD
                    .decode_to_vec(text.as_bytes())
                    .map_err(|e| anyhow::anyhow!("merged second {}: {e}", at.second))?,
            );
            Ok(())
        })?;
        Ok(MergedSecond {
            second: at.second,
            max_us: at.max_us,
            encoded: encoded.with_context(|| format!("merged second {} is empty", at.second))?,
        })
    }

    /// Every merged second in order, read back from the log.
    pub fn iter(&self) -> impl Iterator<Item = anyhow::Result<MergedSecond>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The whole log, `histograms.hlog` as written: in memory, or the temporary file's path.
    pub(super) fn log(&self) -> Option<LogBytes<'_>> {
        match self.log.as_deref()? {
            SpooledLog::Memory(bytes) => Some(LogBytes::Memory(bytes)),
            SpooledLog::File(file) => Some(LogBytes::File(file.path())),
        }
    }

    fn read(&self, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
        match self
            .log
            .as_deref()
            .context("the merge wrote no interval log")?
        {
            SpooledLog::Memory(bytes) => Ok(bytes[offset as usize..offset as usize + len].to_vec()),
            SpooledLog::File(file) => {
                let mut f = file.reopen().context("reopening the merged interval log")?;
                f.seek(SeekFrom::Start(offset))?;
                let mut line = vec![0; len];
                f.read_exact(&mut line)
                    .context("reading the merged interval log")?;
                Ok(line)
            }
        }
    }
}

/// Where the merged log's bytes are.
pub(super) enum LogBytes<'a> {
    Memory(&'a [u8]),
    File(&'a std::path::Path),
}

/// Writes the merged interval log as its seconds are merged: in memory up to
/// [`SPOOL_IN_MEMORY`] bytes, then into a temporary file (in memory still, if none can be made).
pub(super) struct SecondsWriter {
    spool: HlogSpool,
    seconds: Vec<SecondAt>,
}

/// Bytes of merged interval log kept in memory before it goes to a temporary file: a few
/// minutes of a large fleet's merged seconds.
pub(super) const SPOOL_IN_MEMORY: usize = 8 << 20;

impl SecondsWriter {
    /// A log whose interval starts count from `base` (the run's planned start).
    pub(super) fn new(base: chrono::DateTime<chrono::Utc>) -> Self {
        Self::spilling_at(base, SPOOL_IN_MEMORY)
    }

    fn spilling_at(base: chrono::DateTime<chrono::Utc>, bytes: usize) -> Self {
        SecondsWriter {
            spool: HlogSpool::new(HlogWriter::new(base), bytes, "fleetload-merged-"),
            seconds: Vec::new(),
        }
    }

    /// The same, kept in memory whatever its size.
    pub(super) fn in_memory(base: chrono::DateTime<chrono::Utc>) -> Self {
        SecondsWriter {
            spool: HlogSpool::in_memory(HlogWriter::new(base)),
            seconds: Vec::new(),
        }
    }

    /// Adds second `second` from its V2-deflate encoding and its maximum (µs).
    pub(super) fn push(&mut self, second: u64, max_us: u64, encoded: &[u8]) -> anyhow::Result<()> {
        let offset = self.spool.written();
        let len = self
            .spool
            .push_encoded(second, max_us, encoded)
            .context("writing the merged interval log to a temporary file")?;
        self.seconds.push(SecondAt {
            second,
            max_us,
            offset,
            len: u32::try_from(len).context("a merged second beyond 4 GB")?,
        });
        Ok(())
    }

    /// The finished log.
    pub(super) fn finish(self) -> anyhow::Result<MergedSeconds> {
        let log = self
            .spool
            .finish()
            .context("writing the merged interval log to a temporary file")?;
        Ok(MergedSeconds {
            seconds: self.seconds,
            log: Some(Arc::new(log)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::report::{new_histogram, parse_hlog};
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

    #[test]
    fn a_log_past_its_memory_goes_to_a_file_and_reads_back_the_same() {
        let base = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut spilled = SecondsWriter::spilling_at(base, 300);
        let mut kept = SecondsWriter::in_memory(base);
        let mut expected = Vec::new();
        for second in [0u64, 1, 2, 5, 9, 10, 11, 40] {
            let mut h = new_histogram();
            for v in 1..=second * 30 + 1 {
                h.record(v * 97).unwrap();
            }
            let mut encoded = Vec::new();
            V2DeflateSerializer::new()
                .serialize(&h, &mut encoded)
                .unwrap();
            spilled.push(second, h.max(), &encoded).unwrap();
            kept.push(second, h.max(), &encoded).unwrap();
            expected.push((second, h));
        }
        let (spilled, kept) = (spilled.finish().unwrap(), kept.finish().unwrap());
        let Some(LogBytes::File(path)) = spilled.log() else {
            panic!("the log should have gone to a file")
        };
        let on_disk = std::fs::read(path).unwrap();
        let Some(LogBytes::Memory(in_memory)) = kept.log() else {
            panic!("an in-memory log stays in memory")
        };
        assert_eq!(on_disk, in_memory);
        assert_eq!(parse_hlog(&on_disk).unwrap(), expected);
        for (i, (second, h)) in expected.iter().enumerate() {
            let s = spilled.get(i).unwrap();
            assert_eq!((s.second, s.max_us), (*second, h.max()));
            assert_eq!(&s.histogram().unwrap(), h);
            assert_eq!(s, kept.get(i).unwrap());
        }
        assert!(spilled.get(expected.len()).is_err());
        // The file goes with the last copy of the log.
        let path = path.to_path_buf();
        let copy = spilled.clone();
        drop(spilled);
        assert!(path.exists());
        drop(copy);
        assert!(!path.exists());
    }
}
