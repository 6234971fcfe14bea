use super::*;

/// Items and info from feeding `body` in pieces of `piece` bytes.
fn scan(body: &[u8], piece: usize, max: usize) -> Result<(Vec<String>, ListInfo), ListError> {
    let mut s = ListScanner::new(max);
    let mut items = Vec::new();
    for p in body.chunks(piece.max(1)) {
        s.feed(p);
        while let Some((item, _)) = s.next_item()? {
            items.push(String::from_utf8_lossy(item).into_owned());
        }
    }
    s.finish()?;
    Ok((items, s.info().clone()))
}

const PAGE: &str = r#" {"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"42","continue":"c\"1"},
  "items":[ {"metadata":{"name":"a}","uid":"u\\\"[1"},"spec":{"x":[1,2,{"y":"]"}]}} ,
  {"metadata":{"name":"b"},"n":-1.5e3,"t":true,"z":null} ],"extra":{"deep":[[["x"]]]},"num":7 }
"#;

#[test]
fn every_split_gives_the_same_items_and_info() {
    let want = (
        vec![
            r#"{"metadata":{"name":"a}","uid":"u\\\"[1"},"spec":{"x":[1,2,{"y":"]"}]}}"#.to_owned(),
            r#"{"metadata":{"name":"b"},"n":-1.5e3,"t":true,"z":null}"#.to_owned(),
        ],
        ListInfo {
            item_kind: Some("Pod".into()),
            resource_version: Some("42".into()),
            continue_token: Some("c\"1".into()),
        },
    );
    for piece in 1..=PAGE.len() {
        assert_eq!(
            scan(PAGE.as_bytes(), piece, 1000).unwrap(),
            want,
            "piece {piece}"
        );
    }
}

#[test]
fn the_page_parser_and_the_scanner_agree() {
    let page = crate::kube::ListPage::parse(PAGE.as_bytes()).unwrap();
    let (items, info) = scan(PAGE.as_bytes(), 3, 1000).unwrap();
    let parsed: Vec<&str> = page.items.iter().map(|i| i.get()).collect();
    assert_eq!(items, parsed);
    assert_eq!(info.item_kind, page.item_kind);
    assert_eq!(
        info.resource_version.as_deref(),
        page.resource_version.as_deref()
    );
    assert_eq!(
        info.continue_token.as_deref(),
        page.continue_token.as_deref()
    );
}

#[test]
fn empty_null_and_missing_items_are_lists_too() {
    for body in [
        r#"{"kind":"PodList","metadata":{"resourceVersion":"1","continue":""},"items":[]}"#,
        r#"{"kind":"PodList","metadata":{"resourceVersion":"1"},"items":null}"#,
        r#"{"metadata":{"resourceVersion":"1"}}"#,
        r#"{"metadata":null,"items":[],"kind":null}"#,
        "{}",
    ] {
        let (items, info) = scan(body.as_bytes(), 2, 100).unwrap();
        assert!(items.is_empty(), "{body}");
        assert_eq!(info.continue_token, None, "{body}");
    }
}

#[test]
fn broken_answers_are_errors_not_panics() {
    for (body, what) in [
        ("", "ended early"),
        ("[1,2]", "must be a JSON object"),
        (r#"{"items":[{"a":1}"#, "ended early"),
        (r#"{"items":[{"a":1}]"#, "ended early"),
        (r#"{"items":{}}"#, "must be an array"),
        (r#"{"items":nul}"#, "must be an array"),
        (r#"{"items":[{"a":1}}]}"#, "expected ',' or ']'"),
        (r#"{"items":[]} x"#, "after the end"),
        (r#"{"kind":"a" "b"}"#, "expected ',' or '}'"),
        (r#"{"kind" 1}"#, "expected ':'"),
        (r#"{1:2}"#, "member name"),
        (
            r#"{"metadata":{"resourceVersion":1}}"#,
            "unusable list \"metadata\"",
        ),
        (r#"{"items":[]]}"#, "expected ',' or '}'"),
    ] {
        let err = scan(body.as_bytes(), 1, 100).unwrap_err();
        assert!(err.what.contains(what), "{body}: {err}");
    }
}

#[test]
fn an_item_over_the_limit_fails_without_being_held() {
    let big = format!(r#"{{"items":[{{"pad":"{}"}}]}}"#, "x".repeat(10_000));
    let mut s = ListScanner::new(1000);
    let mut err = None;
    for p in big.as_bytes().chunks(100) {
        s.feed(p);
        match s.next_item() {
            Ok(_) => assert!(s.buffered() <= 1200, "{}", s.buffered()),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("refused");
    assert!(err.what.contains("larger than 1000 bytes"), "{err}");
}

#[test]
fn memory_is_one_item_plus_the_input_whatever_the_page() {
    let item = format!(
        r#"{{"metadata":{{"name":"n"}},"pad":"{}"}}"#,
        "y".repeat(900)
    );
    let mut body =
        String::from(r#"{"kind":"PodList","metadata":{"resourceVersion":"9"},"items":["#);
    for i in 0..5000 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&item);
    }
    body.push_str("]}");
    let mut s = ListScanner::new(2000);
    let (mut n, mut peak) = (0, 0);
    for p in body.as_bytes().chunks(4096) {
        s.feed(p);
        while let Some((got, _)) = s.next_item().unwrap() {
            assert_eq!(got, item.as_bytes());
            n += 1;
        }
        peak = peak.max(s.buffered());
    }
    s.finish().unwrap();
    assert_eq!(n, 5000);
    assert!(
        peak < 4096 + 2000,
        "{peak} bytes held for a {} byte page",
        body.len()
    );
}

#[test]
fn the_limit_is_exact() {
    let item = |n: usize| format!(r#"{{"a":"{}"}}"#, "x".repeat(n - 8));
    for (len, ok) in [(100, true), (101, false)] {
        let body = format!(r#"{{"items":[{}]}}"#, item(len));
        assert_eq!(item(len).len(), len);
        assert_eq!(scan(body.as_bytes(), 7, 100).is_ok(), ok, "{len}");
    }
    assert!(scan(br#"{"items":[12345]}"#, 1, 5).is_ok());
    assert!(scan(br#"{"items":[123456]}"#, 1, 5).is_err());
}
