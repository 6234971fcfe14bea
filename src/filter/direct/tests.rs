//! The direct evaluator against jaq: whenever it answers, its answer is
//! jaq's (values, their order, key order); it leaves errors to jaq.

use super::*;
use crate::filter::jq::Program;
use crate::filter::json::{parse, to_json};
use crate::filter::testgen::{json_text, program, simple_program};
use proptest::prelude::*;

fn val(s: &str) -> Val {
    parse(s.as_bytes()).unwrap()
}

fn show(vs: &[Val]) -> Vec<String> {
    vs.iter()
        .map(|v| match to_json(v) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => format!("unprintable {v:?}: {e}"),
        })
        .collect()
}

/// The direct answer equals jaq's whenever there is one; true when the
/// direct evaluator answered.
fn agrees(code: &str, object: &str) -> Result<bool, TestCaseError> {
    let Ok(program) = Program::compile(code) else {
        return Ok(false);
    };
    let Some(direct) = Direct::of(code) else {
        return Ok(false);
    };
    let Ok(input) = parse(object.as_bytes()) else {
        return Ok(false);
    };
    let jaq = program.all_with_jaq(input.clone());
    let Ok(mine) = direct.all(&input) else {
        return Ok(false);
    };
    match jaq {
        Ok(theirs) => {
            prop_assert_eq!(show(&mine), show(&theirs), "program {} on {}", code, object);
            prop_assert_eq!(&mine, &theirs);
            prop_assert_eq!(
                direct.first(&input).ok().flatten(),
                theirs.into_iter().next()
            );
        }
        Err(e) => prop_assert!(
            false,
            "direct answered {:?} where jaq fails ({}): program {} on {}",
            show(&mine),
            e,
            code,
            object
        ),
    }
    Ok(true)
}

#[test]
fn typical_programs_are_direct() {
    for code in [
        r#".metadata.labels.app == "web""#,
        "[.spec.containers[].image]",
        ".spec",
        "{replicas: .spec.replicas, image: .spec.template.spec.containers[0].image}",
        r#".status.phase != "Running" and (.metadata.labels.tier // "") == "frontend""#,
        r#"if .spec.paused then "paused" else .spec.replicas end"#,
        r#"select(.kind == "Pod") | .metadata.name"#,
    ] {
        assert!(Direct::of(code).is_some(), "{code}");
    }
    for code in [
        ".a + 1",
        "length",
        "$x",
        "def f: .; f",
        "..",
        ".[1:]",
        ".a as $x | $x",
        r#""\(.a)""#,
        "@json",
        "try .a",
        "-1",
        "1.5",
        ".[-1]",
        ".[.a]",
    ] {
        assert!(Direct::of(code).is_none(), "{code}");
    }
}

#[test]
fn answers_like_jaq() {
    let pod = r#"{"kind":"Pod","metadata":{"name":"web-1","labels":{"app":"web"}},
        "spec":{"containers":[{"image":"a","env":[]},{"image":"b"}]},"status":{"phase":"Running"}}"#;
    let d = |code: &str| Direct::of(code).unwrap();
    assert_eq!(
        d(r#".metadata.labels.app == "web""#).first(&val(pod)),
        Ok(Some(Val::Bool(true)))
    );
    assert_eq!(
        d("[.spec.containers[].image]").first(&val(pod)),
        Ok(Some(val(r#"["a","b"]"#)))
    );
    assert_eq!(d(".nope.deeper").first(&val(pod)), Ok(Some(Val::Null)));
    assert_eq!(
        d(".spec.containers[5]").first(&val(pod)),
        Ok(Some(Val::Null))
    );
    assert_eq!(d("select(.kind == \"Node\")").first(&val(pod)), Ok(None));
    for code in [
        r#".metadata.labels.app == "web""#,
        "[.spec.containers[].image]",
        "{n: .metadata.name, k: .kind, n: 1}",
        ".spec.containers[] | select(.env) | .image",
        "[.status[]] , (.metadata | .name // \"x\")",
        "if .status.phase == \"Running\" then 1 elif .x then 2 else 3 end",
        "[.[] | . < \"Pod\"]",
    ] {
        assert!(agrees(code, pod).unwrap(), "{code}");
    }
}

#[test]
fn errors_are_left_to_jaq() {
    let d = |code: &str| Direct::of(code).unwrap();
    assert_eq!(d(".a.b").first(&val(r#"{"a":"x"}"#)), Err(Bail));
    assert_eq!(d(".a[]").first(&val(r#"{"a":1}"#)), Err(Bail));
    assert_eq!(d(".a[]").first(&val(r#"{}"#)), Err(Bail));
    assert_eq!(d(".a[]?").first(&val(r#"{"a":1}"#)), Err(Bail));
    assert_eq!(d(".[0]").first(&val(r#"{"a":1}"#)), Err(Bail));
    assert_eq!(d("{a: (1, 2)}").first(&val("{}")), Err(Bail));
    // And the program then answers through jaq.
    let p = Program::compile(".a[]?").unwrap();
    assert_eq!(p.first(val(r#"{"a":1}"#)), Ok(None));
    let p = Program::compile(".a.b").unwrap();
    assert!(p.first(val(r#"{"a":"x"}"#)).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn random_simple_programs_agree_with_jaq(
        code in simple_program(),
        objects in prop::collection::vec(json_text(), 1..8),
    ) {
        for object in &objects {
            agrees(&code, object)?;
        }
    }

    #[test]
    fn random_programs_agree_with_jaq(
        code in program(),
        objects in prop::collection::vec(json_text(), 1..6),
    ) {
        for object in &objects {
            agrees(&code, object)?;
        }
    }
}

/// The random simple programs are mostly direct, or the test above would
/// hold little.
#[test]
fn most_simple_programs_are_direct() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = simple_program();
    let (mut direct, mut answered, n) = (0, 0, 400);
    for _ in 0..n {
        let code = strategy.new_tree(&mut runner).unwrap().current();
        if Direct::of(&code).is_some() {
            direct += 1;
            let object = r#"{"metadata":{"labels":{"app":"web"},"name":"x"},"spec":{"containers":[{"image":"i"}]},"a":[{"b":1}]}"#;
            if agrees(&code, object).unwrap() {
                answered += 1;
            }
        }
    }
    assert!(direct * 2 > n, "{direct} of {n} direct");
    assert!(answered * 4 > n, "{answered} of {n} answered directly");
}

#[test]
fn long_cartesian_products_are_left_to_jaq() {
    let long: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let object = format!(r#"{{"a":[{0}],"b":[{0}]}}"#, long.join(","));
    let d = Direct::of(".a[] == .b[]").unwrap();
    assert_eq!(d.first(&val(&object)), Err(Bail));
    let d = Direct::of("(.a[] | . > 50) and (.b[] | . > 1)").unwrap();
    assert_eq!(d.first(&val(&object)), Err(Bail));
    // Short ones are run here.
    let d = Direct::of(".a[] == .b[]").unwrap();
    assert_eq!(
        d.all(&val(r#"{"a":[1,2],"b":[2]}"#)),
        Ok(vec![Val::Bool(false), Val::Bool(true)])
    );
    assert!(agrees(".a[] == .b[]", &object).is_ok());
}
