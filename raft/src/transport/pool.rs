//! Connections to other members on one ALPN, one per node id: dialled on
//! first use at the address the caller knows, checked to be that node by its
//! certificate, and dialled afresh once closed or forgotten.
//!
//! A dial runs in a task of its own, shared by every call to that member
//! while it lasts, and outlives the call that started it. Calls carry short
//! deadlines (a Raft heartbeat is given 50 ms): when each call dialled for
//! itself and gave the handshake up at its deadline, a member that did not
//! answer cost one abandoned handshake per call (each lingering in quinn
//! while it drained), so a cut-off leader asked for reads grew by megabytes
//! a second, and a handshake slower than the deadline never completed at
//! all. Now a silent member costs at most one handshake at a time.
//!
//! Used by the Raft network and by the orchestrator's peer protocol alike.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::endpoint::{Endpoint, EndpointError, PeerIdentityExpectation};
use crate::NodeId;

/// How long one dial may take before it is abandoned (the next call dials
/// afresh). Far inside the idle timeout: a dial to a member that was down
/// retransmits its first packet with a growing backoff, and a member that
/// has come back must be found again within about an election.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// After a dial failed, calls to that member fail at once for this long
/// rather than dialling again: a member that refuses the handshake (wrong
/// identity, a TLS error) is not dialled in a tight loop.
pub const DIAL_HOLDOFF: Duration = Duration::from_millis(100);

/// Why no connection to a member could be had.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("node {target} has an unusable address {addr:?}")]
    BadAddress { target: NodeId, addr: String },
    #[error("cannot reach node {target}: {source}")]
    Unreachable {
        target: NodeId,
        source: EndpointError,
    },
}

/// The outcome of a dial, as every call that waited on it sees it. The error
/// is kept as text: one failure is handed to many callers.
type DialOutcome = Option<Result<quinn::Connection, String>>;

enum Slot {
    Connected(quinn::Connection),
    Dialling {
        id: u64,
        addr: SocketAddr,
        outcome: watch::Receiver<DialOutcome>,
    },
    Failed {
        addr: SocketAddr,
        at: Instant,
        reason: String,
    },
}

struct Shared {
    endpoint: Endpoint,
    alpn: &'static [u8],
    slots: Mutex<HashMap<NodeId, Slot>>,
    next_dial_id: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn slots(&self) -> MutexGuard<'_, HashMap<NodeId, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct ConnectionPool {
    shared: Arc<Shared>,
}

impl ConnectionPool {
    pub fn new(endpoint: Endpoint, alpn: &'static [u8]) -> Self {
        ConnectionPool {
            shared: Arc::new(Shared {
                endpoint,
                alpn,
                slots: Mutex::new(HashMap::new()),
                next_dial_id: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The open connection to `target`, dialling `addr` if there is none
    /// (or joining the dial already under way). Callers bound the wait with
    /// their own deadline; the dial goes on without them.
    pub async fn get(&self, target: NodeId, addr: &str) -> Result<quinn::Connection, DialError> {
        let socket: SocketAddr = addr.parse().map_err(|_| DialError::BadAddress {
            target,
            addr: addr.to_string(),
        })?;
        let mut outcome = {
            let mut slots = self.shared.slots();
            match slots.get(&target) {
                Some(Slot::Connected(connection)) if connection.close_reason().is_none() => {
                    return Ok(connection.clone());
                }
                Some(Slot::Dialling {
                    addr: dialled,
                    outcome,
                    ..
                }) if *dialled == socket => outcome.clone(),
                Some(Slot::Failed {
                    addr: dialled,
                    at,
                    reason,
                }) if *dialled == socket && at.elapsed() < DIAL_HOLDOFF => {
                    return Err(unreachable(target, socket, reason.clone()));
                }
                _ => {
                    let (id, outcome) = self.start_dial(target, socket);
                    slots.insert(
                        target,
                        Slot::Dialling {
                            id,
                            addr: socket,
                            outcome: outcome.clone(),
                        },
                    );
                    outcome
                }
            }
        };
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone(),
            // The dial task ended without a word: only at runtime shutdown.
            Err(_) => Some(Err("the dial was abandoned".to_string())),
        };
        match result {
            Some(Ok(connection)) => Ok(connection),
            Some(Err(reason)) => Err(unreachable(target, socket, reason)),
            None => Err(unreachable(target, socket, "no outcome".to_string())),
        }
    }

    /// Spawns the dial of `target` at `addr`; its outcome is published on the
    /// returned channel and recorded in the pool (unless a newer dial or a
    /// [`forget`](Self::forget) replaced it meanwhile).
    fn start_dial(&self, target: NodeId, addr: SocketAddr) -> (u64, watch::Receiver<DialOutcome>) {
        let id = self
            .shared
            .next_dial_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (publish, outcome) = watch::channel(None);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let dial =
                shared
                    .endpoint
                    .connect(addr, PeerIdentityExpectation::Node(target), shared.alpn);
            let result = match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
                Ok(Ok(connection)) => Ok(connection),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!("no handshake within {DIAL_TIMEOUT:?}")),
            };
            {
                let mut slots = shared.slots();
                let still_ours = matches!(
                    slots.get(&target),
                    Some(Slot::Dialling { id: current, .. }) if *current == id
                );
                if still_ours {
                    let slot = match &result {
                        Ok(connection) => Slot::Connected(connection.clone()),
                        Err(reason) => Slot::Failed {
                            addr,
                            at: Instant::now(),
                            reason: reason.clone(),
                        },
                    };
                    slots.insert(target, slot);
                }
            }
            // Nobody waiting is fine: the connection stays in the pool.
            let _ = publish.send(Some(result));
        });
        (id, outcome)
    }

    /// Drops `failed` from the pool (unless it was already replaced), so the
    /// next call dials afresh: a timed-out connection may be half dead.
    pub fn forget(&self, target: NodeId, failed: &quinn::Connection) {
        let mut slots = self.shared.slots();
        if let Some(Slot::Connected(cached)) = slots.get(&target) {
            if cached.stable_id() == failed.stable_id() {
                slots.remove(&target);
            }
        }
    }

    /// Dials in progress, open connections and remembered failures held by
    /// the pool: at most one entry per member.
    pub fn len(&self) -> usize {
        self.shared.slots().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn unreachable(target: NodeId, addr: SocketAddr, reason: String) -> DialError {
    DialError::Unreachable {
        target,
        source: EndpointError::Dial { addr, reason },
    }
}

#[cfg(test)]
mod tests;
