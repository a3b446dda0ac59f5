//! The orchestrator's objects (services, tasks, node settings and status) and
//! the pure decisions the leader makes over them.
//!
//! - [`records`]: what sits in the replicated store, and under which keys.
//! - [`reconcile`]: the controller's decision: from a snapshot of services,
//!   tasks, statuses and node liveness to the task changes to write.

pub mod reconcile;
pub mod records;
