//! WireGuard tunnels: datagrams in and out of one member's crypto session
//! ([`crate::wg::Tunnel`]), and the upkeep that brings tunnels up on their
//! own.
//!
//! Datagrams are written in place: the crypto writes what it sends straight
//! into the node's transmit ring, and decrypts into a buffer the root hands
//! it (the LAN ring's spare slot), so a packet crosses the node without
//! being copied.
//!
//! Timer: boringtun keeps its own timers (keepalive, rekey, handshake
//! retransmission, session expiry) and offers no next deadline; it asks to
//! be polled every [`TIMER_TICK`]. The upkeep rides on that tick: candidate
//! endpoints rotate, idle tunnels are brought up, latency is measured.

use core::net::SocketAddr;

use embassy_time::{Duration, Instant};

use crate::wg::{Member, Tunnel, TunnelResult, REKEY_TIMEOUT};

use super::output::{TxMeta, TxRing};
use super::NodeStats;

pub use crate::wg::TIMER_TICK;

/// How much a latency measurement must move (at least, and at least a
/// quarter) before route selection sees the change.
const LATENCY_HYSTERESIS_US: u32 = 5_000;
/// How long the higher overlay address of a pair waits for the lower one to
/// bring the tunnel up before it tries itself.
const RESPONDER_GRACE: Duration = Duration::from_millis(300);
/// Silence after which a tunnel counts as down (for events and logs): a
/// live tunnel carries at least a keepalive every 25 s, and a rekey's
/// handshake is retried within 5 s. BFD is the fast signal; this one says
/// the tunnel itself is gone.
pub const TUNNEL_SILENCE: Duration = Duration::from_secs(30);
/// After a new session the side that leads makes the handshake again this
/// much later, for a second measure of the path latency route selection
/// uses: the first one after a member (re)starts is often inflated (a
/// router still booting answers slowly), and would otherwise stand until
/// the next rekey, two minutes on. Route selection gets the least sample
/// of the series; while a new sample differs clearly from it (the
/// hysteresis route selection applies), it measures again, at most
/// [`REMEASURES`] times.
pub const REMEASURE_AFTER: Duration = Duration::from_secs(10);
pub const REMEASURES: u8 = 4;
/// WireGuard's REJECT_AFTER_TIME: a session older than this is dead.
const SESSION_LIFETIME: Duration = Duration::from_secs(180);

/// WireGuard message types (the first byte of a datagram).
const HANDSHAKE_INITIATION: u8 = 1;
const HANDSHAKE_RESPONSE: u8 = 2;
const COOKIE_REPLY: u8 = 3;
const TRANSPORT_DATA: u8 = 4;

/// One member's tunnel upkeep.
#[derive(Debug)]
pub(crate) struct Upkeep {
    /// When the member was added: the higher address's grace counts from here.
    started_at: Instant,
    /// We answered an initiation that replaces a session: it becomes usable
    /// with the member's first data packet (boringtun switches then).
    answered_handshake: bool,
    /// Packets boringtun queued while the new session was not usable go out
    /// after the member's first data packet.
    flush_on_data: bool,
    /// Latency (µs) last given to the RIB.
    latency: Option<u32>,
    /// The tunnel is up: an authenticated datagram came within
    /// [`TUNNEL_SILENCE`] (as last told in an event).
    up: bool,
    /// When to make the handshake again for a second latency sample
    /// ([`REMEASURE_AFTER`] a new session); and whether the handshake in
    /// flight is that one (its session schedules no other).
    remeasure_at: Option<Instant>,
    remeasuring: bool,
    /// Re-measurements left in this series (since the last new session
    /// not ours), and its least sample (µs): the latency route selection
    /// gets.
    remeasures_left: u8,
    series_min: Option<u32>,
    /// This side leads handshakes (as last told by the tick): only it
    /// re-measures.
    leads: bool,
}

/// What a datagram from the member did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Received {
    /// The length of a decrypted inner packet at the front of the buffer.
    pub inner: Option<usize>,
    /// A handshake message to send back (its length at the front of the
    /// buffer), and where.
    pub answer: Option<(SocketAddr, usize)>,
    /// It came from the member (not a forgery or a replay).
    pub authenticated: bool,
    /// First authenticated datagram after a silence.
    pub tunnel_up: bool,
    /// The member is at a new address (roaming), or known for the first time.
    pub endpoint_changed: bool,
    /// A new WireGuard session replaced an old one and is usable now: the
    /// member is alive again (perhaps restarted), and any BGP connection in
    /// flight went out under the old keys.
    pub new_session: bool,
    /// Packets boringtun queued may be sendable now.
    pub flush: bool,
}

impl Upkeep {
    pub fn new(now: Instant) -> Upkeep {
        Upkeep {
            started_at: now,
            answered_handshake: false,
            flush_on_data: false,
            latency: None,
            up: false,
            remeasure_at: None,
            remeasuring: false,
            remeasures_left: 0,
            series_min: None,
            leads: false,
        }
    }

    /// A datagram from the member, decrypted (or answered) into `buf`.
    pub fn receive<T: Tunnel>(
        &mut self,
        now: Instant,
        wg: &mut Member<T>,
        from: SocketAddr,
        datagram: &[u8],
        buf: &mut [u8],
    ) -> Received {
        let kind = datagram.first().copied();
        wg.stats.rx_datagrams += 1;
        let mut r = Received::default();
        // Whether a WireGuard session existed before this handshake message:
        // a new one then replaces it (the member restarted, or a rekey).
        // Asked of handshakes only: boringtun reads the clock to answer.
        let had_session = matches!(kind, Some(HANDSHAKE_INITIATION | HANDSHAKE_RESPONSE))
            && wg.tunnel.since_handshake().is_some();
        let result = wg.tunnel.decapsulate(Some(from.ip()), datagram, buf);
        r.authenticated = match result {
            TunnelResult::Done => kind == Some(TRANSPORT_DATA), // a keepalive
            TunnelResult::Network(_) | TunnelResult::Inner(_) => true,
            TunnelResult::Error(e) => {
                wg.stats.rx_errors += 1;
                log::debug!(
                    "wg: {} dropped a datagram: {e:?} (type {kind:?}, {} bytes)",
                    wg.config.name.as_str(),
                    datagram.len()
                );
                false
            }
        };
        if r.authenticated {
            // Follow the member first (roaming): an answer goes where it is now.
            r.endpoint_changed = wg.authenticated_from(now, from);
        }
        match result {
            TunnelResult::Network(b) => {
                wg.stats.tx_packets += 1;
                r.answer = Some((wg.endpoint.unwrap_or(from), b.len()));
            }
            TunnelResult::Inner(p) => {
                wg.stats.rx_packets += 1;
                wg.stats.rx_bytes += p.len() as u64;
                r.inner = Some(p.len());
            }
            _ => {}
        }
        if !r.authenticated {
            return r;
        }
        r.tunnel_up = !core::mem::replace(&mut self.up, true);
        // A new session is usable once we got its response (we initiated)
        // or, when we answered, once its first data packet arrived.
        r.new_session = match kind {
            Some(HANDSHAKE_INITIATION) => {
                self.answered_handshake = had_session;
                self.flush_on_data = true;
                false
            }
            Some(HANDSHAKE_RESPONSE) => had_session,
            Some(TRANSPORT_DATA) => core::mem::take(&mut self.answered_handshake),
            _ => false,
        };
        if r.tunnel_up || r.new_session {
            let sample = wg.tunnel.rtt().map(|d| d.as_micros() as u32);
            if !core::mem::take(&mut self.remeasuring) {
                // Another's session, a rekey or the first: a new series.
                self.series_min = sample;
                self.remeasures_left = REMEASURES;
                self.remeasure_at = Some(now + REMEASURE_AFTER);
            } else {
                // Our re-measurement: the series keeps its least sample (a
                // round trip is the path's plus whatever held up either
                // end), and goes on while the samples disagree with it.
                let best = self.series_min;
                self.series_min = match (best, sample) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let settled = best.zip(sample).is_some_and(|(a, b)| !clearly_apart(a, b));
                if self.remeasures_left > 0 && !settled {
                    self.remeasure_at = Some(now + REMEASURE_AFTER);
                }
            }
        }
        // boringtun keeps packets it could not send without a session until
        // asked; a handshake message, or the first data packet of a session
        // we answered, is when they may go.
        r.flush = match kind {
            Some(HANDSHAKE_INITIATION | HANDSHAKE_RESPONSE | COOKIE_REPLY) => true,
            Some(TRANSPORT_DATA) => core::mem::take(&mut self.flush_on_data),
            _ => false,
        };
        r
    }

    /// Sends what the tunnel queued while it had no usable session.
    pub fn flush<T: Tunnel>(&mut self, wg: &mut Member<T>, tx: &mut TxRing, stats: &mut NodeStats) {
        for _ in 0..64 {
            let TunnelResult::Network(b) = wg.tunnel.decapsulate(None, &[], tx.spare()) else {
                return;
            };
            let len = b.len();
            wg.stats.tx_packets += 1;
            let Some(to) = wg.endpoint else {
                return;
            };
            if !tx.commit_to(to, len) {
                stats.queue_full += 1;
            }
        }
    }

    /// boringtun's tick, and the upkeep on it: the next endpoint candidate,
    /// and a handshake for an idle tunnel. `leads`: this side brings the
    /// tunnel up first (the lower overlay address; two simultaneous
    /// initiations cancel each other out in WireGuard). Returns true when
    /// the tunnel just went down: nothing authenticated for
    /// [`TUNNEL_SILENCE`].
    pub fn tick<T: Tunnel>(
        &mut self,
        now: Instant,
        wg: &mut Member<T>,
        leads: bool,
        tx: &mut TxRing,
        stats: &mut NodeStats,
    ) -> bool {
        let silent = wg
            .last_rx
            .is_none_or(|t| now.saturating_duration_since(t) > TUNNEL_SILENCE);
        let went_down = self.up && silent;
        if went_down {
            self.up = false;
        }
        self.leads = leads;
        self.upkeep(now, wg, leads, tx, stats);
        went_down
    }

    fn upkeep<T: Tunnel>(
        &mut self,
        now: Instant,
        wg: &mut Member<T>,
        leads: bool,
        tx: &mut TxRing,
        stats: &mut NodeStats,
    ) {
        wg.rotate_candidates(now);
        if let TunnelResult::Network(b) = wg.tunnel.update_timers(tx.spare()) {
            let len = b.len();
            wg.stats.tx_packets += 1;
            if let Some(to) = wg.endpoint {
                if !tx.commit_to(to, len) {
                    stats.queue_full += 1;
                }
            }
            return;
        }
        // Bring tunnels up on our own, not only when traffic needs them: a
        // restarted router is then heard from at once, and each side learns
        // the other's endpoint.
        let idle = wg
            .tunnel
            .since_handshake()
            .is_none_or(|d| d > SESSION_LIFETIME);
        // The side that does not lead waits a moment first, in case only it
        // can reach.
        let first_due = if leads {
            Duration::from_ticks(0)
        } else {
            RESPONDER_GRACE
        };
        let due = now.saturating_duration_since(self.started_at) >= first_due
            && wg
                .last_initiation
                .is_none_or(|t| now.saturating_duration_since(t) >= REKEY_TIMEOUT);
        let remeasure = leads && !idle && self.remeasure_at.is_some_and(|t| now >= t);
        if remeasure {
            self.remeasure_at = None;
            self.remeasuring = true;
            self.remeasures_left = self.remeasures_left.saturating_sub(1);
        }
        if let (true, Some(to)) = ((idle && due) || remeasure, wg.endpoint) {
            wg.last_initiation = Some(now);
            if let TunnelResult::Network(b) = wg.tunnel.start_handshake(tx.spare()) {
                let len = b.len();
                wg.stats.handshakes_sent += 1;
                if !tx.commit_to(to, len) {
                    stats.queue_full += 1;
                }
            }
        }
    }

    /// The latency route selection uses (µs), if measured.
    pub fn latency(&self) -> Option<u32> {
        self.latency
    }

    /// The tunnel's latency for route selection (see [`adopts`]). Returns
    /// the new value when it changed.
    pub fn adopt_latency<T: Tunnel>(&mut self, wg: &Member<T>) -> Option<u32> {
        let measured = self
            .series_min
            .or_else(|| wg.tunnel.rtt().map(|d| d.as_micros() as u32))?;
        // Our re-measurement is in flight or still to come.
        let series_open = self.remeasuring || (self.leads && self.remeasure_at.is_some());
        adopts(self.latency, measured, series_open).then(|| {
            self.latency = Some(measured);
            measured
        })
    }
}

/// Whether route selection takes `measured` (µs, the least round trip of
/// the latest series) in place of `old`. A round trip is the path's plus
/// whatever held either end up, so the least sample is the best estimate:
/// a lower one is taken at once. A higher one only once its series is
/// over (its re-measurements may yet find the path as fast as before, and
/// a rekey on a busy CPU must not move a console's traffic for ten
/// seconds), and only when clearly apart (more than the hysteresis and a
/// quarter), so that jitter cannot flap the best path.
fn adopts(old: Option<u32>, measured: u32, series_open: bool) -> bool {
    match old {
        None => true,
        Some(old) => measured < old || (!series_open && clearly_apart(old, measured)),
    }
}

/// Two latencies (µs) route selection tells apart: more than the
/// hysteresis, and more than a quarter of the first.
fn clearly_apart(old: u32, new: u32) -> bool {
    old.abs_diff(new) > LATENCY_HYSTERESIS_US.max(old / 4)
}

/// Encrypts `packet` for `wg` into the next transmit slot.
pub(crate) fn send<T: Tunnel>(
    wg: &mut Member<T>,
    packet: &[u8],
    tx: &mut TxRing,
    stats: &mut NodeStats,
) {
    match wg.tunnel.encapsulate(packet, tx.spare()) {
        TunnelResult::Network(b) => {
            let len = b.len();
            let Some(to) = wg.endpoint else {
                wg.stats.no_endpoint += 1;
                stats.no_endpoint += 1;
                return;
            };
            wg.stats.tx_packets += 1;
            wg.stats.tx_bytes += packet.len() as u64;
            if !tx.commit_to(to, len) {
                stats.queue_full += 1;
            }
        }
        TunnelResult::Error(_) => stats.encrypt_errors += 1,
        _ => {}
    }
}

/// A handshake initiation now (hole punching), to every address in `to`.
/// Returns how many went out.
pub(crate) fn initiate_to<T: Tunnel>(
    now: Instant,
    wg: &mut Member<T>,
    to: &[SocketAddr],
    tx: &mut TxRing,
    stats: &mut NodeStats,
) -> usize {
    let mut init = [0u8; 148];
    let TunnelResult::Network(b) = wg.tunnel.initiate(&mut init) else {
        return 0;
    };
    let len = b.len();
    wg.last_initiation = Some(now);
    wg.stats.handshakes_sent += 1;
    for &dst in to {
        if !tx.push(&init[..len], TxMeta::to(dst, len)) {
            stats.queue_full += 1;
        }
    }
    to.len()
}

#[cfg(all(test, feature = "std"))]
mod tests;
