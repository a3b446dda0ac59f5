//! Every node's DNS server (issue 13, deliverable 3) end to end: real nodes
//! in namespaces, real containers, a real upstream resolver (Debian's
//! dnsmasq in a namespace the test makes). Node 1 answers `web` with the
//! VIP and `tasks.web` with exactly the ready replicas (which run on nodes
//! 2 and 3), follows readiness and scaling, forwards outside names to its
//! upstream, hands its containers its own address as their nameserver,
//! and keeps answering from its replica when cut off from the others.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgectl::api::{NodeSelfStatus, ServiceSummary, TaskView};

use super::{form_labelled, node_logs, run_on, running_task, EdgeCluster, CONVERGE};
use crate::support::wait_until;

/// The upstream's last octet on the harness's subnet.
const UPSTREAM_OCTET: u8 = 53;
/// What the upstream answers for every name under `example.test`.
const UPSTREAM_ANSWER: &str = "192.0.2.7";

/// busybox httpd serving /www, ready while /www/ready exists.
const READY_HTTPD: &str = "  command: [\"sh\", \"-c\", \"mkdir -p /www && touch /www/ready && \
                           hostname > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n  probes:\n    readiness:\n      \
                           http: {path: /ready, port: 8080}\n      interval: 200ms\n      \
                           failureThreshold: 2\n";

/// dnsmasq in a namespace of its own, linked to the harness's bridge,
/// answering `example.test` names with [`UPSTREAM_ANSWER`] and refusing
/// the rest. Deleted with its namespace on drop, also on failure.
struct Upstream {
    netns: String,
    server: Option<Child>,
}

impl Upstream {
    fn new(cluster: &EdgeCluster, address: &str) -> Upstream {
        let prefix = cluster.net.prefix().to_string();
        let mut upstream = Upstream {
            netns: format!("{prefix}-dns"),
            server: None,
        };
        let netns = upstream.netns.clone();
        let bridge_netns = format!("{prefix}-br");
        let cidr = format!("{address}/24");
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
                "dns0",
                "netns",
                &bridge_netns,
            ],
            vec![
                "ip",
                "-n",
                &bridge_netns,
                "link",
                "set",
                "dns0",
                "master",
                "br0",
                "up",
            ],
            vec!["ip", "-n", &netns, "addr", "add", &cidr, "dev", "eth0"],
            vec!["ip", "-n", &netns, "link", "set", "eth0", "up"],
            vec!["ip", "-n", &netns, "link", "set", "lo", "up"],
        ] {
            run(&step).unwrap_or_else(|e| panic!("{e}"));
        }
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "dnsmasq",
                "--no-daemon",
                "--no-resolv",
            ])
            .args(["--no-hosts", "--conf-file=/dev/null", "--pid-file="])
            .arg(format!("--address=/example.test/{UPSTREAM_ANSWER}"))
            .args([
                "--port",
                "53",
                "--bind-interfaces",
                "--listen-address",
                address,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (scripts/setup.sh installs dnsmasq-base)");
        upstream.server = Some(server);
        upstream
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
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

/// The A records busybox's `nslookup` printed (its own DNS client, not
/// glibc's: see FACTS), or its output when it found none.
fn addresses(output: &std::process::Output) -> Result<BTreeSet<String>, String> {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut seen_name = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("Name:") {
            seen_name = true;
        } else if seen_name && line.starts_with("Address:") {
            if let Some(address) = line.split_whitespace().last() {
                found.insert(address.to_string());
            }
        }
    }
    if output.status.success() {
        Ok(found)
    } else {
        Err(format!(
            "{}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Asks node `i`'s DNS server at `server` (port 53) for the A records of
/// `name`, from inside the node's namespace.
fn resolve(
    cluster: &EdgeCluster,
    i: usize,
    server: &str,
    name: &str,
) -> Result<BTreeSet<String>, String> {
    let output = cluster.net.exec(
        i,
        [
            "timeout", "5", "busybox", "nslookup", "-type=a", name, server,
        ],
    );
    addresses(&output)
}

/// The address of node `i`'s bridge, where its DNS server answers.
fn bridge_address(cluster: &EdgeCluster, i: usize) -> String {
    let out = cluster
        .net
        .exec_ok(i, ["ip", "-4", "-o", "addr", "show", "dev", "edgectl0"]);
    out.split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no address on edgectl0: {out}"))
        .to_string()
}

fn apply_web(cluster: &EdgeCluster, replicas: u32) {
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  \
         image: httpd:latest\n  replicas: {replicas}\n{READY_HTTPD}  ports:\n    \
         - {{container: 8080}}\n  placement:\n    constraints:\n      \
         - node.labels.slot != n1\n"
    );
    let file = cluster.dirs.path().join("web.yaml");
    std::fs::write(&file, yaml).expect("write spec");
    cluster.cli_ok(1, &["apply", "-f", file.to_str().expect("utf-8 path")]);
}

/// web's tasks as node 1 sees them.
fn web_tasks(cluster: &EdgeCluster) -> Result<Vec<TaskView>, String> {
    cluster.cli_json(1, &["get", "tasks", "web"])
}

/// The addresses of web's ready tasks.
fn ready_addresses(tasks: &[TaskView]) -> BTreeSet<String> {
    tasks
        .iter()
        .filter(|task| task.ready)
        .filter_map(|task| task.ip.clone())
        .collect()
}

/// Waits until `tasks.web`, asked of node 1, lists exactly `expected`.
fn wait_tasks_answer(cluster: &EdgeCluster, server: &str, expected: &BTreeSet<String>, what: &str) {
    wait_until(CONVERGE, what, || {
        let answer = resolve(cluster, 1, server, "tasks.web")?;
        (answer == *expected)
            .then_some(())
            .ok_or(format!("tasks.web = {answer:?}, want {expected:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(cluster)));
}

#[test]
fn every_node_answers_service_names_from_its_replica_and_forwards_the_rest() {
    let mut cluster = EdgeCluster::new("ndns", 3);
    let octets = cluster.net.addr(1).octets();
    let upstream_address = format!("{}.{}.{}.{UPSTREAM_OCTET}", octets[0], octets[1], octets[2]);
    let _upstream = Upstream::new(&cluster, &upstream_address);
    cluster.node_flags = vec!["--dns-upstream".into(), upstream_address.clone()];
    let cluster = form_labelled(cluster, 3, &[]);
    run_on(
        &cluster,
        "client",
        "busybox:latest",
        1,
        "  command: [\"sleep\", \"100000\"]\n",
    );
    apply_web(&cluster, 3);
    let client = running_task(&cluster, "client");
    let vip = wait_until(CONVERGE, "web has a VIP and 3 ready", || {
        let services: Vec<ServiceSummary> = cluster.cli_json(1, &["get", "services"])?;
        let web = services
            .into_iter()
            .find(|s| s.name == "web")
            .ok_or("no web yet")?;
        match web.vip {
            Some(vip) if web.ready == 3 => Ok(vip),
            _ => Err(format!("{web:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let server = bridge_address(&cluster, 1);

    // The service's name, short or in the cluster domain, is its VIP.
    let want_vip = BTreeSet::from([vip.clone()]);
    wait_until(CONVERGE, "node 1 answers web", || {
        let answer = resolve(&cluster, 1, &server, "web")?;
        (answer == want_vip)
            .then_some(())
            .ok_or(format!("web = {answer:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    assert_eq!(
        resolve(&cluster, 1, &server, "web.edgectl.internal").unwrap(),
        want_vip
    );

    // tasks.web: exactly the ready replicas.
    let tasks = web_tasks(&cluster).unwrap();
    let ready = ready_addresses(&tasks);
    assert_eq!(ready.len(), 3, "{tasks:?}");
    wait_tasks_answer(&cluster, &server, &ready, "tasks.web lists the 3 ready");

    // The declared port, as SRV: the target is the service's name.
    let srv = cluster.net.exec_ok(
        1,
        [
            "busybox",
            "nslookup",
            "-type=srv",
            "_8080._tcp.web",
            &server,
        ],
    );
    assert!(
        srv.contains("service = 0 0 8080 web.edgectl.internal"),
        "{srv}"
    );

    // A name inside the domain that names nothing: NXDOMAIN, not forwarded.
    let missing = cluster.net.exec(
        1,
        [
            "busybox",
            "nslookup",
            "-type=a",
            "nope.edgectl.internal",
            &server,
        ],
    );
    let text = String::from_utf8_lossy(&missing.stdout);
    assert!(
        !missing.status.success() && text.contains("NXDOMAIN"),
        "{text}"
    );

    // An outside name goes to the upstream.
    assert_eq!(
        resolve(&cluster, 1, &server, "www.example.test").unwrap(),
        BTreeSet::from([UPSTREAM_ANSWER.to_string()])
    );

    // The container's resolv.conf names the node's server, and a lookup
    // from inside the container with no server given reaches it.
    let resolv = cluster.cli_ok(1, &["exec", &client.id, "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains(&format!("nameserver {server}"))
            && resolv.contains("search edgectl.internal"),
        "{resolv}"
    );
    let inside = cluster.cli(1, &["exec", &client.id, "--", "nslookup", "-type=a", "web"]);
    assert_eq!(addresses(&inside).unwrap(), want_vip);

    // A client in the task resolves `web` through the node's DNS and
    // fetches http://web:8080/ 30 times: every replica answers. (Debian's
    // busybox-static cannot resolve for wget; its nslookup can. Its
    // `wget -T` segfaults here even with an address: `timeout` bounds it.)
    let fetch_by_name = "for i in $(seq 30); do \
         ip=$(nslookup -type=a web | awk '/^Address/ { last = $NF } END { print last }'); \
         timeout 5 wget -q -O - \"http://$ip:8080/\"; done";
    let fetched = cluster.cli_ok(1, &["exec", &client.id, "--", "sh", "-c", fetch_by_name]);
    let answered: BTreeSet<&str> = fetched.lines().map(str::trim).collect();
    assert_eq!(
        (fetched.lines().count(), answered.len()),
        (30, 3),
        "30 fetches of http://web:8080/ by name:\n{fetched}"
    );

    // A replica whose readiness fails leaves the answer; back when it passes.
    let gated = tasks
        .iter()
        .find(|task| task.ready)
        .expect("a ready task")
        .clone();
    let gated_ip = gated.ip.clone().expect("an address");
    cluster.cli_ok(1, &["exec", &gated.id, "--", "rm", "/www/ready"]);
    let mut without = ready.clone();
    without.remove(&gated_ip);
    wait_tasks_answer(
        &cluster,
        &server,
        &without,
        "an unready replica leaves tasks.web",
    );
    cluster.cli_ok(1, &["exec", &gated.id, "--", "touch", "/www/ready"]);
    wait_tasks_answer(
        &cluster,
        &server,
        &ready,
        "the replica is back in tasks.web",
    );

    // Scaled down: the answer follows.
    cluster.cli_ok(1, &["scale", "web", "2"]);
    let two = wait_until(CONVERGE, "web has 2 tasks, all ready", || {
        let tasks = web_tasks(&cluster)?;
        let ready = ready_addresses(&tasks);
        let running = tasks
            .iter()
            .filter(|t| t.desired == edgectl::orchestrator::records::DesiredState::Running)
            .count();
        (ready.len() == 2 && running == 2)
            .then_some(ready)
            .ok_or(format!("{tasks:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    wait_tasks_answer(&cluster, &server, &two, "tasks.web follows the scale-down");

    // Cut off from every other node (and the leader, wherever it is): node
    // 1 still answers from its replica, and says how stale that may be.
    cluster.net.partition(1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(resolve(&cluster, 1, &server, "web").unwrap(), want_vip);
    assert_eq!(resolve(&cluster, 1, &server, "tasks.web").unwrap(), two);
    let status: NodeSelfStatus = cluster
        .cli_json(1, &["node", "status"])
        .unwrap_or_else(|e| panic!("{e}"));
    println!("node 1 cut off: {status:?}");
    assert!(
        status.leader_contact_ms.is_none_or(|ms| ms >= 1_000),
        "a cut-off node must not claim fresh contact: {status:?}"
    );
    assert!(
        status.dns_listen.iter().any(|a| a.starts_with(&server)),
        "{status:?}"
    );
    cluster.net.heal(1);
    wait_until(CONVERGE, "node 1 hears the leader again", || {
        let status: NodeSelfStatus = cluster.cli_json(1, &["node", "status"])?;
        status
            .leader_contact_ms
            .filter(|ms| *ms < 1_000)
            .ok_or(format!("{status:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
}
