use super::*;

extern crate std;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

/// Hex as the RFC prints it (spaces, line breaks) to bytes.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert_eq!(digits.len() % 2, 0);
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

// The test vectors of RFC 5769 ("Test Vectors for Session Traversal Utilities
// for NAT (STUN)", April 2010), byte for byte. §2.1 to §2.3 pad SOFTWARE and
// USERNAME with spaces (0x20), which RFC 5769 §2 allows on purpose; §2.4 pads
// with zeros. Their FINGERPRINT and MESSAGE-INTEGRITY values check below, so a
// mistyped byte fails the tests.

/// §2.1 Sample request: Binding request with SOFTWARE "STUN test client",
/// PRIORITY, ICE-CONTROLLED, USERNAME "evtj:h6vY", MESSAGE-INTEGRITY
/// (short-term password "VOkJxbRl1RmTxUk/WvJxBt") and FINGERPRINT.
const SAMPLE_REQUEST: &str = "
    00 01 00 58
    21 12 a4 42
    b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10
      53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04
      6e 00 01 ff
    80 29 00 08
      93 2f f9 b1 51 26 3b 36
    00 06 00 09
      65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14
      9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04
      e5 7a 3b cf";

/// §2.2 Sample IPv4 response: SOFTWARE "test vector", XOR-MAPPED-ADDRESS
/// 192.0.2.1:32853, MESSAGE-INTEGRITY, FINGERPRINT.
const SAMPLE_IPV4_RESPONSE: &str = "
    01 01 00 3c
    21 12 a4 42
    b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b
      74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08
      00 01 a1 47 e1 12 a6 43
    00 08 00 14
      2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04
      c0 7d 4c 96";

/// §2.3 Sample IPv6 response: XOR-MAPPED-ADDRESS
/// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
const SAMPLE_IPV6_RESPONSE: &str = "
    01 01 00 48
    21 12 a4 42
    b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b
      74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14
      00 02 a1 47
      01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14
      a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04
      c8 fb 0b 4c";

/// §2.4 Sample request with long-term authentication: USERNAME "マトリックス",
/// NONCE "f//499k954d6OL34oL9FSTvy64sA", REALM "example.org",
/// MESSAGE-INTEGRITY; no FINGERPRINT.
const SAMPLE_LONG_TERM_REQUEST: &str = "
    00 01 00 60
    21 12 a4 42
    78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12
      e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c
      66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b
      65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14
      f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const TID: TransactionId = TransactionId([
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
]);
const LONG_TERM_USERNAME: &str = "\u{30de}\u{30c8}\u{30ea}\u{30c3}\u{30af}\u{30b9}";
/// The §2.4 long-term key, MD5("マトリックス:example.org:TheMatrIX") (RFC 8489
/// §9.2.2: MD5(username ":" OpaqueString(realm) ":" OpaqueString(password)),
/// the password "TheMªtrⅨ" being "TheMatrIX" after SASLprep). We have no MD5,
/// so it was computed once with Python:
/// `hashlib.md5("\u30de\u30c8\u30ea\u30c3\u30af\u30b9:example.org:TheMatrIX".encode()).hexdigest()`
/// = e8ca7ad59d5eb0518e312911d2dab2a9.
const LONG_TERM_KEY: [u8; 16] = [
    0xe8, 0xca, 0x7a, 0xd5, 0x9d, 0x5e, 0xb0, 0x51, 0x8e, 0x31, 0x29, 0x11, 0xd2, 0xda, 0xb2, 0xa9,
];

fn vectors() -> [(&'static str, Vec<u8>); 4] {
    [
        ("2.1", hex(SAMPLE_REQUEST)),
        ("2.2", hex(SAMPLE_IPV4_RESPONSE)),
        ("2.3", hex(SAMPLE_IPV6_RESPONSE)),
        ("2.4", hex(SAMPLE_LONG_TERM_REQUEST)),
    ]
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Calls every accessor; returns nothing, only must not panic.
fn touch_everything(m: &Message) {
    let _ = (m.class(), m.method(), m.transaction_id(), m.message_type());
    let _ = m.is_binding_request();
    assert!(m.attributes().count() <= m.raw_attributes().count());
    let _ = m.xor_mapped_address();
    let _ = m.mapped_address();
    let _ = m.response_origin();
    let _ = m.other_address();
    let _ = m.change_request();
    let _ = m.error_code();
    if let Some(Ok(u)) = m.unknown_attributes() {
        let _ = u.count();
    }
    let _ = (m.software(), m.username(), m.realm(), m.nonce());
    let _ = m.unknown_comprehension_required().count();
    let _ = m.fingerprint_ok();
    let _ = m.verify_integrity(PASSWORD);
    let _ = m.verify_integrity(&LONG_TERM_KEY);
    let _ = m.verify_integrity(&[0xaa; 100]);
}

#[test]
fn message_type_interleaves_class_bits() {
    assert_eq!(message_type(Class::Request, BINDING), Some(0x0001));
    assert_eq!(message_type(Class::Indication, BINDING), Some(0x0011));
    assert_eq!(message_type(Class::SuccessResponse, BINDING), Some(0x0101));
    assert_eq!(message_type(Class::ErrorResponse, BINDING), Some(0x0111));
    // Allocate (0x003) error response, and the all-ones method.
    assert_eq!(message_type(Class::ErrorResponse, 0x003), Some(0x0113));
    assert_eq!(message_type(Class::Request, 0xFFF), Some(0x3EEF));
    assert_eq!(message_type(Class::ErrorResponse, 0xFFF), Some(0x3FFF));
    assert_eq!(message_type(Class::Request, 0x1000), None);
    for method in 0..=MAX_METHOD {
        for class in [
            Class::Request,
            Class::Indication,
            Class::SuccessResponse,
            Class::ErrorResponse,
        ] {
            let ty = message_type(class, method).unwrap();
            assert!(ty < 0x4000);
            assert_eq!(split_message_type(ty), (class, method));
        }
    }
}

#[test]
fn rfc5769_sample_request() {
    let b = hex(SAMPLE_REQUEST);
    assert_eq!(b.len(), 108);
    assert!(is_stun(&b));
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.method(), BINDING);
    assert!(m.is_binding_request());
    assert_eq!(m.transaction_id(), TID);
    assert_eq!(m.software(), Some(Ok("STUN test client")));
    assert_eq!(m.username(), Some(Ok("evtj:h6vY")));
    assert_eq!(m.attribute(0x0024), Some(&[0x6e, 0x00, 0x01, 0xff][..]));
    assert_eq!(
        m.attribute(0x8029),
        Some(&[0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36][..])
    );
    assert_eq!(m.xor_mapped_address(), None);
    assert_eq!(m.mapped_address(), None);
    assert_eq!(m.error_code(), None);
    assert_eq!(m.realm(), None);
    assert_eq!(m.nonce(), None);
    assert_eq!(m.change_request(), None);
    let types: Vec<u16> = m.attributes().map(|(t, _)| t).collect();
    assert_eq!(
        types,
        [
            attr::SOFTWARE,
            0x0024,
            0x8029,
            attr::USERNAME,
            attr::MESSAGE_INTEGRITY,
            attr::FINGERPRINT
        ]
    );
    // PRIORITY (0x0024, ICE) is comprehension-required and not ours: a plain
    // STUN server answers 420 with it. ICE-CONTROLLED (0x8029) is optional.
    assert_eq!(
        m.unknown_comprehension_required().collect::<Vec<_>>(),
        [0x0024]
    );
    assert_eq!(m.fingerprint_ok(), Some(true));
    assert_eq!(m.verify_integrity(PASSWORD), Some(true));
    assert_eq!(m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"), Some(false));
    assert_eq!(m.verify_integrity(b""), Some(false));
    touch_everything(&m);
}

#[test]
fn rfc5769_sample_ipv4_response() {
    let b = hex(SAMPLE_IPV4_RESPONSE);
    assert_eq!(b.len(), 80);
    assert!(is_stun(&b));
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.class(), Class::SuccessResponse);
    assert_eq!(m.method(), BINDING);
    assert!(!m.is_binding_request());
    assert_eq!(m.transaction_id(), TID);
    assert_eq!(m.software(), Some(Ok("test vector")));
    assert_eq!(m.xor_mapped_address(), Some(Ok(sa("192.0.2.1:32853"))));
    assert_eq!(m.mapped_address(), None);
    assert_eq!(m.username(), None);
    assert_eq!(m.unknown_comprehension_required().count(), 0);
    assert_eq!(m.fingerprint_ok(), Some(true));
    assert_eq!(m.verify_integrity(PASSWORD), Some(true));
    assert_eq!(m.verify_integrity(b"wrong"), Some(false));
    touch_everything(&m);
}

#[test]
fn rfc5769_sample_ipv6_response() {
    let b = hex(SAMPLE_IPV6_RESPONSE);
    assert_eq!(b.len(), 92);
    assert!(is_stun(&b));
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.class(), Class::SuccessResponse);
    assert_eq!(m.method(), BINDING);
    assert_eq!(m.transaction_id(), TID);
    assert_eq!(m.software(), Some(Ok("test vector")));
    assert_eq!(
        m.xor_mapped_address(),
        Some(Ok(sa("[2001:db8:1234:5678:11:2233:4455:6677]:32853")))
    );
    assert_eq!(m.unknown_comprehension_required().count(), 0);
    assert_eq!(m.fingerprint_ok(), Some(true));
    assert_eq!(m.verify_integrity(PASSWORD), Some(true));
    assert_eq!(m.verify_integrity(b"wrong"), Some(false));
    touch_everything(&m);
}

#[test]
fn rfc5769_sample_long_term_request() {
    let b = hex(SAMPLE_LONG_TERM_REQUEST);
    assert_eq!(b.len(), 116);
    assert!(is_stun(&b));
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.method(), BINDING);
    assert_eq!(
        m.transaction_id(),
        TransactionId([0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e])
    );
    assert_eq!(m.username(), Some(Ok(LONG_TERM_USERNAME)));
    assert_eq!(m.username(), Some(Ok("マトリックス")));
    assert_eq!(m.nonce(), Some(Ok("f//499k954d6OL34oL9FSTvy64sA")));
    assert_eq!(m.realm(), Some(Ok("example.org")));
    assert_eq!(m.software(), None);
    assert_eq!(m.unknown_comprehension_required().count(), 0);
    assert_eq!(m.fingerprint_ok(), None);
    assert_eq!(m.verify_integrity(&LONG_TERM_KEY), Some(true));
    let mut wrong = LONG_TERM_KEY;
    wrong[15] ^= 1;
    assert_eq!(m.verify_integrity(&wrong), Some(false));
    // The password itself is not the long-term key.
    assert_eq!(m.verify_integrity(b"TheMatrIX"), Some(false));
    touch_everything(&m);
}

/// Builds the RFC 5769 vectors again with the Builder; the RFC's padding
/// bytes (0x20 in §2.1-§2.3, which MESSAGE-INTEGRITY and FINGERPRINT cover)
/// are reproduced with the test-only `attribute_padded`, so the comparison
/// is byte for byte, every byte.
#[test]
fn rfc5769_vectors_re_encode_byte_for_byte() {
    let mut buf = [0u8; 256];

    // §2.2, with the typed adders for everything but the space-padded
    // SOFTWARE.
    let mut b = Builder::new(&mut buf, Class::SuccessResponse, BINDING, TID).unwrap();
    b.attribute_padded(attr::SOFTWARE, b"test vector", b' ')
        .unwrap()
        .xor_mapped_address(sa("192.0.2.1:32853"))
        .unwrap()
        .message_integrity(PASSWORD)
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = b.finish().unwrap();
    assert_eq!(hex_dump(&buf[..n]), hex_dump(&hex(SAMPLE_IPV4_RESPONSE)));

    // §2.3.
    let mut b = Builder::new(&mut buf, Class::SuccessResponse, BINDING, TID).unwrap();
    b.attribute_padded(attr::SOFTWARE, b"test vector", b' ')
        .unwrap()
        .xor_mapped_address(sa("[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
        .unwrap()
        .message_integrity(PASSWORD)
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = b.finish().unwrap();
    assert_eq!(hex_dump(&buf[..n]), hex_dump(&hex(SAMPLE_IPV6_RESPONSE)));

    // §2.1.
    let mut b = Builder::new(&mut buf, Class::Request, BINDING, TID).unwrap();
    b.software("STUN test client")
        .unwrap()
        .attribute(0x0024, &[0x6e, 0x00, 0x01, 0xff])
        .unwrap()
        .attribute(0x8029, &[0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36])
        .unwrap()
        .attribute_padded(attr::USERNAME, b"evtj:h6vY", b' ')
        .unwrap()
        .message_integrity(PASSWORD)
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = b.finish().unwrap();
    assert_eq!(hex_dump(&buf[..n]), hex_dump(&hex(SAMPLE_REQUEST)));

    // §2.4 pads with zeros: the plain adders reproduce it.
    let tid = Message::parse(&hex(SAMPLE_LONG_TERM_REQUEST))
        .unwrap()
        .transaction_id();
    let mut b = Builder::new(&mut buf, Class::Request, BINDING, tid).unwrap();
    b.username(LONG_TERM_USERNAME)
        .unwrap()
        .nonce("f//499k954d6OL34oL9FSTvy64sA")
        .unwrap()
        .realm("example.org")
        .unwrap()
        .message_integrity(&LONG_TERM_KEY)
        .unwrap();
    let n = b.finish().unwrap();
    assert_eq!(
        hex_dump(&buf[..n]),
        hex_dump(&hex(SAMPLE_LONG_TERM_REQUEST))
    );
}

/// With the ordinary zero padding, §2.2 differs from the RFC bytes only in
/// SOFTWARE's padding byte and in the MESSAGE-INTEGRITY and FINGERPRINT that
/// cover it; it still verifies.
#[test]
fn rfc5769_ipv4_response_with_zero_padding() {
    let rfc = hex(SAMPLE_IPV4_RESPONSE);
    let mut buf = [0u8; 128];
    let mut b = Builder::new(&mut buf, Class::SuccessResponse, BINDING, TID).unwrap();
    b.software("test vector")
        .unwrap()
        .xor_mapped_address(sa("192.0.2.1:32853"))
        .unwrap()
        .message_integrity(PASSWORD)
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = b.finish().unwrap();
    let ours = &buf[..n];
    assert_eq!(ours.len(), rfc.len());
    // SOFTWARE's padding byte is at 20 + 4 + 11 = 35; XOR-MAPPED-ADDRESS
    // takes 36..48, MESSAGE-INTEGRITY 48..72 (value 52..72), FINGERPRINT
    // 72..80 (value 76..80).
    let differ: Vec<usize> = (0..n).filter(|&i| ours[i] != rfc[i]).collect();
    assert_eq!(differ[0], 35);
    assert_eq!(ours[35], 0);
    assert!(differ[1..]
        .iter()
        .all(|&i| (52..72).contains(&i) || (76..80).contains(&i)));
    assert!(differ.len() > 10, "the MAC changed");
    let m = Message::parse(ours).unwrap();
    assert_eq!(m.software(), Some(Ok("test vector")));
    assert_eq!(m.verify_integrity(PASSWORD), Some(true));
    assert_eq!(m.fingerprint_ok(), Some(true));
}

fn hex_dump(b: &[u8]) -> std::string::String {
    b.iter()
        .map(|x| std::format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_truncation_of_every_vector_is_an_error() {
    for (name, v) in vectors() {
        for n in 0..v.len() {
            let r = Message::parse(&v[..n]);
            assert_eq!(r, Err(StunError::Truncated), "{name} cut at {n}");
            assert!(!is_stun(&v[..n]), "{name} cut at {n}");
        }
        assert!(Message::parse(&v).is_ok(), "{name}");
    }
}

/// A truncated message whose length field is patched to match: it parses
/// exactly when the cut falls between attributes, and then it is the
/// original's first attributes; no accessor panics either way.
#[test]
fn every_truncation_with_a_patched_length_is_consistent() {
    for (name, v) in vectors() {
        let full = Message::parse(&v).unwrap();
        let raw: Vec<(u16, Vec<u8>)> = full
            .raw_attributes()
            .map(|(t, val)| (t, val.to_vec()))
            .collect();
        // Attribute boundaries.
        let mut boundaries = vec![HEADER_LEN];
        for (_, val) in &raw {
            boundaries.push(boundaries.last().unwrap() + 4 + padded(val.len()));
        }
        for n in (HEADER_LEN..=v.len()).step_by(4) {
            let mut cut = v[..n].to_vec();
            cut[2..4].copy_from_slice(&((n - HEADER_LEN) as u16).to_be_bytes());
            match Message::parse(&cut) {
                Ok(m) => {
                    let k = boundaries.iter().position(|&b| b == n);
                    assert!(k.is_some(), "{name}: parsed when cut at {n}");
                    let got: Vec<(u16, Vec<u8>)> = m
                        .raw_attributes()
                        .map(|(t, val)| (t, val.to_vec()))
                        .collect();
                    assert_eq!(got, raw[..k.unwrap()], "{name} cut at {n}");
                    touch_everything(&m);
                }
                Err(e) => {
                    assert_eq!(e, StunError::BadAttribute, "{name} cut at {n}");
                    assert!(!boundaries.contains(&n), "{name}: failed at boundary {n}");
                }
            }
        }
    }
}

#[test]
fn attribute_running_past_the_end_is_rejected() {
    let mut v = hex(SAMPLE_IPV4_RESPONSE);
    // The last attribute (FINGERPRINT) claims 8 bytes instead of 4.
    let at = v.len() - 8;
    v[at + 3] = 8;
    assert_eq!(Message::parse(&v), Err(StunError::BadAttribute));
    // SOFTWARE claims the whole body.
    let mut v = hex(SAMPLE_IPV4_RESPONSE);
    v[22..24].copy_from_slice(&0xFFFFu16.to_be_bytes());
    assert_eq!(Message::parse(&v), Err(StunError::BadAttribute));
    // A value that fits but whose padding does not: 4-byte body, one
    // attribute header with length 1.
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&[0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42]);
    v[20..24].copy_from_slice(&[0x80, 0x22, 0, 1]);
    assert_eq!(Message::parse(&v), Err(StunError::BadAttribute));
    // Zero-length attributes are fine.
    v[23] = 0;
    let m = Message::parse(&v).unwrap();
    assert_eq!(m.software(), Some(Ok("")));
}

#[test]
fn header_errors() {
    let good = hex(SAMPLE_IPV4_RESPONSE);
    let mut v = good.clone();
    v[4] ^= 0x01;
    assert_eq!(Message::parse(&v), Err(StunError::BadCookie));
    assert!(!is_stun(&v));
    let mut v = good.clone();
    v[0] |= 0x40;
    assert_eq!(Message::parse(&v), Err(StunError::NotStun));
    assert!(!is_stun(&v));
    let mut v = good.clone();
    v[0] |= 0x80;
    assert_eq!(Message::parse(&v), Err(StunError::NotStun));
    // Length field not a multiple of 4.
    let mut v = good.clone();
    v[3] -= 2;
    assert_eq!(Message::parse(&v), Err(StunError::BadLength));
    v.truncate(v.len() - 2);
    assert_eq!(Message::parse(&v), Err(StunError::BadLength));
    assert!(!is_stun(&v));
    // More bytes than the length says.
    let mut v = good.clone();
    v.extend_from_slice(&[0; 4]);
    assert_eq!(Message::parse(&v), Err(StunError::BadLength));
    assert!(!is_stun(&v));
    // Fewer.
    let mut v = good.clone();
    v[3] += 4;
    assert_eq!(Message::parse(&v), Err(StunError::Truncated));
    // A bare header is a valid message without attributes.
    let mut v = good[..20].to_vec();
    v[2..4].copy_from_slice(&[0, 0]);
    let m = Message::parse(&v).unwrap();
    assert!(is_stun(&v));
    assert_eq!(m.attributes().count(), 0);
    assert_eq!(m.fingerprint_ok(), None);
    assert_eq!(m.verify_integrity(PASSWORD), None);
    assert_eq!(Message::parse(&[]), Err(StunError::Truncated));
}

#[test]
fn is_stun_tells_wireguard_apart() {
    for (name, v) in vectors() {
        assert!(is_stun(&v), "{name}");
    }
    // A handshake initiation: type 1, three zero bytes, sender index,
    // ephemeral key, encrypted static, timestamp, mac1, mac2 = 148 bytes.
    // Even with the sender index equal to the magic cookie, the would-be
    // length field (bytes 2..4) is 0, not 128.
    let mut init = [0x5au8; 148];
    init[..4].copy_from_slice(&[1, 0, 0, 0]);
    assert!(!is_stun(&init));
    init[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    assert!(!is_stun(&init));
    assert!(Message::parse(&init).is_err());
    // A transport keepalive: type 4, receiver index, counter, 16-byte tag.
    let mut keepalive = [0u8; 32];
    keepalive[0] = 4;
    keepalive[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    assert!(!is_stun(&keepalive));
    assert!(Message::parse(&keepalive).is_err());
    // The other two handshake messages.
    for (ty, len) in [(2u8, 92usize), (3, 64)] {
        let mut m = vec![0u8; len];
        m[0] = ty;
        m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        assert!(!is_stun(&m));
    }
    // Only a 20-byte "WireGuard-looking" datagram could pass, and WireGuard
    // never sends one.
    let mut twenty = [0u8; 20];
    twenty[0] = 1;
    twenty[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    assert!(is_stun(&twenty));
}

#[test]
fn attributes_after_message_integrity_are_ignored() {
    // §2.2 with a SOFTWARE and a CHANGE-REQUEST inserted between
    // MESSAGE-INTEGRITY and FINGERPRINT, length field and FINGERPRINT fixed.
    let v = hex(SAMPLE_IPV4_RESPONSE);
    let (head, fp) = v.split_at(v.len() - 8);
    let mut m = head.to_vec();
    m.extend_from_slice(&[0x80, 0x22, 0x00, 0x04, b'e', b'v', b'i', b'l']);
    m.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0, 0, 0, 6]);
    m.extend_from_slice(&[0x12, 0x34, 0x00, 0x00]); // unknown, required
    m.extend_from_slice(&fp[..4]);
    let len = (m.len() + 4 - HEADER_LEN) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    // The CRC covers the message up to the FINGERPRINT attribute, its type
    // and length excluded.
    let crc = hash::crc32(&m[..m.len() - 4]) ^ FINGERPRINT_XOR;
    m.extend_from_slice(&crc.to_be_bytes());

    let msg = Message::parse(&m).unwrap();
    assert_eq!(msg.verify_integrity(PASSWORD), Some(true));
    assert_eq!(msg.fingerprint_ok(), Some(true));
    assert_eq!(msg.software(), Some(Ok("test vector")));
    assert_eq!(msg.change_request(), None);
    assert_eq!(msg.unknown_comprehension_required().count(), 0);
    assert_eq!(msg.attributes().count(), 4);
    assert_eq!(msg.raw_attributes().count(), 7);
    // Tampering before MESSAGE-INTEGRITY is caught (and FINGERPRINT too).
    let mut bad = m.clone();
    bad[30] ^= 0x01; // inside SOFTWARE's value (bytes 24..35)
    let msg = Message::parse(&bad).unwrap();
    assert_eq!(msg.verify_integrity(PASSWORD), Some(false));
    assert_eq!(msg.fingerprint_ok(), Some(false));
}

#[test]
fn fingerprint_must_be_last_and_four_bytes() {
    let v = hex(SAMPLE_IPV4_RESPONSE);
    // Something after FINGERPRINT: FINGERPRINT no longer last.
    let mut m = v.clone();
    m.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
    let len = (m.len() - HEADER_LEN) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let msg = Message::parse(&m).unwrap();
    assert_eq!(msg.fingerprint_ok(), Some(false));
    // ... and the attribute after it does not count.
    assert_eq!(msg.attributes().count(), 4);
    // A flipped CRC bit.
    let mut m = v.clone();
    *m.last_mut().unwrap() ^= 0x80;
    assert_eq!(Message::parse(&m).unwrap().fingerprint_ok(), Some(false));
    // An 8-byte FINGERPRINT.
    let mut m = v[..v.len() - 8].to_vec();
    m.extend_from_slice(&[0x80, 0x28, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]);
    let len = (m.len() - HEADER_LEN) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Message::parse(&m).unwrap().fingerprint_ok(), Some(false));
}

#[test]
fn short_message_integrity_is_false_not_a_panic() {
    let mut buf = [0u8; 64];
    let mut b = Builder::new(&mut buf, Class::Request, BINDING, TID).unwrap();
    b.attribute(attr::MESSAGE_INTEGRITY, &[1, 2, 3]).unwrap();
    let n = b.finish().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.verify_integrity(PASSWORD), Some(false));
}

#[test]
fn integrity_with_a_key_longer_than_a_block() {
    let key = [0x42u8; 100];
    let mut buf = [0u8; 128];
    let mut b = Builder::new(&mut buf, Class::Indication, BINDING, TID).unwrap();
    b.software("meshd")
        .unwrap()
        .message_integrity(&key)
        .unwrap();
    let n = b.finish().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.verify_integrity(&key), Some(true));
    assert_eq!(m.verify_integrity(&key[..99]), Some(false));
    assert_eq!(m.fingerprint_ok(), None);
    assert_eq!(m.class(), Class::Indication);
}

#[test]
fn builder_round_trips_every_attribute() {
    let mut buf = [0u8; 512];
    let tid = TransactionId(*b"0123456789ab");
    let mut b = Builder::new(&mut buf, Class::ErrorResponse, 0xABC, tid).unwrap();
    b.xor_mapped_address(sa("[fe80::1:2:3:4]:1"))
        .unwrap()
        .mapped_address(sa("203.0.113.7:65535"))
        .unwrap()
        .response_origin(sa("[2001:db8::5]:3478"))
        .unwrap()
        .other_address(sa("198.51.100.1:3479"))
        .unwrap()
        .change_request(ChangeRequest {
            ip: true,
            port: false,
        })
        .unwrap()
        .error_code(420, "Unknown Attribute")
        .unwrap()
        .unknown_attributes(&[0x0024, 0x7fff, 0x0001])
        .unwrap()
        .software("meshd 0.1")
        .unwrap()
        .username("alice")
        .unwrap()
        .realm("mesh")
        .unwrap()
        .nonce("n0nce")
        .unwrap()
        .message_integrity(b"key")
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = b.finish().unwrap();
    assert_eq!(n % 4, 0);
    assert!(is_stun(&buf[..n]));
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.class(), Class::ErrorResponse);
    assert_eq!(m.method(), 0xABC);
    assert_eq!(m.transaction_id(), tid);
    assert_eq!(m.xor_mapped_address(), Some(Ok(sa("[fe80::1:2:3:4]:1"))));
    assert_eq!(m.mapped_address(), Some(Ok(sa("203.0.113.7:65535"))));
    assert_eq!(m.response_origin(), Some(Ok(sa("[2001:db8::5]:3478"))));
    assert_eq!(m.other_address(), Some(Ok(sa("198.51.100.1:3479"))));
    assert_eq!(
        m.change_request(),
        Some(Ok(ChangeRequest {
            ip: true,
            port: false
        }))
    );
    assert_eq!(m.error_code(), Some(Ok((420, "Unknown Attribute"))));
    assert_eq!(
        m.unknown_attributes().unwrap().unwrap().collect::<Vec<_>>(),
        [0x0024, 0x7fff, 0x0001]
    );
    assert_eq!(m.software(), Some(Ok("meshd 0.1")));
    assert_eq!(m.username(), Some(Ok("alice")));
    assert_eq!(m.realm(), Some(Ok("mesh")));
    assert_eq!(m.nonce(), Some(Ok("n0nce")));
    assert_eq!(m.unknown_comprehension_required().count(), 0);
    assert_eq!(m.verify_integrity(b"key"), Some(true));
    assert_eq!(m.fingerprint_ok(), Some(true));
    // Padding is zeros: UNKNOWN-ATTRIBUTES has 6 bytes and 2 of padding.
    let (_, ua) = m
        .raw_attributes()
        .find(|(t, _)| *t == attr::UNKNOWN_ATTRIBUTES)
        .unwrap();
    let off = ua.as_ptr() as usize - buf.as_ptr() as usize;
    assert_eq!(&buf[off + 6..off + 8], &[0, 0]);
}

#[test]
fn builder_never_overruns_a_small_buffer() {
    let build = |buf: &mut [u8]| -> Result<usize, StunError> {
        let mut b = Builder::new(buf, Class::Request, BINDING, TID)?;
        b.xor_mapped_address(sa("[2001:db8::1]:9"))?
            .software("meshd")?
            .message_integrity(b"k")?
            .fingerprint()?;
        b.finish()
    };
    let mut big = [0u8; 256];
    let full = build(&mut big).unwrap();
    for size in 0..full {
        let mut buf = vec![0xEEu8; size];
        assert_eq!(
            build(&mut buf),
            Err(StunError::BufferTooSmall),
            "size {size}"
        );
    }
    let mut buf = vec![0u8; full];
    assert_eq!(build(&mut buf), Ok(full));
    assert_eq!(buf[..], big[..full]);
}

#[test]
fn builder_error_leaves_a_valid_message() {
    let mut buf = [0u8; 40];
    let mut b = Builder::new(&mut buf, Class::Request, BINDING, TID).unwrap();
    b.software("meshd").unwrap(); // 20 + 12 = 32 bytes
                                  // 32 + 12 > 40: refused, nothing written.
    assert_eq!(
        b.xor_mapped_address(sa("192.0.2.1:1")).err(),
        Some(StunError::BufferTooSmall)
    );
    assert_eq!(b.len(), 32);
    b.fingerprint().unwrap(); // 32 + 8 = 40
    let n = b.finish().unwrap();
    assert_eq!(n, 40);
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.software(), Some(Ok("meshd")));
    assert_eq!(m.xor_mapped_address(), None);
    assert_eq!(m.fingerprint_ok(), Some(true));
}

#[test]
fn builder_rejects_bad_values_and_order() {
    let mut buf = [0u8; 2048];
    assert_eq!(
        Builder::new(&mut buf, Class::Request, 0x1000, TID).err(),
        Some(StunError::InvalidValue)
    );
    assert_eq!(
        Builder::new(&mut buf[..19], Class::Request, BINDING, TID).err(),
        Some(StunError::BufferTooSmall)
    );
    let mut b = Builder::new(&mut buf, Class::ErrorResponse, BINDING, TID).unwrap();
    for code in [0, 299, 700, 999] {
        assert_eq!(b.error_code(code, "x").err(), Some(StunError::InvalidValue));
    }
    let long: std::string::String = "é".repeat(128);
    assert_eq!(
        b.error_code(400, &long).err(),
        Some(StunError::InvalidValue)
    );
    assert_eq!(b.software(&long).err(), Some(StunError::InvalidValue));
    assert!(b.software(&long[..127 * 2]).is_ok());
    assert_eq!(
        b.username(&"u".repeat(509)).err(),
        Some(StunError::InvalidValue)
    );
    assert!(b.username(&"u".repeat(508)).is_ok());
    b.message_integrity(b"k").unwrap();
    assert_eq!(b.software("x").err(), Some(StunError::AttributeOrder));
    assert_eq!(
        b.message_integrity(b"k").err(),
        Some(StunError::AttributeOrder)
    );
    b.fingerprint().unwrap();
    assert_eq!(b.fingerprint().err(), Some(StunError::AttributeOrder));
    let n = b.finish().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.verify_integrity(b"k"), Some(true));
    assert_eq!(m.fingerprint_ok(), Some(true));
}

#[test]
fn builder_refuses_more_than_the_length_field_holds() {
    let mut buf = vec![0u8; 70_000];
    let mut b = Builder::new(&mut buf, Class::Request, BINDING, TID).unwrap();
    let chunk = [0u8; 1000];
    let mut added = 0;
    loop {
        match b.attribute(0x8000, &chunk) {
            Ok(_) => added += 1,
            Err(e) => {
                assert_eq!(e, StunError::TooLong);
                break;
            }
        }
    }
    assert_eq!(added, 65); // 65 × 1004 = 65260 ≤ 65535 < 66 × 1004
    assert_eq!(
        b.attribute(0x8000, &vec![0u8; 70_000]).err(),
        Some(StunError::TooLong)
    );
    b.fingerprint().unwrap();
    let n = b.finish().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.fingerprint_ok(), Some(true));
}

#[test]
fn malformed_attribute_values_are_errors() {
    let mut buf = [0u8; 256];
    let cases: [(u16, &[u8]); 11] = [
        (attr::XOR_MAPPED_ADDRESS, &[0, 1, 0, 0, 1, 2, 3]), // short IPv4
        (attr::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4]), // family 3
        (attr::MAPPED_ADDRESS, &[0, 2, 0, 0, 1, 2, 3, 4]),  // IPv6, 4 bytes
        (attr::MAPPED_ADDRESS, &[]),
        (attr::OTHER_ADDRESS, &[0, 1, 0, 1, 1, 2, 3, 4, 5]), // IPv4, 5 bytes
        (attr::RESPONSE_ORIGIN, &[0, 0, 0, 0, 0, 0, 0, 0]),
        (attr::CHANGE_REQUEST, &[0, 0, 6]),
        (attr::ERROR_CODE, &[0, 0, 4]),
        (attr::ERROR_CODE, &[0, 0, 7, 0, b'x']), // class 7
        (attr::ERROR_CODE, &[0, 0, 4, 100]),     // number 100
        (attr::SOFTWARE, &[0xff, 0xfe]),         // not UTF-8
    ];
    for (ty, value) in cases {
        let mut b = Builder::new(&mut buf, Class::Request, BINDING, TID).unwrap();
        b.attribute(ty, value).unwrap();
        let n = b.finish().unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        let err = match ty {
            attr::XOR_MAPPED_ADDRESS => m.xor_mapped_address().unwrap().err(),
            attr::MAPPED_ADDRESS => m.mapped_address().unwrap().err(),
            attr::OTHER_ADDRESS => m.other_address().unwrap().err(),
            attr::RESPONSE_ORIGIN => m.response_origin().unwrap().err(),
            attr::CHANGE_REQUEST => m.change_request().unwrap().err(),
            attr::ERROR_CODE => m.error_code().unwrap().err(),
            _ => m.software().unwrap().err(),
        };
        assert_eq!(err, Some(StunError::BadAttribute), "{ty:#x} {value:?}");
        touch_everything(&m);
    }
    let mut b = Builder::new(&mut buf, Class::Request, BINDING, TID).unwrap();
    b.attribute(attr::UNKNOWN_ATTRIBUTES, &[0, 1, 0]).unwrap();
    let n = b.finish().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert!(matches!(
        m.unknown_attributes(),
        Some(Err(StunError::BadAttribute))
    ));
    // An error code with an empty reason and the reserved bits set.
    let mut b = Builder::new(&mut buf, Class::Request, BINDING, TID).unwrap();
    b.attribute(attr::ERROR_CODE, &[0xff, 0xff, 0xfe, 38])
        .unwrap();
    let n = b.finish().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.error_code(), Some(Ok((638, ""))));
}

#[test]
fn first_occurrence_counts() {
    let mut buf = [0u8; 256];
    let mut b = Builder::new(&mut buf, Class::Request, BINDING, TID).unwrap();
    b.software("first")
        .unwrap()
        .software("second")
        .unwrap()
        .attribute(0x0777, &[])
        .unwrap()
        .attribute(0x0777, &[1])
        .unwrap()
        .attribute(0x8777, &[])
        .unwrap();
    let n = b.finish().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.software(), Some(Ok("first")));
    assert_eq!(
        m.unknown_comprehension_required().collect::<Vec<_>>(),
        [0x0777, 0x0777]
    );
}

#[test]
fn unimplemented_integrity_sha256_is_unknown_and_ends_the_message() {
    let mut buf = [0u8; 256];
    let mut b = Builder::new(&mut buf, Class::Request, BINDING, TID).unwrap();
    b.attribute(attr::MESSAGE_INTEGRITY_SHA256, &[0; 32])
        .unwrap()
        .software("after")
        .unwrap()
        .attribute(attr::MESSAGE_INTEGRITY, &[0; 20])
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = b.finish().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(
        m.unknown_comprehension_required().collect::<Vec<_>>(),
        [attr::MESSAGE_INTEGRITY_SHA256]
    );
    assert_eq!(m.software(), None);
    // The MESSAGE-INTEGRITY after MESSAGE-INTEGRITY-SHA256 is ignored.
    assert_eq!(m.verify_integrity(b"k"), None);
    assert_eq!(m.fingerprint_ok(), Some(true));
}

#[test]
fn binding_success_answers_the_rfc_request() {
    let req = hex(SAMPLE_REQUEST);
    let req = Message::parse(&req).unwrap();
    for from in [sa("192.0.2.1:32853"), sa("[2001:db8::77]:51820")] {
        let mut out = [0u8; 128];
        let n = binding_success(&req, from, &mut out).unwrap();
        let m = Message::parse(&out[..n]).unwrap();
        assert_eq!(m.class(), Class::SuccessResponse);
        assert_eq!(m.method(), BINDING);
        assert_eq!(m.transaction_id(), TID);
        assert_eq!(m.xor_mapped_address(), Some(Ok(from)));
        assert_eq!(m.software(), Some(Ok(SOFTWARE_NAME)));
        assert_eq!(m.fingerprint_ok(), Some(true));
        assert_eq!(m.verify_integrity(PASSWORD), None);
        assert!(is_stun(&out[..n]));
        for size in 0..n {
            assert_eq!(
                binding_success(&req, from, &mut out[..size]),
                Err(StunError::BufferTooSmall)
            );
        }
    }
    let resp = hex(SAMPLE_IPV4_RESPONSE);
    let resp = Message::parse(&resp).unwrap();
    assert_eq!(
        binding_success(&resp, sa("192.0.2.1:1"), &mut [0u8; 128]),
        Err(StunError::NotARequest)
    );
}

#[test]
fn binding_request_with_and_without_change_request() {
    let tid = TransactionId([9; 12]);
    for change in [
        None,
        Some(ChangeRequest::default()),
        Some(ChangeRequest {
            ip: true,
            port: true,
        }),
        Some(ChangeRequest {
            ip: false,
            port: true,
        }),
    ] {
        let mut out = [0u8; 64];
        let n = binding_request(tid, change, &mut out).unwrap();
        assert_eq!(n, if change.is_some() { 36 } else { 28 });
        let m = Message::parse(&out[..n]).unwrap();
        assert!(m.is_binding_request());
        assert_eq!(m.transaction_id(), tid);
        assert_eq!(m.change_request(), change.map(Ok));
        assert_eq!(m.fingerprint_ok(), Some(true));
        assert_eq!(m.unknown_comprehension_required().count(), 0);
    }
    // Byte for byte: the RFC 5780 CHANGE-REQUEST flags are 0x04 (IP) and
    // 0x02 (port).
    let mut out = [0u8; 64];
    let n = binding_request(
        tid,
        Some(ChangeRequest {
            ip: true,
            port: false,
        }),
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..4], &[0x00, 0x01, 0x00, 16]);
    assert_eq!(&out[20..28], &[0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0x04]);
    assert_eq!(&out[28..32], &[0x80, 0x28, 0x00, 0x04]);
    assert_eq!(n, 36);
}

#[test]
fn error_response_for_unknown_attributes() {
    let req = hex(SAMPLE_REQUEST);
    let req = Message::parse(&req).unwrap();
    let unknown: Vec<u16> = req.unknown_comprehension_required().collect();
    let mut out = [0u8; 128];
    let n = error_response(&req, 420, "Unknown Attribute", &unknown, &mut out).unwrap();
    let m = Message::parse(&out[..n]).unwrap();
    assert_eq!(m.class(), Class::ErrorResponse);
    assert_eq!(m.method(), BINDING);
    assert_eq!(m.message_type(), 0x0111);
    assert_eq!(m.transaction_id(), TID);
    assert_eq!(m.error_code(), Some(Ok((420, "Unknown Attribute"))));
    assert_eq!(
        m.unknown_attributes().unwrap().unwrap().collect::<Vec<_>>(),
        [0x0024]
    );
    assert_eq!(m.fingerprint_ok(), Some(true));
    // A 400 without UNKNOWN-ATTRIBUTES.
    let n = error_response(&req, 400, "Bad Request", &[], &mut out).unwrap();
    let m = Message::parse(&out[..n]).unwrap();
    assert!(m.unknown_attributes().is_none());
    let resp = hex(SAMPLE_IPV6_RESPONSE);
    let resp = Message::parse(&resp).unwrap();
    assert_eq!(
        error_response(&resp, 400, "Bad Request", &[], &mut out),
        Err(StunError::NotARequest)
    );
}

#[test]
fn every_single_bit_flip_of_every_vector_is_handled() {
    for (name, v) in vectors() {
        let key: &[u8] = if name == "2.4" {
            &LONG_TERM_KEY
        } else {
            PASSWORD
        };
        // MESSAGE-INTEGRITY's value ends 8 bytes before the end when
        // FINGERPRINT follows it.
        let mi_end = if name == "2.4" { v.len() } else { v.len() - 8 };
        for i in 0..v.len() * 8 {
            let mut m = v.clone();
            m[i / 8] ^= 1 << (i % 8);
            let Ok(msg) = Message::parse(&m) else {
                continue;
            };
            touch_everything(&msg);
            // CRC-32 catches every single-bit error; HMAC-SHA1 every change
            // to what it covers.
            if name != "2.4" {
                assert_ne!(msg.fingerprint_ok(), Some(true), "{name} bit {i}");
            }
            if i / 8 < mi_end {
                assert_ne!(msg.verify_integrity(key), Some(true), "{name} bit {i}");
            } else {
                assert_eq!(msg.verify_integrity(key), Some(true), "{name} bit {i}");
            }
        }
    }
}

#[test]
fn errors_display() {
    for e in [
        StunError::Truncated,
        StunError::NotStun,
        StunError::BadCookie,
        StunError::BadLength,
        StunError::BadAttribute,
        StunError::BufferTooSmall,
        StunError::TooLong,
        StunError::InvalidValue,
        StunError::AttributeOrder,
        StunError::NotARequest,
    ] {
        assert!(!e.to_string().is_empty());
    }
}
