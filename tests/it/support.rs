//! Test support: a multi-node cluster of network namespaces, driven through
//! `scripts/netns-harness.sh`, for the end-to-end tests of the root package.
//!
//! This is not a library: failures of the harness itself (a namespace that
//! cannot be created, a process that cannot be started) panic with the
//! script's own error, which is how a test should fail on them. Everything a
//! test wants to assert on (a command's exit status, a process's status, a
//! log) is returned as a value instead.
//!
//! The tests that use it need root. They panic with a clear message when not
//! run as root rather than skipping silently.

use std::ffi::OsStr;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Where the harness keeps its state (logs, pids) for each cluster.
pub const HARNESS_STATE_ROOT: &str = "/run/edgectl-harness";

/// How often `wait_until` probes: often enough that a test is not slowed
/// noticeably, rarely enough that a probe running a command does not load
/// the two cores everything shares.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How many trailing lines of each process log `Drop` prints when the test
/// is failing.
const LOG_TAIL_LINES_ON_PANIC: usize = 40;

/// The harness script of this repository.
pub fn harness_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/netns-harness.sh")
}

/// The `edgectl` binary under test. Only integration tests of the root
/// package have `CARGO_BIN_EXE_edgectl`, so the caller passes it:
/// `edgectl_bin(env!("CARGO_BIN_EXE_edgectl"))`.
pub fn edgectl_bin(path_from_cargo: &str) -> PathBuf {
    let path = PathBuf::from(path_from_cargo);
    assert!(
        path.is_file(),
        "edgectl binary {} does not exist (was it built?)",
        path.display()
    );
    path
}

/// Panics unless the test runs as root: namespaces and iptables need it, and
/// a root-only test must fail loudly, never pass by doing nothing.
pub fn require_root(what: &str) {
    let status = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_else(|err| panic!("cannot read /proc/self/status: {err}"));
    // Line "Uid:\treal\teffective\tsaved\tfs"; what counts is the effective id.
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no Uid line in /proc/self/status"));
    assert!(
        effective_uid == "0",
        "{what} needs root (network namespaces, veths, iptables); run the tests as root \
         (e.g. `sudo -E cargo test`), effective uid is {effective_uid}"
    );
}

/// What the harness knows of a process started with [`NetnsCluster::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessStatus {
    /// Still running, with this pid.
    Running(u32),
    /// Ended with this status (128 + signal number when killed by a signal).
    Exited(i32),
    /// Ended with no recorded status (killed together with its supervisor).
    Gone,
}

/// A cluster of `n` node namespaces on one bridge. Dropping it tears
/// everything down (processes, namespaces, state), even when the test panics.
pub struct NetnsCluster {
    prefix: String,
    addrs: Vec<Ipv4Addr>,
    script: PathBuf,
    started: Vec<String>,
    is_down: bool,
}

impl NetnsCluster {
    /// Builds the cluster, replacing any leftovers of an earlier run with the
    /// same prefix. `prefix`: a lowercase letter then up to 9 lowercase
    /// letters or digits, distinct for every cluster that may run at the same
    /// time (tests in one binary run in parallel).
    pub fn up(prefix: &str, n: usize) -> NetnsCluster {
        NetnsCluster::up_with_subnet(prefix, n, None)
    }

    /// Like [`NetnsCluster::up`], with node `i` at `subnet.i` (e.g.
    /// `Some("10.213.9")`) instead of the subnet derived from the prefix.
    pub fn up_with_subnet(prefix: &str, n: usize, subnet: Option<&str>) -> NetnsCluster {
        require_root("NetnsCluster");
        let mut cluster = NetnsCluster {
            prefix: prefix.to_string(),
            addrs: Vec::new(),
            script: harness_script(),
            started: Vec::new(),
            is_down: false,
        };
        let n_text = n.to_string();
        let mut args = vec!["up"];
        if let Some(subnet) = subnet {
            args.extend(["--subnet", subnet]);
        }
        args.extend([prefix, n_text.as_str()]);
        // From here on `cluster` exists, so a failure below still runs `down`.
        let stdout = cluster.harness_ok(&args);
        // One line per node: "PREFIX-nI ADDRESS".
        for line in stdout.lines() {
            let addr_text = line
                .split_whitespace()
                .last()
                .unwrap_or_else(|| panic!("harness up printed an empty line"));
            let addr: Ipv4Addr = addr_text
                .parse()
                .unwrap_or_else(|err| panic!("harness up printed {line:?}: {err}"));
            cluster.addrs.push(addr);
        }
        assert_eq!(
            cluster.addrs.len(),
            n,
            "harness up printed {} addresses for {n} nodes:\n{stdout}",
            cluster.addrs.len()
        );
        cluster
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Number of nodes; nodes are numbered 1..=nodes().
    pub fn nodes(&self) -> usize {
        self.addrs.len()
    }

    /// Node `i`'s address on the cluster bridge (`i` from 1).
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.check_node(i);
        self.addrs[i - 1]
    }

    /// The harness's state directory of this cluster (logs, pid files).
    pub fn state_dir(&self) -> PathBuf {
        Path::new(HARNESS_STATE_ROOT).join(&self.prefix)
    }

    /// Runs a command in node `i`'s namespace and waits for it. A non-zero
    /// exit is not a panic: it is in the returned `Output`.
    pub fn exec<I, S>(&self, i: usize, command: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.check_node(i);
        let mut process = Command::new("bash");
        process
            .arg(&self.script)
            .args(["exec", &self.prefix, &i.to_string(), "--"])
            .args(command);
        process
            .output()
            .unwrap_or_else(|err| panic!("cannot run {process:?}: {err}"))
    }

    /// Like [`NetnsCluster::exec`], but panics unless the command succeeds,
    /// and returns its stdout.
    pub fn exec_ok<I, S>(&self, i: usize, command: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let command: Vec<S> = command.into_iter().collect();
        let shown: Vec<String> = command
            .iter()
            .map(|arg| arg.as_ref().to_string_lossy().into_owned())
            .collect();
        let output = self.exec(i, command);
        assert!(
            output.status.success(),
            "{shown:?} on node {i} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Puts the nodes on two IPv4 subnets joined by a router: node `i` in
    /// `moved` goes from `A.B.C.i/24` to `A.(B+1).C.i/24`, the bridge
    /// namespace routes between the two (its br0 gets `.254` on each), and
    /// every node's default route goes through it. The nodes still share
    /// the bridge, but no node has the others of the other subnet on a
    /// connected route: a plain route via such a node is refused, as on
    /// two real segments. Call before starting anything on the nodes.
    pub fn split_by_router(&mut self, moved: &[usize]) {
        let router_ns = format!("{}-br", self.prefix);
        let run = |command: &[&str]| {
            let output = Command::new(command[0])
                .args(&command[1..])
                .output()
                .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
            assert!(
                output.status.success(),
                "{command:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let [a, b, c, _] = self.addr(1).octets();
        let other_b = b.wrapping_add(1);
        let gateway = |second: u8| format!("{a}.{second}.{c}.254");
        for second in [b, other_b] {
            let address = format!("{}/24", gateway(second));
            run(&[
                "ip", "-n", &router_ns, "addr", "add", &address, "dev", "br0",
            ]);
        }
        for setting in [
            "net.ipv4.ip_forward=1",
            // Keep the router in the path: no redirect to the shared bridge.
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.br0.send_redirects=0",
        ] {
            run(&["ip", "netns", "exec", &router_ns, "sysctl", "-qw", setting]);
        }
        for i in 1..=self.nodes() {
            let old = self.addr(i);
            let second = if moved.contains(&i) { other_b } else { b };
            if second != b {
                let [_, _, _, d] = old.octets();
                let new = Ipv4Addr::new(a, second, c, d);
                self.exec_ok(
                    i,
                    ["ip", "addr", "del", &format!("{old}/24"), "dev", "eth0"],
                );
                self.exec_ok(
                    i,
                    ["ip", "addr", "add", &format!("{new}/24"), "dev", "eth0"],
                );
                self.addrs[i - 1] = new;
            }
            self.exec_ok(
                i,
                ["ip", "route", "add", "default", "via", &gateway(second)],
            );
        }
    }

    /// Starts a command in the background in node `i`'s namespace under
    /// `name` (stdout and stderr to its log); returns its pid. A name can be
    /// started again once its process has ended (the log is appended to).
    pub fn start<I, S>(&mut self, i: usize, name: &str, command: I) -> u32
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.check_node(i);
        let mut args: Vec<std::ffi::OsString> = vec![
            "start".into(),
            self.prefix.clone().into(),
            i.to_string().into(),
            name.into(),
            "--".into(),
        ];
        args.extend(command.into_iter().map(|arg| arg.as_ref().to_os_string()));
        let stdout = self.harness_ok(&args);
        if !self.started.iter().any(|known| known == name) {
            self.started.push(name.to_string());
        }
        let pid_text = stdout.trim();
        pid_text
            .parse()
            .unwrap_or_else(|err| panic!("harness start printed {pid_text:?}: {err}"))
    }

    /// The pid of process `name` if it is running.
    pub fn pid(&self, name: &str) -> Option<u32> {
        match self.status(name) {
            ProcessStatus::Running(pid) => Some(pid),
            ProcessStatus::Exited(_) | ProcessStatus::Gone => None,
        }
    }

    pub fn status(&self, name: &str) -> ProcessStatus {
        let stdout = self.harness_ok(&["status", &self.prefix, name]);
        let mut words = stdout.split_whitespace();
        match (words.next(), words.next()) {
            (Some("running"), Some(pid)) => ProcessStatus::Running(
                pid.parse()
                    .unwrap_or_else(|err| panic!("harness status printed {stdout:?}: {err}")),
            ),
            (Some("exited"), Some(code)) => ProcessStatus::Exited(
                code.parse()
                    .unwrap_or_else(|err| panic!("harness status printed {stdout:?}: {err}")),
            ),
            (Some("gone"), None) => ProcessStatus::Gone,
            _ => panic!("harness status printed {stdout:?}"),
        }
    }

    /// SIGKILL to process `name` (only that process, not its children:
    /// this is how a crash of a node daemon is simulated); returns once it
    /// is gone. Panics if it is not running.
    pub fn kill(&self, name: &str) {
        self.signal(name, "KILL");
    }

    /// Sends `signal` (e.g. "TERM", "STOP", "CONT", "HUP") to process `name`.
    pub fn signal(&self, name: &str, signal: &str) {
        self.harness_ok(&["kill", &self.prefix, name, signal]);
    }

    /// SIGTERM, then SIGKILL after the grace (10 s, or
    /// `HARNESS_STOP_GRACE`); returns once the process is gone.
    pub fn stop(&self, name: &str) {
        self.harness_ok(&["stop", &self.prefix, name]);
    }

    /// Cuts node `i` off from every other node: everything in and out of its
    /// eth0 is dropped silently (the link stays up).
    pub fn partition(&self, i: usize) {
        self.harness_ok(&["partition", &self.prefix, &i.to_string()]);
    }

    pub fn heal(&self, i: usize) {
        self.harness_ok(&["heal", &self.prefix, &i.to_string()]);
    }

    /// Cuts only the link between nodes `i` and `j`.
    pub fn partition_pair(&self, i: usize, j: usize) {
        self.harness_ok(&[
            "partition-pair",
            &self.prefix,
            &i.to_string(),
            &j.to_string(),
        ]);
    }

    pub fn heal_pair(&self, i: usize, j: usize) {
        self.harness_ok(&["heal-pair", &self.prefix, &i.to_string(), &j.to_string()]);
    }

    /// Drops `percent`% of node `i`'s packets in each direction (0 removes it).
    pub fn loss(&self, i: usize, percent: u8) {
        self.harness_ok(&["loss", &self.prefix, &i.to_string(), &percent.to_string()]);
    }

    /// Everything process `name` wrote to stdout and stderr, across restarts.
    pub fn log(&self, name: &str) -> String {
        self.harness_ok(&["log", &self.prefix, name])
    }

    /// Kills every process in the cluster's namespaces, deletes them and the
    /// state dir. Also done by `Drop`; calling it twice is harmless.
    pub fn down(&mut self) {
        if self.is_down {
            return;
        }
        self.harness_ok(&["down", &self.prefix]);
        self.is_down = true;
    }

    fn check_node(&self, i: usize) {
        assert!(
            (1..=self.addrs.len()).contains(&i),
            "node {i} does not exist: cluster {} has nodes 1..={}",
            self.prefix,
            self.addrs.len()
        );
    }

    /// Runs the harness with `args`, returns its stdout, panics on failure.
    fn harness_ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let mut process = Command::new("bash");
        process.arg(&self.script).args(args);
        let output = process
            .output()
            .unwrap_or_else(|err| panic!("cannot run {process:?}: {err}"));
        assert!(
            output.status.success(),
            "{process:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn print_log_tails(&self) {
        for name in &self.started {
            let path = self.state_dir().join(format!("{name}.log"));
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES_ON_PANIC)..];
            eprintln!(
                "---- {} (last {} lines) ----\n{}",
                path.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl NetnsCluster {
    /// Kills every process and removes the namespaces, printing the node logs'
    /// tails if the test is failing. Never panics (it runs while unwinding).
    pub fn teardown(&mut self) {
        if self.is_down {
            return;
        }
        self.is_down = true;
        if std::thread::panicking() {
            // The test failed: what the processes said is the best clue.
            self.print_log_tails();
        }
        // No panic here: a panic while unwinding would abort the test binary.
        match Command::new("bash")
            .arg(&self.script)
            .args(["down", &self.prefix])
            .output()
        {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "netns cluster {}: down failed ({}): {}",
                self.prefix,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(err) => eprintln!("netns cluster {}: cannot run down: {err}", self.prefix),
        }
    }
}

/// What one probe of [`wait_until`] saw: done, or not yet and why.
pub trait Observation {
    type Value;
    /// `Ok` when the condition holds, `Err(what was seen)` otherwise.
    fn into_result(self) -> Result<Self::Value, String>;
}

impl Observation for bool {
    type Value = ();
    fn into_result(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("condition was false".to_string())
        }
    }
}

impl<T> Observation for Option<T> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet (None)".to_string())
    }
}

impl<T, E: fmt::Debug> Observation for Result<T, E> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.map_err(|err| format!("{err:?}"))
    }
}

/// [`wait_until`] gave up.
#[derive(Debug)]
pub struct WaitTimeout {
    pub what: String,
    pub timeout: Duration,
    pub probes: u32,
    pub last_observation: String,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {} ({} probes); last observation: {}",
            self.timeout, self.what, self.probes, self.last_observation
        )
    }
}

impl std::error::Error for WaitTimeout {}

/// Probes every 50 ms until `probe` says done (`true`, `Some`, `Ok`) and
/// returns its value; after `timeout`, an error naming `what` and the last
/// thing the probe saw. The probe always runs at least once.
pub fn wait_until<O: Observation>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> O,
) -> Result<O::Value, WaitTimeout> {
    let deadline = Instant::now() + timeout;
    let mut probes = 0;
    loop {
        probes += 1;
        let last_observation = match probe().into_result() {
            Ok(value) => return Ok(value),
            Err(observation) => observation,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitTimeout {
                what: what.to_string(),
                timeout,
                probes,
                last_observation,
            });
        }
        std::thread::sleep(WAIT_POLL_INTERVAL.min(deadline - now));
    }
}

/// The test images (busybox.tar, httpd.tar), built once per target dir by
/// scripts/build-images.sh and shared by every test.
pub fn test_images_dir(target_tmpdir: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = Path::new(target_tmpdir);
        let out = tmp.join("edgectl-test-images");
        if out.join("busybox.tar").exists() && out.join("httpd.tar").exists() {
            return out;
        }
        let staging = tmp.join(format!("edgectl-test-images-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-images.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(&staging)
            .status()
            .expect("run scripts/build-images.sh");
        assert!(status.success(), "scripts/build-images.sh failed");
        // Another test process may have finished first: either copy will do.
        if std::fs::rename(&staging, &out).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        out
    })
    .clone()
}

/// A loopback UDP address free right now (QUIC listens on UDP).
pub fn free_udp_addr() -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP port");
    socket
        .local_addr()
        .expect("a bound socket has an address")
        .to_string()
}

/// A one-node cluster in this process, with no agent (no containers):
/// initialised in `dir`/first, listening on a free loopback port. Returns
/// the node and its address.
pub async fn one_node_in_process(dir: &Path) -> (edgectl::node::Node, String) {
    let data = edgectl::paths::DataDir::new(dir.join("first"));
    let listen = free_udp_addr();
    edgectl::node::init_data_dir(
        &data,
        "first",
        &listen,
        &listen,
        raft::transport::pki::LEAF_VALIDITY,
    )
    .expect("init");
    let mut config = edgectl::node::NodeConfig::new(data);
    config.agent.enabled = false;
    let node = edgectl::node::Node::start(config).await.expect("start");
    (node, listen)
}

/// A join token from `node`, once it leads (a fresh node elects itself
/// within a second or so).
pub async fn join_token(node: &edgectl::node::Node) -> String {
    use edgectl::api::{ApiRequest, ApiResponse};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match node
            .request(ApiRequest::TokenCreate {
                ttl_secs: 600,
                description: "test".into(),
            })
            .await
        {
            Ok(ApiResponse::TokenCreated { token, .. }) => return token,
            other => {
                assert!(Instant::now() < deadline, "no token within 60 s: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One in-process cluster with agents at a time, across the test modules
/// (`agent`, `images`). Their nodes share this process's network namespace
/// (one `edgectl0` bridge for every node's block): as separate test
/// binaries they never overlapped, and the first CI run of the one binary
/// saw a crashing task on an in-process worker never restart while the
/// images tests ran (cause not pinned down). Two cores, too, and each
/// cluster runs runtimes, Raft and QUIC.
pub static IN_PROCESS_AGENTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
