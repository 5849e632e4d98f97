//! What kind of NAT this node sits behind, in RFC 4787 / RFC 5780 terms, and
//! the PlayStation "NAT type" it implies.
//!
//! The evidence comes from STUN, with other members as servers (every member
//! answers Binding requests on its mesh port):
//! - **mapping**: the public endpoint each member saw for our mesh port. The
//!   same one from two members at different addresses is an
//!   endpoint-independent mapping; different ones are endpoint-dependent
//!   ("symmetric"). Our own address seen means there is no NAT at all.
//! - **filtering**: a Binding request with CHANGE-REQUEST (change port) makes
//!   the member answer from its second port, which we never sent to. If that
//!   answer arrives, the NAT lets in datagrams from endpoints we did not
//!   contact (endpoint-independent filtering, as with a port forwarding);
//!   if only the ordinary answers arrive, filtering is address-and-port
//!   dependent. (The test changes the port, not the address, so an
//!   address-dependent filter would be reported as endpoint-independent;
//!   Linux and most home routers have no such filter.)
//! - **carrier-grade NAT**: the driver looks at the path (a hop in
//!   100.64.0.0/10, RFC 6598) and tells [`NatState::set_cgnat`].
//!
//! Nothing here reads a clock or does I/O: the node feeds observations in.

use core::net::{IpAddr, SocketAddr};

/// How many servers' answers are kept.
pub const MAX_OBSERVATIONS: usize = 8;
/// How many answers to the port-change test decide filtering.
pub const MIN_OBSERVERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    Unknown,
    /// No NAT: members see our own address and port.
    NoNat,
    EndpointIndependent,
    EndpointDependent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    Unknown,
    /// No NAT, or one that forwards the mesh port.
    EndpointIndependent,
    AddressAndPortDependent,
}

/// The behaviour, in the lab's and the user's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Unknown,
    /// A public address: no NAT.
    Open,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    Cone,
    /// Endpoint-independent mapping and filtering (a forwarded port).
    Forwarded,
    /// Endpoint-dependent mapping.
    Symmetric,
    /// Behind a carrier-grade NAT (and whatever is in front of it).
    Cgnat,
}

impl Behaviour {
    /// The code peer exchange carries.
    pub fn code(self) -> u8 {
        match self {
            Behaviour::Unknown => 0,
            Behaviour::Open => 1,
            Behaviour::Cone => 2,
            Behaviour::Forwarded => 3,
            Behaviour::Symmetric => 4,
            Behaviour::Cgnat => 5,
        }
    }

    pub fn from_code(code: u8) -> Behaviour {
        match code {
            1 => Behaviour::Open,
            2 => Behaviour::Cone,
            3 => Behaviour::Forwarded,
            4 => Behaviour::Symmetric,
            5 => Behaviour::Cgnat,
            _ => Behaviour::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Unknown => "unknown",
            Behaviour::Open => "open",
            Behaviour::Cone => "cone",
            Behaviour::Forwarded => "forwarded",
            Behaviour::Symmetric => "symmetric",
            Behaviour::Cgnat => "cgnat",
        }
    }
}

impl Mapping {
    pub fn as_str(self) -> &'static str {
        match self {
            Mapping::Unknown => "unknown",
            Mapping::NoNat => "none",
            Mapping::EndpointIndependent => "endpoint-independent",
            Mapping::EndpointDependent => "endpoint-dependent",
        }
    }
}

impl Filtering {
    pub fn as_str(self) -> &'static str {
        match self {
            Filtering::Unknown => "unknown",
            Filtering::EndpointIndependent => "endpoint-independent",
            Filtering::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

/// One server's view of our mesh port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub server: SocketAddr,
    pub mapped: SocketAddr,
}

/// The evidence gathered so far, and what it says.
#[derive(Debug, Clone)]
pub struct NatState {
    observations: heapless::Vec<Observation, MAX_OBSERVATIONS>,
    /// Port-change tests: answered (true) or given up (false), per server.
    filtering_tests: heapless::Vec<(IpAddr, bool), MAX_OBSERVATIONS>,
    cgnat: Option<bool>,
}

impl Default for NatState {
    fn default() -> Self {
        Self::new()
    }
}

impl NatState {
    pub const fn new() -> NatState {
        NatState {
            observations: heapless::Vec::new(),
            filtering_tests: heapless::Vec::new(),
            cgnat: None,
        }
    }

    /// A Binding success from `server` said we are `mapped`. The newest
    /// answer per server replaces the older one.
    pub fn observe(&mut self, server: SocketAddr, mapped: SocketAddr) {
        let o = Observation { server, mapped };
        if let Some(slot) = self.observations.iter_mut().find(|x| x.server == server) {
            *slot = o;
            return;
        }
        if self.observations.is_full() {
            self.observations.remove(0);
        }
        let _ = self.observations.push(o);
    }

    /// The port-change test against `server` was answered (`true`) or not.
    pub fn filtering_result(&mut self, server: IpAddr, answered: bool) {
        if let Some(slot) = self.filtering_tests.iter_mut().find(|x| x.0 == server) {
            slot.1 = answered;
            return;
        }
        if self.filtering_tests.is_full() {
            self.filtering_tests.remove(0);
        }
        let _ = self.filtering_tests.push((server, answered));
    }

    /// Forgets what one server said (it left the mesh).
    pub fn forget(&mut self, server: SocketAddr) {
        self.observations.retain(|o| o.server != server);
        self.filtering_tests.retain(|t| t.0 != server.ip());
    }

    pub fn set_cgnat(&mut self, cgnat: Option<bool>) {
        self.cgnat = cgnat;
    }

    pub fn observations(&self) -> &[Observation] {
        &self.observations
    }

    /// Distinct server addresses that answered.
    pub fn observers(&self) -> usize {
        let o = &self.observations;
        o.iter()
            .enumerate()
            .filter(|(i, a)| !o[..*i].iter().any(|b| b.server.ip() == a.server.ip()))
            .count()
    }

    /// The mapping behaviour; `local` tells whether an address is one of
    /// this host's own.
    ///
    /// It takes [`MIN_OBSERVERS`] servers to tell a mapping, with one
    /// exception: one server that sees our own public address (not a
    /// private or shared one) shows there is no NAT at all, which is all a
    /// game exit in a mesh of two friends needs to know.
    pub fn mapping(&self, local: impl Fn(IpAddr) -> bool) -> Mapping {
        let Some(first) = self.observations.first().map(|o| o.mapped) else {
            return Mapping::Unknown;
        };
        if self.observers() < MIN_OBSERVERS {
            let open = self.observations.iter().all(|o| o.mapped == first)
                && local(first.ip())
                && is_public(first.ip());
            return if open {
                Mapping::NoNat
            } else {
                Mapping::Unknown
            };
        }
        if self.observations.iter().any(|o| o.mapped != first) {
            Mapping::EndpointDependent
        } else if local(first.ip()) {
            Mapping::NoNat
        } else {
            Mapping::EndpointIndependent
        }
    }

    pub fn filtering(&self) -> Filtering {
        if self.filtering_tests.iter().any(|t| t.1) {
            Filtering::EndpointIndependent
        } else if self.filtering_tests.is_empty() {
            Filtering::Unknown
        } else {
            Filtering::AddressAndPortDependent
        }
    }

    /// Our public endpoint, when the mapping makes it one (the same for
    /// everyone).
    pub fn public_endpoint(&self, local: impl Fn(IpAddr) -> bool) -> Option<SocketAddr> {
        match self.mapping(local) {
            Mapping::NoNat | Mapping::EndpointIndependent => {
                self.observations.first().map(|o| o.mapped)
            }
            _ => None,
        }
    }

    /// Everything in one report.
    pub fn report(&self, local: impl Fn(IpAddr) -> bool + Copy) -> NatReport {
        let mapping = self.mapping(local);
        let filtering = self.filtering();
        let behaviour = match (self.cgnat, mapping, filtering) {
            (_, Mapping::Unknown, _) => Behaviour::Unknown,
            (_, Mapping::NoNat, _) => Behaviour::Open,
            (Some(true), _, _) => Behaviour::Cgnat,
            (_, Mapping::EndpointDependent, _) => Behaviour::Symmetric,
            (_, Mapping::EndpointIndependent, Filtering::EndpointIndependent) => {
                Behaviour::Forwarded
            }
            (_, Mapping::EndpointIndependent, Filtering::AddressAndPortDependent) => {
                Behaviour::Cone
            }
            (_, Mapping::EndpointIndependent, Filtering::Unknown) => Behaviour::Unknown,
        };
        // PlayStation: 1 = a public address, 2 = behind a NAT that keeps one
        // mapping for everyone, 3 = strict (a mapping per destination).
        let playstation = match mapping {
            Mapping::Unknown => None,
            Mapping::NoNat => Some(1),
            Mapping::EndpointIndependent => Some(2),
            Mapping::EndpointDependent => Some(3),
        };
        NatReport {
            mapping,
            filtering,
            behaviour,
            playstation,
            public: self.public_endpoint(local),
            observers: self.observers() as u8,
            cgnat: self.cgnat,
        }
    }
}

/// What `meshd status` shows about the NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatReport {
    pub mapping: Mapping,
    pub filtering: Filtering,
    pub behaviour: Behaviour,
    /// The PlayStation NAT type (1, 2 or 3) this behaviour gives a console.
    pub playstation: Option<u8>,
    /// Our endpoint as others see it, if it is the same for everyone.
    pub public: Option<SocketAddr>,
    /// Members whose STUN answers this is based on.
    pub observers: u8,
    /// A carrier-grade NAT on the path, if the driver could tell.
    pub cgnat: Option<bool>,
}

/// Is `a` an address the internet can reach: not private (RFC 1918, RFC
/// 4193), shared (RFC 6598), loopback, link-local, multicast or unspecified?
pub fn is_public(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || is_shared_address(a)
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80)
        }
    }
}

/// Is `a` in the shared address space of carrier-grade NATs (RFC 6598)?
pub fn is_shared_address(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 100 && (o[1] & 0xc0) == 64
        }
        IpAddr::V6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn local(a: IpAddr) -> bool {
        a == "10.1.0.2".parse::<IpAddr>().unwrap()
    }

    #[test]
    fn one_observer_seeing_our_own_public_address_is_enough_to_know_there_is_no_nat() {
        let public = |a: IpAddr| a == "198.51.100.2".parse::<IpAddr>().unwrap();
        let mut n = NatState::new();
        n.observe(sa("198.51.100.1:51820"), sa("198.51.100.2:51820"));
        assert_eq!(n.mapping(public), Mapping::NoNat);
        assert_eq!(n.report(public).behaviour, Behaviour::Open);
        // Our own address, but a private one: the server may sit on our
        // side of a NAT.
        let mut lan = NatState::new();
        lan.observe(sa("10.1.0.9:51820"), sa("10.1.0.2:51820"));
        assert_eq!(lan.mapping(local), Mapping::Unknown);
    }

    #[test]
    fn one_observer_is_not_enough() {
        let mut n = NatState::new();
        n.observe(sa("198.51.100.1:51820"), sa("198.51.100.103:51820"));
        n.observe(sa("198.51.100.1:51820"), sa("198.51.100.103:51820"));
        assert_eq!(n.mapping(local), Mapping::Unknown);
        assert_eq!(n.report(local).behaviour, Behaviour::Unknown);
    }

    #[test]
    fn the_five_behaviours() {
        let s1 = sa("198.51.100.1:51820");
        let s2 = sa("198.51.100.2:51820");
        // No NAT: members see our own address.
        let mut open = NatState::new();
        open.observe(s1, sa("10.1.0.2:51820"));
        open.observe(s2, sa("10.1.0.2:51820"));
        open.filtering_result(s1.ip(), true);
        let r = open.report(local);
        assert_eq!((r.behaviour, r.playstation), (Behaviour::Open, Some(1)));
        // Cone: one mapping, the port change is filtered.
        let mut cone = NatState::new();
        cone.observe(s1, sa("198.51.100.103:51820"));
        cone.observe(s2, sa("198.51.100.103:51820"));
        assert_eq!(cone.report(local).behaviour, Behaviour::Unknown);
        cone.filtering_result(s1.ip(), false);
        let r = cone.report(local);
        assert_eq!((r.behaviour, r.playstation), (Behaviour::Cone, Some(2)));
        assert_eq!(r.public, Some(sa("198.51.100.103:51820")));
        assert_eq!(r.filtering, Filtering::AddressAndPortDependent);
        // Forwarded: one answer from the second port is enough.
        let mut fwd = cone.clone();
        fwd.filtering_result(s2.ip(), true);
        assert_eq!(fwd.report(local).behaviour, Behaviour::Forwarded);
        // Symmetric: a mapping per destination.
        let mut sym = NatState::new();
        sym.observe(s1, sa("198.51.100.104:40001"));
        sym.observe(s2, sa("198.51.100.104:52377"));
        let r = sym.report(local);
        assert_eq!(
            (r.behaviour, r.playstation),
            (Behaviour::Symmetric, Some(3))
        );
        assert_eq!(r.public, None);
        // Carrier-grade NAT seen on the path.
        let mut cg = sym.clone();
        cg.set_cgnat(Some(true));
        let r = cg.report(local);
        assert_eq!((r.behaviour, r.playstation), (Behaviour::Cgnat, Some(3)));
    }

    #[test]
    fn newest_answer_per_server_wins_and_forgetting_works() {
        let s1 = sa("198.51.100.1:51820");
        let s2 = sa("198.51.100.2:51820");
        let mut n = NatState::new();
        n.observe(s1, sa("198.51.100.103:1000"));
        n.observe(s2, sa("198.51.100.103:2000"));
        assert_eq!(n.mapping(local), Mapping::EndpointDependent);
        // The NAT rebinding settled: both see one mapping again.
        n.observe(s1, sa("198.51.100.103:2000"));
        assert_eq!(n.mapping(local), Mapping::EndpointIndependent);
        n.forget(s2);
        assert_eq!(n.observers(), 1);
        for i in 0..20u8 {
            n.observe(
                SocketAddr::new(IpAddr::V4([203, 0, 113, i].into()), 51820),
                sa("198.51.100.103:2000"),
            );
        }
        assert_eq!(n.observations().len(), MAX_OBSERVATIONS);
    }

    #[test]
    fn shared_address_space() {
        assert!(is_shared_address("100.64.0.1".parse().unwrap()));
        assert!(is_shared_address("100.127.255.254".parse().unwrap()));
        assert!(!is_shared_address("100.128.0.1".parse().unwrap()));
        assert!(!is_shared_address("100.63.255.255".parse().unwrap()));
        assert!(!is_shared_address("::1".parse().unwrap()));
    }
}
