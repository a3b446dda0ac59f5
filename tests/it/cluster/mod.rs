//! End-to-end tests of the cluster core: real `edgectl` processes, each in a
//! network namespace of its own (scripts/netns-harness.sh), real RocksDB,
//! real QUIC with mutual TLS. Needs root.

mod bad_input;
mod certs;
mod disk;
mod dns;
mod failover;
mod failover_tail;
mod formation;
mod forwarding;
mod membership;
mod moved;
mod network;
mod orchestration;
mod partition;
mod partition_memory;
mod published;
mod restart;
mod rollouts;
mod secrets_delivery;
mod vips;
mod volumes;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use crate::support::{edgectl_bin, wait_until, NetnsCluster};
use edgectl::api::{ClusterStatus, NodeStatus, RaftRole};
use serde::de::DeserializeOwned;

/// Generous: the machine has two cores shared by every test.
pub const CONVERGE: Duration = Duration::from_secs(30);
pub const PORT: u16 = 7440;

/// A cluster of edgectl nodes, one per namespace. Drop order matters: the
/// namespaces (and every process in them) go before the data dirs.
pub struct EdgeCluster {
    pub net: NetnsCluster,
    pub dirs: tempfile::TempDir,
    bin: PathBuf,
    token: Option<String>,
    /// Extra flags for every `init`/`join`/`serve`.
    node_flags: Vec<String>,
    /// Extra flags for one node's `init`/`join`/`serve`.
    per_node_flags: std::collections::BTreeMap<usize, Vec<String>>,
}

impl Drop for EdgeCluster {
    /// Node processes first (the harness), then the containers they left:
    /// containers outlive their daemon by design (no shim), so the test
    /// removes them, their mounts and cgroups with `edgectl reset`.
    fn drop(&mut self) {
        self.net.teardown();
        for i in 1..=self.net.nodes() {
            remove_containers(&self.bin, &self.data_dir(i));
        }
    }
}

/// Stops and deletes every container of the node whose data dir is `dir`,
/// with `edgectl reset --keep-data` (the data dir goes with the temp dir).
/// It runs in an empty network namespace of its own: the node's namespace
/// is gone by now, and `reset` also deletes the bridge, routes and
/// nftables table of the namespace it runs in, which must not be the
/// host's.
fn remove_containers(bin: &std::path::Path, dir: &std::path::Path) {
    if !dir.join("node.json").exists() {
        return;
    }
    match std::process::Command::new("unshare")
        .args(["--net", "--"])
        .arg(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(["reset", "--keep-data"])
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "cleanup of {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("cleanup of {}: {e}", dir.display()),
    }
}

impl EdgeCluster {
    pub fn new(prefix: &str, nodes: usize) -> EdgeCluster {
        Self::with_flags(prefix, nodes, &[])
    }

    pub fn with_flags(prefix: &str, nodes: usize, flags: &[&str]) -> EdgeCluster {
        let net = NetnsCluster::up(prefix, nodes);
        let dirs = tempfile::Builder::new()
            .prefix(&format!("edgectl-it-{prefix}-"))
            .tempdir()
            .expect("temp dir");
        EdgeCluster {
            net,
            dirs,
            bin: edgectl_bin(env!("CARGO_BIN_EXE_edgectl")),
            token: None,
            node_flags: flags.iter().map(|s| s.to_string()).collect(),
            per_node_flags: Default::default(),
        }
    }

    /// Extra flags for node `i` only (after the cluster-wide ones, so they win).
    pub fn set_node_flags(&mut self, i: usize, flags: &[&str]) {
        self.per_node_flags
            .insert(i, flags.iter().map(|s| s.to_string()).collect());
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dirs.path().join(format!("n{i}"))
    }

    pub fn listen(&self, i: usize) -> String {
        format!("{}:{PORT}", self.net.addr(i))
    }

    pub fn name(i: usize) -> String {
        format!("node{i}")
    }

    pub fn token(&self) -> &str {
        self.token.as_deref().expect("cluster initialized")
    }

    /// `HOME=` for node processes: `init` writes the admin config under
    /// `$HOME/.config/edgectl` when none is there, and a test must not leave
    /// one behind on the machine.
    pub fn home_env(&self) -> String {
        format!("HOME={}", self.dirs.path().join("home").display())
    }

    fn node_command(&self, i: usize, verb: &[String]) -> Vec<String> {
        let mut command = vec![
            "env".into(),
            self.home_env(),
            self.bin.display().to_string(),
            "--data-dir".into(),
            self.data_dir(i).display().to_string(),
        ];
        command.extend(verb.iter().cloned());
        command.extend(self.node_flags.iter().cloned());
        command.extend(self.per_node_flags.get(&i).into_iter().flatten().cloned());
        command
    }

    /// Starts node `i` as the first node and waits for its join token.
    pub fn init(&mut self, i: usize) {
        self.start_node(i, vec!["init".into()]);
        let name = Self::name(i);
        let token = wait_until(CONVERGE, "the join token printed by init", || {
            self.net
                .log(&name)
                .lines()
                .find_map(|l| l.strip_prefix("join token: ").map(str::to_string))
        })
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", self.net.log(&name)));
        self.token = Some(token);
    }

    /// Starts node `i` joining through node `via` with the cluster's token.
    pub fn join(&mut self, i: usize, via: usize) {
        let token = self.token().to_string();
        self.join_with_token(i, via, &token);
        self.wait_member(i);
    }

    pub fn join_with_token(&mut self, i: usize, via: usize, token: &str) {
        self.start_node(
            i,
            vec![
                "join".into(),
                self.listen(via),
                "--token".into(),
                token.into(),
            ],
        );
    }

    /// Starts `edgectl VERB --listen <node i> --name node<i>` in node `i`'s namespace.
    fn start_node(&mut self, i: usize, mut verb: Vec<String>) {
        verb.extend([
            "--listen".into(),
            self.listen(i),
            "--name".into(),
            Self::name(i),
        ]);
        let command = self.node_command(i, &verb);
        self.net.start(i, &Self::name(i), command);
    }

    /// Restarts node `i` from its data dir.
    pub fn serve(&mut self, i: usize) {
        let command = self.node_command(i, &["serve".to_string()]);
        self.net.start(i, &Self::name(i), command);
    }

    pub fn kill(&self, i: usize) {
        self.net.kill(&Self::name(i));
    }

    /// Runs `edgectl --data-dir <node i> ARGS` inside node `i`'s namespace.
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        let mut command = vec![
            self.bin.display().to_string(),
            "--data-dir".into(),
            self.data_dir(i).display().to_string(),
        ];
        command.extend(args.iter().map(|s| s.to_string()));
        self.net.exec(i, command)
    }

    pub fn cli_ok(&self, i: usize, args: &[&str]) -> String {
        let output = self.cli(i, args);
        assert!(
            output.status.success(),
            "edgectl {args:?} on node {i} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `edgectl ARGS -o json`, parsed; Err holds stderr.
    pub fn cli_json<T: DeserializeOwned>(&self, i: usize, args: &[&str]) -> Result<T, String> {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let output = self.cli(i, &args);
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
    }

    pub fn nodes(&self, via: usize) -> Result<Vec<NodeStatus>, String> {
        self.cli_json(via, &["node", "ls"])
    }

    pub fn status(&self, via: usize) -> Result<ClusterStatus, String> {
        self.cli_json(via, &["cluster", "status"])
    }

    pub fn put(&self, via: usize, key: &str, value: &str) -> Output {
        self.cli(via, &["kv", "put", key, value])
    }

    pub fn get(&self, via: usize, key: &str, stale: bool) -> Option<String> {
        let mut args = vec!["kv", "get", key];
        if stale {
            args.push("--stale");
        }
        let output = self.cli(via, &args);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Waits until node `i` is in the membership as seen by the leader.
    pub fn wait_member(&self, i: usize) {
        let name = Self::name(i);
        wait_until(CONVERGE, &format!("{name} in the membership"), || {
            self.nodes(i)
                .map(|nodes| nodes.iter().any(|n| n.name == name))
                .unwrap_or(false)
        })
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", self.net.log(&name)));
    }

    /// Waits until the leader (asked through `via`) reports `voters` voters,
    /// every listed node healthy, and returns its view.
    pub fn wait_voters(&self, via: usize, voters: usize, total: usize) -> Vec<NodeStatus> {
        wait_until(
            CONVERGE,
            &format!("{voters} voters among {total} healthy nodes"),
            || {
                let nodes = self.nodes(via)?;
                let voter_count = nodes.iter().filter(|n| n.role == RaftRole::Voter).count();
                let healthy = nodes.iter().filter(|n| n.healthy).count();
                if voter_count == voters && nodes.len() == total && healthy == total {
                    Ok(nodes)
                } else {
                    Err(format!("{nodes:?}"))
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The leader's node number (1-based index = node id order of joining is
    /// not assumed: the name tells).
    pub fn leader_index(&self, via: usize) -> Result<usize, String> {
        let nodes = self.nodes(via)?;
        let leader = nodes.iter().find(|n| n.leader).ok_or("no leader")?;
        leader
            .name
            .strip_prefix("node")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("odd name {}", leader.name))
    }

    /// Forms a cluster of nodes 1..=n: init on 1, join the rest through 1.
    pub fn form(&mut self, n: usize) {
        self.init(1);
        for i in 2..=n {
            self.join(i, 1);
        }
    }
}

/// The running task of `service`, once it runs and has an address (asked
/// of node 1); panics with the nodes' last log lines after [`CONVERGE`].
pub fn running_task(cluster: &EdgeCluster, service: &str) -> edgectl::api::TaskView {
    running_task_via(cluster, 1, service)
}

/// [`running_task`], asked of node `via` (a node of another cluster).
pub fn running_task_via(
    cluster: &EdgeCluster,
    via: usize,
    service: &str,
) -> edgectl::api::TaskView {
    use edgectl::orchestrator::records::{DesiredState, TaskState};
    wait_until(
        CONVERGE,
        &format!("{service} running with an address"),
        || {
            let tasks: Vec<edgectl::api::TaskView> =
                cluster.cli_json(via, &["get", "tasks", service])?;
            tasks
                .into_iter()
                .find(|t| {
                    t.desired == DesiredState::Running
                        && t.state == Some(TaskState::Running)
                        && t.ip.is_some()
                })
                .ok_or_else(|| format!("not running yet ({service})"))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(cluster)))
}

/// The last 12 lines of every node's log, for a failure message.
pub fn node_logs(cluster: &EdgeCluster) -> String {
    (1..=cluster.net.nodes())
        .map(|i| {
            let log = cluster.net.log(&EdgeCluster::name(i));
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            format!(
                "--- node{i}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Forms the cluster with node `i` labelled `slot=n<i>` (`init_flags` go
/// to node 1, which inits), and imports the busybox and httpd images.
pub fn form_labelled(mut cluster: EdgeCluster, n: usize, init_flags: &[&str]) -> EdgeCluster {
    for i in 1..=n {
        let label = format!("slot=n{i}");
        let mut flags = vec!["--label", label.as_str()];
        if i == 1 {
            flags.extend_from_slice(init_flags);
        }
        cluster.set_node_flags(i, &flags);
    }
    cluster.form(n);
    import_images(&cluster, 1);
    cluster
}

/// Imports the busybox and httpd images through node `via`.
pub fn import_images(cluster: &EdgeCluster, via: usize) {
    let images = crate::support::test_images_dir(env!("CARGO_TARGET_TMPDIR"));
    for image in ["busybox.tar", "httpd.tar"] {
        let archive = images.join(image);
        cluster.cli_ok(
            via,
            &["image", "import", archive.to_str().expect("utf-8 path")],
        );
    }
}

/// Runs one replica of `image` on node `on` (by its label).
pub fn run_on(cluster: &EdgeCluster, name: &str, image: &str, on: usize, command: &str) {
    run_on_via(cluster, 1, name, image, on, command);
}

/// [`run_on`], applied through node `via` (a node of another cluster).
pub fn run_on_via(
    cluster: &EdgeCluster,
    via: usize,
    name: &str,
    image: &str,
    on: usize,
    command: &str,
) {
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  \
         image: {image}\n  replicas: 1\n{command}  placement:\n    constraints:\n      \
         - node.labels.slot == n{on}\n"
    );
    let file = cluster.dirs.path().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write spec");
    cluster.cli_ok(via, &["apply", "-f", file.to_str().expect("utf-8 path")]);
}
