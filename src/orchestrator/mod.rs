//! The orchestrator's objects (services, tasks, node settings and status) and
//! the pure decisions the leader makes over them.
//!
//! - [`records`]: what sits in the replicated store, and under which keys.
//! - [`reconcile`]: the controller's decision: from a snapshot of services,
//!   tasks, statuses and node liveness to the task changes to write.

//! - [`revisions`]: the generations a service keeps, and what changed.
//! - [`rollout`]: one service's rollout: which generation to deploy, how
//!   many tasks to replace now, what failed, when to roll back.
//! - [`volume_binding`]: which node holds each local volume, and the
//!   record to write when a volume's first task is placed.

pub mod reconcile;
pub mod records;
pub mod revisions;
pub mod rollout;
pub mod volume_binding;
