//! OCI and Docker manifest documents: descriptors, image indexes and manifests (the fields
//! clawimg reads), shared by the registry client and the offline importer.

use crate::error::{Error, Result};
use crate::support::reference::Platform;
use serde::{Deserialize, Serialize};

/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2) media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Descriptor {
    /// Media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `sha256:...`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
}

/// Platform as written in an index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlatformJson {
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A manifest or an index (the fields clawimg needs).
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestDoc {
    /// Media type (may be absent in OCI documents; then inferred).
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Index entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Image config.
    pub config: Option<Descriptor>,
    /// Image layers.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

impl ManifestDoc {
    /// Parse a manifest or index.
    pub fn parse(bytes: &[u8], what: &str) -> Result<ManifestDoc> {
        let mut m: ManifestDoc = serde_json::from_slice(bytes)
            .map_err(|e| Error::failed(format!("{what}: not an image manifest or index: {e}")))?;
        if m.media_type.is_empty() {
            m.media_type = if m.config.is_some() {
                OCI_MANIFEST.into()
            } else {
                OCI_INDEX.into()
            };
        }
        Ok(m)
    }

    /// Whether this is an index / manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// The entry of an index for `platform`.
    pub fn select(&self, platform: &Platform, what: &str) -> Result<Descriptor> {
        self.manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
            })
            .cloned()
            .ok_or_else(|| {
                let have: Vec<String> = self
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| {
                        format!(
                            "{}/{}{}",
                            p.os,
                            p.architecture,
                            p.variant
                                .as_deref()
                                .map(|v| format!("/{v}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                Error::failed(format!(
                    "{what}: the index has no manifest for {platform} (it has: {})",
                    have.join(", ")
                ))
            })
    }
}
