//! The node's settings, their defaults, and [`Node::reconfigure`]: the one
//! place a new configuration is compared with the running one and applied
//! without touching what did not change.
//!
//! Defaults live here and nowhere else (the daemon's configuration file
//! falls back to these constants); so do the units: durations are
//! [`Duration`]s, rates are kbit/s as users write them (turned into bytes in
//! [`super::relay`]).

use core::net::{Ipv4Addr, Ipv6Addr};

use embassy_time::{Duration, Instant};

use crate::bfd;
use crate::discovery;
use crate::prefix::Prefix;
use crate::wg::{BfdSetting, Crypto, Key, MemberConfig, MemberError, MAX_MEMBERS};

use super::engine::session_config;
use super::exit::ExitConfig;
use super::supervision::Damping;
use super::Node;

/// Prefixes a node announces for its own home.
pub const MAX_LAN_PREFIXES: usize = 8;
/// BGP hold time (seconds): a dead peer is noticed after this long when BFD
/// is off.
pub const DEFAULT_HOLD_TIME: u16 = 9;
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(2);
/// WireGuard persistent keepalive (seconds): keeps NAT mappings open.
pub const DEFAULT_KEEPALIVE: u16 = 25;
/// Multipath limit (1 = no ECMP).
pub const DEFAULT_MAX_PATHS: u8 = 1;
/// BFD tuned for game traffic: 10 ms × 4 = 40 ms detection.
pub const DEFAULT_BFD: bfd::Config = bfd::Config::GAMING;
pub const DEFAULT_BFD_HOLD_DOWN: Duration = Duration::from_secs(2);
/// BFD down moves traffic at once; BGP goes down only if BFD stays down this
/// much longer: longer than an upload queue, a stalled CPU or a burst of
/// loss keeps a live tunnel silent, far shorter than BGP's hold time.
pub const DEFAULT_BFD_CONFIRM: Duration = Duration::from_secs(2);
/// Game packets are small; bulk downloads are not duplicated.
pub const DEFAULT_REDUNDANCY_MAX_LEN: u16 = 300;
/// Transit per member: 20 Mbit/s is far above what games need (well under
/// 1 Mbit/s per console) and keeps one friend from filling a relay's uplink.
pub const DEFAULT_RELAY_RATE_KBIT: u32 = 20_000;

/// The node's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub private_key: Key,
    pub overlay: Ipv4Addr,
    pub overlay_v6: Option<Ipv6Addr>,
    pub asn: u32,
    pub lan_prefixes: heapless::Vec<Prefix, MAX_LAN_PREFIXES>,
    /// BGP hold time (seconds) proposed on every session.
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Multipath limit (1 = no ECMP).
    pub max_paths: u8,
    /// WireGuard persistent keepalive for members that set none.
    pub keepalive: Option<u16>,
    /// Seeds the TCP stack's sequence numbers and ports, BFD discriminators,
    /// STUN transaction ids and punch tokens. A new one per start.
    pub seed: u64,
    /// The host's kernel also holds the overlay address (on the TUN device):
    /// only BGP reaches the node's own stack, everything else addressed to the
    /// overlay address goes to the kernel, which answers pings, ssh and the
    /// like. Without it (a simulation, a host with no kernel stack) the node's
    /// stack takes everything and answers pings itself.
    pub overlay_in_kernel: bool,
    /// BFD on every tunnel, unless a member says otherwise (`None`: off).
    pub bfd: Option<bfd::Config>,
    /// After BFD took a session down, BGP waits this long with BFD Up before
    /// it starts again; doubled for each further flap (up to a minute). A
    /// member that comes back restarted (a new BFD discriminator) is not a
    /// flapping path and is not held down.
    pub bfd_hold_down: Duration,
    /// BFD Down moves the member's traffic to other paths at once; its BGP
    /// session and routes go only if BFD is still down this much later (zero:
    /// at once). Traffic returns after BFD has been Up a while
    /// ([`super::supervision`]).
    pub bfd_confirm: Duration,
    /// Redundant sending: UDP packets from the LAN up to this size go over
    /// the two best first hops (`None`: off).
    pub redundancy_max_len: Option<u16>,
    /// The driver can send from a second UDP port, to answer STUN requests
    /// to change port (the NAT filtering test other members run).
    pub alt_port: bool,
    /// Transit traffic from one member is capped at this many kbit/s
    /// (`None`: no cap). Consoles' traffic through us as their game exit
    /// counts against the same cap.
    pub relay_rate_kbit: Option<u32>,
    /// This router offers itself as a game exit (`None`: it does not).
    pub exit: Option<ExitConfig>,
    /// Home LANs this node maps 1:1 to their aliases in the mesh (issue
    /// 17, [`crate::netmap`]): sources going out, destinations coming in.
    /// `lan_prefixes` then holds the aliases, which are what is announced.
    pub lan_map: heapless::Vec<crate::netmap::Map, MAX_LAN_PREFIXES>,
    /// LAN discovery relayed between homes: what is captured here and
    /// re-emitted from other homes (`None`: off both ways).
    pub discovery: Option<discovery::Policy>,
    /// The driver's start, as wall-clock seconds (or any number that grows
    /// from one start to the next): it numbers this node's relayed
    /// discovery messages so that a restarted node is not taken for a
    /// replay. Kept by [`Node::reconfigure`], like the seed.
    pub boot: u32,
}

impl NodeConfig {
    /// The settings every default applies to.
    pub fn new(private_key: Key, overlay: Ipv4Addr, asn: u32) -> NodeConfig {
        NodeConfig {
            private_key,
            overlay,
            overlay_v6: None,
            asn,
            lan_prefixes: heapless::Vec::new(),
            hold_time: DEFAULT_HOLD_TIME,
            connect_retry: DEFAULT_CONNECT_RETRY,
            max_paths: DEFAULT_MAX_PATHS,
            keepalive: Some(DEFAULT_KEEPALIVE),
            seed: 0,
            overlay_in_kernel: false,
            bfd: Some(DEFAULT_BFD),
            bfd_hold_down: DEFAULT_BFD_HOLD_DOWN,
            bfd_confirm: DEFAULT_BFD_CONFIRM,
            redundancy_max_len: Some(DEFAULT_REDUNDANCY_MAX_LEN),
            alt_port: false,
            relay_rate_kbit: Some(DEFAULT_RELAY_RATE_KBIT),
            exit: None,
            lan_map: heapless::Vec::new(),
            discovery: Some(discovery::Policy::default()),
            boot: 0,
        }
    }

    /// What shapes the node itself: a change needs a new node.
    fn identity(&self) -> (Key, Ipv4Addr, Option<Ipv6Addr>, u32) {
        (self.private_key, self.overlay, self.overlay_v6, self.asn)
    }

    /// What every BGP session carries or is timed by.
    fn sessions(&self) -> (u16, Duration, Option<u16>, u8) {
        (
            self.hold_time,
            self.connect_retry,
            self.keepalive,
            self.max_paths,
        )
    }

    /// Fast failover and relaying.
    fn failover(&self) -> (Option<bfd::Config>, Damping, Option<u16>, Option<u32>) {
        (
            self.bfd,
            self.damping(),
            self.redundancy_max_len,
            self.relay_rate_kbit,
        )
    }

    /// How BFD failures are damped.
    pub(crate) fn damping(&self) -> Damping {
        Damping {
            hold_down: self.bfd_hold_down,
            confirm: self.bfd_confirm,
        }
    }

    /// A member's BFD, with the node's as the default.
    pub(crate) fn bfd_for(&self, m: &MemberConfig) -> Option<bfd::Config> {
        match m.bfd {
            BfdSetting::Inherit => self.bfd,
            BfdSetting::Off => None,
            BfdSetting::On(c) => Some(c),
        }
    }

    /// A member entry with the node's defaults filled in.
    pub(crate) fn member_defaults(&self, mut m: MemberConfig) -> MemberConfig {
        if m.keepalive.is_none() {
            m.keepalive = self.keepalive;
        }
        m
    }
}

/// What happened to one member in a [`Node::reconfigure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Added {
        slot: u8,
    },
    /// Its entry changed; the session was reset only if its OPEN changed.
    Updated {
        slot: u8,
    },
    Removed {
        name: heapless::String<32>,
    },
    /// It could not be added.
    Refused {
        name: heapless::String<32>,
        error: MemberError,
    },
}

/// What [`Node::reconfigure`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Changes {
    /// The node's identity (key, overlay addresses, AS number) differs:
    /// nothing was applied; build a new node.
    pub rebuild: bool,
    /// Members removed, then those added, updated or refused, in the order
    /// of the list given.
    pub members: heapless::Vec<MemberChange, { 2 * MAX_MEMBERS }>,
    /// The prefixes this home announces, or how its LAN maps to them.
    pub lan_prefixes: bool,
    /// Hold time, connect retry, keepalive or multipath limit.
    pub sessions: bool,
    /// BFD, its hold-down, redundant sending or the relay cap.
    pub failover: bool,
    /// Whether, and how, this router is a game exit.
    pub exit: bool,
    /// What LAN discovery relays, or whether it runs.
    pub discovery: bool,
}

impl Changes {
    /// How many things changed.
    pub fn count(&self) -> usize {
        self.members.len()
            + usize::from(self.lan_prefixes)
            + usize::from(self.sessions)
            + usize::from(self.failover)
            + usize::from(self.exit)
            + usize::from(self.discovery)
    }
}

impl<C: Crypto> Node<'_, C> {
    /// Applies a new configuration: `config` for the node, `members` for its
    /// friends (matched by public key; a new key is a new member). What did
    /// not change is not touched: sessions stay up unless what their OPEN
    /// carries changed. The seed, `alt_port` and `overlay_in_kernel` belong
    /// to the running driver and are kept.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        config: NodeConfig,
        members: &[MemberConfig],
    ) -> Changes {
        let mut changes = Changes::default();
        if config.identity() != self.config.identity() {
            changes.rebuild = true;
            return changes;
        }
        self.all_timers_changed();
        let config = NodeConfig {
            seed: self.config.seed,
            boot: self.config.boot,
            alt_port: self.config.alt_port,
            overlay_in_kernel: self.config.overlay_in_kernel,
            ..config
        };
        if config.lan_prefixes != self.config.lan_prefixes {
            self.set_lan_prefixes(now, &config.lan_prefixes);
            changes.lan_prefixes = true;
        }
        if config.lan_map != self.config.lan_map {
            self.config.lan_map = config.lan_map.clone();
            changes.lan_prefixes = true;
        }
        if config.failover() != self.config.failover() {
            self.set_failover(now, &config);
            changes.failover = true;
        }
        if config.sessions() != self.config.sessions() {
            self.set_sessions(now, &config);
            changes.sessions = true;
        }
        if config.exit != self.config.exit {
            self.set_exit(now, config.exit);
            changes.exit = true;
        }
        if config.discovery != self.config.discovery {
            self.discovery
                .set_policy(config.discovery.clone().unwrap_or_default());
            self.config.discovery = config.discovery.clone();
            changes.discovery = true;
        }
        let gone: heapless::Vec<u8, MAX_MEMBERS> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                !members
                    .iter()
                    .any(|m| m.public_key == s.wg.config.public_key)
            })
            .map(|(i, _)| i as u8)
            .collect();
        for slot in gone {
            let name = self.member_name(slot).map(heapless::String::try_from);
            if self.remove_member(now, slot) {
                let name = name.and_then(Result::ok).unwrap_or_default();
                let _ = changes.members.push(MemberChange::Removed { name });
            }
        }
        for m in members {
            let m = self.config.member_defaults(m.clone());
            let change = match self.slots.by_key(&m.public_key) {
                None => {
                    let name = m.name.clone();
                    match self.add_member(now, m) {
                        Ok(slot) => MemberChange::Added { slot },
                        Err(error) => MemberChange::Refused { name, error },
                    }
                }
                Some(slot) if self.slots.get(slot).is_some_and(|s| s.wg.config != m) => {
                    self.update_member(now, slot as u8, m);
                    MemberChange::Updated { slot: slot as u8 }
                }
                Some(_) => continue,
            };
            let _ = changes.members.push(change);
        }
        self.settle();
        changes
    }

    /// New exit settings: the NAT takes its new range, timeout and quota
    /// (mappings that no longer fit are closed); the offer follows.
    fn set_exit(&mut self, now: Instant, exit: Option<ExitConfig>) {
        self.config.exit = exit;
        let nat = exit.map(|e| e.nat).unwrap_or_default();
        let super::Node {
            exits,
            events,
            stats,
            ..
        } = self;
        let closed = |port| {
            super::event::push_event(events, stats, super::NodeEvent::MappingClosed { port })
        };
        exits.set_nat(nat, exit.is_some(), closed);
        self.refresh_offer(now);
    }

    /// Replaces the prefixes this home announces: new ones are originated,
    /// dropped ones withdrawn; sessions stay up.
    fn set_lan_prefixes(&mut self, now: Instant, prefixes: &[Prefix]) {
        for old in self.config.lan_prefixes.clone() {
            if !prefixes.contains(&old) {
                self.engine.withdraw(old);
            }
        }
        self.config.lan_prefixes.clear();
        for p in prefixes.iter().take(MAX_LAN_PREFIXES) {
            let _ = self.config.lan_prefixes.push(*p);
            self.engine.originate(*p);
        }
        self.pump(now);
    }

    /// Timers and limits of every session. A session is reset only when what
    /// its OPEN carried changes (the hold time).
    fn set_sessions(&mut self, now: Instant, config: &NodeConfig) {
        self.config.hold_time = config.hold_time;
        self.config.connect_retry = config.connect_retry;
        self.config.keepalive = config.keepalive;
        if self.config.max_paths != config.max_paths {
            self.config.max_paths = config.max_paths;
            self.engine.rib.set_max_paths(config.max_paths);
        }
        for (_, s) in self.slots.iter_mut() {
            let session = &mut s.bgp.session;
            let sc = session_config(&self.config, &s.wg.config, session.config().passive);
            if *session.config() != sc {
                session.reconfigure(now, sc);
            }
        }
        self.engine.wake();
        self.pump(now);
    }

    /// BFD and redundant sending: running BFD sessions take new timers
    /// through a poll sequence, new ones start, removed ones stop (a BGP
    /// session held for BFD then starts). And the relay cap.
    fn set_failover(&mut self, now: Instant, config: &NodeConfig) {
        self.config.relay_rate_kbit = config.relay_rate_kbit;
        self.config.bfd = config.bfd;
        self.config.bfd_hold_down = config.bfd_hold_down;
        self.config.bfd_confirm = config.bfd_confirm;
        self.config.redundancy_max_len = config.redundancy_max_len;
        for slot in 0..MAX_MEMBERS {
            let Some(s) = self.slots.get_mut(slot) else {
                continue;
            };
            let wanted = self.config.bfd_for(&s.wg.config);
            s.bfd.reconfigure(now, wanted, self.config.damping());
            self.supervision_outputs(now, slot);
        }
        self.pump(now);
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
