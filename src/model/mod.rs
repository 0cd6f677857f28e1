//! The model.
pub(crate) mod input;
pub(crate) mod measure;
pub(crate) mod payload;
pub mod profile;
pub mod report;
pub mod report_url;
pub(crate) mod scenario;
