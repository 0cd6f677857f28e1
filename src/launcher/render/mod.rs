//! What a person reads at the end of a run: the summary table and the HTML page, the number
//! formats they share with the thresholds, and opening the page in a browser.
pub(crate) mod format;
pub mod html;
pub(crate) mod open;
pub mod table;
