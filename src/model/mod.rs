//! The model.
pub mod input;
pub mod measure;
pub mod payload;
pub mod profile;
pub mod report;
pub mod report_url;
pub mod scenario;
