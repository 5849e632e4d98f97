//! FNV-1a, 64-bit (Fowler/Noll/Vo; draft-eastlake-fnv): a small, fast,
//! deterministic hash for keys meshd forms itself: a packet's flow (to keep
//! one flow on one of several equal paths), interned attribute sets,
//! duplicate-packet detection.
//!
//! Not for anything an attacker must not predict: FNV has no key, so anyone
//! can compute it and craft inputs that collide. Where a table is filled
//! from the network, a collision may cost a probe or an unlucky path choice,
//! never correctness.

use core::hash::Hasher;

/// FNV-1a 64 offset basis.
const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV 64 prime, 2^40 + 2^8 + 0xb3.
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// The FNV-1a 64-bit hasher. Feed it bytes with [`Hasher::write`] (or any
/// `Hash` value); [`Hasher::finish`] gives the hash so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(u64);

impl Fnv {
    pub const fn new() -> Fnv {
        Fnv(OFFSET_BASIS)
    }
}

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv::new()
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnv(bytes: &[u8]) -> u64 {
        let mut h = Fnv::new();
        h.write(bytes);
        h.finish()
    }

    /// Published FNV-1a 64 test vectors (those of the FNV reference code's
    /// test suite, test_fnv.c).
    #[test]
    fn published_test_vectors_hash_as_published() {
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foob"), 0xdd12_0e79_0c25_12af);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn bytes_written_in_pieces_hash_as_one_write() {
        let mut h = Fnv::default();
        h.write(b"foo");
        h.write(b"");
        h.write(b"bar");
        assert_eq!(h.finish(), fnv(b"foobar"));
    }
}
