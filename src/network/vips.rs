//! The leader's service VIP allocator: which virtual address each service
//! answers on. Pure: the leader's IO edge (`node::vips`) reads the services
//! and the recorded VIPs, calls [`plan_vips`], and writes the plan in one
//! CAS-guarded transaction (one writer of `/sys/network/vips/`).
//!
//! Rules, in order:
//! - a VIP recorded for a service that no longer exists is reclaimed;
//! - a recorded VIP outside the service CIDR, on its network or broadcast
//!   address, or held by an earlier service, is reclaimed and its service
//!   gets a new one (only a corrupt or hand-edited store has one);
//! - a service without a VIP gets the first free usable address from a
//!   start derived from its name: a service deleted and created again
//!   usually gets its old address back, and clients that cached it (or a
//!   firewall rule an operator wrote) keep working;
//! - when no address is free, the service is told why ([`VipError`]).
//!
//! A VIP is stable for the service's life: nothing here moves a valid one.

use std::collections::{BTreeMap, BTreeSet};

use core::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use super::cidr::Ipv4Cidr;

/// Why a service has no VIP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VipError {
    #[error(
        "service CIDR {service_cidr} is full: all {usable} addresses are held by other \
         services (remove a service, or make a new cluster with a larger --service-cidr)"
    )]
    CidrFull { service_cidr: Ipv4Cidr, usable: u64 },
}

/// What the allocator sees.
#[derive(Clone, Debug)]
pub struct VipInput<'a> {
    pub service_cidr: Ipv4Cidr,
    /// Every service that exists now.
    pub services: &'a BTreeSet<String>,
    /// The VIPs recorded now, by service.
    pub recorded: &'a BTreeMap<String, Ipv4Addr>,
}

/// What to write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipPlan {
    /// New VIPs, by service.
    pub assign: BTreeMap<String, Ipv4Addr>,
    /// Services whose recorded VIP is deleted (and not replaced by `assign`).
    pub reclaim: BTreeSet<String>,
    /// Services left without a VIP, and why.
    pub unassigned: BTreeMap<String, VipError>,
}

impl VipPlan {
    /// Whether applying the plan changes nothing that is stored.
    pub fn changes_nothing(&self) -> bool {
        self.assign.is_empty() && self.reclaim.is_empty()
    }
}

/// The addresses of `cidr` a VIP may take: all but the network and
/// broadcast addresses (a /31 or /32 has none to spare and holds none).
fn usable_range(cidr: &Ipv4Cidr) -> (u64, u64) {
    let count = cidr.address_count();
    if count < 4 {
        return (1, 1);
    }
    (1, count - 1)
}

/// Where a service's search for a free address starts: a stable hash of
/// its name (not std's hasher, whose output may change between releases).
fn start_offset(service: &str, usable: u64) -> u64 {
    let digest = Sha256::digest(service.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % usable.max(1)
}

/// Decides the VIPs. Deterministic: the same input gives the same plan.
pub fn plan_vips(input: &VipInput<'_>) -> VipPlan {
    let cidr = input.service_cidr;
    let (first, end) = usable_range(&cidr);
    let usable = end - first;
    let mut plan = VipPlan::default();
    let mut taken: BTreeSet<u64> = BTreeSet::new();
    let mut needing: Vec<&String> = Vec::new();

    for (service, address) in input.recorded {
        if !input.services.contains(service) {
            plan.reclaim.insert(service.clone());
            continue;
        }
        let valid = cidr
            .address_index(*address)
            .filter(|index| (first..end).contains(index))
            .filter(|index| taken.insert(*index));
        if valid.is_none() {
            plan.reclaim.insert(service.clone());
            needing.push(service);
        }
    }
    for service in input.services {
        if !input.recorded.contains_key(service) {
            needing.push(service);
        }
    }
    needing.sort();
    for service in needing {
        let start = start_offset(service, usable);
        let free = (0..usable)
            .map(|step| first + (start + step) % usable)
            .find(|index| !taken.contains(index));
        match free.and_then(|index| cidr.address(index).map(|address| (index, address))) {
            Some((index, address)) => {
                taken.insert(index);
                plan.reclaim.remove(service);
                plan.assign.insert(service.clone(), address);
            }
            None => {
                plan.unassigned.insert(
                    service.clone(),
                    VipError::CidrFull {
                        service_cidr: cidr,
                        usable,
                    },
                );
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests;
