//! clawimg: immutable, reproducible Ubuntu 24.04 disk images for hardened OpenClaw hosts.
//!
//! Pipeline: [`profile`] → [`base`] → [`customize`] → [`scrub`] → [`assemble`]
//! ([`gpt`], [`ext4`], [`esp`], [`grub`]) → [`qcow2`] → [`manifest`]; [`qemu`], [`probes`]
//! and [`harness`] boot the result and prove it.

#![warn(missing_docs)]

pub mod assemble;
pub mod base;
pub mod blobcache;
pub mod build;
pub mod cli;
pub mod customize;
pub mod error;
pub mod esp;
pub mod exec;
pub mod ext4;
pub mod gpt;
pub mod grub;
pub mod harness;
pub mod identity;
pub mod images;
pub mod manifest;
pub mod oci;
pub mod output;
pub mod probes;
pub mod profile;
pub mod progress;
pub mod qcow2;
pub mod qemu;
pub mod rootfs;
pub mod scrub;
pub mod tools;
pub mod units;
