//! Tests of the multi-node harness itself (scripts/netns-harness.sh through
//! tests/it/support.rs): real namespaces, a real bridge, real TCP between nodes.
//! Root only: they panic when not run as root.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{self, wait_until, NetnsCluster, ProcessStatus};

/// Port of the echo servers the tests start (inside the node namespaces).
const ECHO_PORT: &str = "7000";

/// Long enough for a veth and a forked echo server to come up on a loaded
/// two-core machine; a healthy run needs a fraction of a second.
const REACH_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts a TCP echo server (busybox nc forking `cat` per connection) on node `i`.
fn start_echo(cluster: &mut NetnsCluster, i: usize, name: &str) {
    cluster.start(
        i,
        name,
        ["busybox", "nc", "-ll", "-p", ECHO_PORT, "-e", "/bin/cat"],
    );
}

/// What one echo attempt from one node to another gave.
#[derive(Debug, PartialEq, Eq)]
enum Echo {
    /// The token came back.
    Reached,
    /// No answer at all: packets dropped (a partition).
    TimedOut,
    /// The node answered that nothing listens (the server is gone).
    Refused,
    Other(String),
}

/// Sends a token from node `from` to the echo server on node `to`. nc gives
/// up after 1 s without a connection.
fn echo(cluster: &NetnsCluster, from: usize, to: usize) -> Echo {
    let token = format!("token-from-{from}-to-{to}");
    let script = format!(
        "echo {token} | busybox nc -w 1 {} {ECHO_PORT}",
        cluster.addr(to)
    );
    let output = cluster.exec(from, ["sh", "-c", script.as_str()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stdout.trim() == token {
        Echo::Reached
    } else if stderr.contains("timed out") {
        Echo::TimedOut
    } else if stderr.contains("refused") {
        Echo::Refused
    } else {
        Echo::Other(format!("stdout {stdout:?}, stderr {stderr:?}"))
    }
}

fn wait_reachable(cluster: &NetnsCluster, from: usize, to: usize) {
    wait_until(
        REACH_TIMEOUT,
        &format!("node {from} to reach the echo server on node {to}"),
        || match echo(cluster, from, to) {
            Echo::Reached => Ok(()),
            other => Err(other),
        },
    )
    .unwrap();
}

fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(output.status.success(), "ip netns list failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

/// True if `pid` is a live process (a zombie is dead: it runs nothing).
fn pid_is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(") ")
                .next()
                .and_then(|rest| rest.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

#[test]
fn nodes_reach_each_other_and_partitions_cut_and_heal() {
    let mut cluster = NetnsCluster::up("hself", 3);
    assert_eq!(cluster.nodes(), 3);
    for i in 1..=3 {
        let addr = cluster.addr(i);
        assert_eq!(addr.octets()[3] as usize, i);
        assert_eq!(addr.octets()[..2], [10, 213]);
        // The node namespace really holds that address on its eth0.
        let shown = cluster.exec_ok(i, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(shown.contains(&format!("{addr}/24")), "node {i}: {shown}");
    }

    start_echo(&mut cluster, 1, "echo1");
    start_echo(&mut cluster, 3, "echo3");
    wait_reachable(&cluster, 2, 1);
    wait_reachable(&cluster, 2, 3);
    wait_reachable(&cluster, 3, 1);

    // Node 1 cut off: nobody reaches it, the others still reach each other.
    cluster.partition(1);
    assert_eq!(echo(&cluster, 2, 1), Echo::TimedOut);
    assert_eq!(echo(&cluster, 3, 1), Echo::TimedOut);
    wait_reachable(&cluster, 2, 3);
    // Partitioning twice is harmless, and one heal undoes it.
    cluster.partition(1);
    cluster.heal(1);
    wait_reachable(&cluster, 2, 1);
    wait_reachable(&cluster, 3, 1);

    // Only the 1-2 link cut: 3 still reaches 1.
    cluster.partition_pair(1, 2);
    assert_eq!(echo(&cluster, 2, 1), Echo::TimedOut);
    wait_reachable(&cluster, 3, 1);
    cluster.heal_pair(1, 2);
    wait_reachable(&cluster, 2, 1);

    // Full loss behaves like a cut; removing it restores the link.
    cluster.loss(1, 100);
    assert_eq!(echo(&cluster, 2, 1), Echo::TimedOut);
    cluster.loss(1, 0);
    wait_reachable(&cluster, 2, 1);

    // Killing the server: status says killed by SIGKILL, and it is unreachable.
    let pid = cluster.pid("echo1").expect("echo1 is running");
    cluster.kill("echo1");
    assert!(!pid_is_alive(pid));
    assert_eq!(cluster.status("echo1"), ProcessStatus::Exited(137));
    assert_eq!(cluster.pid("echo1"), None);
    assert_eq!(echo(&cluster, 2, 1), Echo::Refused);

    // The same name starts again, and the log keeps both runs.
    start_echo(&mut cluster, 1, "echo1");
    wait_reachable(&cluster, 2, 1);
    let log = cluster.log("echo1");
    assert_eq!(
        log.matches("netns-harness: start on node 1").count(),
        2,
        "{log}"
    );

    // stop: TERM is enough for nc; its exit status says so.
    cluster.stop("echo3");
    assert_eq!(cluster.status("echo3"), ProcessStatus::Exited(128 + 15));
}

#[test]
fn down_leaves_no_namespace_and_no_process() {
    let mut cluster = NetnsCluster::up("hdown", 2);
    assert_eq!(namespaces_with_prefix("hdown").len(), 3, "bridge + 2 nodes");
    // A process with a child in another session and another network
    // namespace (as a container would be), plus one that ignores TERM: down
    // must get them all.
    let parent = cluster.start(
        1,
        "tree",
        [
            "bash",
            "-c",
            "setsid unshare --net sleep 1000 & echo child $!; wait",
        ],
    );
    let stubborn = cluster.start(2, "stubborn", ["bash", "-c", "trap '' TERM; sleep 1000"]);
    let child: u32 = wait_until(REACH_TIMEOUT, "the child's pid in the log", || {
        cluster
            .log("tree")
            .lines()
            .find_map(|line| line.strip_prefix("child ")?.trim().parse::<u32>().ok())
    })
    .unwrap();
    for pid in [parent, stubborn, child] {
        assert!(pid_is_alive(pid), "pid {pid} should be running");
    }
    let net_ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    wait_until(
        REACH_TIMEOUT,
        "the child in a network namespace of its own",
        || {
            let (parent_ns, child_ns) = (net_ns(parent), net_ns(child));
            if parent_ns.is_some() && child_ns.is_some() && parent_ns != child_ns {
                Ok(())
            } else {
                Err(format!("parent in {parent_ns:?}, child in {child_ns:?}"))
            }
        },
    )
    .unwrap();
    let state_dir = cluster.state_dir();
    assert!(state_dir.is_dir());

    cluster.down();

    assert_eq!(namespaces_with_prefix("hdown"), Vec::<String>::new());
    for pid in [parent, stubborn, child] {
        assert!(!pid_is_alive(pid), "pid {pid} survived down");
    }
    assert!(!Path::new(&state_dir).exists());
    // down again (and the Drop that follows) must not fail on what is gone.
    let again = Command::new("bash")
        .arg(support::harness_script())
        .args(["down", "hdown"])
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[test]
fn drop_tears_the_cluster_down_when_a_test_panics() {
    let mut sleeper_pid = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut cluster = NetnsCluster::up("hpanic", 2);
        sleeper_pid = cluster.start(2, "sleeper", ["sleep", "1000"]);
        panic!("a failing test");
    }));
    assert!(result.is_err());
    assert!(sleeper_pid != 0);
    assert!(!pid_is_alive(sleeper_pid), "the sleeper survived the drop");
    assert_eq!(namespaces_with_prefix("hpanic"), Vec::<String>::new());
}

#[test]
fn wait_until_reports_the_last_observation() {
    let mut attempts = 0;
    let err = wait_until(Duration::from_millis(120), "the answer", || {
        attempts += 1;
        Err::<(), String>(format!("attempt {attempts} saw 41"))
    })
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("the answer"), "{message}");
    assert!(
        message.contains(&format!("attempt {attempts} saw 41")),
        "{message}"
    );

    let mut calls = 0;
    let value = wait_until(Duration::from_secs(5), "the third call", || {
        calls += 1;
        (calls == 3).then_some(calls)
    })
    .unwrap();
    assert_eq!(value, 3);
}
