//! Volumes end to end: a local volume stays on the node it was made on, its
//! task waits for that node instead of starting empty elsewhere, and a
//! sized volume is a filesystem of its own (real loop device, real ext4).

use edgectl::api::{TaskView, VolumeView};
use edgectl::orchestrator::records::{DesiredState, TaskState};

use super::orchestration::{apply, apply_ok, service_yaml, tasks};
use super::{form_labelled, node_logs, EdgeCluster, CONVERGE};
use crate::support::wait_until;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn node_index(task: &TaskView) -> usize {
    let name = task.node.as_deref().expect("placed");
    (1..=9)
        .find(|i| EdgeCluster::name(*i) == name)
        .unwrap_or_else(|| panic!("unknown node {name}"))
}

/// The running task of `service`, on node 1's view.
fn running(cluster: &EdgeCluster, service: &str) -> TaskView {
    wait_until(CONVERGE, &format!("{service} running"), || {
        tasks(cluster, 1, service)?
            .into_iter()
            .find(|t| t.desired == DesiredState::Running && t.state == Some(TaskState::Running))
            .ok_or_else(|| format!("{service} not running yet"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(cluster)))
}

/// Writes a marker into the volume the first time, then prints what it
/// finds there on every start.
const KEEPER: &str = "  command: [\"sh\", \"-c\", \"[ -f /data/marker ] || echo kept-$(date +%s%N) > /data/marker; echo found: $(cat /data/marker); sleep 100000\"]\n  volumes:\n    - {name: keep, type: local}\n  mounts:\n    - {volume: keep, path: /data}\n  placement:\n    constraints:\n      - node.labels.slot != n1\n";

#[test]
fn a_local_volume_s_task_waits_for_its_node_and_finds_its_data_there() {
    crate::support::require_root("volumes");
    let mut cluster = form_labelled(EdgeCluster::new("vlo", 3), 3, &[]);
    let created = cluster.cli(1, &["volume", "create", "keep", "--size", "16Mi"]);
    assert!(created.status.success(), "{}", text(&created));
    apply_ok(&cluster, 1, &service_yaml("keeper", 1, KEEPER));
    let first = running(&cluster, "keeper");
    let holder = node_index(&first);
    let found = wait_until(CONVERGE, "the keeper's first line", || {
        let log = text(&cluster.cli(1, &["logs", &first.id]));
        log.lines()
            .find_map(|l| l.strip_prefix("found: ").map(str::to_string))
            .ok_or(log)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let volume: VolumeView = cluster
        .cli_json(1, &["volume", "inspect", "keep"])
        .expect("volume inspect");
    assert_eq!(
        volume.node.as_deref(),
        Some(EdgeCluster::name(holder).as_str())
    );
    assert_eq!(volume.used_by, vec!["keeper".to_string()]);

    // The holder dies. The other non-leader node has room and meets the
    // constraint, yet the task waits, saying why.
    cluster.kill(holder);
    let reason = wait_until(CONVERGE, "the keeper pending for its volume", || {
        let all = tasks(&cluster, 1, "keeper")?;
        all.iter()
            .find(|t| t.desired == DesiredState::Running && t.node.is_none())
            .and_then(|t| t.pending_reason.clone())
            .filter(|r| r.contains("volume keep lives on node"))
            .ok_or_else(|| format!("{all:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    assert!(reason.contains("which is down"), "{reason}");
    let all = tasks(&cluster, 1, "keeper").expect("tasks");
    let other = 5 - holder; // 2 <-> 3
    assert!(
        all.iter()
            .all(|t| t.node.as_deref() != Some(EdgeCluster::name(other).as_str())),
        "a task went to the node without the data: {all:?}"
    );
    let listed = text(&cluster.cli(1, &["volume", "ls"]));
    assert!(listed.contains("(down)"), "{listed}");

    // It returns: the task runs there again and finds the same data.
    cluster.serve(holder);
    let again = wait_until(CONVERGE, "the keeper back on its node", || {
        let task = running(&cluster, "keeper");
        (task.id != first.id && node_index(&task) == holder)
            .then_some(task)
            .ok_or("not yet".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    wait_until(CONVERGE, "the same marker after the return", || {
        let log = text(&cluster.cli(1, &["logs", &again.id]));
        log.contains(&format!("found: {found}"))
            .then_some(())
            .ok_or(log)
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // `volume move` to the other node: the task stops, the data is copied,
    // the task starts there with it, and the old copy goes.
    let target = EdgeCluster::name(other);
    let moved = cluster.cli(1, &["volume", "move", "keep", "--to", &target, "--wait"]);
    assert!(
        moved.status.success(),
        "{}\n{}",
        text(&moved),
        node_logs(&cluster)
    );
    assert!(
        text(&moved).contains(&format!("volume keep is on node {target}")),
        "{}",
        text(&moved)
    );
    let after = wait_until(CONVERGE, "the keeper on the new node", || {
        let task = running(&cluster, "keeper");
        (node_index(&task) == other)
            .then_some(task)
            .ok_or("not yet".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    wait_until(CONVERGE, "the same marker after the move", || {
        let log = text(&cluster.cli(1, &["logs", &after.id]));
        log.contains(&format!("found: {found}"))
            .then_some(())
            .ok_or(log)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let old_copy = cluster.data_dir(holder).join("runtime/volumes/keep");
    wait_until(CONVERGE, "the old copy deleted", || {
        (!old_copy.exists())
            .then_some(())
            .ok_or(format!("{} is still there", old_copy.display()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let volume: VolumeView = cluster
        .cli_json(1, &["volume", "inspect", "keep"])
        .expect("volume inspect");
    assert_eq!(volume.node.as_deref(), Some(target.as_str()));
    assert_eq!(volume.moving, None);
    // A node that is not a member is refused, naming the members.
    let refused = cluster.cli(1, &["volume", "move", "keep", "--to", "nowhere"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("not a member"),
        "{}",
        text(&refused)
    );
}

#[test]
fn a_sized_volume_stops_writes_at_its_size_and_is_not_removed_while_used() {
    crate::support::require_root("volumes");
    let cluster = form_labelled(EdgeCluster::new("vsz", 1), 1, &[]);
    let created = cluster.cli(1, &["volume", "create", "small", "--size", "16Mi"]);
    assert!(created.status.success(), "{}", text(&created));
    let too_small = cluster.cli(1, &["volume", "create", "tiny", "--size", "1Mi"]);
    assert!(!too_small.status.success());
    assert!(
        text(&too_small).contains("smallest sized volume"),
        "{}",
        text(&too_small)
    );
    let again = cluster.cli(1, &["volume", "create", "small"]);
    assert!(text(&again).contains("exists already"), "{}", text(&again));

    let filler = "  command: [\"sh\", \"-c\", \"dd if=/dev/zero of=/data/fill bs=1M count=32; echo dd-exit: $?; sleep 100000\"]\n  volumes:\n    - {name: small, type: local}\n  mounts:\n    - {volume: small, path: /data}\n";
    // A spec may not resize it.
    let resized = apply(
        &cluster,
        1,
        &service_yaml(
            "filler",
            1,
            &filler.replace("type: local}", "type: local, size: 64Mi}"),
        ),
    );
    assert!(!resized.status.success());
    assert!(
        text(&resized).contains("cannot be resized"),
        "{}",
        text(&resized)
    );
    apply_ok(&cluster, 1, &service_yaml("filler", 1, filler));
    let task = running(&cluster, "filler");
    let log = wait_until(CONVERGE, "dd to finish", || {
        let log = text(&cluster.cli(1, &["logs", &task.id]));
        log.contains("dd-exit:").then_some(log.clone()).ok_or(log)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("No space left on device"), "{log}");
    assert!(!log.contains("dd-exit: 0"), "{log}");

    // The node's disk holds at most the volume's size for it.
    let image = cluster.data_dir(1).join("runtime/volume-images/small.img");
    let meta = std::fs::metadata(&image).expect("the volume's image");
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 <= 16 * 1024 * 1024,
        "{} bytes",
        meta.blocks() * 512
    );
    let volume = wait_until(CONVERGE, "the volume's usage reported", || {
        let v: VolumeView = cluster.cli_json(1, &["volume", "inspect", "small"])?;
        v.used_bytes
            .filter(|used| *used > 8 * 1024 * 1024)
            .map(|_| v.clone())
            .ok_or(format!("{v:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(volume.size_bytes, Some(16 * 1024 * 1024));

    let refused = cluster.cli(1, &["volume", "rm", "small"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("used by service(s) filler"),
        "{}",
        text(&refused)
    );
    cluster.cli_ok(1, &["delete", "service", "filler"]);
    cluster.cli_ok(1, &["volume", "rm", "small"]);
    let listed: Vec<VolumeView> = cluster.cli_json(1, &["volume", "ls"]).expect("ls");
    assert!(listed.iter().all(|v| v.name != "small"), "{listed:?}");

    // A second sized volume still in use when the node goes: the
    // teardown's `edgectl reset` leaves no loop device behind.
    cluster.cli_ok(1, &["volume", "create", "left", "--size", "8Mi"]);
    let user = filler
        .replace("small", "left")
        .replace("count=32", "count=1");
    apply_ok(&cluster, 1, &service_yaml("user", 1, &user));
    running(&cluster, "user");
    let root = cluster.dirs.path().to_path_buf();
    drop(cluster);
    let attached = wait_until(CONVERGE, "no loop device for the test's images", || {
        let attached = loop_devices_under(&root);
        attached.is_empty().then_some(()).ok_or(attached)
    });
    assert!(attached.is_ok(), "reset left loop devices: {attached:?}");
}

/// Loop devices whose backing file is under `root`.
fn loop_devices_under(root: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            backing
                .trim()
                .starts_with(root.to_str()?)
                .then(|| format!("{:?} -> {}", entry.file_name(), backing.trim()))
        })
        .collect()
}
