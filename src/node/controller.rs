//! The leader's orchestration loop: the IO edge of `orchestrator::reconcile`.
//! Reads a snapshot from the local replica (the leader's is up to date once a
//! read barrier in its term has passed), decides, and writes the task changes
//! in one transaction guarded by each touched task's mod revision. Wakes on
//! any change under `/sys/` and at least every `CONTROLLER_TICK` (leases
//! lapse without a write).

use std::collections::BTreeMap;
use std::time::Duration;

use raft::{KvOp, KvRequest, Txn};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::Node;
use crate::api::{ApiError, ReadConsistency};
use crate::clock::now_unix;
use crate::cluster::keys::SYSTEM_PREFIX;
use crate::cluster::records::to_json;
use crate::orchestrator::reconcile::{reconcile, Decision, NodeState, Snapshot};
use crate::orchestrator::records::{
    self, NodeCapacity, NodeSettings, RolloutRecord, ServiceEvent, ServiceRecord, TaskRecord,
    TaskStatus,
};

/// The longest a lapsed lease waits to be noticed.
const CONTROLLER_TICK: Duration = Duration::from_millis(100);
/// After a wake-up, wait this long for the rest of a burst of writes.
const DEBOUNCE: Duration = Duration::from_millis(10);

impl Node {
    pub(super) async fn controller_loop(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        tokio::spawn(self.clone().wake_on_changes(wake.clone()));
        let mut confirmed_term: Option<u64> = None;
        loop {
            tokio::select! {
                _ = wake.notified() => tokio::time::sleep(DEBOUNCE).await,
                _ = tokio::time::sleep(CONTROLLER_TICK) => {}
                _ = shutdown.changed() => return,
            }
            let metrics = self.metrics();
            if metrics.current_leader != Some(self.id()) {
                confirmed_term = None;
                continue;
            }
            // A new leader's replica may miss the last entries of the old
            // term until one of its own commits: read only after a barrier.
            if confirmed_term != Some(metrics.current_term) {
                if let Err(e) = self.read_barrier(ReadConsistency::Linearizable).await {
                    debug!("controller waits for leadership: {e}");
                    continue;
                }
                confirmed_term = Some(metrics.current_term);
            }
            if let Err(e) = self.reconcile_once().await {
                warn!("orchestration pass failed: {e}");
            }
            if let Err(e) = self.assign_blocks_once().await {
                warn!("block allocation pass failed: {e}");
            }
            if let Err(e) = self.assign_vips_once().await {
                warn!("VIP allocation pass failed: {e}");
            }
        }
    }

    /// Notifies `wake` on every change under `/sys/` on the local replica.
    async fn wake_on_changes(self, wake: std::sync::Arc<tokio::sync::Notify>) {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            let mut watcher = match self.inner.kv.watch(SYSTEM_PREFIX.as_bytes(), 0) {
                Ok(watcher) => watcher,
                Err(e) => {
                    debug!("controller watch: {e}");
                    tokio::time::sleep(CONTROLLER_TICK).await;
                    continue;
                }
            };
            loop {
                tokio::select! {
                    event = watcher.next() => match event {
                        Ok(_) => wake.notify_one(),
                        // Fell behind compaction: start again from now.
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// One pass: snapshot, decide, write. Returns the number of task changes.
    pub(crate) async fn reconcile_once(&self) -> Result<usize, ApiError> {
        let snapshot = self.orchestration_snapshot()?;
        let decision = reconcile(&snapshot);
        if decision.is_empty() {
            return Ok(0);
        }
        let txn = self.decision_txn(&decision, snapshot.now_unix)?;
        let response = self.write(KvRequest::Txn(txn)).await?;
        if !response.succeeded {
            // Something moved under us (e.g. a write from the previous
            // leader applied late): the next pass starts from fresh state.
            debug!("orchestration pass lost a race; retrying on the next pass");
            return Ok(0);
        }
        for (service, message) in &decision.events {
            info!(service = %service, "{message}");
        }
        Ok(decision.changes.len())
    }

    pub(crate) fn orchestration_snapshot(&self) -> Result<Snapshot, ApiError> {
        let (task_kvs, revision) = self
            .inner
            .kv
            .range(records::TASKS_PREFIX.as_bytes())
            .map_err(super::api::internal)?;
        let mut tasks = BTreeMap::new();
        for kv in task_kvs {
            if let Some(task) = decode::<TaskRecord>(&kv.key, &kv.value) {
                tasks.insert(task.id.clone(), (task, kv.mod_revision));
            }
        }
        let services: BTreeMap<String, ServiceRecord> = self
            .read_records::<ServiceRecord>(records::SERVICES_PREFIX)?
            .into_iter()
            .map(|s| (s.spec.metadata.name.clone(), s))
            .collect();
        let statuses: BTreeMap<String, TaskStatus> = self
            .read_records::<TaskStatus>(records::TASK_STATUS_PREFIX)?
            .into_iter()
            .map(|s| (s.task.clone(), s))
            .collect();
        let capacities = self.read_node_records::<NodeCapacity>(records::NODE_CAPACITY_PREFIX)?;
        let mut settings = self.read_node_records::<NodeSettings>(records::NODE_SETTINGS_PREFIX)?;
        let liveness = self.liveness();
        let silences = self.silences();
        let metrics = self.metrics();
        let nodes = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, peer)| {
                let state = NodeState {
                    id: *id,
                    name: peer.name.clone(),
                    alive: silences
                        .get(id)
                        .is_some_and(|silent| liveness.is_alive(*silent)),
                    capacity: capacities.get(id).cloned(),
                    settings: settings.remove(id).unwrap_or_default(),
                };
                (*id, state)
            })
            .collect();
        let (rollout_kvs, _) = self
            .inner
            .kv
            .range(records::ROLLOUTS_PREFIX.as_bytes())
            .map_err(super::api::internal)?;
        let rollouts = rollout_kvs
            .iter()
            .filter_map(|kv| {
                let name = String::from_utf8_lossy(&kv.key[records::ROLLOUTS_PREFIX.len()..]);
                let record = decode::<RolloutRecord>(&kv.key, &kv.value)?;
                Some((name.into_owned(), (record, kv.mod_revision)))
            })
            .collect();
        let (volume_kvs, _) = self
            .inner
            .kv
            .range(crate::volumes::VOLUMES_PREFIX.as_bytes())
            .map_err(super::api::internal)?;
        let volumes = volume_kvs
            .iter()
            .filter_map(|kv| {
                let record = decode::<crate::volumes::VolumeRecord>(&kv.key, &kv.value)?;
                Some((record.name.clone(), (record, kv.mod_revision)))
            })
            .collect();
        let volume_exports = self
            .read_keyed_records::<crate::volumes::VolumeExport>(crate::volumes::EXPORTS_PREFIX)?
            .into_iter()
            .collect();
        let volume_imports = self
            .read_keyed_records::<crate::volumes::VolumeImport>(crate::volumes::IMPORTS_PREFIX)?
            .into_iter()
            .collect();
        Ok(Snapshot {
            services,
            tasks,
            statuses,
            rollouts,
            nodes,
            volumes,
            volume_exports,
            volume_imports,
            revision,
            now_unix: now_unix(),
        })
    }

    /// Every record under `prefix` that decodes (a corrupt one is logged and skipped).
    pub(crate) fn read_records<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<T>, ApiError> {
        Ok(self
            .read_keyed_records(prefix)?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }

    /// Records keyed `<prefix><node id, 20 digits>`, by node id.
    pub(crate) fn read_node_records<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<u64, T>, ApiError> {
        Ok(self
            .read_keyed_records(prefix)?
            .into_iter()
            .filter_map(|(suffix, record)| Some((suffix.parse::<u64>().ok()?, record)))
            .collect())
    }

    /// (key after `prefix`, record) of every record under `prefix` that decodes.
    pub(crate) fn read_keyed_records<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, ApiError> {
        let (kvs, _) = self
            .inner
            .kv
            .range(prefix.as_bytes())
            .map_err(super::api::internal)?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let suffix = String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned();
                Some((suffix, decode::<T>(&kv.key, &kv.value)?))
            })
            .collect())
    }

    fn decision_txn(&self, decision: &Decision, now: u64) -> Result<Txn, ApiError> {
        let mut txn = decision.task_txn();
        let mut events: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (service, message) in &decision.events {
            events.entry(service).or_default().push(message);
        }
        for (service, messages) in events {
            let key = records::service_events_key(service);
            let mut log: Vec<ServiceEvent> = match self
                .inner
                .kv
                .get(key.as_bytes())
                .map_err(super::api::internal)?
            {
                Some(kv) => serde_json::from_slice(&kv.value).unwrap_or_default(),
                None => Vec::new(),
            };
            log.extend(messages.into_iter().map(|message| ServiceEvent {
                unix: now,
                message: message.to_string(),
            }));
            let excess = log.len().saturating_sub(records::SERVICE_EVENTS_MAX);
            log.drain(..excess);
            txn.success.push(KvOp::Put {
                key: key.into_bytes(),
                value: to_json(&log),
            });
        }
        Ok(txn)
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(record) => Some(record),
        Err(e) => {
            warn!(key = %String::from_utf8_lossy(key), "unreadable record skipped: {e}");
            None
        }
    }
}
