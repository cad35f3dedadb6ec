//! clawimg: immutable, reproducible Ubuntu 24.04 disk images for hardened OpenClaw hosts.
//!
//! Pipeline: [`profile`] → [`base`] → [`customize`] → [`scrub`] → [`assemble`]
//! ([`gpt`], [`ext4`], [`esp`], [`grub`]) → [`qcow2`] → [`manifest`]; [`qemu`], [`probes`]
//! and [`harness`] boot the result and prove it.

#![warn(missing_docs)]

pub mod assemble;
pub mod audit;
pub mod base;
pub mod base_stage;
pub mod blobcache;
pub mod bmap;
pub mod build;
pub mod cache;
pub mod cli;
pub mod customize;
pub mod declared;
pub mod diff;
pub mod directories;
pub mod docker;
pub mod error;
pub mod esp;
pub mod exec;
pub mod ext4;
pub mod ext4_times;
pub mod fail2ban;
pub mod fat_times;
pub mod firewall;
pub mod flash;
pub mod glance;
pub mod gpt;
pub mod grub;
pub mod hardening;
pub mod harness;
pub mod hostenv;
pub mod identity;
pub mod images;
pub mod keystone;
pub mod lints;
pub mod lock;
pub mod manifest;
pub mod oci;
pub mod output;
pub mod overlay;
pub mod probes;
pub mod profile;
pub mod progress;
pub mod provenance;
pub mod qcow2;
pub mod qemu;
pub mod repro;
pub mod reuse;
pub mod rootfs;
pub mod s3;
pub mod scrub;
pub mod secrets;
pub mod seed;
pub mod ssh;
pub mod swap;
pub mod sysctl;
pub mod tools;
pub mod units;
pub mod unitset;
pub mod updates;
pub mod upload;
pub mod users;
pub mod verify;
