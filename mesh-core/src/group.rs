//! The group's member list as signed records (issue 17, part 4).
//!
//! Every router vouches for the members it brought in: the friends it
//! invited, the member whose invite it used, and the members it removed
//! (`meshd remove`). That is its [`Record`]: a version number and a list of
//! [`Entry`]s (a WireGuard public key, the name it gives that member, and
//! whether the member is removed), signed with the router's own WireGuard
//! key. Records travel inside the tunnels, member to member, and a router
//! passes on the records it holds, so a record reaches members its signer
//! has no tunnel to; the signature, not the member who passed it on, says
//! who made it. The group's member list is what the records of its members
//! say together: concurrent invites by two members are two records, never a
//! conflict between two versions of one list.
//!
//! **Signatures.** XEdDSA (Signal's specification, by Trevor Perrin) on
//! Curve25519: a signature made with the X25519 private key a router already
//! has (its WireGuard key), checked against the X25519 public key every
//! member already knows. No second key to hand out, bind or revoke. The
//! signature is an Ed25519 signature under the Edwards form of that public
//! key (sign bit 0), so it is checked by ed25519-dalek's `verify_strict`
//! (RFC 8032 verification, refusing small-order keys and non-canonical
//! encodings); it is made here with curve25519-dalek's scalar and point
//! arithmetic and SHA-512 (sha2), as the specification's `xeddsa_sign`,
//! with 64 random octets the caller draws. The `xeddsa` crate (the same
//! algorithm) needs `std` and its own random generator; these tests check
//! its signatures and ours against each other.
//!
//! **What is signed.** The exact encoded octets: the magic and version
//! octets, then the postcard body; the 64-octet signature follows them.
//!
//! Decoding never panics and costs, before the signature, one postcard
//! decode of at most [`MAX_LEN`] octets.

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use curve25519_dalek::EdwardsPoint;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::invite::{valid_name, Name};

/// First octet of a record on the wire.
pub const MAGIC: u8 = b'G';
/// The record format's version.
pub const VERSION: u8 = 1;
/// Members one record speaks of, at most (added and removed).
pub const MAX_ENTRIES: usize = 16;
/// Octets of a signature.
pub const SIGNATURE_LEN: usize = 64;
/// The longest encoded record: magic, version, signer, a 10-octet varint
/// version, the entry count, the entries (key, name with its length,
/// removed flag), signature: 1,165 octets, one datagram inside a tunnel.
pub const MAX_LEN: usize = 2 + 32 + 10 + 1 + MAX_ENTRIES * (32 + 1 + 32 + 1) + SIGNATURE_LEN;
// The largest record, with IPv6 and UDP headers, fits inside a tunnel.
const _: () = assert!(40 + 8 + MAX_LEN <= crate::wg::INNER_MTU);

/// One member a record speaks of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its WireGuard public key.
    pub key: [u8; 32],
    /// The name the signer knows it by (a member section name).
    pub name: Name,
    /// The signer removed it from the group.
    pub removed: bool,
}

/// What one router says of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The signer's WireGuard public key.
    pub signer: [u8; 32],
    /// Grows with every change the signer makes; a record replaces one of
    /// the same signer only with a higher version.
    pub version: u64,
    pub entries: heapless::Vec<Entry, MAX_ENTRIES>,
}

/// Why octets are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than a signature and a header, or longer than [`MAX_LEN`].
    Length,
    /// Not [`MAGIC`] and [`VERSION`].
    NotARecord,
    /// The body does not decode, bytes follow it, two entries name one key,
    /// or the signer is among its own entries.
    Malformed,
    /// A name that is not `[A-Za-z0-9_]`, 1..32.
    BadName,
    /// The signature is not the signer's over these octets.
    Signature,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Length => "a group record of impossible length",
            Error::NotARecord => "not a group record of this version",
            Error::Malformed => "a group record that does not decode",
            Error::BadName => "a group record naming a member badly",
            Error::Signature => "a group record its signer did not sign",
            Error::BufferTooSmall => "buffer too small",
        })
    }
}

impl Record {
    /// The entry for `key`, if the record has one.
    pub fn entry(&self, key: &[u8; 32]) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.key == key)
    }

    /// Encodes and signs the record into `out` with `private` (the signer's
    /// X25519 private key, whose public key must be [`Record::signer`]) and
    /// 64 octets `random` from a secure source; returns the length.
    pub fn sign(
        &self,
        private: &[u8; 32],
        random: &[u8; 64],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let n = self.encode_body(out)?;
        let (msg, rest) = out.split_at_mut(n);
        let sig = xeddsa_sign(private, msg, random);
        rest.get_mut(..SIGNATURE_LEN)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(&sig);
        Ok(n + SIGNATURE_LEN)
    }

    fn encode_body(&self, out: &mut [u8]) -> Result<usize, Error> {
        let head = out.get_mut(..2).ok_or(Error::BufferTooSmall)?;
        head.copy_from_slice(&[MAGIC, VERSION]);
        let n = postcard::to_slice(self, &mut out[2..])
            .map_err(|_| Error::BufferTooSmall)?
            .len();
        Ok(2 + n)
    }

    /// A record from its octets, its signature checked against its signer.
    pub fn decode(bytes: &[u8]) -> Result<Record, Error> {
        if bytes.len() < 2 + 32 + SIGNATURE_LEN || bytes.len() > MAX_LEN {
            return Err(Error::Length);
        }
        if bytes[..2] != [MAGIC, VERSION] {
            return Err(Error::NotARecord);
        }
        let (msg, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
        let (r, rest): (Record, _) =
            postcard::take_from_bytes(&msg[2..]).map_err(|_| Error::Malformed)?;
        if !rest.is_empty() {
            return Err(Error::Malformed);
        }
        for (i, e) in r.entries.iter().enumerate() {
            if !valid_name(&e.name) {
                return Err(Error::BadName);
            }
            if e.key == r.signer || r.entries[..i].iter().any(|o| o.key == e.key) {
                return Err(Error::Malformed);
            }
        }
        let sig: &[u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| Error::Length)?;
        if !xeddsa_verify(&r.signer, msg, sig) {
            return Err(Error::Signature);
        }
        Ok(r)
    }
}

/// The specification's hash_1: SHA-512 of 2^256 - 2 (little-endian), then X.
fn hash1(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = Sha512::new();
    let mut prefix = [0xffu8; 32];
    prefix[0] = 0xfe;
    h.update(prefix);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// XEdDSA's `calculate_key_pair`: the Edwards public key A (sign bit 0) of
/// the X25519 private key, the scalar a with A = aB, and the octets of a
/// that the nonce's hash takes. Those are the clamped key itself when it is
/// not negated (libsignal's `xed25519_sign` and the `xeddsa` crate hash it
/// so; the specification's a = k mod q is the same scalar), else -k mod q.
fn key_pair(private: &[u8; 32]) -> (CompressedEdwardsY, Scalar, [u8; 32]) {
    let clamped = clamp_integer(*private);
    let k = Scalar::from_bytes_mod_order(clamped);
    let e = EdwardsPoint::mul_base(&k).compress();
    let mut y = e.0;
    y[31] &= 0x7f;
    if e.0[31] >> 7 == 1 {
        let a = -k;
        (CompressedEdwardsY(y), a, a.to_bytes())
    } else {
        (CompressedEdwardsY(y), k, clamped)
    }
}

/// XEdDSA's `xeddsa_sign` on Curve25519: R || s.
pub fn xeddsa_sign(private: &[u8; 32], msg: &[u8], random: &[u8; 64]) -> [u8; 64] {
    let (public, a, a_octets) = key_pair(private);
    let r = Scalar::from_bytes_mod_order_wide(&hash1(&[&a_octets, msg, random]));
    let big_r = EdwardsPoint::mul_base(&r).compress();
    let mut h = Sha512::new();
    h.update(big_r.as_bytes());
    h.update(public.as_bytes());
    h.update(msg);
    let h = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = r + h * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// XEdDSA's `xeddsa_verify` on Curve25519: `sig` is `public`'s signature of
/// `msg`. A public key that is not a canonical field element (its top bit
/// set, or at least 2^255 - 19) is refused, as the specification says.
pub fn xeddsa_verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let u = MontgomeryPoint(*public);
    let Some(a) = u.to_edwards(0) else {
        return false;
    };
    // Canonical u: converting back gives the same octets (MontgomeryPoint's
    // own equality compares field elements, so compare the octets).
    if a.to_montgomery().to_bytes() != *public {
        return false;
    }
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(a.compress().as_bytes()) else {
        return false;
    };
    key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

#[cfg(test)]
mod tests;
