use super::entries_hint;

#[test]
fn entries_hint_shrinks_proportionally_and_never_to_zero() {
    assert_eq!(entries_hint(300, 200, 100), 135);
    assert_eq!(entries_hint(2, 1000, 10), 1);
    assert_eq!(entries_hint(10, 10, 100), 10);
}
