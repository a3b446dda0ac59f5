//! Published ports under concurrency. `check_published_ports` (in
//! `orchestration.rs`) reads the other services and refuses a clash, but
//! two applies racing on different services could each pass it against a
//! view without the other. Here a write that claims a port it did not hold
//! takes a CAS guard: it reads `keys::PUBLISHED_PORTS_GUARD`'s mod
//! revision *before* checking against the services, compares it in the
//! same transaction as the service record, and rewrites it. Compares are
//! evaluated when the log entry is applied, in log order: of two racing
//! claims the first bumps the guard and the second writes nothing, however
//! stale the replica each was checked on. A retry then sees the first
//! service and is refused with the clash.

use raft::{Compare, KvOp};

use super::Node;
use crate::api::ApiError;
use crate::cluster::keys;
use crate::cluster::records::to_json;
use crate::orchestrator::records::{self, ServiceRecord};

/// What a service write adds to its transaction to hold its ports.
pub(super) struct PortClaim {
    pub compare: Compare,
    pub put: KvOp,
}

impl Node {
    /// The guard for writing `record`, checked against the services as
    /// they are now; None when the write claims no port it did not hold.
    pub(super) fn claim_published_ports(
        &self,
        record: &ServiceRecord,
    ) -> Result<Option<PortClaim>, ApiError> {
        let name = &record.spec.metadata.name;
        let ports = &record.spec.spec.ports;
        let held = match self
            .inner
            .kv
            .get(records::service_key(name).as_bytes())
            .map_err(|e| ApiError::Internal(e.to_string()))?
        {
            Some(kv) => serde_json::from_slice::<ServiceRecord>(&kv.value)
                .map(|old| old.spec.spec.ports)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        if !crate::network::adds_published_ports(ports, &held) {
            return Ok(None);
        }
        // The guard first: a claim that lands between this read and the
        // check below bumps it, and this write then fails.
        let guard_revision = self
            .inner
            .kv
            .get(keys::PUBLISHED_PORTS_GUARD.as_bytes())
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_or(0, |kv| kv.mod_revision);
        self.check_published_ports(&record.spec)?;
        Ok(Some(PortClaim {
            compare: Compare {
                key: keys::PUBLISHED_PORTS_GUARD.as_bytes().to_vec(),
                mod_revision: guard_revision,
            },
            put: KvOp::Put {
                key: keys::PUBLISHED_PORTS_GUARD.as_bytes().to_vec(),
                value: to_json(&serde_json::json!({ "lastClaim": name })),
            },
        }))
    }
}
