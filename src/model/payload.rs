//! The payload: what each event looks like.
//!
//! The default is the temperature sensor reading of the Kinesis/Locust sample this product
//! replaces. Templates describe any other JSON shape with placeholders; a template is compiled
//! once into literal runs and placeholders, never parsed per event. Events are written into
//! caller-owned buffers, so the hot path allocates nothing.

use std::io::Write;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::model::input::ScenarioError;
use crate::model::keys::{KeyChooser, KeyDistribution};

const NAME: &str = "FLEETLOAD_PAYLOAD";
const ACCEPTED: &str = "sensor, an inline JSON template (placeholders {{uuid}} {{key}} {{seq}} {{timestamp}} \
{{timestamp_iso}} {{int:MIN:MAX}} {{float:MIN:MAX[:DECIMALS]}} {{choice:A=W,B=W,...}} {{pad:SIZE}}), or @FILE holding one";

/// A compiled payload description.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadSpec {
    /// `{"sensorId":"<uuid>_<n>","temperature":147.24,"status":"OK","timestamp":1675686126310}`
    Sensor,
    /// A user's JSON template.
    Template(Template),
}

impl PayloadSpec {
    /// Parses `FLEETLOAD_PAYLOAD`: `sensor`, an inline template, or `@path` to a template file.
    pub fn parse(value: &str) -> Result<Self, ScenarioError> {
        if value == "sensor" {
            return Ok(PayloadSpec::Sensor);
        }
        let text = match value.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ScenarioError::invalid(
                    NAME,
                    value,
                    format!("cannot read the template file: {e}"),
                    ACCEPTED,
                )
            })?,
            None => value.to_string(),
        };
        let template = Template::compile(&text)
            .map_err(|reason| ScenarioError::invalid(NAME, value, reason, ACCEPTED))?;
        Ok(PayloadSpec::Template(template))
    }

    /// Whether every event is a JSON object (so a trace field can be added to it).
    pub fn renders_object(&self) -> bool {
        let mut generator = Generator::new(self, 10, 1, 1);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        generator.next_event(1_700_000_000_000, &mut key, &mut value);
        serde_json::from_slice::<serde_json::Value>(&value).is_ok_and(|v| v.is_object())
    }

    /// An upper bound on the size of one event in bytes.
    pub fn max_len(&self) -> usize {
        match self {
            PayloadSpec::Sensor => 128,
            PayloadSpec::Template(t) => t.max_len(),
        }
    }
}

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(Vec<u8>),
    Uuid,
    Key,
    Seq,
    Timestamp,
    TimestampIso,
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
        decimals: u32,
    },
    /// Choices with cumulative weights.
    Choice {
        options: Vec<(Vec<u8>, u64)>,
        total: u64,
    },
    /// Pad the whole event to at least this many bytes, filling at this position.
    Pad(usize),
}

/// A compiled JSON template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles a template; the error says which placeholder is wrong and why.
    pub fn compile(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest.as_bytes()[..open].to_vec()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or("a placeholder {{ is not closed with }}")?;
            parts.push(Self::placeholder(after[..close].trim())?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.as_bytes().to_vec()));
        }
        if parts.iter().filter(|p| matches!(p, Part::Pad(_))).count() > 1 {
            return Err("at most one {{pad:SIZE}} placeholder".into());
        }
        let template = Template { parts };
        // Render a sample and check it is JSON: a template that cannot produce valid events is
        // rejected before anything is sent, not discovered downstream.
        let mut generator = Generator::new(&PayloadSpec::Template(template.clone()), 10, 1, 1);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        generator.next_event(1_700_000_000_000, &mut key, &mut value);
        serde_json::from_slice::<serde_json::Value>(&value).map_err(|e| {
            format!(
                "a rendered event is not valid JSON ({e}): {}",
                String::from_utf8_lossy(&value)
            )
        })?;
        Ok(template)
    }

    fn placeholder(body: &str) -> Result<Part, String> {
        let (name, args) = body.split_once(':').unwrap_or((body, ""));
        let args: Vec<&str> = if args.is_empty() {
            Vec::new()
        } else {
            args.split(':').collect()
        };
        let bad = |what: &str| format!("placeholder {{{{{body}}}}}: {what}");
        let no_args = |part: Part| {
            if args.is_empty() {
                Ok(part)
            } else {
                Err(bad("takes no arguments"))
            }
        };
        match name {
            "uuid" => no_args(Part::Uuid),
            "key" => no_args(Part::Key),
            "seq" => no_args(Part::Seq),
            "timestamp" => no_args(Part::Timestamp),
            "timestamp_iso" => no_args(Part::TimestampIso),
            "int" => {
                let [min, max] = args[..] else {
                    return Err(bad("expected int:MIN:MAX"));
                };
                let min: i64 = min.parse().map_err(|_| bad("MIN is not an integer"))?;
                let max: i64 = max.parse().map_err(|_| bad("MAX is not an integer"))?;
                if min > max {
                    return Err(bad("MIN is above MAX"));
                }
                Ok(Part::Int { min, max })
            }
            "float" => {
                let (min, max, decimals) = match args[..] {
                    [a, b] => (a, b, "2"),
                    [a, b, c] => (a, b, c),
                    _ => return Err(bad("expected float:MIN:MAX or float:MIN:MAX:DECIMALS")),
                };
                let min: f64 = min
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| bad("MIN is not a number"))?;
                let max: f64 = max
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| bad("MAX is not a number"))?;
                let decimals: u32 = decimals
                    .parse()
                    .ok()
                    .filter(|d| *d <= 9)
                    .ok_or_else(|| bad("DECIMALS must be 0-9"))?;
                if min > max {
                    return Err(bad("MIN is above MAX"));
                }
                // A uniform draw needs MAX - MIN as a finite number; past that it cannot draw.
                if !(max - min).is_finite() {
                    return Err(bad("MAX - MIN is beyond the largest float"));
                }
                Ok(Part::Float { min, max, decimals })
            }
            "choice" => {
                let list = body.split_once(':').map(|(_, l)| l).unwrap_or("");
                let mut options = Vec::new();
                let mut total = 0u64;
                for option in list.split(',') {
                    let (text, weight) = match option.rsplit_once('=') {
                        Some((t, w)) => (
                            t,
                            w.parse::<u64>()
                                .map_err(|_| bad("a weight is not a whole number"))?,
                        ),
                        None => (option, 1),
                    };
                    if text.is_empty() {
                        return Err(bad("an empty choice"));
                    }
                    // Past u64 the cumulative weights would wrap and some choices never be drawn.
                    total = total.checked_add(weight).ok_or_else(|| {
                        bad("the weights add up to more than 18446744073709551615")
                    })?;
                    options.push((text.as_bytes().to_vec(), total));
                }
                if total == 0 {
                    return Err(bad("the weights add up to 0"));
                }
                Ok(Part::Choice { options, total })
            }
            "pad" => {
                let [size] = args[..] else {
                    return Err(bad("expected pad:SIZE"));
                };
                let size: usize = size
                    .parse()
                    .ok()
                    .filter(|s| *s <= 16 * 1024 * 1024)
                    .ok_or_else(|| bad("SIZE must be a byte count up to 16 MiB"))?;
                Ok(Part::Pad(size))
            }
            _ => Err(bad("unknown placeholder")),
        }
    }

    /// An upper bound on the size of a rendered event.
    pub fn max_len(&self) -> usize {
        let mut len = 0;
        let mut pad = 0;
        for p in &self.parts {
            len += match p {
                Part::Literal(l) => l.len(),
                Part::Uuid => 36,
                Part::Key => 48,
                Part::Seq | Part::Timestamp | Part::Int { .. } => 20,
                Part::TimestampIso => 30,
                Part::Float { decimals, .. } => 330 + *decimals as usize,
                Part::Choice { options, .. } => {
                    options.iter().map(|o| o.0.len()).max().unwrap_or(0)
                }
                Part::Pad(size) => {
                    pad = *size;
                    0
                }
            };
        }
        len.max(pad)
    }
}

/// 20 % of 2^31, for a 31-bit uniform draw.
const CHANCE_20_PERCENT: u32 = (1u32 << 31) / 5;

/// Keys are written once at start when there are at most this many (a key is ~45 bytes, so at
/// most ~3 MiB); beyond that each event formats its key.
const KEY_CACHE_MAX: u64 = 65_536;

/// Writes events: one per call, into the caller's buffers.
#[derive(Debug)]
pub struct Generator {
    spec: PayloadSpec,
    rng: SmallRng,
    keys: u64,
    /// How each event's key is drawn.
    chooser: KeyChooser,
    key_namespace: u64,
    seq: u64,
    /// Every key, back to back, when there are at most [`KEY_CACHE_MAX`]: formatting a key
    /// (two hashes and 32 hex digits) was the largest cost of an event.
    key_text: Vec<u8>,
    /// Where key `k` (1-based) lies in `key_text`: `key_ends[k - 1]..key_ends[k]`.
    key_ends: Vec<u32>,
    /// The last timestamp written and its digits: every event of a burst has the same one.
    timestamp: (u64, [u8; 20], usize),
}

impl Generator {
    /// A generator for `spec` over `keys` distinct keys. `seed` drives every random choice;
    /// `key_namespace` names the key space, so tasks of one run share the same sensors.
    pub fn new(spec: &PayloadSpec, keys: u64, seed: u64, key_namespace: u64) -> Self {
        let keys = keys.max(1);
        let (mut key_text, mut key_ends) = (Vec::new(), Vec::new());
        if keys <= KEY_CACHE_MAX {
            key_text.reserve(keys as usize * 48);
            key_ends.reserve(keys as usize + 1);
            key_ends.push(0);
            for k in 1..=keys {
                write_key(key_namespace, k, &mut key_text);
                key_ends.push(key_text.len() as u32);
            }
        }
        Generator {
            spec: spec.clone(),
            rng: SmallRng::seed_from_u64(seed),
            keys,
            chooser: KeyChooser::new(&KeyDistribution::Uniform, keys),
            key_namespace,
            seq: 0,
            key_text,
            key_ends,
            timestamp: (u64::MAX, [0; 20], 0),
        }
    }

    /// Draws keys by `distribution` instead of uniformly (`FLEETLOAD_KEY_DISTRIBUTION`).
    pub fn with_key_distribution(mut self, distribution: &KeyDistribution) -> Self {
        self.chooser = KeyChooser::new(distribution, self.keys);
        self
    }

    /// The digits of `timestamp_ms`, formatted once per distinct value.
    fn timestamp_digits(&mut self, timestamp_ms: u64) -> ([u8; 20], usize) {
        let (last, digits, len) = &mut self.timestamp;
        if *last != timestamp_ms {
            let mut ib = itoa::Buffer::new();
            let text = ib.format(timestamp_ms).as_bytes();
            digits[..text.len()].copy_from_slice(text);
            (*last, *len) = (timestamp_ms, text.len());
        }
        (*digits, *len)
    }

    /// Writes key `k` (1-based), from the cache when there is one.
    fn write_key(&self, k: u64, out: &mut Vec<u8>) {
        if self.key_ends.is_empty() {
            write_key(self.key_namespace, k, out);
        } else {
            let (start, end) = (self.key_ends[k as usize - 1], self.key_ends[k as usize]);
            out.extend_from_slice(&self.key_text[start as usize..end as usize]);
        }
    }

    /// Writes the next event's partition key into `key` and its body into `value` (both cleared
    /// first). `timestamp_ms` is the send time in epoch milliseconds. Returns the key's number
    /// (1 to the number of keys): equal numbers, equal keys, so a sink can remember what it
    /// worked out about a key by its number (the Kinesis aggregator, its shard).
    pub fn next_event(&mut self, timestamp_ms: u64, key: &mut Vec<u8>, value: &mut Vec<u8>) -> u64 {
        key.clear();
        value.clear();
        let k = self.chooser.next(&mut self.rng);
        self.write_key(k, key);
        let (ts, ts_len) = self.timestamp_digits(timestamp_ms);
        match &self.spec {
            PayloadSpec::Sensor => {
                // One more draw for the reading: its upper 32 bits give the temperature, uniform
                // in 10.00..=180.00 as hundredths; bits 1-31 the 20 % chance of a warning or
                // error below 140; bit 0 WARNING or ERROR.
                let r = self.rng.next_u64();
                let centi = 1000 + (((r >> 32) * 17_001) >> 32) as u32;
                let status: &[u8] = if centi > 16000 {
                    b"ERROR"
                } else if centi > 14000 || ((r as u32) >> 1) < CHANCE_20_PERCENT {
                    if r & 1 == 0 {
                        b"WARNING"
                    } else {
                        b"ERROR"
                    }
                } else {
                    b"OK"
                };
                value.extend_from_slice(b"{\"sensorId\":\"");
                value.extend_from_slice(key);
                value.extend_from_slice(b"\",\"temperature\":");
                // 10 to 180 before the point, two digits after it.
                let whole = centi / 100;
                if whole >= 100 {
                    value.push(b'0' + (whole / 100) as u8);
                }
                value.push(b'0' + (whole / 10 % 10) as u8);
                value.push(b'0' + (whole % 10) as u8);
                value.push(b'.');
                let frac = (centi % 100) as u8;
                value.extend_from_slice(&[b'0' + frac / 10, b'0' + frac % 10]);
                value.extend_from_slice(b",\"status\":\"");
                value.extend_from_slice(status);
                value.extend_from_slice(b"\",\"timestamp\":");
                value.extend_from_slice(&ts[..ts_len]);
                value.push(b'}');
            }
            PayloadSpec::Template(t) => {
                let mut pad_at = None;
                let mut ib = itoa::Buffer::new();
                for part in &t.parts {
                    match part {
                        Part::Literal(l) => value.extend_from_slice(l),
                        Part::Uuid => write_uuid(self.rng.gen(), value),
                        Part::Key => value.extend_from_slice(key),
                        Part::Seq => value.extend_from_slice(ib.format(self.seq).as_bytes()),
                        Part::Timestamp => value.extend_from_slice(&ts[..ts_len]),
                        Part::TimestampIso => {
                            let t = chrono::DateTime::from_timestamp_millis(timestamp_ms as i64)
                                .unwrap_or_default();
                            let _ = write!(value, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
                        }
                        Part::Int { min, max } => value.extend_from_slice(
                            ib.format(self.rng.gen_range(*min..=*max)).as_bytes(),
                        ),
                        Part::Float { min, max, decimals } => {
                            let v = if min == max {
                                *min
                            } else {
                                self.rng.gen_range(*min..*max)
                            };
                            let _ = write!(value, "{v:.prec$}", prec = *decimals as usize);
                        }
                        Part::Choice { options, total } => {
                            let r = self.rng.gen_range(0..*total);
                            let i = options.partition_point(|(_, cum)| *cum <= r);
                            value.extend_from_slice(&options[i].0);
                        }
                        Part::Pad(_) => pad_at = Some(value.len()),
                    }
                }
                if let (Some(at), Some(Part::Pad(size))) =
                    (pad_at, t.parts.iter().find(|p| matches!(p, Part::Pad(_))))
                {
                    if value.len() < *size {
                        let fill = *size - value.len();
                        value.splice(at..at, std::iter::repeat(b'x').take(fill));
                    }
                }
            }
        }
        self.seq += 1;
        k
    }
}

/// The key of sensor `k`: `<uuid>_<k>`, the uuid derived from the namespace and `k`, so the
/// same run (or seed) always names the same sensors, without storing them.
fn write_key(namespace: u64, k: u64, out: &mut Vec<u8>) {
    let hi = splitmix64(namespace ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let lo = splitmix64(hi ^ k);
    write_uuid(((hi as u128) << 64) | lo as u128, out);
    out.push(b'_');
    out.extend_from_slice(itoa::Buffer::new().format(k).as_bytes());
}

/// Writes 128 random bits as a version-4 UUID (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
fn write_uuid(bits: u128, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = (bits & !(0xF000u128 << 64) | (0x4000u128 << 64)) & !(0xC000u128 << 48)
        | (0x8000u128 << 48);
    let mut buf = [0u8; 36];
    let mut j = 0;
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            buf[j] = b'-';
            j += 1;
        }
        buf[j] = HEX[((bits >> (124 - 4 * i)) & 0xF) as usize];
        j += 1;
    }
    out.extend_from_slice(&buf);
}

/// The key space of a run: every task of the run names the same sensors. With a seed the run
/// can be repeated exactly, so the seed names the key space; otherwise the run id does.
pub fn key_namespace(seed: Option<u64>, run_id: &str) -> u64 {
    match seed {
        Some(seed) => splitmix64(seed),
        None => splitmix64(fnv1a(run_id)),
    }
}

/// FNV-1a: a stable hash of a text (the std hasher is randomised per process, and the tasks of
/// a run must agree).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A fast, well-mixing 64-bit hash (the splitmix64 finaliser).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn events(spec: &PayloadSpec, n: usize, keys: u64, seed: u64) -> Vec<(String, String)> {
        let mut g = Generator::new(spec, keys, seed, 7);
        (0..n)
            .map(|_| {
                let (mut k, mut v) = (Vec::new(), Vec::new());
                g.next_event(1_675_686_126_310, &mut k, &mut v);
                (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap())
            })
            .collect()
    }

    #[test]
    fn sensor_reading_format() {
        let mut statuses = HashSet::new();
        for (key, value) in events(&PayloadSpec::Sensor, 20_000, 50, 1) {
            let v: serde_json::Value = serde_json::from_str(&value).unwrap();
            let obj = v.as_object().unwrap();
            assert_eq!(
                obj.keys().cloned().collect::<Vec<_>>(),
                ["sensorId", "status", "temperature", "timestamp"]
            );
            assert_eq!(obj["sensorId"].as_str().unwrap(), key);
            let (uuid, n) = key.rsplit_once('_').unwrap();
            assert!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num() == 4);
            assert!((1..=50).contains(&n.parse::<u64>().unwrap()));
            let t = obj["temperature"].as_f64().unwrap();
            assert!((10.0..=180.0).contains(&t), "{t}");
            // Always two decimals, as in the sample: 147.24, 10.50.
            let raw_t = value
                .split("\"temperature\":")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap();
            assert_eq!(raw_t.split('.').nth(1).unwrap().len(), 2, "{raw_t}");
            let status = obj["status"].as_str().unwrap();
            match status {
                "OK" => assert!(t <= 140.0),
                "WARNING" => assert!(t <= 160.0),
                "ERROR" => {}
                other => panic!("status {other}"),
            }
            if t > 160.0 {
                assert_eq!(status, "ERROR");
            }
            statuses.insert(status.to_string());
            assert_eq!(obj["timestamp"].as_u64().unwrap(), 1_675_686_126_310);
        }
        assert_eq!(statuses.len(), 3);
    }

    #[test]
    fn status_shares() {
        // Below 140 (130/170 of readings) 20 % are WARNING or ERROR; above 140 all are.
        let ev = events(&PayloadSpec::Sensor, 100_000, 10, 3);
        let ok = ev.iter().filter(|(_, v)| v.contains("\"OK\"")).count() as f64 / ev.len() as f64;
        let expected = (140.0 - 10.0) / 170.0 * 0.8;
        assert!((ok - expected).abs() < 0.01, "OK share {ok} vs {expected}");
    }

    #[test]
    fn key_cardinality() {
        let keys: HashSet<String> = events(&PayloadSpec::Sensor, 50_000, 100, 9)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), 100);
        let keys: HashSet<String> = events(&PayloadSpec::Sensor, 1000, 1, 9)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), 1);
        // Distinct uuids too, not only distinct suffixes.
        let uuids: HashSet<String> = events(&PayloadSpec::Sensor, 50_000, 100, 9)
            .into_iter()
            .map(|(k, _)| k.split('_').next().unwrap().to_string())
            .collect();
        assert_eq!(uuids.len(), 100);
    }

    #[test]
    fn cached_keys_are_the_formatted_keys() {
        let cached = Generator::new(&PayloadSpec::Sensor, 1000, 1, 42);
        let uncached = Generator::new(&PayloadSpec::Sensor, KEY_CACHE_MAX + 1, 1, 42);
        assert!(!cached.key_ends.is_empty() && uncached.key_ends.is_empty());
        for k in [1, 2, 500, 999, 1000] {
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            cached.write_key(k, &mut a);
            uncached.write_key(k, &mut b);
            write_key(42, k, &mut c);
            assert_eq!(a, c);
            assert_eq!(b, c);
        }
    }

    #[test]
    fn seed_makes_the_sequence_reproducible() {
        assert_eq!(
            events(&PayloadSpec::Sensor, 100, 1000, 5),
            events(&PayloadSpec::Sensor, 100, 1000, 5)
        );
        assert_ne!(
            events(&PayloadSpec::Sensor, 100, 1000, 5),
            events(&PayloadSpec::Sensor, 100, 1000, 6)
        );
    }

    #[test]
    fn a_seed_repeats_the_keys_of_every_distribution() {
        let keys = |d: &str, seed: u64| -> Vec<Vec<u8>> {
            let d = KeyDistribution::parse(d).unwrap();
            let mut g =
                Generator::new(&PayloadSpec::Sensor, 500, seed, 7).with_key_distribution(&d);
            let (mut k, mut v) = (Vec::new(), Vec::new());
            (0..1000)
                .map(|_| {
                    g.next_event(0, &mut k, &mut v);
                    k.clone()
                })
                .collect()
        };
        for d in ["uniform", "zipf:1.1", "hot:80%:5%", "sequential"] {
            assert_eq!(keys(d, 3), keys(d, 3), "{d}");
        }
        for d in ["uniform", "zipf:1.1", "hot:80%:5%"] {
            assert_ne!(keys(d, 3), keys(d, 4), "{d}");
        }
        // Sequential: every key in turn, the same sensors as the uniform draw names.
        let seq = keys("sequential", 3);
        assert_eq!(seq[0], seq[500]);
        assert_eq!(seq.iter().collect::<HashSet<_>>().len(), 500);
    }

    #[test]
    fn template_placeholders() {
        let spec = PayloadSpec::parse(
            r#"{"id":"{{uuid}}","user":"{{key}}","n":{{int:-5:5}},"price":{{float:1:2:3}},"kind":"{{choice:a=3,b=1,c=0}}","ts":{{timestamp}},"at":"{{timestamp_iso}}","seq":{{seq}},"pad":"{{pad:300}}"}"#,
        )
        .unwrap();
        let mut kinds = HashSet::new();
        for (i, (key, value)) in events(&spec, 2000, 10, 1).into_iter().enumerate() {
            assert_eq!(value.len(), 300, "{value}");
            let v: serde_json::Value = serde_json::from_str(&value).unwrap();
            uuid::Uuid::parse_str(v["id"].as_str().unwrap()).unwrap();
            assert_eq!(v["user"].as_str().unwrap(), key);
            assert!((-5..=5).contains(&v["n"].as_i64().unwrap()));
            let p = v["price"].as_f64().unwrap();
            assert!((1.0..=2.0).contains(&p));
            kinds.insert(v["kind"].as_str().unwrap().to_string());
            assert_eq!(v["ts"].as_u64().unwrap(), 1_675_686_126_310);
            assert_eq!(v["at"].as_str().unwrap(), "2023-02-06T12:22:06.310Z");
            assert_eq!(v["seq"].as_u64().unwrap(), i as u64);
        }
        assert_eq!(kinds, HashSet::from(["a".to_string(), "b".to_string()]));
    }

    #[test]
    fn template_errors() {
        for (bad, why) in [
            ("{\"a\":{{nope}}}", "unknown placeholder"),
            ("{\"a\":{{int:5:1}}}", "MIN is above MAX"),
            ("{\"a\":{{int:x:1}}}", "not an integer"),
            ("{\"a\":{{float:1}}}", "expected float"),
            ("{\"a\":{{uuid}}}", "not valid JSON"),
            ("{\"a\":\"{{uuid}\"}", "not closed"),
            ("{\"a\":\"{{pad:10}}{{pad:5}}\"}", "at most one"),
            ("{\"a\":\"{{choice:}}\"}", "empty choice"),
            (
                "{\"a\":\"{{choice:a=18446744073709551615,b=1}}\"}",
                "weights add up to more than",
            ),
            ("{\"a\":{{float:-1e308:1e308}}}", "beyond the largest float"),
            ("@/nonexistent/template.json", "cannot read"),
        ] {
            let e = PayloadSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with("FLEETLOAD_PAYLOAD="), "{e}");
        }
    }

    #[test]
    fn template_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, "{\"k\":\"{{key}}\"}").unwrap();
        let spec = PayloadSpec::parse(&format!("@{}", path.display())).unwrap();
        assert!(matches!(spec, PayloadSpec::Template(_)));
    }
}
