//! What the image code runs on: the node's narrow handles (its runtime, its
//! replica, the system writer, the member dialer) and the node's image
//! state (one lock per image or blob being fetched, the upload cap, the
//! bytes served). The node owns one [`ImageState`] and hands out
//! [`ImageHost`]s over it; nothing here is process-wide, so several nodes
//! in one process (tests) never share a lock, a cap or a counter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use raft::store::KvReader;
use raft::NodeId;

use super::error::ImageError;
use super::rate::Limiter;
use crate::api::{MemberDialer, SystemWriter};

/// One node's image state, shared by every [`ImageHost`] of that node.
#[derive(Default)]
pub struct ImageState {
    /// One async lock per key (an image id, a blob), alive while someone
    /// holds or waits for it.
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// Bytes per second this node sends to peers, all blob streams
    /// together (None: uncapped).
    upload_cap: Mutex<Option<Arc<Limiter>>>,
    /// Blob bytes this node has sent to its peers since it started: what a
    /// metrics endpoint would export, and what tests count to show a blob
    /// was sent once.
    bytes_served: AtomicU64,
}

/// What the image functions use of their node. Cheap to clone.
#[derive(Clone)]
pub struct ImageHost {
    node_id: NodeId,
    /// None on a control-plane-only node (`--no-agent`): it holds no images.
    runtime: Option<Arc<runtime::Runtime>>,
    replica: KvReader,
    system: Arc<dyn SystemWriter>,
    members: MemberDialer,
    state: Arc<ImageState>,
}

impl ImageHost {
    pub fn new(
        node_id: NodeId,
        runtime: Option<Arc<runtime::Runtime>>,
        replica: KvReader,
        system: Arc<dyn SystemWriter>,
        members: MemberDialer,
        state: Arc<ImageState>,
    ) -> Self {
        ImageHost {
            node_id,
            runtime,
            replica,
            system,
            members,
            state,
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub(super) fn runtime(&self) -> Result<Arc<runtime::Runtime>, ImageError> {
        self.runtime.clone().ok_or(ImageError::NoRuntime)
    }

    pub(super) fn replica(&self) -> &KvReader {
        &self.replica
    }

    pub(super) fn system(&self) -> &dyn SystemWriter {
        self.system.as_ref()
    }

    pub(super) fn members(&self) -> &MemberDialer {
        &self.members
    }

    /// The lock for `key` on this node.
    pub(super) fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.state.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, weak| weak.strong_count() > 0);
        if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }

    pub(super) fn upload_limiter(&self) -> Option<Arc<Limiter>> {
        self.state
            .upload_cap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_upload_limiter(&self, limiter: Option<Arc<Limiter>>) {
        *self
            .state
            .upload_cap
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = limiter;
    }

    pub(super) fn count_served(&self, bytes: u64) {
        self.state.bytes_served.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Blob bytes this node has sent to its peers (all streams).
    pub fn bytes_served(&self) -> u64 {
        self.state.bytes_served.load(Ordering::Relaxed)
    }
}

/// Runs a blocking runtime call off the async threads.
pub(super) async fn blocking<T, F>(f: F) -> Result<T, ImageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, runtime::Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::Internal(format!("blocking task: {e}")))?
        .map_err(ImageError::Store)
}
