use super::*;
use std::num::NonZeroU64;

fn ack(watch: usize, rv: u64) -> AckRef {
    AckRef {
        watch,
        seq: 0,
        rv: NonZeroU64::new(rv),
    }
}

#[test]
fn an_advert_limits_each_watch_by_its_store_key() {
    let advert = r#"{"pods":"120","cm/ns-a":"77","opaque":"abc","neg":"-1"}"#;
    let names = [
        Some("pods"),
        None,
        Some("cm/ns-a"),
        Some("opaque"),
        Some("gone"),
        Some("neg"),
    ];
    let limits = limits_of(advert, names.into_iter());
    assert_eq!(limits, vec![Some(120), None, Some(77), None, None, None]);
    assert!(handled(&limits, &ack(0, 120)));
    assert!(handled(&limits, &ack(0, 3)));
    assert!(!handled(&limits, &ack(0, 121)), "after the leader's point");
    assert!(!handled(&limits, &ack(1, 1)), "no limit for the slot");
    assert!(!handled(&limits, &ack(0, 0)), "no integer resourceVersion");
    assert!(!handled(&limits, &ack(9, 1)), "a slot past the advert's");
    assert_eq!(limits_of("not json", names.into_iter()), vec![None; 6]);
}

#[test]
fn resource_versions_are_integers_or_nothing() {
    use crate::state::integer_rv;
    assert_eq!(integer_rv("42").map(NonZeroU64::get), Some(42));
    for opaque in ["", "0", "042", "12a", "-3", "99999999999999999999999"] {
        assert_eq!(integer_rv(opaque), None, "{opaque:?}");
    }
}
