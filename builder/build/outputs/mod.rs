//! What a build writes besides the raw disk: the qcow2, the block map, the staging
//! directory that is renamed into `out/` at the end, and the image cache that lets an
//! unchanged build re-link its outputs.

pub mod bmap;
pub mod qcow2;
pub mod reuse;
pub mod staging;
