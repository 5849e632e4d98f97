//! The inside of [`super::Session`]: RFC 4271 §8's states per transport
//! connection, the timers of §10, message handling (§6 errors, §6.8
//! collisions), and how a session goes down and restarts.

use embassy_time::{Duration, Instant};

use super::super::error::{DownReason, MessageError, OpenError, CEASE_MAX_PREFIX};
use super::super::message::Message;
use super::super::notification::{CeaseSubcode, ErrorCode, NotificationRepr};
use super::super::open::{Capability, OpenPacket, OpenRepr, AFI_IPV4, AFI_IPV6, SAFI_UNICAST};
use super::super::update::DecodeContext;
use super::super::wire::emit_keepalive;
use super::{
    Buf, ConnId, Negotiated, RibFull, SessionConfig, SessionEvent, SessionStats, UpdateSink,
    EVENT_QUEUE, OPEN_HOLD,
};
use crate::prefix::Family;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnState {
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
pub(super) enum Timer {
    ConnectRetry,
    IdleHold,
    Hold(ConnId),
    Keepalive(ConnId),
}

pub(super) const TIMERS: usize = 6;

/// When a session that went down starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restart {
    /// After the current backoff (which doubles with each failure).
    Backoff,
    /// After exactly this long.
    After(Duration),
}

impl Timer {
    pub(super) fn index(self) -> usize {
        match self {
            Timer::ConnectRetry => 0,
            Timer::IdleHold => 1,
            Timer::Hold(c) => 2 + c.index(),
            Timer::Keepalive(c) => 4 + c.index(),
        }
    }
    pub(super) fn all() -> [Timer; TIMERS] {
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
pub(super) struct Core<'b> {
    pub(super) config: SessionConfig,
    pub(super) started: bool,
    pub(super) conns: [ConnState; 2],
    pub(super) tx: [Buf<'b>; 2],
    /// From the OPEN received on each connection.
    pub(super) negotiated: [Option<Negotiated>; 2],
    pub(super) timers: [Option<Instant>; TIMERS],
    pub(super) events: heapless::Deque<SessionEvent, EVENT_QUEUE>,
    pub(super) stats: SessionStats,
    pub(super) last_down: Option<DownReason>,
    /// Current restart delay (exponential backoff between errors).
    pub(super) backoff: Duration,
    pub(super) established_at: Option<Instant>,
    /// Whether the current/last Established session was counted as up.
    pub(super) up: bool,
    /// Dial as soon as the outgoing slot is free (see `connect_now`).
    pub(super) redial: bool,
}

impl Core<'_> {
    pub(super) fn established_conn(&self) -> Option<ConnId> {
        [ConnId::Outgoing, ConnId::Incoming]
            .into_iter()
            .find(|c| self.conns[c.index()] == ConnState::Established)
    }

    pub(super) fn is_open(&self, conn: ConnId) -> bool {
        matches!(
            self.conns[conn.index()],
            ConnState::OpenSent | ConnState::OpenConfirm | ConnState::Established
        )
    }

    pub(super) fn push_event(&mut self, e: SessionEvent) {
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

    pub(super) fn decode_context(&self, conn: ConnId) -> DecodeContext {
        DecodeContext {
            four_octet_as: self.negotiated[conn.index()]
                .as_ref()
                .is_some_and(|n| n.four_octet_as),
            ebgp: self.config.peer_asn != self.config.local_asn,
            peer_asn: self.config.peer_asn,
        }
    }

    pub(super) fn queue(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), ()> {
        self.tx[conn.index()]
            .extend_from_slice(bytes)
            .map_err(|_| ())?;
        self.stats.messages_out += 1;
        Ok(())
    }

    pub(super) fn try_connect(&mut self, now: Instant) {
        if !self.started {
            return;
        }
        self.timers[Timer::ConnectRetry.index()] = Some(now + self.config.connect_retry);
        if !self.config.passive && self.conns[0] == ConnState::Closed {
            self.conns[0] = ConnState::Connecting;
            self.push_event(SessionEvent::Connect);
        }
    }

    pub(super) fn open_connection(&mut self, now: Instant, conn: ConnId) {
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

    pub(super) fn timer_expired(&mut self, now: Instant, t: Timer) {
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

    pub(super) fn restart_keepalive(&mut self, now: Instant, conn: ConnId) {
        let interval = self.negotiated[conn.index()]
            .as_ref()
            .and_then(|n| n.keepalive_interval());
        self.timers[Timer::Keepalive(conn).index()] = interval.map(|k| now + k);
    }

    pub(super) fn restart_hold(&mut self, now: Instant, conn: ConnId) {
        let hold = self.negotiated[conn.index()]
            .as_ref()
            .map_or(0, |n| n.hold_time);
        self.timers[Timer::Hold(conn).index()] =
            (hold > 0).then(|| now + Duration::from_secs(hold as u64));
    }

    /// Sends a NOTIFICATION on `conn` and closes it.
    pub(super) fn fail(
        &mut self,
        now: Instant,
        conn: ConnId,
        (err, data): (ErrorCode, heapless::Vec<u8, 2>),
    ) {
        self.close_conn(now, conn, Some((err, &data)));
        let reason = DownReason::SentNotification(err);
        self.after_close(now, conn, reason);
    }

    pub(super) fn close_conn(
        &mut self,
        now: Instant,
        conn: ConnId,
        notify: Option<(ErrorCode, &[u8])>,
    ) {
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
    pub(super) fn after_close(&mut self, now: Instant, conn: ConnId, reason: DownReason) {
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

    pub(super) fn next_backoff(&mut self) -> Duration {
        let d = self.backoff;
        let doubled = Duration::from_ticks(self.backoff.as_ticks().saturating_mul(2));
        self.backoff = doubled.min(self.config.max_idle_hold);
        d
    }

    pub(super) fn schedule_restart(&mut self, now: Instant, restart: Restart) {
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

    pub(super) fn went_down(&mut self, now: Instant, reason: DownReason) {
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

    pub(super) fn close_all(
        &mut self,
        now: Instant,
        notify: Option<(ErrorCode, &[u8])>,
        reason: DownReason,
    ) {
        for conn in [ConnId::Outgoing, ConnId::Incoming] {
            self.close_conn(now, conn, notify);
        }
        self.went_down(now, reason);
    }

    pub(super) fn handle_message<S: UpdateSink>(
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
                    let e = super::super::error::fsm_error(false, state == ConnState::OpenConfirm);
                    return self.fail(now, conn, (e, heapless::Vec::new()));
                }
                self.handle_open(now, conn, &open);
            }
            Message::Keepalive => match state {
                ConnState::OpenConfirm => self.become_established(now, conn),
                ConnState::Established => self.restart_hold(now, conn),
                _ => {
                    let e = super::super::error::fsm_error(true, false);
                    self.fail(now, conn, (e, heapless::Vec::new()));
                }
            },
            Message::Update(packet) => {
                self.stats.updates_in += 1;
                if state != ConnState::Established {
                    let e = super::super::error::fsm_error(
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
                    let e = super::super::error::fsm_error(
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

    pub(super) fn max_prefix_exceeded(&mut self, now: Instant, conn: ConnId, max: u32) {
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

    pub(super) fn validate_open(&self, open: &OpenPacket<'_>) -> Result<Negotiated, OpenError> {
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

    pub(super) fn handle_open(&mut self, now: Instant, conn: ConnId, open: &OpenPacket<'_>) {
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

    pub(super) fn become_established(&mut self, now: Instant, conn: ConnId) {
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
