use super::*;
use crate::model::Publish;

fn port(container: u16, protocol: Protocol) -> Port {
    Port {
        container,
        host: None,
        protocol,
        publish: Publish::default(),
    }
}

fn endpoint(service: &str, last: u8) -> TaskEndpoint {
    TaskEndpoint {
        service: service.to_string(),
        node: 1,
        address: Ipv4Addr::new(10, 42, 0, last),
        ports: Vec::new(),
    }
}

fn snapshot() -> DnsSnapshot {
    DnsSnapshot::build(
        "Edgectl.Internal.",
        &[
            DnsServiceInput {
                name: "web".into(),
                ports: vec![port(8080, Protocol::Tcp), port(53, Protocol::Udp)],
                vip: Some(Ipv4Addr::new(10, 96, 0, 10)),
            },
            DnsServiceInput {
                name: "pending".into(),
                ports: vec![port(80, Protocol::Tcp)],
                vip: None,
            },
        ],
        &[
            endpoint("web", 3),
            endpoint("web", 1),
            endpoint("web", 2),
            // A service whose spec is gone: its task is not answered for.
            endpoint("gone", 9),
        ],
    )
}

fn a_records(answer: &DnsAnswer) -> Vec<Ipv4Addr> {
    match answer {
        DnsAnswer::Found { answers, .. } => answers
            .iter()
            .filter_map(|record| match record.data {
                RecordData::A(address) => Some(address),
                RecordData::Srv { .. } => None,
            })
            .collect(),
        other => panic!("expected records, got {other:?}"),
    }
}

#[test]
fn a_service_name_answers_its_vip_short_or_qualified_in_any_case() {
    let snapshot = snapshot();
    for name in [
        "web",
        "web.",
        "web.edgectl.internal",
        "WEB.Edgectl.Internal.",
    ] {
        let answer = answer(&snapshot, name, QueryType::A, 7);
        assert_eq!(
            a_records(&answer),
            vec![Ipv4Addr::new(10, 96, 0, 10)],
            "{name}"
        );
        let DnsAnswer::Found { answers, .. } = answer else {
            unreachable!()
        };
        assert_eq!(answers[0].ttl, VIP_TTL_SECS);
        assert_eq!(answers[0].name, name.trim_end_matches('.').to_lowercase());
    }
}

#[test]
fn tasks_name_lists_exactly_the_ready_tasks_with_a_short_ttl() {
    let snapshot = snapshot();
    for name in ["tasks.web", "tasks.web.edgectl.internal"] {
        let answer = answer(&snapshot, name, QueryType::A, 42);
        let mut addresses = a_records(&answer);
        addresses.sort();
        assert_eq!(
            addresses,
            vec![
                Ipv4Addr::new(10, 42, 0, 1),
                Ipv4Addr::new(10, 42, 0, 2),
                Ipv4Addr::new(10, 42, 0, 3)
            ]
        );
        let DnsAnswer::Found { answers, .. } = answer else {
            unreachable!()
        };
        assert!(answers.iter().all(|r| r.ttl == TASKS_TTL_SECS));
    }
}

#[test]
fn tasks_are_shuffled_per_query_and_every_task_comes_first_sometimes() {
    let snapshot = snapshot();
    let firsts: std::collections::BTreeSet<Ipv4Addr> = (0..64u64)
        .map(|seed| a_records(&answer(&snapshot, "tasks.web", QueryType::A, seed))[0])
        .collect();
    assert_eq!(firsts.len(), 3, "first addresses seen: {firsts:?}");
    // The same seed gives the same order: the function is pure.
    assert_eq!(
        answer(&snapshot, "tasks.web", QueryType::A, 5),
        answer(&snapshot, "tasks.web", QueryType::A, 5)
    );
}

#[test]
fn a_service_with_no_ready_task_has_an_empty_tasks_answer_not_nxdomain() {
    let snapshot = snapshot();
    assert_eq!(
        a_records(&answer(&snapshot, "tasks.pending", QueryType::A, 1)),
        Vec::<Ipv4Addr>::new()
    );
}

#[test]
fn a_service_without_a_vip_yet_exists_with_no_a_record() {
    let snapshot = snapshot();
    assert_eq!(
        a_records(&answer(&snapshot, "pending", QueryType::A, 1)),
        Vec::<Ipv4Addr>::new()
    );
}

#[test]
fn other_types_of_a_known_name_get_nodata_so_parallel_aaaa_does_not_fail_the_name() {
    let snapshot = snapshot();
    for name in ["web", "tasks.web", "web.edgectl.internal"] {
        assert_eq!(
            answer(&snapshot, name, QueryType::Other, 1),
            DnsAnswer::Found {
                answers: vec![],
                additionals: vec![]
            },
            "{name}"
        );
    }
}

#[test]
fn unknown_names_inside_the_domain_are_nxdomain() {
    let snapshot = snapshot();
    for name in [
        "nope.edgectl.internal",
        "tasks.nope.edgectl.internal",
        "a.b.c.d.edgectl.internal",
        "_9999._tcp.web.edgectl.internal",
        "_8080._sctp.web.edgectl.internal",
        "_53._tcp.web.edgectl.internal",
    ] {
        assert_eq!(
            answer(&snapshot, name, QueryType::A, 1),
            DnsAnswer::NxDomain,
            "{name}"
        );
    }
}

#[test]
fn the_domain_itself_exists() {
    let snapshot = snapshot();
    assert_eq!(
        a_records(&answer(&snapshot, "edgectl.internal.", QueryType::A, 1)),
        Vec::<Ipv4Addr>::new()
    );
}

#[test]
fn names_outside_the_domain_that_name_no_service_are_forwarded() {
    let snapshot = snapshot();
    for name in [
        "example.test",
        "nope",
        "tasks.nope",
        "www.example.test.",
        // A look-alike suffix is not the domain.
        "web.notedgectl.internal",
    ] {
        assert_eq!(
            answer(&snapshot, name, QueryType::A, 1),
            DnsAnswer::Forward,
            "{name}"
        );
    }
}

#[test]
fn srv_of_a_declared_port_targets_the_service_with_its_vip_as_additional() {
    let snapshot = snapshot();
    for (name, number) in [
        ("_8080._tcp.web.edgectl.internal", 8080),
        ("_53._udp.web", 53),
    ] {
        let answer = answer(&snapshot, name, QueryType::Srv, 1);
        let DnsAnswer::Found {
            answers,
            additionals,
        } = answer
        else {
            panic!("{name}: {answer:?}")
        };
        assert_eq!(
            answers,
            vec![DnsRecord {
                name: name.to_string(),
                ttl: VIP_TTL_SECS,
                data: RecordData::Srv {
                    priority: 0,
                    weight: 0,
                    port: number,
                    target: "web.edgectl.internal".into()
                }
            }]
        );
        assert_eq!(
            additionals,
            vec![DnsRecord {
                name: "web.edgectl.internal".into(),
                ttl: VIP_TTL_SECS,
                data: RecordData::A(Ipv4Addr::new(10, 96, 0, 10))
            }]
        );
    }
    // The A type of an SRV name: the name exists, no address.
    assert_eq!(
        a_records(&answer(&snapshot, "_8080._tcp.web", QueryType::A, 1)),
        Vec::<Ipv4Addr>::new()
    );
    // No VIP yet: the name exists, no target to give.
    assert_eq!(
        answer(&snapshot, "_80._tcp.pending", QueryType::Srv, 1),
        DnsAnswer::Found {
            answers: vec![],
            additionals: vec![]
        }
    );
}

#[test]
fn the_snapshot_follows_readiness() {
    let mut ready = vec![endpoint("web", 1), endpoint("web", 2)];
    let services = [DnsServiceInput {
        name: "web".into(),
        ports: vec![],
        vip: None,
    }];
    let before = DnsSnapshot::build(CLUSTER_DOMAIN, &services, &ready);
    ready.retain(|task| task.address != Ipv4Addr::new(10, 42, 0, 1));
    let after = DnsSnapshot::build(CLUSTER_DOMAIN, &services, &ready);
    assert_eq!(
        a_records(&answer(&before, "tasks.web", QueryType::A, 3)).len(),
        2
    );
    assert_eq!(
        a_records(&answer(&after, "tasks.web", QueryType::A, 3)),
        vec![Ipv4Addr::new(10, 42, 0, 2)]
    );
}

#[test]
fn resolv_conf_gives_its_nameservers_in_order() {
    let text = "# generated\nsearch example.org\nnameserver 192.0.2.53\n  nameserver   2001:db8::1 # v6\n;nameserver 198.51.100.1\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\n";
    assert_eq!(
        resolv_conf_nameservers(text),
        vec![
            "192.0.2.53".parse::<IpAddr>().unwrap(),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        ]
    );
}
