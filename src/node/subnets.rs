//! The leader's IO edge of `network::allocator`: reads the members (Raft
//! membership), the recorded blocks and the blocks nodes ask to keep, plans
//! with `network::plan_blocks`, and writes the plan in one transaction
//! guarded by the allocation record's mod revision (one writer of
//! `/sys/network/`; a pass computed from a stale view writes nothing). Runs
//! in the controller's loop, after its reconcile pass.

use std::collections::{BTreeMap, BTreeSet};

use raft::{Compare, KvOp, KvRequest, Txn};
use tracing::{debug, info, warn};

use super::Node;
use crate::api::ApiError;
use crate::cluster::keys;
use crate::cluster::records::{to_json, AllocationRecord, ClusterRecord, NodeBlockRecord};
use crate::network::{legacy_node_block, plan_blocks, AllocationInput, Ipv4Cidr};
use crate::orchestrator::records::{NodeCapacity, NODE_CAPACITY_PREFIX};

impl Node {
    /// One allocation pass. Returns whether it wrote.
    pub(super) async fn assign_blocks_once(&self) -> Result<bool, ApiError> {
        let Some(cluster_kv) = self
            .inner
            .kv
            .get(keys::CLUSTER.as_bytes())
            .map_err(super::api::internal)?
        else {
            // Not bootstrapped yet.
            return Ok(false);
        };
        let cluster: ClusterRecord =
            serde_json::from_slice(&cluster_kv.value).map_err(super::api::internal)?;
        let network = cluster.network();
        let guard_revision = self
            .inner
            .kv
            .get(keys::BLOCK_ALLOCATION.as_bytes())
            .map_err(super::api::internal)?;
        let previous: AllocationRecord = guard_revision
            .as_ref()
            .and_then(|kv| serde_json::from_slice(&kv.value).ok())
            .unwrap_or_default();
        let guard_revision = guard_revision.map_or(0, |kv| kv.mod_revision);

        let recorded: BTreeMap<u64, Ipv4Cidr> = self
            .read_node_records::<NodeBlockRecord>(keys::NODE_BLOCKS_PREFIX)?
            .into_iter()
            .map(|(node, record)| (node, record.block))
            .collect();
        let members: BTreeSet<u64> = self.member_ids();
        let wanted = self.blocks_nodes_ask_for(&members, cluster.network.is_none())?;
        let plan = plan_blocks(&AllocationInput {
            network: &network,
            members: &members,
            recorded: &recorded,
            wanted: &wanted,
        });
        let unassigned: BTreeMap<u64, String> = plan
            .unassigned
            .iter()
            .map(|(node, error)| (*node, error.to_string()))
            .collect();
        if plan.changes_nothing() && unassigned == previous.unassigned {
            return Ok(false);
        }

        let mut success = Vec::new();
        for node in &plan.reclaim {
            success.push(KvOp::Delete {
                key: keys::node_block(*node).into_bytes(),
            });
        }
        for (node, block) in &plan.assign {
            success.push(KvOp::Put {
                key: keys::node_block(*node).into_bytes(),
                value: to_json(&NodeBlockRecord {
                    node: *node,
                    block: *block,
                }),
            });
        }
        success.push(KvOp::Put {
            key: keys::BLOCK_ALLOCATION.into(),
            value: to_json(&AllocationRecord {
                unassigned: unassigned.clone(),
            }),
        });
        let txn = Txn {
            compares: vec![Compare {
                key: keys::BLOCK_ALLOCATION.as_bytes().to_vec(),
                mod_revision: guard_revision,
            }],
            success,
            failure: vec![],
        };
        let response = self.write(KvRequest::Txn(txn)).await?;
        if !response.succeeded {
            debug!("block allocation lost a race; retrying on the next pass");
            return Ok(false);
        }
        for (node, block) in &plan.assign {
            info!(node, %block, "node block assigned");
        }
        for node in &plan.reclaim {
            info!(node, "node block reclaimed");
        }
        for (node, reason) in &unassigned {
            warn!(node, "no block for node: {reason}");
        }
        Ok(true)
    }

    /// The block each member asks to keep: the subnet its bridge serves
    /// (published with its capacity), else, in a cluster made before blocks
    /// were assigned, the block it derived from its id back then.
    fn blocks_nodes_ask_for(
        &self,
        members: &BTreeSet<u64>,
        legacy_cluster: bool,
    ) -> Result<BTreeMap<u64, Ipv4Cidr>, ApiError> {
        let capacities = self.read_node_records::<NodeCapacity>(NODE_CAPACITY_PREFIX)?;
        Ok(members
            .iter()
            .filter_map(|node| {
                let in_use = capacities
                    .get(node)
                    .and_then(|capacity| capacity.bridge_subnet.as_deref())
                    .and_then(|subnet| subnet.parse::<Ipv4Cidr>().ok());
                let block = in_use.or(legacy_cluster.then(|| legacy_node_block(*node)))?;
                Some((*node, block))
            })
            .collect())
    }
}
