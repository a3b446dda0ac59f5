use std::collections::{BTreeMap, BTreeSet};

use core::net::Ipv4Addr;

use super::*;

fn cidr(text: &str) -> Ipv4Cidr {
    text.parse().expect("test CIDR")
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| name.to_string()).collect()
}

fn plan(service_cidr: &str, services: &[&str], recorded: &[(&str, [u8; 4])]) -> VipPlan {
    let services = names(services);
    let recorded: BTreeMap<String, Ipv4Addr> = recorded
        .iter()
        .map(|(name, octets)| (name.to_string(), Ipv4Addr::from(*octets)))
        .collect();
    plan_vips(&VipInput {
        service_cidr: cidr(service_cidr),
        services: &services,
        recorded: &recorded,
    })
}

#[test]
fn every_new_service_gets_a_distinct_usable_address_of_the_cidr() {
    let services: Vec<String> = (0..200).map(|i| format!("svc-{i}")).collect();
    let refs: Vec<&str> = services.iter().map(String::as_str).collect();
    let plan = plan("10.96.0.0/24", &refs, &[]);
    assert_eq!(plan.assign.len(), 200);
    assert!(plan.unassigned.is_empty());
    let addresses: BTreeSet<Ipv4Addr> = plan.assign.values().copied().collect();
    assert_eq!(addresses.len(), 200, "two services share a VIP");
    for address in addresses {
        assert_eq!(address.octets()[..3], [10, 96, 0]);
        assert_ne!(address.octets()[3], 0, "network address handed out");
        assert_ne!(address.octets()[3], 255, "broadcast address handed out");
    }
}

#[test]
fn a_recorded_vip_is_kept_and_nothing_is_written() {
    let first = plan("10.96.0.0/16", &["web"], &[]);
    let vip = first.assign["web"].octets();
    let again = plan("10.96.0.0/16", &["web", "db"], &[("web", vip)]);
    assert!(!again.assign.contains_key("web"));
    assert!(again.assign.contains_key("db"));
    let settled = plan("10.96.0.0/16", &["web"], &[("web", vip)]);
    assert!(settled.changes_nothing());
}

#[test]
fn a_service_created_again_gets_its_old_address_back() {
    let first = plan("10.96.0.0/16", &["web"], &[]);
    let deleted = plan(
        "10.96.0.0/16",
        &[],
        &[("web", first.assign["web"].octets())],
    );
    assert_eq!(deleted.reclaim, names(&["web"]));
    let again = plan("10.96.0.0/16", &["web"], &[]);
    assert_eq!(again.assign["web"], first.assign["web"]);
}

#[test]
fn invalid_or_duplicate_records_are_replaced() {
    let plan = plan(
        "10.96.0.0/24",
        &["a", "b", "c", "d"],
        &[
            ("a", [10, 96, 0, 7]),
            ("b", [10, 96, 0, 7]),   // held by a
            ("c", [10, 97, 0, 7]),   // outside
            ("d", [10, 96, 0, 255]), // broadcast
        ],
    );
    assert!(!plan.assign.contains_key("a"));
    for name in ["b", "c", "d"] {
        let address = plan.assign[name];
        assert_ne!(address, Ipv4Addr::new(10, 96, 0, 7));
        assert_eq!(address.octets()[..3], [10, 96, 0]);
    }
    assert!(
        plan.reclaim.is_empty(),
        "replaced records are rewritten, not deleted"
    );
}

#[test]
fn a_full_cidr_says_so_and_keeps_existing_vips() {
    // A /30 holds two usable addresses.
    let plan = plan(
        "10.96.0.0/30",
        &["a", "b", "c"],
        &[("a", [10, 96, 0, 1]), ("b", [10, 96, 0, 2])],
    );
    assert!(plan.assign.is_empty());
    let error = plan.unassigned["c"].to_string();
    assert!(error.contains("10.96.0.0/30 is full"), "{error}");
    assert!(error.contains("--service-cidr"), "{error}");
}

#[test]
fn the_plan_is_deterministic() {
    let services = ["x", "y", "z"];
    assert_eq!(
        plan("10.96.0.0/28", &services, &[]),
        plan("10.96.0.0/28", &services, &[])
    );
}
