//! clawimg: immutable, reproducible Ubuntu 24.04 disk images for hardened OpenClaw hosts.
//!
//! The folders are the layers; each imports only the ones below it (`tests/layers.rs`
//! enforces it):
//!
//! - [`cli`]: clap types; every command calls one operation and prints.
//! - [`ops`]: operations on built images and running nodes: boot tests, flash, seal,
//!   verify, diff, lock, upload.
//! - [`build`]: the pipeline. [`build::build`] checks the profile, then runs the stages in
//!   order, each taking the output of the one before:
//!   [`build::base`] (mmdebstrap, cached and locked) → [`build::customize`] →
//!   [`build::harden`] (one module per hardening section) → [`build::overlays`] →
//!   [`build::units`] → [`build::secrets`] (slots declared, never filled) →
//!   [`build::images`] (pinned container images baked) → [`build::scrub`] →
//!   [`build::assemble`] (GPT, ext4, ESP, GRUB for BIOS and UEFI) → [`build::outputs`]
//!   (qcow2, block map, checksums, audit) → `manifest.json`.
//! - [`image`]: what a build writes and every command reads: the manifest, the disk
//!   layout, the file list, verify's expectations, probes, provenance, the audit.
//! - [`profile`]: schema, inheritance, sections, lints, lock file, secret slots, catalog.
//! - [`support`]: rooted rootfs handle, external tools, progress, stage cache, identifiers,
//!   ssh transport, small helpers. [`error`] is shared by all.

#![warn(missing_docs)]

pub mod build;
pub mod cli;
pub mod error;
pub mod image;
pub mod ops;
pub mod profile;
pub mod support;
