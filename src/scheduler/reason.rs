//! Why a task stays pending: every node is counted under the first check it
//! failed, in the order an operator would fix things (node state, labels,
//! volumes, ports, then capacity), so that `edgectl` can print e.g.
//! "0/5 nodes fit: 3 insufficient memory (needs 512Mi, most free 256Mi),
//! 1 cordoned, 1 lacks label zone=north".

use std::collections::BTreeMap;
use std::fmt;

/// How a constraint compares a node label with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConstraintOp {
    /// The node must carry the label with exactly this value.
    Equal,
    /// The node must not carry the label with this value (a node without the
    /// label satisfies it).
    NotEqual,
}

/// A hard constraint on node labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Constraint {
    /// Label key, e.g. `zone`.
    pub label: String,
    /// Comparison.
    pub op: ConstraintOp,
    /// Label value, e.g. `north`.
    pub value: String,
}

impl Constraint {
    /// `label == value`.
    pub fn equal(label: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            op: ConstraintOp::Equal,
            value: value.into(),
        }
    }

    /// `label != value`.
    pub fn not_equal(label: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            op: ConstraintOp::NotEqual,
            value: value.into(),
        }
    }

    /// True when a node with these labels satisfies the constraint.
    pub fn is_met_by(&self, labels: &BTreeMap<String, String>) -> bool {
        let has_value = labels.get(&self.label).is_some_and(|v| *v == self.value);
        match self.op {
            ConstraintOp::Equal => has_value,
            ConstraintOp::NotEqual => !has_value,
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            ConstraintOp::Equal => write!(f, "{}={}", self.label, self.value),
            ConstraintOp::NotEqual => write!(f, "{}!={}", self.label, self.value),
        }
    }
}

/// The first check a node failed for one task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeFilter {
    /// The node is not ready.
    NotReady,
    /// The node is cordoned.
    Cordoned,
    /// The node does not satisfy this constraint of the task.
    ConstraintUnmet {
        /// The unmet constraint.
        constraint: Constraint,
    },
    /// The node lacks the local volume the task needs.
    VolumeMissing {
        /// The volume's name.
        volume: String,
    },
    /// A host port the task binds is already in use on the node.
    HostPortInUse {
        /// The first conflicting port.
        port: u16,
    },
    /// Not enough free CPU.
    InsufficientCpu {
        /// What the task requests.
        needed_millis: u64,
        /// The most free CPU among the nodes counted here.
        most_free_millis: u64,
    },
    /// Enough CPU but not enough free memory.
    InsufficientMemory {
        /// What the task requests.
        needed_bytes: u64,
        /// The most free memory among the nodes counted here.
        most_free_bytes: u64,
    },
}

/// How many nodes failed with one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterCount {
    /// Number of nodes.
    pub nodes: usize,
    /// What they failed.
    pub filter: NodeFilter,
}

/// Why a task fits on none of the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReason {
    /// Nodes in the snapshot.
    pub nodes_total: usize,
    /// Nodes per first failed check, most nodes first (ties in check order).
    /// The counts add up to `nodes_total`.
    pub filters: Vec<FilterCount>,
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes fit: ", self.nodes_total)?;
        if self.filters.is_empty() {
            return f.write_str("the cluster has no nodes");
        }
        for (i, count) in self.filters.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", count.nodes, count.filter)?;
        }
        Ok(())
    }
}

impl fmt::Display for NodeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeFilter::NotReady => f.write_str("not ready"),
            NodeFilter::Cordoned => f.write_str("cordoned"),
            NodeFilter::ConstraintUnmet { constraint } => match constraint.op {
                ConstraintOp::Equal => write!(f, "lacks label {constraint}"),
                ConstraintOp::NotEqual => write!(
                    f,
                    "has label {}={} (wanted {constraint})",
                    constraint.label, constraint.value
                ),
            },
            NodeFilter::VolumeMissing { volume } => write!(f, "lacks volume {volume}"),
            NodeFilter::HostPortInUse { port } => write!(f, "host port {port} in use"),
            NodeFilter::InsufficientCpu {
                needed_millis,
                most_free_millis,
            } => write!(
                f,
                "insufficient cpu (needs {}, most free {})",
                format_cpu(*needed_millis),
                format_cpu(*most_free_millis)
            ),
            NodeFilter::InsufficientMemory {
                needed_bytes,
                most_free_bytes,
            } => write!(
                f,
                "insufficient memory (needs {}, most free {})",
                format_bytes(*needed_bytes),
                format_bytes(*most_free_bytes)
            ),
        }
    }
}

/// CPU as Kubernetes-style millis ("500m"), or whole cores ("2").
pub fn format_cpu(millis: u64) -> String {
    if millis > 0 && millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

/// Memory in binary units, rounded down ("512Mi", "8Gi", "1536Mi", "100B").
pub fn format_bytes(bytes: u64) -> String {
    const KI: u64 = 1024;
    const MI: u64 = 1024 * KI;
    const GI: u64 = 1024 * MI;
    if bytes >= GI && bytes.is_multiple_of(GI) {
        format!("{}Gi", bytes / GI)
    } else if bytes >= MI {
        format!("{}Mi", bytes / MI)
    } else if bytes >= KI {
        format!("{}Ki", bytes / KI)
    } else {
        format!("{bytes}B")
    }
}
