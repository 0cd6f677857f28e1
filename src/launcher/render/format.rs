//! Numbers, durations and times as the launcher writes them for people: one function for each
//! form, shared by the summary table, the HTML page and the thresholds' measured values, so the
//! same number reads the same everywhere.

use chrono::{DateTime, SecondsFormat, Utc};

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A rate (events per second) with thousands separators and one decimal: `9,612.5`.
/// Negative and non-finite rates read `0.0`.
pub(crate) fn rate(r: f64) -> String {
    let whole = r.trunc().max(0.0) as u64;
    let tenth = ((r - r.trunc()) * 10.0).round() as u64;
    if tenth >= 10 {
        format!("{}.0", thousands(whole + 1))
    } else {
        format!("{}.{tenth}", thousands(whole))
    }
}

/// `v` with at most `decimals` decimals and no trailing zeros: `trim(2.50, 3)` → `2.5`.
pub(crate) fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `1500` → `1.5k`, `2000000` → `2M`.
pub(crate) fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{}G", trim(v / 1e9, 2))
    } else if a >= 1e6 {
        format!("{}M", trim(v / 1e6, 2))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3, 2))
    } else {
        trim(v, 2)
    }
}

/// A latency in milliseconds as a duration: `50µs`, `2ms`, `1.5s`.
pub(crate) fn duration_label(ms: f64) -> String {
    if ms < 1.0 {
        format!("{}µs", trim(ms * 1000.0, 1))
    } else if ms < 1000.0 {
        format!("{}ms", trim(ms, 2))
    } else {
        format!("{}s", trim(ms / 1000.0, 2))
    }
}

/// A number of seconds as hours, minutes and seconds: `75` → `1m15s`.
pub(crate) fn seconds_label(s: u64) -> String {
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// An instant in RFC 3339 with milliseconds, UTC (`2026-03-01T12:00:00.000Z`); `—` for none.
pub(crate) fn timestamp(t: Option<DateTime<Utc>>) -> String {
    t.map_or("—".into(), |t| {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(rate(9612.46), "9,612.5");
        assert_eq!(rate(9.96), "10.0");
        assert_eq!(rate(-3.0), "0.0");
        assert_eq!(trim(2.50, 3), "2.5");
        assert_eq!(trim(3.0, 1), "3");
        assert_eq!(trim(0.0001234, 4), "0.0001");
    }

    #[test]
    fn labels() {
        assert_eq!(seconds_label(75), "1m15s");
        assert_eq!(seconds_label(3600), "1h");
        assert_eq!(duration_label(0.05), "50µs");
        assert_eq!(duration_label(2500.0), "2.5s");
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(timestamp(None), "—");
        assert_eq!(
            timestamp(Some(DateTime::<Utc>::UNIX_EPOCH)),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
