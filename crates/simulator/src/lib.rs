//! Simulators of the two remote systems, for tests, the demo and the benchmark.
//!
//! [`world`] is the seeded master data both simulators share. [`orders`] generates 旺店通
//! stock-out orders from it and [`wdt`] serves them as the 企业奇门 Qimen router does.

pub mod orders;
pub mod wdt;
pub mod world;
pub mod xingchen;
