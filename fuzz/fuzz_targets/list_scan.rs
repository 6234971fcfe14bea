//! ListScanner (the LIST item parser) with a 4096-byte item limit, fed in
//! fuzzer-chosen pieces: never panics; no item is longer than the limit;
//! what it holds stays within the limit plus the last piece; and whenever
//! the whole-page parser (`ListPage::parse`) accepts the payload (an
//! object without escapes: the page parser decodes escaped member names,
//! and serde takes a struct from an array too; the scanner does neither) and fits in the limit, the scanner yields the same items and
//! the same list info.
#![no_main]

use kwatchd::kube::list_scan::ListScanner;
use kwatchd::kube::ListPage;
use kwatchd_fuzz::split;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let input = split(data);
    let mut s = ListScanner::new(MAX);
    let mut items: Vec<Vec<u8>> = Vec::new();
    let mut failed = false;
    'feed: for piece in &input.pieces {
        s.feed(piece);
        loop {
            match s.next_item() {
                Ok(Some((item, _))) => {
                    assert!(item.len() <= MAX, "item of {} bytes", item.len());
                    items.push(item.to_vec());
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
        assert!(
            s.buffered() <= MAX + piece.len() + 1,
            "{} bytes held",
            s.buffered()
        );
    }
    let finished = !failed && s.finish().is_ok();
    let object = input.payload.trim_ascii_start().starts_with(b"{");
    if input.payload.contains(&b'\\') || !object {
        return;
    }
    let Ok(page) = ListPage::parse(input.payload) else {
        return;
    };
    if input.payload.len() > MAX {
        // An item or the metadata may be over the limit.
        return;
    }
    assert!(finished, "the page parser accepts what the scanner refused");
    let want: Vec<&[u8]> = page.items.iter().map(|i| i.get().as_bytes()).collect();
    assert_eq!(items, want);
    let info = s.info();
    assert_eq!(info.item_kind, page.item_kind);
    assert_eq!(info.resource_version.as_deref(), page.resource_version.as_deref());
    assert_eq!(info.continue_token.as_deref(), page.continue_token.as_deref());
});
