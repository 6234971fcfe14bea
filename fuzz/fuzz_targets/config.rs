//! Config::parse on arbitrary text: never panics; every error's line is
//! within the text (1..=number of `\n` + 1) and its column, if any, within
//! that line (1..=characters on the line + 1); no error has a column without
//! a line.
#![no_main]

use std::path::Path;

use kwatchd::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(errors) = Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    assert!(!errors.is_empty(), "Err with no error in it");
    let lines: Vec<&str> = text.split('\n').collect();
    for e in &errors {
        assert_eq!(e.file, Path::new("fuzz.toml"));
        assert!(!e.message.is_empty(), "error without a message: {e:?}");
        match (e.line, e.column) {
            (None, None) => {}
            (None, Some(_)) => panic!("column without a line: {e:?}"),
            (Some(line), column) => {
                assert!(
                    (1..=lines.len()).contains(&line),
                    "line {line} outside 1..={}: {e:?}",
                    lines.len()
                );
                if let Some(column) = column {
                    let chars = lines[line - 1].chars().count();
                    assert!(
                        (1..=chars + 1).contains(&column),
                        "column {column} outside 1..={} on line {line}: {e:?}",
                        chars + 1
                    );
                }
            }
        }
        // Display never panics either.
        let _ = e.to_string();
    }
});
