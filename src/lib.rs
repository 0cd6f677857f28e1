//! fleetload: a load generator for streaming platforms.
pub mod launcher;
pub mod model;
pub mod worker;
