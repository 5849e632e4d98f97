//! The three checksums STUN needs, small and allocation-free: SHA-1
//! (FIPS 180-4) and HMAC-SHA1 (RFC 2104) for MESSAGE-INTEGRITY, CRC-32 (the
//! IEEE 802.3 polynomial, reflected, as in zlib) for FINGERPRINT.
//!
//! SHA-1 is no longer collision resistant, but HMAC-SHA1 does not rely on
//! that; STUN's MESSAGE-INTEGRITY is HMAC-SHA1 by definition (RFC 8489 §14.5).
//! Speed is not a goal: a STUN message is at most a few hundred bytes.

/// Length of a SHA-1 digest and of an HMAC-SHA1 tag.
pub(crate) const SHA1_LEN: usize = 20;
const BLOCK: usize = 64;

/// Streaming SHA-1.
#[derive(Debug, Clone)]
pub(crate) struct Sha1 {
    h: [u32; 5],
    /// Bytes of the current, incomplete block.
    block: [u8; BLOCK],
    /// How many bytes of `block` are filled; always < 64 between calls.
    filled: usize,
    /// Total bytes hashed (the length is appended in bits, modulo 2^64).
    total: u64,
}

impl Sha1 {
    pub(crate) const fn new() -> Sha1 {
        Sha1 {
            h: [
                0x6745_2301,
                0xEFCD_AB89,
                0x98BA_DCFE,
                0x1032_5476,
                0xC3D2_E1F0,
            ],
            block: [0; BLOCK],
            filled: 0,
            total: 0,
        }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        // Top up a partly filled block first.
        if self.filled > 0 {
            let space = self.block.get_mut(self.filled..).unwrap_or_default();
            let n = space.len().min(data.len());
            let (head, rest) = data.split_at(n);
            if let Some(dst) = space.get_mut(..n) {
                dst.copy_from_slice(head);
            }
            self.filled += n;
            data = rest;
            if self.filled < BLOCK {
                return;
            }
            compress(&mut self.h, &self.block);
            self.filled = 0;
        }
        let mut blocks = data.chunks_exact(BLOCK);
        for b in &mut blocks {
            compress(&mut self.h, b);
        }
        let tail = blocks.remainder();
        if let Some(dst) = self.block.get_mut(..tail.len()) {
            dst.copy_from_slice(tail);
        }
        self.filled = tail.len();
    }

    pub(crate) fn finalize(mut self) -> [u8; SHA1_LEN] {
        let bits = self.total.wrapping_mul(8);
        // 0x80, zeros up to 56 bytes into a block, then the 64-bit length.
        let pad_len = if self.filled < 56 {
            56 - self.filled
        } else {
            BLOCK + 56 - self.filled
        };
        let mut pad = [0u8; BLOCK];
        pad[0] = 0x80;
        self.update(pad.get(..pad_len).unwrap_or_default());
        self.update(&bits.to_be_bytes());
        debug_assert_eq!(self.filled, 0);
        let mut out = [0u8; SHA1_LEN];
        for (o, h) in out.chunks_exact_mut(4).zip(self.h) {
            o.copy_from_slice(&h.to_be_bytes());
        }
        out
    }
}

/// One 64-byte block of SHA-1 (FIPS 180-4 §6.1.2).
fn compress(h: &mut [u32; 5], block: &[u8]) {
    let mut w = [0u32; 80];
    for (wi, c) in w.iter_mut().zip(block.chunks_exact(4)) {
        *wi = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    }
    for t in 16..80 {
        w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *h;
    for (t, wt) in w.iter().enumerate() {
        let (f, k) = match t {
            0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
            20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
            _ => (b ^ c ^ d, 0xCA62_C1D6),
        };
        let tmp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(*wt);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = tmp;
    }
    for (hi, v) in h.iter_mut().zip([a, b, c, d, e]) {
        *hi = hi.wrapping_add(v);
    }
}

/// SHA-1 of `data` in one call.
#[cfg(test)]
pub(crate) fn sha1(data: &[u8]) -> [u8; SHA1_LEN] {
    let mut s = Sha1::new();
    s.update(data);
    s.finalize()
}

/// Streaming HMAC-SHA1 (RFC 2104).
#[derive(Debug, Clone)]
pub(crate) struct HmacSha1 {
    inner: Sha1,
    /// The key padded to a block and XORed with 0x5c.
    outer_key: [u8; BLOCK],
}

impl HmacSha1 {
    pub(crate) fn new(key: &[u8]) -> HmacSha1 {
        // Keys longer than a block are hashed first (RFC 2104 §2).
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            let mut s = Sha1::new();
            s.update(key);
            let digest = s.finalize();
            if let Some(dst) = k.get_mut(..SHA1_LEN) {
                dst.copy_from_slice(&digest);
            }
        } else if let Some(dst) = k.get_mut(..key.len()) {
            dst.copy_from_slice(key);
        }
        let mut inner_key = k;
        for b in &mut inner_key {
            *b ^= 0x36;
        }
        let mut outer_key = k;
        for b in &mut outer_key {
            *b ^= 0x5c;
        }
        let mut inner = Sha1::new();
        inner.update(&inner_key);
        HmacSha1 { inner, outer_key }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    pub(crate) fn finalize(self) -> [u8; SHA1_LEN] {
        let inner = self.inner.finalize();
        let mut outer = Sha1::new();
        outer.update(&self.outer_key);
        outer.update(&inner);
        outer.finalize()
    }
}

/// HMAC-SHA1 of `data` under `key` in one call.
#[cfg(test)]
pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; SHA1_LEN] {
    let mut h = HmacSha1::new(key);
    h.update(data);
    h.finalize()
}

/// The reflected CRC-32 table for polynomial 0x04C11DB7 (0xEDB88320 reflected).
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (ISO-HDLC / IEEE 802.3, as in zlib and RFC 1952) of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC32_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// Compares two byte strings in time independent of where they differ (the
/// length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn sha1_standard_vectors() {
        assert_eq!(
            sha1(b"abc").to_vec(),
            hex("a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d")
        );
        assert_eq!(
            sha1(b"").to_vec(),
            hex("da39a3ee 5e6b4b0d 3255bfef 95601890 afd80709")
        );
        // 56 bytes: the length no longer fits in the first block's padding.
        assert_eq!(
            sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").to_vec(),
            hex("84983e44 1c3bd26e baae4aa1 f95129e5 e54670f1")
        );
    }

    #[test]
    fn sha1_million_a_streamed_in_odd_chunks() {
        let data = [b'a'; 1000];
        let mut s = Sha1::new();
        // 1000 × 1000 bytes, fed as 1, 2, ..., 999-byte pieces and a rest.
        for _ in 0..1000 {
            let mut rest = &data[..];
            let mut n = 1;
            while !rest.is_empty() {
                let (a, b) = rest.split_at(n.min(rest.len()));
                s.update(a);
                rest = b;
                n = n * 3 % 97 + 1;
            }
        }
        assert_eq!(
            s.finalize().to_vec(),
            hex("34aa973c d4c4daa4 f61eeb2b dbad2731 6534016f")
        );
    }

    #[test]
    fn sha1_streaming_matches_one_shot_at_every_split() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200] {
            let whole = sha1(&data[..len]);
            for cut in 0..=len {
                let mut s = Sha1::new();
                s.update(&data[..cut]);
                s.update(&data[cut..len]);
                assert_eq!(s.finalize(), whole, "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn hmac_sha1_rfc2202() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
            (
                [0x0b; 20].to_vec(),
                b"Hi There".to_vec(),
                "b617318655057264e28bc0b6fb378c8ef146be00",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                [0xaa; 20].to_vec(),
                [0xdd; 50].to_vec(),
                "125d7342b9ac11cd91a39af48aa17b4f63f175d3",
            ),
            (
                (1..=25).collect(),
                [0xcd; 50].to_vec(),
                "4c9007f4026250c6bc8414f9bf50c86c2d7235da",
            ),
            (
                [0x0c; 20].to_vec(),
                b"Test With Truncation".to_vec(),
                "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04",
            ),
            (
                [0xaa; 80].to_vec(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
            (
                [0xaa; 80].to_vec(),
                b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"
                    .to_vec(),
                "e8e99d0f45237d786d6bbaa7965c7808bbff1a91",
            ),
        ];
        for (i, (key, data, tag)) in cases.iter().enumerate() {
            assert_eq!(
                hmac_sha1(key, data).to_vec(),
                hex(tag),
                "RFC 2202 case {}",
                i + 1
            );
        }
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
