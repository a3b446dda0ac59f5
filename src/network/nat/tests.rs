use super::*;

fn port(container: u16, host: u16, publish: Publish) -> Port {
    Port {
        container,
        host: Some(host),
        protocol: Protocol::Tcp,
        publish,
    }
}

fn task(service: &str, node: NodeId, address: &str, ports: Vec<Port>) -> TaskEndpoint {
    TaskEndpoint {
        service: service.to_string(),
        node,
        address: address.parse().unwrap(),
        ports,
    }
}

fn view(me: NodeId, tasks: Vec<TaskEndpoint>) -> NatView {
    NatView {
        me,
        pod_cidr: "10.88.0.0/16".parse().unwrap(),
        own_block: Some(format!("10.88.{me}.0/24").parse().unwrap()),
        tasks,
        services: vec![],
    }
}

/// The DNAT rules of the prerouting chain (the output chain has the same).
fn check(view: &NatView, expected_dnat: &[&str]) {
    let text = nat_ruleset(view);
    let prerouting: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.contains("chain prerouting"))
        .skip(2)
        .take_while(|line| line.trim() != "}")
        .map(str::trim)
        .collect();
    assert_eq!(prerouting, expected_dnat, "{text}");
    let output_rules = text
        .lines()
        .skip_while(|line| !line.contains("chain output"))
        .skip(2)
        .take_while(|line| line.trim() != "}")
        .count();
    assert_eq!(output_rules, expected_dnat.len(), "{text}");
}

#[test]
fn the_whole_table_is_replaced_in_one_transaction() {
    let text = nat_ruleset(&view(1, vec![]));
    assert_eq!(
        text,
        "table ip edgectl\n\
         delete table ip edgectl\n\
         table ip edgectl {\n\
         \tchain prerouting {\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t}\n\
         \tchain output {\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t}\n\
         \tchain postrouting {\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tct status dnat ip saddr 10.88.1.0/24 ip daddr 10.88.1.0/24 masquerade\n\
         \t\tct status dnat ip saddr != 10.88.0.0/16 ip daddr 10.88.0.0/16 ip daddr != 10.88.1.0/24 masquerade\n\
         \t\tip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 masquerade\n\
         \t}\n\
         }\n"
    );
}

#[test]
fn host_ports_only_for_this_node_s_tasks() {
    let tasks = vec![
        task("web", 1, "10.88.1.2", vec![port(8080, 80, Publish::Host)]),
        task("web", 2, "10.88.2.2", vec![port(8080, 80, Publish::Host)]),
        task(
            "db",
            1,
            "10.88.1.3",
            vec![Port {
                host: None,
                ..port(5432, 1, Publish::Host)
            }],
        ),
    ];
    check(
        &view(1, tasks.clone()),
        &["fib daddr type local tcp dport 80 dnat to 10.88.1.2:8080"],
    );
    check(
        &view(2, tasks.clone()),
        &["fib daddr type local tcp dport 80 dnat to 10.88.2.2:8080"],
    );
    check(&view(3, tasks), &[]);
}

#[test]
fn cluster_ports_on_every_node_to_every_task() {
    let tasks = vec![
        task(
            "web",
            2,
            "10.88.2.2",
            vec![port(8080, 9000, Publish::Cluster)],
        ),
        task(
            "web",
            1,
            "10.88.1.2",
            vec![port(8080, 9000, Publish::Cluster)],
        ),
        task(
            "dns",
            2,
            "10.88.2.3",
            vec![Port {
                protocol: Protocol::Udp,
                ..port(53, 53, Publish::Cluster)
            }],
        ),
    ];
    let expected = [
        "fib daddr type local tcp dport 9000 dnat to numgen random mod 2 map \
         { 0 : 10.88.1.2, 1 : 10.88.2.2 }:8080",
        "fib daddr type local udp dport 53 dnat to 10.88.2.3:53",
    ];
    for me in [1, 2, 3] {
        check(&view(me, tasks.clone()), &expected);
    }
}

#[test]
fn remote_targets_are_masqueraded_even_without_a_block() {
    let mut no_block = view(4, vec![]);
    no_block.own_block = None;
    assert!(nat_ruleset(&no_block).contains(
        "\t\tct status dnat ip saddr != 10.88.0.0/16 ip daddr 10.88.0.0/16 masquerade\n"
    ));
}

#[test]
fn the_same_view_gives_the_same_text() {
    let a = task(
        "web",
        1,
        "10.88.1.2",
        vec![port(8080, 9000, Publish::Cluster)],
    );
    let b = task(
        "web",
        2,
        "10.88.2.2",
        vec![port(8080, 9000, Publish::Cluster)],
    );
    assert_eq!(
        nat_ruleset(&view(1, vec![a.clone(), b.clone()])),
        nat_ruleset(&view(1, vec![b, a]))
    );
}

fn others(ports: &[Port]) -> [(&'static str, &[Port]); 1] {
    [("other", ports)]
}

#[test]
fn a_cluster_port_holds_its_number_against_every_other_service() {
    let cluster = [port(8080, 9000, Publish::Cluster)];
    let host = [port(8080, 9000, Publish::Host)];
    let other_host = [port(8080, 9001, Publish::Host)];
    let udp = [Port {
        protocol: Protocol::Udp,
        ..port(8080, 9000, Publish::Host)
    }];
    assert!(check_published_ports("web", &cluster, others(&host)).is_err());
    assert!(check_published_ports("web", &host, others(&cluster)).is_err());
    assert!(check_published_ports("web", &cluster, others(&cluster)).is_err());
    assert_eq!(
        check_published_ports("web", &host, others(&host)),
        Ok(()),
        "host ports are kept apart by the scheduler"
    );
    assert_eq!(
        check_published_ports("web", &cluster, others(&other_host)),
        Ok(())
    );
    assert_eq!(check_published_ports("web", &cluster, others(&udp)), Ok(()));
    assert_eq!(
        check_published_ports("web", &cluster, [("web", &host[..])]),
        Ok(()),
        "a service's own earlier spec is replaced"
    );
    let message = check_published_ports("web", &cluster, others(&host))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("tcp port 9000 is already published by service other (publish: host)"),
        "{message}"
    );
}

fn vip(name: &str, address: &str, ports: Vec<Port>, affinity: Option<u64>) -> ServiceVip {
    ServiceVip {
        name: name.to_string(),
        vip: address.parse().unwrap(),
        ports,
        affinity_timeout_secs: affinity,
    }
}

fn container_port(container: u16, protocol: Protocol) -> Port {
    Port {
        container,
        host: None,
        protocol,
        publish: Publish::Host,
    }
}

/// The lines of chain `name`, trimmed, without its `type` line.
fn chain(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| line.trim() != format!("chain {name} {{"))
        .skip(1)
        .take_while(|line| line.trim() != "}")
        .map(|line| line.trim().to_string())
        .filter(|line| !line.starts_with("type "))
        .collect()
}

#[test]
fn a_vip_balances_over_the_ready_tasks_of_its_service_only() {
    let mut view = view(
        1,
        vec![
            task("web", 2, "10.88.2.5", vec![]),
            task("web", 3, "10.88.3.7", vec![]),
            task("db", 3, "10.88.3.9", vec![]),
        ],
    );
    view.services = vec![
        vip("db", "10.96.0.9", vec![], None),
        vip(
            "web",
            "10.96.0.5",
            vec![container_port(8080, Protocol::Tcp)],
            None,
        ),
    ];
    let text = nat_ruleset(&view);
    assert_eq!(
        chain(&text, "prerouting"),
        [
            "ip daddr 10.96.0.9 meta l4proto { tcp, udp } goto svc_0",
            "ip daddr 10.96.0.5 tcp dport { 8080 } goto svc_1",
        ],
        "{text}"
    );
    assert_eq!(chain(&text, "output"), chain(&text, "prerouting"));
    assert_eq!(
        chain(&text, "svc_1"),
        [
            "comment \"web\"",
            "dnat to numgen random mod 2 map { 0 : 10.88.2.5, 1 : 10.88.3.7 }",
        ]
    );
    assert_eq!(
        chain(&text, "svc_0"),
        ["comment \"db\"", "dnat to 10.88.3.9"]
    );
    assert!(!text.contains("affinity"), "{text}");
    assert!(!text.contains("reject"), "{text}");
}

#[test]
fn a_vip_with_no_ready_task_refuses_at_once() {
    let mut view = view(1, vec![]);
    view.services = vec![vip(
        "web",
        "10.96.0.5",
        vec![
            container_port(8080, Protocol::Tcp),
            container_port(53, Protocol::Udp),
        ],
        None,
    )];
    let text = nat_ruleset(&view);
    assert!(chain(&text, "prerouting").is_empty(), "{text}");
    assert!(!text.contains("chain svc_0"), "{text}");
    let refuse = chain(&text, "refuse_prerouting");
    assert_eq!(
        refuse,
        [
            "ip daddr 10.96.0.5 tcp dport { 8080 } meta l4proto tcp reject with tcp reset",
            "ip daddr 10.96.0.5 tcp dport { 8080 } reject",
            "ip daddr 10.96.0.5 udp dport { 53 } meta l4proto tcp reject with tcp reset",
            "ip daddr 10.96.0.5 udp dport { 53 } reject",
        ],
        "{text}"
    );
    assert_eq!(chain(&text, "refuse_output"), refuse);
}

#[test]
fn client_affinity_remembers_each_client_s_task_for_the_timeout() {
    let mut view = view(
        1,
        vec![
            task("web", 2, "10.88.2.5", vec![]),
            task("web", 3, "10.88.3.7", vec![]),
        ],
    );
    view.services = vec![vip("web", "10.96.0.5", vec![], Some(600))];
    let text = nat_ruleset(&view);
    assert!(
        text.contains("\tmap svc_0_affinity {\n\t\ttype ipv4_addr : ipv4_addr;\n\t\tflags dynamic, timeout;\n\t\ttimeout 600s;\n\t}\n"),
        "{text}"
    );
    assert_eq!(
        chain(&text, "svc_0"),
        [
            "comment \"web\"",
            "ip saddr @svc_0_affinity dnat to ip saddr map @svc_0_affinity",
            "dnat to numgen random mod 2 map { 0 : 10.88.2.5, 1 : 10.88.3.7 }",
        ]
    );
    let remember = [
        "ct state new ct status dnat ct original ip daddr 10.96.0.5 update @svc_0_affinity { ip saddr timeout 600s : ip daddr }",
    ];
    assert_eq!(chain(&text, "affinity_prerouting"), remember, "{text}");
    assert_eq!(chain(&text, "affinity_output"), remember, "{text}");
}

#[test]
fn only_a_port_not_held_before_needs_the_guard() {
    let cluster = port(8080, 9000, Publish::Cluster);
    let host = port(8080, 9000, Publish::Host);
    let unpublished = Port {
        host: None,
        ..port(8080, 9000, Publish::Host)
    };
    assert!(adds_published_ports(&[cluster], &[]), "a new service");
    assert!(!adds_published_ports(&[cluster], &[cluster]), "kept");
    assert!(!adds_published_ports(&[], &[cluster]), "dropped");
    assert!(!adds_published_ports(&[unpublished], &[]), "not published");
    assert!(
        adds_published_ports(&[cluster], &[host]),
        "host to cluster claims the number on every node"
    );
    let udp = Port {
        protocol: Protocol::Udp,
        ..cluster
    };
    assert!(adds_published_ports(&[udp], &[cluster]), "another protocol");
    assert!(
        !adds_published_ports(
            &[Port {
                container: 80,
                ..cluster
            }],
            &[cluster]
        ),
        "another container port behind the same node port"
    );
}
