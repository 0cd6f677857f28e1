//! What a person reads at the end of a run: the summary table and the HTML page, and the number
//! formats they share with the thresholds.
pub(crate) mod format;
pub mod html;
pub mod table;
