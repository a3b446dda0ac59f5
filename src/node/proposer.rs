//! Group commit on the leader: openraft makes one log entry, and so one
//! fsync, per `client_write`. The proposer gathers the writes that arrive
//! while earlier proposals are in flight into one `KvRequest::Batch` entry,
//! so under concurrency many writes share one sync; a lone write is proposed
//! on its own at once, so its latency does not change.

use std::sync::Arc;
use std::time::Duration;

use raft::openraft::error::{ClientWriteError, RaftError};
use raft::{KvRequest, KvResponse};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::Node;
use crate::api::ApiError;

/// Writes waiting for the proposer; senders wait when it is full.
pub const PROPOSAL_QUEUE: usize = 4096;
/// Most requests in one log entry (bounds an entry's size and apply time).
const MAX_BATCH: usize = 512;
/// Entries proposed but not yet committed. The leader syncs them one after
/// another anyway; more in flight would only make the batches smaller.
const MAX_IN_FLIGHT: usize = 2;
/// A write not committed by then is reported as of unknown outcome: the
/// leader may be cut off from its majority.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Proposal {
    pub request: KvRequest,
    pub reply: oneshot::Sender<Result<KvResponse, ApiError>>,
}

impl Node {
    pub(super) async fn proposer_loop(self, mut proposals: mpsc::Receiver<Proposal>) {
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        // Ends with the node: this loop holds a handle to it, so waiting for
        // the channel to close would keep the node alive forever.
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            let first = tokio::select! {
                first = proposals.recv() => match first {
                    Some(first) => first,
                    None => return,
                },
                _ = shutdown.changed() => return,
            };
            // Waiting for a slot first lets the batch grow meanwhile.
            let Ok(slot) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match proposals.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let node = self.clone();
            tokio::spawn(async move {
                node.propose(batch).await;
                drop(slot);
            });
        }
    }

    async fn propose(&self, mut batch: Vec<Proposal>) {
        if batch.len() == 1 {
            if let Some(proposal) = batch.pop() {
                let result = self.client_write(proposal.request).await;
                let _ = proposal.reply.send(result);
            }
            return;
        }
        let (requests, replies): (Vec<KvRequest>, Vec<_>) =
            batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        let count = requests.len();
        match self.client_write(KvRequest::Batch(requests)).await {
            Ok(response) if response.batch.len() == count => {
                for (reply, response) in replies.into_iter().zip(response.batch) {
                    let _ = reply.send(Ok(response));
                }
            }
            Ok(response) => {
                let error = ApiError::Internal(format!(
                    "a batch of {count} writes got {} responses",
                    response.batch.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    async fn client_write(&self, request: KvRequest) -> Result<KvResponse, ApiError> {
        let proposed =
            tokio::time::timeout(WRITE_TIMEOUT, self.inner.raft.client_write(request)).await;
        let Ok(result) = proposed else {
            return Err(ApiError::OutcomeUnknown(format!(
                "not committed within {WRITE_TIMEOUT:?}: node {} may have lost its majority",
                self.id()
            )));
        };
        match result {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ApiError::NoLeader(format!(
                    "node {} is not the leader (leader: {:?})",
                    self.id(),
                    f.leader_id
                )))
            }
            Err(e) => Err(ApiError::Internal(format!("raft write failed: {e}"))),
        }
    }
}
