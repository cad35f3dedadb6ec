//! Helpers every layer uses: the rooted rootfs handle, running external tools, progress,
//! the stage cache, identifiers, reproducibility settings, offline systemd enablement.

pub mod blockdev;
pub mod cache;
pub mod digest;
pub mod dpkg;
pub mod exec;
pub mod identity;
pub mod progress;
pub mod reference;
pub mod repro;
pub mod rootfs;
pub mod ssh;
pub mod systemd;
pub mod text;
pub mod tools;
