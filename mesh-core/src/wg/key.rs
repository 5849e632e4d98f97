//! WireGuard keys as 32 octets, written as base64 the way `wg` prints them.

use core::fmt;
use core::str::FromStr;

/// A Curve25519 key (public or private: the type does not tell; the field that
/// holds it does).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Key(pub [u8; 32]);

/// Text that is not 44 characters of base64 for 32 octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyError;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

impl Key {
    /// The base64 text (44 characters, one `=` of padding).
    pub fn to_base64(&self) -> [u8; 44] {
        let mut out = [b'='; 44];
        let mut o = 0;
        for chunk in self.0.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out[o + i] = ALPHABET[((n >> (18 - 6 * i)) & 63) as usize];
            }
            o += 4;
        }
        out
    }

    /// A short, non-secret prefix for logs of public keys: the first 8
    /// characters, as `wg` users recognise them.
    pub fn short(&self) -> [u8; 8] {
        let b = self.to_base64();
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        s
    }
}

impl FromStr for Key {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Key, KeyError> {
        let s = s.trim().as_bytes();
        if s.len() != 44 || s[43] != b'=' || s[42] == b'=' {
            return Err(KeyError);
        }
        // Padding only as the very last character (32 octets = 43 sextets + '=').
        if s[..43].contains(&b'=') {
            return Err(KeyError);
        }
        let mut out = [0u8; 32];
        let mut o = 0;
        for chunk in s.chunks(4) {
            let mut n = 0u32;
            let mut valid = 0usize;
            for &c in chunk {
                n <<= 6;
                if c != b'=' {
                    n |= sextet(c).ok_or(KeyError)?;
                    valid += 1;
                }
            }
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            for &b in bytes.iter().take(valid.saturating_sub(1)) {
                *out.get_mut(o).ok_or(KeyError)? = b;
                o += 1;
            }
        }
        // The last character may only carry the two bits that belong to the key
        // (canonical encoding, as `wg` requires).
        if sextet(s[42]).ok_or(KeyError)? & 0b11 != 0 {
            return Err(KeyError);
        }
        Ok(Key(out))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_base64();
        f.write_str(core::str::from_utf8(&b).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Key {
    /// Only the first characters: keys in debug output are usually private ones
    /// by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.short();
        write!(
            f,
            "Key({}…)",
            core::str::from_utf8(&s).map_err(|_| fmt::Error)?
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn round_trips_a_key_from_the_uci_fixture() {
        let text = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
        let k: Key = text.parse().unwrap();
        assert_eq!(k.to_string(), text);
    }

    #[test]
    fn rejects_wrong_length_alphabet_and_non_canonical_padding() {
        assert!("abc".parse::<Key>().is_err());
        assert!("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8D*="
            .parse::<Key>()
            .is_err());
        // 'h' = 33 = 0b100001: low bits set where the key has none.
        assert!("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dh="
            .parse::<Key>()
            .is_err());
    }

    #[test]
    fn padding_in_the_middle_is_an_error_not_a_panic() {
        // Found by the config parser's property test.
        let bad = "AAAA====AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert_eq!(bad.parse::<Key>(), Err(KeyError));
    }

    #[test]
    fn all_byte_values_round_trip() {
        for v in 0..=255u8 {
            let k = Key([v; 32]);
            assert_eq!(k.to_string().parse::<Key>(), Ok(k));
        }
    }
}
