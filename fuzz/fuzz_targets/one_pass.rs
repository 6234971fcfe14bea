//! A streamed event's filter cut made in the event scan's pass
//! (`partial::OnePass` fed by `WatchEvent::parse_with`) on arbitrary lines:
//! never panics; the scan answers exactly as `WatchEvent::parse` does; when
//! the event parses, the cut equals `partial::extract` on its object (what
//! list items get, itself tested against jaq's full parse). The first byte
//! picks the programs' reads.
#![no_main]

use kwatchd::filter::partial::{extract, OnePass};
use kwatchd::filter::reads::Reads;
use kwatchd::kube::WatchEvent;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const PROGRAMS: [&str; 8] = [
    r#".metadata.labels.app == "web""#,
    "[.spec.containers[].image]",
    ".metadata",
    ".metadata.name, .kind",
    ".metadata[]",
    ".[\"a\"].b, .metadata.labels[]",
    "{metadata}",
    "empty",
];

fn reads() -> &'static [Reads] {
    static READS: OnceLock<Vec<Reads>> = OnceLock::new();
    READS.get_or_init(|| {
        PROGRAMS
            .iter()
            .map(|code| Reads::of(code).expect("bounded"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, line)) = data.split_first() else {
        return;
    };
    let reads = &reads()[usize::from(pick) % PROGRAMS.len()];
    let mut pass = OnePass::new(line, reads);
    let parsed = WatchEvent::parse_with(line, &mut pass);
    assert_eq!(format!("{parsed:?}"), format!("{:?}", WatchEvent::parse(line)));
    let Ok(event) = parsed else {
        return;
    };
    let one = pass.finish();
    let two = extract(event.object.get().as_bytes(), reads);
    // Debug keeps the keys' order, which `==` on maps ignores.
    let one = one.map(|c| format!("{:?}", c.value()));
    let two = two.map(|v| format!("{v:?}"));
    assert_eq!(one, two, "{line:?}");
});
