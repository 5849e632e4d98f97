//! The glue between a [`Session`] and the [`Rib`]: import of a peer's UPDATEs
//! into its Adj-RIB-In (through an import filter), and export of the Loc-RIB
//! to the peer with the eBGP outbound rules (RFC 4271 §5.1, §9.1.3, §9.2).

use core::net::{Ipv4Addr, Ipv6Addr};

use super::attr::{MpNextHop, PathAttributes};
use super::session::{RibFull, SendError, Session, UpdateSink};
use super::update::{Update, UpdateRepr};
use crate::prefix::{Family, Prefix};
use crate::rib::{PeerId, Rib, RibError, Source};

/// Decides whether a route a peer sent may enter the RIB.
pub trait ImportFilter {
    fn accept(&mut self, peer: PeerId, prefix: &Prefix, attrs: &PathAttributes) -> bool;
}

/// Accepts everything (the AS-path loop check is in the RIB itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl ImportFilter for AcceptAll {
    fn accept(&mut self, _: PeerId, _: &Prefix, _: &PathAttributes) -> bool {
        true
    }
}

/// Counters of what import refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    pub filtered: u64,
    pub as_path_loops: u64,
    /// IPv4 or IPv6 routes without a next hop of their family.
    pub no_next_hop: u64,
}

/// An [`UpdateSink`] that applies a peer's UPDATEs to its Adj-RIB-In.
#[derive(Debug)]
pub struct RibImport<'a, const P: usize, const A: usize, F> {
    pub rib: &'a mut Rib<P, A>,
    pub peer: PeerId,
    pub filter: F,
    pub stats: &'a mut ImportStats,
}

impl<const P: usize, const A: usize, F: ImportFilter> UpdateSink for RibImport<'_, P, A, F> {
    fn apply_update(&mut self, update: &Update<'_>) -> Result<usize, RibFull> {
        let source = Source::Peer(self.peer);
        for prefix in update.withdrawn() {
            self.rib.withdraw(source, prefix);
        }
        for prefix in update.announced() {
            let ok = update.attrs.next_hop_for(prefix.family()).is_some();
            if !ok {
                self.stats.no_next_hop += 1;
            }
            if !ok || !self.filter.accept(self.peer, &prefix, &update.attrs) {
                if ok {
                    self.stats.filtered += 1;
                }
                // A refused announcement still replaces what the peer sent
                // before for the prefix (implicit withdraw).
                self.rib.withdraw(source, prefix);
                continue;
            }
            match self.rib.update(source, prefix, &update.attrs) {
                Ok(_) => {}
                Err(RibError::AsPathLoop) => self.stats.as_path_loops += 1,
                Err(RibError::UnknownPeer) => {}
                Err(RibError::PrefixesFull | RibError::PathsFull | RibError::AttrsFull) => {
                    return Err(RibFull)
                }
            }
        }
        Ok(self.rib.count_from(self.peer))
    }
}

/// How routes are rewritten on the way out to an eBGP peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportPolicy {
    pub local_asn: u32,
    /// Our address on the session, used as NEXT_HOP (next-hop-self).
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
}

impl ExportPolicy {
    /// The attributes as sent: own AS prepended, next hop set to ourselves,
    /// MED and LOCAL_PREF not passed on to another AS (RFC 4271 §5.1.4, §5.1.5).
    pub fn outbound(&self, attrs: &PathAttributes) -> Option<PathAttributes> {
        let mut out = attrs.clone();
        out.as_path.prepend(self.local_asn).ok()?;
        out.next_hop = self.next_hop_v4;
        out.mp_next_hop = self.next_hop_v6.map(|global| MpNextHop::V6 {
            global,
            link_local: None,
        });
        out.med = None;
        out.local_pref = None;
        Some(out)
    }

    fn has_next_hop(&self, family: Family) -> bool {
        match family {
            Family::Ipv4 => self.next_hop_v4.is_some(),
            Family::Ipv6 => self.next_hop_v6.is_some(),
        }
    }
}

/// What an [`export`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportProgress {
    pub updates: usize,
    pub prefixes: usize,
    /// Everything pending for the peer was sent.
    pub done: bool,
}

/// Sends the peer what changed in the Loc-RIB since it was last told, as far as
/// the session's transmit buffer allows. Call again once the driver drained it.
pub fn export<const P: usize, const A: usize>(
    session: &mut Session,
    rib: &mut Rib<P, A>,
    peer: PeerId,
    policy: &ExportPolicy,
) -> ExportProgress {
    let mut progress = ExportProgress::default();
    let Some(negotiated) = session.negotiated() else {
        return progress;
    };
    let (v4, v6) = (negotiated.ipv4, negotiated.ipv6);
    let peer_asn = session.config().peer_asn;
    // A full batch of /24s is ~1 kB; keep room for one whole message.
    let mut batch: heapless::Vec<Prefix, 256> = heapless::Vec::new();
    loop {
        if session.tx_space() < super::wire::MAX_MESSAGE_LEN {
            return progress;
        }
        let Some(kind) = rib.next_export(peer, peer_asn, &mut batch) else {
            progress.done = true;
            return progress;
        };
        let Some(&first) = batch.first() else {
            progress.done = true;
            return progress;
        };
        let family = first.family();
        let negotiated_family = match family {
            Family::Ipv4 => v4,
            Family::Ipv6 => v6,
        };
        let out = kind
            .and_then(|id| rib.attrs(id))
            .and_then(|a| policy.outbound(a));
        let result = match (kind, out) {
            _ if !negotiated_family || !policy.has_next_hop(family) => {
                // The peer cannot take this family: nothing is announced.
                rib.mark_sent(peer, &batch, false);
                continue;
            }
            (Some(_), Some(attrs)) => session
                .send_update(&UpdateRepr {
                    withdrawn: &[],
                    attrs: Some(&attrs),
                    announced: &batch,
                    four_octet_as: true,
                })
                .map(|()| true),
            (Some(_), None) => {
                // The path cannot be extended (AS_PATH full): withdraw instead.
                session
                    .send_update(&UpdateRepr {
                        withdrawn: &batch,
                        attrs: None,
                        announced: &[],
                        four_octet_as: true,
                    })
                    .map(|()| false)
            }
            (None, _) => session
                .send_update(&UpdateRepr {
                    withdrawn: &batch,
                    attrs: None,
                    announced: &[],
                    four_octet_as: true,
                })
                .map(|()| false),
        };
        match result {
            Ok(announced) => {
                rib.mark_sent(peer, &batch, announced);
                progress.updates += 1;
                progress.prefixes += batch.len();
            }
            Err(SendError::BufferFull) => return progress,
            Err(e) => {
                log::warn!("bgp: cannot export {} prefixes: {e:?}", batch.len());
                rib.mark_sent(peer, &batch, false);
            }
        }
    }
}
