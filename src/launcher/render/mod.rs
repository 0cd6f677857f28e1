//! What a person reads at the end of a run: the summary table and the HTML page.
pub mod html;
pub(crate) mod saturation;
pub(crate) mod table;
