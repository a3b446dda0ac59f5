use proptest::prelude::*;

use super::super::{parse_service, parse_service_document, DocumentLimit, SpecError, SpecLimits};
use super::*;

/// The smallest valid spec; cases append to it.
const MINIMAL: &str = "\
apiVersion: edgectl/v1
kind: Service
metadata:
  name: web
spec:
  image: busybox
";

fn check_broken(source: &str, limit: DocumentLimit, line: usize) {
    let broken = check(source).expect_err("the scan should refuse it");
    assert_eq!(broken.limit, limit, "{broken:?}");
    assert_eq!(broken.line, line, "{broken:?}");
}

fn check_refused_quickly(source: &str, limit: DocumentLimit) -> String {
    // How quickly is checked where the clock may be read: the receiving
    // node's entry, node::orchestration's tests.
    let error = parse_service(source).expect_err("the spec should be refused");
    assert!(
        matches!(error, SpecError::TooComplex { limit: found, .. } if found == limit),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.contains(&limit.max().to_string()), "{text}");
    assert!(text.contains("SpecLimits::"), "the limit is named: {text}");
    text
}

#[test]
fn deeply_nested_flow_sequences_are_refused_in_milliseconds() {
    // Issue 18's document: ~200 KB of `[[[[...`, as the value of a real field.
    let depth = 100_000;
    let source = format!(
        "{MINIMAL}  args: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let text = check_refused_quickly(&source, DocumentLimit::Depth);
    assert!(text.contains("line 7"), "{text}");
    assert!(text.contains("levels of nesting"), "{text}");
    // Alone, or as the whole document, or in mappings.
    check_refused_quickly(&"[".repeat(depth), DocumentLimit::Depth);
    check_refused_quickly(&"{a: ".repeat(depth), DocumentLimit::Depth);
}

#[test]
fn deeply_nested_block_sequences_are_refused() {
    let source = format!("{MINIMAL}  args:\n{}x\n", "- ".repeat(50_000));
    check_refused_quickly(&source, DocumentLimit::Depth);
    let indented: String = (0..64)
        .map(|level| format!("{}k:\n", " ".repeat(level)))
        .collect();
    check_refused_quickly(&indented, DocumentLimit::Depth);
}

#[test]
fn alias_bombs_are_refused() {
    // The billion-laughs document, nine aliases of the level above per level.
    let mut source = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (previous, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let aliases = vec![format!("*{previous}"); 9].join(",");
        source.push_str(&format!("{name}: &{name} [{aliases}]\n"));
    }
    let text = check_refused_quickly(&source, DocumentLimit::Aliases);
    assert!(text.contains("aliases"), "{text}");
}

#[test]
fn too_many_nodes_are_refused_before_parsing() {
    let items = vec!["a"; SpecLimits::NODES_MAX + 1].join(", ");
    let source = format!("{MINIMAL}  args: [{items}]\n");
    check_refused_quickly(&source, DocumentLimit::Nodes);
}

#[test]
fn what_people_write_is_far_below_every_limit() {
    for source in [
        include_str!("../../../examples/web.yaml"),
        MINIMAL,
        "{apiVersion: edgectl/v1, kind: Service, metadata: {name: web}, spec: {image: busybox}}",
    ] {
        check(source).unwrap_or_else(|broken| panic!("{broken:?}\n{source}"));
        assert!(parse_service(source).is_ok(), "{source}");
    }
    // Brackets, colons and hashes inside scalars are text, not structure.
    let source = format!(
        "{MINIMAL}  command: [\"sh\", \"-c\", \"echo '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' # x\"]\n  \
         env:\n    A: \"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\"\n    B: x[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n    \
         C: |\n      [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n      - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -\n    \
         D: '*a *b *c *d *e *f *g *h *i *j *k *l *m *n *o *p *q *r *s *t'\n"
    );
    check(&source).unwrap_or_else(|broken| panic!("{broken:?}\n{source}"));
    parse_service(&source).unwrap_or_else(|error| panic!("{error}\n{source}"));
}

#[test]
fn nesting_up_to_the_limit_reaches_the_parser() {
    // One level less than the limit (the top-level mapping is a level):
    // the parser, not the scan, refuses the sequence given for a string.
    let depth = SpecLimits::DEPTH_MAX - 2;
    let source = format!(
        "{MINIMAL}  args: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    check(&source).unwrap();
    let error = parse_service(&source).unwrap_err();
    assert!(
        error
            .field()
            .is_some_and(|field| field.starts_with("spec.args")),
        "{error}"
    );
    check_broken(
        &format!("{MINIMAL}  args: {}\n", "[".repeat(depth + 2)),
        DocumentLimit::Depth,
        7,
    );
}

#[test]
fn aliases_within_the_limit_still_parse() {
    let source =
        format!("{MINIMAL}  command: &cmd [\"/bin/sh\"]\n  healthCheck:\n    exec: *cmd\n");
    let spec = parse_service(&source).unwrap();
    assert_eq!(spec.spec.health_check.unwrap().exec, ["/bin/sh"]);
}

#[test]
fn bytes_that_are_not_utf8_are_refused() {
    let mut bytes = MINIMAL.as_bytes().to_vec();
    bytes.extend_from_slice(b"  args: [\"\xff\"]\n");
    let error = parse_service_document(&bytes).unwrap_err();
    assert!(
        matches!(error, SpecError::NotUtf8 { valid_up_to } if valid_up_to == MINIMAL.len() + 10),
        "{error}"
    );
    assert!(parse_service_document(MINIMAL.as_bytes()).is_ok());
    let oversized = vec![b' '; SpecLimits::BYTES_MAX + 1];
    assert!(matches!(
        parse_service_document(&oversized),
        Err(SpecError::TooLarge { .. })
    ));
}

proptest! {
    #[test]
    fn the_scan_never_panics_on_structure(text in "[\\[\\]{}:,\\-'\"#&*!|>? \\n\\\\ax]{0,256}") {
        let _ = check(&text);
        let _ = parse_service(&text);
    }

    #[test]
    fn the_scan_never_panics_on_any_text(text in "\\PC{0,128}") {
        let _ = check(&text);
    }

    #[test]
    fn the_scan_accepts_whatever_a_spec_serializes_to(replicas in 0u32..1000, env in proptest::collection::btree_map("[A-Z_]{1,8}", "\\PC{0,12}", 0..8)) {
        let mut spec = parse_service(MINIMAL).unwrap();
        spec.spec.replicas = replicas;
        spec.spec.env = env;
        let text = serde_yaml::to_string(&spec).unwrap();
        prop_assert!(check(&text).is_ok(), "{}", text);
    }
}
