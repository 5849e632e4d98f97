//! Invites (`mesh_core::invite`): tokens as bytes and as text, and the
//! join exchange on both sides.
//!
//! Byte 0 picks the mode:
//! - 0: the rest is a token's bytes (`Token::decode`): what decodes
//!   encodes to a token that decodes the same;
//! - 1: the rest is a token's text (`Token::from_text`, lossy UTF-8): the
//!   same round trip through the text;
//! - else: an inviter holding invites 0 and 1 (invite 2 it never made), and
//!   a joiner, driven by records (the first byte modulo 4):
//!   - 0 `[len, bytes…]`: those bytes to the inviter's mesh port;
//!   - 1 `[which, key, nonce]`: a real request for invite `which % 3` from
//!     joiner key `key`, nonce `nonce` (sealed with the invite's secret;
//!     the joiner's own join when `key` is 0);
//!   - 2 `[step]`: time passes, `step` × 250 ms;
//!   - 3 `[len, bytes…]`: those bytes to the joiner (an answer the inviter
//!     made, picked by `len`'s low bits when bit 7 is set).
//!
//! Checked: no panic; every datagram the inviter admitted lands in exactly
//! one counter; an invite is used at most once and never after its expiry;
//! an answer again goes only to the same key and nonce; the joiner takes
//! an accept or refusal only if the inviter made it for that join.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::invite::{
    Invites, JoinState, Joining, Name, Numbers, Outcome, Reply, Token, MAX_DATAGRAM, MAX_PREFIXES,
    MAX_TOKEN, TEXT_PREFIX,
};
use mesh_core::{Duration, Instant};

const T0: Instant = Instant::from_secs(1000);
const VALID: Duration = Duration::from_secs(10);
const INVITER: [u8; 32] = [1; 32];

fn token(which: u8) -> Token {
    Token {
        inviter: INVITER,
        inviter_name: Name::try_from("r1").unwrap(),
        endpoints: heapless::Vec::new(),
        id: [which; 8],
        secret: [which.wrapping_add(0x40); 16],
        expires: 0,
        name: Name::try_from("friend").unwrap(),
        numbers: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            if let Ok(t) = Token::decode(rest) {
                let mut out = [0u8; MAX_TOKEN];
                let n = t.encode(&mut out).expect("a decoded token encodes");
                assert_eq!(Token::decode(&out[..n]), Ok(t));
            }
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(t) = Token::from_text(&text) {
                let again = t.to_text().expect("a decoded token has a text");
                assert!(again.starts_with(TEXT_PREFIX));
                assert_eq!(Token::from_text(&again), Ok(t));
            }
        }
        _ => exchange(rest),
    }
});

fn exchange(data: &[u8]) {
    let mut inviter: Invites<4> = Invites::new();
    for which in 0..2 {
        let t = token(which);
        inviter
            .add(T0, t.id, t.secret, t.name.clone(), VALID)
            .unwrap();
    }
    let mut joiner = Joining::new(T0, token(0), [0xee; 8]);
    let mut now = T0;
    let mut admitted = 0u64;
    // Who used each invite, and the answers the inviter made (for whom).
    let mut used: [Option<([u8; 32], [u8; 8])>; 3] = [None; 3];
    let mut answers: Vec<(Vec<u8>, [u8; 32], [u8; 8])> = Vec::new();
    // The joiner's request, so that it knows its own key.
    let _ = joiner.poll_request(now, &[2; 32], &mut [0u8; MAX_DATAGRAM]);
    let mut it = data.iter().copied();
    let mut out = [0u8; MAX_DATAGRAM];
    while let Some(op) = it.next() {
        match op % 4 {
            0 | 1 => {
                let (bytes, sent) = if op % 4 == 0 {
                    let len = it.next().unwrap_or(0) as usize % (MAX_DATAGRAM + 8);
                    let bytes: Vec<u8> = it.by_ref().take(len).collect();
                    (bytes, None)
                } else {
                    let (which, key, nonce) = (
                        it.next().unwrap_or(0) % 3,
                        it.next().unwrap_or(0),
                        it.next().unwrap_or(0),
                    );
                    let (key, nonce) = if key == 0 {
                        ([2; 32], [0xee; 8])
                    } else {
                        ([key; 32], [nonce; 8])
                    };
                    let mut j = Joining::new(now, token(which), nonce);
                    // Some joiners carry numbers set by hand (the largest).
                    if nonce[0] % 2 == 1 {
                        j.numbers = Some(Numbers {
                            overlay: [nonce[0]; 4],
                            asn: u32::MAX,
                            prefixes: heapless::Vec::from_slice(
                                &[([nonce[0]; 4], 32); MAX_PREFIXES],
                            )
                            .unwrap(),
                        });
                    }
                    let n = j.poll_request(now, &key, &mut out).expect("a request");
                    (out[..n].to_vec(), Some((which as usize, key, nonce)))
                };
                if !inviter.admit(now) {
                    continue;
                }
                admitted += 1;
                let mut reply = [0u8; MAX_DATAGRAM];
                let outcome = inviter.handle(now, &bytes, &INVITER, &mut reply);
                match outcome {
                    Outcome::Joined { key, len, .. } => {
                        let (which, k, nonce) = sent.expect("joined by bytes no joiner sealed");
                        assert_eq!(k, key);
                        assert!(which < 2, "joined an invite never made");
                        assert!(used[which].is_none(), "invite {which} used twice");
                        assert!(now < T0 + VALID, "joined after the expiry");
                        used[which] = Some((key, nonce));
                        answers.push((reply[..len].to_vec(), key, nonce));
                    }
                    Outcome::Again { len } => {
                        let (which, k, nonce) = sent.expect("answered bytes no joiner sealed");
                        assert_eq!(used[which], Some((k, nonce)), "answered another joiner");
                        answers.push((reply[..len].to_vec(), k, nonce));
                    }
                    Outcome::Told { len } => {
                        let (_, k, nonce) = sent.expect("told bytes no joiner sealed");
                        answers.push((reply[..len].to_vec(), k, nonce));
                    }
                    Outcome::Refused => {}
                }
            }
            2 => now += Duration::from_millis(250 * u64::from(it.next().unwrap_or(0))),
            _ => {
                let sel = it.next().unwrap_or(0);
                let bytes: Vec<u8> = if sel & 0x80 != 0 && !answers.is_empty() {
                    answers[sel as usize % answers.len()].0.clone()
                } else {
                    it.by_ref()
                        .take(sel as usize % (MAX_DATAGRAM + 8))
                        .collect()
                };
                let before = joiner.state.clone();
                let r = joiner.handle(&bytes);
                if r != Reply::Ignored {
                    assert_eq!(before, JoinState::Joining);
                    assert!(
                        answers
                            .iter()
                            .any(|(a, k, n)| *a == bytes && *k == [2; 32] && *n == [0xee; 8]),
                        "the joiner took an answer not made for its join: {r:?}"
                    );
                }
            }
        }
        let s = inviter.stats;
        let counted = s.joined
            + s.answered_again
            + s.refused_expired
            + s.refused_used
            + s.refused_bad_mac
            + s.refused_unknown
            + s.malformed;
        assert_eq!(counted, admitted, "{s:?}");
    }
}
