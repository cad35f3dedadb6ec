//! clawimg: immutable, reproducible Ubuntu 24.04 disk images for hardened OpenClaw hosts.
//!
//! Pipeline: [`profile`] → [`base`] → [`customize`] → [`scrub`] → [`assemble`]
//! ([`gpt`], [`ext4`], [`esp`], [`grub`]) → [`qcow2`] → [`manifest`]; [`qemu`], [`probes`]
//! and [`harness`] boot the result and prove it.

#![warn(missing_docs)]

pub mod assemble;
pub mod base;
pub mod base_stage;
pub mod build;
pub mod cache;
pub mod cli;
pub mod customize;
pub mod diff;
pub mod error;
pub mod esp;
pub mod exec;
pub mod ext4;
pub mod ext4_times;
pub mod fat_times;
pub mod gpt;
pub mod grub;
pub mod harness;
pub mod identity;
pub mod lock;
pub mod manifest;
pub mod output;
pub mod probes;
pub mod profile;
pub mod progress;
pub mod qcow2;
pub mod qemu;
pub mod repro;
pub mod reuse;
pub mod rootfs;
pub mod scrub;
pub mod tools;
pub mod units;
