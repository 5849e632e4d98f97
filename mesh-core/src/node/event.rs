//! What the node reports: events, counters, and why it wants to wake.

use core::net::Ipv4Addr;

use crate::bfd;
use crate::bgp::error::DownReason;
use crate::prefix::Prefix;

use super::output::Events;
use super::{engine, exchange, exit, stun, supervision};

/// What changed, for logs, notifications and the kernel route programmer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEvent {
    /// A member's tunnel is up: the first authenticated datagram since it
    /// was down (or since the member was added).
    TunnelUp {
        member: u8,
    },
    /// A member's tunnel is down: nothing authenticated came from it for
    /// [`super::TUNNEL_SILENCE`] (30 s: a keepalive's 25 s and a rekey's
    /// 5 s). BFD, when on, has long moved traffic by then.
    TunnelDown {
        member: u8,
    },
    BfdUp {
        member: u8,
    },
    /// The member took BFD out of service (AdminDown: it shuts down
    /// cleanly, or its operator did it); its BGP session is left alone.
    BfdAdminDown {
        member: u8,
    },
    /// BFD found the path to the member silent: its traffic moved
    /// ([`NodeEvent::TrafficMoved`]); its BGP session goes if BFD stays down
    /// for the confirmation time (`bfd_confirm`).
    BfdDown {
        member: u8,
        diagnostic: bfd::Diagnostic,
    },
    /// Forwarding avoids the member while another path exists (`away`: BFD
    /// went down), or uses it again (its tunnel proved healthy, or its BGP
    /// session restarted).
    TrafficMoved {
        member: u8,
        away: bool,
    },
    SessionUp {
        member: u8,
    },
    SessionDown {
        member: u8,
        reason: DownReason,
    },
    /// A prefix of another home became reachable: route it to the mesh.
    RouteAdded {
        prefix: Prefix,
        via: u8,
    },
    /// The best path moved to another next hop.
    PathChanged {
        prefix: Prefix,
        from: u8,
        to: u8,
    },
    /// The prefix is no longer reachable through the mesh.
    RouteRemoved {
        prefix: Prefix,
    },
    /// A console of ours got an exit, moved to another (its own died), or
    /// lost it (`None`: no exit is live).
    ConsoleExit {
        console: Ipv4Addr,
        exit: Option<Ipv4Addr>,
    },
    /// Whether any game exit is live for our consoles: the driver routes
    /// consoles into the mesh only while one is.
    ExitAvailable {
        available: bool,
    },
    /// We started (our public address) or stopped offering ourselves as a
    /// game exit.
    ExitOffered {
        public: Option<Ipv4Addr>,
    },
    /// An exit mapping expired or was dropped: the driver closes the socket
    /// of this public port.
    MappingClosed {
        port: u16,
    },
}

/// Counters of what the node did with packets; every drop has one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub udp_in: u64,
    /// Datagrams that are not WireGuard, or that failed its checks.
    pub udp_invalid: u64,
    pub udp_oversized: u64,
    /// Join datagrams (invites; their own counters say what became of
    /// each).
    pub join_in: u64,
    /// Handshakes from keys that are not members.
    pub unknown_key: u64,
    pub cookie_replies: u64,
    /// Inner packets with a broken IP header.
    pub bad_inner: u64,
    /// Inner packets whose source no member's home holds.
    pub spoofed: u64,
    /// Packets from the LAN whose source is not in this home (ingress
    /// filtering: a LAN host posing as another home's).
    pub lan_foreign_source: u64,
    pub forwarded: u64,
    pub to_lan: u64,
    pub to_overlay: u64,
    pub from_lan: u64,
    pub no_route: u64,
    pub ttl_expired: u64,
    pub icmp_sent: u64,
    pub icmp_rate_limited: u64,
    /// Packets for a member with no known endpoint.
    pub no_endpoint: u64,
    /// Output queue full: the driver did not drain in time.
    pub queue_full: u64,
    pub events_dropped: u64,
    /// Routes refused because the member may not originate them.
    pub hijacks_refused: u64,
    /// Copies sent over a second first hop (redundant sending).
    pub redundant_copies: u64,
    /// Second copies dropped at the egress router.
    pub duplicates_dropped: u64,
    /// BFD packets discarded (bad format, TTL, discriminator, unknown sender).
    pub bfd_discarded: u64,
    pub encrypt_errors: u64,
    /// STUN on the mesh port: malformed or not ours to answer.
    pub stun_invalid: u64,
    /// Binding requests not answered (over [`super::STUN_ANSWERS_PER_SECOND`]).
    pub stun_rate_limited: u64,
    pub stun_answered: u64,
    pub stun_requests: u64,
    /// Answers to no request of ours, or from elsewhere than asked.
    pub stun_unexpected: u64,
    /// Answers to our own requests, taken (a Binding success, or an error
    /// answer to a filtering test).
    pub stun_responses: u64,
    pub pex_sent: u64,
    pub pex_received: u64,
    /// Peer exchange messages that did not decode, or that lied.
    pub pex_invalid: u64,
    /// Group records and digests sent (`crate::group`).
    pub group_sent: u64,
    /// Datagrams on the group port that were neither, or not from a member
    /// (records and digests refused are counted by the group itself).
    pub group_invalid: u64,
    /// Digests not answered and records not passed on: the member's last
    /// was less than a second before.
    pub group_limited: u64,
    /// Handshake initiations sent to punch through NATs.
    pub punch_packets: u64,
    /// Punch windows that ended without a tunnel.
    pub punch_failures: u64,
    /// Transit packets refused: a destination no relay serves (loopback,
    /// multicast, ...), or our own address as the source.
    pub relay_refused: u64,
    /// Transit packets over a member's rate cap.
    pub relay_rate_limited: u64,
    /// Relayed-discovery copies sent to members (one per member per
    /// captured packet; the relay's own counters say what was captured).
    pub discovery_sent: u64,
    /// Relayed-discovery messages that arrived while discovery is off here.
    pub discovery_off: u64,
    /// Rounds of the BGP engine (sockets ↔ sessions ↔ RIB); diagnostics.
    pub pump_rounds: u64,
}

/// Why [`super::Node::poll_timeout`] wants a wake-up: the child and its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// boringtun's timers (keepalive, rekey, handshake retransmission) and
    /// the tunnels' upkeep: boringtun offers no deadline of its own and asks
    /// to be polled every [`crate::wg::TIMER_TICK`] while there are members.
    WireGuard,
    /// A member's BFD session or its hold-down.
    Supervision {
        member: u8,
        timer: supervision::Timer,
    },
    /// A BGP session timer, or the overlay stack.
    Bgp(engine::Timer),
    /// A STUN request or filtering test step.
    Stun(stun::Timer),
    /// Peer exchange or a member's hole punch.
    Exchange(exchange::Timer),
    /// The game exit's NAT sweep or load announcement.
    Exit(exit::Timer),
    /// Our join request's next retry, or its timeout.
    Join,
}

pub(crate) fn push_event(q: &mut Events, stats: &mut NodeStats, e: NodeEvent) {
    if q.push_back(e).is_err() {
        stats.events_dropped += 1;
    }
}
