//! The model.
pub mod measure;
pub mod payload;
pub mod profile;
pub mod report;
pub mod scenario;
