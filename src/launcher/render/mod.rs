//! What a person reads at the end of a run: the summary table (`table`), the HTML page
//! ([`html`]), the number formats both share with the thresholds (`format`), and opening the
//! page in a browser (`open`).
pub(crate) mod format;
pub mod html;
pub(crate) mod open;
pub(crate) mod table;
