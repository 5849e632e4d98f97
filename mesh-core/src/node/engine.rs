//! The BGP engine: one eBGP session per member ([`crate::bgp::session`]),
//! carried over the node's own TCP/IP stack ([`crate::overlay`]) through
//! that member's tunnel only, feeding one [`Rib`].
//!
//! The root runs it in rounds until nothing moves ([`Engine::round`]): the
//! stack runs, listeners hand over accepted connections, and each member's
//! session ([`BgpPeer`]) trades bytes with its sockets, acts on its
//! transport requests, and exports what changed in the Loc-RIB. Between
//! rounds the root drains [`Engine::poll_transmit`] (segments the stack
//! sends, which it carries through the tunnels) and [`Engine::poll_event`]
//! (sessions up and down). After the last round, [`Engine::sync_routes`]
//! reports what changed in the Loc-RIB.
//!
//! Import policy lives here too ([`Membership`]): a route enters the RIB
//! only if its origin AS is a member allowed to originate the prefix. A new
//! BGP attribute is decoded in [`crate::bgp::update`] and stored in
//! [`crate::bgp::attr`]; the decision process that weighs it is in
//! [`crate::rib`], and what a member may send in [`Membership`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use embassy_time::{Duration, Instant};
use smoltcp::iface::SocketHandle;

use crate::bgp::attr::PathAttributes;
use crate::bgp::session::{ConnId, Session, SessionBuffers, SessionConfig, SessionEvent};
use crate::bgp::speaker::{export, ExportPolicy, ImportFilter, ImportStats, RibImport};
use crate::overlay::{Overlay, OverlayStorage, Packet};
use crate::prefix::{Family, Prefix};
use crate::rib::{PeerId, PeerInfo, Rib, Source};
use crate::wg::{MemberConfig, Tunnel, MAX_MEMBERS};

use super::slots::{Others, Slots};
use super::{NodeConfig, NodeEvent, MAX_LAN_PREFIXES};

pub type NodeRib = Rib<512, 1024>;

/// Rounds of one pump at most (each moves whatever is ready).
const MAX_ROUNDS: usize = 32;
/// The first restart delay of a session after an error; it doubles up to
/// [`MAX_IDLE_HOLD`].
const IDLE_HOLD: Duration = Duration::from_millis(250);
const MAX_IDLE_HOLD: Duration = Duration::from_secs(10);

/// A BGP connection in flight on an overlay socket.
#[derive(Debug, Clone, Copy)]
struct Conn {
    socket: SocketHandle,
    /// `handle_connected`/`handle_accepted` was told.
    reported: bool,
}

/// The BGP side of one member.
pub(crate) struct BgpPeer<'b> {
    pub session: Session<'b>,
    conns: [Option<Conn>; 2],
    end_of_rib_sent: bool,
    pub import: ImportStats,
    /// `import.filtered` when we last asked the member for its routes
    /// again: a member that had routes refused since is asked when a new
    /// member could make them acceptable.
    pub filtered_at_refresh: u64,
}

impl core::fmt::Debug for BgpPeer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BgpPeer")
            .field("state", &self.session.state())
            .finish_non_exhaustive()
    }
}

impl<'b> BgpPeer<'b> {
    /// A started session, in `buffers`.
    pub fn new(now: Instant, config: SessionConfig, buffers: SessionBuffers<'b>) -> BgpPeer<'b> {
        let mut session = Session::new(config, buffers);
        session.start(now);
        BgpPeer {
            session,
            conns: [None, None],
            end_of_rib_sent: false,
            import: ImportStats::default(),
            filtered_at_refresh: 0,
        }
    }
}

#[cfg(all(test, feature = "std"))]
impl BgpPeer<'_> {
    /// Test double for a connection whose end we lost without the member
    /// hearing of it (our RST lost on the way): the session forgets its
    /// outgoing connection, whose socket lives on unowned (so the member's
    /// end stays open and answered), and backs off to dial again.
    pub(crate) fn lose_outgoing(&mut self, now: Instant) {
        self.conns[ConnId::Outgoing as usize] = None;
        self.session.handle_transport_closed(now, ConnId::Outgoing);
    }
}

/// What a session looks like from the node: its settings and the member's.
/// `passive`: the session waits for the member to connect.
pub(crate) fn session_config(node: &NodeConfig, m: &MemberConfig, passive: bool) -> SessionConfig {
    let mut s = SessionConfig::new(node.asn, node.overlay, m.asn);
    s.passive = passive;
    s.hold_time = m.hold_time.unwrap_or(node.hold_time);
    s.connect_retry = node.connect_retry;
    s.idle_hold = IDLE_HOLD;
    s.max_idle_hold = MAX_IDLE_HOLD;
    // A member announces its LAN and overlay addresses; many more is a
    // mistake or an attack.
    s.max_prefixes = Some(4 * MAX_LAN_PREFIXES as u32 * MAX_MEMBERS as u32);
    s.ipv6 = node.overlay_v6.is_some();
    s
}

/// The member as the RIB's decision process sees it.
pub(crate) fn peer_info(m: &MemberConfig, latency: Option<u32>) -> PeerInfo {
    PeerInfo {
        asn: m.asn,
        router_id: m.overlay,
        address: IpAddr::V4(m.overlay),
        ebgp: true,
        latency,
    }
}

/// Import policy: the origin AS must be a member allowed to originate the
/// prefix. `this` is the sending member (most routes are its own). A
/// default route is a game exit's: only from a member configured as an exit,
/// tagged with the exit community by that member.
struct Membership<'m, 'a, T> {
    this: &'m MemberConfig,
    others: Others<'m, 'a, T>,
    own_asn: u32,
    refused: &'m mut u64,
}

impl<T> ImportFilter for Membership<'_, '_, T> {
    fn accept(&mut self, _peer: PeerId, prefix: &Prefix, attrs: &PathAttributes) -> bool {
        let ok = attrs
            .as_path
            .origin_as()
            .filter(|&asn| asn != self.own_asn)
            .and_then(|asn| {
                core::iter::once(self.this)
                    .chain(self.others.configs())
                    .find(|c| c.asn == asn)
            })
            .is_some_and(|m| {
                if prefix.is_default() {
                    m.exit && super::exit::tagged_as_exit(attrs, m.asn)
                } else {
                    m.may_originate(prefix)
                }
            });
        if !ok {
            *self.refused += 1;
        }
        ok
    }
}

/// Why the engine wants to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// A session timer (connect retry, hold, keepalive, idle hold) of this member.
    Session(u8),
    /// The overlay stack: a retransmission, a delayed ACK, a closing socket.
    Overlay,
}

/// The engine's node-wide state.
pub(crate) struct Engine<'a> {
    overlay: Overlay<'a>,
    /// The RIB, in the caller's storage ([`super::NodeStorage`]).
    pub rib: &'a mut NodeRib,
    /// Non-local Loc-RIB prefixes with their next hop, as last reported.
    installed: heapless::Vec<(Prefix, u8), 512>,
    rib_version: u64,
    /// The overlay's next deadline, as of the end of the last pump (nothing
    /// else changes it).
    overlay_at: Option<Instant>,
    /// Something happened that the sessions, sockets or RIB must look at.
    wake: bool,
    events: heapless::Deque<NodeEvent, { 2 * MAX_MEMBERS }>,
    pub rounds: u64,
}

impl core::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("overlay", &self.overlay)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

/// What a round needs of the node's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local {
    pub asn: u32,
    pub overlay: Ipv4Addr,
    pub overlay_v6: Option<Ipv6Addr>,
}

impl<'a> Engine<'a> {
    /// The engine with this home's own prefixes originated.
    pub fn new(
        storage: OverlayStorage<'a>,
        rib: &'a mut NodeRib,
        config: &NodeConfig,
        now: Instant,
    ) -> Self {
        let overlay = Overlay::new(storage, config.overlay, config.overlay_v6, config.seed, now);
        rib.reset(config.asn, config.max_paths);
        let mut e = Engine {
            overlay,
            rib,
            installed: heapless::Vec::new(),
            rib_version: 0,
            overlay_at: None,
            wake: false,
            events: heapless::Deque::new(),
            rounds: 0,
        };
        e.originate(Prefix::host(IpAddr::V4(config.overlay)));
        if let Some(v6) = config.overlay_v6 {
            e.originate(Prefix::host(IpAddr::V6(v6)));
        }
        for p in &config.lan_prefixes {
            e.originate(*p);
        }
        e
    }

    // ---- control ----

    /// Announces `prefix` as this home's.
    pub fn originate(&mut self, prefix: Prefix) {
        if self
            .rib
            .update(Source::Local, prefix, &PathAttributes::default())
            .is_err()
        {
            log::error!("node: cannot originate {prefix}: RIB full");
        }
        self.wake = true;
    }

    /// Announces `prefix` with these attributes (a game exit's default
    /// route with its communities); again with new ones replaces them.
    pub fn originate_with(&mut self, prefix: Prefix, attrs: &PathAttributes) {
        if self.rib.update(Source::Local, prefix, attrs).is_err() {
            log::error!("node: cannot originate {prefix}: RIB full");
        }
        self.wake = true;
    }

    /// Stops announcing `prefix`.
    pub fn withdraw(&mut self, prefix: Prefix) {
        self.rib.withdraw(Source::Local, prefix);
        self.wake = true;
    }

    /// A new member's session.
    pub fn add_peer(&mut self, slot: u8, m: &MemberConfig) {
        self.rib.set_peer(slot, peer_info(m, None));
    }

    /// A member is gone: its connections are dropped and its routes go.
    pub fn remove_peer(&mut self, slot: u8, peer: &mut BgpPeer) {
        for c in peer.conns.iter_mut().filter_map(Option::take) {
            self.overlay.abort(c.socket);
        }
        self.rib.remove_peer(slot);
        self.wake = true;
    }

    /// Something the engine must look at happened (a session was told
    /// something, the RIB changed).
    pub fn wake(&mut self) {
        self.wake = true;
    }

    pub fn overlay_stats(&self) -> crate::overlay::OverlayStats {
        self.overlay.stats()
    }

    // ---- inputs ----

    /// An IP packet for the node's own stack (BGP).
    pub fn handle_packet(&mut self, packet: &[u8]) {
        self.overlay.deliver(packet);
        self.wake = true;
    }

    /// Session timers that are due; the stack's, if due, wake the pump.
    pub fn handle_timeout<T: Tunnel>(&mut self, now: Instant, slots: &mut Slots<T>) {
        for (_, s) in slots.iter_mut() {
            if s.bgp.session.poll_timeout().is_some_and(|t| t <= now) {
                s.bgp.session.handle_timeout(now);
                self.wake = true;
            }
        }
        if self.overlay_at.is_some_and(|t| t <= now) {
            self.wake = true;
        }
    }

    // ---- the pump ----

    /// Whether [`Engine::round`] has work.
    pub fn wants_pump(&self) -> bool {
        self.wake
    }

    /// Starts a pump; the root calls [`Engine::round`] until it returns
    /// false (at most [`MAX_ROUNDS`]), draining outputs in between, then
    /// [`Engine::sync_routes`].
    pub fn begin_pump(&mut self) -> usize {
        self.wake = false;
        MAX_ROUNDS
    }

    /// One round: the stack, accepted connections, every session. Returns
    /// whether anything happened.
    pub fn round<T: Tunnel>(
        &mut self,
        now: Instant,
        slots: &mut Slots<T>,
        local: Local,
        hijacks_refused: &mut u64,
    ) -> bool {
        self.rounds += 1;
        let mut busy = self.overlay.poll(now);
        busy |= self.accept_connections(now, slots);
        for slot in 0..MAX_MEMBERS {
            busy |= self.drive_peer(now, slots, slot, local, hijacks_refused);
        }
        busy
    }

    /// Ends a pump: the stack's next deadline is known now.
    pub fn end_pump(&mut self, now: Instant) {
        self.overlay_at = self.overlay.poll_at(now);
    }

    fn accept_connections<T: Tunnel>(&mut self, now: Instant, slots: &mut Slots<T>) -> bool {
        let mut busy = false;
        while let Some((h, remote)) = self.overlay.accepted() {
            busy = true;
            let slot = slots.by_overlay(remote).and_then(|s| slots.get_mut(s));
            let mut stale = None;
            let accepted = slot.and_then(|s| {
                let p = &mut s.bgp;
                if let Some(old) = p.conns[ConnId::Incoming as usize] {
                    // The member dials again: the connection it opened
                    // before is dead on its side.
                    if !p.session.replace_incoming() {
                        return None;
                    }
                    // (A member that keeps doing it is counted, and logged
                    // less and less: the 1st, 2nd, 4th, 8th time...)
                    let times = p.session.stats().replaced_connections;
                    if times.is_power_of_two() {
                        log::info!(
                            "bgp: {} connected again while its connection was opening; \
                             the old one is dropped ({times} so far)",
                            s.wg.config.name
                        );
                    }
                    p.conns[ConnId::Incoming as usize] = None;
                    stale = Some(old.socket);
                }
                p.session.handle_accepted(now).then_some(p)
            });
            if let Some(old) = stale {
                self.overlay.abort(old);
            }
            log::debug!(
                "bgp: accepted a connection from {remote}: {}",
                accepted.is_some()
            );
            match accepted {
                Some(p) => {
                    p.conns[ConnId::Incoming as usize] = Some(Conn {
                        socket: h,
                        reported: true,
                    });
                    self.overlay.adopt(h);
                }
                None => self.overlay.reject(h),
            }
        }
        busy
    }

    /// Moves bytes between one member's session and its sockets, and acts on
    /// the session's outputs. Returns whether anything happened.
    fn drive_peer<T: Tunnel>(
        &mut self,
        now: Instant,
        slots: &mut Slots<T>,
        slot: usize,
        local: Local,
        hijacks_refused: &mut u64,
    ) -> bool {
        let Some((this, others)) = slots.split(slot) else {
            return false;
        };
        let member = &this.wg.config;
        let peer = &mut this.bgp;
        let mut busy = false;
        // Transport progress and received bytes.
        for id in [ConnId::Outgoing, ConnId::Incoming] {
            let Some(mut conn) = peer.conns[id as usize] else {
                continue;
            };
            let sock = self.overlay.socket(conn.socket);
            use smoltcp::socket::tcp::State as S;
            let state = sock.state();
            if !conn.reported {
                match state {
                    S::Established => {
                        log::debug!("bgp: peer {slot}: connected");
                        conn.reported = true;
                        peer.conns[id as usize] = Some(conn);
                        peer.session.handle_connected(now);
                        busy = true;
                    }
                    S::Closed | S::TimeWait | S::Closing | S::CloseWait | S::LastAck => {
                        peer.conns[id as usize] = None;
                        self.overlay.abort(conn.socket);
                        peer.session.handle_transport_closed(now, id);
                        busy = true;
                    }
                    _ => {}
                }
                continue;
            }
            let mut sink = RibImport {
                rib: self.rib,
                peer: slot as u8,
                filter: Membership {
                    this: member,
                    others,
                    own_asn: local.asn,
                    refused: &mut *hijacks_refused,
                },
                stats: &mut peer.import,
            };
            let sock = self.overlay.socket(conn.socket);
            while sock.can_recv() {
                let session = &mut peer.session;
                let r = sock.recv(|buf| {
                    session.handle_data(now, id, buf, &mut sink);
                    (buf.len(), buf.len())
                });
                match r {
                    Ok(n) if n > 0 => busy = true,
                    _ => break,
                }
            }
            if !sock.may_recv()
                && !matches!(sock.state(), S::Established | S::FinWait1 | S::FinWait2)
            {
                // The peer closed (or reset) the connection.
                peer.conns[id as usize] = None;
                self.overlay.abort(conn.socket);
                peer.session.handle_transport_closed(now, id);
                busy = true;
            }
        }
        // Transport requests, and what changed.
        let member_id = slot as u8;
        while let Some(ev) = peer.session.poll_event() {
            busy = true;
            match ev {
                SessionEvent::Connect => {
                    let to = IpAddr::V4(member.overlay);
                    log::debug!("bgp: peer {slot}: connect to {to}");
                    match self.overlay.connect(to) {
                        Ok(h) => {
                            peer.conns[ConnId::Outgoing as usize] = Some(Conn {
                                socket: h,
                                reported: false,
                            });
                        }
                        Err(_) => peer.session.handle_transport_closed(now, ConnId::Outgoing),
                    }
                }
                SessionEvent::Close(id) => {
                    log::debug!("bgp: peer {slot}: close {id:?}");
                    if let Some(conn) = peer.conns[id as usize].take() {
                        // What is queued (a NOTIFICATION) goes before the FIN.
                        let sock = self.overlay.socket(conn.socket);
                        let session = &mut peer.session;
                        let _ = sock.send(|buf| {
                            let n = session.poll_transmit(id, buf);
                            (n, n)
                        });
                        self.overlay.close(conn.socket);
                    }
                    peer.session.handle_transport_closed(now, id);
                }
                SessionEvent::Established => {
                    self.rib.peer_up(member_id);
                    peer.end_of_rib_sent = false;
                    self.emit(NodeEvent::SessionUp { member: member_id });
                }
                SessionEvent::Down(reason) => {
                    self.rib.peer_down(member_id);
                    self.emit(NodeEvent::SessionDown {
                        member: member_id,
                        reason,
                    });
                }
                SessionEvent::RouteRefresh(_) => self.rib.refresh(member_id),
                SessionEvent::EndOfRib(_) => {}
            }
        }
        // Export what changed.
        if peer.session.is_established() {
            let policy = ExportPolicy {
                local_asn: local.asn,
                next_hop_v4: Some(local.overlay),
                next_hop_v6: local.overlay_v6,
            };
            let progress = export(&mut peer.session, self.rib, member_id, &policy);
            // Export blocked on a full send buffer resumes on the next input
            // (the peer's ACK): every input runs this again.
            busy |= progress.updates > 0;
            if progress.done && !peer.end_of_rib_sent {
                let _ = peer.session.send_end_of_rib(Family::Ipv4);
                if local.overlay_v6.is_some() {
                    let _ = peer.session.send_end_of_rib(Family::Ipv6);
                }
                peer.end_of_rib_sent = true;
            }
        }
        // Bytes out, as far as each socket takes them.
        for id in [ConnId::Outgoing, ConnId::Incoming] {
            let Some(conn) = peer.conns[id as usize] else {
                continue;
            };
            if !conn.reported || peer.session.queued_tx(id) == 0 {
                continue;
            }
            let sock = self.overlay.socket(conn.socket);
            let session = &mut peer.session;
            let sent = sock.send(|buf| {
                let n = session.poll_transmit(id, buf);
                (n, n)
            });
            busy |= sent.is_ok_and(|n| n > 0);
        }
        busy
    }

    fn emit(&mut self, e: NodeEvent) {
        if self.events.push_back(e).is_err() {
            log::warn!("bgp: engine event queue full, dropping {e:?}");
        }
    }

    // ---- outputs ----

    /// A segment the stack sends, for the root to carry through a tunnel.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        self.overlay.pop_outbound()
    }

    /// Sessions up and down.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// Loc-RIB changes of other homes' prefixes since the last call, as
    /// events, in prefix order.
    pub fn sync_routes(&mut self, mut emit: impl FnMut(NodeEvent)) {
        let version = self.rib.stats.best_changes;
        if version == self.rib_version {
            return;
        }
        self.rib_version = version;
        let mut now_installed: heapless::Vec<(Prefix, u8), 512> = heapless::Vec::new();
        // Default routes are game exits': they never enter the kernel's
        // tables (the exit path is `exit.rs`'s).
        for e in self.rib.loc_rib().filter(|e| !e.prefix.is_default()) {
            if let Some(Source::Peer(p)) = e.best().map(|b| b.source) {
                let _ = now_installed.push((e.prefix, p));
            }
        }
        // Both lists are in prefix order (the RIB is sorted): merge.
        let (mut i, mut j) = (0, 0);
        let old = core::mem::take(&mut self.installed);
        while i < old.len() || j < now_installed.len() {
            let ev = match (old.get(i), now_installed.get(j)) {
                (Some(&(op, ov)), Some(&(np, nv))) if op == np => {
                    i += 1;
                    j += 1;
                    (ov != nv).then_some(NodeEvent::PathChanged {
                        prefix: np,
                        from: ov,
                        to: nv,
                    })
                }
                (Some(&(op, _)), Some(&(np, _))) if op < np => {
                    i += 1;
                    Some(NodeEvent::RouteRemoved { prefix: op })
                }
                (Some(&(op, _)), None) => {
                    i += 1;
                    Some(NodeEvent::RouteRemoved { prefix: op })
                }
                (_, Some(&(np, nv))) => {
                    j += 1;
                    Some(NodeEvent::RouteAdded {
                        prefix: np,
                        via: nv,
                    })
                }
                (None, None) => None,
            };
            if let Some(ev) = ev {
                emit(ev);
            }
        }
        self.installed = now_installed;
    }

    /// The next instant the stack is due (each member's session has its
    /// own timers, [`Session::poll_timeout`]).
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.overlay_at.map(|t| (t, Timer::Overlay))
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
