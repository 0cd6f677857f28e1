//! Test doubles of the services fleetload talks to, served on loopback: a Kinesis-compatible
//! endpoint ([`kinesis`]) and an ECS endpoint ([`ecs`]). They are used by the integration tests,
//! the examples and the benchmarks, and never compiled into the shipped binaries: the main crate
//! has this crate as a dev-dependency only.
//!
//! The doubles keep their own small copies of what they check (stream names, hashing): a double
//! that shared the validation of the code it tests could not catch a mistake in it.

pub mod ecs;
pub mod kinesis;
