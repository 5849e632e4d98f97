//! The node's own IP stack on its overlay address: a smoltcp `Interface` on a
//! virtual IP device, with a pool of statically sized TCP sockets for the BGP
//! sessions. Packets for the overlay address go in with [`Overlay::deliver`];
//! what the stack sends comes out of [`Overlay::pop_outbound`] and is carried
//! through the tunnels by the node. smoltcp also answers pings to the address.
//!
//! All memory is in [`OverlayStorage`], which the caller owns (smoltcp sockets
//! borrow their buffers), so the overlay lives for the storage's lifetime.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use embassy_time::Instant;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};

use crate::wg::{INNER_MTU, MAX_MEMBERS};

/// TCP sockets: two per member (each side may connect) and listeners.
pub const SOCKETS: usize = 2 * MAX_MEMBERS + LISTENERS;
/// Sockets kept listening on the BGP port.
pub const LISTENERS: usize = 2;
pub const TCP_RX: usize = 4096;
pub const TCP_TX: usize = 4096;
pub const BGP_PORT: u16 = 179;
const RX_QUEUE: usize = 16;
/// How long a closing connection waits for the peer before it is dropped.
pub const CLOSE_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(5);
const TX_QUEUE: usize = 32;

pub type Packet = heapless::Vec<u8, INNER_MTU>;

/// Memory for the overlay, the caller's: smoltcp's socket slots and one
/// buffer that is cut into each socket's receive and transmit buffers.
/// [`OverlayStorage::sockets_for`] and [`OverlayStorage::buffer_len`] give
/// the sizes for a number of members; a smaller buffer gives fewer sockets.
#[derive(Debug)]
pub struct OverlayStorage<'a> {
    sockets: &'a mut [SocketStorage<'a>],
    buffers: &'a mut [u8],
}

impl<'a> OverlayStorage<'a> {
    /// Sockets for `members` members: two each (either side may connect)
    /// and the listeners.
    pub const fn sockets_for(members: usize) -> usize {
        2 * members + LISTENERS
    }

    /// Octets of socket buffers for `members` members.
    pub const fn buffer_len(members: usize) -> usize {
        Self::sockets_for(members) * (TCP_RX + TCP_TX)
    }

    /// Storage for `sockets.len()` sockets, as many as `buffers` has room
    /// for (and at most [`SOCKETS`]). The buffers' contents do not matter:
    /// a zeroed allocation that was never written costs no memory until a
    /// session uses it.
    pub fn new(sockets: &'a mut [SocketStorage<'a>], buffers: &'a mut [u8]) -> Self {
        OverlayStorage { sockets, buffers }
    }

    /// How many sockets the overlay gets from this storage.
    pub fn sockets(&self) -> usize {
        self.sockets
            .len()
            .min(self.buffers.len() / (TCP_RX + TCP_TX))
            .min(SOCKETS)
    }
}

/// The virtual device between smoltcp and the tunnels.
#[derive(Debug, Default)]
struct Wire {
    rx: heapless::Deque<Packet, RX_QUEUE>,
    tx: heapless::Deque<Packet, TX_QUEUE>,
    /// Packets smoltcp produced that did not fit the queue.
    tx_dropped: u64,
}

struct RxTok(Packet);
struct TxTok<'w>(&'w mut Wire);

impl smoltcp::phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = Packet::new();
        // len never exceeds the MTU we advertise; if it did, smoltcp would
        // write into a zero-length buffer and the packet is dropped below.
        let _ = p.resize(len.min(INNER_MTU), 0);
        let r = f(&mut p);
        if p.len() == len && self.0.tx.push_back(p).is_err() {
            self.0.tx_dropped += 1;
        }
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxTok(p), TxTok(self)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        (!self.tx.is_full()).then_some(TxTok(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = INNER_MTU;
        // Packets cross a network (the tunnels), so checksums are real.
        caps.checksum = ChecksumCapabilities::default();
        caps.checksum.ipv4 = Checksum::Both;
        caps
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    Listening,
    /// Handed to a user (a session's connection).
    Used,
    /// Closed by its user; returned to the pool once the close completes.
    Draining,
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayError {
    NoFreeSocket,
    Connect,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverlayStats {
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rejected_connections: u64,
    /// Sockets in the pool, free to use.
    pub free_sockets: usize,
}

pub fn to_smoltcp(now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(now.as_micros() as i64)
}

pub fn from_smoltcp(t: smoltcp::time::Instant) -> Instant {
    Instant::from_micros(t.total_micros().max(0) as u64)
}

/// The overlay IP stack.
pub struct Overlay<'a> {
    iface: Interface,
    sockets: SocketSet<'a>,
    handles: heapless::Vec<SocketHandle, SOCKETS>,
    /// What each socket is doing, in step with `handles`.
    slots: heapless::Vec<Slot, SOCKETS>,
    wire: Wire,
    next_port: u16,
    stats: OverlayStats,
}

impl core::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Overlay")
            .field("addrs", &self.iface.ip_addrs())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<'a> Overlay<'a> {
    pub fn new(
        storage: OverlayStorage<'a>,
        v4: Ipv4Addr,
        v6: Option<Ipv6Addr>,
        seed: u64,
        now: Instant,
    ) -> Overlay<'a> {
        let n = storage.sockets();
        let OverlayStorage { sockets, buffers } = storage;
        let mut wire = Wire::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut wire, to_smoltcp(now));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(v4), 32));
            if let Some(v6) = v6 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(v6), 128));
            }
        });
        // Every destination is "out the tunnels"; on an IP medium the gateway
        // address is never used.
        let _ = iface.routes_mut().add_default_ipv4_route(v4);
        if let Some(v6) = v6 {
            let _ = iface.routes_mut().add_default_ipv6_route(v6);
        }
        let mut set = SocketSet::new(&mut sockets[..n]);
        let mut handles = heapless::Vec::new();
        for buffer in buffers.chunks_exact_mut(TCP_RX + TCP_TX).take(n) {
            let (r, t) = buffer.split_at_mut(TCP_RX);
            let mut s = tcp::Socket::new(tcp::SocketBuffer::new(r), tcp::SocketBuffer::new(t));
            // BGP messages are small and latency matters more than segments.
            s.set_nagle_enabled(false);
            let _ = handles.push(set.add(s));
        }
        let slots = handles.iter().map(|_| Slot::Free).collect();
        let mut o = Overlay {
            iface,
            sockets: set,
            handles,
            slots,
            wire,
            next_port: 49152 + (seed % 8192) as u16,
            stats: OverlayStats::default(),
        };
        o.refill_listeners();
        o
    }

    pub fn stats(&self) -> OverlayStats {
        OverlayStats {
            tx_dropped: self.stats.tx_dropped + self.wire.tx_dropped,
            free_sockets: self.free_sockets(),
            ..self.stats
        }
    }

    pub fn has_addr(&self, addr: IpAddr) -> bool {
        self.iface.has_ip_addr(addr)
    }

    /// Queues an IP packet addressed to us.
    pub fn deliver(&mut self, packet: &[u8]) {
        let queued = Packet::from_slice(packet)
            .ok()
            .is_some_and(|p| self.wire.rx.push_back(p).is_ok());
        if !queued {
            self.stats.rx_dropped += 1;
        }
    }

    /// A packet the stack wants sent.
    pub fn pop_outbound(&mut self) -> Option<Packet> {
        self.wire.tx.pop_front()
    }

    /// Runs the stack. Returns true when socket state may have changed.
    pub fn poll(&mut self, now: Instant) -> bool {
        let r = self
            .iface
            .poll(to_smoltcp(now), &mut self.wire, &mut self.sockets);
        self.reclaim();
        r == smoltcp::iface::PollResult::SocketStateChanged
    }

    /// When the stack next needs [`Overlay::poll`].
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        if !self.wire.rx.is_empty() {
            return Some(now);
        }
        self.iface
            .poll_at(to_smoltcp(now), &self.sockets)
            .map(from_smoltcp)
    }

    fn refill_listeners(&mut self) {
        let listening = self.slots.iter().filter(|s| **s == Slot::Listening).count();
        for _ in listening..LISTENERS {
            let Some(i) = self.slots.iter().position(|s| *s == Slot::Free) else {
                return;
            };
            let s = self.sockets.get_mut::<tcp::Socket>(self.handles[i]);
            s.set_timeout(None);
            if s.listen(IpListenEndpoint::from(BGP_PORT)).is_ok() {
                self.slots[i] = Slot::Listening;
            } else {
                return;
            }
        }
    }

    /// Returns draining sockets whose close has completed to the pool.
    fn reclaim(&mut self) {
        for i in 0..self.handles.len() {
            if self.slots[i] == Slot::Draining {
                let s = self.sockets.get_mut::<tcp::Socket>(self.handles[i]);
                if !s.is_open() {
                    self.slots[i] = Slot::Free;
                }
            }
        }
        self.refill_listeners();
    }

    /// Opens a connection to `remote` on the BGP port.
    pub fn connect(&mut self, remote: IpAddr) -> Result<SocketHandle, OverlayError> {
        let i = self
            .slots
            .iter()
            .position(|s| *s == Slot::Free)
            .ok_or(OverlayError::NoFreeSocket)?;
        let port = self.next_port;
        // Ephemeral ports cycle through 49152..=65535 (RFC 6335).
        self.next_port = self.next_port.checked_add(1).unwrap_or(49152);
        let h = self.handles[i];
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        s.set_timeout(None);
        s.connect(
            self.iface.context(),
            IpEndpoint::new(remote.into(), BGP_PORT),
            port,
        )
        .map_err(|_| OverlayError::Connect)?;
        self.slots[i] = Slot::Used;
        Ok(h)
    }

    /// A listener that has accepted a connection: its handle and the peer's
    /// address. The caller must [`Overlay::adopt`] or [`Overlay::reject`] it.
    pub fn accepted(&mut self) -> Option<(SocketHandle, IpAddr)> {
        for i in 0..self.handles.len() {
            if self.slots[i] != Slot::Listening {
                continue;
            }
            let s = self.sockets.get::<tcp::Socket>(self.handles[i]);
            if s.state() == tcp::State::Established {
                let remote = s.remote_endpoint()?;
                return Some((self.handles[i], remote.addr.into()));
            }
        }
        None
    }

    pub fn adopt(&mut self, h: SocketHandle) {
        if let Some(i) = self.handles.iter().position(|x| *x == h) {
            self.slots[i] = Slot::Used;
        }
        self.refill_listeners();
    }

    pub fn reject(&mut self, h: SocketHandle) {
        self.stats.rejected_connections += 1;
        self.sockets.get_mut::<tcp::Socket>(h).abort();
        if let Some(i) = self.handles.iter().position(|x| *x == h) {
            self.slots[i] = Slot::Draining;
        }
        self.refill_listeners();
    }

    pub fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'a> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// Closes (FIN) a used socket; it returns to the pool when done. A peer
    /// that is gone never acknowledges the FIN, so the close gives up after
    /// [`CLOSE_TIMEOUT`].
    pub fn close(&mut self, h: SocketHandle) {
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        s.set_timeout(Some(CLOSE_TIMEOUT));
        s.close();
        if let Some(i) = self.handles.iter().position(|x| *x == h) {
            self.slots[i] = Slot::Draining;
        }
    }

    /// Aborts (RST) a used socket.
    pub fn abort(&mut self, h: SocketHandle) {
        self.sockets.get_mut::<tcp::Socket>(h).abort();
        if let Some(i) = self.handles.iter().position(|x| *x == h) {
            self.slots[i] = Slot::Draining;
        }
    }

    pub fn free_sockets(&self) -> usize {
        self.slots.iter().filter(|s| **s == Slot::Free).count()
    }
}
