use super::*;

fn check(source: &str, path: &str, expected: Option<(usize, usize)>) {
    let found = locate(source, &parse_path(path));
    let expected = expected.map(|(line, column)| Position { line, column });
    assert_eq!(found, expected, "path {path}");
}

#[test]
fn finds_keys_items_and_compact_sequences() {
    let source = "\
a:
  b: 1
  list:
  - x: 1
    y: 2
  - x: 3
  other:
    - name: q   # comment
      deep:
        z: |
          k: not a key
        w: 5
c: 2
";
    check(source, "a.b", Some((2, 3)));
    check(source, "a.list[0].y", Some((5, 5)));
    check(source, "a.list[1].x", Some((6, 5)));
    check(source, "a.other[0].name", Some((8, 7)));
    check(source, "a.other[0].deep.w", Some((12, 9)));
    check(source, "c", Some((13, 1)));
    // Text inside a block scalar is not a key; the locator stops at the
    // deepest ancestor it found.
    check(source, "a.other[0].deep.k", Some((9, 7)));
    check(source, "a.list[5]", Some((3, 3)));
    check(source, "nothing", None);
}

#[test]
fn flow_style_falls_back_to_the_owning_key() {
    let source = "spec:\n  resources: {limits: {memory: 1Mi}}\n";
    check(source, "spec.resources.limits.memory", Some((2, 3)));
}

#[test]
fn paths_parse_like_serde_yaml_prints_them() {
    assert_eq!(
        parse_path("spec.mounts[0].volume"),
        vec![
            Segment::Key("spec".into()),
            Segment::Key("mounts".into()),
            Segment::Index(0),
            Segment::Key("volume".into()),
        ]
    );
}
