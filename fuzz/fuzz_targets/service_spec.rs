//! A service document as `edgectl apply -f` sends it, through the same
//! entry the receiving node uses: size, UTF-8, the linear pre-scan (depth,
//! nodes, aliases), then the YAML parser and every validation. Any input
//! must be accepted or refused within the fuzzer's 1 s timeout (the scan
//! exists because the parser alone took 30 s on deep nesting), and an
//! accepted spec must survive its own round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = edgectl::model::parse_service_document(data) else {
        return;
    };
    let stored = serde_json::to_vec(&spec).expect("an accepted spec serializes");
    let again: edgectl::model::ServiceSpec =
        serde_json::from_slice(&stored).expect("a stored spec reads back");
    assert_eq!(spec, again, "a spec changed through its stored form");
});
