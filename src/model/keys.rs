//! How each event's key is drawn over the run's `FLEETLOAD_KEYS` keys
//! (`FLEETLOAD_KEY_DISTRIBUTION`): uniformly, by Zipf's law, with a hot set, or in sequence.
//!
//! The key sets the cache hit ratio of an enrichment job downstream and, as the partition key,
//! the shard or partition an event goes to: a skewed distribution is how a user reproduces a
//! hot shard. Every draw is cheap: a multiply-shift for uniform and hot keys, a precomputed
//! alias table (one draw, one comparison) for Zipf over up to [`ZIPF_TABLE_MAX`] keys, and
//! `rand_distr`'s rejection-inversion sampler beyond that, where a table would cost too much
//! memory.

use std::fmt;

use rand::rngs::SmallRng;
use rand::RngCore;
use rand_distr::Distribution as _;

use crate::model::input::ScenarioError;

const NAME: &str = "FLEETLOAD_KEY_DISTRIBUTION";
const ACCEPTED: &str = "uniform, zipf:S (S a number above 0 and at most 10, e.g. zipf:1.1), \
hot:P%:Q% (P % of the events on Q % of the keys, e.g. hot:90%:10%), or sequential";

/// Zipf draws come from an alias table over at most this many keys (8 bytes a key: 8 MiB).
pub const ZIPF_TABLE_MAX: u64 = 1 << 20;
/// The largest Zipf exponent accepted: beyond it nearly every event has the first key.
const ZIPF_MAX_S: f64 = 10.0;

/// How keys are drawn over the key space.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum KeyDistribution {
    /// Every key equally likely.
    #[default]
    Uniform,
    /// Key of rank `r` (key `r`, 1-based) drawn with probability proportional to `r^-s`.
    Zipf {
        /// The exponent, above 0.
        s: f64,
    },
    /// A share of the events on a share of the keys (the first keys), the rest uniform over
    /// the others.
    Hot {
        /// Share of the events on the hot keys, 0–1.
        events: f64,
        /// Share of the keys that are hot, 0–1 (at least one key).
        keys: f64,
    },
    /// Keys 1, 2, …, N, 1, 2, … in turn.
    Sequential,
}

impl KeyDistribution {
    /// Parses `FLEETLOAD_KEY_DISTRIBUTION`.
    pub fn parse(value: &str) -> Result<Self, ScenarioError> {
        let v = value.trim();
        let bad = |reason: String| ScenarioError::invalid(NAME, value, reason, ACCEPTED);
        match v {
            "uniform" => return Ok(KeyDistribution::Uniform),
            "sequential" => return Ok(KeyDistribution::Sequential),
            _ => {}
        }
        if let Some(s) = v.strip_prefix("zipf:") {
            let s: f64 = s
                .parse()
                .map_err(|_| bad(format!("the exponent {s:?} is not a number")))?;
            if !(s > 0.0 && s <= ZIPF_MAX_S) {
                return Err(bad(format!(
                    "the exponent must be above 0 and at most {ZIPF_MAX_S}"
                )));
            }
            return Ok(KeyDistribution::Zipf { s });
        }
        if let Some(rest) = v.strip_prefix("hot:") {
            let Some((p, q)) = rest.split_once(':') else {
                return Err(bad("hot needs two shares, hot:P%:Q%".into()));
            };
            let share = |text: &str, what: &str| -> Result<f64, ScenarioError> {
                let n: f64 = text
                    .strip_suffix('%')
                    .unwrap_or(text)
                    .parse()
                    .map_err(|_| bad(format!("{what} {text:?} is not a percentage")))?;
                if !(n > 0.0 && n <= 100.0) {
                    return Err(bad(format!("{what} must be above 0 % and at most 100 %")));
                }
                Ok(n / 100.0)
            };
            let events = share(p, "the share of events")?;
            let keys = share(q, "the share of keys")?;
            if keys >= 1.0 {
                return Err(bad(
                    "with 100 % of the keys hot the distribution is uniform".into(),
                ));
            }
            return Ok(KeyDistribution::Hot { events, keys });
        }
        Err(bad("not a known distribution".into()))
    }
}

impl fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDistribution::Uniform => f.write_str("uniform"),
            KeyDistribution::Zipf { s } => write!(f, "zipf:{s}"),
            KeyDistribution::Hot { events, keys } => {
                write!(f, "hot:{}%:{}%", events * 100.0, keys * 100.0)
            }
            KeyDistribution::Sequential => f.write_str("sequential"),
        }
    }
}

/// Draws key numbers (1-based) by a [`KeyDistribution`], from the generator's random source.
#[derive(Debug, Clone)]
pub(crate) enum KeyChooser {
    Uniform {
        n: u64,
    },
    Alias(AliasTable),
    ZipfLarge(rand_distr::Zipf<f64>),
    Hot {
        hot: u64,
        cold: u64,
        /// Draws below this (of 2^64) pick a hot key.
        below: u64,
    },
    Sequential {
        n: u64,
        next: u64,
    },
}

/// `x` uniform over `0..n` from one 64-bit draw (multiply-shift: uniform to within n / 2^64).
#[inline]
fn below(draw: u64, n: u64) -> u64 {
    ((u128::from(draw) * u128::from(n)) >> 64) as u64
}

impl KeyChooser {
    /// A chooser over `keys` keys (at least 1).
    pub(crate) fn new(d: &KeyDistribution, keys: u64) -> Self {
        let n = keys.max(1);
        match *d {
            KeyDistribution::Uniform => KeyChooser::Uniform { n },
            KeyDistribution::Sequential => KeyChooser::Sequential { n, next: 0 },
            KeyDistribution::Zipf { s } if n <= ZIPF_TABLE_MAX => {
                let weights: Vec<f64> = (1..=n).map(|r| (r as f64).powf(-s)).collect();
                KeyChooser::Alias(AliasTable::new(&weights))
            }
            KeyDistribution::Zipf { s } => KeyChooser::ZipfLarge(
                rand_distr::Zipf::new(n, s).expect("the exponent was validated above 0"),
            ),
            KeyDistribution::Hot { events, keys } => {
                let hot = ((keys * n as f64).round() as u64).clamp(1, n);
                let cold = n - hot;
                let below = if cold == 0 || events >= 1.0 {
                    u64::MAX
                } else {
                    (events * 2f64.powi(64)) as u64
                };
                KeyChooser::Hot { hot, cold, below }
            }
        }
    }

    /// The next key number, 1-based.
    #[inline]
    pub(crate) fn next(&mut self, rng: &mut SmallRng) -> u64 {
        match self {
            KeyChooser::Uniform { n } => below(rng.next_u64(), *n) + 1,
            KeyChooser::Alias(t) => t.draw(rng.next_u64()) + 1,
            KeyChooser::ZipfLarge(z) => (z.sample(rng) as u64).max(1),
            KeyChooser::Hot {
                hot,
                cold,
                below: t,
            } => {
                if rng.next_u64() < *t || *cold == 0 {
                    below(rng.next_u64(), *hot) + 1
                } else {
                    *hot + below(rng.next_u64(), *cold) + 1
                }
            }
            KeyChooser::Sequential { n, next } => {
                let k = *next + 1;
                *next = if k == *n { 0 } else { k };
                k
            }
        }
    }
}

/// Walker's alias method (Vose's construction): a weighted draw over `n` outcomes in constant
/// time from one 64-bit draw — its upper 32 bits pick a column, its lower 32 bits decide
/// between the column and its alias.
#[derive(Debug, Clone)]
pub(crate) struct AliasTable {
    /// Per column: keep it when the lower 32 bits of the draw are below this.
    keep_below: Vec<u32>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// A table for these (positive) weights; at most 2^32 of them.
    pub(crate) fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut keep_below = vec![u32::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            keep_below[s] = (scaled[s] * 2f64.powi(32)) as u32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left keeps itself (rounding leaves some columns at ~1).
        AliasTable { keep_below, alias }
    }

    #[inline]
    fn draw(&self, r: u64) -> u64 {
        let column = (((r >> 32) * self.keep_below.len() as u64) >> 32) as usize;
        if (r as u32) < self.keep_below[column] {
            column as u64
        } else {
            u64::from(self.alias[column])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn counts(d: &KeyDistribution, keys: u64, draws: usize, seed: u64) -> Vec<u64> {
        let mut c = KeyChooser::new(d, keys);
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut out = vec![0u64; keys as usize + 1];
        for _ in 0..draws {
            let k = c.next(&mut rng);
            assert!((1..=keys).contains(&k), "{k}");
            out[k as usize] += 1;
        }
        out
    }

    /// Least-squares slope of log(frequency) against log(rank) over ranks 1..=upto.
    fn slope(c: &[u64], upto: usize) -> f64 {
        let pts: Vec<(f64, f64)> = (1..=upto)
            .filter(|&r| c[r] > 0)
            .map(|r| ((r as f64).ln(), (c[r] as f64).ln()))
            .collect();
        let n = pts.len() as f64;
        let (mx, my) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        sxy / sxx
    }

    #[test]
    fn parses_every_form_and_refuses_the_rest_naming_the_variable() {
        assert_eq!(
            KeyDistribution::parse("uniform").unwrap(),
            KeyDistribution::Uniform
        );
        assert_eq!(
            KeyDistribution::parse("sequential").unwrap(),
            KeyDistribution::Sequential
        );
        assert_eq!(
            KeyDistribution::parse("zipf:1.1").unwrap(),
            KeyDistribution::Zipf { s: 1.1 }
        );
        assert_eq!(
            KeyDistribution::parse("hot:90%:10%").unwrap(),
            KeyDistribution::Hot {
                events: 0.9,
                keys: 0.1
            }
        );
        assert_eq!(
            KeyDistribution::parse("hot:90%:10%").unwrap().to_string(),
            "hot:90%:10%"
        );
        for bad in [
            "",
            "zipf",
            "zipf:",
            "zipf:0",
            "zipf:-1",
            "zipf:11",
            "zipf:x",
            "zipf:NaN",
            "hot:90%",
            "hot:0%:10%",
            "hot:90%:100%",
            "hot:101%:10%",
            "hot:a:b",
            "gaussian",
        ] {
            let e = KeyDistribution::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("FLEETLOAD_KEY_DISTRIBUTION="), "{bad}: {e}");
            assert!(e.contains("accepted: uniform, zipf:S"), "{bad}: {e}");
        }
    }

    #[test]
    fn hot_puts_the_share_of_events_on_the_share_of_keys() {
        let d = KeyDistribution::parse("hot:90%:10%").unwrap();
        let c = counts(&d, 1000, 200_000, 3);
        let hot: u64 = c[1..=100].iter().sum();
        let share = hot as f64 / 200_000.0;
        assert!((share - 0.9).abs() < 0.005, "{share}");
        // The cold keys share the rest evenly: each gets about 0.1 / 900 of the events.
        assert!(c[101..].iter().all(|&n| n > 0));
        // One key only: everything on it.
        assert!(counts(&d, 1, 100, 3)[1] == 100);
    }

    #[test]
    fn zipf_rank_frequency_slope_is_minus_s_from_the_table_and_beyond_it() {
        for s in [0.8, 1.0, 1.5] {
            let d = KeyDistribution::Zipf { s };
            let c = counts(&d, 1000, 400_000, 5);
            let got = -slope(&c, 100);
            assert!((got - s).abs() < 0.05 * s, "table, s {s}: slope {got}");
        }
        // Above the table's size, rand_distr's sampler.
        let d = KeyDistribution::Zipf { s: 1.2 };
        let mut c = KeyChooser::new(&d, ZIPF_TABLE_MAX * 4);
        assert!(matches!(c, KeyChooser::ZipfLarge(_)));
        let mut rng = SmallRng::seed_from_u64(9);
        let mut top = vec![0u64; 101];
        for _ in 0..400_000 {
            let k = c.next(&mut rng);
            assert!((1..=ZIPF_TABLE_MAX * 4).contains(&k));
            if k <= 100 {
                top[k as usize] += 1;
            }
        }
        let got = -slope(&top, 100);
        assert!((got - 1.2).abs() < 0.06, "sampler: slope {got}");
    }

    #[test]
    fn uniform_and_sequential() {
        let c = counts(&KeyDistribution::Uniform, 10, 100_000, 1);
        assert!(
            c[1..].iter().all(|&n| (9_000..11_000).contains(&n)),
            "{c:?}"
        );
        let mut seq = KeyChooser::new(&KeyDistribution::Sequential, 3);
        let mut rng = SmallRng::seed_from_u64(0);
        let got: Vec<u64> = (0..7).map(|_| seq.next(&mut rng)).collect();
        assert_eq!(got, [1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn the_alias_table_gives_each_weight_its_share() {
        // Over every (column, coin) pair the table gives each outcome its share of 2^64.
        let t = AliasTable::new(&[1.0, 2.0, 5.0]);
        let mut c = [0u64; 3];
        let mut rng = SmallRng::seed_from_u64(2);
        for _ in 0..80_000 {
            c[t.draw(rng.next_u64()) as usize] += 1;
        }
        for (i, w) in [1.0, 2.0, 5.0].iter().enumerate() {
            let share = c[i] as f64 / 80_000.0;
            assert!((share - w / 8.0).abs() < 0.01, "{i}: {share}");
        }
    }
}
