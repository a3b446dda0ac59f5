//! What can go wrong with images cluster-wide, and how the API reports it.

use raft::NodeId;
use runtime::Digest;
use thiserror::Error;

use crate::api::ApiError;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error(
        "this node runs no container runtime (started with --no-agent): it cannot hold images"
    )]
    NoRuntime,
    #[error("image {reference} is not in the cluster; import it with `edgectl image import FILE` on any node (the cluster has {known})")]
    NotInCluster { reference: String, known: String },
    #[error("image reference {reference:?} matches more than one image in the cluster: {matches}")]
    Ambiguous { reference: String, matches: String },
    #[error("no other node holds image {image} (holders: {holders:?})")]
    NoHolder { image: String, holders: Vec<NodeId> },
    #[error("cannot fetch blob {digest}{}: {attempts}", .image.as_deref().map(|i| format!(" of image {i}")).unwrap_or_default())]
    Fetch {
        /// The image it belongs to, when fetched for one.
        image: Option<String>,
        digest: Digest,
        attempts: String,
    },
    #[error("image store: {0}")]
    Store(#[from] runtime::Error),
    #[error("cannot record image {image} in the cluster: {reason}")]
    Record { image: String, reason: String },
    #[error("image record {key} is unreadable: {reason}")]
    BadRecord { key: String, reason: String },
    #[error("reading the local replica: {0}")]
    Replica(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ImageError> for ApiError {
    fn from(error: ImageError) -> Self {
        match &error {
            ImageError::NotInCluster { .. } => ApiError::NotFound(error.to_string()),
            ImageError::Ambiguous { .. } | ImageError::NoRuntime => {
                ApiError::Invalid(error.to_string())
            }
            // What the user handed in is wrong: a bad or missing archive.
            ImageError::Store(
                runtime::Error::BadArchive { .. }
                | runtime::Error::DigestMismatch { .. }
                | runtime::Error::SizeMismatch { .. }
                | runtime::Error::MissingBlob { .. }
                | runtime::Error::UnknownMediaType { .. }
                | runtime::Error::Json { .. }
                | runtime::Error::UnsafeLayerEntry { .. }
                | runtime::Error::ImportLimit { .. }
                | runtime::Error::DeviceNodeInLayer { .. }
                | runtime::Error::Io { .. },
            ) => ApiError::Invalid(error.to_string()),
            // Not a bug of ours: the message says what to free.
            ImageError::Store(
                runtime::Error::DiskFull { .. } | runtime::Error::DiskReserve { .. },
            ) => ApiError::Unavailable(error.to_string()),
            _ => ApiError::Internal(error.to_string()),
        }
    }
}
