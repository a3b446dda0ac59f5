//! Publishing what the agent saw: a task of its own, so that a node cut off
//! from the leader (where every write waits for a leader that does not come)
//! keeps its passes, and so its restarts, on time.
//!
//! The driver hands over, after every pass, the statuses it wants the store
//! to hold (a `watch` channel: only the latest matters). The publisher writes
//! the difference from what the store holds — changed statuses, statuses of
//! deleted tasks, a changed capacity — in one transaction, and retries with
//! backoff until it succeeds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raft::store::KvReader;
use raft::{KvOp, Txn};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::api::SystemWriter;
use crate::orchestrator::records::{
    self, node_capacity_key, task_status_key, NodeCapacity, TaskStatus,
};

/// A write that takes longer is abandoned and retried.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff between failed writes (no leader): first and largest.
const WRITE_RETRY_MIN: Duration = Duration::from_millis(250);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(5);

/// What the store should hold for this node after a pass.
#[derive(Debug, Default)]
pub(super) struct Wanted {
    /// By task id; `updated_unix` is set when written.
    pub(super) statuses: BTreeMap<String, TaskStatus>,
    /// Every task record in the store (any node): a status whose task is
    /// not among them is deleted (a task busy stopping keeps its record,
    /// and so its last status, until it has stopped).
    pub(super) known_tasks: BTreeSet<String>,
    pub(super) capacity: NodeCapacity,
}

/// Where the publisher reads and writes: this node's id, its replica and
/// the system writer.
pub(super) struct Store {
    pub(super) me: u64,
    pub(super) replica: KvReader,
    pub(super) system: Arc<dyn SystemWriter>,
}

/// Starts the publisher; it stops when the sender is dropped.
pub(super) fn spawn(store: Store) -> watch::Sender<Option<Arc<Wanted>>> {
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(run(store, receiver));
    sender
}

async fn run(store: Store, mut wanted: watch::Receiver<Option<Arc<Wanted>>>) {
    let mut publisher = Publisher::from_store(&store);
    let mut retry = WRITE_RETRY_MIN;
    while wanted.changed().await.is_ok() {
        loop {
            let Some(current) = wanted.borrow_and_update().clone() else {
                break;
            };
            match publisher.publish(&store, &current).await {
                Ok(()) => {
                    retry = WRITE_RETRY_MIN;
                    break;
                }
                Err(why) => {
                    debug!(retry_in = ?retry, "agent write failed: {why}");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(WRITE_RETRY_MAX);
                    // Retry with whatever the driver wants by now; stop if
                    // the driver is gone.
                    if wanted.has_changed().is_err() {
                        return;
                    }
                }
            }
        }
    }
}

struct Publisher {
    me: u64,
    /// The statuses the store holds for this node's tasks, as last written
    /// (or read at start): only differences are written.
    statuses: BTreeMap<String, TaskStatus>,
    capacity: Option<NodeCapacity>,
}

impl Publisher {
    /// Learns what an earlier agent left in the store, so unchanged values
    /// are not rewritten after a restart.
    fn from_store(store: &Store) -> Publisher {
        let me = store.me;
        let mut statuses = BTreeMap::new();
        match store.replica.range(records::TASK_STATUS_PREFIX.as_bytes()) {
            Ok((kvs, _)) => {
                for kv in kvs {
                    if let Ok(status) = serde_json::from_slice::<TaskStatus>(&kv.value) {
                        if status.node == me {
                            statuses.insert(status.task.clone(), status);
                        }
                    }
                }
            }
            Err(error) => warn!("cannot read task statuses: {error}"),
        }
        Publisher {
            me,
            statuses,
            capacity: None,
        }
    }

    async fn publish(&mut self, store: &Store, wanted: &Wanted) -> Result<(), String> {
        let updated_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let puts: Vec<TaskStatus> = wanted
            .statuses
            .values()
            .filter(|status| {
                !self
                    .statuses
                    .get(&status.task)
                    .is_some_and(|old| same_status(old, status))
            })
            .map(|status| TaskStatus {
                updated_unix,
                ..status.clone()
            })
            .collect();
        // A status outlives its task only until this agent notices. The
        // controller usually deletes both at once: forget those silently.
        let gone: Vec<String> = self
            .statuses
            .keys()
            .filter(|task| {
                !wanted.known_tasks.contains(*task) && !wanted.statuses.contains_key(*task)
            })
            .cloned()
            .collect();
        let mut deletes = Vec::new();
        for task in gone {
            match store.replica.get(task_status_key(&task).as_bytes()) {
                Ok(None) => {
                    self.statuses.remove(&task);
                }
                _ => deletes.push(task),
            }
        }
        let capacity_changed = self.capacity.as_ref() != Some(&wanted.capacity)
            && !self.store_has_capacity(store, &wanted.capacity);
        if puts.is_empty() && deletes.is_empty() && !capacity_changed {
            return Ok(());
        }

        let mut txn = Txn::default();
        for status in &puts {
            let value = serde_json::to_vec(status)
                .map_err(|error| format!("cannot encode the status of {}: {error}", status.task))?;
            txn.success.push(KvOp::Put {
                key: task_status_key(&status.task).into_bytes(),
                value,
            });
        }
        for task in &deletes {
            txn.success.push(KvOp::Delete {
                key: task_status_key(task).into_bytes(),
            });
        }
        if capacity_changed {
            let value = serde_json::to_vec(&wanted.capacity)
                .map_err(|error| format!("cannot encode the capacity: {error}"))?;
            txn.success.push(KvOp::Put {
                key: node_capacity_key(self.me).into_bytes(),
                value,
            });
        }
        match tokio::time::timeout(WRITE_TIMEOUT, store.system.write_system(txn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err("timed out".to_string()),
        }
        debug!(
            statuses = puts.len(),
            deleted = deletes.len(),
            capacity = capacity_changed,
            "agent published"
        );
        for status in puts {
            self.log_rotation_change(&status);
            self.statuses.insert(status.task.clone(), status);
        }
        for task in deletes {
            self.statuses.remove(&task);
        }
        if capacity_changed {
            self.capacity = Some(wanted.capacity.clone());
        }
        Ok(())
    }

    /// The store already holds this capacity (an earlier agent wrote it).
    /// Says when a task enters or leaves rotation, once the status that
    /// says so is committed: what an operator reads to see why traffic
    /// moved (and what the VIP benchmark times propagation from).
    fn log_rotation_change(&self, status: &TaskStatus) {
        let was_ready = self
            .statuses
            .get(&status.task)
            .is_some_and(TaskStatus::is_ready);
        match (was_ready, status.is_ready()) {
            (false, true) => info!(task = %status.task, "task in rotation"),
            (true, false) => info!(
                task = %status.task,
                reason = status.not_ready.as_deref().unwrap_or(status.state.name()),
                "task out of rotation"
            ),
            _ => {}
        }
    }

    fn store_has_capacity(&mut self, store: &Store, capacity: &NodeCapacity) -> bool {
        let stored = store
            .replica
            .get(node_capacity_key(self.me).as_bytes())
            .ok()
            .flatten()
            .and_then(|kv| serde_json::from_slice::<NodeCapacity>(&kv.value).ok());
        if stored.as_ref() == Some(capacity) {
            self.capacity = stored;
            return true;
        }
        false
    }
}

/// Equal but for the time it was written.
fn same_status(a: &TaskStatus, b: &TaskStatus) -> bool {
    a.task == b.task
        && a.node == b.node
        && a.state == b.state
        && a.restarts == b.restarts
        && a.container_id == b.container_id
        && a.ip == b.ip
        && a.not_ready == b.not_ready
        && a.objects == b.objects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::records::TaskState;

    #[test]
    fn statuses_differing_only_in_time_are_the_same() {
        let a = TaskStatus {
            task: "web.0.1".into(),
            node: 1,
            state: TaskState::Running,
            restarts: 2,
            container_id: "web.0.1".into(),
            ip: None,
            updated_unix: 10,
            not_ready: None,
            objects: Default::default(),
        };
        let later = TaskStatus {
            updated_unix: 99,
            ..a.clone()
        };
        assert!(same_status(&a, &later));
        let restarted = TaskStatus {
            restarts: 3,
            ..a.clone()
        };
        assert!(!same_status(&a, &restarted));
        let swapped = TaskStatus {
            objects: [("secret/db".to_string(), 2)].into(),
            ..a.clone()
        };
        assert!(!same_status(&a, &swapped));
    }
}
