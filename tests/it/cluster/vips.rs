//! Service VIPs (issue 13, deliverable 2) end to end: real nodes in
//! namespaces, real containers, the kernel's nftables. A client task on
//! node 1 reaches a service whose replicas run on nodes 2 and 3 through the
//! service's VIP, and its requests spread over every replica; with
//! `sessionAffinity: clientIP` they stay on one; a replica that stops
//! leaves rotation; a VIP with no ready task refuses at once; a replica
//! that is shut down leaves rotation first and finishes the request in
//! flight before it is stopped; a replica failing readiness leaves the
//! VIP without a restart, and a killed node's replica leaves it within the
//! propagation target.

use std::collections::BTreeMap;

use edgectl::api::{EndpointView, ServiceSummary, TaskView};

use super::{form_labelled, node_logs, run_on, running_task, EdgeCluster, CONVERGE};
use crate::support::wait_until;

/// Each replica serves its own container's host name, so that a client
/// can tell which one answered.
const WHOAMI_HTTPD: &str = "  command: [\"sh\", \"-c\", \"mkdir -p /tmp/w && hostname > \
                            /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w\"]\n";

/// Applies `name`: `replicas` of the whoami server on nodes 2 and 3 only.
fn apply_backend(cluster: &EdgeCluster, name: &str, replicas: u32, extra: &str) {
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  \
         image: httpd:latest\n  replicas: {replicas}\n{WHOAMI_HTTPD}  ports:\n    \
         - {{container: 8080}}\n{extra}  placement:\n    constraints:\n      \
         - node.labels.slot != n1\n"
    );
    let file = cluster.dirs.path().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write spec");
    cluster.cli_ok(1, &["apply", "-f", file.to_str().expect("utf-8 path")]);
}

/// The service's VIP once every one of its `replicas` is ready.
fn vip_with_ready(cluster: &EdgeCluster, service: &str, replicas: u32) -> String {
    wait_until(
        CONVERGE,
        &format!("{service} has a VIP and {replicas} ready"),
        || {
            let services: Vec<ServiceSummary> = cluster.cli_json(1, &["get", "services"])?;
            let summary = services
                .into_iter()
                .find(|s| s.name == service)
                .ok_or("no such service")?;
            match summary.vip {
                Some(vip) if summary.ready == replicas => Ok(vip),
                _ => Err(format!("{summary:?}")),
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(cluster)))
}

/// `wget` from inside the client task; the body, or why not.
fn fetch(cluster: &EdgeCluster, client: &str, url: &str) -> Result<String, String> {
    let out = cluster.cli(
        1,
        &[
            "exec", client, "--", "timeout", "5", "wget", "-q", "-O", "-", url,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !stdout.is_empty() {
        Ok(stdout)
    } else {
        Err(format!(
            "wget {url}: {:?} {}{}",
            out.status.code(),
            stdout,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// How many of `requests` each replica answered.
fn spread(
    cluster: &EdgeCluster,
    client: &str,
    url: &str,
    requests: usize,
) -> BTreeMap<String, usize> {
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..requests {
        let body = fetch(cluster, client, url).unwrap_or_else(|e| panic!("{e}"));
        *answered.entry(body).or_default() += 1;
    }
    answered
}

#[test]
fn a_vip_spreads_over_ready_replicas_on_other_nodes_and_follows_them() {
    let cluster = form_labelled(EdgeCluster::new("nvip", 3), 3, &[]);
    run_on(
        &cluster,
        "client",
        "busybox:latest",
        1,
        "  command: [\"sleep\", \"100000\"]\n",
    );
    apply_backend(&cluster, "web", 3, "");
    apply_backend(
        &cluster,
        "sticky",
        3,
        "  sessionAffinity: clientIP\n  sessionAffinityTimeout: 10m\n",
    );
    let client = running_task(&cluster, "client").id;
    let web_vip = vip_with_ready(&cluster, "web", 3);
    let sticky_vip = vip_with_ready(&cluster, "sticky", 3);
    assert_ne!(web_vip, sticky_vip);
    assert!(web_vip.starts_with("10.96."), "{web_vip}");

    // Every node's table answers (the client's node runs no replica): 30
    // requests reach all 3 replicas.
    let url = format!("http://{web_vip}:8080/");
    wait_until(CONVERGE, "the VIP answers on node 1", || {
        fetch(&cluster, &client, &url)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let answered = spread(&cluster, &client, &url, 30);
    assert_eq!(answered.len(), 3, "30 requests reached {answered:?}");

    // A port the service does not declare is not forwarded.
    assert!(fetch(&cluster, &client, &format!("http://{web_vip}:8081/")).is_err());

    // Client affinity: one client, one replica.
    let sticky_url = format!("http://{sticky_vip}:8080/");
    wait_until(CONVERGE, "the sticky VIP answers", || {
        fetch(&cluster, &client, &sticky_url)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let answered = spread(&cluster, &client, &sticky_url, 10);
    assert_eq!(answered.len(), 1, "affinity broke: {answered:?}");

    // A replica that goes leaves rotation: scaled to 2, every answer comes
    // from the 2 that are left.
    cluster.cli_ok(1, &["scale", "web", "2"]);
    let endpoints = wait_until(CONVERGE, "web has 2 endpoints", || {
        let endpoints: Vec<EndpointView> = cluster.cli_json(1, &["get", "endpoints", "web"])?;
        (endpoints.len() == 2 && endpoints.iter().all(|e| e.ready))
            .then_some(endpoints.clone())
            .ok_or(format!("{endpoints:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(endpoints
        .iter()
        .all(|e| e.vip.as_deref() == Some(&*web_vip)));
    wait_until(CONVERGE, "only the 2 left answer", || {
        let answered = spread(&cluster, &client, &url, 12);
        (answered.len() == 2)
            .then_some(())
            .ok_or(format!("{answered:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // No ready task: the VIP refuses at once rather than hanging.
    cluster.cli_ok(1, &["scale", "web", "0"]);
    wait_until(CONVERGE, "the empty VIP refuses", || {
        match fetch(&cluster, &client, &url) {
            Err(e) if e.contains("refused") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let services: Vec<ServiceSummary> = cluster
        .cli_json(1, &["get", "services"])
        .unwrap_or_else(|e| panic!("{e}"));
    let web = services.iter().find(|s| s.name == "web").expect("web");
    assert_eq!(web.vip.as_deref(), Some(&*web_vip), "a VIP is stable");
    assert_eq!(web.ready, 0);
}

/// A whoami server whose `/cgi-bin/slow` marks that it was asked, then
/// answers after 4 s: a request in flight when the task is shut down.
const SLOW_HTTPD: &str = "  command:\n    - sh\n    - -c\n    - |\n      \
     mkdir -p /tmp/w/cgi-bin\n      hostname > /tmp/w/index.html\n      \
     printf '#!/bin/sh\\ntouch /tmp/w/started\\nsleep 4\\necho Content-Type: text/plain\\necho\\nhostname\\n' > /tmp/w/cgi-bin/slow\n      \
     chmod +x /tmp/w/cgi-bin/slow\n      \
     exec httpd -f -p 8080 -h /tmp/w\n";

#[test]
fn a_shut_down_replica_leaves_rotation_then_drains_the_request_in_flight() {
    let cluster = form_labelled(EdgeCluster::new("ndrn", 2), 2, &[]);
    run_on(
        &cluster,
        "client",
        "busybox:latest",
        1,
        "  command: [\"sleep\", \"100000\"]\n",
    );
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: slow\nspec:\n  \
         image: httpd:latest\n  replicas: 1\n{SLOW_HTTPD}  ports:\n    \
         - {{container: 8080}}\n  drainPeriod: 10s\n  placement:\n    constraints:\n      \
         - node.labels.slot == n2\n"
    );
    let file = cluster.dirs.path().join("slow.yaml");
    std::fs::write(&file, yaml).expect("write spec");
    cluster.cli_ok(1, &["apply", "-f", file.to_str().expect("utf-8 path")]);
    let client = running_task(&cluster, "client").id;
    let backend = running_task(&cluster, "slow");
    let vip = vip_with_ready(&cluster, "slow", 1);
    let index = format!("http://{vip}:8080/");
    let replica_name = wait_until(CONVERGE, "the VIP answers on node 1", || {
        fetch(&cluster, &client, &index)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));

    let slow_url = format!("http://{vip}:8080/cgi-bin/slow");
    std::thread::scope(|scope| {
        let in_flight = scope.spawn(|| fetch(&cluster, &client, &slow_url));
        wait_until(CONVERGE, "the slow request reached the replica", || {
            let out = cluster.cli(1, &["exec", &backend.id, "--", "cat", "/tmp/w/started"]);
            out.status.success().then_some(()).ok_or("not yet")
        })
        .unwrap_or_else(|e| panic!("{e}"));

        cluster.cli_ok(1, &["scale", "slow", "0"]);
        // Out of rotation at once, and still running: its status says why.
        let draining = wait_until(CONVERGE, "the replica draining", || {
            let tasks: Vec<TaskView> = cluster.cli_json(1, &["get", "tasks"])?;
            let task = tasks
                .into_iter()
                .find(|t| t.id == backend.id)
                .ok_or("the task is gone")?;
            let reason = task.not_ready.clone().unwrap_or_default();
            reason
                .contains("draining")
                .then_some(task.clone())
                .ok_or(format!("{task:?}"))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
        assert!(!draining.ready, "{draining:?}");
        match fetch(&cluster, &client, &index) {
            Err(e) if e.contains("refused") => {}
            other => panic!("a new connection during the drain: {other:?}"),
        }

        // The request in flight finishes, answered by the draining replica.
        let body = in_flight
            .join()
            .expect("the client thread")
            .unwrap_or_else(|e| panic!("the request in flight was cut: {e}"));
        assert_eq!(body, replica_name);
    });

    // Then it stops: the task is deleted once its agent reports it.
    wait_until(CONVERGE, "the drained task gone", || {
        let tasks: Vec<TaskView> = cluster.cli_json(1, &["get", "tasks"])?;
        (!tasks.iter().any(|t| t.id == backend.id))
            .then_some(())
            .ok_or(format!("{tasks:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
}

#[test]
fn readiness_and_a_killed_node_take_replicas_out_of_the_vip_without_restarts() {
    let cluster = form_labelled(EdgeCluster::new("nvrd", 3), 3, &[]);
    run_on(
        &cluster,
        "client",
        "busybox:latest",
        1,
        "  command: [\"sleep\", \"100000\"]\n",
    );
    // Ready while /tmp/w/down does not exist; the default spread puts one
    // replica on node 2 and one on node 3.
    apply_backend(
        &cluster,
        "web",
        2,
        "  probes:\n    readiness:\n      exec: [\"sh\", \"-c\", \"test ! -e /tmp/w/down\"]\n      \
         interval: 200ms\n      failureThreshold: 1\n",
    );
    let client = running_task(&cluster, "client").id;
    let vip = vip_with_ready(&cluster, "web", 2);
    let url = format!("http://{vip}:8080/");
    wait_until(CONVERGE, "both replicas answer", || {
        let answered = spread(&cluster, &client, &url, 12);
        (answered.len() == 2)
            .then_some(())
            .ok_or(format!("{answered:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let tasks: Vec<TaskView> = cluster
        .cli_json(1, &["get", "tasks"])
        .unwrap_or_else(|e| panic!("{e}"));
    let replicas: Vec<TaskView> = tasks.into_iter().filter(|t| t.service == "web").collect();
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    assert_ne!(replicas[0].node_id, replicas[1].node_id, "{replicas:?}");
    let (unready, other) = (&replicas[0], &replicas[1]);
    let other_name = fetch_from(&cluster, other);

    // A failing readiness probe: out of the VIP, not restarted.
    cluster.cli_ok(1, &["exec", &unready.id, "--", "touch", "/tmp/w/down"]);
    wait_until(CONVERGE, "only the ready replica answers", || {
        let answered = spread(&cluster, &client, &url, 12);
        (answered.len() == 1 && answered.contains_key(&other_name))
            .then_some(())
            .ok_or(format!("{answered:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    // Back in rotation once it passes again.
    cluster.cli_ok(1, &["exec", &unready.id, "--", "rm", "/tmp/w/down"]);
    wait_until(CONVERGE, "both replicas answer again", || {
        let answered = spread(&cluster, &client, &url, 12);
        (answered.len() == 2)
            .then_some(())
            .ok_or(format!("{answered:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let tasks: Vec<TaskView> = cluster
        .cli_json(1, &["get", "tasks"])
        .unwrap_or_else(|e| panic!("{e}"));
    let again = tasks.iter().find(|t| t.id == unready.id).expect("the task");
    assert_eq!(again.restarts, 0, "restarted for readiness: {again:?}");

    // SIGKILL the node of one replica: once its lease lapsed and the
    // shutdown is committed, within the propagation target (1 s) no
    // request fails.
    let killed = (1..=3)
        .find(|i| other.node.as_deref() == Some(EdgeCluster::name(*i).as_str()))
        .unwrap_or_else(|| panic!("no node named {:?}", other.node));
    cluster.kill(killed);
    wait_until(
        CONVERGE,
        "the killed node's replica out of the endpoints",
        || {
            let endpoints: Vec<EndpointView> = cluster.cli_json(1, &["get", "endpoints", "web"])?;
            (!endpoints.iter().any(|e| e.task == other.id && e.ready))
                .then_some(())
                .ok_or(format!("{endpoints:?}"))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    std::thread::sleep(std::time::Duration::from_secs(1));
    for request in 0..20 {
        if let Err(e) = fetch(&cluster, &client, &url) {
            panic!("request {request} after the propagation target failed: {e}");
        }
    }
}

/// The name a replica answers with, asked at its own address.
fn fetch_from(cluster: &EdgeCluster, task: &TaskView) -> String {
    let out = cluster.cli(1, &["exec", &task.id, "--", "cat", "/tmp/w/index.html"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
