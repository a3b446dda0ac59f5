//! Orchestration end to end: services applied through the CLI, placed by the
//! leader, run as real containers by every node's agent, healed when a node
//! dies, and trimmed when it returns.

use std::collections::BTreeMap;

use edgectl::api::{NodeView, ServiceSummary, TaskView};
use edgectl::orchestrator::records::{DesiredState, TaskState};

use super::{EdgeCluster, CONVERGE};
use crate::support::{test_images_dir, wait_until};

/// Every node offers this much, so that placements are decided by capacity.
const NODE_RESOURCES: [&str; 4] = ["--cpu", "1", "--memory", "512Mi"];

pub(super) fn service_yaml(name: &str, replicas: u32, body: &str) -> String {
    format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  image: busybox:latest\n  replicas: {replicas}\n{body}"
    )
}

pub(super) const SLEEPER: &str = "  command: [\"sleep\", \"100000\"]\n  resources:\n    requests:\n      cpu: 250m\n      memory: 64Mi\n";

/// A cluster of `n` nodes with the busybox image imported once, on node 1.
pub(super) fn cluster_with_image(prefix: &str, n: usize) -> EdgeCluster {
    let mut cluster = EdgeCluster::with_flags(prefix, n, &NODE_RESOURCES);
    cluster.form(n);
    import_busybox(&cluster, 1);
    cluster
}

fn import_busybox(cluster: &EdgeCluster, via: usize) {
    let images = test_images_dir(env!("CARGO_TARGET_TMPDIR"));
    let archive = images.join("busybox.tar");
    cluster.cli_ok(
        via,
        &["image", "import", archive.to_str().expect("utf-8 path")],
    );
}

pub(super) fn apply(cluster: &EdgeCluster, via: usize, yaml: &str) -> std::process::Output {
    let file = cluster
        .dirs
        .path()
        .join(format!("spec-{}.yaml", rand_suffix()));
    std::fs::write(&file, yaml).expect("write spec");
    cluster.cli(via, &["apply", "-f", file.to_str().expect("utf-8 path")])
}

pub(super) fn apply_ok(cluster: &EdgeCluster, via: usize, yaml: &str) {
    let out = apply(cluster, via, yaml);
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(super) fn tasks(
    cluster: &EdgeCluster,
    via: usize,
    service: &str,
) -> Result<Vec<TaskView>, String> {
    cluster.cli_json(via, &["get", "tasks", service])
}

pub(super) fn is_running(task: &TaskView) -> bool {
    task.desired == DesiredState::Running && task.state == Some(TaskState::Running)
}

/// Waits until `service` has exactly `replicas` tasks, all running, and
/// returns them (superseded tasks must be gone too).
pub(super) fn wait_converged(
    cluster: &EdgeCluster,
    via: usize,
    service: &str,
    replicas: usize,
) -> Vec<TaskView> {
    wait_until(
        CONVERGE,
        &format!("{service}: exactly {replicas} running tasks"),
        || {
            let tasks = tasks(cluster, via, service)?;
            if tasks.len() == replicas && tasks.iter().all(is_running) {
                Ok(tasks)
            } else {
                Err(summarize(&tasks))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(cluster)))
}

pub(super) fn summarize(tasks: &[TaskView]) -> String {
    tasks
        .iter()
        .map(|t| {
            format!(
                "{} on {:?}: {:?}/{} {}",
                t.id,
                t.node,
                t.desired,
                t.state_word(),
                t.message()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn logs(cluster: &EdgeCluster) -> String {
    (1..=cluster.net.nodes())
        .map(|i| {
            let log = cluster.net.log(&EdgeCluster::name(i));
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            format!(
                "--- node{i} (last lines)\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn per_node(tasks: &[TaskView]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for task in tasks {
        *counts
            .entry(task.node.clone().unwrap_or_else(|| "-".into()))
            .or_insert(0) += 1;
    }
    counts
}

/// The containers node `i`'s runtime has, by id (read from its data dir).
fn containers_on(cluster: &EdgeCluster, i: usize) -> Vec<String> {
    let dir = cluster.data_dir(i).join("runtime/containers");
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn replicas_fill_nodes_within_capacity_and_scale_up_and_down() {
    let cluster = cluster_with_image("cor", 3);
    apply_ok(&cluster, 2, &service_yaml("web", 10, SLEEPER));
    let running = wait_converged(&cluster, 1, "web", 10);
    let counts = per_node(&running);
    // 1 CPU per node, 250m per replica: at most 4 on a node.
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n <= 4), "{counts:?}");

    let services: Vec<ServiceSummary> = cluster.cli_json(3, &["get", "services"]).unwrap();
    assert_eq!((services[0].running, services[0].replicas), (10, 10));

    // Applying the same spec again changes nothing.
    let out =
        String::from_utf8_lossy(&apply(&cluster, 1, &service_yaml("web", 10, SLEEPER)).stdout)
            .into_owned();
    assert!(out.contains("unchanged"), "{out}");

    cluster.cli_ok(1, &["scale", "web", "4"]);
    let running = wait_converged(&cluster, 1, "web", 4);
    wait_until(CONVERGE, "only 4 containers left on the nodes", || {
        let all: Vec<String> = (1..=3).flat_map(|i| containers_on(&cluster, i)).collect();
        (all.len() == 4).then_some(()).ok_or(all)
    })
    .unwrap();
    let slots: Vec<u32> = running.iter().map(|t| t.slot).collect();
    assert_eq!(
        slots,
        [0, 1, 2, 3],
        "scaling down removes the highest slots"
    );

    cluster.cli_ok(1, &["scale", "web", "7", "--wait", "--timeout", "60s"]);
    wait_converged(&cluster, 1, "web", 7);

    cluster.cli_ok(1, &["delete", "service", "web"]);
    wait_until(CONVERGE, "every container stopped and removed", || {
        let all: Vec<String> = (1..=3).flat_map(|i| containers_on(&cluster, i)).collect();
        all.is_empty().then_some(()).ok_or(all)
    })
    .unwrap();
    let gone = cluster.cli(1, &["get", "tasks", "web"]);
    assert!(
        !gone.status.success(),
        "a deleted service has no tasks to list"
    );
}

#[test]
fn exits_are_restarted_by_policy_and_not_under_never() {
    let cluster = cluster_with_image("crp", 1);
    let exits = "  command: [\"sh\", \"-c\", \"exit 3\"]\n";
    apply_ok(
        &cluster,
        1,
        &service_yaml(
            "always",
            1,
            &format!("{exits}  restartPolicy:\n    condition: always\n    backoff:\n      initial: 100ms\n      max: 200ms\n"),
        ),
    );
    apply_ok(
        &cluster,
        1,
        &service_yaml(
            "never",
            1,
            &format!("{exits}  restartPolicy:\n    condition: never\n"),
        ),
    );
    wait_until(CONVERGE, "the always task restarted at least twice", || {
        let tasks = tasks(&cluster, 1, "always")?;
        tasks
            .first()
            .filter(|t| t.restarts >= 2)
            .cloned()
            .ok_or_else(|| summarize(&tasks))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&cluster)));
    let exited = wait_until(CONVERGE, "the never task exited with 3", || {
        let tasks = tasks(&cluster, 1, "never")?;
        tasks
            .first()
            .filter(|t| t.state == Some(TaskState::Exited { code: 3 }))
            .cloned()
            .ok_or_else(|| summarize(&tasks))
    })
    .unwrap();
    assert_eq!(exited.restarts, 0);
    // And it stays so: the same single task, not replaced, not restarted.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let again = tasks(&cluster, 1, "never").unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].restarts),
        (exited.id.as_str(), 0)
    );
}

#[test]
fn a_killed_nodes_replicas_move_and_its_return_leaves_no_extra() {
    let mut cluster = cluster_with_image("cnk", 3);
    apply_ok(&cluster, 1, &service_yaml("web", 6, SLEEPER));
    wait_converged(&cluster, 1, "web", 6);
    let leader = cluster.leader_index(1).unwrap();
    let victim = (1..=3).rev().find(|i| *i != leader).unwrap();
    let victim_name = EdgeCluster::name(victim);
    let on_victim_before = containers_on(&cluster, victim);
    assert!(
        !on_victim_before.is_empty(),
        "spread put work on every node"
    );

    cluster.kill(victim);
    // Its tasks still read "running" (their last report) until its lease
    // lapses: wait for 6 running replicas that are all elsewhere.
    let moved = wait_until(CONVERGE, "6 replicas running on the other nodes", || {
        let tasks = tasks(&cluster, leader, "web")?;
        let elsewhere: Vec<&TaskView> = tasks
            .iter()
            .filter(|t| is_running(t) && t.node.as_deref() != Some(victim_name.as_str()))
            .collect();
        let on_victim = tasks
            .iter()
            .filter(|t| {
                t.desired == DesiredState::Running
                    && t.node.as_deref() == Some(victim_name.as_str())
            })
            .count();
        if elsewhere.len() == 6 && on_victim == 0 {
            Ok(tasks)
        } else {
            Err(summarize(&tasks))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&cluster)));
    let superseded: Vec<&TaskView> = moved
        .iter()
        .filter(|t| t.desired == DesiredState::Shutdown)
        .collect();
    assert!(
        superseded
            .iter()
            .all(|t| t.node.as_deref() == Some(victim_name.as_str())
                && t.shutdown_reason
                    .as_deref()
                    .is_some_and(|r| r.contains("lease lapsed"))),
        "{}",
        summarize(&moved)
    );
    // The killed node's containers outlived it (no daemon, no shim): when it
    // returns, its agent stops the superseded ones.
    cluster.serve(victim);
    wait_until(
        CONVERGE,
        "the returned node dropped its superseded replicas",
        || {
            let left = containers_on(&cluster, victim);
            left.is_empty().then_some(()).ok_or(left)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&cluster)));
    let after = wait_converged(&cluster, leader, "web", 6);
    assert_eq!(
        after.len(),
        6,
        "no service runs more replicas than its spec"
    );
}

#[test]
fn a_request_too_big_waits_with_its_reason_until_a_node_joins() {
    let mut cluster = EdgeCluster::new("cpj", 2);
    cluster.set_node_flags(1, &NODE_RESOURCES);
    cluster.set_node_flags(2, &["--cpu", "2", "--memory", "2Gi"]);
    cluster.init(1);
    import_busybox(&cluster, 1);
    let big =
        "  command: [\"sleep\", \"100000\"]\n  resources:\n    requests:\n      memory: 1Gi\n";
    apply_ok(&cluster, 1, &service_yaml("big", 1, big));
    let pending = wait_until(CONVERGE, "the task pending with a reason", || {
        let tasks = tasks(&cluster, 1, "big")?;
        tasks
            .first()
            .filter(|t| t.node.is_none() && t.pending_reason.is_some())
            .cloned()
            .ok_or_else(|| summarize(&tasks))
    })
    .unwrap();
    let reason = pending.pending_reason.unwrap();
    assert!(reason.contains("insufficient memory"), "{reason}");
    let describe = cluster.cli_ok(1, &["describe", "service", "big"]);
    assert!(describe.contains("insufficient memory"), "{describe}");

    cluster.join(2, 1);
    let placed = wait_converged(&cluster, 1, "big", 1);
    assert_eq!(placed[0].node.as_deref(), Some("node2"));
}

#[test]
fn constraints_cordon_and_drain_are_honoured() {
    let cluster = cluster_with_image("ccd", 3);
    cluster.cli_ok(1, &["node", "label", "node1", "zone=north"]);
    let constrained =
        format!("{SLEEPER}  placement:\n    constraints: [\"node.labels.zone == north\"]\n");
    apply_ok(&cluster, 1, &service_yaml("north", 2, &constrained));
    let north = wait_converged(&cluster, 1, "north", 2);
    assert_eq!(per_node(&north), BTreeMap::from([("node1".to_string(), 2)]));

    cluster.cli_ok(1, &["node", "cordon", "node2"]);
    apply_ok(&cluster, 1, &service_yaml("free", 3, SLEEPER));
    let free = wait_converged(&cluster, 1, "free", 3);
    assert!(
        free.iter().all(|t| t.node.as_deref() != Some("node2")),
        "a cordoned node took work: {}",
        summarize(&free)
    );

    cluster.cli_ok(1, &["node", "uncordon", "node2"]);
    cluster.cli_ok(1, &["node", "drain", "node1", "--wait", "--timeout", "60s"]);
    let free = wait_converged(&cluster, 1, "free", 3);
    assert!(free.iter().all(|t| t.node.as_deref() != Some("node1")));
    // Only node1 is north: its replicas wait, saying why.
    let north = tasks(&cluster, 1, "north").unwrap();
    assert!(
        north.iter().all(|t| t.node.is_none()),
        "{}",
        summarize(&north)
    );
    let reason = north[0].pending_reason.clone().unwrap_or_default();
    assert!(reason.contains("zone"), "{reason}");
    assert!(
        containers_on(&cluster, 1).is_empty(),
        "drained node still runs containers"
    );

    let nodes: Vec<NodeView> = cluster.cli_json(1, &["get", "nodes"]).unwrap();
    let node1 = nodes.iter().find(|n| n.name == "node1").unwrap();
    assert!(node1.draining && node1.cordoned);
    assert_eq!(node1.labels.get("zone").map(String::as_str), Some("north"));
}

#[test]
fn bad_specs_are_refused_naming_the_field_and_change_nothing() {
    let mut cluster = EdgeCluster::with_flags("cbs", 1, &NODE_RESOURCES);
    cluster.init(1);
    let cases = [
        (
            service_yaml("web", 1, "  resources:\n    limits:\n      memory: 12Qi\n"),
            "spec.resources.limits.memory",
        ),
        (service_yaml("web", 1, "  replica: 3\n"), "replica"),
        (service_yaml("Web_1", 1, ""), "metadata.name"),
        (
            "apiVersion: edgectl/v1\nkind: Service\n: :\n".to_string(),
            "line",
        ),
    ];
    for (yaml, named) in cases {
        let out = apply(&cluster, 1, &yaml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{yaml}");
        assert!(
            stderr.contains(named),
            "error does not name {named}: {stderr}"
        );
        assert!(stderr.contains("line"), "error has no line: {stderr}");
    }
    let services: Vec<ServiceSummary> = cluster.cli_json(1, &["get", "services"]).unwrap();
    assert!(services.is_empty(), "{services:?}");
    let missing = cluster.cli(1, &["scale", "nope", "2"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found: service \"nope\""));
}

#[test]
fn a_restarted_node_adopts_its_running_containers_without_duplicates() {
    // A long lease: the node is back before anyone would replace its work.
    let mut cluster = EdgeCluster::with_flags("cad", 1, &["--lease", "60s"]);
    cluster.init(1);
    import_busybox(&cluster, 1);
    apply_ok(&cluster, 1, &service_yaml("web", 3, SLEEPER));
    let before = wait_converged(&cluster, 1, "web", 3);
    let containers_before = containers_on(&cluster, 1);
    assert_eq!(containers_before.len(), 3);
    // Each record holds the init's pid and start time: a new process would change it.
    let records = |cluster: &EdgeCluster| -> Vec<String> {
        containers_on(cluster, 1)
            .iter()
            .map(|id| {
                let path = cluster
                    .data_dir(1)
                    .join("runtime/containers")
                    .join(id)
                    .join("record.json");
                std::fs::read_to_string(path).unwrap_or_default()
            })
            .collect()
    };
    let records_before = records(&cluster);

    cluster.kill(1);
    cluster.serve(1);
    let after = wait_converged(&cluster, 1, "web", 3);
    let ids = |tasks: &[TaskView]| tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&after),
        ids(&before),
        "the same tasks, not replacements"
    );
    assert!(
        after.iter().all(|t| t.restarts == 0),
        "{}",
        summarize(&after)
    );
    // Still the very same containers, and no second copy.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(containers_on(&cluster, 1), containers_before);
    assert_eq!(
        records(&cluster),
        records_before,
        "the same processes, adopted"
    );
}

#[test]
fn logs_and_exec_reach_the_node_that_runs_the_task() {
    let cluster = cluster_with_image("clg", 2);
    let talker = "  command: [\"sh\", \"-c\", \"echo hello-out; echo hello-err >&2; sleep 100000\"]\n  resources:\n    requests:\n      cpu: 250m\n      memory: 64Mi\n";
    apply_ok(&cluster, 1, &service_yaml("talker", 2, talker));
    let running = wait_converged(&cluster, 1, "talker", 2);
    let remote = running
        .iter()
        .find(|t| t.node_id != Some(1))
        .unwrap_or_else(|| panic!("no replica off node 1: {}", summarize(&running)));
    // Asked on node 1, answered by the node that runs the task.
    let lines: Vec<edgectl::api::LogLine> = wait_until(CONVERGE, "both lines in the logs", || {
        let lines: Vec<edgectl::api::LogLine> =
            cluster.cli_json(1, &["logs", remote.id.as_str()])?;
        if lines.len() >= 2 {
            Ok(lines)
        } else {
            Err(format!("{lines:?}"))
        }
    })
    .unwrap();
    let stream_of = |text: &str| lines.iter().find(|l| l.text == text).map(|l| l.stream);
    assert_eq!(
        stream_of("hello-out"),
        Some(edgectl::api::LogStream::Stdout)
    );
    assert_eq!(
        stream_of("hello-err"),
        Some(edgectl::api::LogStream::Stderr)
    );
    // Plain output splits the streams as the container wrote them.
    let plain = cluster.cli(1, &["logs", remote.id.as_str()]);
    assert!(plain.status.success());
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), "hello-out");
    assert_eq!(String::from_utf8_lossy(&plain.stderr).trim(), "hello-err");
    let tail: Vec<edgectl::api::LogLine> = cluster
        .cli_json(1, &["logs", remote.id.as_str(), "--tail", "1"])
        .unwrap();
    assert_eq!(tail.len(), 1);
    // exec runs in that container, from node 1, and leaves with its code.
    let ran = cluster.cli(
        1,
        &[
            "exec",
            remote.id.as_str(),
            "--",
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo oops >&2; exit 5",
        ],
    );
    assert_eq!(
        ran.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ran.stdout).contains("sleep 100000"),
        "not the task's container: {}",
        String::from_utf8_lossy(&ran.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&ran.stderr).trim(), "oops");
    // One that outlives its deadline is killed and says so (exit 124).
    let stuck = cluster.cli(
        1,
        &[
            "exec",
            remote.id.as_str(),
            "--timeout",
            "300ms",
            "--",
            "sleep",
            "60",
        ],
    );
    assert_eq!(stuck.status.code(), Some(124));
    assert!(String::from_utf8_lossy(&stuck.stderr).contains("was killed"));
    // A name that is no task says so.
    let unknown = cluster.cli(1, &["logs", "talker.9.9"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no task named talker.9.9"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[test]
fn failing_health_checks_restart_the_container_by_policy() {
    let cluster = cluster_with_image("chc", 1);
    let probed = "  command: [\"sh\", \"-c\", \"touch /tmp/ok; sleep 100000\"]\n  healthCheck:\n    exec: [\"test\", \"-f\", \"/tmp/ok\"]\n    interval: 200ms\n    timeout: 2s\n    retries: 2\n  restartPolicy:\n    condition: always\n    backoff: {initial: 100ms, max: 200ms}\n";
    apply_ok(&cluster, 1, &service_yaml("probed", 1, probed));
    let first = wait_converged(&cluster, 1, "probed", 1).remove(0);
    // Healthy: passing checks (every 200 ms) leave it alone.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let still = tasks(&cluster, 1, "probed").unwrap().remove(0);
    assert_eq!((still.restarts, is_running(&still)), (0, true), "{still:?}");
    // Break it from inside: two failed checks later it is killed and started
    // again, and the new container is healthy.
    let broke = cluster.cli(1, &["exec", first.id.as_str(), "--", "rm", "/tmp/ok"]);
    assert!(
        broke.status.success(),
        "{}",
        String::from_utf8_lossy(&broke.stderr)
    );
    wait_until(CONVERGE, "the unhealthy container restarted", || {
        let tasks = tasks(&cluster, 1, "probed")?;
        tasks
            .first()
            .filter(|t| t.restarts >= 1 && is_running(t))
            .cloned()
            .ok_or_else(|| summarize(&tasks))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&cluster)));

    // A check that hangs until its timeout (a minute) holds back no other
    // container's checks: the next service is still judged within CONVERGE.
    let hung = "  command: [\"sleep\", \"100000\"]\n  healthCheck:\n    exec: [\"sleep\", \"100000\"]\n    interval: 200ms\n    timeout: 60s\n    retries: 3\n";
    apply_ok(&cluster, 1, &service_yaml("hung", 1, hung));
    wait_converged(&cluster, 1, "hung", 1);
    std::thread::sleep(std::time::Duration::from_secs(1));

    // Under `never`, a task whose check never passes ends, named unhealthy.
    let doomed = "  command: [\"sleep\", \"100000\"]\n  healthCheck:\n    exec: [\"test\", \"-f\", \"/never\"]\n    interval: 200ms\n    retries: 2\n  restartPolicy:\n    condition: never\n";
    apply_ok(&cluster, 1, &service_yaml("doomed", 1, doomed));
    let ended = wait_until(
        CONVERGE,
        "the never-restarted task failed as unhealthy",
        || {
            let tasks = tasks(&cluster, 1, "doomed")?;
            tasks
                .first()
                .filter(|t| matches!(&t.state, Some(TaskState::Failed { .. })))
                .cloned()
                .ok_or_else(|| summarize(&tasks))
        },
    )
    .unwrap();
    match ended.state {
        Some(TaskState::Failed { reason }) => assert!(
            reason.contains("unhealthy: health check failed 2 times"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(ended.restarts, 0);
}

/// Runs `command` in `task`'s container through the CLI; panics if it fails.
fn exec_ok(cluster: &EdgeCluster, task: &str, command: &[&str]) {
    let mut args = vec!["exec", task, "--"];
    args.extend_from_slice(command);
    let ran = cluster.cli(1, &args);
    assert!(
        ran.status.success(),
        "exec {command:?}: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// Waits until `service`'s one task runs with readiness `ready`, and
/// returns it.
fn wait_ready(cluster: &EdgeCluster, service: &str, ready: bool) -> TaskView {
    wait_until(
        CONVERGE,
        &format!("{service} running with ready = {ready}"),
        || {
            let tasks = tasks(cluster, 1, service)?;
            tasks
                .first()
                .filter(|t| is_running(t) && t.ready == ready)
                .cloned()
                .ok_or_else(|| summarize(&tasks))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(cluster)))
}

#[test]
fn a_failing_readiness_probe_takes_a_task_out_of_rotation_without_a_restart() {
    let cluster = cluster_with_image("crd", 1);
    let images = test_images_dir(env!("CARGO_TARGET_TMPDIR"));
    let httpd = images.join("httpd.tar");
    cluster.cli_ok(1, &["image", "import", httpd.to_str().expect("utf-8 path")]);
    // busybox httpd on the bridge answers 404 until /www/ready exists; the
    // agent asks it at the task's address. A passing liveness probe beside
    // it must change nothing.
    let yaml = "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: gated\nspec:\n  \
                image: httpd:latest\n  ports:\n    - container: 8080\n  probes:\n    readiness:\n      \
                http: {path: /ready, port: 8080}\n      interval: 200ms\n      \
                failureThreshold: 2\n    liveness:\n      tcp: {port: 8080}\n      \
                interval: 200ms\n";
    apply_ok(&cluster, 1, yaml);
    // Running but never ready yet: out of rotation, saying why.
    let waiting = wait_until(CONVERGE, "gated running, failing readiness", || {
        let tasks = tasks(&cluster, 1, "gated")?;
        tasks
            .first()
            .filter(|t| {
                is_running(t)
                    && !t.ready
                    && t.not_ready
                        .as_deref()
                        .is_some_and(|r| r.contains("status 404"))
            })
            .cloned()
            .ok_or_else(|| summarize(&tasks))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&cluster)));
    let table = cluster.cli_ok(1, &["get", "tasks", "gated"]);
    assert!(
        table.contains("READY") && table.contains(" no ") && table.contains("status 404"),
        "{table}"
    );

    exec_ok(
        &cluster,
        &waiting.id,
        &["touch", "/www/ready", "/tmp/marker"],
    );
    let ready = wait_ready(&cluster, "gated", true);
    assert_eq!((ready.restarts, ready.not_ready.clone()), (0, None));

    // Readiness fails: out of rotation again, with the reason, and kept so
    // (never restarted for it) for as long as it fails.
    exec_ok(&cluster, &ready.id, &["rm", "/www/ready"]);
    let failing = wait_ready(&cluster, "gated", false);
    assert_eq!(
        failing.not_ready.as_deref(),
        Some("readiness probe failed 2 times in a row: http GET :8080/ready: status 404")
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let still = tasks(&cluster, 1, "gated").unwrap().remove(0);
    assert!(is_running(&still) && !still.ready, "{still:?}");
    assert_eq!(still.restarts, 0, "{still:?}");
    let described = cluster.cli_ok(1, &["describe", "service", "gated"]);
    assert!(
        described.contains("readiness probe failed 2 times in a row"),
        "{described}"
    );
    // The same container: what was written into it is still there.
    exec_ok(&cluster, &still.id, &["test", "-f", "/tmp/marker"]);

    // It passes again: back in rotation, still never restarted.
    exec_ok(&cluster, &still.id, &["touch", "/www/ready"]);
    let back = wait_ready(&cluster, "gated", true);
    assert_eq!(back.restarts, 0, "{back:?}");
    exec_ok(&cluster, &back.id, &["test", "-f", "/tmp/marker"]);
}

#[test]
fn a_failing_liveness_probe_restarts_the_container_by_policy() {
    let cluster = cluster_with_image("clv", 1);
    let live = "  command: [\"sh\", \"-c\", \"touch /tmp/ok; trap 'exit 0' TERM; sleep 100000 & wait\"]\n  \
                probes:\n    liveness:\n      exec: [\"test\", \"-f\", \"/tmp/ok\"]\n      \
                interval: 200ms\n      failureThreshold: 2\n  restartPolicy:\n    \
                condition: always\n    backoff: {initial: 100ms, max: 200ms}\n";
    apply_ok(&cluster, 1, &service_yaml("live", 1, live));
    let first = wait_converged(&cluster, 1, "live", 1).remove(0);
    // No readiness or startup probe: ready as soon as it runs.
    assert!(first.ready, "{first:?}");
    exec_ok(&cluster, &first.id, &["rm", "/tmp/ok"]);
    wait_until(CONVERGE, "the container failing liveness restarted", || {
        let tasks = tasks(&cluster, 1, "live")?;
        tasks
            .first()
            .filter(|t| t.restarts >= 1 && is_running(t))
            .cloned()
            .ok_or_else(|| summarize(&tasks))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&cluster)));
}
