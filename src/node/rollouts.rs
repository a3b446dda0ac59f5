//! The rollout verbs of the API (`edgectl rollout status|history|undo|
//! pause|resume`), on the leader. The rollout itself is the controller's
//! (`orchestrator::rollout`); these read its record, and change only the
//! service record (a new generation for `undo`, `paused`/`resumes`).

use super::Node;
use crate::api::{
    ApiError, ApiResponse, ApiResult, ApplyChange, ApplyOutcome, RevisionView, RolloutView,
};
use crate::clock::now_unix;
use crate::orchestrator::records::{
    rollout_key, DesiredState, RolloutRecord, RolloutState, ServiceRecord,
};
use crate::orchestrator::revisions;

impl Node {
    /// The controller's record of `name`'s rollout; None before its first
    /// pass over the service.
    fn rollout_record(&self, name: &str) -> Result<Option<RolloutRecord>, ApiError> {
        match self
            .record_at::<RolloutRecord>(&rollout_key(name), || ApiError::NotFound(String::new()))
        {
            Ok((record, _)) => Ok(Some(record)),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    pub(super) fn rollout_view(&self, name: &str) -> ApiResult {
        let (service, _) = self.service_record(name)?;
        let record = self.rollout_record(name)?;
        let tasks = self.task_views(Some(name))?;
        let target = record.as_ref().map_or(service.generation, |r| r.target);
        let wanted = tasks
            .iter()
            .filter(|t| t.desired == DesiredState::Running && t.slot < service.spec.spec.replicas);
        let (mut updated, mut ready, mut old) = (0, 0, 0);
        for task in wanted {
            if task.generation == target {
                updated += 1;
                ready += u32::from(task.ready);
            } else {
                old += 1;
            }
        }
        Ok(ApiResponse::Rollout(Box::new(RolloutView {
            service: name.to_string(),
            generation: service.generation,
            target,
            // Before the controller's first pass: starting.
            state: record
                .as_ref()
                .map_or(RolloutState::Progressing, |r| r.state.clone()),
            stable: record.as_ref().and_then(|r| r.stable),
            replicas: service.spec.spec.replicas,
            updated,
            ready,
            old,
            paused: service.paused,
            awaiting_promotion: record.as_ref().is_some_and(|r| {
                r.state == RolloutState::Canary
                    && !service.spec.spec.update.auto_promote
                    && r.promotes == service.promotes
            }),
            started_unix: record
                .as_ref()
                .map_or(service.updated_unix, |r| r.started_unix),
            updated_unix: record
                .as_ref()
                .map_or(service.updated_unix, |r| r.updated_unix),
        })))
    }

    pub(super) fn rollout_history(&self, name: &str) -> ApiResult {
        let (service, _) = self.service_record(name)?;
        let record = self.rollout_record(name)?;
        let mut revisions: Vec<RevisionView> = service
            .revisions
            .iter()
            .map(|revision| RevisionView {
                generation: revision.generation,
                created_unix: revision.created_unix,
                change: revision.change.clone(),
                outcome: outcome(revision.generation, &service, record.as_ref()),
            })
            .collect();
        if revisions.is_empty() {
            revisions.push(RevisionView {
                generation: service.generation,
                created_unix: service.updated_unix,
                change: "(recorded before revisions were kept)".to_string(),
                outcome: outcome(service.generation, &service, record.as_ref()),
            });
        }
        Ok(ApiResponse::Revisions(revisions))
    }

    /// A new generation with the spec of `to_revision` (default: the
    /// generation before the current one), today's replica count and
    /// rollout settings.
    pub(super) async fn undo_rollout(&self, name: &str, to_revision: Option<u64>) -> ApiResult {
        let (service, mod_revision) = self.service_record(name)?;
        let kept: Vec<u64> = service.revisions.iter().map(|r| r.generation).collect();
        let goal = match to_revision {
            Some(generation) => generation,
            None => match kept.iter().rev().find(|g| **g < service.generation) {
                Some(generation) => *generation,
                None if service.previous.is_some() => service.generation.saturating_sub(1),
                None => {
                    return Err(ApiError::Invalid(format!(
                        "service {name} has no earlier generation to go back to: it was never \
                         updated"
                    )))
                }
            },
        };
        if goal == service.generation {
            return Err(ApiError::Invalid(format!(
                "generation {goal} is the current one of service {name}; `edgectl rollout \
                 history {name}` lists the others"
            )));
        }
        // Records from before revisions were kept hold one step back.
        let spec = service
            .spec_of(goal)
            .or_else(|| {
                (goal + 1 == service.generation)
                    .then(|| service.previous.clone())
                    .flatten()
            })
            .ok_or_else(|| {
                ApiError::Invalid(format!(
                    "generation {goal} of service {name} is not kept (kept: {kept:?}); \
                     `edgectl rollout history {name}` lists them"
                ))
            })?;
        let mut spec = spec;
        spec.spec.replicas = service.spec.spec.replicas;
        spec.spec.update = service.spec.spec.update;
        spec.spec.rollback = service.spec.spec.rollback;
        spec.spec.revision_history = service.spec.spec.revision_history;
        self.check_published_ports(&spec)?;
        let now = now_unix();
        let mut undone = ServiceRecord {
            objects: self.object_versions(&spec)?,
            generation: service.generation + 1,
            updated_unix: now,
            previous: Some(service.spec.clone()),
            spec,
            ..service.clone()
        };
        let before = (service.generation, &service.spec, service.updated_unix);
        revisions::push_revision(
            &mut undone,
            Some(before),
            format!("undo to generation {goal}"),
            now,
        );
        self.put_service_naming_objects(&undone, mod_revision)
            .await?;
        Ok(ApiResponse::Applied(ApplyOutcome {
            name: name.to_string(),
            generation: undone.generation,
            replicas: undone.spec.spec.replicas,
            change: ApplyChange::Updated,
        }))
    }

    pub(super) async fn promote_rollout(&self, name: &str) -> ApiResult {
        let (mut service, mod_revision) = self.service_record(name)?;
        let state = self.rollout_record(name)?.map(|r| r.state);
        if state != Some(RolloutState::Canary) {
            let now = state.map_or("not started yet", |s| s.name());
            return Err(ApiError::Invalid(format!(
                "the rollout of {name} has no canary to promote (it is {now}); `update.canary` \
                 in the spec starts one"
            )));
        }
        service.promotes += 1;
        service.updated_unix = now_unix();
        self.put_service(&service, mod_revision).await?;
        self.rollout_view(name)
    }

    pub(super) async fn pause_rollout(&self, name: &str, pause: bool) -> ApiResult {
        let (mut service, mod_revision) = self.service_record(name)?;
        let paused_by_controller = matches!(
            self.rollout_record(name)?.map(|r| r.state),
            Some(RolloutState::Paused { .. })
        );
        let changed = if pause {
            !std::mem::replace(&mut service.paused, true)
        } else {
            let was_paused = std::mem::replace(&mut service.paused, false);
            if paused_by_controller {
                service.resumes += 1;
            }
            was_paused || paused_by_controller
        };
        if changed {
            service.updated_unix = now_unix();
            self.put_service(&service, mod_revision).await?;
        }
        self.rollout_view(name)
    }
}

/// What became of one generation, as `rollout history` says it.
fn outcome(generation: u64, service: &ServiceRecord, record: Option<&RolloutRecord>) -> String {
    let Some(record) = record else {
        return if generation == service.generation {
            "deploying".to_string()
        } else {
            String::new()
        };
    };
    if let Some(reason) = record.failed.get(&generation) {
        return format!("failed: {reason}");
    }
    let deployed = generation == record.target;
    match (&record.state, deployed) {
        (RolloutState::Complete, true) => "deployed, stable".to_string(),
        (RolloutState::RolledBack { from, .. }, true) => {
            format!("deployed, stable (rolled back to from {from})")
        }
        (RolloutState::RollingBack { from, .. }, true) => {
            format!("rolling back to it from {from}")
        }
        (RolloutState::Paused { reason }, true) => format!("paused: {reason}"),
        (RolloutState::Progressing, true) => "rolling out".to_string(),
        _ if record.stable == Some(generation) => "stable".to_string(),
        _ => String::new(),
    }
}
