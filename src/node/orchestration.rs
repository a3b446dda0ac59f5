//! Orchestration requests of the client API, executed on the leader (or, for
//! images, on the node that received them): services, tasks, nodes.

use std::collections::BTreeMap;

use raft::{Compare, KvOp, KvRequest, Txn};

use super::api::internal;
use super::Node;
use crate::api::{
    ApiError, ApiRequest, ApiResponse, ApiResult, ApplyChange, ApplyOutcome, EndpointView,
    NodeChange, NodeView, ReadConsistency, ServiceDescription, ServiceSummary, TaskView,
};
use crate::clock::now_unix;
use crate::cluster::records::to_json;
use crate::model::{self, ServiceSpec, SpecLimits, REPLICAS_MAX};
use crate::orchestrator::reconcile::requested;
use crate::orchestrator::records::{
    self, DesiredState, NodeSettings, ServiceEvent, ServiceRecord, TaskRecord, TaskState,
    TaskStatus,
};
use crate::orchestrator::revisions;

impl Node {
    pub(super) async fn execute_orchestration(&self, request: ApiRequest) -> ApiResult {
        match request {
            ApiRequest::ImageImport { path } => self.import_image(&path).await,
            ApiRequest::ImageList => self.list_images(),
            request => {
                self.ensure_leader()?;
                self.read_barrier(ReadConsistency::Linearizable).await?;
                match request {
                    ApiRequest::Apply { yaml } => self.apply_service(&yaml).await,
                    ApiRequest::Scale { name, replicas } => {
                        self.scale_service(&name, replicas).await
                    }
                    ApiRequest::DeleteService { name } => self.delete_service(&name).await,
                    ApiRequest::RollbackService { name } => self.rollback_service(&name).await,
                    ApiRequest::GetServices => Ok(ApiResponse::Services(self.service_summaries()?)),
                    ApiRequest::GetTasks { service } => {
                        if let Some(name) = &service {
                            self.service_record(name)?;
                        }
                        Ok(ApiResponse::Tasks(self.task_views(service.as_deref())?))
                    }
                    ApiRequest::DescribeService { name } => self.describe_service(&name),
                    ApiRequest::GetNodes => Ok(ApiResponse::NodeViews(self.node_views()?)),
                    ApiRequest::GetEndpoints { service } => {
                        if let Some(name) = &service {
                            self.service_record(name)?;
                        }
                        Ok(ApiResponse::Endpoints(
                            self.endpoint_views(service.as_deref())?,
                        ))
                    }
                    ApiRequest::UpdateNode { node, change } => {
                        self.update_node(&node, change).await
                    }
                    ApiRequest::RolloutStatus { service } => self.rollout_view(&service),
                    ApiRequest::RolloutHistory { service } => self.rollout_history(&service),
                    ApiRequest::RolloutUndo {
                        service,
                        to_revision,
                    } => self.undo_rollout(&service, to_revision).await,
                    ApiRequest::RolloutPause { service, pause } => {
                        self.pause_rollout(&service, pause).await
                    }
                    ApiRequest::RolloutPromote { service } => self.promote_rollout(&service).await,
                    other => Err(ApiError::Internal(format!(
                        "{other:?} is not an orchestration request"
                    ))),
                }
            }
        }
    }

    async fn apply_service(&self, yaml: &str) -> ApiResult {
        let mut spec = parse_service_off_workers(yaml).await?;
        self.check_object_references(&spec, yaml)?;
        self.settle_volume_sizes(&mut spec)?;
        let name = spec.metadata.name.clone();
        self.check_disk_room(&format!("applying service {name}"))?;
        self.check_published_ports(&spec)?;
        let key = records::service_key(&name);
        let current = self.inner.kv.get(key.as_bytes()).map_err(internal)?;
        let now = now_unix();
        let (record, change, mod_revision) = match current {
            None => {
                let mut record = ServiceRecord {
                    objects: self.object_versions(&spec)?,
                    spec,
                    generation: 1,
                    created_unix: now,
                    updated_unix: now,
                    previous: None,
                    revisions: Vec::new(),
                    paused: false,
                    resumes: 0,
                    promotes: 0,
                };
                revisions::push_revision(&mut record, None, "created".to_string(), now);
                (record, ApplyChange::Created, 0)
            }
            Some(kv) => {
                let old: ServiceRecord = serde_json::from_slice(&kv.value).map_err(internal)?;
                let change = classify_change(&old.spec, &spec);
                let updated = change == ApplyChange::Updated;
                let mut record = ServiceRecord {
                    objects: if updated {
                        self.object_versions(&spec)?
                    } else {
                        old.objects.clone()
                    },
                    spec,
                    updated_unix: if change == ApplyChange::Unchanged {
                        old.updated_unix
                    } else {
                        now
                    },
                    ..old.clone()
                };
                if change == ApplyChange::Updated {
                    record.generation = old.generation + 1;
                    record.previous = Some(old.spec.clone());
                    let what = revisions::describe_change(&old.spec, &record.spec);
                    let before = (old.generation, &old.spec, old.updated_unix);
                    revisions::push_revision(&mut record, Some(before), what, now);
                }
                (record, change, kv.mod_revision)
            }
        };
        if change != ApplyChange::Unchanged {
            self.put_service_naming_objects(&record, mod_revision)
                .await?;
        }
        Ok(ApiResponse::Applied(ApplyOutcome {
            name,
            generation: record.generation,
            replicas: record.spec.spec.replicas,
            change,
        }))
    }

    /// The current version of each secret and config `spec` names (one
    /// that is gone is left out: its tasks wait for it, saying so).
    pub(super) fn object_versions(
        &self,
        spec: &ServiceSpec,
    ) -> Result<BTreeMap<String, u64>, ApiError> {
        use crate::secrets::records::{object_key, ObjectRecord};
        use crate::secrets::ObjectKind;
        let body = &spec.spec;
        let wanted = body
            .secret_names()
            .into_iter()
            .map(|name| (ObjectKind::Secret, name))
            .chain(
                body.config_names()
                    .into_iter()
                    .map(|name| (ObjectKind::Config, name)),
            );
        let mut versions = BTreeMap::new();
        for (kind, name) in wanted {
            if let Some(kv) = self
                .inner
                .kv
                .get(object_key(kind, name).as_bytes())
                .map_err(internal)?
            {
                let record: ObjectRecord = serde_json::from_slice(&kv.value).map_err(internal)?;
                versions.insert(
                    crate::secrets::usage::version_key(kind, name),
                    record.meta.version,
                );
            }
        }
        Ok(versions)
    }

    /// Every secret and config the spec names exists (read on the leader).
    /// One removed right after still cannot run unnoticed: its tasks wait,
    /// saying which object is missing.
    fn check_object_references(&self, spec: &ServiceSpec, yaml: &str) -> Result<(), ApiError> {
        if spec.spec.secrets.is_empty()
            && spec.spec.configs.is_empty()
            && spec.spec.env_from.is_empty()
        {
            return Ok(());
        }
        let names = |kind| -> Result<std::collections::BTreeSet<String>, ApiError> {
            let prefix = crate::secrets::records::object_prefix(kind);
            let (kvs, _) = self.inner.kv.range(prefix.as_bytes()).map_err(internal)?;
            Ok(kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned())
                .collect())
        };
        model::check_references(
            spec,
            Some(yaml),
            &names(crate::secrets::ObjectKind::Secret)?,
            &names(crate::secrets::ObjectKind::Config)?,
        )
        .map_err(|e| ApiError::Invalid(e.to_string()))
    }

    /// A `publish: cluster` port is open on every node: refuses a spec whose
    /// published ports clash with another service's (read on the leader).
    /// Two applies racing on different services could both pass it: the
    /// write checks again under a CAS guard (`claim_published_ports`).
    pub(super) fn check_published_ports(&self, spec: &ServiceSpec) -> Result<(), ApiError> {
        let services = self.read_keyed_records::<ServiceRecord>(records::SERVICES_PREFIX)?;
        crate::network::check_published_ports(
            &spec.metadata.name,
            &spec.spec.ports,
            services
                .iter()
                .map(|(name, record)| (name.as_str(), record.spec.spec.ports.as_slice())),
        )
        .map_err(|clash| ApiError::Invalid(clash.to_string()))
    }

    async fn scale_service(&self, name: &str, replicas: u32) -> ApiResult {
        if replicas > REPLICAS_MAX {
            return Err(ApiError::Invalid(format!(
                "{replicas} replicas is more than the {REPLICAS_MAX} a service may have"
            )));
        }
        let (mut record, mod_revision) = self.service_record(name)?;
        let change = if record.spec.spec.replicas == replicas {
            ApplyChange::Unchanged
        } else {
            record.spec.spec.replicas = replicas;
            record.updated_unix = now_unix();
            self.put_service(&record, mod_revision).await?;
            ApplyChange::Scaled
        };
        Ok(ApiResponse::Applied(ApplyOutcome {
            name: name.to_string(),
            generation: record.generation,
            replicas,
            change,
        }))
    }

    /// Back to the spec of the generation before (`rollout undo` without
    /// a revision), as a new generation: `edgectl rollback service`, kept
    /// as an alias.
    async fn rollback_service(&self, name: &str) -> ApiResult {
        self.undo_rollout(name, None).await
    }

    async fn delete_service(&self, name: &str) -> ApiResult {
        let (_, mod_revision) = self.service_record(name)?;
        let key = records::service_key(name).into_bytes();
        let txn = Txn {
            compares: vec![Compare {
                key: key.clone(),
                mod_revision,
            }],
            success: vec![
                KvOp::Delete { key },
                KvOp::Delete {
                    key: records::service_events_key(name).into_bytes(),
                },
            ],
            failure: vec![],
        };
        self.write_guarded(txn, name).await?;
        Ok(ApiResponse::ServiceDeleted)
    }

    /// `put_service`, also guarded by the mod revision of every object the
    /// spec names as read now: one removed since `check_object_references`
    /// makes the apply fail rather than name a missing object.
    pub(super) async fn put_service_naming_objects(
        &self,
        record: &ServiceRecord,
        mod_revision: u64,
    ) -> Result<(), ApiError> {
        use crate::secrets::records::object_key;
        use crate::secrets::ObjectKind;
        let body = &record.spec.spec;
        let mut compares = Vec::new();
        let named = body
            .secret_names()
            .into_iter()
            .map(|name| object_key(ObjectKind::Secret, name))
            .chain(
                body.config_names()
                    .into_iter()
                    .map(|name| object_key(ObjectKind::Config, name)),
            );
        for key in named {
            let Some(read) = self.inner.kv.get(key.as_bytes()).map_err(internal)? else {
                return Err(ApiError::Invalid(format!(
                    "{key} was removed while the spec was checked; nothing was written: retry"
                )));
            };
            compares.push(Compare {
                key: key.into_bytes(),
                mod_revision: read.mod_revision,
            });
        }
        self.put_service_with(record, mod_revision, compares).await
    }

    pub(super) async fn put_service(
        &self,
        record: &ServiceRecord,
        mod_revision: u64,
    ) -> Result<(), ApiError> {
        self.put_service_with(record, mod_revision, Vec::new())
            .await
    }

    async fn put_service_with(
        &self,
        record: &ServiceRecord,
        mod_revision: u64,
        extra: Vec<Compare>,
    ) -> Result<(), ApiError> {
        let key = records::service_key(&record.spec.metadata.name).into_bytes();
        let mut compares = vec![Compare {
            key: key.clone(),
            mod_revision,
        }];
        compares.extend(extra);
        let mut success = vec![KvOp::Put {
            key,
            value: to_json(record),
        }];
        let name = &record.spec.metadata.name;
        // A port it did not hold: checked again under the ports guard
        // (node/ports.rs), so that two racing claims cannot both pass.
        let what = match self.claim_published_ports(record)? {
            Some(claim) => {
                compares.push(claim.compare);
                success.push(claim.put);
                format!("{name} (or another service's published ports)")
            }
            None => name.clone(),
        };
        let txn = Txn {
            compares,
            success,
            failure: vec![],
        };
        self.write_guarded(txn, &what).await
    }

    async fn write_guarded(&self, txn: Txn, what: &str) -> Result<(), ApiError> {
        let response = self.write(KvRequest::Txn(txn)).await?;
        if response.succeeded {
            Ok(())
        } else {
            Err(ApiError::Invalid(format!(
                "{what} was changed by someone else meanwhile; nothing was written: retry"
            )))
        }
    }

    pub(super) fn service_record(&self, name: &str) -> Result<(ServiceRecord, u64), ApiError> {
        self.record_at(&records::service_key(name), || {
            ApiError::NotFound(format!(
                "service {name:?}; `edgectl get services` lists them"
            ))
        })
    }

    /// The record at `key` in the local replica, with its mod revision, or
    /// `missing()` when there is none.
    pub(super) fn record_at<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        missing: impl FnOnce() -> ApiError,
    ) -> Result<(T, u64), ApiError> {
        let kv = self
            .inner
            .kv
            .get(key.as_bytes())
            .map_err(internal)?
            .ok_or_else(missing)?;
        let record = serde_json::from_slice(&kv.value).map_err(internal)?;
        Ok((record, kv.mod_revision))
    }

    fn service_summaries(&self) -> Result<Vec<ServiceSummary>, ApiError> {
        let services = self.read_records::<ServiceRecord>(records::SERVICES_PREFIX)?;
        let tasks = self.task_views(None)?;
        let endpoints = self.endpoint_views(None)?;
        let vips = self.vips_by_service()?;
        services
            .iter()
            .map(|s| {
                let vip = vips.get(&s.spec.metadata.name).cloned();
                let objects = self.wanted_objects(s)?;
                Ok(summarize(s, &tasks, &endpoints, vip, objects))
            })
            .collect()
    }

    /// The version of each object a service's tasks should hold: its
    /// generation's, or the object's current one where every use follows it
    /// in place (such an update makes no new generation).
    fn wanted_objects(&self, record: &ServiceRecord) -> Result<BTreeMap<String, u64>, ApiError> {
        let body = &record.spec.spec;
        let in_place = |key: &str| match key.split_once('/') {
            Some(("secret", name)) => body.follows_in_place(true, name),
            Some(("config", name)) => body.follows_in_place(false, name),
            _ => false,
        };
        if !record.objects.keys().any(|key| in_place(key)) {
            return Ok(record.objects.clone());
        }
        let current = self.object_versions(&record.spec)?;
        Ok(record
            .objects
            .iter()
            .map(|(key, version)| {
                let wanted = match current.get(key) {
                    Some(now) if in_place(key) => *now,
                    _ => *version,
                };
                (key.clone(), wanted)
            })
            .collect())
    }

    pub(super) fn task_views(&self, service: Option<&str>) -> Result<Vec<TaskView>, ApiError> {
        let statuses: BTreeMap<String, TaskStatus> = self
            .read_records::<TaskStatus>(records::TASK_STATUS_PREFIX)?
            .into_iter()
            .map(|s| (s.task.clone(), s))
            .collect();
        let names = self.member_names();
        let mut views: Vec<TaskView> = self
            .read_records::<TaskRecord>(records::TASKS_PREFIX)?
            .into_iter()
            .filter(|task| service.is_none_or(|s| task.service == s))
            .map(|task| {
                // A status from another node (the task moved) is not this task's.
                let status = statuses.get(&task.id).filter(|s| Some(s.node) == task.node);
                TaskView {
                    node: task
                        .node
                        .map(|id| names.get(&id).cloned().unwrap_or_else(|| id.to_string())),
                    node_id: task.node,
                    state: status.map(|s| s.state.clone()),
                    restarts: status.map_or(0, |s| s.restarts),
                    ip: status.and_then(|s| s.ip.clone()),
                    ready: status.is_some_and(TaskStatus::is_ready),
                    not_ready: status.and_then(|s| s.not_ready.clone()),
                    id: task.id,
                    service: task.service,
                    slot: task.slot,
                    generation: task.generation,
                    desired: task.desired,
                    pending_reason: task.pending_reason,
                    shutdown_reason: task.shutdown_reason,
                    created_unix: task.created_unix,
                    // In-place swaps make no new generation: what the
                    // container holds wins over what its generation began with.
                    objects: {
                        let mut objects = task.objects;
                        if let Some(status) = status {
                            objects.extend(status.objects.clone());
                        }
                        objects
                    },
                }
            })
            .collect();
        views.sort_by(|a, b| (&a.service, a.slot, &a.id).cmp(&(&b.service, b.slot, &b.id)));
        Ok(views)
    }

    fn describe_service(&self, name: &str) -> ApiResult {
        let (record, _) = self.service_record(name)?;
        let tasks = self.task_views(Some(name))?;
        let endpoints = self.endpoint_views(Some(name))?;
        let events: Vec<ServiceEvent> = match self
            .inner
            .kv
            .get(records::service_events_key(name).as_bytes())
            .map_err(internal)?
        {
            Some(kv) => serde_json::from_slice(&kv.value).map_err(internal)?,
            None => Vec::new(),
        };
        Ok(ApiResponse::Service(Box::new(ServiceDescription {
            summary: summarize(
                &record,
                &tasks,
                &endpoints,
                self.vips_by_service()?.remove(name),
                self.wanted_objects(&record)?,
            ),
            spec_yaml: serde_yaml::to_string(&record.spec).map_err(internal)?,
            rollout: match self.rollout_view(name)? {
                ApiResponse::Rollout(view) => Some(view.summary()),
                _ => None,
            },
            tasks,
            events,
            endpoints,
        })))
    }

    pub(super) fn member_names(&self) -> BTreeMap<u64, String> {
        self.metrics()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, peer)| (*id, peer.name.clone()))
            .collect()
    }

    fn node_views(&self) -> Result<Vec<NodeView>, ApiError> {
        let snapshot = self.orchestration_snapshot()?;
        let usages = self.members_table().usages();
        let leader = self.current_leader();
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        Ok(snapshot
            .nodes
            .values()
            .map(|node| {
                let labels = records::effective_labels(node.capacity.as_ref(), &node.settings);
                let capacity = node.capacity.clone().unwrap_or_default();
                let bound: Vec<&TaskRecord> = snapshot
                    .tasks
                    .values()
                    .map(|(t, _)| t)
                    .filter(|t| t.node == Some(node.id) && t.desired == DesiredState::Running)
                    .collect();
                let requests = bound
                    .iter()
                    .fold(crate::scheduler::Resources::default(), |sum, t| {
                        sum.saturating_add(&requested(&t.spec))
                    });
                let usage = usages.get(&node.id).cloned().unwrap_or_default();
                NodeView {
                    id: node.id,
                    name: node.name.clone(),
                    address: membership
                        .get_node(&node.id)
                        .map(|p| p.addr.clone())
                        .unwrap_or_default(),
                    ready: node.alive,
                    leader: leader == Some(node.id),
                    cordoned: node.settings.cordoned,
                    draining: node.settings.draining,
                    labels,
                    cpu_millis: capacity.cpu_millis,
                    memory_bytes: capacity.memory_bytes,
                    cpu_allocated_millis: requests.cpu_millis,
                    memory_allocated_bytes: requests.memory_bytes,
                    tasks: u32::try_from(bound.len()).unwrap_or(u32::MAX),
                    running_containers: usage.running_tasks,
                    memory_used_bytes: usage.memory_used_bytes,
                }
            })
            .collect())
    }

    async fn update_node(&self, node: &str, change: NodeChange) -> ApiResult {
        let names = self.member_names();
        let id = names
            .iter()
            .find(|(id, name)| name.as_str() == node || id.to_string() == node)
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "node {node:?} (by name or id); `edgectl get nodes` lists them"
                ))
            })?;
        let key = records::node_settings_key(id);
        let (mut settings, mod_revision) =
            match self.inner.kv.get(key.as_bytes()).map_err(internal)? {
                Some(kv) => (
                    serde_json::from_slice::<NodeSettings>(&kv.value).map_err(internal)?,
                    kv.mod_revision,
                ),
                None => (NodeSettings::default(), 0),
            };
        match change {
            NodeChange::Label { set, remove } => {
                for (label, value) in &set {
                    check_label(label, value)?;
                }
                for label in &remove {
                    settings.labels.remove(label);
                }
                settings.labels.extend(set);
            }
            NodeChange::Cordon => settings.cordoned = true,
            NodeChange::Uncordon => {
                settings.cordoned = false;
                settings.draining = false;
            }
            NodeChange::Drain => {
                settings.cordoned = true;
                settings.draining = true;
            }
        }
        let txn = Txn {
            compares: vec![Compare {
                key: key.clone().into_bytes(),
                mod_revision,
            }],
            success: vec![KvOp::Put {
                key: key.into_bytes(),
                value: to_json(&settings),
            }],
            failure: vec![],
        };
        self.write_guarded(txn, &format!("node {node}")).await?;
        let view = self
            .node_views()?
            .into_iter()
            .find(|v| v.id == id)
            .ok_or_else(|| ApiError::NotFound(format!("node {node:?} left the cluster")))?;
        Ok(ApiResponse::NodeUpdated(view))
    }

    async fn import_image(&self, path: &str) -> ApiResult {
        let images = crate::images::import_file(&self.images(), std::path::Path::new(path)).await?;
        Ok(ApiResponse::Images(images))
    }

    fn list_images(&self) -> ApiResult {
        Ok(ApiResponse::Images(crate::images::list(&self.inner.kv)?))
    }
}

/// What changed between two specs of one service.
/// Parses and validates a service document on the blocking pool, within
/// [`SpecLimits::PARSE_DEADLINE`]: the node that receives an `apply` calls
/// it before forwarding (a hostile document costs that node, not the
/// leader), and the leader again before it writes. The limits keep a parse
/// to milliseconds; the deadline answers the client even if one does not.
pub(super) async fn parse_service_off_workers(yaml: &str) -> Result<ServiceSpec, ApiError> {
    // The size first, before the text is copied for the blocking task.
    if yaml.len() > SpecLimits::BYTES_MAX {
        return Err(ApiError::Invalid(
            model::SpecError::TooLarge {
                size: yaml.len(),
                max: SpecLimits::BYTES_MAX,
            }
            .to_string(),
        ));
    }
    let text = yaml.to_owned();
    let parse = tokio::task::spawn_blocking(move || model::parse_service(&text));
    match tokio::time::timeout(SpecLimits::PARSE_DEADLINE, parse).await {
        Ok(Ok(parsed)) => parsed.map_err(|e| ApiError::Invalid(e.to_string())),
        Ok(Err(join_error)) => Err(internal(join_error)),
        Err(_) => Err(ApiError::Invalid(format!(
            "the spec was still being parsed after {:?}; simplify it (fewer nodes, less nesting)",
            SpecLimits::PARSE_DEADLINE
        ))),
    }
}

fn classify_change(old: &ServiceSpec, new: &ServiceSpec) -> ApplyChange {
    if old == new {
        return ApplyChange::Unchanged;
    }
    // Neither the replica count nor the rollout settings change what a task
    // runs, so neither makes a new generation.
    let mut same_tasks = old.clone();
    same_tasks.spec.replicas = new.spec.replicas;
    same_tasks.spec.update = new.spec.update;
    same_tasks.spec.rollback = new.spec.rollback;
    same_tasks.spec.revision_history = new.spec.revision_history;
    if same_tasks != *new {
        ApplyChange::Updated
    } else if old.spec.replicas != new.spec.replicas {
        ApplyChange::Scaled
    } else {
        ApplyChange::Reconfigured
    }
}

fn summarize(
    record: &ServiceRecord,
    tasks: &[TaskView],
    endpoints: &[EndpointView],
    vip: Option<String>,
    objects: BTreeMap<String, u64>,
) -> ServiceSummary {
    let name = &record.spec.metadata.name;
    let ready = endpoints
        .iter()
        .filter(|e| e.service == *name && e.ready)
        .count();
    let ready = u32::try_from(ready).unwrap_or(u32::MAX);
    let current = tasks.iter().filter(|t| {
        t.service == *name
            && t.generation == record.generation
            && t.desired == DesiredState::Running
    });
    let (mut running, mut pending) = (0, 0);
    for task in current {
        match (&task.state, task.node_id) {
            (_, None) => pending += 1,
            (Some(TaskState::Running), Some(_)) => running += 1,
            _ => {}
        }
    }
    ServiceSummary {
        name: name.clone(),
        image: record.spec.spec.image.clone(),
        generation: record.generation,
        replicas: record.spec.spec.replicas,
        running,
        pending,
        updated_unix: record.updated_unix,
        vip,
        ready,
        objects_held: objects_held(name, tasks, &objects),
        objects,
    }
}

/// For each object version a service wants, how many of its running
/// tasks (any generation) hold it.
fn objects_held(
    service: &str,
    tasks: &[TaskView],
    wanted: &BTreeMap<String, u64>,
) -> BTreeMap<String, u32> {
    wanted
        .iter()
        .map(|(key, version)| {
            let holding = tasks
                .iter()
                .filter(|t| {
                    t.service == service
                        && t.desired == DesiredState::Running
                        && t.state == Some(TaskState::Running)
                        && t.objects.get(key) == Some(version)
                })
                .count();
            (key.clone(), u32::try_from(holding).unwrap_or(u32::MAX))
        })
        .collect()
}

/// Node labels follow the rule constraints match against.
fn check_label(label: &str, value: &str) -> Result<(), ApiError> {
    if model::service::valid_label_key(label) && model::service::valid_label_value(value) {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "label {label}={value} is not valid: keys are 1-253 of [A-Za-z0-9._/-], values 0-63 of [A-Za-z0-9._-]"
        )))
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    fn spec(replicas: u32, parallelism: u32, image: &str) -> ServiceSpec {
        model::parse_service(&format!(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  image: {image}\n  replicas: {replicas}\n  update: {{parallelism: {parallelism}}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn only_what_a_task_runs_makes_a_new_generation() {
        let old = spec(3, 1, "busybox:1");
        assert_eq!(classify_change(&old, &old), ApplyChange::Unchanged);
        assert_eq!(
            classify_change(&old, &spec(5, 1, "busybox:1")),
            ApplyChange::Scaled
        );
        assert_eq!(
            classify_change(&old, &spec(3, 2, "busybox:1")),
            ApplyChange::Reconfigured
        );
        assert_eq!(
            classify_change(&old, &spec(3, 1, "busybox:2")),
            ApplyChange::Updated
        );
        assert_eq!(
            classify_change(&old, &spec(5, 2, "busybox:2")),
            ApplyChange::Updated
        );
    }
}

#[cfg(test)]
mod hostile_spec_tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Issue 18's bound for refusing a hostile document; the scan takes
    /// microseconds, so this is loose enough for a loaded CI machine.
    const REFUSAL_BOUND: Duration = Duration::from_millis(100);

    async fn refused_quickly(document: &str) -> String {
        let started = Instant::now();
        let refused = parse_service_off_workers(document).await;
        let took = started.elapsed();
        let Err(error) = refused else {
            panic!("a hostile document was accepted")
        };
        assert!(took < REFUSAL_BOUND, "refused after {took:?}");
        error.to_string()
    }

    #[tokio::test]
    async fn deep_nesting_and_alias_bombs_are_refused_at_once_naming_the_limit() {
        // Issue 18's document: ~200 KB of nested flow sequences.
        let nested = format!(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  image: {}\n",
            "[".repeat(200_000)
        );
        let text = refused_quickly(&nested).await;
        assert!(text.contains("SpecLimits::DEPTH_MAX"), "{text}");

        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for (previous, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            let aliases = vec![format!("*{previous}"); 9].join(",");
            bomb.push_str(&format!("{name}: &{name} [{aliases}]\n"));
        }
        let text = refused_quickly(&bomb).await;
        assert!(text.contains("SpecLimits::ALIASES_MAX"), "{text}");
    }
}
