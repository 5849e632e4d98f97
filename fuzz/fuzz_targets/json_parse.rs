//! The JSON parser behind `meshd status` (`Json::parse`), which reads the
//! daemon's `status json` answer.
//!
//! Input layout: the whole input is the text (as UTF-8 when it is valid,
//! otherwise with the invalid bytes replaced by U+FFFD).
//!
//! Checked: no panic and no stack overflow (either ends the run); an error
//! names a byte within the text; a document that parses is at most
//! `MAX_DEPTH` deep, and the text the writer makes of it, compact
//! (`to_string`) and indented (`pretty`), parses back to a value that
//! writes the same compact text (compared as text: an integral float reads
//! back as an int).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::json::Json;
use meshd::json_parse::MAX_DEPTH;

/// How many arrays and objects deep `v` is (a scalar is depth 0).
fn depth(v: &Json) -> usize {
    match v {
        Json::Arr(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Json::Obj(fields) => 1 + fields.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Json::parse(&text) {
        Err(e) => {
            assert!(e.offset <= text.len(), "{e} in {} bytes", text.len());
            let _ = e.to_string();
        }
        Ok(v) => {
            assert!(depth(&v) <= MAX_DEPTH, "{} deep", depth(&v));
            let compact = v.to_string();
            for written in [compact.clone(), v.pretty()] {
                let back = Json::parse(&written).map(|w| w.to_string());
                assert_eq!(back, Ok(compact.clone()), "written: {written}");
            }
        }
    }
});
