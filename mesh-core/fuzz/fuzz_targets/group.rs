//! Group records (the member list members sign and pass on inside the
//! mesh, issue 17 part 4).
//!
//! Byte 0 chooses the mode:
//! - even: the rest is one record's (or digest's) octets as a member would
//!   receive them. Checked: no panic; a record that decodes has a valid
//!   signature by its signer and fits `MAX_LEN`; a digest that decodes
//!   encodes within its `MAX_LEN` and decodes to itself.
//! - odd: the rest builds a record (version, then entries of a key seed,
//!   a name length and a removed flag), which is signed with one of two
//!   keys; then the last 4 octets of the input pick changes to its octets
//!   (flips, a cut, an appended octet). Checked: the signed record decodes
//!   to itself; octets changed in any way decode to nothing (no forgery, no
//!   second encoding under the same signature), and a record signed by the
//!   other key than its signer is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::group::{Digest, Entry, Error, Record, MAX_ENTRIES, MAX_LEN};
use mesh_core::invite::Name;

fn private(seed: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = seed.wrapping_mul(97).wrapping_add(i as u8) ^ 0x3c;
    }
    k
}

fn public(private: &[u8; 32]) -> [u8; 32] {
    curve25519_dalek::MontgomeryPoint::mul_base_clamped(*private).to_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(d) = Digest::<65>::decode(rest) {
            let mut out = [0u8; Digest::<65>::MAX_LEN];
            let n = d.encode(&mut out).expect("a decoded digest fits MAX_LEN");
            assert_eq!(Digest::<65>::decode(&out[..n]).as_ref(), Ok(&d));
        }
        if let Ok(r) = Record::decode(rest) {
            assert!(rest.len() <= MAX_LEN);
            let sig: &[u8; 64] = rest[rest.len() - 64..].try_into().unwrap();
            assert!(mesh_core::group::xeddsa_verify(
                &r.signer,
                &rest[..rest.len() - 64],
                sig
            ));
        }
        return;
    }
    if rest.len() < 13 {
        return;
    }
    let (head, tail) = rest.split_at(rest.len() - 4);
    let signer_key = private(mode >> 1 & 1);
    let mut record = Record {
        signer: public(&signer_key),
        version: u64::from_le_bytes(head[..8].try_into().unwrap()),
        entries: heapless::Vec::new(),
    };
    for chunk in head[8..].chunks(3) {
        if record.entries.len() == MAX_ENTRIES {
            break;
        }
        let key = public(&private(chunk[0].wrapping_add(2)));
        if key == record.signer || record.entry(&key).is_some() {
            continue;
        }
        let len = 1 + chunk.get(1).copied().unwrap_or(0) as usize % 32;
        let mut name = Name::new();
        for i in 0..len {
            let _ = name.push(char::from(b'a' + ((chunk[0] as usize + i) % 26) as u8));
        }
        let removed = chunk.get(2).is_some_and(|b| b & 1 == 1);
        let _ = record.entries.push(Entry { key, name, removed });
    }
    let mut buf = [0u8; MAX_LEN];
    let random = [mode; 64];
    let n = record
        .sign(&signer_key, &random, &mut buf)
        .expect("a record fits MAX_LEN");
    let bytes = &buf[..n];
    assert_eq!(Record::decode(bytes).as_ref(), Ok(&record));

    // Octets changed: flip bits at two places, maybe cut, maybe append.
    let mut changed = bytes.to_vec();
    let at = |b: u8, w: u8| (b as usize * 256 + w as usize) % n;
    changed[at(tail[0], tail[1])] ^= 1 << (tail[2] % 8);
    if tail[3] & 1 == 1 {
        changed[at(tail[1], tail[0])] ^= tail[3] | 1;
    }
    match tail[3] >> 1 & 3 {
        1 => changed.truncate(at(tail[2], tail[3])),
        2 => changed.push(tail[2]),
        _ => {}
    }
    if changed != bytes {
        assert!(
            Record::decode(&changed).is_err(),
            "changed octets decoded under the same signature"
        );
    }

    // Signed with the other key than the one it names.
    let other = private(!(mode >> 1) & 1);
    let n = record.sign(&other, &random, &mut buf).unwrap();
    assert_eq!(Record::decode(&buf[..n]), Err(Error::Signature));
});
