//! The percentile spectrum's quantiles: x scaled by `1/(1-q)` from 0 % to 99.999 %, and the value
//! a histogram of microseconds shows at each, in milliseconds.

use hdrhistogram::Histogram;

/// The percentile spectrum's x axis ends at this many nines: 99.999 %.
pub(crate) const SPECTRUM_NINES: u32 = 5;
/// Points of the percentile spectrum per nine (per decade of `1/(1-q)`): 20 gives 101 points
/// from 0 % to 99.999 %, smooth at any zoom and small in the file.
const SPECTRUM_STEPS_PER_NINE: u32 = 20;

/// The quantiles of the spectrum: `q = 1 - 10^(-k / SPECTRUM_STEPS_PER_NINE)`, 0 to 99.999 %.
pub fn spectrum_quantiles() -> Vec<f64> {
    (0..=SPECTRUM_NINES * SPECTRUM_STEPS_PER_NINE)
        .map(|k| 1.0 - 10f64.powf(-(k as f64) / SPECTRUM_STEPS_PER_NINE as f64))
        .collect()
}

/// The value (ms) a spectrum shows at quantile `q`: `value_at_quantile` of the histogram of
/// microseconds, divided by 1000 as the summary's percentiles are.
pub fn spectrum_value(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}
