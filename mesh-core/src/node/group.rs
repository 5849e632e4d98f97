//! The node's room for the group's member list ([`crate::group`]): the
//! records it holds, passed member to member inside the mesh.
//!
//! Records and digests travel as UDP between overlay addresses on
//! [`GROUP_PORT`], like peer exchange: through the tunnels, and through
//! members where two have no tunnel. What moves them:
//! - a record this node takes as new (its daemon's own, or a member's newer
//!   one) goes at once to every member we have a route to, but the one it
//!   came from: a change crosses the mesh in a few tunnel hops;
//! - every [`DIGEST_INTERVAL`], and with the next peer exchange after a
//!   tunnel came up or a route appeared, each member we have a route to hears
//!   our digest; a member answers a digest with the records it holds that
//!   the digest lacks or holds older ([`MAX_ANSWER`] at most). A member that
//!   missed a flood, or was not yet a member when a record came, gets it so.
//! - A digest that shows a record we lack from a member whose records we
//!   take is answered with our digest too, so that its sender sends it.
//! - A record refused because its signer is not (yet) a member whose
//!   records we take waits ([`WAITING`] at most, the oldest dropped) and is
//!   offered again when a member is added or changed.
//! - A member's digests are answered, and the new records it brings passed
//!   on, at most once every [`MEMBER_GAP`]: no member turns one small
//!   datagram into many large ones, or a stream of versions into floods.
//!
//! Which records count is the daemon's business: the node tells it that the
//! records changed ([`Node::take_group_changed`]) and the daemon reads whom
//! they want ([`crate::group::Group::membership`]) and writes member
//! sections. A record is taken only from a signer that is a member allowed to
//! invite ([`crate::wg::MemberConfig::inviter`]) at the time it arrives.

use super::*;

use crate::group::{self, Digest, Group, Offered, Refused};
use crate::ip::IpInfo;

/// The overlay UDP port of group records and digests.
pub const GROUP_PORT: u16 = 51823;
/// How often members hear our digest when nothing changed.
pub const DIGEST_INTERVAL: Duration = Duration::from_secs(30);
/// Records sent in answer to one digest, at most (the rest at the next).
pub const MAX_ANSWER: usize = 8;
/// A member's digests are answered, and the records it brings are passed
/// on, at most once in this time: a member (hostile, or looping) cannot
/// make a small datagram into many large ones, nor a stream of new versions
/// into a flood of the mesh. What is held back goes with the digests.
pub const MEMBER_GAP: Duration = Duration::from_secs(1);
/// Records a node holds: one per member and its own.
pub const MAX_RECORDS: usize = MAX_MEMBERS + 1;
/// The largest payload on [`GROUP_PORT`]: a record or a digest.
const MAX_PAYLOAD: usize = if group::MAX_LEN > Digest::<MAX_RECORDS>::MAX_LEN {
    group::MAX_LEN
} else {
    Digest::<MAX_RECORDS>::MAX_LEN
};
// With IPv4 and UDP headers, inside a tunnel.
const _: () = assert!(MAX_PAYLOAD + 28 <= crate::wg::INNER_MTU);

/// The room's state in the node.
#[derive(Debug)]
pub(super) struct GroupRoom {
    pub group: Group<MAX_RECORDS>,
    /// The records changed since the daemon last looked.
    pub changed: bool,
    /// The highest version of our own record a member holds.
    pub own_seen: Option<u64>,
    /// When members next hear our digest.
    pub next_digest: Instant,
    /// A tunnel came up or a route appeared: the digest goes with the next
    /// announcement.
    pub digest_soon: bool,
    /// When each member's digest was last answered, and a record it brought
    /// last passed on ([`MEMBER_GAP`]).
    pub answered: [Option<Instant>; MAX_MEMBERS],
    pub passed_on: [Option<Instant>; MAX_MEMBERS],
    /// The last few records refused because their signer was not (yet) a
    /// member whose records we take: offered again when a member is added
    /// or changed.
    pub waiting: heapless::Deque<heapless::Vec<u8, { group::MAX_LEN }>, WAITING>,
}

/// Records kept for a signer that may become a member ([`GroupRoom::waiting`]).
///
/// The race they close: a member floods the records it holds as it adds a
/// new member, so the new member gets, say, the inviter's record (which
/// lists a member it does not have yet) and that member's record together;
/// the second is refused (its signer is no member yet) a few milliseconds
/// before the first makes it one. Offered again then, it is taken at once,
/// not at the next digest.
pub const WAITING: usize = 4;

impl GroupRoom {
    pub fn new(own: [u8; 32], now: Instant) -> Self {
        GroupRoom {
            group: Group::new(own),
            changed: false,
            own_seen: None,
            next_digest: now,
            digest_soon: false,
            answered: [None; MAX_MEMBERS],
            passed_on: [None; MAX_MEMBERS],
            waiting: heapless::Deque::new(),
        }
    }
}

/// Whether [`MEMBER_GAP`] passed since `last` (and if so, `last` is now).
fn gap_over(last: &mut Option<Instant>, now: Instant) -> bool {
    if last.is_some_and(|t| now < t + MEMBER_GAP) {
        return false;
    }
    *last = Some(now);
    true
}

/// May `key`'s records change the group here? A member allowed to invite.
fn may_invite<T: crate::wg::Tunnel>(slots: &Slots<T>, key: &[u8; 32]) -> bool {
    slots
        .iter()
        .any(|(_, s)| s.wg.config.public_key.0 == *key && s.wg.config.inviter)
}

impl<C: Crypto> Node<'_, C> {
    /// Our own record, signed by the daemon: held, and sent to every member
    /// we have a route to. Its version must be above every version of it
    /// members hold ([`Node::group_own_version_seen`]).
    pub fn set_group_record(&mut self, bytes: &[u8]) -> Result<(), group::Error> {
        self.group.group.set_own(bytes)?;
        self.flood_record(bytes, None);
        Ok(())
    }

    /// Whether the records changed since the last call (and forgets it).
    pub fn take_group_changed(&mut self) -> bool {
        core::mem::take(&mut self.group.changed)
    }

    /// The records held, and their counters.
    pub fn group(&self) -> &Group<MAX_RECORDS> {
        &self.group.group
    }

    /// Whom the records of members allowed to invite want in the group, and
    /// whom one of them removed ([`Group::membership`]).
    pub fn group_membership(
        &self,
        wanted: impl FnMut(group::Wanted),
        removed: impl FnMut(&[u8; 32]),
    ) {
        let slots = &self.slots;
        self.group
            .group
            .membership(|k| may_invite(slots, k), wanted, removed);
    }

    /// The highest version of our own record a member showed us (in its
    /// digest, or the record itself come back) above the one we hold: after
    /// a restart the daemon signs its next record above it.
    pub fn group_own_version_seen(&self) -> Option<u64> {
        self.group.own_seen
    }

    /// A record or digest from a member, addressed to our overlay address.
    pub(super) fn handle_group(&mut self, now: Instant, len: usize, info: &IpInfo) {
        let packet = &self.lan.spare_ref()[..len];
        let Some(sender) = self.slots.by_overlay(info.src) else {
            self.stats.group_invalid += 1;
            return;
        };
        let Some((_, _, payload)) = ip::udp_parts(packet, info) else {
            self.stats.group_invalid += 1;
            return;
        };
        let mut buf = [0u8; MAX_PAYLOAD];
        let Some(bytes) = buf.get_mut(..payload.len()) else {
            self.stats.group_invalid += 1;
            return;
        };
        bytes.copy_from_slice(payload);
        let bytes = &*bytes;
        match bytes.first() {
            Some(&group::MAGIC) => {
                let slots = &self.slots;
                let offered = self.group.group.offer(bytes, |k| may_invite(slots, k));
                match offered {
                    Ok(Offered::New) => {
                        self.group.changed = true;
                        if gap_over(&mut self.group.passed_on[sender], now) {
                            self.flood_record(bytes, Some(sender));
                        } else {
                            self.stats.group_limited += 1;
                        }
                    }
                    Ok(Offered::Stale) => {}
                    Ok(Offered::Own { version }) => self.own_version_seen(version),
                    Err(Refused::NotAnInviter) => {
                        log::debug!(
                            "group: a record from member {sender} waits: its signer is no member here"
                        );
                        let waiting = &mut self.group.waiting;
                        if waiting.is_full() {
                            waiting.pop_front();
                        }
                        if let Ok(record) = heapless::Vec::from_slice(bytes) {
                            let _ = waiting.push_back(record);
                        }
                    }
                    Err(e) => log::debug!("group: a record from member {sender} refused: {e:?}"),
                }
            }
            Some(&group::DIGEST_MAGIC) => {
                let Ok(theirs) = Digest::<MAX_RECORDS>::decode(bytes) else {
                    self.group.group.counters.bad_digests += 1;
                    return;
                };
                if let Some(v) = self.group.group.own_version_seen(&theirs) {
                    self.own_version_seen(v);
                }
                if !gap_over(&mut self.group.answered[sender], now) {
                    self.stats.group_limited += 1;
                    return;
                }
                let mut signers: heapless::Vec<[u8; 32], MAX_ANSWER> = heapless::Vec::new();
                for signer in self.group.group.missing_from(&theirs) {
                    if signers.push(signer).is_err() {
                        break;
                    }
                }
                for signer in &signers {
                    let mut record = [0u8; group::MAX_LEN];
                    if let Some(n) = self.group.group.encode(signer, &mut record) {
                        self.send_group(sender, &record[..n]);
                    }
                }
                // A digest brings only what its sender lacks. If it shows a
                // record we lack (or hold older) from a member whose records
                // we take, our digest goes back, and the sender answers it
                // with that record: a router that missed a record (it was
                // not yet a member when it went round) gets it now, not at
                // the next digest. Once a member gap at most; a record we
                // would refuse never asks, so two routers cannot ping-pong.
                let group = &self.group.group;
                let behind = self.slots.iter().any(|(_, s)| {
                    let key = &s.wg.config.public_key.0;
                    s.wg.config.inviter
                        && theirs
                            .version_of(key)
                            .is_some_and(|v| group.version(key).is_none_or(|ours| ours < v))
                });
                if behind {
                    let mut out = [0u8; Digest::<MAX_RECORDS>::MAX_LEN];
                    if let Ok(n) = self.group.group.digest().encode(&mut out) {
                        self.send_group(sender, &out[..n]);
                    }
                }
            }
            _ => self.stats.group_invalid += 1,
        }
    }

    /// A member was added: the records that waited for their signer to be
    /// one are offered again; those of signers still no member wait on. Not
    /// passed on: the member that brought one passed it on already.
    pub(super) fn offer_waiting_records(&mut self) {
        let mut kept: heapless::Deque<heapless::Vec<u8, { group::MAX_LEN }>, WAITING> =
            heapless::Deque::new();
        while let Some(record) = self.group.waiting.pop_front() {
            let slots = &self.slots;
            let signer_is_member = group::Record::decode_signed(&record)
                .is_ok_and(|(r, _)| may_invite(slots, &r.signer));
            if !signer_is_member {
                let _ = kept.push_back(record);
                continue;
            }
            if let Ok(Offered::New) = self.group.group.offer(&record, |k| may_invite(slots, k)) {
                self.group.changed = true;
            }
        }
        self.group.waiting = kept;
    }

    /// A member holds our own record at `version`: kept if above ours.
    fn own_version_seen(&mut self, version: u64) {
        let ours = self.group.group.version(&self.group.group.own());
        if ours.is_none_or(|v| version > v) {
            self.group.own_seen = Some(self.group.own_seen.map_or(version, |s| s.max(version)));
        }
    }

    /// `bytes` (a record) to every member we have a route to, but `except`.
    fn flood_record(&mut self, bytes: &[u8], except: Option<usize>) {
        for slot in 0..MAX_MEMBERS {
            if Some(slot) != except && self.routed(slot) {
                self.send_group(slot, bytes);
            }
        }
    }

    /// With peer exchange's announcement: our digest to every member we
    /// have a route to, when due or soon after a tunnel came up or a route
    /// appeared.
    pub(super) fn group_digest(&mut self, now: Instant) {
        let soon = core::mem::take(&mut self.group.digest_soon);
        if !soon && now < self.group.next_digest {
            return;
        }
        self.group.next_digest = now + DIGEST_INTERVAL;
        let mut out = [0u8; Digest::<MAX_RECORDS>::MAX_LEN];
        let Ok(n) = self.group.group.digest().encode(&mut out) else {
            return;
        };
        for slot in 0..MAX_MEMBERS {
            if self.routed(slot) {
                self.send_group(slot, &out[..n]);
            }
        }
    }

    pub(super) fn send_group(&mut self, slot: usize, payload: &[u8]) {
        let Some(dst) = self.slots.get(slot).map(|s| s.wg.config.overlay) else {
            return;
        };
        let mut out = [0u8; MAX_PAYLOAD + 28];
        let src = self.config.overlay;
        if let Some(len) = ip::build_udp4(src, dst, GROUP_PORT, GROUP_PORT, 64, payload, &mut out) {
            self.stats.group_sent += 1;
            self.originate(&out[..len]);
        }
    }
}
