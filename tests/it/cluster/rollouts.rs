//! Rollouts that roll themselves back (issue 14), end to end with real
//! containers: a bad update (the command exits, the image is missing,
//! readiness never passes) goes back to the last stable generation by
//! itself and `rollout history` says why; the failed spec applied again is
//! not retried; `rollout pause` holds the old tasks, `resume` goes on;
//! `rollout undo --to-revision` goes back two generations; a leader killed
//! mid-rollout leaves the new leader to finish it.

use edgectl::api::{RevisionView, RolloutView};
use edgectl::orchestrator::records::RolloutState;

use super::orchestration::{apply_ok, cluster_with_image, service_yaml, tasks, wait_converged};
use super::{form_labelled, node_logs, EdgeCluster, CONVERGE};
use crate::support::wait_until;

/// Requests like SLEEPER's, so that every generation fits where the first
/// did.
const REQUESTS: &str = "  resources:\n    requests:\n      cpu: 250m\n      memory: 64Mi\n";
/// A short monitor and deadline, so that a test waits seconds, not minutes.
const FAST: &str = "  update:\n    monitor: 1s\n    progressDeadline: 8s\n";

/// Stops at SIGTERM (a plain `sleep` as PID 1 ignores it and waits out the
/// 10 s grace), so that a rollout's steps take a drain, not a grace.
fn sleeper(version: &str) -> String {
    sleeper_with(version, FAST)
}

fn sleeper_with(version: &str, update: &str) -> String {
    format!(
        "  command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n  \
         env:\n    VERSION: \"{version}\"\n{REQUESTS}{update}"
    )
}

fn rollout(cluster: &EdgeCluster, service: &str) -> RolloutView {
    cluster
        .cli_json(1, &["rollout", "status", service, "--no-follow"])
        .unwrap_or_else(|e| panic!("rollout status: {e}"))
}

fn history(cluster: &EdgeCluster, service: &str) -> Vec<RevisionView> {
    cluster
        .cli_json(1, &["rollout", "history", service])
        .unwrap_or_else(|e| panic!("rollout history: {e}"))
}

/// `rollout status` (following) and what it printed; Ok when it exited 0.
fn follow(cluster: &EdgeCluster, service: &str) -> Result<String, String> {
    let out = cluster.cli(1, &["rollout", "status", service, "--timeout", "120s"]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(printed)
    } else {
        Err(printed)
    }
}

/// A bad generation rolled back: `rollout status` fails saying so, every
/// replica runs `stable` again, and history says why the bad one failed.
fn expect_rolled_back(cluster: &EdgeCluster, stable: u64, why: &str) {
    let printed = follow(cluster, "roll").expect_err("rollout status exits non-zero");
    assert!(printed.contains("rolled back"), "{printed}");
    let view = rollout(cluster, "roll");
    assert_eq!(view.target, stable, "{view:?}");
    assert!(
        matches!(view.state, RolloutState::RolledBack { .. }),
        "{view:?}"
    );
    let done = wait_converged(cluster, 1, "roll", 3);
    assert!(done.iter().all(|t| t.generation == stable), "{done:?}");
    let failed = history(cluster, "roll")
        .into_iter()
        .find(|r| r.generation == view.generation)
        .expect("the failed generation in the history");
    assert!(
        failed.outcome.starts_with("failed:") && failed.outcome.contains(why),
        "{failed:?}"
    );
}

#[test]
fn bad_updates_roll_themselves_back_and_history_says_why() {
    let cluster = cluster_with_image("crb", 1);
    apply_ok(&cluster, 1, &service_yaml("roll", 3, &sleeper("1")));
    follow(&cluster, "roll").unwrap_or_else(|e| panic!("the first rollout: {e}"));
    assert_eq!(rollout(&cluster, "roll").stable, Some(1));

    // The command exits: its task is restarted, which fails the rollout.
    let exits = format!("  command: [\"sh\", \"-c\", \"exit 1\"]\n{REQUESTS}{FAST}");
    apply_ok(&cluster, 1, &service_yaml("roll", 3, &exits));
    expect_rolled_back(&cluster, 1, "exited with code 1");
    // The same spec applied again is not retried.
    apply_ok(&cluster, 1, &service_yaml("roll", 3, &exits));
    let view = rollout(&cluster, "roll");
    assert_eq!((view.generation, view.target), (2, 1), "{view:?}");

    // An image that is not in the cluster.
    let missing = service_yaml("roll", 3, &sleeper("3")).replace("busybox:latest", "missing:1");
    apply_ok(&cluster, 1, &missing);
    expect_rolled_back(&cluster, 1, "cannot get its image");

    // Readiness that never passes: not ready within progressDeadline.
    let unready = format!(
        "{}  probes:\n    readiness:\n      exec: [\"false\"]\n      interval: 200ms\n",
        sleeper("4")
    );
    apply_ok(&cluster, 1, &service_yaml("roll", 3, &unready));
    expect_rolled_back(&cluster, 1, "no new task became ready");

    let outcomes: Vec<String> = history(&cluster, "roll")
        .iter()
        .map(|r| format!("{} {}", r.generation, r.outcome))
        .collect();
    assert!(
        outcomes[0].starts_with("1 deployed, stable"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
}

#[test]
fn pause_holds_the_old_tasks_resume_goes_on_and_undo_goes_back_two() {
    let cluster = cluster_with_image("cru", 1);
    for version in ["1", "2", "3"] {
        apply_ok(&cluster, 1, &service_yaml("roll", 3, &sleeper(version)));
        follow(&cluster, "roll").unwrap_or_else(|e| panic!("version {version}: {e}"));
    }
    // Back to generation 1's spec, as generation 4.
    cluster.cli_ok(1, &["rollout", "undo", "roll", "--to-revision", "1"]);
    follow(&cluster, "roll").unwrap_or_else(|e| panic!("undo: {e}"));
    let done = wait_converged(&cluster, 1, "roll", 3);
    assert!(done.iter().all(|t| t.generation == 4), "{done:?}");
    let version = cluster.cli_ok(1, &["exec", &done[0].id, "--", "sh", "-c", "echo $VERSION"]);
    assert_eq!(version.trim(), "1");
    let last = history(&cluster, "roll").pop().expect("a revision");
    assert_eq!(last.change, "undo to generation 1");

    // Paused by hand: a new generation replaces nothing.
    cluster.cli_ok(1, &["rollout", "pause", "roll"]);
    apply_ok(&cluster, 1, &service_yaml("roll", 3, &sleeper("5")));
    let printed = follow(&cluster, "roll").expect_err("a paused rollout is not complete");
    assert!(printed.contains("paused by hand"), "{printed}");
    // Controller passes go by (every 100 ms): the old tasks all still run.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let held = tasks(&cluster, 1, "roll").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        held.iter().all(|t| t.generation == 4),
        "paused, yet replaced: {held:?}"
    );
    cluster.cli_ok(1, &["rollout", "resume", "roll"]);
    follow(&cluster, "roll").unwrap_or_else(|e| panic!("resumed: {e}"));
    wait_until(CONVERGE, "every replica on generation 5", || {
        let now = tasks(&cluster, 1, "roll")?;
        (now.len() == 3 && now.iter().all(|t| t.generation == 5))
            .then_some(())
            .ok_or(format!("{now:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_new_leader_finishes_a_rollout_the_old_one_started() {
    let cluster = form_labelled(EdgeCluster::new("crl", 3), 3, &[]);
    let leader = cluster.leader_index(1).unwrap_or_else(|e| panic!("{e}"));
    let via = if leader == 1 { 2 } else { 1 };
    // Four replicas off the leader, replaced one at a time with 2 s between
    // batches: the rollout takes long enough to lose its leader midway.
    let slow = "  update:\n    delay: 2s\n    monitor: 1s\n    progressDeadline: 60s\n";
    let spec = |version: &str| {
        format!(
            "{}  placement:\n    constraints:\n      - node.labels.slot != n{leader}\n",
            sleeper_with(version, slow)
        )
    };
    apply_ok(&cluster, via, &service_yaml("roll", 4, &spec("1")));
    wait_until(CONVERGE, "generation 1 complete", || {
        let view: RolloutView =
            cluster.cli_json(via, &["rollout", "status", "roll", "--no-follow"])?;
        (view.state == RolloutState::Complete)
            .then_some(())
            .ok_or(format!("{view:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));

    apply_ok(&cluster, via, &service_yaml("roll", 4, &spec("2")));
    wait_until(CONVERGE, "the rollout under way", || {
        let now = tasks(&cluster, via, "roll")?;
        let new_ready = now.iter().filter(|t| t.generation == 2 && t.ready).count();
        let old = now.iter().filter(|t| t.generation == 1).count();
        (new_ready >= 1 && old >= 2)
            .then_some(())
            .ok_or(format!("{now:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node_logs(&cluster)));
    cluster.kill(leader);

    let out = cluster.cli(via, &["rollout", "status", "roll", "--timeout", "120s"]);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node_logs(&cluster)
    );
    let done = wait_converged(&cluster, via, "roll", 4);
    assert!(done.iter().all(|t| t.generation == 2), "{done:?}");
}

#[test]
fn a_canary_waits_for_promotion_and_a_failing_one_changes_nothing_else() {
    let cluster = cluster_with_image("crc", 1);
    let canary = "  update:\n    monitor: 1s\n    progressDeadline: 8s\n    canary: 1\n";
    apply_ok(
        &cluster,
        1,
        &service_yaml("roll", 3, &sleeper_with("1", canary)),
    );
    follow(&cluster, "roll").unwrap_or_else(|e| panic!("the first rollout: {e}"));

    // Generation 2 starts as one canary beside the three old tasks.
    apply_ok(
        &cluster,
        1,
        &service_yaml("roll", 3, &sleeper_with("2", canary)),
    );
    let printed = follow(&cluster, "roll").expect_err("waits for a promotion");
    assert!(printed.contains("rollout promote"), "{printed}");
    let now = tasks(&cluster, 1, "roll").unwrap_or_else(|e| panic!("{e}"));
    let old = now.iter().filter(|t| t.generation == 1).count();
    let canaries: Vec<_> = now.iter().filter(|t| t.generation == 2).collect();
    assert_eq!((old, canaries.len()), (3, 1), "{now:?}");
    assert_eq!(canaries[0].slot, 3);
    cluster.cli_ok(1, &["rollout", "promote", "roll"]);
    follow(&cluster, "roll").unwrap_or_else(|e| panic!("promoted: {e}"));
    let done = wait_converged(&cluster, 1, "roll", 3);
    assert!(done.iter().all(|t| t.generation == 2), "{done:?}");

    // A canary that exits: removed, and the three tasks of generation 2
    // are the same ones.
    let before: Vec<String> = done.iter().map(|t| t.id.clone()).collect();
    let exits = format!("  command: [\"sh\", \"-c\", \"exit 1\"]\n{REQUESTS}{canary}");
    apply_ok(&cluster, 1, &service_yaml("roll", 3, &exits));
    let printed = follow(&cluster, "roll").expect_err("rolled back");
    assert!(printed.contains("rolled back"), "{printed}");
    let after = wait_converged(&cluster, 1, "roll", 3);
    let mut ids: Vec<String> = after.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    let mut before = before;
    before.sort();
    assert_eq!(ids, before, "a failed canary changed other tasks");
}
