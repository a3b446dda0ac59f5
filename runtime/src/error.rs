//! The runtime's error type. One enum for the crate: callers match on the
//! variant (e.g. `ImageInUse`, `ContainerExists`) and print the message.

use std::io;
use std::path::PathBuf;

/// Everything the runtime can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem or syscall operation on a path failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (e.g. "read", "create directory").
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The filesystem holding `path` has no space (or quota) left. Whatever
    /// was being written is rolled back as for any other failure.
    #[error(
        "{action} {path}: the disk is full ({source}); free space on that \
         filesystem (for example `edgectl image rm` of images no task uses, \
         then `edgectl image gc`) and retry"
    )]
    DiskFull {
        /// What was being done (e.g. "write").
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// ENOSPC or EDQUOT.
        #[source]
        source: io::Error,
    },
    /// A syscall without a path failed.
    #[error("{action}: {source}")]
    Sys {
        /// What was being done.
        action: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// Running `nft` on edgectl's table failed (or nft refused the ruleset).
    #[error("{action} nftables table {table}: {source}")]
    Nftables {
        /// What was being done ("apply", "run nft to list", ...).
        action: &'static str,
        /// The table (`ip edgectl`).
        table: String,
        /// The underlying error (nft's own message for a refusal).
        #[source]
        source: io::Error,
    },
    /// A netlink request about a route (or IPv4 forwarding) failed.
    #[error("{action} {route}: {source}")]
    Route {
        /// What was being done ("add route", "list routes", ...).
        action: &'static str,
        /// The route (`10.88.1.0/24 via 10.0.0.2`) or what was touched.
        route: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive is not a readable tar, OCI layout or docker save tarball.
    #[error("bad image archive {path}: {reason}")]
    BadArchive {
        /// The archive imported.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A blob's content does not hash to the digest that names it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which blob (manifest, config, layer N).
        what: String,
        /// The digest the archive claims.
        expected: String,
        /// The digest of the bytes found.
        actual: String,
    },
    /// A blob's size differs from its descriptor.
    #[error("size mismatch for {what}: descriptor says {expected} bytes, blob has {actual}")]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// Size in the descriptor.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A blob the manifest names is not in the archive.
    #[error("missing blob {what} in archive")]
    MissingBlob {
        /// Which blob (digest or path).
        what: String,
    },
    /// A layer entry would land outside the layer directory.
    #[error("layer {layer} entry {entry:?} escapes the rootfs: {reason}")]
    UnsafeLayerEntry {
        /// The layer digest.
        layer: String,
        /// The entry's path as written in the tar.
        entry: String,
        /// What makes it unsafe.
        reason: &'static str,
    },
    /// An import went over one of its `ImportLimits`; nothing was kept.
    #[error("image import refused: {what} is over the limit of {max} {unit}; {remedy}", unit = limit.unit(), remedy = limit.remedy())]
    ImportLimit {
        /// What went over (the archive, layer N, an entry's path).
        what: String,
        /// Which limit.
        limit: crate::image::Limit,
        /// Its value.
        max: u64,
    },
    /// An import would have left less than the disk reserve free.
    #[error(
        "image import refused: it would leave less than the disk reserve of {reserve} bytes \
         free on the filesystem of {path} ({free} bytes free, {needed} more needed); free \
         space there (`edgectl image rm` of images no task uses, then `edgectl image gc`) \
         or lower `--disk-reserve`"
    )]
    DiskReserve {
        /// A directory on that filesystem.
        path: PathBuf,
        /// Bytes free when checked.
        free: u64,
        /// Bytes the next write needed.
        needed: u64,
        /// The reserve.
        reserve: u64,
    },
    /// A layer holds a device node, which images may not carry.
    #[error(
        "layer {layer} entry {entry:?} is a {kind} device ({major}:{minor}): image layers may \
         not carry device nodes (a container gets its /dev from the runtime, and devices from \
         its spec); rebuild the image without it"
    )]
    DeviceNodeInLayer {
        /// The layer digest.
        layer: String,
        /// The entry's path as written in the tar.
        entry: String,
        /// "character" or "block".
        kind: &'static str,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A media type we do not know how to handle.
    #[error("unsupported media type {media_type:?} for {what}")]
    UnknownMediaType {
        /// Which blob.
        what: String,
        /// The media type found.
        media_type: String,
    },
    /// A string that should be a `sha256:<64 hex>` digest is not.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    /// A JSON document failed to parse.
    #[error("invalid json in {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// No image matches the reference.
    #[error("image {reference:?} not found")]
    ImageNotFound {
        /// The reference asked for.
        reference: String,
    },
    /// A short digest matches more than one image.
    #[error("image reference {reference:?} matches more than one image")]
    AmbiguousReference {
        /// The reference asked for.
        reference: String,
    },
    /// The image is used by a container and cannot be removed.
    #[error("image {image} is in use by container {container}")]
    ImageInUse {
        /// The image id.
        image: String,
        /// One container using it.
        container: String,
    },
    /// The container id is taken.
    #[error("container {id} already exists")]
    ContainerExists {
        /// The id.
        id: String,
    },
    /// No container with this id.
    #[error("container {id} not found")]
    ContainerNotFound {
        /// The id.
        id: String,
    },
    /// The container id has characters we do not allow.
    #[error("invalid container id {id:?}: use 1-64 characters of [A-Za-z0-9_.-], starting with an alphanumeric")]
    InvalidContainerId {
        /// The id.
        id: String,
    },
    /// The process to run does not exist in the image's rootfs.
    #[error("command {command:?} not found in image {image}")]
    CommandNotFound {
        /// argv[0].
        command: String,
        /// The image reference.
        image: String,
    },
    /// Neither the spec nor the image says what to run.
    #[error("image {image} has no entrypoint or cmd and the spec gives no command")]
    NoCommand {
        /// The image reference.
        image: String,
    },
    /// The memory limit is too small for any process to start.
    #[error("memory limit {requested} bytes is below the minimum of {minimum} bytes")]
    MemoryLimitTooSmall {
        /// The limit asked for.
        requested: u64,
        /// The smallest limit accepted.
        minimum: u64,
    },
    /// A user name in the spec or image is not in the image's /etc/passwd.
    #[error("user {user:?} not found in the image")]
    UserNotFound {
        /// The user string.
        user: String,
    },
    /// The spec is not valid (bad mount, volume name, ...).
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    /// The operation does not fit the container's state.
    #[error("container {id} is {state}: cannot {action}")]
    InvalidState {
        /// The container.
        id: String,
        /// Its state.
        state: String,
        /// What was asked.
        action: &'static str,
    },
    /// libcontainer refused or failed.
    #[error("libcontainer could not {action} container {id}: {source}")]
    Libcontainer {
        /// The container.
        id: String,
        /// What was asked.
        action: &'static str,
        /// libcontainer's error.
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },
    /// Building the OCI runtime spec failed.
    #[error("building the oci runtime spec: {0}")]
    OciSpec(#[from] oci_spec::OciSpecError),
    /// The cgroup layout of this host could not be read.
    #[error("reading the cgroup layout: {0}")]
    Cgroup(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches an action and a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::io(action, path, source))
    }
}

impl Error {
    /// An IO failure on `path`; a full disk gets its own variant, because
    /// the operator's remedy differs from every other IO error's.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        // By kind, not errno: the tar crate wraps the OS error it met but
        // keeps its kind.
        match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Error::DiskFull {
                action,
                path,
                source,
            },
            _ => Error::Io {
                action,
                path,
                source,
            },
        }
    }
}
