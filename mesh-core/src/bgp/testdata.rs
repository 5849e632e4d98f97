//! Byte fixtures captured from real BGP speakers (see `testdata/*.txt` for how
//! each was recorded).

extern crate std;

/// The message named `name` from the BIRD 2 capture.
pub fn bird(name: &str) -> heapless::Vec<u8, 4096> {
    fixture(include_str!("testdata/bird2-session.txt"), name)
}

fn fixture(text: &str, name: &str) -> heapless::Vec<u8, 4096> {
    let line = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no fixture named {name}"));
    let bytes = line.trim().as_bytes();
    bytes
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        .collect()
}
