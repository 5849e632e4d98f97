use std::vec;

use super::*;

use curve25519_dalek::montgomery::MontgomeryPoint;
use xeddsa::{Sign, Verify};

/// A private key and its X25519 public key (as WireGuard computes it).
fn keys(seed: u8) -> ([u8; 32], [u8; 32]) {
    let mut private = [0u8; 32];
    for (i, b) in private.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8 * 7) ^ 0x5a;
    }
    let public = MontgomeryPoint::mul_base_clamped(private).to_bytes();
    (private, public)
}

fn name(s: &str) -> Name {
    Name::try_from(s).unwrap()
}

fn record(signer: [u8; 32]) -> Record {
    let mut entries = heapless::Vec::new();
    entries
        .push(Entry {
            key: keys(2).1,
            name: name("bob"),
            removed: false,
        })
        .unwrap();
    entries
        .push(Entry {
            key: keys(3).1,
            name: name("carol_2"),
            removed: true,
        })
        .unwrap();
    Record {
        signer,
        version: 7,
        entries,
    }
}

/// Always the same octets: the other implementation's "random" nonce.
struct Fixed([u8; 64]);

impl rand_core::RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        unimplemented!()
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.copy_from_slice(&self.0[..dest.len()]);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for Fixed {}

#[test]
fn our_signatures_are_xeddsa_as_another_implementation_makes_and_checks_them() {
    for seed in 0..16u8 {
        let (private, public) = keys(seed);
        let z = [seed ^ 0xa5; 64];
        let msg = [seed; 40];
        let ours = xeddsa_sign(&private, &msg, &z);
        let theirs: [u8; 64] = xeddsa::xed25519::PrivateKey(private).sign(&msg, Fixed(z));
        // Same key, message and nonce: the same octets (the scheme is
        // deterministic given Z), whichever sign bit the key's A had.
        assert_eq!(ours, theirs, "seed {seed}");
        assert!(xeddsa_verify(&public, &msg, &theirs));
        assert!(xeddsa::xed25519::PublicKey(public)
            .verify(&msg, &ours)
            .is_ok());
    }
}

#[test]
fn a_signature_holds_only_for_its_key_and_its_message() {
    let (private, public) = keys(1);
    let msg = b"meshd group";
    let sig = xeddsa_sign(&private, msg, &[9; 64]);
    assert!(xeddsa_verify(&public, msg, &sig));
    assert!(!xeddsa_verify(&keys(2).1, msg, &sig));
    assert!(!xeddsa_verify(&public, b"meshd grouq", &sig));
    for bit in 0..512 {
        let mut bad = sig;
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(!xeddsa_verify(&public, msg, &bad), "bit {bit}");
    }
    // The public key with its unused top bit set is not canonical: refused.
    let mut high = public;
    high[31] |= 0x80;
    assert!(!xeddsa_verify(&high, msg, &sig));
    // u = p + 1 (not reduced) and the all-zero key.
    let mut p1 = [0xffu8; 32];
    p1[0] = 0xee;
    p1[31] = 0x7f;
    assert!(!xeddsa_verify(&p1, msg, &sig));
    assert!(!xeddsa_verify(&[0; 32], msg, &sig));
}

#[test]
fn a_record_signed_decodes_to_itself_and_any_changed_bit_is_refused() {
    let (private, public) = keys(1);
    let r = record(public);
    let mut buf = [0u8; MAX_LEN];
    let n = r.sign(&private, &[3; 64], &mut buf).unwrap();
    let bytes = &buf[..n];
    assert_eq!(Record::decode(bytes), Ok(r.clone()));
    for bit in 0..n * 8 {
        let mut bad = bytes.to_vec();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(Record::decode(&bad).is_err(), "bit {bit} of {n}");
    }
    for cut in 0..n {
        assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(Record::decode(&longer).is_err());
}

#[test]
fn a_record_signed_by_another_key_than_its_signer_is_refused() {
    let (_, public) = keys(1);
    let (other, _) = keys(4);
    let mut buf = [0u8; MAX_LEN];
    let n = record(public).sign(&other, &[3; 64], &mut buf).unwrap();
    assert_eq!(Record::decode(&buf[..n]), Err(Error::Signature));
}

#[test]
fn the_largest_record_is_max_len() {
    let (private, public) = keys(1);
    let mut r = Record {
        signer: public,
        version: u64::MAX,
        entries: heapless::Vec::new(),
    };
    for i in 0..MAX_ENTRIES {
        let mut n = Name::new();
        for _ in 0..crate::invite::MAX_NAME {
            n.push(char::from(b'a' + i as u8)).unwrap();
        }
        r.entries
            .push(Entry {
                key: keys(10 + i as u8).1,
                name: n,
                removed: i % 2 == 0,
            })
            .unwrap();
    }
    let mut buf = [0u8; MAX_LEN];
    let n = r.sign(&private, &[1; 64], &mut buf).unwrap();
    assert_eq!(n, MAX_LEN);
    assert_eq!(Record::decode(&buf[..n]), Ok(r));
}

#[test]
fn entries_that_repeat_a_key_name_the_signer_or_a_bad_name_are_refused() {
    let (private, public) = keys(1);
    let mut buf = [0u8; MAX_LEN];
    let mut twice = record(public);
    twice.entries[1].key = twice.entries[0].key;
    let n = twice.sign(&private, &[0; 64], &mut buf).unwrap();
    assert_eq!(Record::decode(&buf[..n]), Err(Error::Malformed));
    let mut itself = record(public);
    itself.entries[0].key = public;
    let n = itself.sign(&private, &[0; 64], &mut buf).unwrap();
    assert_eq!(Record::decode(&buf[..n]), Err(Error::Malformed));
    let mut bad = record(public);
    bad.entries[0].name = name("bob-2");
    let n = bad.sign(&private, &[0; 64], &mut buf).unwrap();
    assert_eq!(Record::decode(&buf[..n]), Err(Error::BadName));
}

#[test]
fn a_short_buffer_is_an_error_not_a_panic() {
    let (private, public) = keys(1);
    let r = record(public);
    let mut full = [0u8; MAX_LEN];
    let n = r.sign(&private, &[0; 64], &mut full).unwrap();
    for len in 0..n {
        let mut buf = [0u8; MAX_LEN];
        assert_eq!(
            r.sign(&private, &[0; 64], &mut buf[..len]),
            Err(Error::BufferTooSmall),
            "{len}"
        );
    }
}

/// The fuzz target's seeds (`fuzz/seeds/group/`): a record as received
/// (mode 0) and the largest one, each signed here with a fixed nonce, and
/// an input of the building mode. `MESHD_WRITE_SEEDS=1` rewrites them;
/// without, this checks that the committed files are still what the codec
/// makes.
#[test]
fn fuzz_seeds_are_current_encodings() {
    let (private, public) = keys(1);
    let mut buf = [0u8; MAX_LEN];
    let n = record(public).sign(&private, &[3; 64], &mut buf).unwrap();
    let mut received = vec![0u8];
    received.extend_from_slice(&buf[..n]);
    let mut big = Record {
        signer: public,
        version: 1 << 40,
        entries: heapless::Vec::new(),
    };
    for i in 0..MAX_ENTRIES as u8 {
        big.entries
            .push(Entry {
                key: keys(20 + i).1,
                name: name("friend_with_a_long_name_0123456"),
                removed: i == 3,
            })
            .unwrap();
    }
    let n = big.sign(&private, &[4; 64], &mut buf).unwrap();
    let mut largest = vec![0u8];
    largest.extend_from_slice(&buf[..n]);
    let mut build = vec![1u8];
    build.extend_from_slice(&5u64.to_le_bytes());
    build.extend_from_slice(&[7, 3, 0, 8, 31, 1, 9, 0, 0]);
    build.extend_from_slice(&[0, 40, 5, 3]);
    let seeds = [
        ("received_record.bin", received),
        ("largest_record.bin", largest),
        ("build_and_change.bin", build),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/group");
    let write = std::env::var_os("MESHD_WRITE_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (file, bytes) in seeds {
        let path = dir.join(file);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(on_disk, bytes, "{file}");
    }
}

/// `signer`'s record of `entries` (key seed, name, removed), version `v`.
fn signed(signer: u8, v: u64, entries: &[(u8, &str, bool)]) -> std::vec::Vec<u8> {
    let (private, public) = keys(signer);
    let mut r = Record {
        signer: public,
        version: v,
        entries: heapless::Vec::new(),
    };
    for &(k, n, removed) in entries {
        r.entries
            .push(Entry {
                key: keys(k).1,
                name: name(n),
                removed,
            })
            .unwrap();
    }
    let mut buf = [0u8; MAX_LEN];
    let n = r.sign(&private, &[v as u8; 64], &mut buf).unwrap();
    buf[..n].to_vec()
}

fn membership<const N: usize>(
    g: &Group<N>,
    members: &[u8],
) -> (
    std::vec::Vec<(u8, std::string::String, u8)>,
    std::vec::Vec<u8>,
) {
    let seed_of = |k: &[u8; 32]| (0..=255u8).find(|&s| keys(s).1 == *k).unwrap();
    let may = |k: &[u8; 32]| members.iter().any(|&m| keys(m).1 == *k);
    let mut wanted = std::vec::Vec::new();
    let mut removed = std::vec::Vec::new();
    g.membership(
        may,
        |w| wanted.push((seed_of(&w.key), w.name.as_str().into(), seed_of(&w.via))),
        |k| removed.push(seed_of(k)),
    );
    (wanted, removed)
}

#[test]
fn a_chain_of_invites_reaches_every_member_through_the_records() {
    // 1 invited 2 and 4; 2 joined through 1 and invited 3. Router 3 knows
    // only 2 (its inviter) at first.
    let r1 = signed(1, 2, &[(2, "bob", false), (4, "dave", false)]);
    let r2 = signed(2, 2, &[(1, "alice", false), (3, "carol", false)]);
    let mut g: Group<8> = Group::new(keys(3).1);
    let only_2 = |k: &[u8; 32]| *k == keys(2).1;
    // 1's record before 1 is a member here: refused, counted.
    assert_eq!(g.offer(&r1, only_2), Err(Refused::NotAnInviter));
    assert_eq!(g.offer(&r2, only_2), Ok(Offered::New));
    assert_eq!(membership(&g, &[2]), (vec![(1, "alice".into(), 2)], vec![]));
    // The daemon adds 1; 1's record is taken now, and brings 4.
    let members_1_2 = |k: &[u8; 32]| *k == keys(2).1 || *k == keys(1).1;
    assert_eq!(g.offer(&r1, members_1_2), Ok(Offered::New));
    assert_eq!(
        membership(&g, &[1, 2]),
        (
            vec![
                (1, "alice".into(), 2),
                (2, "bob".into(), 1),
                (4, "dave".into(), 1)
            ],
            vec![]
        )
    );
    assert_eq!(g.offer(&r1, members_1_2), Ok(Offered::Stale));
    assert_eq!(
        g.counters,
        GroupCounters {
            accepted: 2,
            stale: 1,
            not_inviter: 1,
            ..GroupCounters::default()
        }
    );
}

#[test]
fn a_removal_by_an_inviter_wins_over_another_members_record() {
    let mut g: Group<8> = Group::new(keys(3).1);
    let all = |_: &[u8; 32]| true;
    g.offer(&signed(2, 1, &[(4, "dave", false)]), all).unwrap();
    g.offer(&signed(1, 1, &[(4, "dave", false)]), all).unwrap();
    assert_eq!(membership(&g, &[1, 2]).1, std::vec::Vec::<u8>::new());
    // 1 removes 4 (version 2): removed, though 2 still vouches for it.
    assert_eq!(
        g.offer(&signed(1, 2, &[(4, "dave", true)]), all),
        Ok(Offered::New)
    );
    assert_eq!(membership(&g, &[1, 2]), (vec![], vec![4]));
    // An older record of 1 that still adds 4 changes nothing.
    assert_eq!(
        g.offer(&signed(1, 1, &[(4, "dave", false)]), all),
        Ok(Offered::Stale)
    );
    assert_eq!(membership(&g, &[1, 2]), (vec![], vec![4]));
    // Once 1 may not invite, its removal no longer counts.
    assert_eq!(membership(&g, &[2]), (vec![(4, "dave".into(), 2)], vec![]));
}

#[test]
fn a_record_claiming_to_be_ours_or_from_a_non_inviter_is_refused() {
    let mut g: Group<8> = Group::new(keys(3).1);
    let all = |_: &[u8; 32]| true;
    assert_eq!(
        g.offer(&signed(3, 9, &[(1, "alice", true)]), all),
        Ok(Offered::Own { version: 9 })
    );
    assert_eq!(
        g.offer(&signed(1, 1, &[]), |_: &[u8; 32]| false),
        Err(Refused::NotAnInviter)
    );
    let mut bad = signed(1, 1, &[(2, "bob", false)]);
    bad[5] ^= 1;
    assert_eq!(g.offer(&bad, all), Err(Refused::Bad(Error::Signature)));
    assert_eq!(g.digest().held.len(), 0);
    assert_eq!(
        (g.counters.not_inviter, g.counters.bad, g.counters.stale),
        (1, 1, 1)
    );
    // Our own, from our daemon.
    assert!(g.set_own(&signed(3, 4, &[(1, "alice", false)])).is_ok());
    assert_eq!(g.set_own(&signed(1, 4, &[])), Err(Error::Signature));
    assert_eq!(g.version(&keys(3).1), Some(4));
}

#[test]
fn digests_say_what_to_send_and_decode_to_themselves() {
    let all = |_: &[u8; 32]| true;
    let mut a: Group<4> = Group::new(keys(10).1);
    let mut b: Group<4> = Group::new(keys(11).1);
    let r1v1 = signed(1, 1, &[(2, "bob", false)]);
    let r1v2 = signed(1, 2, &[(2, "bob", true)]);
    let r2 = signed(2, 5, &[]);
    a.offer(&r1v2, all).unwrap();
    a.offer(&r2, all).unwrap();
    b.offer(&r1v1, all).unwrap();
    let mut buf = [0u8; Digest::<4>::MAX_LEN];
    let n = b.digest().encode(&mut buf).unwrap();
    let theirs = Digest::<4>::decode(&buf[..n]).unwrap();
    assert_eq!(theirs, b.digest());
    let send: std::vec::Vec<std::vec::Vec<u8>> = a
        .missing_from(&theirs)
        .map(|s| {
            let mut out = [0u8; MAX_LEN];
            let n = a.encode(&s, &mut out).unwrap();
            out[..n].to_vec()
        })
        .collect();
    // The signer's own octets, encoded again from what is held.
    assert_eq!(send, vec![r1v2.clone(), r2.clone()]);
    for r in send {
        b.offer(&r, all).unwrap();
    }
    assert_eq!(b.digest(), a.digest());
    assert_eq!(a.missing_from(&b.digest()).count(), 0);
    // Our own record as a member holds it.
    let mut d = b.digest();
    d.held.push((signer_id(&keys(10).1), 77)).unwrap();
    assert_eq!(a.own_version_seen(&d), Some(77));
    for cut in 0..n {
        assert!(Digest::<4>::decode(&buf[..cut]).is_err());
    }
}

#[test]
fn a_full_group_refuses_a_new_signer_but_takes_a_newer_record() {
    let all = |_: &[u8; 32]| true;
    let mut g: Group<2> = Group::new(keys(10).1);
    g.offer(&signed(1, 1, &[]), all).unwrap();
    g.offer(&signed(2, 1, &[]), all).unwrap();
    assert_eq!(g.offer(&signed(3, 1, &[]), all), Err(Refused::Full));
    assert_eq!(g.offer(&signed(2, 2, &[]), all), Ok(Offered::New));
    g.forget(&keys(1).1);
    assert_eq!(g.offer(&signed(3, 1, &[]), all), Ok(Offered::New));
    assert_eq!(g.counters.full, 1);
}

#[test]
fn a_signed_record_in_a_second_encoding_is_refused() {
    // Version 7 as an over-long varint (0x87 0x00): postcard's decoder takes
    // it, and its signer signed exactly these octets; a record has one
    // encoding, so it is refused.
    let (private, public) = keys(1);
    let mut buf = [0u8; MAX_LEN];
    let n = record(public).sign(&private, &[3; 64], &mut buf).unwrap();
    let body = &buf[..n - SIGNATURE_LEN];
    assert_eq!(body[34], 7);
    let mut long = body[..34].to_vec();
    long.extend_from_slice(&[0x87, 0x00]);
    long.extend_from_slice(&body[35..]);
    let sig = xeddsa_sign(&private, &long, &[5; 64]);
    long.extend_from_slice(&sig);
    assert_eq!(Record::decode(&long), Err(Error::Malformed));
}
