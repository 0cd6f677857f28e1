//! Where reports are written: `s3://bucket/prefix`, `file:///dir` or a plain path.

use std::fmt;
use std::path::PathBuf;

use crate::model::input::ScenarioError;

/// Where the report is written.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportUrl {
    /// `s3://bucket/prefix`
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// A local directory (`file:///dir` or a plain path).
    Local(PathBuf),
}

impl ReportUrl {
    /// Parses `s3://bucket/prefix`, `file:///dir` or a plain path.
    pub fn parse(value: &str) -> Result<Self, ScenarioError> {
        let accepted = "s3://bucket/prefix, file:///absolute/dir or a plain directory path";
        let bad =
            |reason: &str| ScenarioError::invalid("FLEETLOAD_REPORT_URL", value, reason, accepted);
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')
                });
            if !bucket_ok {
                return Err(bad(
                    "the bucket name must be 3-63 characters of a-z 0-9 . -",
                ));
            }
            Ok(ReportUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            })
        } else if let Some(path) = value.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file:// URL needs an absolute path (file:///dir)"));
            }
            Ok(ReportUrl::Local(PathBuf::from(path)))
        } else if value.contains("://") {
            Err(bad("unsupported scheme"))
        } else if value.is_empty() {
            Err(bad("empty"))
        } else {
            Ok(ReportUrl::Local(PathBuf::from(value)))
        }
    }

    /// The URL of a run under this location: `<url>/<run_id>`.
    pub fn run_url(&self, run_id: &str) -> String {
        format!("{self}/{run_id}")
    }
}

impl fmt::Display for ReportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            ReportUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            ReportUrl::Local(p) => write!(f, "{}", p.display()),
        }
    }
}
