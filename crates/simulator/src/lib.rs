//! Simulators of the two remote systems, for tests, the demo and the benchmark.
//!
//! [`world`] is the seeded master data both simulators share.

pub mod world;
