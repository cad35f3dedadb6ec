//! What a build writes and every command reads: the manifest, probes, provenance, the
//! audit of a finished image.

pub mod audit;
pub mod declared;
pub mod expect;
pub mod files;
pub mod layout;
pub mod manifest;
pub mod probes;
pub mod provenance;
pub mod sbom;
pub mod scan;
