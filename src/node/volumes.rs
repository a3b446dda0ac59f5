//! The API's volumes, on the leader: create, list, inspect and remove the
//! records under `/sys/volumes/`. Where a local volume lives is recorded by the
//! controller's pass (orchestrator::volume_binding), not here.

use raft::{Compare, KvOp, KvRequest, Txn};

use super::api::internal;
use super::Node;
use crate::api::{ApiError, ApiRequest, ApiResponse, ApiResult, ReadConsistency, VolumeView};
use crate::clock::now_unix;
use crate::cluster::records::to_json;
use crate::model::{SpecLimits, VolumeType};
use crate::orchestrator::records::{self, DesiredState, NodeCapacity, ServiceRecord, TaskRecord};
use crate::volumes::{check_name, volume_key, VolumeDriver, VolumeRecord, VOLUMES_PREFIX};

impl Node {
    pub(super) async fn execute_volumes(&self, request: ApiRequest) -> ApiResult {
        self.ensure_leader()?;
        self.read_barrier(ReadConsistency::Linearizable).await?;
        match request {
            ApiRequest::VolumeCreate {
                name,
                driver,
                size_bytes,
            } => self.create_volume(&name, driver, size_bytes).await,
            ApiRequest::VolumeRemove { name } => self.remove_volume(&name).await,
            ApiRequest::VolumeMove { name, to } => self.move_volume(&name, &to).await,
            ApiRequest::VolumeList => Ok(ApiResponse::Volumes(self.volume_views(None)?)),
            ApiRequest::VolumeInspect { name } => {
                let mut views = self.volume_views(Some(&name))?;
                views.pop().map(ApiResponse::Volume).ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "volume {name} does not exist (see edgectl volume ls)"
                    ))
                })
            }
            other => Err(ApiError::Internal(format!(
                "{other:?} is not a volume request"
            ))),
        }
    }

    async fn create_volume(
        &self,
        name: &str,
        driver: VolumeDriver,
        size_bytes: Option<u64>,
    ) -> ApiResult {
        check_name(name).map_err(ApiError::Invalid)?;
        if let Some(size) = size_bytes {
            if size < SpecLimits::SIZED_VOLUME_MIN_BYTES {
                return Err(ApiError::Invalid(format!(
                    "volume {name}: --size {size} bytes is below the smallest sized volume (8Mi)"
                )));
            }
        }
        let key = volume_key(name);
        if self
            .inner
            .kv
            .get(key.as_bytes())
            .map_err(internal)?
            .is_some()
        {
            return Err(ApiError::Invalid(format!(
                "volume {name} exists already (see edgectl volume inspect {name})"
            )));
        }
        let record = VolumeRecord {
            name: name.to_string(),
            driver,
            size_bytes,
            node: None,
            created_unix: now_unix(),
            created_by: "volume create".into(),
            moving: None,
            replicas: 1,
            sync_interval_secs: 0,
            replica_nodes: Vec::new(),
            restoring: None,
        };
        self.put_volume_and_view(&record, 0).await
    }

    /// Refused while a service's spec names it: its tasks would start
    /// again with an empty volume.
    async fn remove_volume(&self, name: &str) -> ApiResult {
        let key = volume_key(name);
        let Some(kv) = self.inner.kv.get(key.as_bytes()).map_err(internal)? else {
            return Err(ApiError::NotFound(format!(
                "volume {name} does not exist (see edgectl volume ls)"
            )));
        };
        let users = services_using(
            &self.read_records::<ServiceRecord>(records::SERVICES_PREFIX)?,
            name,
        );
        if !users.is_empty() {
            return Err(ApiError::Invalid(format!(
                "volume {name} is used by service(s) {}: delete them, or remove the volume \
                 from their specs, first",
                users.join(", ")
            )));
        }
        self.write_volume_txn(
            name,
            Txn {
                compares: vec![Compare {
                    key: key.clone().into_bytes(),
                    mod_revision: kv.mod_revision,
                }],
                success: vec![KvOp::Delete {
                    key: key.into_bytes(),
                }],
                failure: vec![],
            },
        )
        .await?;
        Ok(ApiResponse::VolumeRemoved)
    }

    /// Starts a move (the controller and the two agents carry it out), or
    /// records the target at once for a volume no task has made yet.
    async fn move_volume(&self, name: &str, to: &str) -> ApiResult {
        let key = volume_key(name);
        let Some(kv) = self.inner.kv.get(key.as_bytes()).map_err(internal)? else {
            return Err(ApiError::NotFound(format!(
                "volume {name} does not exist (see edgectl volume ls)"
            )));
        };
        let mut record: VolumeRecord = serde_json::from_slice(&kv.value).map_err(internal)?;
        let members = self.member_names();
        let target = members
            .iter()
            .find(|(id, member)| member.as_str() == to || id.to_string() == to)
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                ApiError::Invalid(format!(
                    "node {to} is not a member; the members are {}",
                    members.values().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
        match (record.node, record.moving) {
            (_, Some(moving)) if moving.to == target => {}
            (_, Some(moving)) => {
                return Err(ApiError::Invalid(format!(
                    "volume {name} is moving to node {} already; wait for that move                      (edgectl volume inspect {name})",
                    members.get(&moving.to).cloned().unwrap_or_else(|| moving.to.to_string())
                )))
            }
            (Some(holder), None) if holder == target => {}
            (None, None) => record.node = Some(target),
            (Some(_), None) => {
                let started_unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                record.moving = Some(crate::volumes::VolumeMove {
                    to: target,
                    started_unix_ms,
                });
            }
        }
        self.put_volume_and_view(&record, kv.mod_revision).await
    }

    /// Writes `record` if its key is still at `mod_revision` (0: absent),
    /// and answers with its view.
    async fn put_volume_and_view(&self, record: &VolumeRecord, mod_revision: u64) -> ApiResult {
        let name = &record.name;
        let key = volume_key(name).into_bytes();
        self.write_volume_txn(
            name,
            Txn {
                compares: vec![Compare {
                    key: key.clone(),
                    mod_revision,
                }],
                success: vec![KvOp::Put {
                    key,
                    value: to_json(record),
                }],
                failure: vec![],
            },
        )
        .await?;
        let mut views = self.volume_views(Some(name))?;
        views
            .pop()
            .map(ApiResponse::Volume)
            .ok_or_else(|| ApiError::Internal(format!("volume {name} vanished after its write")))
    }

    async fn write_volume_txn(&self, name: &str, txn: Txn) -> Result<(), ApiError> {
        let response = self.write(KvRequest::Txn(txn)).await?;
        if response.succeeded {
            Ok(())
        } else {
            Err(ApiError::Invalid(format!(
                "volume {name} was changed by someone else meanwhile; nothing was written: retry"
            )))
        }
    }

    fn volume_views(&self, only: Option<&str>) -> Result<Vec<VolumeView>, ApiError> {
        let services = self.read_records::<ServiceRecord>(records::SERVICES_PREFIX)?;
        let tasks = self.read_records::<TaskRecord>(records::TASKS_PREFIX)?;
        let capacities = self.read_node_records::<NodeCapacity>(records::NODE_CAPACITY_PREFIX)?;
        let snapshot = self.orchestration_snapshot()?;
        let snapshot_nodes = snapshot.nodes;
        let (exports, imports) = (snapshot.volume_exports, snapshot.volume_imports);
        let mut views: Vec<VolumeView> = self
            .read_records::<VolumeRecord>(VOLUMES_PREFIX)?
            .into_iter()
            .filter(|record| only.is_none_or(|name| record.name == name))
            .map(|record| {
                let node = record.node.and_then(|id| snapshot_nodes.get(&id));
                let used_bytes = record
                    .node
                    .and_then(|id| capacities.get(&id))
                    .and_then(|c| c.volume_used_bytes.get(&record.name).copied());
                let tasks: Vec<String> = tasks
                    .iter()
                    .filter(|t| t.desired == DesiredState::Running)
                    .filter(|t| mounts_local(&t.spec.spec, &record.name))
                    .map(|t| t.id.clone())
                    .collect();
                VolumeView {
                    used_by: services_using(&services, &record.name),
                    tasks,
                    node: record.node.map(|id| {
                        node.map_or_else(|| format!("{id} (left the cluster)"), |n| n.name.clone())
                    }),
                    node_up: node.map(|n| n.alive),
                    used_bytes,
                    durability: durability(&record, node.map(|n| n.name.as_str())),
                    moving: move_phase(
                        &record,
                        exports.get(&record.name),
                        imports.get(&record.name),
                        &snapshot_nodes,
                    ),
                    driver: record.driver.name().to_string(),
                    size_bytes: record.size_bytes,
                    created_unix: record.created_unix,
                    created_by: record.created_by,
                    name: record.name,
                }
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(views)
    }
}

impl Node {
    /// A local volume that exists keeps its size: a spec that leaves `size`
    /// out gets the volume's (so every node mounts it alike, and `describe`
    /// shows it); one that asks another size is refused, naming both.
    pub(super) fn settle_volume_sizes(
        &self,
        spec: &mut crate::model::ServiceSpec,
    ) -> Result<(), ApiError> {
        for (index, volume) in spec.spec.volumes.iter_mut().enumerate() {
            if volume.volume_type != VolumeType::Local {
                continue;
            }
            let Some(kv) = self
                .inner
                .kv
                .get(volume_key(&volume.name).as_bytes())
                .map_err(internal)?
            else {
                continue;
            };
            let record: VolumeRecord = serde_json::from_slice(&kv.value).map_err(internal)?;
            let asked = volume.size.map(|size| size.0);
            match (asked, record.size_bytes) {
                (None, Some(size)) => volume.size = Some(crate::model::MemoryBytes(size)),
                (Some(asked), existing) if existing != Some(asked) => {
                    return Err(ApiError::Invalid(format!(
                        "spec.volumes[{index}].size: volume {} exists with {}; it cannot be resized: ask {} or leave `size` out",
                        volume.name,
                        existing.map_or_else(
                            || "no size limit".to_string(),
                            crate::model::quantity::format_memory_bytes
                        ),
                        existing.map_or_else(
                            || "no size".to_string(),
                            crate::model::quantity::format_memory_bytes
                        ),
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether a spec mounts local volume `name`.
fn mounts_local(body: &crate::model::ServiceBody, name: &str) -> bool {
    body.volumes
        .iter()
        .any(|v| v.name == name && v.volume_type == VolumeType::Local)
}

/// The services (sorted) whose spec names local volume `name`.
fn services_using(services: &[ServiceRecord], name: &str) -> Vec<String> {
    let mut users: Vec<String> = services
        .iter()
        .filter(|s| mounts_local(&s.spec.spec, name))
        .map(|s| s.spec.metadata.name.clone())
        .collect();
    users.sort();
    users
}

/// Where a move stands, in words.
fn move_phase(
    record: &VolumeRecord,
    export: Option<&crate::volumes::VolumeExport>,
    import: Option<&crate::volumes::VolumeImport>,
    nodes: &std::collections::BTreeMap<u64, crate::orchestrator::reconcile::NodeState>,
) -> Option<String> {
    let moving = record.moving?;
    let name = |id: u64| {
        nodes
            .get(&id)
            .map_or_else(|| id.to_string(), |n| n.name.clone())
    };
    let from = record.node.map_or_else(|| "-".to_string(), name);
    let to = name(moving.to);
    let export = export.filter(|e| e.move_started_unix_ms == moving.started_unix_ms);
    Some(match export {
        None => format!("stopping its tasks and packing it on node {from}"),
        Some(export) if !record.move_done(Some(export), import) => format!(
            "copying {} bytes from node {from} to node {to}",
            export.size_bytes
        ),
        Some(_) => format!("copied; recording node {to} as its node"),
    })
}

fn durability(record: &VolumeRecord, node: Option<&str>) -> String {
    match (record.driver, node) {
        (VolumeDriver::Local, Some(node)) => format!(
            "one copy, on node {node}: its tasks run there only, and the data is lost with \
             that device"
        ),
        (VolumeDriver::Local, None) => {
            "one copy, made on the node its first task is placed on".to_string()
        }
        (VolumeDriver::Replicated, _) => format!(
            "{} copies; a generation every {} s is fsync'd on the other nodes: when the \
             holder's node is lost, its tasks restart on the node with the newest one, and \
             at most the last {} s of writes (plus the time to ship them) are lost",
            record.replicas, record.sync_interval_secs, record.sync_interval_secs
        ),
    }
}
