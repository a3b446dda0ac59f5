use super::*;

const SEC: Duration = Duration::from_secs(1);

fn view(leader: u64, voters: &[u64], learners: &[u64], silent: &[(u64, u64)]) -> ClusterView {
    let mut health = BTreeMap::new();
    for id in voters.iter().chain(learners) {
        let secs = silent
            .iter()
            .find(|(n, _)| n == id)
            .map(|(_, s)| *s)
            .unwrap_or(0);
        health.insert(
            *id,
            MemberHealth {
                silent_for: SEC * secs as u32,
                matched_index: Some(100),
            },
        );
    }
    ClusterView {
        leader,
        voters: voters.iter().copied().collect(),
        learners: learners.iter().copied().collect(),
        health,
        last_log_index: 100,
    }
}

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

fn check(view: ClusterView, expected: Option<AutopilotAction>) {
    assert_eq!(
        plan(&view, &AutopilotConfig::default()),
        expected,
        "{view:?}"
    );
}

#[test]
fn a_lone_voter_grows_to_three_when_two_learners_are_healthy() {
    check(view(1, &[1], &[2], &[]), None);
    check(
        view(1, &[1], &[2, 3], &[]),
        Some(AutopilotAction::SetVoters(set(&[1, 2, 3]))),
    );
}

#[test]
fn never_more_voters_than_the_target_and_never_an_even_count() {
    check(view(1, &[1, 2, 3], &[4, 5, 6, 7], &[]), None);
    let five = AutopilotConfig {
        target_voters: 5,
        ..AutopilotConfig::default()
    };
    assert_eq!(
        plan(&view(1, &[1, 2, 3], &[4, 5, 6], &[]), &five),
        Some(AutopilotAction::SetVoters(set(&[1, 2, 3, 4, 5])))
    );
    // Four healthy members with target 5: stay at 3 voters.
    assert_eq!(plan(&view(1, &[1, 2, 3], &[4], &[]), &five), None);
}

#[test]
fn a_dead_voter_is_replaced_by_a_healthy_learner_only_after_the_grace() {
    check(view(1, &[1, 2, 3], &[4], &[(3, 9)]), None);
    check(
        view(1, &[1, 2, 3], &[4], &[(3, 10)]),
        Some(AutopilotAction::SetVoters(set(&[1, 2, 4]))),
    );
}

#[test]
fn a_lagging_or_dead_learner_is_no_candidate() {
    let mut lagging = view(1, &[1, 2, 3], &[4], &[(3, 30)]);
    lagging.last_log_index = 1_000;
    for health in lagging.health.values_mut() {
        health.matched_index = Some(1_000);
    }
    lagging.health.get_mut(&4).unwrap().matched_index = Some(10);
    // No candidate: shrink onto the two... which is even, so onto the leader alone.
    check(lagging, Some(AutopilotAction::SetVoters(set(&[1]))));
    check(
        view(1, &[1, 2, 3], &[4], &[(3, 30), (4, 30)]),
        Some(AutopilotAction::SetVoters(set(&[1]))),
    );
}

#[test]
fn the_leader_is_always_kept() {
    let five_dead_two = view(5, &[1, 2, 3, 4, 5], &[], &[(1, 60), (2, 60)]);
    check(
        five_dead_two,
        Some(AutopilotAction::SetVoters(set(&[3, 4, 5]))),
    );
}

#[test]
fn members_never_heard_of_are_not_alive() {
    let mut v = view(1, &[1], &[2, 3], &[]);
    v.health.remove(&3);
    check(v, None);
}

#[test]
fn learners_silent_past_remove_after_are_removed() {
    let config = AutopilotConfig {
        remove_after: SEC * 100,
        ..AutopilotConfig::default()
    };
    assert_eq!(
        plan(&view(1, &[1, 2, 3], &[4, 5], &[(5, 100)]), &config),
        Some(AutopilotAction::RemoveLearners(set(&[5])))
    );
    let never = AutopilotConfig {
        remove_after: Duration::ZERO,
        ..AutopilotConfig::default()
    };
    assert_eq!(
        plan(&view(1, &[1, 2, 3], &[4, 5], &[(5, 1000)]), &never),
        None
    );
}
