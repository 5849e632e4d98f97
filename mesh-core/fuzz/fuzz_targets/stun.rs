//! One UDP datagram through the STUN codec, as the shared WireGuard/STUN port
//! sees it; then the same bytes with a valid header patched in (leading bits,
//! magic cookie, length), so that mutated bodies reach the attribute walk.
//!
//! Checked: no panic; a message that parses passes `is_stun`; every accessor
//! is pure (the same answer twice); the attributes tile the body; a Binding
//! request gets a `binding_success` answer (for an IPv4 and an IPv6 `from`
//! taken from the input) that parses, with the same transaction id and
//! XOR-MAPPED-ADDRESS = `from`; any request gets an `error_response` 420
//! naming its unknown comprehension-required attributes; the attributes
//! re-encoded with `Builder`, then signed and fingerprinted, parse back to
//! the same attributes, verify and pass FINGERPRINT.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use mesh_core::stun::{self, attr, Builder, Class, Message, StunError};

const KEY: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

fn accessors(m: &Message) {
    // Pure: asking twice gives the same answer.
    assert_eq!(m.xor_mapped_address(), m.xor_mapped_address());
    assert_eq!(m.mapped_address(), m.mapped_address());
    assert_eq!(m.response_origin(), m.response_origin());
    assert_eq!(m.other_address(), m.other_address());
    assert_eq!(m.change_request(), m.change_request());
    assert_eq!(m.error_code(), m.error_code());
    if let Some(Ok((code, _))) = m.error_code() {
        assert!((300..700).contains(&code));
    }
    if let Some(Ok(u)) = m.unknown_attributes() {
        let _ = u.count();
    }
    assert_eq!(m.software(), m.software());
    assert_eq!(m.username(), m.username());
    assert_eq!(m.realm(), m.realm());
    assert_eq!(m.nonce(), m.nonce());
    for t in m.unknown_comprehension_required() {
        assert!(t < 0x8000 && !attr::UNDERSTOOD.contains(&t));
    }
    let fp = m.fingerprint_ok();
    assert_eq!(m.fingerprint_ok(), fp);
    let mi = m.verify_integrity(KEY);
    assert_eq!(m.verify_integrity(KEY), mi);
    assert_eq!(mi.is_some(), m.verify_integrity(b"").is_some());
    assert!(m.attributes().count() <= m.raw_attributes().count());
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes behind a valid header (leading bits cleared, magic
    // cookie, length field = the body rounded down to 4 bytes), so that
    // mutations reach the attribute walk even when they break the framing.
    if data.len() >= stun::HEADER_LEN {
        let body = ((data.len() - stun::HEADER_LEN) / 4 * 4).min(0xFFFC);
        let mut framed = data[..stun::HEADER_LEN + body].to_vec();
        framed[0] &= 0x3F;
        framed[2..4].copy_from_slice(&(body as u16).to_be_bytes());
        framed[4..8].copy_from_slice(&stun::MAGIC_COOKIE.to_be_bytes());
        assert!(stun::is_stun(&framed));
        if framed != data {
            check(&framed);
        }
    }
});

fn check(data: &[u8]) {
    let is = stun::is_stun(data);
    let m = match Message::parse(data) {
        Ok(m) => m,
        Err(e) => {
            // Only the attribute walk can fail once the header checks pass.
            if is {
                assert_eq!(e, StunError::BadAttribute);
            }
            return;
        }
    };
    assert!(is, "parsed but not is_stun");
    assert_eq!(m.as_bytes(), data);
    let padded: usize = m
        .raw_attributes()
        .map(|(_, v)| 4 + v.len().div_ceil(4) * 4)
        .sum();
    assert_eq!(stun::HEADER_LEN + padded, data.len());
    accessors(&m);

    let tid = m.transaction_id().0;
    let from_v4 = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(tid[0], tid[1], tid[2], tid[3])),
        u16::from_be_bytes([tid[4], tid[5]]),
    );
    let mut v6 = [0u8; 16];
    v6[..12].copy_from_slice(&tid);
    let from_v6 = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::from(v6)),
        u16::from_be_bytes([tid[6], tid[7]]),
    );

    let mut out = [0u8; 256];
    if m.is_binding_request() {
        for from in [from_v4, from_v6] {
            let n = stun::binding_success(&m, from, &mut out).expect("binding_success");
            let r = Message::parse(&out[..n]).expect("the answer parses");
            assert!(stun::is_stun(&out[..n]));
            assert_eq!(r.transaction_id(), m.transaction_id());
            assert_eq!(r.class(), Class::SuccessResponse);
            assert_eq!(r.method(), stun::BINDING);
            assert_eq!(r.xor_mapped_address(), Some(Ok(from)));
            assert_eq!(r.fingerprint_ok(), Some(true));
        }
    } else {
        assert_eq!(
            stun::binding_success(&m, from_v4, &mut out),
            Err(StunError::NotARequest)
        );
    }
    if m.class() == Class::Request {
        let mut unknown = [0u16; 8];
        let mut k = 0;
        for (slot, t) in unknown.iter_mut().zip(m.unknown_comprehension_required()) {
            *slot = t;
            k += 1;
        }
        let n = stun::error_response(&m, 420, "Unknown Attribute", &unknown[..k], &mut out)
            .expect("error_response");
        let r = Message::parse(&out[..n]).expect("the error parses");
        assert_eq!(r.class(), Class::ErrorResponse);
        assert_eq!(r.method(), m.method());
        assert_eq!(r.transaction_id(), m.transaction_id());
        assert_eq!(r.error_code(), Some(Ok((420, "Unknown Attribute"))));
        match r.unknown_attributes() {
            None => assert_eq!(k, 0),
            Some(u) => assert!(u.expect("well formed").eq(unknown[..k].iter().copied())),
        }
        assert_eq!(r.fingerprint_ok(), Some(true));
    }

    // Re-encode the attributes up to the first one that ends a message
    // (MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT), then sign
    // and fingerprint if there was none (and the length field has room).
    let mut buf = vec![0u8; data.len() + 64];
    let mut b =
        Builder::new(&mut buf, m.class(), m.method(), m.transaction_id()).expect("header fits");
    let mut kept = Vec::new();
    let mut sealed = false;
    for (ty, v) in m.raw_attributes() {
        match b.attribute(ty, v) {
            Ok(_) => kept.push((ty, v)),
            Err(StunError::AttributeOrder) => {
                sealed = true;
                break;
            }
            Err(e) => panic!("re-encoding: {e}"),
        }
        if matches!(
            ty,
            attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT
        ) {
            sealed = true;
            break;
        }
    }
    let room = data.len() + 24 + 8 - stun::HEADER_LEN <= 0xFFFF;
    let sealed = sealed || !room;
    if !sealed {
        b.message_integrity(KEY)
            .expect("room for MESSAGE-INTEGRITY");
        b.fingerprint().expect("room for FINGERPRINT");
    }
    let n = b.finish().expect("finish");
    let again = Message::parse(&buf[..n]).expect("re-encoded message parses");
    let raw: Vec<(u16, &[u8])> = again.raw_attributes().collect();
    assert_eq!(raw.get(..kept.len()), Some(&kept[..]));
    assert_eq!(again.transaction_id(), m.transaction_id());
    assert_eq!(again.message_type(), m.message_type());
    if !sealed {
        assert_eq!(again.verify_integrity(KEY), Some(true));
        assert_eq!(again.fingerprint_ok(), Some(true));
        // The typed accessors see what the original's did, for attributes
        // the integrity rule did not cut off.
        assert_eq!(again.software(), m.software());
        assert_eq!(again.xor_mapped_address(), m.xor_mapped_address());
        assert_eq!(again.error_code(), m.error_code());
    }
    accessors(&again);
}
