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
//! octets, then the postcard body; the 64-octet signature follows them. A
//! record has one encoding (one in another, such as an over-long varint,
//! is refused), so a router holds the decoded record and its signature, and
//! what it passes on, encoded again, is the signer's own octets.
//!
//! Decoding never panics and costs, before the signature, one postcard
//! decode of at most [`MAX_LEN`] octets.

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use curve25519_dalek::EdwardsPoint;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha512};

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
    /// The body does not decode, bytes follow it, it is not the one
    /// encoding of what it says, two entries name one key, or the signer is
    /// among its own entries.
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
        Self::decode_signed(bytes).map(|(r, _)| r)
    }

    /// [`Record::decode`], and the signature.
    pub fn decode_signed(bytes: &[u8]) -> Result<(Record, [u8; SIGNATURE_LEN]), Error> {
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
        // One encoding per record (postcard's decoder also takes over-long
        // varints): what is held is the record and its signature, and the
        // octets passed on are encoded again from them.
        let mut again = [0u8; MAX_LEN];
        if r.encode_body(&mut again).ok().and_then(|n| again.get(..n)) != Some(msg) {
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
        Ok((r, *sig))
    }

    /// The record's octets with `signature` (made over them) into `out`.
    fn encode_signed(&self, signature: &[u8; SIGNATURE_LEN], out: &mut [u8]) -> Option<usize> {
        let n = self.encode_body(out).ok()?;
        out.get_mut(n..n + SIGNATURE_LEN)?
            .copy_from_slice(signature);
        Some(n + SIGNATURE_LEN)
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

/// First octet of a digest: which records a router holds.
pub const DIGEST_MAGIC: u8 = b'D';

/// A signer as a digest names it: the first 8 octets of its key.
pub fn signer_id(key: &[u8; 32]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&key[..8]);
    u64::from_be_bytes(id)
}

/// Which records a router holds, and their versions: what it tells the
/// members it has tunnels to, so that each sends it the records it lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest<const N: usize> {
    /// ([`signer_id`], version) of each record held.
    pub held: heapless::Vec<(u64, u64), N>,
}

impl<const N: usize> Digest<N> {
    /// The largest encoded digest: magic, version, count, N pairs of
    /// varints.
    pub const MAX_LEN: usize = 2 + 1 + N * 20;

    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let head = out.get_mut(..2).ok_or(Error::BufferTooSmall)?;
        head.copy_from_slice(&[DIGEST_MAGIC, VERSION]);
        let n = postcard::to_slice(self, &mut out[2..])
            .map_err(|_| Error::BufferTooSmall)?
            .len();
        Ok(2 + n)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < 3 || bytes.len() > Self::MAX_LEN {
            return Err(Error::Length);
        }
        if bytes[..2] != [DIGEST_MAGIC, VERSION] {
            return Err(Error::NotARecord);
        }
        let (d, rest): (Self, _) =
            postcard::take_from_bytes(&bytes[2..]).map_err(|_| Error::Malformed)?;
        if !rest.is_empty() {
            return Err(Error::Malformed);
        }
        Ok(d)
    }

    /// The version of `signer`'s record the digest says is held.
    pub fn version_of(&self, signer: &[u8; 32]) -> Option<u64> {
        let id = signer_id(signer);
        self.held.iter().find(|(i, _)| *i == id).map(|&(_, v)| v)
    }
}

/// What [`Group::offer`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Newer than what was held of its signer (or the first): held now.
    New,
    /// The version held already, or an older one: nothing changed.
    Stale,
    /// Our own record, come back from a member (not taken: this router
    /// alone makes its own), with its version: one above ours means a
    /// record made before a restart that lost it.
    Own { version: u64 },
}

/// Why [`Group::offer`] refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a record, or not signed by its signer.
    Bad(Error),
    /// Its signer is not a member allowed to invite.
    NotAnInviter,
    /// A record of a new signer, and every slot holds one.
    Full,
}

/// Counters of records and digests offered to a [`Group`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounters {
    pub accepted: u64,
    pub stale: u64,
    pub bad: u64,
    pub not_inviter: u64,
    pub full: u64,
    pub bad_digests: u64,
}

/// One signer's newest record and its signature: encoded again, the
/// signer's own octets (a record has one encoding).
#[derive(Debug, Clone)]
struct Held {
    record: Record,
    signature: [u8; SIGNATURE_LEN],
}

/// A member the records want in the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub key: [u8; 32],
    /// The name the first record naming it gives it.
    pub name: Name,
    /// That record's signer.
    pub via: [u8; 32],
}

/// The records a router holds: the newest of each signer it accepted, at
/// most `N` (its members and itself). Sans-IO: the node hands in what
/// arrives, and asks what to send and whom the records want as members.
#[derive(Debug)]
pub struct Group<const N: usize> {
    own: [u8; 32],
    held: heapless::Vec<Held, N>,
    pub counters: GroupCounters,
}

impl<const N: usize> Group<N> {
    /// The group as `own` (this router's public key) holds it: nothing yet.
    pub fn new(own: [u8; 32]) -> Self {
        Group {
            own,
            held: heapless::Vec::new(),
            counters: GroupCounters::default(),
        }
    }

    /// Holds this router's own record, signed by its daemon (replacing an
    /// older one). Its own version must grow: see [`Group::own_version_seen`].
    pub fn set_own(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let (record, signature) = Record::decode_signed(bytes)?;
        if record.signer != self.own {
            return Err(Error::Signature);
        }
        if self.store(Held { record, signature }) {
            Ok(())
        } else {
            Err(Error::BufferTooSmall)
        }
    }

    /// A record that arrived from a member. `may_invite(key)`: is `key` a
    /// member whose additions and removals this router takes?
    pub fn offer(
        &mut self,
        bytes: &[u8],
        may_invite: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<Offered, Refused> {
        let (r, signature) = match Record::decode_signed(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.counters.bad += 1;
                return Err(Refused::Bad(e));
            }
        };
        if r.signer == self.own {
            self.counters.stale += 1;
            return Ok(Offered::Own { version: r.version });
        }
        if !may_invite(&r.signer) {
            self.counters.not_inviter += 1;
            return Err(Refused::NotAnInviter);
        }
        if self.version(&r.signer).is_some_and(|v| v >= r.version) {
            self.counters.stale += 1;
            return Ok(Offered::Stale);
        }
        if self.store(Held {
            record: r,
            signature,
        }) {
            self.counters.accepted += 1;
            Ok(Offered::New)
        } else {
            self.counters.full += 1;
            Err(Refused::Full)
        }
    }

    /// Holds `held`, replacing its signer's record; false when full.
    fn store(&mut self, held: Held) -> bool {
        match self.held.iter_mut().find(|h| h.signer() == held.signer()) {
            Some(h) => *h = held,
            None => return self.held.push(held).is_ok(),
        }
        true
    }

    /// The records held (ours among them), in the order first held.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.held.iter().map(|h| &h.record)
    }

    /// This router's key.
    pub fn own(&self) -> [u8; 32] {
        self.own
    }

    /// The version held of `signer`'s record.
    pub fn version(&self, signer: &[u8; 32]) -> Option<u64> {
        self.held
            .iter()
            .find(|h| h.signer() == signer)
            .map(|h| h.record.version)
    }

    /// The highest version of this router's own record a member's digest
    /// shows: after a restart that lost its own record, its next one must
    /// be above it.
    pub fn own_version_seen(&self, digest: &Digest<N>) -> Option<u64> {
        digest.version_of(&self.own)
    }

    /// Drops the record of `signer` (a member no longer in the group).
    pub fn forget(&mut self, signer: &[u8; 32]) {
        self.held.retain(|h| h.signer() != signer);
    }

    /// What this router holds, to tell its members.
    pub fn digest(&self) -> Digest<N> {
        let mut d = Digest {
            held: heapless::Vec::new(),
        };
        for h in &self.held {
            // Cannot fail: the digest has a pair for each of N slots.
            let _ = d.held.push((signer_id(h.signer()), h.record.version));
        }
        d
    }

    /// The signer of each record held that a member whose digest is
    /// `theirs` lacks, or holds older ([`Group::encode`] writes its octets).
    pub fn missing_from<'g>(
        &'g self,
        theirs: &'g Digest<N>,
    ) -> impl Iterator<Item = [u8; 32]> + 'g {
        self.held
            .iter()
            .filter(|h| {
                theirs
                    .version_of(h.signer())
                    .is_none_or(|v| v < h.record.version)
            })
            .map(|h| *h.signer())
    }

    /// The signed octets of `signer`'s record, if held, into `out` (at
    /// least [`MAX_LEN`]); their length.
    pub fn encode(&self, signer: &[u8; 32], out: &mut [u8]) -> Option<usize> {
        let h = self.held.iter().find(|h| h.signer() == signer)?;
        h.record.encode_signed(&h.signature, out)
    }

    /// Whom the records of signers allowed to invite want in the group, and
    /// whom one of them removed. A member any such record marks removed is
    /// removed, whoever else vouches for it; this router is neither.
    /// `wanted(w)` is called once per member wanted (in the order of the
    /// records held), `removed(key)` once per member removed.
    pub fn membership(
        &self,
        may_invite: impl Fn(&[u8; 32]) -> bool,
        mut wanted: impl FnMut(Wanted),
        mut removed: impl FnMut(&[u8; 32]),
    ) {
        let counted = |h: &&Held| *h.signer() == self.own || may_invite(h.signer());
        let is_removed = |key: &[u8; 32]| {
            self.held
                .iter()
                .filter(counted)
                .any(|h| h.record.entry(key).is_some_and(|e| e.removed))
        };
        for (i, h) in self.held.iter().enumerate().filter(|(_, h)| counted(h)) {
            for e in &h.record.entries {
                // Once per key, at the first record that names it; never us.
                let earlier = self.held[..i]
                    .iter()
                    .filter(counted)
                    .any(|o| o.record.entry(&e.key).is_some());
                if e.key == self.own || earlier {
                    continue;
                }
                if is_removed(&e.key) {
                    removed(&e.key);
                } else {
                    wanted(Wanted {
                        key: e.key,
                        name: e.name.clone(),
                        via: h.record.signer,
                    });
                }
            }
        }
    }
}

impl Held {
    fn signer(&self) -> &[u8; 32] {
        &self.record.signer
    }
}

#[cfg(test)]
mod tests;
