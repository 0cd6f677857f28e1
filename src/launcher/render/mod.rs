//! What a person reads at the end of a run: the summary table ([`table`]), the HTML page
//! ([`html`]), the number formats both share with the thresholds ([`format`]), opening the
//! page in a browser ([`open`]), and the words for a run that did not keep up ([`saturation`]).
pub(crate) mod format;
pub mod html;
pub(crate) mod open;
pub(crate) mod saturation;
pub(crate) mod table;
