//! Routing information bases (RFC 4271 §3.2, §9).
//!
//! One table, keyed by prefix, holds every path learned for the prefix — the
//! union of all peers' Adj-RIB-In ([`Rib::adj_rib_in`] is the per-peer view) —
//! kept ranked by the decision process of RFC 4271 §9.1.2.2, so the first path
//! is the Loc-RIB's best and the leading [`Entry::ecmp_len`] paths form the
//! multipath set. Every path remembers the step that ranked it: for the best,
//! the step that decided; for the others, the step at which they lost.
//!
//! Export (§9.1.3) is tracked per entry with two peer bitmasks: which peers
//! still need to hear about the entry's current best path, and which peers
//! were told about it (so a withdrawal is sent only where an announcement was).
//!
//! The FIB view ([`Rib::lookup`]) is a longest-prefix match over the entries
//! that have a best path.
//!
//! Capacities are const generics: `P` prefixes, `A` distinct attribute sets.
//! Running out is [`RibError`], never a panic.

use core::cell::Cell;
use core::hash::{Hash, Hasher};
use core::net::{IpAddr, Ipv4Addr};

use crate::bgp::attr::PathAttributes;
use crate::hash::Fnv;
use crate::prefix::{mask128, mask32, Family, Prefix};

/// Index of a BGP peer (session) in the node; at most [`MAX_PEERS`].
pub type PeerId = u8;
pub const MAX_PEERS: usize = 64;
/// Most paths one prefix may have (one per peer that sends it, plus local).
pub const MAX_PATHS: usize = 32;
/// Latencies closer than this (or than a fifth of the smaller) count as equal.
pub const LATENCY_TOLERANCE_US: u32 = 2_000;
/// LOCAL_PREF assumed for routes that carry none (eBGP routes).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// Where a path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Originated by this node.
    Local,
    Peer(PeerId),
}

/// What the decision process needs to know about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub address: IpAddr,
    pub ebgp: bool,
    /// Measured round-trip time to the peer, in microseconds; the caller damps
    /// jitter (hysteresis) before it changes this. Used as the "interior
    /// cost" tie-break (§9.1.2.2 e).
    pub latency: Option<u32>,
}

/// The steps of the decision process, in order (RFC 4271 §9.1.2.2, with a
/// local-origin preference first and measured latency as the interior cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DecisionStep {
    /// The only path: nothing to compare.
    OnlyPath,
    /// A route this node originates beats any learned one.
    LocalOrigin,
    /// Highest degree of preference (LOCAL_PREF).
    LocalPref,
    /// Shortest AS_PATH.
    AsPathLength,
    /// Lowest ORIGIN.
    Origin,
    /// Lowest MULTI_EXIT_DISC among paths from the same neighbor AS.
    Med,
    /// A path learned over eBGP beats one learned over iBGP.
    EbgpOverIbgp,
    /// Lowest measured latency to the next hop.
    Latency,
    /// Lowest BGP identifier of the advertising peer.
    RouterId,
    /// Lowest peer address.
    PeerAddress,
    /// Identical in every respect: the older entry wins.
    Arbitrary,
}

impl DecisionStep {
    /// A short phrase for status output: "why the best path won".
    pub fn describe(self) -> &'static str {
        match self {
            DecisionStep::OnlyPath => "only path",
            DecisionStep::LocalOrigin => "local origin",
            DecisionStep::LocalPref => "higher local preference",
            DecisionStep::AsPathLength => "shorter AS path",
            DecisionStep::Origin => "lower origin",
            DecisionStep::Med => "lower MED",
            DecisionStep::EbgpOverIbgp => "eBGP over iBGP",
            DecisionStep::Latency => "lower latency",
            DecisionStep::RouterId => "lower router id",
            DecisionStep::PeerAddress => "lower peer address",
            DecisionStep::Arbitrary => "first received",
        }
    }
}

/// Handle of an interned attribute set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttrId(u16);

/// One path for a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    pub source: Source,
    pub attrs: AttrId,
    /// For the best path, the step that decided; for the others, the step at
    /// which they lost to the best.
    pub step: DecisionStep,
}

/// A prefix with its ranked paths.
#[derive(Debug, Clone)]
pub struct Entry {
    pub prefix: Prefix,
    /// Ranked: `paths[0]` is the best.
    paths: heapless::Vec<Path, MAX_PATHS>,
    ecmp: u8,
    /// Peers that still need an UPDATE for this entry.
    pending_to: u64,
    /// Peers we announced this prefix to (and have not withdrawn from).
    advertised_to: u64,
    /// The outcome of the last decision: best path and multipath members, to
    /// tell whether a new decision changed anything.
    decided: Option<(Source, AttrId)>,
    decided_set: (u64, bool),
}

impl Entry {
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }
    pub fn best(&self) -> Option<&Path> {
        self.paths.first()
    }
    /// How many leading paths are equally good for multipath forwarding.
    pub fn ecmp_len(&self) -> usize {
        self.ecmp as usize
    }
    pub fn multipath(&self) -> &[Path] {
        let n = (self.ecmp as usize).min(self.paths.len());
        &self.paths[..n]
    }

    fn multipath_set(&self) -> (u64, bool) {
        self.multipath()
            .iter()
            .fold((0, false), |(m, local), p| match p.source {
                Source::Local => (m, true),
                Source::Peer(id) => (m | bit(id), local),
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RibError {
    /// No room for another prefix.
    PrefixesFull,
    /// No room for another path to this prefix.
    PathsFull,
    /// No room for another distinct attribute set.
    AttrsFull,
    /// The AS_PATH already contains our AS (RFC 4271 §9.1.2).
    AsPathLoop,
    UnknownPeer,
}

/// What an update did to the Loc-RIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The best path (or the multipath set) for the prefix changed.
    BestChanged,
    /// Only a non-best path changed.
    Unchanged,
}

#[derive(Debug, Clone)]
struct AttrSlot {
    refs: u32,
    hash: u64,
    attrs: PathAttributes,
}

/// Interned attribute sets: routes announced together share one.
#[derive(Debug)]
struct AttrPool<const A: usize> {
    /// Grows to the most sets held at once (a freed set leaves a hole the
    /// next one takes): a pool that never held many never touched the rest
    /// of its capacity.
    slots: heapless::Vec<Option<AttrSlot>, A>,
    used: usize,
}

fn attr_hash(a: &PathAttributes) -> u64 {
    let mut h = Fnv::new();
    a.hash(&mut h);
    h.finish()
}

impl<const A: usize> AttrPool<A> {
    const fn new() -> Self {
        AttrPool {
            slots: heapless::Vec::new(),
            used: 0,
        }
    }

    fn intern(&mut self, attrs: &PathAttributes) -> Result<AttrId, RibError> {
        let hash = attr_hash(attrs);
        let mut free = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            match slot {
                Some(s) if s.hash == hash && s.attrs == *attrs => {
                    s.refs += 1;
                    return Ok(AttrId(i as u16));
                }
                None if free.is_none() => free = Some(i),
                _ => {}
            }
        }
        let slot = Some(AttrSlot {
            refs: 1,
            hash,
            attrs: attrs.clone(),
        });
        let i = match free {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot).map_err(|_| RibError::AttrsFull)?;
                self.slots.len() - 1
            }
        };
        self.used += 1;
        Ok(AttrId(i as u16))
    }

    fn release(&mut self, id: AttrId) {
        if let Some(slot) = self.slots.get_mut(id.0 as usize) {
            if let Some(s) = slot {
                s.refs -= 1;
                if s.refs == 0 {
                    *slot = None;
                    self.used -= 1;
                }
            }
        }
    }

    fn get(&self, id: AttrId) -> Option<&PathAttributes> {
        self.slots.get(id.0 as usize)?.as_ref().map(|s| &s.attrs)
    }
}

/// One item of export to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportItem {
    /// Announce the prefix with the best path's attributes (the caller applies
    /// the outbound transformation: prepend, next-hop-self).
    Announce(Prefix, AttrId),
    Withdraw(Prefix),
}

/// The routing table. See the module docs.
#[derive(Debug)]
pub struct Rib<const P: usize = 512, const A: usize = 1024> {
    local_asn: u32,
    max_paths: u8,
    peers: [Option<PeerInfo>; MAX_PEERS],
    /// Sorted by prefix, for binary search.
    entries: heapless::Vec<Entry, P>,
    attrs: AttrPool<A>,
    /// Entries per (family, length), in step with `entries`.
    lengths: Lengths,
    /// Paths held per peer (Adj-RIB-In sizes), for max-prefix.
    counts: [u32; MAX_PEERS],
    /// Counters.
    pub stats: RibStats,
    /// The last few destinations looked up and what they matched.
    recent: LookupCache,
}

/// Destinations [`Rib::lookup`] answered recently, and the entry each
/// matched (or none): a game's packets go to one destination, and a hit
/// costs a comparison where the longest-prefix match costs a search per
/// prefix length in use. Direct-mapped on the address; every change to the
/// table empties it (each `&mut self` method of [`Rib`] that is public
/// starts with [`Rib::changed`]).
#[derive(Debug)]
struct LookupCache([Cell<Option<Recent>>; LOOKUP_CACHE]);

/// A destination and the index of the entry it matched, if any.
type Recent = (IpAddr, Option<u32>);

/// Slots in [`LookupCache`].
const LOOKUP_CACHE: usize = 4;

impl LookupCache {
    const fn new() -> Self {
        LookupCache([const { Cell::new(None) }; LOOKUP_CACHE])
    }

    fn slot(&self, addr: IpAddr) -> &Cell<Option<Recent>> {
        let h = match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                a ^ a >> 8
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                (a ^ a >> 64) as u32
            }
        };
        &self.0[h as usize % LOOKUP_CACHE]
    }

    fn clear(&self) {
        for c in &self.0 {
            c.set(None);
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RibStats {
    pub as_path_loops: u64,
    pub full_errors: u64,
    pub best_changes: u64,
}

fn bit(peer: PeerId) -> u64 {
    1u64 << (peer as u32 % 64)
}

fn fam(f: Family) -> usize {
    match f {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

/// How many entries the RIB holds for each (family, prefix length), which
/// lengths have any, and how many each family has: where [`Rib::lookup`]
/// finds each length's run of entries.
#[derive(Debug, PartialEq, Eq)]
struct Lengths {
    counts: [[u16; 129]; 2],
    /// Bit `len % 64` of word `len / 64` is set while `counts[f][len]` is
    /// not zero, so the lookup skips the lengths nothing has.
    used: [[u64; 3]; 2],
    family_total: [usize; 2],
}

impl Lengths {
    const fn new() -> Self {
        Lengths {
            counts: [[0; 129]; 2],
            used: [[0; 3]; 2],
            family_total: [0; 2],
        }
    }

    fn add(&mut self, p: &Prefix) {
        let (f, len) = (fam(p.family()), usize::from(p.prefix_len()));
        if let Some(c) = self.counts[f].get_mut(len) {
            *c += 1;
            self.used[f][len / 64] |= 1 << (len % 64);
            self.family_total[f] += 1;
        }
    }

    fn remove(&mut self, p: &Prefix) {
        let (f, len) = (fam(p.family()), usize::from(p.prefix_len()));
        if let Some(c) = self.counts[f].get_mut(len).filter(|c| **c > 0) {
            *c -= 1;
            if *c == 0 {
                self.used[f][len / 64] &= !(1 << (len % 64));
            }
            self.family_total[f] -= 1;
        }
    }

    fn count(&self, f: usize, len: usize) -> usize {
        let counts = self.counts.get(f);
        counts.and_then(|c| c.get(len)).map_or(0, |&c| c.into())
    }

    fn total(&self) -> usize {
        self.family_total[0] + self.family_total[1]
    }
}

impl<const P: usize, const A: usize> Rib<P, A> {
    /// `max_paths` bounds the multipath set (1 disables ECMP).
    pub const fn new(local_asn: u32, max_paths: u8) -> Self {
        Rib {
            local_asn,
            max_paths: if max_paths == 0 { 1 } else { max_paths },
            peers: [None; MAX_PEERS],
            entries: heapless::Vec::new(),
            attrs: AttrPool::new(),
            lengths: Lengths::new(),
            counts: [0; MAX_PEERS],
            stats: RibStats {
                as_path_loops: 0,
                full_errors: 0,
                best_changes: 0,
            },
            recent: LookupCache::new(),
        }
    }

    /// The table is about to change: what lookups remembered is stale.
    fn changed(&self) {
        self.recent.clear();
    }

    /// Empties the table in place for a new owner: what [`Rib::new`] makes,
    /// without building a whole table to copy over this one (whose unused
    /// capacity stays as untouched as it was).
    pub fn reset(&mut self, local_asn: u32, max_paths: u8) {
        self.changed();
        self.local_asn = local_asn;
        self.max_paths = if max_paths == 0 { 1 } else { max_paths };
        self.peers = [None; MAX_PEERS];
        self.entries.clear();
        self.attrs.slots.clear();
        self.attrs.used = 0;
        self.lengths = Lengths::new();
        self.counts = [0; MAX_PEERS];
        self.stats = RibStats::default();
    }

    pub fn local_asn(&self) -> u32 {
        self.local_asn
    }

    pub fn set_max_paths(&mut self, max_paths: u8) {
        self.changed();
        self.max_paths = max_paths.max(1);
        for i in 0..self.entries.len() {
            self.decide(i);
        }
    }

    // ---- peers ----

    /// Registers or updates a peer. A change of latency re-runs the decision
    /// for every prefix the peer sends.
    pub fn set_peer(&mut self, peer: PeerId, info: PeerInfo) {
        self.changed();
        let Some(slot) = self.peers.get_mut(peer as usize) else {
            return;
        };
        let changed = *slot != Some(info);
        *slot = Some(info);
        if changed {
            self.redecide_peer(peer);
        }
    }

    pub fn peer(&self, peer: PeerId) -> Option<&PeerInfo> {
        self.peers.get(peer as usize)?.as_ref()
    }

    /// Forgets a peer after [`Rib::peer_down`].
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.changed();
        self.peer_down(peer);
        if let Some(slot) = self.peers.get_mut(peer as usize) {
            *slot = None;
        }
    }

    fn redecide_peer(&mut self, peer: PeerId) {
        for i in 0..self.entries.len() {
            if self.entries[i]
                .paths
                .iter()
                .any(|p| p.source == Source::Peer(peer))
            {
                self.decide(i);
            }
        }
    }

    // ---- routes in ----

    /// Adds or replaces the path from `source` for `prefix` (implicit withdraw
    /// of the previous one, RFC 4271 §9).
    pub fn update(
        &mut self,
        source: Source,
        prefix: Prefix,
        attrs: &PathAttributes,
    ) -> Result<Change, RibError> {
        self.changed();
        if let Source::Peer(p) = source {
            if self.peer(p).is_none() {
                return Err(RibError::UnknownPeer);
            }
            // §9.1.2: a route whose AS_PATH holds our own AS is excluded.
            if attrs.as_path.contains(self.local_asn) {
                self.stats.as_path_loops += 1;
                self.withdraw(source, prefix);
                return Err(RibError::AsPathLoop);
            }
        }
        let idx = match self.find(&prefix) {
            Ok(i) => i,
            Err(i) => {
                let entry = Entry {
                    prefix,
                    paths: heapless::Vec::new(),
                    ecmp: 0,
                    pending_to: 0,
                    advertised_to: 0,
                    decided: None,
                    decided_set: (0, false),
                };
                if self.entries.insert(i, entry).is_err() {
                    self.stats.full_errors += 1;
                    return Err(RibError::PrefixesFull);
                }
                self.lengths.add(&prefix);
                i
            }
        };
        let id = match self.attrs.intern(attrs) {
            Ok(id) => id,
            Err(e) => {
                self.stats.full_errors += 1;
                self.gc(idx);
                return Err(e);
            }
        };
        let entry = &mut self.entries[idx];
        match entry.paths.iter_mut().find(|p| p.source == source) {
            Some(path) => {
                let old = path.attrs;
                path.attrs = id;
                self.attrs.release(old);
            }
            None => {
                let path = Path {
                    source,
                    attrs: id,
                    step: DecisionStep::OnlyPath,
                };
                if entry.paths.push(path).is_err() {
                    self.attrs.release(id);
                    self.stats.full_errors += 1;
                    return Err(RibError::PathsFull);
                }
                if let Source::Peer(p) = source {
                    self.counts[p as usize] += 1;
                }
            }
        }
        Ok(self.decide(idx))
    }

    /// Removes the path from `source` for `prefix`, if there is one.
    pub fn withdraw(&mut self, source: Source, prefix: Prefix) -> Change {
        self.changed();
        let Ok(idx) = self.find(&prefix) else {
            return Change::Unchanged;
        };
        let entry = &mut self.entries[idx];
        let Some(pos) = entry.paths.iter().position(|p| p.source == source) else {
            return Change::Unchanged;
        };
        let path = entry.paths.remove(pos);
        self.attrs.release(path.attrs);
        if let Source::Peer(p) = source {
            self.counts[p as usize] -= 1;
        }
        let change = self.decide(idx);
        self.gc(idx);
        change
    }

    /// The session with `peer` went down: drop its Adj-RIB-In and forget what
    /// we advertised to it. Returns how many best paths changed.
    pub fn peer_down(&mut self, peer: PeerId) -> usize {
        self.changed();
        let mut changed = 0;
        let mut i = 0;
        while i < self.entries.len() {
            let e = &mut self.entries[i];
            e.pending_to &= !bit(peer);
            e.advertised_to &= !bit(peer);
            let before = self.entries.len();
            if let Some(pos) = self.entries[i]
                .paths
                .iter()
                .position(|p| p.source == Source::Peer(peer))
            {
                let path = self.entries[i].paths.remove(pos);
                self.attrs.release(path.attrs);
                if self.decide(i) == Change::BestChanged {
                    changed += 1;
                }
            }
            self.gc(i);
            if self.entries.len() == before {
                i += 1;
            }
        }
        if let Some(c) = self.counts.get_mut(peer as usize) {
            *c = 0;
        }
        changed
    }

    /// Drops every path learned from a peer whose attributes `gone` picks
    /// (e.g. those a member no longer in the group originated), as if each
    /// had been withdrawn. Returns how many best paths changed.
    pub fn withdraw_where(&mut self, mut gone: impl FnMut(&PathAttributes) -> bool) -> usize {
        self.changed();
        let mut changed = 0;
        let mut i = 0;
        while i < self.entries.len() {
            let before = self.entries.len();
            let mut dropped = false;
            let mut k = 0;
            while k < self.entries[i].paths.len() {
                let path = self.entries[i].paths[k];
                let drop = match path.source {
                    Source::Peer(_) => self.attrs.get(path.attrs).is_some_and(&mut gone),
                    _ => false,
                };
                if !drop {
                    k += 1;
                    continue;
                }
                self.entries[i].paths.remove(k);
                self.attrs.release(path.attrs);
                if let Source::Peer(p) = path.source {
                    if let Some(c) = self.counts.get_mut(p as usize) {
                        *c = c.saturating_sub(1);
                    }
                }
                dropped = true;
            }
            if dropped && self.decide(i) == Change::BestChanged {
                changed += 1;
            }
            self.gc(i);
            if self.entries.len() == before {
                i += 1;
            }
        }
        changed
    }

    /// Paths held from `peer` (its Adj-RIB-In size).
    pub fn count_from(&self, peer: PeerId) -> usize {
        self.counts.get(peer as usize).copied().unwrap_or(0) as usize
    }

    // ---- reading ----

    fn find(&self, prefix: &Prefix) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.prefix.cmp(prefix))
    }

    pub fn entry(&self, prefix: &Prefix) -> Option<&Entry> {
        self.find(prefix).ok().map(|i| &self.entries[i])
    }

    pub fn attrs(&self, id: AttrId) -> Option<&PathAttributes> {
        self.attrs.get(id)
    }

    /// Every entry with a best path: the Loc-RIB.
    pub fn loc_rib(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter().filter(|e| !e.paths.is_empty())
    }

    /// The routes `peer` sent us: its Adj-RIB-In.
    pub fn adj_rib_in(&self, peer: PeerId) -> impl Iterator<Item = (Prefix, &PathAttributes)> + '_ {
        self.entries.iter().filter_map(move |e| {
            let p = e.paths.iter().find(|p| p.source == Source::Peer(peer))?;
            Some((e.prefix, self.attrs.get(p.attrs)?))
        })
    }

    pub fn len(&self) -> usize {
        self.loc_rib().count()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(|e| e.paths.is_empty())
    }

    /// Distinct attribute sets in use.
    pub fn attr_sets(&self) -> usize {
        self.attrs.used
    }

    /// Longest-prefix match: the most specific entry with a best path that
    /// covers `addr`.
    ///
    /// Every forwarded packet asks this. `entries` holds each (family,
    /// length) as one run sorted by address, the family's longest lengths
    /// last, so the counts alone place each run; only lengths in use are
    /// tried, and a run is searched by the address as an integer.
    pub fn lookup(&self, addr: IpAddr) -> Option<&Entry> {
        let recent = self.recent.slot(addr);
        if let Some((a, hit)) = recent.get() {
            if a == addr {
                return self.entries.get(hit? as usize);
            }
        }
        let found = self.search(addr);
        recent.set(Some((addr, found.map(|i| i as u32))));
        self.entries.get(found?)
    }

    /// [`Rib::lookup`] without the cache: the index of the entry.
    fn search(&self, addr: IpAddr) -> Option<usize> {
        debug_assert_eq!(self.lengths.total(), self.entries.len());
        let used = &self.lengths.used;
        match addr {
            // IPv4's block comes first; its lengths (0 to 32) are bits of
            // one word, its keys 32 bits.
            IpAddr::V4(a) => {
                let a = u32::from(a);
                let end = self.lengths.family_total[0];
                self.longest_match(0, end, &used[0][..1], Prefix::bits4, |len| a & mask32(len))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                let end = self.entries.len();
                self.longest_match(1, end, &used[1], Prefix::bits, |len| a & mask128(len))
            }
        }
    }

    /// The lookup in family `f`'s block, which ends at `end`: its lengths
    /// in use (`used`, bit `len % 64` of word `len / 64`), longest first,
    /// each a run sorted by `bits`, searched for `key(len)`; the first entry
    /// found with a path.
    fn longest_match<K: Ord>(
        &self,
        f: usize,
        mut end: usize,
        used: &[u64],
        bits: impl Fn(&Prefix) -> K,
        key: impl Fn(u8) -> K,
    ) -> Option<usize> {
        for (w, &word) in used.iter().enumerate().rev() {
            let mut left = word;
            while let Some(top) = 63u32.checked_sub(left.leading_zeros()) {
                left ^= 1 << top;
                let len = w * 64 + top as usize;
                let start = end.checked_sub(self.lengths.count(f, len))?;
                let run = self.entries.get(start..end)?;
                end = start;
                let key = key(len as u8);
                if let Ok(i) = run.binary_search_by(|e| bits(&e.prefix).cmp(&key)) {
                    if run.get(i).is_some_and(|e| !e.paths.is_empty()) {
                        return Some(start + i);
                    }
                }
            }
        }
        None
    }

    // ---- the decision process ----

    fn info(&self, s: Source) -> Option<&PeerInfo> {
        match s {
            Source::Local => None,
            Source::Peer(p) => self.peer(p),
        }
    }

    /// Re-ranks the paths of entry `idx`; returns whether the best path or the
    /// multipath set changed, and marks the entry for export if so.
    fn decide(&mut self, idx: usize) -> Change {
        let n = self.entries[idx].paths.len();
        let mut ranked: heapless::Vec<Path, MAX_PATHS> = heapless::Vec::new();
        let mut remaining: u32 = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
        let mut first_round = [DecisionStep::OnlyPath; MAX_PATHS];
        let mut ecmp = 0u8;
        let mut round = 0;
        // Rank by repeated elimination. The multipath members tie with the
        // winner through the latency step, so they win the next rounds and stay
        // contiguous at the front.
        while remaining != 0 {
            let (winner, step, lost, multipath) = self.eliminate(idx, remaining);
            if round == 0 {
                first_round = lost;
                first_round[winner] = step;
                ecmp = (multipath.count_ones() as u8).min(self.max_paths);
            }
            let mut path = self.entries[idx].paths[winner];
            path.step = first_round[winner];
            let _ = ranked.push(path);
            remaining &= !(1 << winner);
            round += 1;
        }
        let entry = &mut self.entries[idx];
        entry.paths = ranked;
        entry.ecmp = if entry.paths.is_empty() {
            0
        } else {
            ecmp.max(1)
        };
        let best = entry.paths.first().map(|p| (p.source, p.attrs));
        let set = entry.multipath_set();
        if best != entry.decided || set != entry.decided_set {
            entry.decided = best;
            entry.decided_set = set;
            // Every peer that was told, or may now be told, needs an update.
            entry.pending_to = u64::MAX;
            self.stats.best_changes += 1;
            Change::BestChanged
        } else {
            Change::Unchanged
        }
    }

    /// One round of elimination over the paths in `candidates` (a bitmask of
    /// indices into the entry's paths). Returns the winner, the step that
    /// decided, the step at which each other candidate fell, and the set still
    /// standing after the latency step (the multipath set).
    fn eliminate(
        &self,
        idx: usize,
        candidates: u32,
    ) -> (usize, DecisionStep, [DecisionStep; MAX_PATHS], u32) {
        let paths = &self.entries[idx].paths;
        let mut lost = [DecisionStep::Arbitrary; MAX_PATHS];
        let mut set = candidates;
        let mut decided = DecisionStep::OnlyPath;
        let mut multipath = 0;
        let members = |set: u32| (0..paths.len()).filter(move |i| set & (1 << i) != 0);
        let attrs = |i: usize| self.attrs.get(paths[i].attrs);

        // Keeps, among `set`, the candidates with the minimum key; records the
        // others as lost at `step`. `None` keys tie with everything.
        macro_rules! keep_min {
            ($step:expr, $key:expr) => {
                if set.count_ones() > 1 {
                    let key = $key;
                    let best = members(set).filter_map(|i| key(i)).min();
                    if let Some(best) = best {
                        let mut next = set;
                        for i in members(set) {
                            if key(i).is_some_and(|k| k != best) {
                                next &= !(1 << i);
                                lost[i] = $step;
                            }
                        }
                        if next.count_ones() == 1 && set.count_ones() > 1 {
                            decided = $step;
                        }
                        set = next;
                    }
                }
            };
        }

        keep_min!(DecisionStep::LocalOrigin, |i: usize| Some(
            (paths[i].source != Source::Local) as u8
        ));
        keep_min!(DecisionStep::LocalPref, |i: usize| attrs(i)
            .map(|a| u32::MAX - a.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)));
        keep_min!(DecisionStep::AsPathLength, |i: usize| attrs(i)
            .map(|a| a.as_path.selection_len()));
        keep_min!(DecisionStep::Origin, |i: usize| attrs(i)
            .map(|a| u8::from(a.origin)));
        // MED: compared only between paths from the same neighbor AS (§9.1.2.2 c).
        if set.count_ones() > 1 {
            let mut next = set;
            for i in members(set) {
                let (Some(ai), nas) = (attrs(i), attrs(i).and_then(|a| a.as_path.first_as()))
                else {
                    continue;
                };
                let beaten = members(set).any(|j| {
                    j != i
                        && attrs(j).is_some_and(|aj| {
                            aj.as_path.first_as() == nas
                                && aj.med.unwrap_or(0) < ai.med.unwrap_or(0)
                        })
                });
                if beaten {
                    next &= !(1 << i);
                    lost[i] = DecisionStep::Med;
                }
            }
            if next.count_ones() == 1 && set.count_ones() > 1 {
                decided = DecisionStep::Med;
            }
            set = next;
        }
        keep_min!(DecisionStep::EbgpOverIbgp, |i: usize| Some(
            self.info(paths[i].source).is_some_and(|p| !p.ebgp) as u8
        ));
        // Latency: paths within a tolerance of the fastest stay (a millisecond
        // is no reason to prefer a path, and measurements jitter); a path
        // whose latency is unknown cannot be excluded on latency.
        if set.count_ones() > 1 {
            let latency = |i: usize| self.info(paths[i].source).and_then(|p| p.latency);
            if let Some(best) = members(set).filter_map(latency).min() {
                let limit = best.saturating_add(LATENCY_TOLERANCE_US.max(best / 5));
                let mut next = set;
                for i in members(set) {
                    if latency(i).is_some_and(|l| l > limit) {
                        next &= !(1 << i);
                        lost[i] = DecisionStep::Latency;
                    }
                }
                if next.count_ones() == 1 {
                    decided = DecisionStep::Latency;
                }
                set = next;
            }
        }
        if multipath == 0 {
            multipath = set;
        }
        keep_min!(DecisionStep::RouterId, |i: usize| self
            .info(paths[i].source)
            .map(|p| u32::from(p.router_id)));
        keep_min!(DecisionStep::PeerAddress, |i: usize| self
            .info(paths[i].source)
            .map(|p| p.address));
        // Still tied: the earliest path wins.
        let winner = members(set).next().unwrap_or(0);
        for i in members(set) {
            if i != winner {
                lost[i] = DecisionStep::Arbitrary;
                decided = DecisionStep::Arbitrary;
            }
        }
        (winner, decided, lost, multipath)
    }

    /// Removes entry `idx` if it has no paths and nothing left to withdraw.
    fn gc(&mut self, idx: usize) {
        let Some(e) = self.entries.get(idx) else {
            return;
        };
        if e.paths.is_empty() && e.advertised_to == 0 {
            let e = self.entries.remove(idx);
            self.lengths.remove(&e.prefix);
        }
    }

    // ---- export ----

    /// A session with `peer` came up: everything is pending for it.
    pub fn peer_up(&mut self, peer: PeerId) {
        self.changed();
        for e in self.entries.iter_mut() {
            e.advertised_to &= !bit(peer);
            if !e.paths.is_empty() {
                e.pending_to |= bit(peer);
            }
        }
    }

    /// Marks every entry pending for `peer` again (ROUTE-REFRESH).
    pub fn refresh(&mut self, peer: PeerId) {
        self.changed();
        for e in self.entries.iter_mut() {
            e.pending_to |= bit(peer);
        }
    }

    /// Whether anything waits to be sent to `peer`.
    pub fn has_pending(&self, peer: PeerId) -> bool {
        self.entries.iter().any(|e| e.pending_to & bit(peer) != 0)
    }

    /// What to send `peer` for entry `e`: the best path, unless it came from
    /// that peer or already carries its AS (sender-side loop prevention).
    fn export_for(&self, e: &Entry, peer: PeerId, peer_asn: u32) -> Option<AttrId> {
        let best = e.paths.first()?;
        if best.source == Source::Peer(peer) {
            return None;
        }
        let attrs = self.attrs.get(best.attrs)?;
        if attrs.as_path.contains(peer_asn) {
            return None;
        }
        Some(best.attrs)
    }

    /// Collects into `batch` the next run of pending items for `peer` that fit
    /// one UPDATE: announcements sharing one attribute set and family, or
    /// withdrawals of one family. Returns the attribute set (`None` for a
    /// withdrawal run); nothing is marked sent until [`Rib::mark_sent`].
    pub fn next_export<const N: usize>(
        &mut self,
        peer: PeerId,
        peer_asn: u32,
        batch: &mut heapless::Vec<Prefix, N>,
    ) -> Option<Option<AttrId>> {
        self.changed();
        batch.clear();
        let mut kind: Option<(Option<AttrId>, Family)> = None;
        let mut i = 0;
        while i < self.entries.len() {
            let e = &self.entries[i];
            if e.pending_to & bit(peer) == 0 {
                i += 1;
                continue;
            }
            let want = self.export_for(e, peer, peer_asn);
            let advertised = e.advertised_to & bit(peer) != 0;
            if want.is_none() && !advertised {
                // Nothing to say: neither announce nor withdraw.
                self.entries[i].pending_to &= !bit(peer);
                self.gc(i);
                continue;
            }
            let k = (want, e.prefix.family());
            match kind {
                None => kind = Some(k),
                Some(prev) if prev == k => {}
                Some(_) => {
                    i += 1;
                    continue;
                }
            }
            if batch.push(e.prefix).is_err() {
                break;
            }
            i += 1;
        }
        kind.map(|(a, _)| a)
    }

    /// `batch` (from [`Rib::next_export`]) was queued to `peer`.
    pub fn mark_sent(&mut self, peer: PeerId, batch: &[Prefix], announced: bool) {
        self.changed();
        for p in batch {
            let Ok(i) = self.find(p) else { continue };
            let e = &mut self.entries[i];
            e.pending_to &= !bit(peer);
            if announced {
                e.advertised_to |= bit(peer);
            } else {
                e.advertised_to &= !bit(peer);
            }
            self.gc(i);
        }
    }
}

#[cfg(test)]
mod tests;
