//! The BGP session with one peer: RFC 4271 §8's finite state machine, with
//! connection collision detection (§6.8) inside it.
//!
//! Sans-IO: the session owns no socket. It holds up to two transport
//! connections to the same peer — the one we opened ([`ConnId::Outgoing`]) and
//! the one the peer opened ([`ConnId::Incoming`]) — because both may exist at
//! once until §6.8 picks one. The driver:
//!
//! - tells it what the transport did: [`Session::handle_connected`] (our connect
//!   succeeded, RFC event 16), [`Session::handle_accepted`] (event 17),
//!   [`Session::handle_transport_closed`] (event 18), and bytes received with
//!   [`Session::handle_data`];
//! - calls [`Session::handle_timeout`] at [`Session::poll_timeout`];
//! - after every input, drains [`Session::poll_event`] (the transport
//!   requests Connect and Close, and what changed: Established, Down, route
//!   refresh, End-of-RIB) and [`Session::poll_transmit`] (the bytes queued on
//!   each connection, as far as the transport takes them).
//!
//! Routes do not pass through events: UPDATEs are decoded (with RFC 7606
//! applied) and handed to an [`UpdateSink`] — the RIB — while the message is
//! still borrowed from the receive buffer.

use core::net::Ipv4Addr;

use embassy_time::{Duration, Instant};

use super::error::{DownReason, MessageError};
use super::notification::{shutdown_data, CeaseSubcode, ErrorCode};
use super::open::{PeerCapabilities, SAFI_UNICAST};
use super::route_refresh::RouteRefresh;
use super::update::{emit_end_of_rib, DecodeContext, EmitError, Update, UpdateRepr};
use super::wire::{frame, MAX_MESSAGE_LEN};
use crate::prefix::Family;

mod buffers;
mod fsm;

use super::wire::HeaderError;
use buffers::Buf;
pub use buffers::{SessionBuffers, SESSION_BUFFERS};
use fsm::{ConnState, Core, Restart, Timer, TIMERS};

/// Bytes of outgoing data a connection may queue before [`Session::send_update`]
/// refuses more (the driver moves them to the transport as it can).
pub const TX_BUF: usize = 8192;

/// Events (and transport requests) held until drained.
const EVENT_QUEUE: usize = 12;

/// The hold time used between connecting and receiving the peer's OPEN
/// (RFC 4271 §8.2.2 suggests 4 minutes).
const OPEN_HOLD: Duration = Duration::from_secs(240);

/// The RFC 4271 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// Which of the two possible transport connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnId {
    /// We initiated it.
    Outgoing = 0,
    /// The peer initiated it.
    Incoming = 1,
}

impl ConnId {
    fn other(self) -> ConnId {
        match self {
            ConnId::Outgoing => ConnId::Incoming,
            ConnId::Incoming => ConnId::Outgoing,
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// What the driver must do with the transport, and what changed, for the
/// RIB, logs and status; in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// Open a transport connection to the peer (answer with `handle_connected`
    /// or `handle_transport_closed(ConnId::Outgoing)`).
    Connect,
    /// Send what is queued on this connection ([`Session::poll_transmit`]),
    /// then close it and report `handle_transport_closed`.
    Close(ConnId),
    /// The session reached Established: send the full table, then End-of-RIB.
    Established,
    /// The session left Established: drop every route learned from the peer.
    Down(DownReason),
    /// The peer asked for our routes again (RFC 2918).
    RouteRefresh(Family),
    /// The peer finished its initial table for a family (RFC 4724 End-of-RIB).
    EndOfRib(Family),
}

/// Why the RIB could not take a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RibFull;

/// Where a session's UPDATEs go.
pub trait UpdateSink {
    /// Applies one UPDATE (RFC 7606 already applied: withdrawals include any
    /// treat-as-withdraw routes). Returns how many prefixes the peer now has
    /// in the Adj-RIB-In, for the max-prefix check.
    fn apply_update(&mut self, update: &Update<'_>) -> Result<usize, RibFull>;
}

/// Configuration of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_asn: u32,
    pub router_id: Ipv4Addr,
    pub peer_asn: u32,
    /// Proposed hold time in seconds: 0, or at least 3 (RFC 4271 §4.2).
    pub hold_time: u16,
    /// The smallest hold time we accept from the peer (other than 0).
    pub min_hold_time: u16,
    pub connect_retry: Duration,
    /// First delay before restarting after an error; doubles on each further
    /// error up to `max_idle_hold`, and resets after a stable session.
    pub idle_hold: Duration,
    pub max_idle_hold: Duration,
    /// Do not initiate connections, only accept them.
    pub passive: bool,
    /// Tear the session down when the peer sends more prefixes than this.
    pub max_prefixes: Option<u32>,
    /// How long to stay down after a max-prefix teardown.
    pub max_prefix_restart: Duration,
    pub ipv4: bool,
    pub ipv6: bool,
}

impl SessionConfig {
    pub fn new(local_asn: u32, router_id: Ipv4Addr, peer_asn: u32) -> SessionConfig {
        SessionConfig {
            local_asn,
            router_id,
            peer_asn,
            hold_time: 90,
            min_hold_time: 3,
            connect_retry: Duration::from_secs(5),
            idle_hold: Duration::from_millis(500),
            max_idle_hold: Duration::from_secs(60),
            passive: false,
            max_prefixes: None,
            max_prefix_restart: Duration::from_secs(60),
            ipv4: true,
            ipv6: true,
        }
    }
}

/// What both sides agreed on, known from the peer's OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_router_id: Ipv4Addr,
    /// Zero means no keepalives and no hold timer.
    pub hold_time: u16,
    pub four_octet_as: bool,
    pub ipv4: bool,
    pub ipv6: bool,
    pub peer_capabilities: PeerCapabilities,
}

impl Negotiated {
    pub fn keepalive_interval(&self) -> Option<Duration> {
        (self.hold_time > 0).then(|| Duration::from_millis(self.hold_time as u64 * 1000 / 3))
    }
}

/// Counters, for `meshd status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    pub messages_in: u64,
    pub messages_out: u64,
    pub updates_in: u64,
    pub updates_out: u64,
    pub notifications_in: u64,
    pub notifications_out: u64,
    /// UPDATEs handled as treat-as-withdraw (RFC 7606).
    pub treat_as_withdraw: u64,
    /// Attributes dropped by attribute-discard (RFC 7606).
    pub attributes_discarded: u64,
    /// Times the session left Established.
    pub flaps: u64,
    pub collisions: u64,
    /// Incoming connections still opening that the peer replaced with a new
    /// one ([`Session::replace_incoming`]).
    pub replaced_connections: u64,
}

/// A BGP session with one peer. See the module docs for the driver contract.
/// Its message buffers are the caller's ([`SessionBuffers`]).
#[derive(Debug)]
pub struct Session<'b> {
    core: Core<'b>,
    rx: [Buf<'b>; 2],
}

impl<'b> Session<'b> {
    pub fn new(config: SessionConfig, buffers: SessionBuffers<'b>) -> Session<'b> {
        let SessionBuffers { mut tx, mut rx } = buffers;
        // Buffers a previous session handed back may still say what it had
        // queued: nothing of it is this session's.
        tx.iter_mut().chain(rx.iter_mut()).for_each(Buf::clear);
        Session {
            core: Core {
                config,
                started: false,
                conns: [ConnState::Closed; 2],
                tx,
                negotiated: [None, None],
                timers: [None; TIMERS],
                events: heapless::Deque::new(),
                stats: SessionStats::default(),
                last_down: None,
                backoff: config.idle_hold,
                established_at: None,
                up: false,
                redial: false,
            },
            rx,
        }
    }

    /// The buffers back, for another session; this one is left without any
    /// (it can queue nothing).
    pub fn take_buffers(&mut self) -> SessionBuffers<'b> {
        SessionBuffers {
            tx: core::mem::take(&mut self.core.tx),
            rx: core::mem::take(&mut self.rx),
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &SessionConfig {
        &self.core.config
    }

    /// The RFC state of the session: that of its most advanced connection.
    pub fn state(&self) -> State {
        let c = &self.core;
        let best = c.conns.iter().map(|s| match s {
            ConnState::Established => State::Established,
            ConnState::OpenConfirm => State::OpenConfirm,
            ConnState::OpenSent => State::OpenSent,
            ConnState::Connecting => State::Connect,
            ConnState::Closed | ConnState::Closing => State::Idle,
        });
        match best.max().unwrap_or(State::Idle) {
            State::Idle if c.started && c.timers[Timer::IdleHold.index()].is_none() => {
                State::Active
            }
            s => s,
        }
    }

    pub fn is_established(&self) -> bool {
        self.core.established_conn().is_some()
    }

    /// What was negotiated on the established connection.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        let c = self.core.established_conn()?;
        self.core.negotiated[c.index()].as_ref()
    }

    pub fn established_since(&self) -> Option<Instant> {
        self.core.established_at
    }

    pub fn stats(&self) -> &SessionStats {
        &self.core.stats
    }

    pub fn last_down(&self) -> Option<DownReason> {
        self.core.last_down
    }

    /// Context for decoding this peer's UPDATEs.
    pub fn decode_context(&self) -> DecodeContext {
        self.core
            .decode_context(self.core.established_conn().unwrap_or(ConnId::Outgoing))
    }

    // ---- control ----

    /// ManualStart / AutomaticStart (RFC 4271 events 1 and 3).
    pub fn start(&mut self, now: Instant) {
        if self.core.started {
            return;
        }
        self.core.started = true;
        self.core.try_connect(now);
    }

    /// ManualStop (event 2): Cease with an RFC 9003 shutdown communication,
    /// then stay idle until [`Session::start`].
    pub fn stop(&mut self, now: Instant, communication: &str) {
        let mut data = [0u8; 256];
        let data = shutdown_data(communication, &mut data);
        let err = ErrorCode::Cease(CeaseSubcode::AdministrativeShutdown);
        self.core
            .close_all(now, Some((err, data)), DownReason::Stopped);
        self.core.started = false;
        self.core.timers = [None; TIMERS];
    }

    /// BFD declared the path to the peer dead (RFC 5882 §4.3): the session is
    /// torn down at once with Cease/BFD Down (RFC 9384) and stays stopped
    /// until [`Session::start`] (the caller waits for BFD to be Up again).
    pub fn bfd_down(&mut self, now: Instant) {
        let err = ErrorCode::Cease(CeaseSubcode::BfdDown);
        self.core
            .close_all(now, Some((err, &[])), DownReason::SentNotification(err));
        self.core.started = false;
        self.core.timers = [None; TIMERS];
    }

    /// The transport to the peer just became usable again (its tunnel
    /// completed a new handshake, e.g. after it restarted): a pending or
    /// backed-off attempt to connect is replaced by a fresh one now.
    pub fn connect_now(&mut self, now: Instant) {
        let c = &mut self.core;
        if !c.started || c.config.passive || c.established_conn().is_some() {
            return;
        }
        if c.conns
            .iter()
            .any(|s| matches!(s, ConnState::OpenSent | ConnState::OpenConfirm))
        {
            return; // already talking
        }
        c.timers[Timer::IdleHold.index()] = None;
        c.timers[Timer::ConnectRetry.index()] = None;
        match c.conns[0] {
            ConnState::Connecting | ConnState::Closing => {
                // Dial again as soon as the driver reports the old attempt gone.
                if c.conns[0] == ConnState::Connecting {
                    c.conns[0] = ConnState::Closing;
                    c.push_event(SessionEvent::Close(ConnId::Outgoing));
                }
                c.redial = true;
            }
            _ => c.try_connect(now),
        }
    }

    /// Replaces the configuration. Returns true when the change needs the
    /// session reset (anything that the OPEN carries or the peer's identity);
    /// timer-only and limit-only changes apply in place.
    pub fn reconfigure(&mut self, now: Instant, config: SessionConfig) -> bool {
        let old = self.core.config;
        let reset = old.local_asn != config.local_asn
            || old.router_id != config.router_id
            || old.peer_asn != config.peer_asn
            || old.hold_time != config.hold_time
            || old.ipv4 != config.ipv4
            || old.ipv6 != config.ipv6;
        self.core.config = config;
        // A passive session told it may dial now does so at once.
        if old.passive && !config.passive && !reset && self.core.established_conn().is_none() {
            self.core.try_connect(now);
        }
        if reset {
            let err = ErrorCode::Cease(CeaseSubcode::OtherConfigurationChange);
            self.core
                .close_all(now, Some((err, &[])), DownReason::Stopped);
            self.core
                .schedule_restart(now, Restart::After(Duration::from_ticks(0)));
        }
        reset
    }

    // ---- transport inputs ----

    /// Our outgoing connection is up (Tcp_CR_Acked, event 16): send OPEN.
    pub fn handle_connected(&mut self, now: Instant) {
        let c = &mut self.core;
        if c.conns[0] != ConnState::Connecting {
            // Stale: the connect was abandoned meanwhile. Close what we got.
            if c.conns[0] == ConnState::Closed {
                c.conns[0] = ConnState::Closing;
                c.push_event(SessionEvent::Close(ConnId::Outgoing));
            }
            return;
        }
        c.timers[Timer::ConnectRetry.index()] = None;
        self.rx[0].clear();
        self.core.open_connection(now, ConnId::Outgoing);
    }

    /// The peer connected to us (TcpConnectionConfirmed, event 17). Returns
    /// false when the connection must be refused (not started, the incoming
    /// slot busy, or a session already Established: §6.8).
    pub fn handle_accepted(&mut self, now: Instant) -> bool {
        let c = &mut self.core;
        if !c.started
            || c.timers[Timer::IdleHold.index()].is_some()
            || c.conns[1] != ConnState::Closed
            || c.established_conn().is_some()
        {
            return false;
        }
        self.rx[1].clear();
        self.core.open_connection(now, ConnId::Incoming);
        true
    }

    /// The peer connected to us again while its earlier connection to us is
    /// still opening (OpenSent or OpenConfirm). A peer dials one connection at
    /// a time, so it has given that one up: it restarted, or its RST or FIN
    /// was lost on the way. Kept, the dead connection would turn every new
    /// one away until its OPEN hold time (four minutes) ran out. The old
    /// connection is dropped here without a NOTIFICATION (nobody reads it;
    /// the caller aborts its transport) and the caller may then
    /// [`Session::handle_accepted`] the new one. Returns false, and changes
    /// nothing, when the session is Established (that connection wins,
    /// §6.8), not started, or has no incoming connection opening.
    pub fn replace_incoming(&mut self) -> bool {
        let c = &mut self.core;
        let i = ConnId::Incoming.index();
        if !c.started
            || c.established_conn().is_some()
            || !matches!(c.conns[i], ConnState::OpenSent | ConnState::OpenConfirm)
        {
            return false;
        }
        c.conns[i] = ConnState::Closed;
        c.tx[i].clear();
        c.negotiated[i] = None;
        c.timers[Timer::Hold(ConnId::Incoming).index()] = None;
        c.timers[Timer::Keepalive(ConnId::Incoming).index()] = None;
        c.stats.replaced_connections += 1;
        self.rx[i].clear();
        true
    }

    /// The transport of `conn` closed or failed (TcpConnectionFails, event 18).
    pub fn handle_transport_closed(&mut self, now: Instant, conn: ConnId) {
        let c = &mut self.core;
        let was = c.conns[conn.index()];
        c.conns[conn.index()] = ConnState::Closed;
        c.tx[conn.index()].clear();
        c.negotiated[conn.index()] = None;
        c.timers[Timer::Hold(conn).index()] = None;
        c.timers[Timer::Keepalive(conn).index()] = None;
        self.rx[conn.index()].clear();
        if conn == ConnId::Outgoing && core::mem::take(&mut c.redial) {
            c.try_connect(now);
            return;
        }
        match was {
            ConnState::Closed | ConnState::Closing => {}
            ConnState::Connecting => {
                // Connect failed: Active, retry when ConnectRetry expires.
                if c.timers[Timer::ConnectRetry.index()].is_none() && c.started {
                    c.timers[Timer::ConnectRetry.index()] = Some(now + c.config.connect_retry);
                }
            }
            ConnState::Established => {
                c.went_down(now, DownReason::ConnectionLost);
                c.schedule_restart(now, Restart::Backoff);
            }
            ConnState::OpenSent | ConnState::OpenConfirm => {
                if c.conns[conn.other().index()] == ConnState::Closed {
                    c.schedule_restart(now, Restart::Backoff);
                }
            }
        }
    }

    /// Bytes received on `conn`. Every whole message is processed at once;
    /// UPDATEs go to `sink`.
    pub fn handle_data<S: UpdateSink>(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut data: &[u8],
        sink: &mut S,
    ) {
        let i = conn.index();
        while !data.is_empty() {
            if !self.core.is_open(conn) {
                return; // closed while processing: drop the rest
            }
            let space = self.rx[i].capacity() - self.rx[i].len();
            let n = space.min(data.len());
            if n == 0 {
                // A full buffer holds no whole message: only where the caller
                // gave less than a largest message's room.
                let len = u16::from_be_bytes([
                    self.rx[i].get(16).copied().unwrap_or(0),
                    self.rx[i].get(17).copied().unwrap_or(0),
                ]);
                self.core.fail(
                    now,
                    conn,
                    MessageError::Header(HeaderError::BadMessageLength(len)).notification(),
                );
                self.rx[i].clear();
                return;
            }
            // Cannot fail: n fits the free space.
            let _ = self.rx[i].extend_from_slice(&data[..n]);
            data = &data[n..];
            loop {
                match frame(&self.rx[i]) {
                    Ok(None) => break,
                    Ok(Some(len)) => {
                        self.core
                            .handle_message(now, conn, &self.rx[i][..len], sink);
                        if !self.core.is_open(conn) {
                            self.rx[i].clear();
                            return;
                        }
                        let rx = &mut self.rx[i];
                        rx.copy_within(len.., 0);
                        rx.truncate(rx.len() - len);
                    }
                    Err(e) => {
                        self.core
                            .fail(now, conn, MessageError::Header(e).notification());
                        self.rx[i].clear();
                        return;
                    }
                }
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for t in Timer::all() {
            match self.core.timers[t.index()] {
                Some(at) if at <= now => {
                    self.core.timers[t.index()] = None;
                    self.core.timer_expired(now, t);
                }
                _ => {}
            }
        }
    }

    // ---- sending routes ----

    /// Queues an UPDATE on the established connection. `Err(TooLong)` means the
    /// transmit buffer is full for now: try again after the driver drained it.
    pub fn send_update(&mut self, update: &UpdateRepr<'_>) -> Result<(), SendError> {
        let conn = self
            .core
            .established_conn()
            .ok_or(SendError::NotEstablished)?;
        let repr = UpdateRepr {
            four_octet_as: self.core.negotiated[conn.index()]
                .as_ref()
                .is_some_and(|n| n.four_octet_as),
            ..*update
        };
        let len = repr.buffer_len().map_err(SendError::Emit)?;
        if len > MAX_MESSAGE_LEN {
            return Err(SendError::Emit(EmitError::TooLong));
        }
        let tx = &mut self.core.tx[conn.index()];
        let start = tx.len();
        if tx.grow_zeroed(start + len).is_err() {
            return Err(SendError::BufferFull);
        }
        if let Err(e) = repr.emit(&mut tx[start..]) {
            // Nothing half-written stays queued on the stream.
            tx.truncate(start);
            return Err(SendError::Emit(e));
        }
        self.core.stats.updates_out += 1;
        self.core.stats.messages_out += 1;
        Ok(())
    }

    /// Queues End-of-RIB for `family` (RFC 4724).
    pub fn send_end_of_rib(&mut self, family: Family) -> Result<(), SendError> {
        let conn = self
            .core
            .established_conn()
            .ok_or(SendError::NotEstablished)?;
        let mut b = [0u8; 32];
        let n = emit_end_of_rib(family, &mut b).ok_or(SendError::BufferFull)?;
        self.core
            .queue(conn, &b[..n])
            .map_err(|_| SendError::BufferFull)?;
        self.core.stats.updates_out += 1;
        Ok(())
    }

    /// Asks the peer to send its routes again (RFC 2918).
    pub fn send_route_refresh(&mut self, family: Family) -> Result<(), SendError> {
        let conn = self
            .core
            .established_conn()
            .ok_or(SendError::NotEstablished)?;
        let rr = RouteRefresh {
            afi: family.afi(),
            subtype: 0,
            safi: SAFI_UNICAST,
        };
        let mut b = [0u8; RouteRefresh::LEN];
        let n = rr.emit(&mut b).ok_or(SendError::BufferFull)?;
        self.core
            .queue(conn, &b[..n])
            .map_err(|_| SendError::BufferFull)
    }

    /// Free transmit space on the established connection.
    pub fn tx_space(&self) -> usize {
        match self.core.established_conn() {
            Some(c) => {
                let tx = &self.core.tx[c.index()];
                tx.capacity() - tx.len()
            }
            None => 0,
        }
    }

    /// Bytes queued on `conn`, not yet taken by [`Session::poll_transmit`].
    pub fn queued_tx(&self, conn: ConnId) -> usize {
        self.core.tx[conn.index()].len()
    }

    // ---- outputs ----

    /// Moves bytes queued on `conn` into `out` (as many as fit: the free
    /// space of the transport's send buffer) and returns how many.
    #[must_use]
    pub fn poll_transmit(&mut self, conn: ConnId, out: &mut [u8]) -> usize {
        let tx = &mut self.core.tx[conn.index()];
        let n = out.len().min(tx.len());
        out[..n].copy_from_slice(&tx[..n]);
        tx.copy_within(n.., 0);
        tx.truncate(tx.len() - n);
        n
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.core.events.pop_front()
    }

    /// The next instant `handle_timeout` must run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.timers.iter().flatten().min().copied()
    }
}

/// Why [`Session::send_update`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    NotEstablished,
    BufferFull,
    Emit(EmitError),
}

#[cfg(test)]
mod tests;
