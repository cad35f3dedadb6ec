//! clawimg: immutable, reproducible Ubuntu 24.04 disk images for hardened OpenClaw hosts.
//!
//! Layers, each importing only the ones below it:
//! [`cli`] → [`ops`] → [`build`] → [`image`] → [`profile`] → [`support`] (and [`error`]).

#![warn(missing_docs)]

pub mod build;
pub mod cli;
pub mod error;
pub mod image;
pub mod ops;
pub mod profile;
pub mod support;
