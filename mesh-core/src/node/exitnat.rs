//! The game exit's UDP NAT table: which console owns which external port.
//!
//! A game exit is a mesh member with a public IPv4 address. Consoles in
//! friends' homes send UDP through it, and the exit sends each console's
//! datagrams from its one public address, from an external port that stands
//! for that console's endpoint. This module is that table and nothing else:
//! it never sees a packet or a socket. The node asks
//! - [`ExitNat::outbound`] (or [`ExitNat::outbound_new`]) for the external
//!   port of a datagram a console sends out through the exit;
//! - [`ExitNat::inbound`] for the console an arriving datagram is for;
//! - [`ExitNat::expire`] at [`ExitNat::next_expiry`] to drop idle mappings.
//!
//! Callbacks `closed(port)` name the external ports whose sockets the
//! platform should close.
//!
//! A mapping belongs to an [`Internal`]: the console's home (the overlay
//! IPv4 address of the member router it sits behind) and the console's own
//! address and port. Two homes may use the same private addresses, so the
//! home is part of the key.
//!
//! ## RFC 4787 behaviour
//!
//! | requirement | how this table meets it |
//! |---|---|
//! | REQ-1 endpoint-independent mapping | the key is the [`Internal`] alone; no remote address is ever an input |
//! | REQ-2 IP address pooling "paired" | the exit has one public address, so every mapping of a console uses the same one |
//! | REQ-3 no port overloading | one external port belongs to at most one mapping; the console's own port is kept when it is in the range and free ("port preservation", §4.2.1, which RFC 4787 allows but does not require); the default range 1024–65535 maps a source port ≥ 1024 into that range (REQ-3 b) |
//! | REQ-4 port parity | when the console's port is taken, ports of its parity are searched first |
//! | REQ-5 mapping timer | never below [`MIN_TIMEOUT`], two minutes (REQ-5: lower settings are raised to it); configurable, [`ExitNatConfig::timeout`] (REQ-5 b); default [`DEFAULT_TIMEOUT`], five minutes (REQ-5 c). The shorter timers REQ-5 a allows for well-known destination ports are not used |
//! | REQ-6 outbound refresh | [`ExitNat::outbound`] refreshes a mapping; [`ExitNat::inbound`] does not (inbound refresh is a MAY, left out so a stranger cannot keep a mapping alive) |
//! | REQ-8 endpoint-independent filtering | [`ExitNat::inbound`] takes the external port only: anyone may reach a mapped console |
//! | REQ-11 deterministic | no randomness and no clock: the same sequence of calls gives the same ports; running out refuses a new mapping ([`Refused`]) instead of changing behaviour (no fallback to port overloading or to endpoint-dependent mapping) |
//! | REQ-12 ICMP does not delete | there is no call that removes a mapping because of ICMP |
//!
//! ## Limits
//!
//! - `N` mappings in all (default [`EXIT_MAPPINGS`]); at most
//!   [`ExitNatConfig::quota`] per home; at most [`EXIT_HOMES`] distinct homes
//!   holding mappings at once. Running out is a [`Refused`] value and a
//!   counter in [`ExitNatStats`], never a panic. Idle mappings are not
//!   evicted to make room: the caller runs [`ExitNat::expire`].
//! - A port search probes at most [`MAX_PROBES`] ports of each parity.
//!
//! ## Cost
//!
//! The mappings live in a dense array; three open-addressing index tables
//! (by internal key, by external port, by console address) of `2N` `u16`
//! slots each (load at most 1/2, linear probing, backward-shift deletion, no
//! tombstones) find them, and a table of `2 ×` [`EXIT_HOMES`] slots holds the
//! per-home counts. Per packet ([`ExitNat::outbound`] of a known console,
//! [`ExitNat::inbound`]): one hash of at most 10 bytes and an expected O(1)
//! probe. Creating or removing a mapping: expected O(1), plus the port search
//! when the console's own port is not free. Scans of all mappings:
//! [`ExitNat::expire`] (only when [`ExitNat::next_expiry`] has come),
//! [`ExitNat::set_config`], [`ExitNat::remove_home`], [`ExitNat::iter`].
//! `size_of::<ExitNat<1024>>()` is 46,816 bytes on 64-bit targets.

use core::hash::Hasher;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::num::NonZeroU16;

use embassy_time::{Duration, Instant};

use crate::hash::Fnv;
use crate::wg::MAX_MEMBERS;

/// The default capacity: mappings held at once.
pub const EXIT_MAPPINGS: usize = 1024;
/// The default mapping timer (RFC 4787 REQ-5 c recommends five minutes or
/// more).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The shortest mapping timer (RFC 4787 REQ-5: a mapping must not expire in
/// less than two minutes); shorter settings are raised to it.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(120);
/// The default number of mappings one home may hold.
pub const DEFAULT_QUOTA: u16 = 256;
/// Distinct homes that may hold mappings at once: twice the mesh's members,
/// so every member (and then some) fits.
pub const EXIT_HOMES: usize = 2 * MAX_MEMBERS;
/// Ports [`ExitNat::reserve`] keeps.
pub const MAX_RESERVED: usize = 4;
/// Ports [`ExitNat::port_unavailable`] remembers; the oldest is forgotten
/// first.
pub const BLOCKLIST: usize = 32;
/// Ports of one parity a port search looks at before it gives up with
/// [`Refused::NoPort`]. While a parity has at least this many ports in the
/// range and `N +` [`MAX_RESERVED`] `+` [`BLOCKLIST`] `<` `MAX_PROBES`, the
/// window always holds a free port, so the bound never refuses a mapping
/// that a full search would have placed.
pub const MAX_PROBES: u32 = 4096;

/// Slots of the per-home table (load at most 1/2).
const HOME_SLOTS: usize = 2 * EXIT_HOMES;

/// The table's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitNatConfig {
    /// The external port range, both ends included. Port 0 is never used
    /// (a `first_port` of 0 counts as 1); an empty range (`first_port >
    /// last_port`) refuses every new mapping with [`Refused::NoPort`].
    pub first_port: u16,
    pub last_port: u16,
    /// How long a mapping lives without outbound traffic (RFC 4787 REQ-5);
    /// raised to [`MIN_TIMEOUT`] when lower.
    pub timeout: Duration,
    /// Mappings one home may hold; 0 refuses every new mapping.
    pub quota: u16,
}

impl ExitNatConfig {
    /// Ports 1024–65535, [`DEFAULT_TIMEOUT`], [`DEFAULT_QUOTA`].
    pub const DEFAULT: ExitNatConfig = ExitNatConfig {
        first_port: 1024,
        last_port: u16::MAX,
        timeout: DEFAULT_TIMEOUT,
        quota: DEFAULT_QUOTA,
    };

    /// The settings as the table applies them: the timeout at least
    /// [`MIN_TIMEOUT`] (RFC 4787 REQ-5), the first port at least 1.
    pub const fn normalized(self) -> ExitNatConfig {
        let timeout = if self.timeout.as_ticks() < MIN_TIMEOUT.as_ticks() {
            MIN_TIMEOUT
        } else {
            self.timeout
        };
        let first_port = if self.first_port == 0 {
            1
        } else {
            self.first_port
        };
        ExitNatConfig {
            first_port,
            last_port: self.last_port,
            timeout,
            quota: self.quota,
        }
    }

    /// Whether `port` is in the range (never port 0).
    pub const fn contains(&self, port: u16) -> bool {
        port != 0 && port >= self.first_port && port <= self.last_port
    }
}

impl Default for ExitNatConfig {
    fn default() -> Self {
        ExitNatConfig::DEFAULT
    }
}

/// Who a mapping belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Internal {
    /// The overlay IPv4 address of the member router the console sits
    /// behind.
    pub home: Ipv4Addr,
    /// The console's address and UDP port, as its home router sends them.
    pub addr: SocketAddrV4,
}

/// Why [`ExitNat::outbound`] made no mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The console's home holds [`ExitNatConfig::quota`] mappings already.
    Quota,
    /// The table holds `N` mappings, or [`EXIT_HOMES`] other homes hold
    /// mappings and this home would be one more.
    Full,
    /// No free external port was found (the range is used up, reserved or
    /// blocked, or [`MAX_PROBES`] ports of each parity were taken).
    NoPort,
}

/// What the table did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitNatStats {
    /// Mappings made.
    pub created: u64,
    /// Mappings removed by [`ExitNat::expire`].
    pub expired: u64,
    /// New mappings refused with [`Refused::Quota`].
    pub refused_quota: u64,
    /// New mappings refused with [`Refused::Full`].
    pub refused_full: u64,
    /// New mappings refused with [`Refused::NoPort`].
    pub refused_port: u64,
    /// Calls of [`ExitNat::port_unavailable`].
    pub ports_unavailable: u64,
    /// [`ExitNat::inbound`] calls for a port no mapping holds.
    pub inbound_unmapped: u64,
    /// Mappings removed other than by expiry: by [`ExitNat::set_config`],
    /// [`ExitNat::remove_home`] and [`ExitNat::port_unavailable`]. Always
    /// `created == len + expired + removed`.
    pub removed: u64,
}

/// A view of one mapping for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingView {
    pub internal: Internal,
    /// The external port.
    pub port: u16,
    pub created: Instant,
    /// The last outbound datagram (or the creation).
    pub last_out: Instant,
}

/// One mapping.
#[derive(Debug, Clone, Copy)]
struct Entry {
    internal: Internal,
    /// The external port (never 0).
    port: NonZeroU16,
    /// The ring of mappings of the same console (home and console IP):
    /// indices into the mappings, the entry's own when it is alone.
    prev: u16,
    next: u16,
    created: Instant,
    last_out: Instant,
}

/// One home's count of mappings; a count of 0 is an empty slot.
#[derive(Debug, Clone, Copy)]
struct Home {
    addr: Ipv4Addr,
    count: u16,
}

const NO_HOME: Home = Home {
    addr: Ipv4Addr::UNSPECIFIED,
    count: 0,
};

/// The three index tables over the mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Index {
    /// By [`Internal`] (the per-packet outbound lookup).
    Key,
    /// By external port (the per-packet inbound lookup).
    Port,
    /// By console (home, console IP): one entry of each ring, for
    /// [`ExitNat::consoles`].
    Console,
}

/// The outcome of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The slot that matched.
    Hit(usize),
    /// No match: the first empty slot on the way.
    Vacant(usize),
    /// The whole table was full and matched nothing (never at load 1/2).
    Exhausted,
}

/// The table. See the module documentation.
pub struct ExitNat<const N: usize = EXIT_MAPPINGS> {
    config: ExitNatConfig,
    /// The mappings, dense: a removal moves the last one into the hole.
    slab: heapless::Vec<Entry, N>,
    /// Index tables of `2N` slots: 0 is empty, `i + 1` names `slab[i]`.
    by_key: [[u16; 2]; N],
    by_port: [[u16; 2]; N],
    by_console: [[u16; 2]; N],
    /// Occupied slots of `by_console`: distinct consoles.
    consoles: usize,
    homes: [Home; HOME_SLOTS],
    /// Occupied slots of `homes`.
    home_count: usize,
    reserved: heapless::Vec<u16, MAX_RESERVED>,
    blocked: heapless::Deque<u16, BLOCKLIST>,
    /// At most the earliest `last_out` of any mapping (exact after
    /// [`ExitNat::expire`]); `None` when empty.
    earliest: Option<Instant>,
    stats: ExitNatStats,
}

impl<const N: usize> core::fmt::Debug for ExitNat<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ExitNat")
            .field("config", &self.config)
            .field("len", &self.slab.len())
            .field("consoles", &self.consoles)
            .field("homes", &self.home_count)
            .field("reserved", &self.reserved)
            .field("blocked", &self.blocked)
            .field("earliest", &self.earliest)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> Default for ExitNat<N> {
    fn default() -> Self {
        ExitNat::new(ExitNatConfig::DEFAULT)
    }
}

impl<const N: usize> ExitNat<N> {
    /// An empty table. `const`, so a table can be a `static` or be built in
    /// place; `N` must be between 1 and 65535 (checked at compile time).
    pub const fn new(config: ExitNatConfig) -> Self {
        const {
            assert!(
                N >= 1 && N <= u16::MAX as usize,
                "ExitNat holds 1 to 65535 mappings"
            )
        };
        ExitNat {
            config: config.normalized(),
            slab: heapless::Vec::new(),
            by_key: [[0; 2]; N],
            by_port: [[0; 2]; N],
            by_console: [[0; 2]; N],
            consoles: 0,
            homes: [NO_HOME; HOME_SLOTS],
            home_count: 0,
            reserved: heapless::Vec::new(),
            blocked: heapless::Deque::new(),
            earliest: None,
            stats: ExitNatStats {
                created: 0,
                expired: 0,
                refused_quota: 0,
                refused_full: 0,
                refused_port: 0,
                ports_unavailable: 0,
                inbound_unmapped: 0,
                removed: 0,
            },
        }
    }

    /// The settings in force ([`ExitNatConfig::normalized`]).
    pub fn config(&self) -> &ExitNatConfig {
        &self.config
    }

    /// New settings (normalized as in [`ExitNatConfig::normalized`]).
    /// Mappings whose port left the range are closed; then, for each home
    /// holding more than a lowered quota, its idlest mappings (earliest last
    /// outbound datagram, then earliest created, then lowest port) are
    /// closed until it holds the quota. `closed(port)` is called for each.
    /// Other mappings keep their ports (RFC 4787 REQ-11). A shorter timeout
    /// takes effect at the next [`ExitNat::expire`].
    ///
    /// Cost: one pass over the mappings, plus one pass per mapping closed
    /// for the quota (O(N²) at worst, for a quota lowered from N to 0).
    pub fn set_config(&mut self, config: ExitNatConfig, mut closed: impl FnMut(u16)) {
        self.config = config.normalized();
        let mut i = 0;
        while let Some(e) = self.slab.get(i).copied() {
            if self.config.contains(e.port.get()) || !self.close(i, &mut closed) {
                i += 1;
            }
        }
        let quota = self.config.quota;
        while let Some(home) = self.homes.iter().find(|h| h.count > quota).map(|h| h.addr) {
            while self.count_of(home) > usize::from(quota) {
                let idlest = self
                    .slab
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.internal.home == home)
                    .min_by_key(|(_, e)| (e.last_out, e.created, e.port))
                    .map(|(i, _)| i);
                // Counts and mappings disagreeing (never) must not spin.
                if !idlest.is_some_and(|i| self.close(i, &mut closed)) {
                    return;
                }
            }
        }
    }

    /// An outbound datagram from `internal`: the external port of its
    /// mapping, made if there is none. See [`ExitNat::outbound_new`].
    pub fn outbound(&mut self, now: Instant, internal: Internal) -> Result<u16, Refused> {
        self.outbound_new(now, internal).map(|(port, _)| port)
    }

    /// An outbound datagram from `internal` at `now`: the external port of
    /// its mapping and whether the mapping was made by this call (the
    /// platform then opens the port's socket).
    ///
    /// A known `internal` keeps its port whatever the destination (RFC 4787
    /// REQ-1) and its mapping is refreshed (REQ-6). A new one gets its own
    /// port if that is in the range and free (port preservation, REQ-3),
    /// else a free port of the same parity (REQ-4), else of the other
    /// parity. The search starts at a port derived from an FNV-1a hash of
    /// `internal` and steps through the range's ports of one parity; a
    /// port is free if no mapping holds it (no port overloading, REQ-3) and
    /// it is neither reserved ([`ExitNat::reserve`]) nor blocked
    /// ([`ExitNat::port_unavailable`]). The search is deterministic (REQ-11)
    /// and looks at most at [`MAX_PROBES`] ports of each parity.
    ///
    /// A mapping lives until [`ExitNat::expire`] removes it: an outbound
    /// datagram after the timeout but before the caller ran the expiry
    /// still finds it, keeps its port and refreshes it.
    ///
    /// Refusals, each counted in [`ExitNatStats`], in this order:
    /// [`Refused::Quota`], [`Refused::Full`], [`Refused::NoPort`]. Idle
    /// mappings are not evicted to make room.
    pub fn outbound_new(
        &mut self,
        now: Instant,
        internal: Internal,
    ) -> Result<(u16, bool), Refused> {
        let key_hash = key_hash(&internal);
        if let Some(i) = self.find(Index::Key, key_hash, |e| e.internal == internal) {
            if let Some(e) = self.slab.get_mut(i) {
                e.last_out = e.last_out.max(now);
                return Ok((e.port.get(), false));
            }
        }
        self.create(now, internal, key_hash)
            .map(|port| (port, true))
    }

    /// An inbound datagram to external `port`, from anyone (endpoint-
    /// independent filtering, RFC 4787 REQ-8): the owner of the mapping on
    /// that port. Counts [`ExitNatStats::inbound_unmapped`] when there is
    /// none. Does not refresh the mapping (REQ-6 asks for outbound
    /// refresh only; inbound refresh, a MAY, is left out so that strangers
    /// cannot keep a mapping alive). Like [`ExitNat::outbound`], it finds a
    /// mapping until [`ExitNat::expire`] removes it.
    pub fn inbound(&mut self, port: u16) -> Option<Internal> {
        let owner = self
            .find_port(port)
            .and_then(|i| self.slab.get(i))
            .map(|e| e.internal);
        if owner.is_none() {
            bump(&mut self.stats.inbound_unmapped);
        }
        owner
    }

    /// The external port of `internal`'s mapping, if any (no refresh).
    pub fn lookup(&self, internal: Internal) -> Option<u16> {
        self.find(Index::Key, key_hash(&internal), |e| e.internal == internal)
            .and_then(|i| self.slab.get(i))
            .map(|e| e.port.get())
    }

    /// Removes the mappings idle (no outbound datagram) for at least the
    /// timeout at `now` (RFC 4787 REQ-5); calls `closed(port)` for each.
    ///
    /// Cost: O(1) before [`ExitNat::next_expiry`], a pass over the mappings
    /// from then on (which also makes the next expiry exact again).
    pub fn expire(&mut self, now: Instant, mut closed: impl FnMut(u16)) {
        match self.next_expiry() {
            Some(at) if at <= now => {}
            _ => return,
        }
        let timeout = self.config.timeout;
        let mut earliest: Option<Instant> = None;
        let mut i = 0;
        while let Some(e) = self.slab.get(i).copied() {
            if now.saturating_duration_since(e.last_out) >= timeout {
                // The last mapping moves into `i`: look at `i` again.
                if self.remove(i).is_some() {
                    bump(&mut self.stats.expired);
                    closed(e.port.get());
                    continue;
                }
            }
            earliest = Some(earliest.map_or(e.last_out, |t| t.min(e.last_out)));
            i += 1;
        }
        self.earliest = earliest;
    }

    /// The earliest instant at which some mapping may expire (`None` when
    /// empty). O(1): it is computed from a lower bound of the mappings' last
    /// outbound datagrams, exact after [`ExitNat::expire`] and made earlier
    /// by new mappings, but not moved by refreshes. So it may be earlier
    /// than the true earliest expiry (an [`ExitNat::expire`] then finds
    /// nothing and makes it exact), never later.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.earliest.map(|t| t.saturating_add(self.config.timeout))
    }

    /// The platform could not open external `port` (another program holds
    /// it): the mapping on it, if any, is removed and its owner returned,
    /// and the port is not given out again while it is on the blocklist
    /// (the last [`BLOCKLIST`] such ports; the oldest is forgotten first).
    /// The owner's next [`ExitNat::outbound`] makes a mapping on another
    /// port. `closed` is not called: the port never opened.
    pub fn port_unavailable(&mut self, port: u16) -> Option<Internal> {
        bump(&mut self.stats.ports_unavailable);
        if !self.blocked.iter().any(|&b| b == port) {
            if self.blocked.is_full() {
                self.blocked.pop_front();
            }
            // Cannot fail: there is room now.
            let _ = self.blocked.push_back(port);
        }
        let i = self.find_port(port)?;
        let e = self.remove(i)?;
        bump(&mut self.stats.removed);
        Some(e.internal)
    }

    /// Ports never to give out (the mesh's own listen ports, say): the
    /// first [`MAX_RESERVED`] of `ports`, replacing those of the previous
    /// call. A mapping that holds such a port already keeps it.
    pub fn reserve(&mut self, ports: &[u16]) {
        self.reserved.clear();
        for &p in ports.iter().take(MAX_RESERVED) {
            // Cannot fail: at most MAX_RESERVED.
            let _ = self.reserved.push(p);
        }
    }

    /// Removes every mapping of `home` (a member left); calls
    /// `closed(port)` for each. A pass over the mappings.
    pub fn remove_home(&mut self, home: Ipv4Addr, mut closed: impl FnMut(u16)) {
        if self.count_of(home) == 0 {
            return;
        }
        let mut i = 0;
        while let Some(e) = self.slab.get(i) {
            if e.internal.home != home || !self.close(i, &mut closed) {
                i += 1;
            }
        }
    }

    /// Mappings held.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Mappings `home` holds. Expected O(1).
    pub fn count_of(&self, home: Ipv4Addr) -> usize {
        match self.home_probe(home) {
            Probe::Hit(pos) => self.homes.get(pos).map_or(0, |h| usize::from(h.count)),
            _ => 0,
        }
    }

    /// Distinct consoles (home and console IP) holding at least one
    /// mapping: the exit's load. O(1) (kept up to date).
    pub fn consoles(&self) -> usize {
        self.consoles
    }

    /// Every mapping, in no particular (but deterministic) order.
    pub fn iter(&self) -> impl Iterator<Item = MappingView> + '_ {
        self.slab.iter().map(|e| MappingView {
            internal: e.internal,
            port: e.port.get(),
            created: e.created,
            last_out: e.last_out,
        })
    }

    pub fn stats(&self) -> &ExitNatStats {
        &self.stats
    }

    /// Makes a mapping for `internal`, not known yet.
    fn create(&mut self, now: Instant, internal: Internal, key_hash: u64) -> Result<u16, Refused> {
        let home = self.home_probe(internal.home);
        let count = match home {
            Probe::Hit(pos) => self.homes.get(pos).map_or(0, |h| h.count),
            _ => 0,
        };
        if count >= self.config.quota {
            bump(&mut self.stats.refused_quota);
            return Err(Refused::Quota);
        }
        let new_home_refused = match home {
            Probe::Hit(_) => false,
            Probe::Vacant(_) => self.home_count >= EXIT_HOMES,
            Probe::Exhausted => true,
        };
        if self.slab.is_full() || new_home_refused {
            bump(&mut self.stats.refused_full);
            return Err(Refused::Full);
        }
        let Some(port) = self.pick_port(&internal, key_hash) else {
            bump(&mut self.stats.refused_port);
            return Err(Refused::NoPort);
        };
        let i = self.slab.len();
        let own = short(i);
        let entry = Entry {
            internal,
            port,
            prev: own,
            next: own,
            created: now,
            last_out: now,
        };
        if self.slab.push(entry).is_err() {
            bump(&mut self.stats.refused_full);
            return Err(Refused::Full);
        }
        self.index_insert(Index::Key, key_hash, i);
        self.index_insert(Index::Port, port_hash(port.get()), i);
        let console = console_hash(&internal);
        match self.find(Index::Console, console, |e| {
            same_console(&e.internal, &internal)
        }) {
            Some(rep) => self.link_after(rep, i),
            None => {
                self.index_insert(Index::Console, console, i);
                self.consoles += 1;
            }
        }
        match home {
            Probe::Hit(pos) => {
                if let Some(h) = self.homes.get_mut(pos) {
                    h.count = h.count.saturating_add(1);
                }
            }
            Probe::Vacant(pos) => {
                if let Some(h) = self.homes.get_mut(pos) {
                    *h = Home {
                        addr: internal.home,
                        count: 1,
                    };
                    self.home_count += 1;
                }
            }
            Probe::Exhausted => {}
        }
        self.earliest = Some(self.earliest.map_or(now, |t| t.min(now)));
        bump(&mut self.stats.created);
        Ok(port.get())
    }

    /// The port for a new mapping of `internal` (hash `key_hash`).
    fn pick_port(&self, internal: &Internal, key_hash: u64) -> Option<NonZeroU16> {
        let own = internal.addr.port();
        if self.config.contains(own) && self.port_free(own) {
            return NonZeroU16::new(own);
        }
        let parity = own & 1;
        self.search(parity, key_hash)
            .or_else(|| self.search(parity ^ 1, key_hash.rotate_left(32)))
    }

    /// A free port of `parity` in the range: the ports of that parity
    /// taken in order from the one `seed` picks, wrapping around, at most
    /// [`MAX_PROBES`] of them.
    fn search(&self, parity: u16, seed: u64) -> Option<NonZeroU16> {
        let first = u32::from(self.config.first_port);
        let last = u32::from(self.config.last_port);
        let lo = first + ((first ^ u32::from(parity)) & 1);
        if first == 0 || lo > last {
            return None;
        }
        let count = (last - lo) / 2 + 1;
        let mut k = (seed % u64::from(count)) as u32;
        for _ in 0..count.min(MAX_PROBES) {
            if let Ok(port) = u16::try_from(lo + 2 * k) {
                if self.port_free(port) {
                    return NonZeroU16::new(port);
                }
            }
            k += 1;
            if k == count {
                k = 0;
            }
        }
        None
    }

    /// Whether a new mapping may take `port` (range aside).
    fn port_free(&self, port: u16) -> bool {
        port != 0
            && !self.reserved.contains(&port)
            && !self.blocked.iter().any(|&b| b == port)
            && self.find_port(port).is_none()
    }

    fn find_port(&self, port: u16) -> Option<usize> {
        self.find(Index::Port, port_hash(port), |e| e.port.get() == port)
    }

    /// Removes mapping `i` as a close (not an expiry): counted, and
    /// `closed` told. Whether there was such a mapping.
    fn close(&mut self, i: usize, closed: &mut impl FnMut(u16)) -> bool {
        let Some(e) = self.remove(i) else {
            return false;
        };
        bump(&mut self.stats.removed);
        closed(e.port.get());
        true
    }

    /// Removes mapping `i` from the mappings, the index tables, its
    /// console's ring and its home's count; the last mapping moves to `i`.
    fn remove(&mut self, i: usize) -> Option<Entry> {
        let e = *self.slab.get(i)?;
        let own = tag(i);
        self.index_remove(Index::Key, key_hash(&e.internal), own);
        self.index_remove(Index::Port, port_hash(e.port.get()), own);
        let console = console_hash(&e.internal);
        if usize::from(e.next) == i {
            // Its console's last mapping.
            self.index_remove(Index::Console, console, own);
            self.consoles = self.consoles.saturating_sub(1);
        } else {
            if let Some(p) = self.slab.get_mut(usize::from(e.prev)) {
                p.next = e.next;
            }
            if let Some(n) = self.slab.get_mut(usize::from(e.next)) {
                n.prev = e.prev;
            }
            // If it stood for its console, the next one does.
            self.index_repoint(Index::Console, console, own, e.next.wrapping_add(1));
        }
        self.home_release(e.internal.home);

        let moved = self.slab.pop()?;
        let last = self.slab.len();
        if i < last {
            let slot = self.slab.get_mut(i)?;
            *slot = moved;
            let (from, to) = (tag(last), own);
            self.index_repoint(Index::Key, key_hash(&moved.internal), from, to);
            self.index_repoint(Index::Port, port_hash(moved.port.get()), from, to);
            self.index_repoint(Index::Console, console_hash(&moved.internal), from, to);
            let to_index = short(i);
            if usize::from(moved.next) == last {
                if let Some(m) = self.slab.get_mut(i) {
                    m.prev = to_index;
                    m.next = to_index;
                }
            } else {
                if let Some(p) = self.slab.get_mut(usize::from(moved.prev)) {
                    p.next = to_index;
                }
                if let Some(n) = self.slab.get_mut(usize::from(moved.next)) {
                    n.prev = to_index;
                }
            }
        }
        if self.slab.is_empty() {
            self.earliest = None;
        }
        Some(e)
    }

    /// Puts mapping `i` into the ring of mapping `rep`, after it.
    fn link_after(&mut self, rep: usize, i: usize) {
        let Some(after) = self.slab.get(rep).map(|r| r.next) else {
            return;
        };
        let (rep16, i16) = (short(rep), short(i));
        if let Some(e) = self.slab.get_mut(i) {
            e.prev = rep16;
            e.next = after;
        }
        if let Some(r) = self.slab.get_mut(rep) {
            r.next = i16;
        }
        if let Some(a) = self.slab.get_mut(usize::from(after)) {
            a.prev = i16;
        }
    }

    fn home_probe(&self, home: Ipv4Addr) -> Probe {
        let start = ideal(home_hash(home), HOME_SLOTS);
        probe(&self.homes, start, |h| h.count == 0, |h| h.addr == home)
    }

    /// One mapping of `home` fewer; its slot empties at 0.
    fn home_release(&mut self, home: Ipv4Addr) {
        let Probe::Hit(pos) = self.home_probe(home) else {
            return;
        };
        let Some(h) = self.homes.get_mut(pos) else {
            return;
        };
        h.count = h.count.saturating_sub(1);
        if h.count == 0 {
            shift_delete(
                &mut self.homes,
                pos,
                NO_HOME,
                |h| h.count == 0,
                |h| ideal(home_hash(h.addr), HOME_SLOTS),
            );
            self.home_count = self.home_count.saturating_sub(1);
        }
    }

    fn table(&self, index: Index) -> &[u16] {
        match index {
            Index::Key => self.by_key.as_flattened(),
            Index::Port => self.by_port.as_flattened(),
            Index::Console => self.by_console.as_flattened(),
        }
    }

    /// The mapping whose hash is `hash` and for which `hit` holds, found
    /// through `index`.
    fn find(&self, index: Index, hash: u64, hit: impl Fn(&Entry) -> bool) -> Option<usize> {
        let table = self.table(index);
        let start = ideal(hash, table.len());
        let found = probe(
            table,
            start,
            |&v| v == 0,
            |&v| self.slab.get(untag(v)).is_some_and(&hit),
        );
        match found {
            Probe::Hit(pos) => table.get(pos).map(|&v| untag(v)),
            _ => None,
        }
    }

    /// Enters mapping `i` (hash `hash`) in `index`.
    fn index_insert(&mut self, index: Index, hash: u64, i: usize) {
        let (table, _) = self.table_mut(index);
        let start = ideal(hash, table.len());
        let own = tag(i);
        if let Probe::Vacant(pos) = probe(table, start, |&v| v == 0, |&v| v == own) {
            if let Some(slot) = table.get_mut(pos) {
                *slot = own;
            }
        }
    }

    /// Takes the slot holding `value` (hash `hash`) out of `index`,
    /// shifting later slots of the cluster back.
    fn index_remove(&mut self, index: Index, hash: u64, value: u16) {
        let (table, slab) = self.table_mut(index);
        let start = ideal(hash, table.len());
        let Probe::Hit(pos) = probe(table, start, |&v| v == 0, |&v| v == value) else {
            return;
        };
        let len = table.len();
        shift_delete(
            table,
            pos,
            0,
            |&v| v == 0,
            |&v| match slab.get(untag(v)) {
                Some(e) => ideal(index_hash(index, e), len),
                // Names no mapping (never): leave it where it is.
                None => usize::MAX,
            },
        );
    }

    /// Rewrites the slot holding `from` (hash `hash`) in `index` to `to`,
    /// if there is one.
    fn index_repoint(&mut self, index: Index, hash: u64, from: u16, to: u16) {
        let (table, _) = self.table_mut(index);
        let start = ideal(hash, table.len());
        if let Probe::Hit(pos) = probe(table, start, |&v| v == 0, |&v| v == from) {
            if let Some(slot) = table.get_mut(pos) {
                *slot = to;
            }
        }
    }

    fn table_mut(&mut self, index: Index) -> (&mut [u16], &[Entry]) {
        let table = match index {
            Index::Key => self.by_key.as_flattened_mut(),
            Index::Port => self.by_port.as_flattened_mut(),
            Index::Console => self.by_console.as_flattened_mut(),
        };
        (table, &self.slab)
    }

    /// Panics unless the table is consistent: every index table holds
    /// exactly the mappings it should, each reachable from its hash's slot;
    /// ports and keys are unique, in the range and neither blocked nor 0;
    /// console rings and home counts match the mappings; counters add up.
    /// For tests and fuzzing (O(N·homes)).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let len = self.slab.len();
        assert!(len <= N);
        for index in [Index::Key, Index::Port, Index::Console] {
            let table = self.table(index);
            assert_eq!(table.len(), 2 * N);
            let mut occupied = 0;
            for (pos, &v) in table.iter().enumerate() {
                if v == 0 {
                    continue;
                }
                occupied += 1;
                let e = self.slab.get(untag(v));
                assert!(e.is_some(), "{index:?}[{pos}] = {v} names no mapping");
                let Some(e) = e else { continue };
                // No empty slot between the hash's slot and this one.
                let mut p = ideal(index_hash(index, e), table.len());
                while p != pos {
                    assert_ne!(table.get(p), Some(&0), "{index:?}[{pos}] unreachable");
                    p = next(p, table.len());
                }
            }
            let expected = if index == Index::Console {
                self.consoles
            } else {
                len
            };
            assert_eq!(occupied, expected, "{index:?} holds {occupied} slots");
        }
        let mut ring_total = 0;
        for (i, e) in self.slab.iter().enumerate() {
            let port = e.port.get();
            assert!(self.config.contains(port), "port {port} out of range");
            assert!(!self.blocked.iter().any(|&b| b == port), "blocked {port}");
            assert_eq!(self.find_port(port), Some(i), "port {port} not unique");
            assert_eq!(
                self.find(Index::Key, key_hash(&e.internal), |x| x.internal
                    == e.internal),
                Some(i),
                "key {:?} not unique",
                e.internal
            );
            assert!(e.created <= e.last_out);
            assert!(self.earliest.is_some_and(|t| t <= e.last_out));
            let prev = self.slab.get(usize::from(e.prev));
            let next = self.slab.get(usize::from(e.next));
            assert_eq!(prev.map(|p| usize::from(p.next)), Some(i), "ring prev");
            assert_eq!(next.map(|n| usize::from(n.prev)), Some(i), "ring next");
            assert!(next.is_some_and(|n| same_console(&n.internal, &e.internal)));
            let rep = self.find(Index::Console, console_hash(&e.internal), |x| {
                same_console(&x.internal, &e.internal)
            });
            assert!(rep.is_some(), "console of {:?} not indexed", e.internal);
            if rep == Some(i) {
                // Walk its ring once.
                let mut at = i;
                let mut steps = 0;
                loop {
                    steps += 1;
                    assert!(steps <= len, "ring of {i} does not close");
                    at = self.slab.get(at).map_or(i, |x| usize::from(x.next));
                    if at == i {
                        break;
                    }
                }
                ring_total += steps;
            }
            assert!(self.count_of(e.internal.home) >= 1);
        }
        assert_eq!(ring_total, len, "rings do not cover the mappings once");
        let mut homes = 0;
        let mut counted = 0;
        for h in self.homes.iter().filter(|h| h.count > 0) {
            homes += 1;
            counted += usize::from(h.count);
            assert!(h.count <= self.config.quota, "home {} over quota", h.addr);
            let actual = self
                .slab
                .iter()
                .filter(|e| e.internal.home == h.addr)
                .count();
            assert_eq!(usize::from(h.count), actual, "home {} count", h.addr);
            assert!(matches!(self.home_probe(h.addr), Probe::Hit(_)));
        }
        assert_eq!(homes, self.home_count);
        assert!(homes <= EXIT_HOMES);
        assert_eq!(counted, len);
        assert_eq!(self.earliest.is_none(), len == 0);
        let s = &self.stats;
        assert_eq!(s.created, len as u64 + s.expired + s.removed, "counters");
        assert!(self.config.timeout >= MIN_TIMEOUT && self.config.first_port >= 1);
    }
}

/// Adds one to a counter.
fn bump(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

/// The index-table value naming mapping `i`: `i + 1` (`N` ≤ 65535).
fn tag(i: usize) -> u16 {
    u16::try_from(i.wrapping_add(1)).unwrap_or(0)
}

/// Index `i` of a mapping as the rings store it (`N` ≤ 65535).
fn short(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// The mapping an index-table value names.
fn untag(v: u16) -> usize {
    usize::from(v).wrapping_sub(1)
}

fn same_console(a: &Internal, b: &Internal) -> bool {
    a.home == b.home && a.addr.ip() == b.addr.ip()
}

fn console_hasher(i: &Internal) -> Fnv {
    let mut h = Fnv::new();
    h.write(&i.home.octets());
    h.write(&i.addr.ip().octets());
    h
}

fn console_hash(i: &Internal) -> u64 {
    console_hasher(i).finish()
}

/// FNV-1a of the key's 10 bytes (home, console IP, console port): the same
/// on every platform.
fn key_hash(i: &Internal) -> u64 {
    let mut h = console_hasher(i);
    h.write(&i.addr.port().to_be_bytes());
    h.finish()
}

fn port_hash(port: u16) -> u64 {
    let mut h = Fnv::new();
    h.write(&port.to_be_bytes());
    h.finish()
}

fn home_hash(home: Ipv4Addr) -> u64 {
    let mut h = Fnv::new();
    h.write(&home.octets());
    h.finish()
}

/// The hash `index` files mapping `e` under.
fn index_hash(index: Index, e: &Entry) -> u64 {
    match index {
        Index::Key => key_hash(&e.internal),
        Index::Port => port_hash(e.port.get()),
        Index::Console => console_hash(&e.internal),
    }
}

/// The slot a hash belongs in, in a table of `len` slots (`len` < 2³²):
/// the high half of the hash scaled to `len` (Lemire's multiply-shift), so
/// any `len` works, not only powers of two.
fn ideal(hash: u64, len: usize) -> usize {
    (((hash >> 32) * len as u64) >> 32) as usize
}

fn next(pos: usize, len: usize) -> usize {
    if pos + 1 >= len {
        0
    } else {
        pos + 1
    }
}

/// Linear probing from `start`: the first slot for which `hit` holds, or
/// the first empty one.
fn probe<T>(
    table: &[T],
    start: usize,
    is_empty: impl Fn(&T) -> bool,
    mut hit: impl FnMut(&T) -> bool,
) -> Probe {
    let mut pos = start;
    for _ in 0..table.len() {
        let Some(slot) = table.get(pos) else {
            break;
        };
        if is_empty(slot) {
            return Probe::Vacant(pos);
        }
        if hit(slot) {
            return Probe::Hit(pos);
        }
        pos = next(pos, table.len());
    }
    Probe::Exhausted
}

/// Empties slot `pos` and closes the gap (backward-shift deletion, no
/// tombstones): each later slot of the cluster moves into the hole if the
/// hole is on its probe path (between its `home` slot and itself).
fn shift_delete<T: Copy>(
    table: &mut [T],
    pos: usize,
    empty: T,
    is_empty: impl Fn(&T) -> bool,
    home: impl Fn(&T) -> usize,
) {
    let len = table.len();
    let Some(slot) = table.get_mut(pos) else {
        return;
    };
    *slot = empty;
    let mut hole = pos;
    let mut j = pos;
    for _ in 1..len {
        j = next(j, len);
        let Some(&v) = table.get(j) else {
            return;
        };
        if is_empty(&v) {
            return;
        }
        let home = home(&v);
        if home >= len {
            continue;
        }
        // Distances travelled backwards from j, cyclically.
        let to_home = (j + len - home) % len;
        let to_hole = (j + len - hole) % len;
        if to_hole <= to_home {
            if let Some(h) = table.get_mut(hole) {
                *h = v;
            }
            if let Some(s) = table.get_mut(j) {
                *s = empty;
            }
            hole = j;
        }
    }
}

#[cfg(test)]
mod tests;
