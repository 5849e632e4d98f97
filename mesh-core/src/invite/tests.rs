use super::*;

extern crate std;
use std::string::ToString;
use std::vec::Vec;

const T0: Instant = Instant::from_secs(1000);
const R1: [u8; 32] = [1; 32];
const R2: [u8; 32] = [2; 32];
const R3: [u8; 32] = [3; 32];

fn name(s: &str) -> Name {
    Name::try_from(s).unwrap()
}

fn token(id: u8) -> Token {
    Token {
        inviter: R1,
        inviter_name: name("r1"),
        endpoints: heapless::Vec::from_slice(&[
            Endpoint::from("198.51.100.1:51820".parse::<SocketAddr>().unwrap()),
            Endpoint::from("[2001:db8::1]:51820".parse::<SocketAddr>().unwrap()),
        ])
        .unwrap(),
        id: [id; ID_LEN],
        secret: [0x5a; SECRET_LEN],
        expires: 1_800_000_000,
        name: name("r2"),
        numbers: None,
    }
}

/// R1 holding an invite for `t`, valid 60 s from T0.
fn inviter(t: &Token) -> Invites<4> {
    let mut i = Invites::new();
    i.add(T0, t.id, t.secret, t.name.clone(), Duration::from_secs(60))
        .unwrap();
    i
}

fn request(j: &mut Joining, now: Instant, own: &[u8; 32]) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM];
    let n = j
        .poll_request(now, own, &mut buf)
        .expect("a request is due");
    buf[..n].to_vec()
}

#[test]
fn a_token_round_trips_through_its_text_and_fits_its_bounds() {
    let t = token(7);
    let text = t.to_text().unwrap();
    assert!(text.starts_with("MESHD1"));
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    assert_eq!(Token::from_text(&text).unwrap(), t);
    // Lower case and surrounding white space are the same token.
    let lower = std::format!("  {}\n", text.to_ascii_lowercase());
    assert_eq!(Token::from_text(&lower).unwrap(), t);
    // The largest token fits MAX_TOKEN and MAX_TEXT.
    let mut big = t.clone();
    big.inviter_name = name(&"a".repeat(MAX_NAME));
    big.name = name(&"b".repeat(MAX_NAME));
    big.endpoints =
        heapless::Vec::from_slice(&[Endpoint::V6([0xff; 16], 65535); MAX_ENDPOINTS]).unwrap();
    big.expires = u64::MAX;
    big.numbers = Some(Numbers {
        overlay: [255; 4],
        asn: u32::MAX,
        prefixes: heapless::Vec::from_slice(&[([255; 4], 32); MAX_PREFIXES]).unwrap(),
    });
    let text = big.to_text().unwrap();
    assert_eq!(Token::from_text(&text).unwrap(), big);
}

#[test]
fn every_changed_character_of_a_token_is_refused() {
    let text = token(7).to_text().unwrap().to_string();
    let body = &text[TEXT_PREFIX.len()..];
    for i in 0..body.len() {
        for c in ALPHABET.iter().map(|&c| c as char) {
            if body.as_bytes()[i] as char == c {
                continue;
            }
            let mut s = std::string::String::from(TEXT_PREFIX);
            s.push_str(&body[..i]);
            s.push(c);
            s.push_str(&body[i + 1..]);
            let r = Token::from_text(&s);
            assert!(
                matches!(r, Err(Error::Checksum) | Err(Error::NotAToken)),
                "position {i}, {c}: {r:?}"
            );
        }
    }
    for bad in ["", "MESHD1", "MESHD2AAAA", "hello", "MESHD1ABC!", "MESHD1A"] {
        assert!(Token::from_text(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_friend_with_the_token_joins_once_and_only_once() {
    let t = token(1);
    let mut r1 = inviter(&t);
    let mut j = Joining::new(T0, t.clone(), [9; NONCE_LEN]);
    let req = request(&mut j, T0, &R2);
    let mut out = [0u8; MAX_DATAGRAM];
    let Outcome::Joined {
        name: n, key, len, ..
    } = r1.handle(T0, &req, &R1, &mut out)
    else {
        panic!("not joined");
    };
    assert_eq!((n.as_str(), key), ("r2", R2));
    assert_eq!(r1.pending(T0).count(), 0);
    // The joiner takes the accept.
    assert_eq!(j.handle(&out[..len]), Reply::Accepted);
    assert_eq!(j.state, JoinState::Joined);
    assert_eq!(j.poll_timeout(), None);
    // The same request again (the accept was lost): answered again.
    let again = r1.handle(T0 + Duration::from_secs(1), &req, &R1, &mut out);
    assert!(matches!(again, Outcome::Again { .. }), "{again:?}");
    // Anyone else with the same token: refused as reused.
    // It is told why (the refusal carries the MAC too).
    let mut j3 = Joining::new(T0, t.clone(), [8; NONCE_LEN]);
    let req3 = request(&mut j3, T0, &R3);
    let Outcome::Told { len } = r1.handle(T0 + Duration::from_secs(2), &req3, &R1, &mut out) else {
        panic!("not told");
    };
    assert_eq!(j3.handle(&out[..len]), Reply::Refused(Refusal::Used));
    assert_eq!(j3.state, JoinState::Refused(Refusal::Used));
    // The refusal means nothing to another join.
    let mut j4 = Joining::new(T0, t.clone(), [6; NONCE_LEN]);
    assert_eq!(j4.handle(&out[..len]), Reply::Ignored);
    // Even the same joiner with another nonce (another `meshd join`).
    let mut j2 = Joining::new(T0, t, [7; NONCE_LEN]);
    let req2 = request(&mut j2, T0, &R2);
    assert!(matches!(
        r1.handle(T0 + Duration::from_secs(3), &req2, &R1, &mut out),
        Outcome::Told { .. }
    ));
    assert_eq!(r1.stats.joined, 1);
    assert_eq!(r1.stats.answered_again, 1);
    assert_eq!(r1.stats.refused_used, 2);
}

#[test]
fn an_expired_invite_and_a_wrong_secret_are_refused_and_counted() {
    let t = token(1);
    let mut r1 = inviter(&t);
    let mut out = [0u8; MAX_DATAGRAM];
    let late = T0 + Duration::from_secs(60);
    let mut j = Joining::new(late, t.clone(), [9; NONCE_LEN]);
    let req = request(&mut j, late, &R2);
    let Outcome::Told { len } = r1.handle(late, &req, &R1, &mut out) else {
        panic!("not told");
    };
    assert_eq!(j.handle(&out[..len]), Reply::Refused(Refusal::Expired));
    assert_eq!(r1.stats.refused_expired, 1);
    // A forged secret, and a request for an invite no one made.
    let mut r1 = inviter(&t);
    let mut forged = t.clone();
    forged.secret[0] ^= 1;
    let req = request(&mut Joining::new(T0, forged, [9; NONCE_LEN]), T0, &R2);
    assert_eq!(r1.handle(T0, &req, &R1, &mut out), Outcome::Refused);
    let req = request(&mut Joining::new(T0, token(2), [9; NONCE_LEN]), T0, &R2);
    assert_eq!(r1.handle(T0, &req, &R1, &mut out), Outcome::Refused);
    assert_eq!((r1.stats.refused_bad_mac, r1.stats.refused_unknown), (1, 1));
    // The invite is still there for the real friend.
    assert_eq!(r1.pending(T0).count(), 1);
}

#[test]
fn every_flipped_bit_of_a_request_is_refused() {
    let t = token(1);
    let req = request(&mut Joining::new(T0, t.clone(), [9; NONCE_LEN]), T0, &R2);
    let mut out = [0u8; MAX_DATAGRAM];
    for bit in 0..req.len() * 8 {
        // A fresh inviter per flip: the cap is not what refuses it.
        let mut r1 = inviter(&t);
        let mut bad = req.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            r1.handle(T0, &bad, &R1, &mut out),
            Outcome::Refused,
            "bit {bit}"
        );
        assert_eq!(r1.stats.joined, 0);
    }
}

#[test]
fn the_joiner_takes_only_its_inviters_accept() {
    let t = token(1);
    let mut r1 = inviter(&t);
    let mut j = Joining::new(T0, t.clone(), [9; NONCE_LEN]);
    let req = request(&mut j, T0, &R2);
    let mut out = [0u8; MAX_DATAGRAM];
    let Outcome::Joined { len, .. } = r1.handle(T0, &req, &R1, &mut out) else {
        panic!()
    };
    let accept = out[..len].to_vec();
    // Its own request echoed, a flipped bit, an accept by another key.
    assert_eq!(j.handle(&req), Reply::Ignored);
    for bit in 0..accept.len() * 8 {
        let mut bad = accept.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(j.handle(&bad), Reply::Ignored, "bit {bit}");
    }
    let mut other = inviter(&t);
    let mut out2 = [0u8; MAX_DATAGRAM];
    let Outcome::Joined { len, .. } = other.handle(T0, &req, &R3, &mut out2) else {
        panic!()
    };
    assert!(
        j.handle(&out2[..len]) == Reply::Ignored,
        "an accept signed for another inviter key"
    );
    assert_eq!(j.state, JoinState::Joining);
    assert_eq!(j.handle(&accept), Reply::Accepted);
}

#[test]
fn the_joiner_retries_each_second_and_gives_up_after_the_timeout() {
    let mut j = Joining::new(T0, token(1), [9; NONCE_LEN]);
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut sent = 0;
    let mut now = T0;
    while let Some(t) = j.poll_timeout() {
        now = t;
        if j.poll_request(now, &R2, &mut buf).is_some() {
            sent += 1;
        }
    }
    assert_eq!(j.state, JoinState::TimedOut);
    assert_eq!(sent, (JOIN_TIMEOUT.as_secs() / JOIN_RETRY.as_secs()) as u32);
    assert_eq!(now, T0 + JOIN_TIMEOUT);
}

#[test]
fn a_flood_of_join_datagrams_is_cut_to_the_rate() {
    let t = token(1);
    let mut r1 = inviter(&t);
    let mut out = [0u8; MAX_DATAGRAM];
    // 2,000 in one second.
    for k in 0..2000u64 {
        let now = T0 + Duration::from_micros(k * 500);
        let junk = [MAGIC, VERSION, 1, (k % 251) as u8, 7, 7];
        if r1.admit(now) {
            assert_eq!(r1.handle(now, &junk, &R1, &mut out), Outcome::Refused);
        }
    }
    let s = r1.stats;
    assert_eq!(s.malformed + s.rate_limited, 2000);
    assert!(
        s.malformed <= (JOIN_BURST + JOIN_RATE + 1) as u64,
        "{} read in one second",
        s.malformed
    );
    // A second later the real friend gets through.
    let later = T0 + Duration::from_secs(2);
    let req = request(&mut Joining::new(later, t, [9; NONCE_LEN]), later, &R2);
    assert!(r1.admit(later));
    assert!(matches!(
        r1.handle(later, &req, &R1, &mut out),
        Outcome::Joined { .. }
    ));
}

#[test]
fn a_full_table_makes_room_only_from_expired_invites() {
    let mut r1: Invites<2> = Invites::new();
    let minute = Duration::from_secs(60);
    r1.add(T0, [1; ID_LEN], [1; SECRET_LEN], name("a"), minute)
        .unwrap();
    r1.add(T0, [2; ID_LEN], [2; SECRET_LEN], name("b"), minute * 2)
        .unwrap();
    assert_eq!(
        r1.add(T0, [3; ID_LEN], [3; SECRET_LEN], name("c"), minute),
        Err(Full)
    );
    let later = T0 + minute;
    r1.add(later, [3; ID_LEN], [3; SECRET_LEN], name("c"), minute)
        .unwrap();
    let names: Vec<_> = r1.pending(later).map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"b") && names.contains(&"c"));
    assert!(r1.cancel("c"));
    assert!(!r1.cancel("c"));
}

/// The fuzz seeds `fuzz/seeds/invite_seeds.py` writes are tokens as this
/// module encodes them (so the fuzzer starts past the checksum): one with
/// a hand-numbered inviter's numbers, one without.
#[test]
fn the_fuzz_seed_tokens_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/invite");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let plain = Token::decode(&read("token_bytes")[1..]).unwrap();
    assert_eq!(plain.numbers, None);
    let text = read("token_text");
    let t = Token::from_text(core::str::from_utf8(&text[1..]).unwrap()).unwrap();
    assert_eq!(t, plain);
    let numbered = Token::decode(&read("token_numbers")[1..]).unwrap();
    let n = numbered.numbers.unwrap();
    assert_eq!((n.overlay, n.asn), ([10, 0, 0, 1], 65001));
    assert_eq!(n.prefixes.as_slice(), &[([192, 168, 1, 0], 24)]);
}
