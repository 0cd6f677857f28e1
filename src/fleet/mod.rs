//! Fleet backends.
pub mod ecs;
