//! Published ports and outbound traffic (issue 12, deliverables 3-5) end
//! to end: a client in a namespace outside the cluster (a veth of our own
//! on the harness's bridge) reaches a `publish: host` port on the task's
//! node and a `publish: cluster` port on every node; a task reaches a
//! server in that namespace, which sees the node's address; a restarted
//! node rebuilds the same nftables table, and `reset` leaves no table,
//! route, bridge or veth. Traffic only goes into namespaces the test made.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{form_labelled, node_logs, run_on, running_task, EdgeCluster, CONVERGE};
use crate::support::wait_until;

/// The last octet of the outside namespace's address on the harness's
/// bridge (nodes are .1 to .N).
const OUTSIDE_HOST_OCTET: u8 = 200;
/// The port of the outside namespace's HTTP server.
const OUTSIDE_PORT: u16 = 9000;

/// A namespace outside the cluster, linked to the harness's bridge by a
/// veth, with an HTTP server that logs its clients' addresses. Deleted
/// (with its veth and server) on drop, also when the test fails.
struct OutsideHost {
    netns: String,
    address: String,
    server: Option<Child>,
    server_log: PathBuf,
    _www: tempfile::TempDir,
}

impl OutsideHost {
    fn new(cluster: &EdgeCluster) -> OutsideHost {
        let prefix = cluster.net.prefix().to_string();
        let node_octets = cluster.net.addr(1).octets();
        let www = tempfile::Builder::new()
            .prefix(&format!("edgectl-it-{prefix}-www-"))
            .tempdir()
            .expect("temp dir");
        std::fs::write(www.path().join("index.html"), "outside\n").expect("write page");
        let mut host = OutsideHost {
            netns: format!("{prefix}-out"),
            address: format!(
                "{}.{}.{}.{OUTSIDE_HOST_OCTET}",
                node_octets[0], node_octets[1], node_octets[2]
            ),
            server: None,
            server_log: www.path().join("server.log"),
            _www: www,
        };
        let bridge_netns = format!("{prefix}-br");
        let netns = host.netns.clone();
        let address = format!("{}/24", host.address);
        // An earlier run's namespace of the same name goes first.
        let _ = run(&["ip", "netns", "del", &netns]);
        for step in [
            vec!["ip", "netns", "add", &netns],
            vec![
                "ip",
                "-n",
                &netns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "out0",
                "netns",
                &bridge_netns,
            ],
            vec![
                "ip",
                "-n",
                &bridge_netns,
                "link",
                "set",
                "out0",
                "master",
                "br0",
                "up",
            ],
            vec!["ip", "-n", &netns, "addr", "add", &address, "dev", "eth0"],
            vec!["ip", "-n", &netns, "link", "set", "eth0", "up"],
            vec!["ip", "-n", &netns, "link", "set", "lo", "up"],
        ] {
            run(&step).unwrap_or_else(|e| panic!("{e}"));
        }
        let log = std::fs::File::create(&host.server_log).expect("server log");
        let listen = format!("{}:{OUTSIDE_PORT}", host.address);
        let server = Command::new("ip")
            .args(["netns", "exec", &netns, "busybox", "httpd", "-f", "-vv"])
            .args(["-p", &listen, "-h"])
            .arg(host._www.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the outside server");
        host.server = Some(server);
        host
    }

    /// `curl` from this namespace; the body on success.
    fn fetch(&self, url: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns, "curl", "-sS", "-m", "3", url])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "curl {url}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The client addresses the server logged (`ADDRESS:PORT: url:/`).
    fn clients_seen(&self) -> Vec<String> {
        std::fs::read_to_string(&self.server_log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("url:"))
            .filter_map(|line| line.split(':').next().map(str::to_owned))
            .collect()
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        // The veth goes with the namespace.
        if let Err(e) = run(&["ip", "netns", "del", &self.netns]) {
            eprintln!("{e}");
        }
    }
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// busybox httpd logging each client's address to the task's log.
const LOGGING_HTTPD: &str =
    "  command: [\"httpd\", \"-f\", \"-vv\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// A task's log, both streams (httpd logs its clients on stderr, which
/// `edgectl logs` prints on its own stderr).
fn task_logs(cluster: &EdgeCluster, task: &str) -> String {
    let out = cluster.cli(1, &["logs", task]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Node `i`'s table as `nft` lists it (empty when there is none).
fn nat_table(cluster: &EdgeCluster, i: usize) -> String {
    let out = cluster
        .net
        .exec(i, ["nft", "list", "table", "ip", "edgectl"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn published_ports_answer_from_outside_and_follow_their_tasks() {
    let mut cluster = form_labelled(EdgeCluster::new("npub", 3), 3, &[]);
    let outside = OutsideHost::new(&cluster);
    let host_port = "{container: 8080, host: 18080}";
    run_on(
        &cluster,
        "hostweb",
        "httpd:latest",
        3,
        &format!("{LOGGING_HTTPD}  ports:\n    - {host_port}\n"),
    );
    run_on(
        &cluster,
        "meshweb",
        "httpd:latest",
        3,
        "  ports:\n    - {container: 8080, host: 18081, publish: cluster}\n",
    );
    let hostweb = running_task(&cluster, "hostweb");
    running_task(&cluster, "meshweb");

    // publish: host: on the task's node, and the task sees the client.
    let on3 = format!("http://{}:18080/", cluster.net.addr(3));
    let page = wait_until(CONVERGE, "the host port answers on node 3", || {
        outside.fetch(&on3)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    assert!(page.contains("hello from edgectl"), "{page}");
    // httpd listens on IPv6 too: `[::ffff:ADDRESS]:PORT: url:/`.
    let client_seen = format!("ffff:{}]", outside.address);
    wait_until(CONVERGE, "the task logs the client's own address", || {
        let logs = task_logs(&cluster, &hostweb.id);
        logs.contains(&client_seen).then_some(()).ok_or(logs)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let on1 = format!("http://{}:18080/", cluster.net.addr(1));
    assert!(
        outside.fetch(&on1).is_err(),
        "a host port is open only on the task's node"
    );

    // publish: cluster: on every node, also those running no task of it.
    for i in 1..=3 {
        let url = format!("http://{}:18081/", cluster.net.addr(i));
        let page = wait_until(
            CONVERGE,
            &format!("the cluster port answers on node {i}"),
            || outside.fetch(&url),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
        assert!(page.contains("hello from edgectl"), "node {i}: {page}");
    }
    // A second service may not take a cluster port's number.
    let clash = cluster.dirs.path().join("clash.yaml");
    std::fs::write(
        &clash,
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: clash\nspec:\n  \
         image: httpd:latest\n  ports:\n    - {container: 8080, host: 18081}\n",
    )
    .expect("write spec");
    let out = cluster.cli(1, &["apply", "-f", clash.to_str().expect("utf-8 path")]);
    assert!(!out.status.success(), "a clashing port was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already published by service meshweb"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A restarted node rebuilds the same table, not a second copy.
    let before = nat_table(&cluster, 3);
    assert_eq!(before.matches("dport 18080").count(), 2, "{before}");
    cluster.kill(3);
    cluster.serve(3);
    wait_until(CONVERGE, "node 3 applied its table again", || {
        let log = cluster.net.log(&EdgeCluster::name(3));
        log.matches("nftables table applied").count() >= 2
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    assert_eq!(
        nat_table(&cluster, 3),
        before,
        "the same table after a restart"
    );
    outside
        .fetch(&on3)
        .unwrap_or_else(|e| panic!("after the restart: {e}"));

    // The task stops: its port closes and its rules go.
    cluster.cli_ok(1, &["delete", "service", "hostweb"]);
    wait_until(CONVERGE, "the host port closes with its task", || {
        outside.fetch(&on3).is_err() && !nat_table(&cluster, 3).contains("dport 18080")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let url = format!("http://{}:18081/", cluster.net.addr(1));
    outside
        .fetch(&url)
        .unwrap_or_else(|e| panic!("the cluster port still answers: {e}"));

    // reset, in node 3's namespace, leaves no table, route or bridge.
    cluster.kill(3);
    let data_dir = cluster.data_dir(3);
    cluster.net.exec_ok(
        3,
        [
            env!("CARGO_BIN_EXE_edgectl"),
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "reset",
            "--keep-data",
        ],
    );
    assert_eq!(cluster.net.exec_ok(3, ["nft", "list", "tables"]), "");
    assert_eq!(
        cluster
            .net
            .exec_ok(3, ["ip", "route", "show", "proto", "236"]),
        ""
    );
    let links = cluster.net.exec_ok(3, ["ip", "-o", "link", "show"]);
    assert!(
        !links.contains("edgectl0") && !links.contains("edg"),
        "no bridge nor veth left: {links}"
    );
}

#[test]
fn a_task_reaches_the_outside_as_its_node_and_tasks_see_each_other() {
    // Both nodes are Docker-like hosts: iptables-nft's filter FORWARD
    // chain drops what no rule accepts. Forwarded pod traffic (bridge to
    // eth0, eth0 to bridge) passes only through edgectl's accept rules.
    let net = EdgeCluster::new("nout", 2);
    for i in 1..=2 {
        net.net
            .exec_ok(i, ["iptables-nft", "-w", "-P", "FORWARD", "DROP"]);
    }
    let cluster = form_labelled(net, 2, &[]);
    let outside = OutsideHost::new(&cluster);
    run_on(
        &cluster,
        "client",
        "busybox:latest",
        1,
        "  command: [\"sleep\", \"100000\"]\n",
    );
    run_on(&cluster, "web", "httpd:latest", 2, LOGGING_HTTPD);
    let client = running_task(&cluster, "client");
    let web = running_task(&cluster, "web");
    let fetch_from_client = |url: &str| -> Result<(), String> {
        let out = cluster.cli(
            1,
            &[
                "exec", &client.id, "--", "timeout", "5", "wget", "-q", "-O", "-", url,
            ],
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };

    // Outbound: masqueraded to node 1's address.
    let url = format!("http://{}:{OUTSIDE_PORT}/", outside.address);
    wait_until(CONVERGE, "the task reaches the outside server", || {
        fetch_from_client(&url)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let seen = outside.clients_seen();
    assert_eq!(
        seen,
        vec![cluster.net.addr(1).to_string()],
        "the outside server sees node 1's address"
    );

    // Task to task: not masqueraded, the server sees the client task.
    let web_url = format!("http://{}:8080/", web.ip.clone().expect("address"));
    wait_until(CONVERGE, "the client reaches the web task", || {
        fetch_from_client(&web_url)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let client_seen = format!("ffff:{}]", client.ip.clone().expect("address"));
    wait_until(
        CONVERGE,
        "the web task logs the client task's address",
        || {
            let logs = task_logs(&cluster, &web.id);
            logs.contains(&client_seen).then_some(()).ok_or(logs)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // The policy is still drop; the accept is one jump to edgectl's chain.
    let forward = cluster
        .net
        .exec_ok(1, ["iptables-nft", "-w", "-S", "FORWARD"]);
    assert!(forward.contains("-P FORWARD DROP"), "{forward}");
    assert_eq!(
        forward.matches("-j EDGECTL-FORWARD").count(),
        1,
        "{forward}"
    );
}

#[test]
fn concurrent_applies_of_one_cluster_port_let_one_through() {
    // Several services claim one cluster port at once, from every node,
    // round after round: the check and the write are separate steps, so
    // without the ports guard two of a round pass together.
    const ROUNDS: u16 = 12;
    const CLAIMANTS: usize = 10;
    let mut cluster = EdgeCluster::new("nrace", 3);
    cluster.form(3);
    for round in 0..ROUNDS {
        let port = 19000 + round;
        let files: Vec<PathBuf> = (0..CLAIMANTS)
            .map(|i| {
                let file = cluster.dirs.path().join(format!("race{round}-{i}.yaml"));
                std::fs::write(
                    &file,
                    format!(
                        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: \
                         race{round}-{i}\nspec:\n  image: httpd:latest\n  ports:\n    \
                         - {{container: 8080, host: {port}, publish: cluster}}\n"
                    ),
                )
                .expect("write spec");
                file
            })
            .collect();
        // Every thread starts its CLI at the same instant.
        let start = std::sync::Barrier::new(CLAIMANTS);
        let outcomes: Vec<(bool, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .iter()
                .enumerate()
                .map(|(i, file)| {
                    let (cluster, start) = (&cluster, &start);
                    scope.spawn(move || {
                        start.wait();
                        let out = cluster.cli(
                            i % 3 + 1,
                            &["apply", "-f", file.to_str().expect("utf-8 path")],
                        );
                        (
                            out.status.success(),
                            String::from_utf8_lossy(&out.stderr).into_owned(),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("apply thread"))
                .collect()
        });
        let passed = outcomes.iter().filter(|(ok, _)| *ok).count();
        assert_eq!(passed, 1, "round {round}: {outcomes:?}");
        for (ok, stderr) in &outcomes {
            assert!(
                *ok || stderr.contains("already published by service race")
                    || stderr.contains("published ports) was changed by someone else"),
                "round {round}: {stderr}"
            );
        }
        // And the replica holds one claimant of the port.
        let services = cluster.cli_ok(1, &["kv", "ls", "/sys/services/"]);
        let claimants = services
            .lines()
            .filter(|line| line.contains(&format!("/sys/services/race{round}-")))
            .count();
        assert_eq!(claimants, 1, "round {round}: {services}");
    }
}
