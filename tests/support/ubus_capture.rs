//! The capture of a real ubusd talking to a real libubus object owner
//! (`tests/fixtures/ubus/conn01.txt`, see its README), for the tests that
//! play ubusd's side.

#![allow(dead_code)]

pub const CONN01: &str = include_str!("../fixtures/ubus/conn01.txt");

/// One line of the capture.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `>` to ubusd, `<` from ubusd.
    pub dir: char,
    pub kind: String,
    pub peer: u32,
    pub bytes: Vec<u8>,
}

pub fn capture() -> Vec<Captured> {
    CONN01
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = f[4];
            Captured {
                dir: f[0].chars().next().unwrap(),
                kind: f[1].to_string(),
                peer: u32::from_str_radix(f[3].strip_prefix("peer=0x").unwrap(), 16).unwrap(),
                bytes: (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect(),
            }
        })
        .collect()
}

/// The `n`th frame of `kind` in direction `dir` to or from `peer`.
pub fn find(cap: &[Captured], dir: char, kind: &str, peer: u32, n: usize) -> Vec<u8> {
    cap.iter()
        .filter(|c| c.dir == dir && c.kind == kind && c.peer == peer)
        .nth(n)
        .unwrap_or_else(|| panic!("no {dir} {kind} {peer:08x} #{n}"))
        .bytes
        .clone()
}

/// The `n`th frame of `kind` in direction `dir`, whoever the peer.
pub fn nth(dir: char, kind: &str, n: usize) -> Vec<u8> {
    capture()
        .into_iter()
        .filter(|c| c.dir == dir && c.kind == kind)
        .nth(n)
        .unwrap_or_else(|| panic!("no {dir} {kind} #{n} in the capture"))
        .bytes
}
