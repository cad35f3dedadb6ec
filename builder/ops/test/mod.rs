//! `clawimg test`: boot an image in QEMU and prove it with probes over SSH.

pub mod harness;
pub mod probes;
pub mod qemu;
