//! The cluster network (issue 12) end to end: the leader gives every node
//! its own block of the pod CIDR, every node routes the other nodes' blocks
//! via their addresses (`routed` mode) or through the kernel's VXLAN device
//! (`vxlan` mode), and a task on one node fetches HTTP from a task on
//! another by its address. Real nodes, one network namespace
//! each; traffic stays inside the namespaces the harness made.

use std::collections::BTreeSet;

use edgectl::api::TaskView;

use super::{
    form_labelled, import_images, node_logs, run_on, run_on_via, running_task, running_task_via,
    EdgeCluster, CONVERGE, PORT,
};
use crate::support::wait_until;

/// `ip route show proto 236`: edgectl's routes (runtime::routes::ROUTE_PROTOCOL).
const ROUTE_PROTOCOL: &str = "236";

/// A cluster of `n` nodes, node `i` labelled `slot=n<i>`, with the busybox
/// and httpd images imported on node 1.
fn network_cluster(prefix: &str, n: usize, flags: &[&str]) -> EdgeCluster {
    let cluster = EdgeCluster::with_flags(prefix, n, flags);
    form_labelled(cluster, n, &[])
}

/// edgectl's routes in node `i`'s namespace, as `ip route` prints them.
fn edgectl_routes(cluster: &EdgeCluster, i: usize) -> BTreeSet<String> {
    cluster
        .net
        .exec_ok(i, ["ip", "route", "show", "proto", ROUTE_PROTOCOL])
        .lines()
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|line| !line.is_empty())
        .collect()
}

/// The /24 an address lies in (the tests use the default /24 blocks).
fn block_of(ip: &str) -> String {
    let octets: Vec<&str> = ip.split('.').collect();
    format!("{}.{}.{}.0/24", octets[0], octets[1], octets[2])
}

/// Fetches the httpd page from inside `client`'s container (under
/// `timeout`: Debian's busybox 1.35 segfaults on `wget -T`).
fn fetch(cluster: &EdgeCluster, client: &TaskView, server_ip: &str) -> Result<String, String> {
    let url = format!("http://{server_ip}:8080/");
    let out = cluster.cli(
        1,
        &[
            "exec",
            client.id.as_str(),
            "--",
            "timeout",
            "5",
            "wget",
            "-q",
            "-O",
            "-",
            &url,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() && !stdout.trim().is_empty() {
        Ok(stdout)
    } else {
        Err(format!(
            "wget {url}: {:?} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

const SLEEP: &str = "  command: [\"sleep\", \"100000\"]\n";

/// The MTU of `eth0` inside `task`'s container, as the container sees it.
fn task_mtu(cluster: &EdgeCluster, task: &TaskView) -> String {
    cluster
        .cli_ok(
            1,
            &[
                "exec",
                task.id.as_str(),
                "--",
                "cat",
                "/sys/class/net/eth0/mtu",
            ],
        )
        .trim()
        .to_string()
}

/// The MTU of link `name` in node `i`'s namespace.
fn link_mtu(cluster: &EdgeCluster, i: usize, name: &str) -> u64 {
    let json = cluster
        .net
        .exec_ok(i, ["ip", "-j", "link", "show", "dev", name]);
    let links: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
    links[0]["mtu"]
        .as_u64()
        .unwrap_or_else(|| panic!("no mtu in {json}"))
}

#[test]
fn a_task_reaches_a_task_on_another_node_also_after_that_node_moves() {
    let mut cluster = network_cluster("nrt", 3, &[]);
    run_on(&cluster, "web", "httpd:latest", 3, "");
    run_on(&cluster, "client", "busybox:latest", 1, SLEEP);
    let web = running_task(&cluster, "web");
    let client = running_task(&cluster, "client");
    let web_ip = web.ip.clone().expect("address");
    let client_ip = client.ip.clone().expect("address");
    assert_ne!(
        block_of(&web_ip),
        block_of(&client_ip),
        "each node has its own block"
    );

    // Node 1 routes node 3's block via node 3's address, and the reverse.
    let via3 = format!("{} via {}", block_of(&web_ip), cluster.net.addr(3));
    let via1 = format!("{} via {}", block_of(&client_ip), cluster.net.addr(1));
    wait_until(CONVERGE, "routes both ways", || {
        let (on1, on3) = (edgectl_routes(&cluster, 1), edgectl_routes(&cluster, 3));
        if on1.contains(&via3) && on3.contains(&via1) {
            Ok(())
        } else {
            Err(format!("node1 {on1:?}, node3 {on3:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    // Three nodes, three distinct blocks: each node routes the two others.
    let blocks: BTreeSet<String> = edgectl_routes(&cluster, 1)
        .into_iter()
        .chain(edgectl_routes(&cluster, 2))
        .filter_map(|route| route.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(blocks.len(), 3, "three distinct blocks: {blocks:?}");

    let page = wait_until(CONVERGE, "the client fetches the page across nodes", || {
        fetch(&cluster, &client, &web_ip)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    assert!(!page.is_empty());
    // Routed mode adds no header: the kernel's MTU stays.
    assert_eq!(task_mtu(&cluster, &client), "1500");

    // Node 3 comes back on a new address (moved.rs): the others route its
    // block there, and its task is reached at the same task address.
    cluster.kill(3);
    let old = cluster.net.addr(3);
    let octets = old.octets();
    let new_ip = format!(
        "{}.{}.{}.{}",
        octets[0],
        octets[1],
        octets[2],
        octets[3] + 100
    );
    cluster.net.exec_ok(
        3,
        ["ip", "addr", "del", &format!("{old}/24"), "dev", "eth0"],
    );
    cluster.net.exec_ok(
        3,
        ["ip", "addr", "add", &format!("{new_ip}/24"), "dev", "eth0"],
    );
    let new_addr = format!("{new_ip}:{PORT}");
    let home = cluster.home_env();
    cluster.net.start(
        3,
        &EdgeCluster::name(3),
        [
            "env",
            home.as_str(),
            env!("CARGO_BIN_EXE_edgectl"),
            "--data-dir",
            cluster.data_dir(3).to_str().expect("utf-8 path"),
            "serve",
            "--listen",
            &new_addr,
            "--advertise",
            &new_addr,
            "--label",
            "slot=n3",
        ],
    );
    let via_new = format!("{} via {new_ip}", block_of(&web_ip));
    wait_until(
        CONVERGE,
        "node 1 routes node 3's block via its new address",
        || {
            let on1 = edgectl_routes(&cluster, 1);
            if on1.contains(&via_new) && !on1.contains(&via3) {
                Ok(())
            } else {
                Err(format!("node1 {on1:?}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    wait_until(
        CONVERGE,
        "the client fetches the page at the moved node",
        || fetch(&cluster, &client, &web_ip),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
}

#[test]
fn a_removed_node_s_block_is_reclaimed_and_its_route_goes() {
    // Four nodes, three voters: the learner, once silent for 3 s, leaves.
    let mut cluster = network_cluster("nrm", 4, &["--remove-after", "3s"]);
    let learner = wait_until(CONVERGE, "a learner", || {
        let nodes = cluster.nodes(1)?;
        nodes
            .iter()
            .find(|n| n.role == edgectl::api::RaftRole::Learner && n.healthy)
            .map(|n| n.name.clone())
            .ok_or_else(|| format!("{nodes:?}"))
    })
    .unwrap();
    let gone: usize = learner.trim_start_matches("node").parse().expect("nodeN");
    let watcher = (1..=4).find(|i| *i != gone).expect("another node");
    // The learner runs a task: its bridge, routes and table are in use.
    run_on(&cluster, "lonely", "busybox:latest", gone, SLEEP);
    running_task(&cluster, "lonely");
    let via_gone = format!(" via {}", cluster.net.addr(gone));
    wait_until(
        CONVERGE,
        "every other node routes the learner's block",
        || {
            let routes = edgectl_routes(&cluster, watcher);
            if routes.len() == 3 && routes.iter().any(|r| r.ends_with(&via_gone)) {
                Ok(())
            } else {
                Err(format!("{routes:?}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));

    cluster.kill(gone);
    wait_until(CONVERGE, "the learner's route is gone", || {
        let routes = edgectl_routes(&cluster, watcher);
        if routes.len() == 2 && !routes.iter().any(|r| r.ends_with(&via_gone)) {
            Ok(())
        } else {
            Err(format!("{routes:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    // Its block record went with it.
    let leader = cluster.leader_index(watcher).expect("a leader");
    let blocks = cluster.cli_ok(leader, &["kv", "ls", "/sys/network/blocks/"]);
    assert_eq!(
        blocks.matches("/sys/network/blocks/").count(),
        3,
        "three blocks left: {blocks}"
    );

    // The learner comes back: the leader tells it it is no longer a
    // member, and it stops its task, removes its network state and exits.
    assert!(!edgectl_routes(&cluster, gone).is_empty(), "left as it was");
    cluster.serve(gone);
    let name = EdgeCluster::name(gone);
    wait_until(CONVERGE, "the removed node exits", || {
        match cluster.net.status(&name) {
            crate::support::ProcessStatus::Running(_) => Err("running".to_string()),
            other => Ok(other),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.net.log(&name)));
    let log = cluster.net.log(&name);
    assert!(log.contains("was removed from cluster"), "{log}");
    assert!(edgectl_routes(&cluster, gone).is_empty(), "no route left");
    assert_eq!(cluster.net.exec_ok(gone, ["nft", "list", "tables"]), "");
    let links = cluster.net.exec_ok(gone, ["ip", "-o", "link", "show"]);
    assert!(!links.contains("edgectl0"), "no bridge left: {links}");
    let containers = cluster.data_dir(gone).join("runtime/containers");
    let left: Vec<_> = std::fs::read_dir(&containers)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name())
                .filter(|name| !name.to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "containers left: {left:?}");
}

#[test]
fn init_refuses_a_bad_vni_and_a_cidr_too_small_for_a_block() {
    let cluster = EdgeCluster::new("nin", 1);
    let dir = cluster.dirs.path().join("refused");
    for (flags, expected) in [
        (
            vec!["--network", "vxlan", "--vxlan-vni", "16777216"],
            "VXLAN network identifier 16777216 is out of range",
        ),
        (
            vec!["--pod-cidr", "10.1.0.0/24", "--node-prefix", "24"],
            "do not fit pod CIDR 10.1.0.0/24",
        ),
        (vec!["--pod-cidr", "10.1.1.0/16"], "host bits set"),
    ] {
        let mut args = vec![
            "--data-dir".to_string(),
            dir.display().to_string(),
            "init".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(flags.iter().map(|s| s.to_string()));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgectl"))
            .env("HOME", cluster.dirs.path())
            .args(&args)
            .output()
            .expect("run edgectl init");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} accepted");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!dir.join("node.json").exists(), "{flags:?} left a data dir");
    }
}

/// edgectl's VXLAN device in node `i`'s namespace, as `ip -d link` shows it.
fn vxlan_device(cluster: &EdgeCluster, i: usize) -> String {
    let out = cluster
        .net
        .exec(i, ["ip", "-d", "link", "show", "edgectl.vx"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn vxlan_a_task_reaches_a_task_on_a_node_behind_a_router() {
    let mut cluster = EdgeCluster::new("nvx", 3);
    // Node 3 on another subnet, reached through a router: a plain route
    // via its address is refused, so only the tunnel can carry the blocks.
    cluster.net.split_by_router(&[3]);
    let refused = cluster.net.exec(
        1,
        [
            "ip",
            "route",
            "add",
            "10.99.0.0/24",
            "via",
            &cluster.net.addr(3).to_string(),
        ],
    );
    assert!(!refused.status.success(), "node 3 is on node 1's segment");
    let cluster = form_labelled(
        cluster,
        3,
        &[
            "--network",
            "vxlan",
            "--vxlan-vni",
            "4242",
            "--vxlan-port",
            "4790",
        ],
    );
    run_on(&cluster, "web", "httpd:latest", 3, "");
    run_on(&cluster, "client", "busybox:latest", 1, SLEEP);
    let web = running_task(&cluster, "web");
    let client = running_task(&cluster, "client");
    let web_ip = web.ip.clone().expect("address");

    // Node 1's tunnel: the recorded VNI and port, its own address as
    // source; node 3's block via node 3's VTEP, whose MAC goes to node 3's
    // address.
    let web_block = block_of(&web_ip);
    let vtep3 = web_block.trim_end_matches("/24").to_string();
    wait_until(CONVERGE, "node 1's tunnel to node 3", || {
        let device = vxlan_device(&cluster, 1);
        let routes = edgectl_routes(&cluster, 1);
        let fdb = cluster
            .net
            .exec_ok(1, ["bridge", "fdb", "show", "dev", "edgectl.vx"]);
        let neighbours = cluster
            .net
            .exec_ok(1, ["ip", "neigh", "show", "dev", "edgectl.vx"]);
        let wanted_device = format!("vxlan id 4242 local {}", cluster.net.addr(1));
        if device.contains(&wanted_device)
            && device.contains("dstport 4790")
            && routes.contains(&format!("{web_block} via {vtep3}"))
            && fdb.contains(&format!("dst {} ", cluster.net.addr(3)))
            && neighbours.contains(&format!("{vtep3} lladdr"))
        {
            Ok(())
        } else {
            Err(format!(
                "device {device}\nroutes {routes:?}\nfdb {fdb}\nneighbours {neighbours}"
            ))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));

    let page = wait_until(
        CONVERGE,
        "the client fetches the page through the tunnel",
        || fetch(&cluster, &client, &web_ip),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    assert!(!page.is_empty());

    // The tunnel takes 50 bytes of the underlay's 1500: the tasks and the
    // bridge use the tunnel's MTU, so no full-size packet needs fragmenting.
    assert_eq!(task_mtu(&cluster, &client), "1450", "inside the container");
    assert_eq!(link_mtu(&cluster, 1, "edgectl.vx"), 1450);
    assert_eq!(link_mtu(&cluster, 1, "edgectl0"), 1450, "the bridge");

    // reset, in node 1's namespace, removes the device and so its entries.
    cluster.kill(1);
    let data_dir = cluster.data_dir(1);
    cluster.net.exec_ok(
        1,
        [
            env!("CARGO_BIN_EXE_edgectl"),
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "reset",
            "--keep-data",
        ],
    );
    assert_eq!(vxlan_device(&cluster, 1), "", "no vxlan device left");
    assert!(edgectl_routes(&cluster, 1).is_empty(), "no route left");
}

/// The VNI of node `i`'s VXLAN device (`vxlan id N` in `ip -d link`).
fn device_vni(cluster: &EdgeCluster, i: usize) -> Result<u32, String> {
    let device = vxlan_device(cluster, i);
    device
        .split_whitespace()
        .skip_while(|word| *word != "id")
        .nth(1)
        .and_then(|vni| vni.parse().ok())
        .ok_or_else(|| format!("no vxlan id in {device:?}"))
}

/// The VTEP of the node holding the /24 block of `ip` (its network
/// address) and that VTEP's MAC (`network::vxlan::vtep_mac`).
fn vtep_of(ip: &str) -> (String, String) {
    let vtep = block_of(ip).trim_end_matches("/24").to_string();
    let octets: Vec<u8> = vtep.split('.').map(|o| o.parse().expect("octet")).collect();
    let mac = format!(
        "0e:ed:{:02x}:{:02x}:{:02x}:{:02x}",
        octets[0], octets[1], octets[2], octets[3]
    );
    (vtep, mac)
}

/// Adds, in node `on`'s namespace, a tunnel path to `block` through
/// edgectl's device towards `underlay`, the way a stray entry would be
/// there (a node address the other cluster now uses): a route (protocol
/// boot, which edgectl's loop leaves alone), a neighbour and a dynamic FDB
/// entry (edgectl's loop removes only permanent ones).
fn stray_tunnel(
    cluster: &EdgeCluster,
    on: usize,
    block: &str,
    vtep: &str,
    mac: &str,
    underlay: &str,
) {
    for command in [
        vec![
            "ip",
            "route",
            "replace",
            block,
            "via",
            vtep,
            "dev",
            "edgectl.vx",
            "onlink",
        ],
        vec![
            "ip",
            "neigh",
            "replace",
            vtep,
            "lladdr",
            mac,
            "dev",
            "edgectl.vx",
            "nud",
            "reachable",
        ],
        vec![
            "bridge",
            "fdb",
            "replace",
            mac,
            "dev",
            "edgectl.vx",
            "dst",
            underlay,
            "dynamic",
        ],
    ] {
        cluster.net.exec_ok(on, command);
    }
}

#[test]
fn two_vxlan_clusters_on_one_link_do_not_see_each_other() {
    // Cluster A: nodes 1 and 2; cluster B: node 3 alone; one bridge. Both
    // vxlan with no VNI given: each derives its own from its cluster id.
    let mut cluster = EdgeCluster::new("ntwo", 3);
    cluster.set_node_flags(1, &["--label", "slot=n1", "--network", "vxlan"]);
    cluster.set_node_flags(2, &["--label", "slot=n2"]);
    cluster.set_node_flags(
        3,
        &[
            "--label",
            "slot=n3",
            "--network",
            "vxlan",
            "--pod-cidr",
            "10.89.0.0/16",
        ],
    );
    cluster.init(1);
    cluster.join(2, 1);
    cluster.init(3);
    import_images(&cluster, 1);
    import_images(&cluster, 3);
    run_on(&cluster, "aclient", "busybox:latest", 1, SLEEP);
    run_on(&cluster, "aweb", "httpd:latest", 2, "");
    run_on_via(&cluster, 3, "bweb", "httpd:latest", 3, "");
    let client = running_task(&cluster, "aclient");
    let a_web = running_task(&cluster, "aweb");
    let b_web = running_task_via(&cluster, 3, "bweb");
    let client_ip = client.ip.clone().expect("address");
    let b_web_ip = b_web.ip.clone().expect("address");

    // Within A the tunnel carries the page.
    wait_until(CONVERGE, "A's client fetches A's web", || {
        fetch(&cluster, &client, a_web.ip.as_deref().expect("address"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let (vni_a, vni_b) = wait_until(CONVERGE, "both devices", || {
        Ok::<_, String>((device_vni(&cluster, 1)?, device_vni(&cluster, 3)?))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(vni_a, vni_b, "two clusters, two VNIs");
    assert_eq!(device_vni(&cluster, 2), Ok(vni_a), "one VNI per cluster");

    // B's task is out of A's reach: A routes none of B's blocks.
    assert!(fetch(&cluster, &client, &b_web_ip).is_err(), "A reached B");

    // Even with a path both ways through the two devices (each cluster
    // holding a stray entry for the other's node), B's kernel drops A's
    // frames: they carry A's VNI, for which B has no device.
    let (vtep_a, mac_a) = vtep_of(&client_ip);
    let (vtep_b, mac_b) = vtep_of(&b_web_ip);
    let node1 = cluster.net.addr(1).to_string();
    let node3 = cluster.net.addr(3).to_string();
    stray_tunnel(&cluster, 1, &block_of(&b_web_ip), &vtep_b, &mac_b, &node3);
    stray_tunnel(&cluster, 3, &block_of(&client_ip), &vtep_a, &mac_a, &node1);
    // `ip -j -s link`: the harness's exec keeps the host's /sys.
    let received = || -> u64 {
        let json = cluster
            .net
            .exec_ok(3, ["ip", "-j", "-s", "link", "show", "dev", "edgectl.vx"]);
        let links: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
        links[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no rx packet count in {json}"))
    };
    let before = received();
    for _ in 0..3 {
        let reached = fetch(&cluster, &client, &b_web_ip);
        assert!(reached.is_err(), "A's task reached B's: {reached:?}");
    }
    assert_eq!(received(), before, "B's device took none of A's frames");
}
