//! What `get endpoints`, `get services` and `describe service` show of a
//! service's traffic: its VIP and each of its tasks that runs or is meant
//! to, ready or not and why. Read from the replica as the nftables table
//! and DNS read it (`TaskStatus::is_ready`, desired Running, the status of
//! the node the task is bound to).

use std::collections::BTreeMap;

use super::Node;
use crate::api::{ApiError, EndpointView};
use crate::cluster::keys;
use crate::cluster::records::ServiceVipRecord;
use crate::orchestrator::records::{
    DesiredState, TaskRecord, TaskState, TaskStatus, TASKS_PREFIX, TASK_STATUS_PREFIX,
};

impl Node {
    /// Every service's VIP, by service.
    pub(super) fn vips_by_service(&self) -> Result<BTreeMap<String, String>, ApiError> {
        Ok(self
            .read_keyed_records::<ServiceVipRecord>(keys::SERVICE_VIPS_PREFIX)?
            .into_iter()
            .map(|(name, record)| (name, record.vip.to_string()))
            .collect())
    }

    /// The endpoints of one service, or of all; ordered by service, task.
    pub(super) fn endpoint_views(
        &self,
        service: Option<&str>,
    ) -> Result<Vec<EndpointView>, ApiError> {
        let vips = self.vips_by_service()?;
        let statuses: BTreeMap<String, TaskStatus> = self
            .read_records::<TaskStatus>(TASK_STATUS_PREFIX)?
            .into_iter()
            .map(|status| (status.task.clone(), status))
            .collect();
        let names = self.member_names();
        let mut views: Vec<EndpointView> = self
            .read_records::<TaskRecord>(TASKS_PREFIX)?
            .into_iter()
            .filter(|task| service.is_none_or(|name| task.service == name))
            .filter(|task| task.desired == DesiredState::Running)
            .map(|task| {
                let status = statuses
                    .get(&task.id)
                    .filter(|status| Some(status.node) == task.node);
                let ready = status.is_some_and(TaskStatus::is_ready);
                EndpointView {
                    vip: vips.get(&task.service).cloned(),
                    node: task
                        .node
                        .map(|id| names.get(&id).cloned().unwrap_or_else(|| id.to_string())),
                    address: status.and_then(|status| status.ip.clone()),
                    ready,
                    reason: (!ready).then(|| not_ready_reason(&task, status)),
                    service: task.service,
                    task: task.id,
                }
            })
            .collect();
        views.sort_by(|a, b| (&a.service, &a.task).cmp(&(&b.service, &b.task)));
        Ok(views)
    }
}

/// Why a task meant to run takes no traffic.
fn not_ready_reason(task: &TaskRecord, status: Option<&TaskStatus>) -> String {
    let Some(status) = status else {
        return match task.node {
            None => task
                .pending_reason
                .clone()
                .unwrap_or_else(|| "not placed yet".into()),
            Some(_) => "its node has not reported it yet".into(),
        };
    };
    if let Some(reason) = &status.not_ready {
        return reason.clone();
    }
    match &status.state {
        TaskState::Running => "running".into(),
        TaskState::Pending { reason } => format!("pending: {reason}"),
        TaskState::Failed { reason } => format!("failed: {reason}"),
        TaskState::Exited { code } => format!("exited with code {code}"),
        state => state.name().into(),
    }
}
