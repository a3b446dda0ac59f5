//! What `edgectl volume ...` sends and gets back.

use serde::{Deserialize, Serialize};

/// One line of `edgectl volume ls`, and `volume inspect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeView {
    pub name: String,
    /// `local`.
    pub driver: String,
    /// The size limit (None: the node's disk).
    pub size_bytes: Option<u64>,
    /// Bytes in use, as the holding node last reported (sized volumes).
    pub used_bytes: Option<u64>,
    /// The node holding it (None until its first task is placed).
    pub node: Option<String>,
    /// Whether that node is up, as the leader sees it.
    pub node_up: Option<bool>,
    /// Services whose spec names it.
    pub used_by: Vec<String>,
    /// Tasks placed with it (desired running).
    pub tasks: Vec<String>,
    pub created_unix: u64,
    /// `volume create`, or the service whose spec first named it.
    pub created_by: String,
    /// What is lost with the holding device, in words.
    pub durability: String,
    /// Where a move under way stands, in words (None: not moving).
    #[serde(default)]
    pub moving: Option<String>,
}
