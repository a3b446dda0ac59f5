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
         \t\tct status dnat ip daddr 10.88.0.0/16 ip daddr != 10.88.1.0/24 masquerade\n\
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
    assert!(
        nat_ruleset(&no_block).contains("\t\tct status dnat ip daddr 10.88.0.0/16 masquerade\n")
    );
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
