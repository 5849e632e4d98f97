//! The node's output queues: datagrams for the underlay, IP packets for the
//! LAN, and events.
//!
//! Datagrams and packets are built in place: the crypto writes a datagram
//! straight into the next free slot of a ring ([`Ring::spare`]), and the driver
//! reads it from there ([`Ring::pop`]), so a forwarded packet is never copied
//! between buffers on its way through the node. A ring has one slot more
//! than it queues: the spare one is always free to write into, even when the
//! queue is full (what was written then is counted as dropped, not queued).
//! A slot's memory is first touched when it is first written, so a ring the
//! node never fills (the LAN's, on a router whose console is quiet) costs
//! no resident memory.

use core::net::SocketAddr;

use crate::wg::MAX_DATAGRAM;

use super::NodeEvent;

/// Datagrams queued for the underlay.
pub const TRANSMIT_QUEUE: usize = 64;
/// IP packets queued for the LAN.
pub const LAN_QUEUE: usize = 64;
/// Events queued for the driver.
pub const EVENT_QUEUE: usize = 64;

/// A fixed ring of `SLOTS - 1` queued buffers of `SIZE` bytes, plus a spare.
#[derive(Debug)]
pub(crate) struct Ring<const SIZE: usize, const SLOTS: usize, M> {
    /// Each slot grows to `SIZE` bytes the first time it is written.
    bufs: [heapless::Vec<u8, SIZE>; SLOTS],
    meta: [M; SLOTS],
    head: usize,
    len: usize,
}

/// Which of the driver's UDP sockets a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The mesh port: WireGuard, STUN.
    Mesh,
    /// The second port (a STUN answer to a port-change request).
    Alt,
    /// A game exit's mapping: the socket bound to this public port (the
    /// driver opens it on first use and closes it on
    /// [`NodeEvent::MappingClosed`]).
    Exit(u16),
}

/// What a queued datagram needs besides its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxMeta {
    pub to: SocketAddr,
    pub len: u16,
    pub from: Port,
}

impl TxMeta {
    /// `len` bytes for `to`, from the mesh port.
    pub fn to(to: SocketAddr, len: usize) -> TxMeta {
        TxMeta {
            to,
            len: len as u16,
            from: Port::Mesh,
        }
    }

    const NONE: TxMeta = TxMeta {
        to: SocketAddr::V4(core::net::SocketAddrV4::new(
            core::net::Ipv4Addr::UNSPECIFIED,
            0,
        )),
        len: 0,
        from: Port::Mesh,
    };
}

pub(crate) type TxRing = Ring<MAX_DATAGRAM, { TRANSMIT_QUEUE + 1 }, TxMeta>;
/// Slots hold a whole datagram: the crypto decrypts into them, and may
/// write up to the datagram's length before it knows the plaintext's.
pub(crate) type LanRing = Ring<MAX_DATAGRAM, { LAN_QUEUE + 1 }, u16>;

/// IP packets for the LAN's link-layer broadcast or multicast: relayed
/// discovery, one at most per datagram from a member.
pub(crate) type DiscoveryRing =
    Ring<{ crate::discovery::MAX_PAYLOAD + 28 }, { DISCOVERY_QUEUE + 1 }, u16>;
/// Relayed discovery packets queued for the LAN.
pub const DISCOVERY_QUEUE: usize = 16;

impl<const SIZE: usize, const SLOTS: usize, M: Copy> Ring<SIZE, SLOTS, M> {
    const fn with(empty: M) -> Self {
        Ring {
            bufs: [const { heapless::Vec::new() }; SLOTS],
            meta: [empty; SLOTS],
            head: 0,
            len: 0,
        }
    }

    fn tail(&self) -> usize {
        (self.head + self.len) % SLOTS
    }

    /// The slot the next [`Ring::commit`] queues: free to write into, never
    /// one the driver has yet to read.
    pub fn spare(&mut self) -> &mut [u8] {
        let i = self.tail();
        let buf = &mut self.bufs[i];
        if buf.len() < SIZE {
            // Cannot fail: SIZE is the capacity.
            let _ = buf.resize(SIZE, 0);
        }
        buf
    }

    /// The spare slot, to read back what was written into it.
    pub fn spare_ref(&self) -> &[u8] {
        &self.bufs[self.tail()]
    }

    /// Queues what was written into the spare slot. False when the queue is
    /// full (the driver did not drain in time): the bytes are dropped.
    #[must_use]
    pub fn commit(&mut self, meta: M) -> bool {
        if self.len == SLOTS - 1 {
            return false;
        }
        let i = self.tail();
        self.meta[i] = meta;
        self.len += 1;
        true
    }

    /// Copies `bytes` into the spare slot and queues it (for packets built
    /// elsewhere: control messages, ICMP errors, the overlay's segments).
    #[must_use]
    pub fn push(&mut self, bytes: &[u8], meta: M) -> bool {
        let Some(dst) = self.spare().get_mut(..bytes.len()) else {
            return false;
        };
        dst.copy_from_slice(bytes);
        self.commit(meta)
    }

    /// The oldest queued buffer. Its slot is reused only by later pushes,
    /// which the borrow on `self` keeps from happening while it is read.
    pub fn pop(&mut self) -> Option<(&[u8], M)> {
        if self.len == 0 {
            return None;
        }
        let i = self.head;
        self.head = (self.head + 1) % SLOTS;
        self.len -= 1;
        Some((&self.bufs[i], self.meta[i]))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl TxRing {
    pub const fn new() -> Self {
        Ring::with(TxMeta::NONE)
    }

    /// Queues the datagram written into the first `len` bytes of the spare slot.
    #[must_use]
    pub fn commit_to(&mut self, to: SocketAddr, len: usize) -> bool {
        self.commit(TxMeta::to(to, len))
    }
}

impl LanRing {
    pub const fn new() -> Self {
        Ring::with(0)
    }
}

impl DiscoveryRing {
    pub const fn new() -> Self {
        Ring::with(0)
    }
}

/// A datagram for the underlay, lent by [`super::Node::poll_transmit`].
#[derive(Debug, Clone, Copy)]
pub struct Transmit<'a> {
    pub to: SocketAddr,
    pub bytes: &'a [u8],
    /// The socket it leaves from.
    pub from: Port,
}

/// Events for the driver.
pub(crate) type Events = heapless::Deque<NodeEvent, EVENT_QUEUE>;

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};

    fn to(n: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), 51820)
    }

    #[test]
    fn datagrams_come_out_in_order_and_a_full_ring_drops_the_newest() {
        let mut r = Ring::<8, 3, TxMeta>::with(TxMeta::NONE);
        for n in 1..=3u8 {
            r.spare()[0] = n;
            let queued = r.commit(TxMeta {
                to: to(n),
                len: 1,
                from: Port::Mesh,
            });
            assert_eq!(queued, n <= 2, "two fit, the third is dropped");
        }
        let (b, m) = r.pop().unwrap();
        assert_eq!((b[0], m.to), (1, to(1)));
        let (b, m) = r.pop().unwrap();
        assert_eq!((b[0], m.to), (2, to(2)));
        assert!(r.pop().is_none());
    }

    #[test]
    fn the_spare_slot_is_never_one_still_queued() {
        let mut r = Ring::<4, 3, u16>::with(0);
        for round in 0..10u8 {
            r.spare()[0] = round;
            assert!(r.commit(1));
            r.spare()[0] = 0xee; // scribbling on the spare touches nothing queued
            assert!(r.push(&[round, 1], 2));
            assert_eq!(r.pop().map(|(b, _)| b[0]), Some(round));
            assert_eq!(r.pop().map(|(b, m)| (b[0], b[1], m)), Some((round, 1, 2)));
        }
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_push_longer_than_a_slot_is_refused() {
        let mut r = Ring::<4, 3, u16>::with(0);
        assert!(!r.push(&[0; 5], 5));
        assert_eq!(r.len(), 0);
    }
}
