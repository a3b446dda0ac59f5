//! A leader cut off from its four followers while clients keep reading and
//! writing through it: its memory stays bounded, and comes back after the heal.
//!
//! Every linearizable read on a leader asks each voter to confirm its
//! leadership. Cut off, none can, and (issue 18) each pending read used to
//! leave a connection attempt per unreachable peer behind: ~1.3 MiB each,
//! hundreds of MiB within a minute.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{EdgeCluster, CONVERGE};
use crate::support::wait_until;

/// How long the leader stays cut off (the figure).
const PARTITION: Duration = Duration::from_secs(60);
/// A client request is started this often, whatever the earlier ones do: a
/// read every 0.2 s as in the issue, and a write as often.
const REQUEST_EVERY: Duration = Duration::from_millis(200);
/// Client processes running at once, at most: the machine is shared.
const MAX_CLIENTS_IN_FLIGHT: usize = 48;
/// Allowed growth over the idle RSS, during the cut and after the heal.
const RSS_MARGIN_KIB: u64 = 10 * 1024;
/// How long after the heal the RSS may take to come back within the margin.
const SETTLE_AFTER_HEAL: Duration = Duration::from_secs(30);

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

#[test]
fn cut_off_leader_under_reads_and_writes_keeps_its_memory_bounded() {
    let mut cluster = EdgeCluster::with_flags("cpm", 5, &["--target-voters", "5", "--no-agent"]);
    cluster.form(5);
    cluster.wait_voters(1, 5, 5);
    let leader = cluster.leader_index(1).expect("leader");
    let pid = cluster
        .net
        .pid(&EdgeCluster::name(leader))
        .expect("leader running");

    // Warm up with the majority present, so that the idle figure includes
    // what any first read or write allocates once.
    for k in 0..20 {
        assert!(cluster
            .put(leader, &format!("/kv/pm/warm-{k}"), "w")
            .status
            .success());
        assert_eq!(
            cluster.get(leader, &format!("/kv/pm/warm-{k}"), false),
            Some("w".into())
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let idle_kib = rss_kib(pid);
    eprintln!("leader node{leader} (pid {pid}) idle RSS {idle_kib} KiB");

    cluster.net.partition(leader);
    let stop = AtomicBool::new(false);
    let in_flight = AtomicUsize::new(0);
    let reads_ok = AtomicUsize::new(0);
    let reads_failed = AtomicUsize::new(0);
    let writes_failed = AtomicUsize::new(0);
    let read_errors = Mutex::new(Vec::<String>::new());
    let mut peak_kib = idle_kib;
    let mut samples = Vec::new();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let cluster = &cluster;
        let (stop, in_flight) = (&stop, &in_flight);
        let (reads_ok, reads_failed, writes_failed, read_errors) =
            (&reads_ok, &reads_failed, &writes_failed, &read_errors);
        scope.spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if in_flight.load(Ordering::Relaxed) < MAX_CLIENTS_IN_FLIGHT {
                    n += 1;
                    in_flight.fetch_add(2, Ordering::Relaxed);
                    let key = format!("/kv/pm/cut-{n}");
                    scope.spawn(move || {
                        let out = cluster.cli(leader, &["kv", "get", "/kv/pm/warm-0"]);
                        if out.status.success() {
                            reads_ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            reads_failed.fetch_add(1, Ordering::Relaxed);
                            let mut errors = read_errors.lock().unwrap_or_else(|p| p.into_inner());
                            if errors.len() < 3 {
                                errors.push(String::from_utf8_lossy(&out.stderr).into_owned());
                            }
                        }
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                    scope.spawn(move || {
                        if !cluster.put(leader, &key, "cut").status.success() {
                            writes_failed.fetch_add(1, Ordering::Relaxed);
                        }
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                std::thread::sleep(REQUEST_EVERY);
            }
        });
        while started.elapsed() < PARTITION {
            std::thread::sleep(Duration::from_secs(1));
            let now_kib = rss_kib(pid);
            peak_kib = peak_kib.max(now_kib);
            samples.push(now_kib);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let cut_kib = rss_kib(pid);
    eprintln!(
        "after {PARTITION:?} cut off: RSS {cut_kib} KiB, peak {peak_kib} KiB; \
         reads ok {} failed {}, writes failed {}; samples (KiB): {samples:?}",
        reads_ok.load(Ordering::Relaxed),
        reads_failed.load(Ordering::Relaxed),
        writes_failed.load(Ordering::Relaxed),
    );
    let errors = read_errors.into_inner().unwrap_or_else(|p| p.into_inner());
    eprintln!("first read errors: {errors:#?}");

    cluster.net.heal(leader);
    let settled = wait_until(SETTLE_AFTER_HEAL, "the leader's RSS back near idle", || {
        let now_kib = rss_kib(pid);
        if now_kib <= idle_kib + RSS_MARGIN_KIB {
            Ok(now_kib)
        } else {
            Err(format!("RSS {now_kib} KiB"))
        }
    });
    eprintln!("after the heal: {settled:?} (idle {idle_kib} KiB)");

    assert!(
        peak_kib <= idle_kib + RSS_MARGIN_KIB,
        "cut off for {PARTITION:?}, the leader grew from {idle_kib} KiB to a peak of \
         {peak_kib} KiB (allowed: +{RSS_MARGIN_KIB} KiB)"
    );
    assert_eq!(
        reads_ok.load(Ordering::Relaxed),
        0,
        "a cut-off leader confirmed a linearizable read"
    );
    assert!(
        reads_failed.load(Ordering::Relaxed) > 0,
        "no read was answered"
    );
    for error in &errors {
        assert!(
            error.contains("quorum") || error.contains("leader"),
            "a read that cannot be confirmed says why: {error}"
        );
    }
    settled.unwrap_or_else(|e| panic!("{e}"));

    // The cluster is whole again: the old leader serves linearizable reads.
    wait_until(
        CONVERGE,
        "a linearizable read through the old leader",
        || cluster.get(leader, "/kv/pm/warm-1", false) == Some("w".into()),
    )
    .unwrap();
}
