//! Repeated failover under writes: the leader of five voters is SIGKILLed
//! again and again while writers keep writing, and every time a write is
//! acknowledged again, and no acknowledged write is lost. Under load a kill
//! once left no write acknowledged for more than 20 s (issue 18 item 7):
//! that is what this checks, with a bound far above any healthy failover.
//!
//! How *fast* a failover is belongs to the product's build, not to a debug
//! build on a loaded CI machine: issue 18's bound (worst of 50 kills
//! ≤ 1.5 s) is measured by `scripts/bench-cluster.sh --nodes 5 --rounds 50
//! --writers 2` (release), which prints the worst case next to the target.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{EdgeCluster, CONVERGE};
use crate::support::{edgectl_bin, harness_script, wait_until};

/// `edgectl kv put KEY VALUE` through node `i`, as a command that needs no
/// borrow of the cluster (the test restarts nodes while writers run).
fn put_command(cluster: &EdgeCluster, i: usize, key: &str) -> std::process::Command {
    let mut command = std::process::Command::new("bash");
    command
        .arg(harness_script())
        .args(["exec", cluster.net.prefix(), &i.to_string(), "--"])
        .arg(edgectl_bin(env!("CARGO_BIN_EXE_edgectl")))
        .arg("--data-dir")
        .arg(cluster.data_dir(i))
        .args(["kv", "put", key, "b"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

/// Kills per run: enough for split votes and followers with logs of
/// different lengths to come up (they did within 15 kills), few enough for
/// CI.
const KILLS: usize = 20;
const NODES: usize = 5;
/// A kill after which no write is acknowledged within this long has left the
/// cluster stalled: ten times the worst healthy failover of a debug build.
const GIVE_UP: Duration = Duration::from_secs(10);
/// Writers kept busy through the whole run, so that a kill finds entries in
/// flight (followers with logs of different lengths, as in production).
const BACKGROUND_WRITERS: usize = 2;

#[test]
fn repeated_leader_kills_under_writes_each_heal_and_lose_nothing() {
    let mut cluster =
        EdgeCluster::with_flags("cft", NODES, &["--target-voters", "5", "--no-agent"]);
    cluster.form(NODES);
    cluster.wait_voters(1, NODES, NODES);

    let stop = AtomicBool::new(false);
    let background_acks = AtomicUsize::new(0);
    let mut gaps = Vec::new();
    let mut acknowledged = Vec::new();
    // Built up front: the writers run while the test restarts nodes.
    let background_puts: Vec<Vec<_>> = (0..BACKGROUND_WRITERS)
        .map(|writer| {
            (1..=NODES)
                .map(|i| (i, format!("/kv/ft/bg-{writer}-via-{i}")))
                .collect()
        })
        .collect();
    let put_commands: Vec<Vec<std::process::Command>> = background_puts
        .iter()
        .map(|puts| {
            puts.iter()
                .map(|(i, key)| put_command(&cluster, *i, key))
                .collect()
        })
        .collect();
    std::thread::scope(|scope| {
        for (writer, mut commands) in put_commands.into_iter().enumerate() {
            let (stop, acks) = (&stop, &background_acks);
            scope.spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // Through each node in turn: one of them is down at times.
                    let command = &mut commands[(n + writer) % NODES];
                    if command.status().is_ok_and(|status| status.success()) {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }

        let mut via = 1;
        for round in 0..KILLS {
            let leader = wait_until(CONVERGE, "a leader", || cluster.leader_index(via))
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let survivor = (1..=NODES)
                .map(|k| 1 + (leader + round + k) % NODES)
                .find(|i| *i != leader)
                .expect("a survivor");
            let killed_at = Instant::now();
            cluster.kill(leader);
            let mut attempt = 0;
            let gap = loop {
                attempt += 1;
                let key = format!("/kv/ft/after-{round}-{attempt}");
                if cluster
                    .put(survivor, &key, &round.to_string())
                    .status
                    .success()
                {
                    acknowledged.push((key, round.to_string()));
                    break killed_at.elapsed();
                }
                assert!(
                    killed_at.elapsed() < GIVE_UP,
                    "round {round}: no write acknowledged within {GIVE_UP:?} of the kill"
                );
            };
            eprintln!(
                "round {round}: leader node{leader} killed, write through node{survivor} \
                 acknowledged after {gap:?}"
            );
            gaps.push(gap);

            // Back to five voters before the next kill, the killed node caught up.
            let (key, value) = acknowledged.last().cloned().expect("just pushed");
            cluster.serve(leader);
            wait_until(CONVERGE, "the restarted node catches up", || {
                cluster.get(leader, &key, true).as_ref() == Some(&value)
            })
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
            via = survivor;
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::Relaxed);
    });

    let mut sorted = gaps.clone();
    sorted.sort();
    let p50 = sorted[sorted.len() / 2];
    let worst = *sorted.last().expect("rounds ran");
    eprintln!(
        "{KILLS} leader kills: kill -> next acknowledged write p50 {p50:?}, p90 {:?}, worst \
         {worst:?}; {} background writes acknowledged",
        sorted[sorted.len() * 9 / 10],
        background_acks.load(Ordering::Relaxed)
    );
    for (key, value) in &acknowledged {
        assert_eq!(
            cluster.get(1, key, false).as_ref(),
            Some(value),
            "{key} was acknowledged"
        );
    }
}
