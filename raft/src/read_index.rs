//! Linearizable reads on a leader, confirmed in shared rounds.
//!
//! openraft 0.9's `ensure_linearizable` asks every voter to confirm the
//! leadership, once per call. Each read paying its own round costs one
//! heartbeat per voter per read; on a leader cut off from its voters, every
//! pending read kept its own round (and, before the transport shared its
//! dials, its own handshakes) going, and memory grew with the number of
//! readers (issue 18). Here reads wait in a bounded queue and one round at
//! a time confirms every read that was queued before it started (the read
//! index of a round taken after a read arrived is valid for that read, as
//! etcd's batched ReadIndex does). A read is answered within a deadline,
//! with an error saying why when the leadership cannot be confirmed.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::{typ, NodeId, PeerNode};

/// Reads waiting for a confirmation at once; more are refused at once. Far
/// above what a healthy leader has queued (a round takes a round trip),
/// small enough that queued reads cost nothing to speak of.
pub const MAX_PENDING_READS: usize = 1024;
/// How long a read waits for its confirmation before it is answered with an
/// error: a few rounds, well under a client's patience.
pub const READ_CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// One round is given up after this long (openraft bounds each voter's
/// answer by a heartbeat interval, but the wait for the local state machine
/// to apply up to the read index is unbounded).
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a linearizable read could not be confirmed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadIndexError {
    #[error(
        "{pending} linearizable reads already wait for node {node} to confirm its \
         leadership; retry shortly, or read this node's copy with --stale"
    )]
    TooManyPending { node: NodeId, pending: usize },
    #[error("node {node} is not the leader")]
    NotLeader {
        node: NodeId,
        leader: Option<NodeId>,
    },
    #[error(
        "node {node} could not confirm its leadership: {confirmed} (nodes {voters}) of its \
         voters confirmed it, short of a quorum; it may be cut off from them (read its \
         copy with --stale, or retry)"
    )]
    QuorumNotReached {
        node: NodeId,
        confirmed: usize,
        voters: String,
    },
    #[error(
        "node {node} could not confirm its leadership within {timeout:?}; it may be cut \
         off from its voters (read its copy with --stale, or retry)"
    )]
    Timeout { node: NodeId, timeout: Duration },
    #[error("node {node} has stopped: {reason}")]
    Stopped { node: NodeId, reason: String },
}

type Waiter = (
    oneshot::Sender<Result<(), ReadIndexError>>,
    OwnedSemaphorePermit,
);

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    round_running: bool,
}

struct Shared {
    node: NodeId,
    raft: typ::Raft,
    slots: Arc<Semaphore>,
    queue: Mutex<Queue>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The leader's linearizable-read barrier. Cheap to clone.
#[derive(Clone)]
pub struct ReadIndex {
    shared: Arc<Shared>,
}

impl ReadIndex {
    pub fn new(node: NodeId, raft: typ::Raft) -> Self {
        ReadIndex {
            shared: Arc::new(Shared {
                node,
                raft,
                slots: Arc::new(Semaphore::new(MAX_PENDING_READS)),
                queue: Mutex::default(),
            }),
        }
    }

    /// Returns once this node has confirmed, after the call began, that it
    /// still leads and its state machine has applied everything committed
    /// before: a read from the local store that follows is linearizable.
    pub async fn confirm(&self) -> Result<(), ReadIndexError> {
        let node = self.shared.node;
        let deadline = tokio::time::Instant::now() + READ_CONFIRM_TIMEOUT;
        loop {
            let result = self.one_round(deadline).await;
            // A voter's answer later than a heartbeat interval (a loaded
            // machine, a lost packet) fails a round: the next one may
            // confirm, while the read's deadline lasts. Rounds are shared,
            // so retrying costs nothing per reader.
            match result {
                Err(ReadIndexError::QuorumNotReached { .. })
                    if tokio::time::Instant::now() < deadline => {}
                Err(ReadIndexError::Timeout { .. }) => {
                    return Err(ReadIndexError::Timeout {
                        node,
                        timeout: READ_CONFIRM_TIMEOUT,
                    })
                }
                other => return other,
            }
        }
    }

    /// Queues for the next round and waits for its answer until `deadline`.
    async fn one_round(&self, deadline: tokio::time::Instant) -> Result<(), ReadIndexError> {
        let node = self.shared.node;
        let Ok(slot) = self.shared.slots.clone().try_acquire_owned() else {
            return Err(ReadIndexError::TooManyPending {
                node,
                pending: MAX_PENDING_READS,
            });
        };
        let (answer, answered) = oneshot::channel();
        let start_round = {
            let mut queue = self.shared.queue();
            queue.waiting.push((answer, slot));
            !std::mem::replace(&mut queue.round_running, true)
        };
        if start_round {
            tokio::spawn(run_rounds(self.shared.clone()));
        }
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ReadIndexError::Stopped {
                node,
                reason: "the read round was dropped".into(),
            }),
            Err(_) => Err(ReadIndexError::Timeout {
                node,
                timeout: READ_CONFIRM_TIMEOUT,
            }),
        }
    }

    /// Reads waiting for a round (those that gave up included, until the
    /// round they joined ends).
    pub fn pending(&self) -> usize {
        self.shared.queue().waiting.len()
    }
}

/// Runs rounds while reads wait: each answers every read queued before it
/// began. Ends (and lets the next read start it again) once none waits.
async fn run_rounds(shared: Arc<Shared>) {
    loop {
        let batch = {
            let mut queue = shared.queue();
            if queue.waiting.is_empty() {
                queue.round_running = false;
                return;
            }
            std::mem::take(&mut queue.waiting)
        };
        let result =
            match tokio::time::timeout(ROUND_TIMEOUT, shared.raft.ensure_linearizable()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(round_error(shared.node, err)),
                Err(_) => Err(ReadIndexError::Timeout {
                    node: shared.node,
                    timeout: ROUND_TIMEOUT,
                }),
            };
        for (answer, slot) in batch {
            // Freed before the reader wakes: one that retries takes it again.
            drop(slot);
            // A reader that gave up is gone: nothing to tell it.
            let _ = answer.send(result.clone());
        }
    }
}

fn round_error(
    node: NodeId,
    err: RaftError<NodeId, CheckIsLeaderError<NodeId, PeerNode>>,
) -> ReadIndexError {
    match err {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)) => {
            ReadIndexError::NotLeader {
                node,
                leader: forward.leader_id,
            }
        }
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(quorum)) => {
            let voters: Vec<String> = quorum.got.iter().map(|id| id.to_string()).collect();
            ReadIndexError::QuorumNotReached {
                node,
                confirmed: quorum.got.len(),
                voters: voters.join(", "),
            }
        }
        RaftError::Fatal(fatal) => ReadIndexError::Stopped {
            node,
            reason: fatal.to_string(),
        },
    }
}
