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

use super::error::{DownReason, MessageError, OpenError, CEASE_MAX_PREFIX};
use super::message::Message;
use super::notification::{shutdown_data, CeaseSubcode, ErrorCode, NotificationRepr};
use super::open::{
    Capability, OpenPacket, OpenRepr, PeerCapabilities, AFI_IPV4, AFI_IPV6, SAFI_UNICAST,
};
use super::route_refresh::RouteRefresh;
use super::update::{emit_end_of_rib, DecodeContext, EmitError, Update, UpdateRepr};
use super::wire::{emit_keepalive, frame, MAX_MESSAGE_LEN};
use crate::prefix::Family;

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    Closed,
    /// Our connect is in flight.
    Connecting,
    OpenSent,
    OpenConfirm,
    Established,
    /// A close was requested; waiting for the driver to report it done.
    Closing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    ConnectRetry,
    IdleHold,
    Hold(ConnId),
    Keepalive(ConnId),
}

const TIMERS: usize = 6;

/// When a session that went down starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// After the current backoff (which doubles with each failure).
    Backoff,
    /// After exactly this long.
    After(Duration),
}

impl Timer {
    fn index(self) -> usize {
        match self {
            Timer::ConnectRetry => 0,
            Timer::IdleHold => 1,
            Timer::Hold(c) => 2 + c.index(),
            Timer::Keepalive(c) => 4 + c.index(),
        }
    }
    fn all() -> [Timer; TIMERS] {
        [
            Timer::ConnectRetry,
            Timer::IdleHold,
            Timer::Hold(ConnId::Outgoing),
            Timer::Hold(ConnId::Incoming),
            Timer::Keepalive(ConnId::Outgoing),
            Timer::Keepalive(ConnId::Incoming),
        ]
    }
}

/// Everything but the receive buffers, so a message borrowed from one can be
/// processed while the rest of the session is mutated.
#[derive(Debug)]
struct Core {
    config: SessionConfig,
    started: bool,
    conns: [ConnState; 2],
    tx: [heapless::Vec<u8, TX_BUF>; 2],
    /// From the OPEN received on each connection.
    negotiated: [Option<Negotiated>; 2],
    timers: [Option<Instant>; TIMERS],
    events: heapless::Deque<SessionEvent, EVENT_QUEUE>,
    stats: SessionStats,
    last_down: Option<DownReason>,
    /// Current restart delay (exponential backoff between errors).
    backoff: Duration,
    established_at: Option<Instant>,
    /// Whether the current/last Established session was counted as up.
    up: bool,
    /// Dial as soon as the outgoing slot is free (see `connect_now`).
    redial: bool,
}

/// A BGP session with one peer. See the module docs for the driver contract.
#[derive(Debug)]
pub struct Session {
    core: Core,
    rx: [heapless::Vec<u8, MAX_MESSAGE_LEN>; 2],
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        Session {
            core: Core {
                config,
                started: false,
                conns: [ConnState::Closed; 2],
                tx: [heapless::Vec::new(), heapless::Vec::new()],
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
            rx: [heapless::Vec::new(), heapless::Vec::new()],
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
            let space = MAX_MESSAGE_LEN - self.rx[i].len();
            let n = space.min(data.len());
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
        if tx.capacity() - tx.len() < len {
            return Err(SendError::BufferFull);
        }
        let start = tx.len();
        // Cannot fail: the capacity was checked above.
        let _ = tx.resize(start + len, 0);
        repr.emit(&mut tx[start..]).map_err(SendError::Emit)?;
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
            Some(c) => TX_BUF - self.core.tx[c.index()].len(),
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

impl Core {
    fn established_conn(&self) -> Option<ConnId> {
        [ConnId::Outgoing, ConnId::Incoming]
            .into_iter()
            .find(|c| self.conns[c.index()] == ConnState::Established)
    }

    fn is_open(&self, conn: ConnId) -> bool {
        matches!(
            self.conns[conn.index()],
            ConnState::OpenSent | ConnState::OpenConfirm | ConnState::Established
        )
    }

    fn push_event(&mut self, e: SessionEvent) {
        // A refresh request or End-of-RIB already waiting (since the last
        // Established/Down) says all a repeat would: coalesce them, so a burst
        // from the peer cannot fill the queue and push out a Down, the RIB's
        // cue to drop the peer's routes. One input then queues at most ten
        // (with the transport requests).
        if matches!(e, SessionEvent::RouteRefresh(_) | SessionEvent::EndOfRib(_))
            && self
                .events
                .iter()
                .rev()
                .take_while(|q| !matches!(q, SessionEvent::Established | SessionEvent::Down(_)))
                .any(|q| *q == e)
        {
            return;
        }
        if self.events.push_back(e).is_err() {
            log::warn!("bgp: event queue full, dropping {e:?}");
        }
    }

    fn decode_context(&self, conn: ConnId) -> DecodeContext {
        DecodeContext {
            four_octet_as: self.negotiated[conn.index()]
                .as_ref()
                .is_some_and(|n| n.four_octet_as),
            ebgp: self.config.peer_asn != self.config.local_asn,
            peer_asn: self.config.peer_asn,
        }
    }

    fn queue(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), ()> {
        self.tx[conn.index()]
            .extend_from_slice(bytes)
            .map_err(|_| ())?;
        self.stats.messages_out += 1;
        Ok(())
    }

    fn try_connect(&mut self, now: Instant) {
        if !self.started {
            return;
        }
        self.timers[Timer::ConnectRetry.index()] = Some(now + self.config.connect_retry);
        if !self.config.passive && self.conns[0] == ConnState::Closed {
            self.conns[0] = ConnState::Connecting;
            self.push_event(SessionEvent::Connect);
        }
    }

    fn open_connection(&mut self, now: Instant, conn: ConnId) {
        self.tx[conn.index()].clear();
        self.negotiated[conn.index()] = None;
        let mut caps: heapless::Vec<Capability<'static>, 6> = heapless::Vec::new();
        if self.config.ipv4 {
            let _ = caps.push(Capability::Multiprotocol {
                afi: AFI_IPV4,
                safi: SAFI_UNICAST,
            });
        }
        if self.config.ipv6 {
            let _ = caps.push(Capability::Multiprotocol {
                afi: AFI_IPV6,
                safi: SAFI_UNICAST,
            });
        }
        let _ = caps.push(Capability::RouteRefresh);
        let _ = caps.push(Capability::FourOctetAs(self.config.local_asn));
        let open = OpenRepr {
            asn: self.config.local_asn,
            hold_time: self.config.hold_time,
            router_id: self.config.router_id,
            capabilities: &caps,
        };
        let mut b = [0u8; 128];
        let Some(n) = open.emit(&mut b) else {
            return;
        };
        self.conns[conn.index()] = ConnState::OpenSent;
        let _ = self.queue(conn, &b[..n]);
        self.timers[Timer::Hold(conn).index()] = Some(now + OPEN_HOLD);
    }

    fn timer_expired(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::ConnectRetry => {
                // RFC 4271 §8.2.2 event 9: drop a stalled connect, try again.
                if self.conns[0] == ConnState::Connecting {
                    self.conns[0] = ConnState::Closing;
                    self.push_event(SessionEvent::Close(ConnId::Outgoing));
                }
                if self.established_conn().is_none() {
                    self.try_connect(now);
                }
            }
            Timer::IdleHold => self.try_connect(now),
            Timer::Hold(conn) => {
                if self.is_open(conn) {
                    self.fail(
                        now,
                        conn,
                        (ErrorCode::HoldTimerExpired, heapless::Vec::new()),
                    );
                }
            }
            Timer::Keepalive(conn) => {
                if matches!(
                    self.conns[conn.index()],
                    ConnState::OpenConfirm | ConnState::Established
                ) {
                    let mut b = [0u8; 19];
                    if let Some(n) = emit_keepalive(&mut b) {
                        let _ = self.queue(conn, &b[..n]);
                    }
                    self.restart_keepalive(now, conn);
                }
            }
        }
    }

    fn restart_keepalive(&mut self, now: Instant, conn: ConnId) {
        let interval = self.negotiated[conn.index()]
            .as_ref()
            .and_then(|n| n.keepalive_interval());
        self.timers[Timer::Keepalive(conn).index()] = interval.map(|k| now + k);
    }

    fn restart_hold(&mut self, now: Instant, conn: ConnId) {
        let hold = self.negotiated[conn.index()]
            .as_ref()
            .map_or(0, |n| n.hold_time);
        self.timers[Timer::Hold(conn).index()] =
            (hold > 0).then(|| now + Duration::from_secs(hold as u64));
    }

    /// Sends a NOTIFICATION on `conn` and closes it.
    fn fail(&mut self, now: Instant, conn: ConnId, (err, data): (ErrorCode, heapless::Vec<u8, 2>)) {
        self.close_conn(now, conn, Some((err, &data)));
        let reason = DownReason::SentNotification(err);
        self.after_close(now, conn, reason);
    }

    fn close_conn(&mut self, now: Instant, conn: ConnId, notify: Option<(ErrorCode, &[u8])>) {
        let _ = now;
        let i = conn.index();
        match self.conns[i] {
            ConnState::Closed | ConnState::Closing => return,
            ConnState::Connecting => {}
            _ => {
                if let Some((err, data)) = notify {
                    let mut b = [0u8; 300];
                    if let Some(n) = NotificationRepr::new(err, data).emit(&mut b) {
                        // A full buffer must not keep the NOTIFICATION out:
                        // what is queued is moot now.
                        self.tx[i].clear();
                        let _ = self.queue(conn, &b[..n]);
                        self.stats.notifications_out += 1;
                    }
                }
            }
        }
        self.conns[i] = ConnState::Closing;
        self.negotiated[i] = None;
        self.timers[Timer::Hold(conn).index()] = None;
        self.timers[Timer::Keepalive(conn).index()] = None;
        self.push_event(SessionEvent::Close(conn));
    }

    /// After `conn` was closed by us for `reason`: report Down if it carried
    /// the session, and schedule a restart if nothing else is left.
    fn after_close(&mut self, now: Instant, conn: ConnId, reason: DownReason) {
        let _ = conn;
        if self.up && self.established_conn().is_none() {
            self.went_down(now, reason);
        } else {
            self.last_down = Some(reason);
        }
        let other_alive = self.conns.iter().any(|s| {
            matches!(
                s,
                ConnState::OpenSent | ConnState::OpenConfirm | ConnState::Established
            )
        });
        if !other_alive {
            let restart = if reason == DownReason::SentNotification(CEASE_MAX_PREFIX) {
                // The peer's penalty holds whichever side dials.
                Restart::After(self.config.max_prefix_restart)
            } else {
                Restart::Backoff
            };
            self.schedule_restart(now, restart);
        }
    }

    fn next_backoff(&mut self) -> Duration {
        let d = self.backoff;
        let doubled = Duration::from_ticks(self.backoff.as_ticks().saturating_mul(2));
        self.backoff = doubled.min(self.config.max_idle_hold);
        d
    }

    fn schedule_restart(&mut self, now: Instant, restart: Restart) {
        if !self.started {
            return;
        }
        self.timers[Timer::ConnectRetry.index()] = None;
        if self.conns[0] == ConnState::Connecting {
            self.conns[0] = ConnState::Closing;
            self.push_event(SessionEvent::Close(ConnId::Outgoing));
        }
        let delay = match restart {
            Restart::After(d) => Some(d),
            // Backing off damps a flapping peer by not dialing it; a passive
            // session never dials, so Idle would only turn the peer away.
            Restart::Backoff if self.config.passive => None,
            Restart::Backoff => Some(self.next_backoff()),
        };
        match delay {
            Some(d) => self.timers[Timer::IdleHold.index()] = Some(now + d),
            None => {
                self.timers[Timer::IdleHold.index()] = None;
                self.try_connect(now);
            }
        }
    }

    fn went_down(&mut self, now: Instant, reason: DownReason) {
        if self.up {
            self.up = false;
            self.stats.flaps += 1;
            // A session that stayed up for a while earns a fresh backoff.
            if let Some(t) = self.established_at {
                if now.saturating_duration_since(t) > Duration::from_secs(60) {
                    self.backoff = self.config.idle_hold;
                }
            }
            self.established_at = None;
            self.push_event(SessionEvent::Down(reason));
        }
        self.last_down = Some(reason);
    }

    fn close_all(&mut self, now: Instant, notify: Option<(ErrorCode, &[u8])>, reason: DownReason) {
        for conn in [ConnId::Outgoing, ConnId::Incoming] {
            self.close_conn(now, conn, notify);
        }
        self.went_down(now, reason);
    }

    fn handle_message<S: UpdateSink>(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: &[u8],
        sink: &mut S,
    ) {
        self.stats.messages_in += 1;
        let state = self.conns[conn.index()];
        let parsed = match Message::parse(msg) {
            Ok(m) => m,
            Err(e) => {
                if let MessageError::Update(_) = e {
                    self.stats.updates_in += 1;
                }
                return self.fail(now, conn, e.notification());
            }
        };
        match parsed {
            Message::Notification(n) => {
                self.stats.notifications_in += 1;
                log::info!(
                    "bgp: AS{} sent NOTIFICATION {}{}",
                    self.config.peer_asn,
                    n.error,
                    n.shutdown_communication().map_or("", |_| " (with message)")
                );
                self.close_conn(now, conn, None);
                self.after_close(now, conn, DownReason::ReceivedNotification(n.error));
            }
            Message::Open(open) => {
                if state != ConnState::OpenSent {
                    let e = super::error::fsm_error(false, state == ConnState::OpenConfirm);
                    return self.fail(now, conn, (e, heapless::Vec::new()));
                }
                self.handle_open(now, conn, &open);
            }
            Message::Keepalive => match state {
                ConnState::OpenConfirm => self.become_established(now, conn),
                ConnState::Established => self.restart_hold(now, conn),
                _ => {
                    let e = super::error::fsm_error(true, false);
                    self.fail(now, conn, (e, heapless::Vec::new()));
                }
            },
            Message::Update(packet) => {
                self.stats.updates_in += 1;
                if state != ConnState::Established {
                    let e = super::error::fsm_error(
                        state == ConnState::OpenSent,
                        state == ConnState::OpenConfirm,
                    );
                    return self.fail(now, conn, (e, heapless::Vec::new()));
                }
                self.restart_hold(now, conn);
                let update = match packet.decode(&self.decode_context(conn)) {
                    Ok(u) => u,
                    Err(e) => return self.fail(now, conn, MessageError::Update(e).notification()),
                };
                if let Some(why) = update.treat_as_withdraw {
                    self.stats.treat_as_withdraw += 1;
                    log::warn!(
                        "bgp: AS{}: malformed UPDATE ({why:?}), treated as withdraw (RFC 7606)",
                        self.config.peer_asn
                    );
                }
                let discarded = update.discarded.iter().count() as u64;
                self.stats.attributes_discarded += discarded;
                if let Some(family) = update.end_of_rib() {
                    self.push_event(SessionEvent::EndOfRib(family));
                    return;
                }
                match sink.apply_update(&update) {
                    Ok(count) => {
                        if let Some(max) = self.config.max_prefixes {
                            if count > max as usize {
                                self.max_prefix_exceeded(now, conn, max);
                            }
                        }
                    }
                    Err(RibFull) => {
                        let e = ErrorCode::Cease(CeaseSubcode::OutOfResources);
                        self.fail(now, conn, (e, heapless::Vec::new()));
                    }
                }
            }
            Message::RouteRefresh(rr) => {
                if state != ConnState::Established {
                    let e = super::error::fsm_error(
                        state == ConnState::OpenSent,
                        state == ConnState::OpenConfirm,
                    );
                    return self.fail(now, conn, (e, heapless::Vec::new()));
                }
                let family = match (rr.afi, rr.safi) {
                    (AFI_IPV4, SAFI_UNICAST) => Some(Family::Ipv4),
                    (AFI_IPV6, SAFI_UNICAST) => Some(Family::Ipv6),
                    _ => None, // RFC 2918 §4: ignore an AFI/SAFI not negotiated
                };
                if let Some(f) = family {
                    self.push_event(SessionEvent::RouteRefresh(f));
                }
            }
        }
    }

    fn max_prefix_exceeded(&mut self, now: Instant, conn: ConnId, max: u32) {
        log::warn!(
            "bgp: AS{} sent more than {max} prefixes: Cease, restart in {} s",
            self.config.peer_asn,
            self.config.max_prefix_restart.as_secs()
        );
        // RFC 4486 §4: AFI, SAFI and the upper bound. We count all families
        // together and report IPv4 unicast.
        let mut data = [0u8; 7];
        data[..2].copy_from_slice(&AFI_IPV4.to_be_bytes());
        data[2] = SAFI_UNICAST;
        data[3..].copy_from_slice(&max.to_be_bytes());
        self.close_conn(now, conn, Some((CEASE_MAX_PREFIX, &data)));
        self.after_close(now, conn, DownReason::SentNotification(CEASE_MAX_PREFIX));
    }

    fn validate_open(&self, open: &OpenPacket<'_>) -> Result<Negotiated, OpenError> {
        if open.version() != 4 {
            return Err(OpenError::UnsupportedVersion(open.version()));
        }
        let caps = open.summary();
        let peer_asn = caps.four_octet_as.unwrap_or(open.my_as() as u32);
        if peer_asn != self.config.peer_asn {
            return Err(OpenError::BadPeerAs);
        }
        let id = open.bgp_identifier();
        // RFC 6286 §2.2: zero is invalid; an identifier equal to ours would make
        // collision resolution (§6.8) impossible.
        if id.is_unspecified() || id == self.config.router_id {
            return Err(OpenError::BadBgpIdentifier);
        }
        let theirs = open.hold_time();
        if theirs == 1 || theirs == 2 || (theirs != 0 && theirs < self.config.min_hold_time) {
            return Err(OpenError::UnacceptableHoldTime);
        }
        Ok(Negotiated {
            peer_router_id: id,
            hold_time: theirs.min(self.config.hold_time),
            four_octet_as: caps.four_octet_as.is_some(),
            ipv4: self.config.ipv4 && caps.ipv4_unicast,
            ipv6: self.config.ipv6 && caps.ipv6_unicast,
            peer_capabilities: caps,
        })
    }

    fn handle_open(&mut self, now: Instant, conn: ConnId, open: &OpenPacket<'_>) {
        let negotiated = match self.validate_open(open) {
            Ok(n) => n,
            Err(e) => return self.fail(now, conn, MessageError::Open(e).notification()),
        };
        // §6.8 collision detection: the other connection is in OpenConfirm, or
        // in OpenSent (we now know the peer's identifier, which §6.8 allows).
        let other = conn.other();
        if matches!(
            self.conns[other.index()],
            ConnState::OpenSent | ConnState::OpenConfirm | ConnState::Established
        ) {
            self.stats.collisions += 1;
            let loser = if self.conns[other.index()] == ConnState::Established {
                conn
            } else if u32::from(self.config.router_id) < u32::from(negotiated.peer_router_id) {
                // The higher identifier's connection survives: the one the peer opened.
                ConnId::Outgoing
            } else {
                ConnId::Incoming
            };
            let e = ErrorCode::Cease(CeaseSubcode::ConnectionCollisionResolution);
            self.close_conn(now, loser, Some((e, &[])));
            self.last_down = Some(DownReason::SentNotification(e));
            if loser == conn {
                return;
            }
        }
        self.negotiated[conn.index()] = Some(negotiated);
        self.conns[conn.index()] = ConnState::OpenConfirm;
        self.timers[Timer::ConnectRetry.index()] = None;
        let mut b = [0u8; 19];
        if let Some(n) = emit_keepalive(&mut b) {
            let _ = self.queue(conn, &b[..n]);
        }
        self.restart_hold(now, conn);
        self.restart_keepalive(now, conn);
    }

    fn become_established(&mut self, now: Instant, conn: ConnId) {
        self.conns[conn.index()] = ConnState::Established;
        self.restart_hold(now, conn);
        self.established_at = Some(now);
        self.up = true;
        self.timers[Timer::IdleHold.index()] = None;
        self.timers[Timer::ConnectRetry.index()] = None;
        // Any other connection still opening loses (§6.8, Established wins).
        let other = conn.other();
        if matches!(
            self.conns[other.index()],
            ConnState::Connecting | ConnState::OpenSent | ConnState::OpenConfirm
        ) {
            let e = ErrorCode::Cease(CeaseSubcode::ConnectionCollisionResolution);
            self.close_conn(now, other, Some((e, &[])));
        }
        self.push_event(SessionEvent::Established);
    }
}

#[cfg(test)]
mod tests;
