//! Secrets and configs delivered to a task on a real two-node cluster: the
//! task reads them as a non-root user at their targets with the asked
//! mode/uid/gid, read-only; the secret's plaintext (a 32-byte random
//! marker) is in no byte under either node's data dir except inside the
//! task's tmpfs while it runs, nor in any CLI output or node log; the node
//! that runs no consumer never mounts or holds it; a spec naming a missing
//! secret is refused with field and line; `rm` of an object in use is
//! refused naming the service; stopping the task unmounts the tmpfs.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{form_labelled, node_logs, running_task, EdgeCluster, CONVERGE};
use crate::support::wait_until;

fn marker() -> Vec<u8> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..32).map(|_| rng.gen_range(b'A'..=b'Z')).collect()
}

/// The mount points under `root`, from this process's mountinfo (the nodes
/// share the host's mount namespace: the harness enters only their
/// network namespace).
fn mounts_under(root: &Path) -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = PathBuf::from(fields.get(4)?.replace("\\040", " "));
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?.to_string();
            point.starts_with(root).then_some((point, fstype))
        })
        .collect()
}

/// Files under `root` holding any needle, not descending into `skip`.
fn files_holding(root: &Path, needles: &[Vec<u8>], skip: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if skip.contains(&dir) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                if let Ok(bytes) = std::fs::read(&path) {
                    if needles
                        .iter()
                        .any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
                    {
                        found.push(path);
                    }
                }
            }
        }
    }
    found
}

fn holds(haystack: &str, needles: &[Vec<u8>]) -> bool {
    needles.iter().any(|n| {
        haystack
            .as_bytes()
            .windows(n.len())
            .any(|w| w == n.as_slice())
    })
}

fn apply(cluster: &EdgeCluster, name: &str, yaml: &str) -> std::process::Output {
    let file = cluster.dirs.path().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write spec");
    cluster.cli(1, &["apply", "-f", file.to_str().expect("utf-8 path")])
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_task_reads_its_secret_and_config_as_non_root_and_the_plaintext_stays_in_its_tmpfs() {
    crate::support::require_root("secrets delivery");
    let cluster = form_labelled(EdgeCluster::new("sdl", 2), 2, &[]);
    let updated_marker = marker();
    let marker = marker();
    let needles = vec![
        marker.clone(),
        hex::encode(&marker).into_bytes(),
        updated_marker.clone(),
        hex::encode(&updated_marker).into_bytes(),
    ];
    let mut outputs = Vec::new();

    // Outside every data dir, and gone once the secret is made.
    let marker_file = cluster.dirs.path().join("marker");
    std::fs::write(&marker_file, &marker).expect("marker file");
    let created = wait_until(CONVERGE, "the keyring's first data key", || {
        let out = cluster.cli(
            1,
            &[
                "secret",
                "create",
                "pw",
                marker_file.to_str().expect("utf-8"),
            ],
        );
        if out.status.success() {
            Ok(text(&out))
        } else {
            Err(text(&out))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    outputs.push(created);
    std::fs::remove_file(&marker_file).expect("marker file removed");
    for (name, content) in [
        ("app.conf", "listen 8080\n"),
        ("app.env", "# from a config\nGREETING=hello-from-config\n"),
    ] {
        let file = cluster.dirs.path().join(name);
        std::fs::write(&file, content).expect("config file");
        outputs.push(cluster.cli_ok(
            1,
            &["config", "create", name, file.to_str().expect("utf-8")],
        ));
    }

    // A name that does not exist: refused at apply, with field and line.
    let unknown = apply(
        &cluster,
        "bad",
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  image: busybox:latest\n  secrets:\n    - name: pw\n    - name: nope\n",
    );
    assert!(!unknown.status.success(), "accepted: {}", text(&unknown));
    assert!(
        text(&unknown).contains("spec.secrets[1].name (line 9")
            && text(&unknown).contains("secret \"nope\" does not exist"),
        "{}",
        text(&unknown)
    );

    let script = "stat -c 'mode=%a owner=%u:%g' /run/secrets/pw; echo uid=$(id -u); \
                  sha256sum /run/secrets/pw; cat /etc/app.conf; stat -c 'conf=%a' /etc/app.conf; \
                  echo env=$GREETING; \
                  touch /run/secrets/pw 2>/dev/null && echo secret=writable || echo secret=read-only; \
                  exec sleep 100000";
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: reader\nspec:\n  \
         image: busybox:latest\n  command: [\"sh\", \"-c\", {script:?}]\n  user: \"1000:1000\"\n  \
         secrets:\n    - {{name: pw, uid: 1000, gid: 1000, mode: 0400}}\n  configs:\n    \
         - {{name: app.conf, target: /etc/app.conf, mode: 0440, gid: 1000}}\n  envFrom:\n    \
         - config: app.env\n  placement:\n    constraints:\n      - node.labels.slot == n2\n"
    );
    let applied = apply(&cluster, "reader", &yaml);
    assert!(applied.status.success(), "{}", text(&applied));
    let task = running_task(&cluster, "reader");

    let expected_digest = hex::encode(Sha256::digest(&marker));
    let log = wait_until(CONVERGE, "the reader's report", || {
        let out = cluster.cli(1, &["logs", task.id.as_str()]);
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        if log.contains("secret=") {
            Ok(log)
        } else {
            Err(text(&out))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    for line in [
        "mode=400 owner=1000:1000",
        "uid=1000",
        expected_digest.as_str(),
        "listen 8080",
        "conf=440",
        "env=hello-from-config",
        "secret=read-only",
    ] {
        assert!(
            log.contains(line),
            "{line:?} not in the task's output:\n{log}"
        );
    }
    outputs.push(log);

    // The secret lives in a tmpfs on node 2 only, and holds the marker.
    let n1 = cluster.data_dir(1);
    let n2 = cluster.data_dir(2);
    let on_n2 = mounts_under(&n2.join("run/secrets"));
    assert_eq!(on_n2.len(), 1, "{on_n2:?}");
    assert_eq!(on_n2[0].1, "tmpfs");
    let tmpfs = on_n2[0].0.clone();
    assert_eq!(
        files_holding(&tmpfs, &needles, &[]).len(),
        1,
        "the marker is where the task reads it"
    );
    assert!(mounts_under(&n1.join("run")).is_empty());

    // In use: not removable, and the services using it are shown.
    for (kind, name) in [
        ("secret", "pw"),
        ("config", "app.conf"),
        ("config", "app.env"),
    ] {
        let refused = cluster.cli(1, &[kind, "rm", name]);
        assert!(
            !refused.status.success(),
            "{kind} {name} removed while in use"
        );
        assert!(
            text(&refused).contains("used by service(s) reader"),
            "{}",
            text(&refused)
        );
        let listed = cluster.cli_ok(1, &[kind, "ls"]);
        assert!(listed.contains("reader"), "{listed}");
        outputs.push(listed);
    }

    let scan = |what: &str, outputs: &[String]| {
        let skip: Vec<PathBuf> = [&n1, &n2]
            .iter()
            .flat_map(|dir| mounts_under(dir))
            .filter(|(_, fstype)| fstype == "tmpfs")
            .map(|(point, _)| point)
            .collect();
        for dir in [&n1, &n2] {
            let holders = files_holding(dir, &needles, &skip);
            assert!(holders.is_empty(), "{what}: plaintext in {holders:?}");
        }
        for output in outputs {
            assert!(
                !holds(output, &needles),
                "{what}: plaintext in CLI output {output}"
            );
        }
        for i in 1..=2 {
            let log = cluster.net.log(&EdgeCluster::name(i));
            assert!(!holds(&log, &needles), "{what}: plaintext in node{i}'s log");
        }
    };
    scan("while the task runs", &outputs);

    // A new version rolls the service: a task of the next generation reads
    // it, and the old task's tmpfs goes with its container.
    std::fs::write(&marker_file, &updated_marker).expect("marker file");
    let update_started = std::time::Instant::now();
    let updated = cluster.cli(
        1,
        &[
            "secret",
            "update",
            "pw",
            marker_file.to_str().expect("utf-8"),
        ],
    );
    std::fs::remove_file(&marker_file).expect("marker file removed");
    assert!(updated.status.success(), "{}", text(&updated));
    outputs.push(text(&updated));
    let rolled = wait_until(CONVERGE, "a reader of generation 2 running", || {
        let tasks: Vec<edgectl::api::TaskView> =
            cluster.cli_json(1, &["get", "tasks", "reader"])?;
        tasks
            .into_iter()
            .find(|t| {
                t.generation == 2
                    && t.state == Some(edgectl::orchestrator::records::TaskState::Running)
            })
            .ok_or("not yet".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    assert_eq!(rolled.objects.get("secret/pw"), Some(&2), "{rolled:?}");
    assert_eq!(
        rolled.objects.get("config/app.conf"),
        Some(&1),
        "{rolled:?}"
    );
    let services: Vec<edgectl::api::ServiceSummary> = cluster
        .cli_json(1, &["get", "services"])
        .expect("get services");
    assert_eq!(
        services[0].objects.get("secret/pw"),
        Some(&2),
        "{services:?}"
    );
    let table = cluster.cli_ok(1, &["get", "tasks", "reader"]);
    assert!(table.contains("secret/pw@2"), "{table}");
    outputs.push(table);
    let updated_digest = hex::encode(Sha256::digest(&updated_marker));
    let log = wait_until(CONVERGE, "the new reader's report", || {
        let out = cluster.cli(1, &["logs", rolled.id.as_str()]);
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        log.contains(&updated_digest)
            .then_some(log)
            .ok_or_else(|| text(&out))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    println!(
        "secret update -> the rolled task printed the new value's digest: {:?} \
         (1 replica, parallelism 1)",
        update_started.elapsed()
    );
    outputs.push(log);
    wait_until(CONVERGE, "the old task's tmpfs removed", || {
        (!tmpfs.exists()).then_some(()).ok_or(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let tmpfs = mounts_under(&n2.join("run/secrets"))
        .first()
        .map(|(point, _)| point.clone())
        .expect("the new task's tmpfs");
    scan("after the update", &outputs);

    // Stopping the task unmounts and removes its tmpfs.
    cluster.cli_ok(1, &["delete", "service", "reader"]);
    wait_until(CONVERGE, "the task's tmpfs unmounted and removed", || {
        let left = mounts_under(&n2.join("run/secrets"));
        if left.is_empty() && !tmpfs.exists() {
            Ok(())
        } else {
            Err(format!("{left:?}, dir exists: {}", tmpfs.exists()))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    let removed = wait_until(CONVERGE, "pw removable once reader is gone", || {
        let out = cluster.cli(1, &["secret", "rm", "pw"]);
        if out.status.success() {
            Ok(text(&out))
        } else {
            Err(text(&out))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    outputs.push(removed);
    scan("after the task stopped", &outputs);
    println!(
        "secrets delivery: task {} on node2, tmpfs {} mounted while it ran, none on node1",
        task.id,
        tmpfs.display()
    );
}

/// Lines of `file` that hold `needle` (0 if it is not there yet).
fn count_lines(file: &Path, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .map(|text| text.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

#[test]
fn a_cut_off_node_restarts_its_task_with_its_secret_and_a_corrupt_keyring_holds_only_those_tasks() {
    crate::support::require_root("secrets delivery");
    let mut cluster = form_labelled(EdgeCluster::new("sdr", 2), 2, &[]);
    let marker = marker();
    let needles = vec![marker.clone(), hex::encode(&marker).into_bytes()];
    let marker_file = cluster.dirs.path().join("marker");
    std::fs::write(&marker_file, &marker).expect("marker file");
    wait_until(CONVERGE, "the keyring's first data key", || {
        let out = cluster.cli(
            1,
            &[
                "secret",
                "create",
                "pw",
                marker_file.to_str().expect("utf-8"),
            ],
        );
        out.status.success().then_some(()).ok_or_else(|| text(&out))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(&marker_file).expect("marker file removed");

    // Each run of the looper appends its secret's digest to a host file,
    // then fails: every restart is a new delivery.
    let out_dir = cluster.dirs.path().join("looper-out");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let out_file = out_dir.join("log");
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: looper\nspec:\n  \
         image: busybox:latest\n  command: [\"sh\", \"-c\", \"sha256sum /run/secrets/pw >> /out/log; sleep 1; exit 1\"]\n  \
         secrets:\n    - name: pw\n  volumes:\n    - {{name: out, type: hostPath, path: {}}}\n  \
         mounts:\n    - {{volume: out, path: /out}}\n  restartPolicy:\n    backoff: {{initial: 100ms, max: 500ms}}\n  \
         placement:\n    constraints:\n      - node.labels.slot == n2\n",
        out_dir.display()
    );
    let applied = apply(&cluster, "looper", &yaml);
    assert!(applied.status.success(), "{}", text(&applied));
    super::run_on(
        &cluster,
        "plain",
        "busybox:latest",
        2,
        "  command: [\"sleep\", \"100000\"]\n",
    );
    running_task(&cluster, "plain");
    let digest = hex::encode(Sha256::digest(&marker));
    wait_until(CONVERGE, "the looper restarted with its secret", || {
        let runs = count_lines(&out_file, &digest);
        (runs >= 2).then_some(()).ok_or(runs)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));

    // Cut off from the leader, node 2 still restarts it with its secret,
    // from its own replica and keyring key.
    cluster.net.partition(2);
    let before = count_lines(&out_file, &digest);
    let cut_off = wait_until(CONVERGE, "restarts while cut off", || {
        let runs = count_lines(&out_file, &digest);
        (runs >= before + 2).then_some(runs).ok_or(runs)
    });
    cluster.net.heal(2);
    let runs = cut_off.unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    println!("looper runs: {before} before the partition, {runs} at its end");

    // A corrupt keyring key: node 2 says so, tasks that need a secret do
    // not start, the others run.
    // Back in touch (its tasks may have been replaced meanwhile): wait
    // until plain runs again before breaking the key.
    let plain_before = running_task(&cluster, "plain").id;
    cluster.kill(2);
    std::fs::write(cluster.data_dir(2).join("keyring/node.key"), "not a key\n")
        .expect("corrupt the keyring key");
    cluster.serve(2);
    let held = wait_until(CONVERGE, "the looper held for the keyring", || {
        let tasks: Vec<edgectl::api::TaskView> =
            cluster.cli_json(1, &["get", "tasks", "looper"])?;
        tasks
            .into_iter()
            .find_map(|t| match &t.state {
                Some(edgectl::orchestrator::records::TaskState::Pending { reason })
                    if reason.contains("corrupt") && t.node.as_deref() == Some("node2") =>
                {
                    Some(reason.clone())
                }
                _ => None,
            })
            .ok_or_else(|| format!("{tasks:?}", tasks = cluster.cli(1, &["get", "tasks"])))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    assert!(held.contains("secret \"pw\""), "{held}");
    let log = cluster.net.log(&EdgeCluster::name(2));
    assert!(log.contains("is corrupt"), "node2 does not say why:\n{log}");
    let plain = running_task(&cluster, "plain");
    println!(
        "held: {held}; plain runs as {} (was {plain_before})",
        plain.id
    );
    // The looper does not run again while the key is broken.
    let stalled = count_lines(&out_file, &digest);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(count_lines(&out_file, &digest), stalled);

    let skip: Vec<PathBuf> = [cluster.data_dir(1), cluster.data_dir(2)]
        .iter()
        .flat_map(|dir| mounts_under(dir))
        .filter(|(_, fstype)| fstype == "tmpfs")
        .map(|(point, _)| point)
        .collect();
    for i in 1..=2 {
        let holders = files_holding(&cluster.data_dir(i), &needles, &skip);
        assert!(holders.is_empty(), "plaintext in {holders:?}");
        let log = cluster.net.log(&EdgeCluster::name(i));
        assert!(!holds(&log, &needles), "plaintext in node{i}'s log");
    }
    // Node 2 may still hold the looper's last tmpfs; the teardown's
    // `edgectl reset` takes it with the containers.
    let root = cluster.dirs.path().to_path_buf();
    drop(cluster);
    let left = mounts_under(&root);
    assert!(left.is_empty(), "reset left mounts behind: {left:?}");
}

/// `onChange: {signal: SIGHUP}`: `secret update` swaps the file into the
/// running task and sends it SIGHUP; the task reads the new value in the
/// same container (no restart, same creation time, no new generation). A
/// config with `onChange: {signal: USR1}` follows `config update` alike.
#[test]
fn on_change_signal_swaps_the_secret_in_place_and_the_task_reads_it_on_sighup() {
    crate::support::require_root("secrets delivery");
    let cluster = form_labelled(EdgeCluster::new("sdh", 2), 2, &[]);
    let first = marker();
    let second = marker();
    let marker_file = cluster.dirs.path().join("marker");
    std::fs::write(&marker_file, &first).expect("marker file");
    wait_until(CONVERGE, "the keyring's first data key", || {
        let out = cluster.cli(
            1,
            &[
                "secret",
                "create",
                "pw",
                marker_file.to_str().expect("utf-8"),
            ],
        );
        out.status.success().then_some(()).ok_or_else(|| text(&out))
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let conf_file = cluster.dirs.path().join("app.conf");
    std::fs::write(&conf_file, "level=1\n").expect("config file");
    cluster.cli_ok(
        1,
        &[
            "config",
            "create",
            "app.conf",
            conf_file.to_str().expect("utf-8"),
        ],
    );

    // Digests, not values, go to the log. `wait` returns on the signal, so
    // the trap runs at once; `sleep` in the background keeps PID 1 an idle
    // shell that owns its handler.
    let script = "trap 'echo hup: $(sha256sum < /run/secrets/pw); echo usr1: $(cat /etc/app.conf)' HUP USR1; \
                  echo started: $(sha256sum < /run/secrets/pw); \
                  while true; do sleep 1 & wait $!; done";
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: hupper\nspec:\n  \
         image: busybox:latest\n  command: [\"sh\", \"-c\", {script:?}]\n  \
         secrets:\n    - name: pw\n      onChange:\n        signal: SIGHUP\n  \
         configs:\n    - {{name: app.conf, target: /etc/app.conf, onChange: {{signal: USR1}}}}\n  \
         placement:\n    constraints:\n      - node.labels.slot == n2\n"
    );
    let applied = apply(&cluster, "hupper", &yaml);
    assert!(applied.status.success(), "{}", text(&applied));
    let task = running_task(&cluster, "hupper");
    let log_of = |task: &str| {
        let out = cluster.cli(1, &["logs", task]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first_digest = hex::encode(Sha256::digest(&first));
    let second_digest = hex::encode(Sha256::digest(&second));
    wait_until(CONVERGE, "the task's first read", || {
        let log = log_of(&task.id);
        log.contains(&format!("started: {first_digest}"))
            .then_some(())
            .ok_or(log)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    // The container as the runtime on node 2 made it: its creation time
    // tells a restart (a new container under the same id) apart.
    let record = cluster
        .data_dir(2)
        .join("runtime/containers")
        .join(&task.id)
        .join("record.json");
    let created = || -> u64 {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).expect("container record"))
                .expect("json");
        json["created_unix_ms"].as_u64().expect("created_unix_ms")
    };
    let created_before = created();

    std::fs::write(&marker_file, &second).expect("marker file");
    let update_started = std::time::Instant::now();
    let updated = cluster.cli(
        1,
        &[
            "secret",
            "update",
            "pw",
            marker_file.to_str().expect("utf-8"),
        ],
    );
    std::fs::remove_file(&marker_file).expect("marker file removed");
    assert!(updated.status.success(), "{}", text(&updated));
    wait_until(CONVERGE, "the task's read on SIGHUP", || {
        let log = log_of(&task.id);
        log.contains(&format!("hup: {second_digest}"))
            .then_some(())
            .ok_or(log)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    println!(
        "secret update -> the running task read the new value on SIGHUP: {:?}",
        update_started.elapsed()
    );

    // The same incarnation: one start, no restart, the same task and
    // generation; the service did not roll.
    let log = log_of(&task.id);
    assert_eq!(log.matches("started:").count(), 1, "{log}");
    let tasks: Vec<edgectl::api::TaskView> = cluster
        .cli_json(1, &["get", "tasks", "hupper"])
        .expect("get tasks");
    let running: Vec<_> = tasks
        .iter()
        .filter(|t| t.state == Some(edgectl::orchestrator::records::TaskState::Running))
        .collect();
    assert_eq!(running.len(), 1, "{tasks:?}");
    assert_eq!(running[0].id, task.id, "{tasks:?}");
    assert_eq!(running[0].restarts, 0, "{tasks:?}");
    assert_eq!(running[0].generation, 1, "{tasks:?}");
    assert_eq!(created(), created_before, "the container was made again");

    // A config follows the same way, with its own signal.
    std::fs::write(&conf_file, "level=2\n").expect("config file");
    cluster.cli_ok(
        1,
        &[
            "config",
            "update",
            "app.conf",
            conf_file.to_str().expect("utf-8"),
        ],
    );
    wait_until(
        CONVERGE,
        "the task's read of the new config on SIGUSR1",
        || {
            let log = log_of(&task.id);
            log.contains("usr1: level=2").then_some(()).ok_or(log)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));

    // A second update follows the same way (a mount stacked on the last).
    let third = marker();
    std::fs::write(&marker_file, &third).expect("marker file");
    cluster.cli_ok(
        1,
        &[
            "secret",
            "update",
            "pw",
            marker_file.to_str().expect("utf-8"),
        ],
    );
    std::fs::remove_file(&marker_file).expect("marker file removed");
    let third_digest = hex::encode(Sha256::digest(&third));
    wait_until(CONVERGE, "the task's read of a third version", || {
        let log = log_of(&task.id);
        log.contains(&format!("hup: {third_digest}"))
            .then_some(())
            .ok_or(log)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    assert_eq!(log_of(&task.id).matches("started:").count(), 1);
    assert_eq!(created(), created_before, "the container was made again");

    // No new generation, yet `get tasks` and `get services` show the
    // versions the container now holds, as its node reports them.
    let wanted = std::collections::BTreeMap::from([
        ("config/app.conf".to_string(), 2),
        ("secret/pw".to_string(), 3),
    ]);
    wait_until(CONVERGE, "the swapped versions in get tasks", || {
        let tasks: Vec<edgectl::api::TaskView> = cluster
            .cli_json(1, &["get", "tasks", "hupper"])
            .map_err(|e| e.to_string())?;
        let shown: Vec<_> = tasks.iter().filter(|t| t.id == task.id).collect();
        (shown.len() == 1 && shown[0].objects == wanted && shown[0].generation == 1)
            .then_some(())
            .ok_or(format!("{tasks:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let services: Vec<edgectl::api::ServiceSummary> = cluster
        .cli_json(1, &["get", "services"])
        .expect("get services");
    let hupper = services
        .iter()
        .find(|s| s.name == "hupper")
        .expect("hupper listed");
    assert_eq!(hupper.objects, wanted, "{hupper:?}");
    let held = std::collections::BTreeMap::from([
        ("config/app.conf".to_string(), 1),
        ("secret/pw".to_string(), 1),
    ]);
    assert_eq!(hupper.objects_held, held, "{hupper:?}");
    let table = text(&cluster.cli(1, &["get", "services"]));
    assert!(table.contains("secret/pw@3 1/1"), "{table}");
}
