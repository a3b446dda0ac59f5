//! `update:`, `rollback:` and `revisionHistory`: how a new generation of a
//! service replaces the old one, what counts as a failure, and what the
//! controller does then. Defaults are chosen for sites with nobody on hand:
//! a bad update undoes itself.
//!
//! | field | edgectl | Swarm | Nomad |
//! |---|---|---|---|
//! | `parallelism` | 1 | 1 | `max_parallel` 1 |
//! | `delay` | 0s | 0s | `stagger` 30s |
//! | `order` | stop-first | stop-first | (start-first only with canaries) |
//! | `monitor` | 5s | 5s | `min_healthy_time` 10s |
//! | `maxFailureRatio` | 0 | 0 | — |
//! | `progressDeadline` | 5m | — | 10m |
//! | `failureAction` | rollback | pause | `auto_revert` false |

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `update:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdatePolicy {
    /// Tasks replaced at once: under `stop-first`, replicas out of service
    /// at most during a rollout (default 1).
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    /// Wait between one batch being ready and the next starting.
    #[serde(default, with = "super::codec::humantime_serde_duration")]
    pub delay: Duration,
    /// `stop-first` (default): an old task stops, then its new one starts;
    /// `start-first`: the new one is ready before the old one stops, so
    /// capacity never drops (it needs room for both, and a published
    /// `host` port cannot be held twice on one node).
    #[serde(default)]
    pub order: UpdateOrder,
    /// How long a new task must stay ready before it counts as healthy; a
    /// failure within it fails the rollout.
    #[serde(
        default = "default_monitor",
        with = "super::codec::humantime_serde_duration"
    )]
    pub monitor: Duration,
    /// The share of a generation's tasks that may fail before the
    /// rollout does (default 0: the first failure).
    #[serde(default)]
    pub max_failure_ratio: FailureRatio,
    /// A new task not ready this long after it was created has failed.
    #[serde(
        default = "default_progress_deadline",
        with = "super::codec::humantime_serde_duration"
    )]
    pub progress_deadline: Duration,
    /// What a failed rollout does: `rollback` (default) to the last stable
    /// generation, `pause` where it stands, or `continue`.
    #[serde(default)]
    pub failure_action: FailureAction,
    /// Tasks of a new generation started first, beside every old one; the
    /// rollout waits until they have stayed ready through `monitor`, then
    /// goes on once promoted (default 0: no canary). A failing canary
    /// fails the rollout, and nothing else has changed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub canary: u32,
    /// Promote healthy canaries without `edgectl rollout promote`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_promote: bool,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// `rollback:`: how an automatic rollback (or `rollout undo`) replaces
/// the failed generation's tasks. A rollback that fails pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackPolicy {
    /// Tasks replaced at once (default 0: all at once; only tasks of the
    /// failed generation are replaced, and those are not serving).
    #[serde(default)]
    pub parallelism: u32,
    #[serde(default, with = "super::codec::humantime_serde_duration")]
    pub delay: Duration,
    #[serde(default)]
    pub order: UpdateOrder,
    #[serde(
        default = "default_monitor",
        with = "super::codec::humantime_serde_duration"
    )]
    pub monitor: Duration,
}

/// `update.order` / `rollback.order`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// `update.failureAction`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Rollback,
    Pause,
    Continue,
}

/// A ratio in [0, 1], kept in thousandths so that specs compare exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct FailureRatio(u16);

impl FailureRatio {
    pub fn per_mille(self) -> u16 {
        self.0
    }

    /// Whether `failed` of `total` tasks is more than this ratio allows.
    pub fn exceeded(self, failed: u32, total: u32) -> bool {
        u64::from(failed) * 1000 > u64::from(self.0) * u64::from(total.max(1))
    }
}

impl TryFrom<f64> for FailureRatio {
    type Error = String;

    fn try_from(value: f64) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&value) {
            return Err(format!(
                "maxFailureRatio {value} is out of range; expected 0 to 1 (e.g. 0.2)"
            ));
        }
        // In range, so the product fits.
        Ok(FailureRatio((value * 1000.0).round() as u16))
    }
}

impl From<FailureRatio> for f64 {
    fn from(ratio: FailureRatio) -> f64 {
        f64::from(ratio.0) / 1000.0
    }
}

fn default_parallelism() -> u32 {
    1
}

fn default_monitor() -> Duration {
    Duration::from_secs(5)
}

fn default_progress_deadline() -> Duration {
    Duration::from_secs(5 * 60)
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            parallelism: default_parallelism(),
            delay: Duration::ZERO,
            order: UpdateOrder::default(),
            monitor: default_monitor(),
            max_failure_ratio: FailureRatio::default(),
            progress_deadline: default_progress_deadline(),
            failure_action: FailureAction::default(),
            canary: 0,
            auto_promote: false,
        }
    }
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        RollbackPolicy {
            parallelism: 0,
            delay: Duration::ZERO,
            order: UpdateOrder::default(),
            monitor: default_monitor(),
        }
    }
}

/// `revisionHistory`'s default: generations kept for `rollout history`
/// and `rollout undo --to-revision`.
pub const REVISION_HISTORY_DEFAULT: u32 = 10;
/// The most generations a service keeps.
pub const REVISION_HISTORY_MAX: u32 = 100;
/// The longest `delay`, `monitor` and `progressDeadline`.
pub const ROLLOUT_DURATION_MAX: Duration = Duration::from_secs(60 * 60);

pub(super) fn default_revision_history() -> u32 {
    REVISION_HISTORY_DEFAULT
}
