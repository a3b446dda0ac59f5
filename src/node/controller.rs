//! The leader's orchestration loop (IO edge of `orchestrator::reconcile`).

use super::Node;

impl Node {
    pub(super) async fn controller_loop(self) {}
}
