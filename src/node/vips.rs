//! The leader's IO edge of `network::vips`: reads the services and the
//! recorded VIPs, plans with `network::plan_vips`, and writes the plan in
//! one transaction guarded by the VIP allocation record's mod revision (one
//! writer of `/sys/network/vips/`; a pass computed from a stale view writes
//! nothing). Runs in the controller's loop, after its reconcile pass, so a
//! new service has its VIP one pass after `apply`.

use std::collections::{BTreeMap, BTreeSet};

use core::net::Ipv4Addr;

use raft::{Compare, KvOp, KvRequest, Txn};
use tracing::{debug, info, warn};

use super::Node;
use crate::api::ApiError;
use crate::cluster::keys;
use crate::cluster::records::{to_json, ClusterRecord, ServiceVipRecord, VipAllocationRecord};
use crate::network::{plan_vips, VipInput};
use crate::orchestrator::records::{ServiceRecord, SERVICES_PREFIX};

impl Node {
    /// One VIP allocation pass. Returns whether it wrote.
    pub(super) async fn assign_vips_once(&self) -> Result<bool, ApiError> {
        let Some(cluster_kv) = self
            .inner
            .kv
            .get(keys::CLUSTER.as_bytes())
            .map_err(super::api::internal)?
        else {
            return Ok(false);
        };
        let cluster: ClusterRecord =
            serde_json::from_slice(&cluster_kv.value).map_err(super::api::internal)?;
        let guard = self
            .inner
            .kv
            .get(keys::VIP_ALLOCATION.as_bytes())
            .map_err(super::api::internal)?;
        let previous: VipAllocationRecord = guard
            .as_ref()
            .and_then(|kv| serde_json::from_slice(&kv.value).ok())
            .unwrap_or_default();
        let guard_revision = guard.map_or(0, |kv| kv.mod_revision);

        let services: BTreeSet<String> = self
            .read_keyed_records::<ServiceRecord>(SERVICES_PREFIX)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let recorded: BTreeMap<String, Ipv4Addr> = self
            .read_keyed_records::<ServiceVipRecord>(keys::SERVICE_VIPS_PREFIX)?
            .into_iter()
            .map(|(name, record)| (name, record.vip))
            .collect();
        let plan = plan_vips(&VipInput {
            service_cidr: cluster.network().service_cidr,
            services: &services,
            recorded: &recorded,
        });
        let unassigned: BTreeMap<String, String> = plan
            .unassigned
            .iter()
            .map(|(service, error)| (service.clone(), error.to_string()))
            .collect();
        if plan.changes_nothing() && unassigned == previous.unassigned {
            return Ok(false);
        }

        let mut success = Vec::new();
        for service in &plan.reclaim {
            success.push(KvOp::Delete {
                key: keys::service_vip(service).into_bytes(),
            });
        }
        for (service, vip) in &plan.assign {
            success.push(KvOp::Put {
                key: keys::service_vip(service).into_bytes(),
                value: to_json(&ServiceVipRecord {
                    service: service.clone(),
                    vip: *vip,
                }),
            });
        }
        success.push(KvOp::Put {
            key: keys::VIP_ALLOCATION.into(),
            value: to_json(&VipAllocationRecord {
                unassigned: unassigned.clone(),
            }),
        });
        let txn = Txn {
            compares: vec![Compare {
                key: keys::VIP_ALLOCATION.as_bytes().to_vec(),
                mod_revision: guard_revision,
            }],
            success,
            failure: vec![],
        };
        let response = self.write(KvRequest::Txn(txn)).await?;
        if !response.succeeded {
            debug!("VIP allocation lost a race; retrying on the next pass");
            return Ok(false);
        }
        for (service, vip) in &plan.assign {
            info!(service, %vip, "service VIP assigned");
        }
        for service in &plan.reclaim {
            info!(service, "service VIP reclaimed");
        }
        for (service, reason) in &unassigned {
            warn!(service, "no VIP for service: {reason}");
        }
        Ok(true)
    }
}
