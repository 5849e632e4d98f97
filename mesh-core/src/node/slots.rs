//! The member table: one slot per member, holding everything about it.
//!
//! A slot's number is stable while the member exists: it is the member's
//! BGP peer id in the RIB and the low bits of its WireGuard receiver index,
//! so an incoming datagram finds its slot without a search.

use core::net::IpAddr;

use embassy_time::{Duration, Instant};

use crate::bgp::session::{SessionBuffers, SESSION_BUFFERS};
use crate::wg::{Crypto, Key, Member, MemberConfig, MemberError, Tunnel, MAX_MEMBERS};

use super::engine::{session_config, BgpPeer};
use super::exchange::Punch;
use super::relay::Bucket;
use super::stun::Probe;
use super::supervision::Supervision;
use super::tunnel::Upkeep;
use super::{BgpTimer, ExchangeTimer, NodeConfig, StunTimer, Wake};

/// A tunnel heard from this recently is a direct path.
pub const DIRECT_FRESH: Duration = Duration::from_secs(15);

/// Everything the node holds about one member. Each field is the member's
/// part of one child state machine.
#[derive(Debug)]
pub(crate) struct Slot<'a, T> {
    /// The WireGuard peer: configuration, crypto session, live endpoint.
    pub wg: Member<T>,
    /// Bringing the tunnel up and keeping its latency for the RIB.
    pub upkeep: Upkeep,
    /// BFD on the tunnel, and the hold-down it puts on BGP.
    pub bfd: Supervision,
    /// The eBGP session over the tunnel.
    pub bgp: BgpPeer<'a>,
    /// Asking the member where it sees us (STUN).
    pub stun: Probe,
    /// What peer exchange taught us about it, and hole punching towards it.
    pub punch: Punch,
    /// The cap on transit traffic it may send through us.
    pub relay: Bucket,
    /// The earliest of the children's deadlines above, as of the last time
    /// one of them changed ([`Slot::poll_timeout`], kept by the node).
    pub deadline: Option<(Instant, Wake)>,
}

impl<T: Tunnel> Slot<'_, T> {
    /// The earliest deadline of this member's children, and whose. The
    /// tunnel's upkeep runs on the node's WireGuard tick, not here.
    pub fn poll_timeout(&self, slot: usize) -> Option<(Instant, Wake)> {
        let member = slot as u8;
        let mut best: Option<(Instant, Wake)> = None;
        let mut consider = |at: Option<Instant>, why: Wake| {
            if let Some(t) = at {
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, why));
                }
            }
        };
        if let Some((t, timer)) = self.bfd.poll_timeout() {
            consider(Some(t), Wake::Supervision { member, timer });
        }
        let session = self.bgp.session.poll_timeout();
        consider(session, Wake::Bgp(BgpTimer::Session(member)));
        // Members are asked where they see us once we know where they are.
        if self.wg.endpoint.is_some() {
            consider(
                Some(self.stun.poll_timeout()),
                Wake::Stun(StunTimer::Probe(member)),
            );
        }
        let punch = self.punch.poll_timeout();
        consider(punch, Wake::Exchange(ExchangeTimer::Punch(member)));
        best
    }

    /// Its tunnel is alive: recently heard from, at a confirmed endpoint.
    fn tunnel_alive(&self, now: Instant) -> bool {
        self.wg.endpoint_confirmed
            && self
                .wg
                .last_rx
                .is_some_and(|t| now.saturating_duration_since(t) < DIRECT_FRESH)
    }

    /// Reached over its own tunnel, recently heard from, and (if the tunnel
    /// runs BFD) with BFD Up.
    pub fn is_direct(&self, now: Instant) -> bool {
        self.bfd.up_or_off() && self.tunnel_alive(now)
    }

    /// Direct, or about to be: the tunnel is alive and its BFD is still
    /// coming up. Nothing to punch there: a punch's forced handshakes would
    /// only replace the tunnel's session again and again (each a reason for
    /// BGP to dial anew) while BFD is a packet or two from Up.
    pub fn direct_or_coming_up(&self, now: Instant) -> bool {
        self.tunnel_alive(now) && (self.bfd.up_or_off() || self.bfd.coming_up())
    }

    /// When [`Slot::direct_or_coming_up`] turns false by itself (silence),
    /// if it is true now.
    pub fn direct_until(&self, now: Instant) -> Option<Instant> {
        self.direct_or_coming_up(now)
            .then(|| self.wg.last_rx.map(|t| t + DIRECT_FRESH))
            .flatten()
    }
}

/// Room for one member: the caller's storage for the member table
/// ([`super::NodeStorage`]) is a slice of these, one per member the node
/// may hold. Empty until a member is added.
pub struct MemberSlot<'a, T>(Option<Slot<'a, T>>);

impl<T> MemberSlot<'_, T> {
    /// An empty slot, for a `static` table. At run time prefer
    /// [`MemberSlot::default`]: a copy of this constant writes the whole
    /// slot, `default` only the word that marks it empty.
    pub const EMPTY: Self = MemberSlot(None);
}

impl<T> Default for MemberSlot<'_, T> {
    fn default() -> Self {
        MemberSlot(None)
    }
}

impl<T> core::fmt::Debug for MemberSlot<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.0.is_some() {
            "MemberSlot(used)"
        } else {
            "MemberSlot(empty)"
        })
    }
}

/// The table, in the caller's storage: as many slots as it was given (at
/// most [`MAX_MEMBERS`]).
pub(crate) struct Slots<'a, T> {
    slots: &'a mut [MemberSlot<'a, T>],
    /// Each slot's BGP message buffers while it is empty (a member's
    /// session holds them while it is there).
    spare: [Option<SessionBuffers<'a>>; MAX_MEMBERS],
    /// Members ever added (10 bits, wrapping): with the slot number it makes
    /// the receiver index, so a datagram for a slot's previous member misses.
    adds: u16,
}

impl<T> core::fmt::Debug for Slots<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Slots")
            .field("capacity", &self.slots.len())
            .field("used", &self.slots.iter().filter(|s| s.0.is_some()).count())
            .finish()
    }
}

/// The receiver-index tag of a member: 10 bits of add count, 6 of slot.
const SLOT_BITS: u32 = 6;
const _: () = assert!(MAX_MEMBERS <= 1 << SLOT_BITS);

impl<'a, T: Tunnel> Slots<'a, T> {
    /// The table in `storage`, emptied, with its sessions' buffers cut
    /// from `bgp` ([`SESSION_BUFFERS`] bytes a slot); slots past
    /// [`MAX_MEMBERS`], or past what `bgp` has room for, are not used.
    pub fn new(storage: &'a mut [MemberSlot<'a, T>], bgp: &'a mut [u8]) -> Self {
        let len = storage
            .len()
            .min(MAX_MEMBERS)
            .min(bgp.len() / SESSION_BUFFERS);
        let slots = &mut storage[..len];
        for s in slots.iter_mut().filter(|s| s.0.is_some()) {
            s.0 = None;
        }
        let mut spare = core::array::from_fn(|_| None);
        for (room, bytes) in spare.iter_mut().zip(bgp.chunks_exact_mut(SESSION_BUFFERS)) {
            *room = Some(SessionBuffers::new(bytes));
        }
        Slots {
            slots,
            spare,
            adds: 0,
        }
    }

    /// A full-size table that is never freed, for tests.
    #[cfg(all(test, feature = "std"))]
    pub fn leak() -> Slots<'static, T>
    where
        T: 'static,
    {
        let storage = super::NodeMemory::leak(MAX_MEMBERS);
        Slots::new(storage.members, storage.bgp)
    }

    /// How many members the table can hold.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Checks that `config` may join (no key, AS number or overlay address
    /// taken) and returns the free slot with the receiver index it will use.
    fn vacancy(&mut self, config: &MemberConfig) -> Result<(usize, u32), MemberError> {
        for (_, s) in self.iter() {
            let c = &s.wg.config;
            if c.public_key == config.public_key {
                return Err(MemberError::DuplicateKey);
            }
            if c.asn == config.asn {
                return Err(MemberError::DuplicateAsn);
            }
            if c.overlay == config.overlay {
                return Err(MemberError::DuplicateOverlay);
            }
        }
        let slot = self
            .slots
            .iter()
            .position(|s| s.0.is_none())
            .ok_or(MemberError::Full)?;
        self.adds = (self.adds + 1) & 0x3ff;
        Ok((slot, (self.adds as u32) << SLOT_BITS | slot as u32))
    }

    /// Adds a member with every child's part started: its tunnel (made by
    /// `crypto`), its BGP session (passive unless this node dials it), its
    /// BFD supervision, STUN probe, punch and relay allowance.
    pub fn add<C: Crypto<Tunnel = T>>(
        &mut self,
        now: Instant,
        node: &NodeConfig,
        crypto: &C,
        config: MemberConfig,
    ) -> Result<usize, MemberError> {
        let config = node.member_defaults(config);
        let (slot, index) = self.vacancy(&config)?;
        let tunnel = crypto.tunnel(&config.public_key, index, config.keepalive);
        let wg = Member::new(config, tunnel, index);
        let passive = !super::dials(node.overlay, &wg);
        let session = session_config(node, &wg.config, passive);
        // Every usable slot has its buffers while it is empty.
        let buffers = self.spare[slot].take().ok_or(MemberError::Full)?;
        let bfd = Supervision::new(
            now,
            node.bfd_for(&wg.config),
            node.damping(),
            node.seed,
            slot,
        );
        self.slots[slot].0 = Some(Slot {
            wg,
            upkeep: Upkeep::new(now),
            bfd,
            bgp: BgpPeer::new(now, session, buffers),
            stun: Probe::new(now),
            punch: Punch::new(now),
            relay: Bucket::default(),
            deadline: None,
        });
        Ok(slot)
    }

    /// Empties `slot`; its session's buffers stay with the slot.
    pub fn remove(&mut self, slot: usize) -> Option<Slot<'a, T>> {
        let mut gone = self.slots.get_mut(slot)?.0.take()?;
        self.spare[slot] = Some(gone.bgp.session.take_buffers());
        Some(gone)
    }

    pub fn get(&self, slot: usize) -> Option<&Slot<'a, T>> {
        self.slots.get(slot)?.0.as_ref()
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Slot<'a, T>> {
        self.slots.get_mut(slot)?.0.as_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &Slot<'a, T>)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.0.as_ref().map(|m| (i, m)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Slot<'a, T>)> + '_ {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.0.as_mut().map(|m| (i, m)))
    }

    /// Slot `i` to change, and the others to read (the import filter asks
    /// who may originate a prefix while a session writes its routes).
    pub fn split(&mut self, i: usize) -> Option<(&mut Slot<'a, T>, Others<'_, 'a, T>)> {
        if i >= self.slots.len() {
            return None;
        }
        let (before, rest) = self.slots.split_at_mut(i);
        let (this, after) = rest.split_first_mut()?;
        Some((this.0.as_mut()?, Others { before, after }))
    }

    pub fn by_key(&self, key: &Key) -> Option<usize> {
        self.iter()
            .find(|(_, s)| s.wg.config.public_key == *key)
            .map(|(i, _)| i)
    }

    /// The member whose tunnel owns receiver index `index`.
    pub fn by_index(&self, index: u32) -> Option<usize> {
        let slot = (index & ((1 << SLOT_BITS) - 1)) as usize;
        (self.get(slot)?.wg.index() == index).then_some(slot)
    }

    pub fn by_overlay(&self, addr: IpAddr) -> Option<usize> {
        self.iter()
            .find(|(_, s)| s.wg.config.has_overlay(addr))
            .map(|(i, _)| i)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| s.0.is_none())
    }
}

/// Every slot but one, read-only.
pub(crate) struct Others<'s, 'a, T> {
    before: &'s [MemberSlot<'a, T>],
    after: &'s [MemberSlot<'a, T>],
}

impl<T> Clone for Others<'_, '_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Others<'_, '_, T> {}

impl<T> Others<'_, '_, T> {
    pub fn configs(&self) -> impl Iterator<Item = &MemberConfig> + '_ {
        self.before
            .iter()
            .chain(self.after.iter())
            .filter_map(|s| s.0.as_ref())
            .map(|s| &s.wg.config)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
