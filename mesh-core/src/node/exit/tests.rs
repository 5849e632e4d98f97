//! Game exits end to end inside the node: real WireGuard between nodes on
//! virtual time, the exit's NAT, the console's router's sticky choice.

extern crate std;

use std::boxed::Box;
use std::vec::Vec;

use core::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use super::*;
use crate::node::exitnat::ExitNatConfig;
use crate::node::tests::fixtures::{big_stack, crypto, member, node_config, underlay};
use crate::node::{Node, NodeEvent, Port};
use crate::wg::boring::BoringCrypto;

type TestNode = Node<'static, BoringCrypto>;

const T0: Instant = Instant::from_secs(1000);
/// A game server on the internet, and a second host there (a peer that
/// learned the console's mapped address from matchmaking).
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 3478);
const OTHER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 77), 9308);

fn console(n: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, n, host)
}

fn public(n: u8) -> Ipv4Addr {
    match underlay(n).ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!(),
    }
}

/// A datagram a node's exit NAT sent to the internet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Out {
    from_port: u16,
    to: SocketAddr,
    payload: Vec<u8>,
}

/// Routers 1..=n, every pair linked, on virtual time. `exits`: the routers
/// that offer themselves as exits (public addresses, so they classify as
/// open), and that every other lists with `exit`.
struct Net {
    now: Instant,
    nodes: Vec<Option<Box<TestNode>>>,
    wire: Vec<(Instant, usize, SocketAddr, Vec<u8>)>,
    lan: Vec<Vec<Vec<u8>>>,
    internet: Vec<Vec<Out>>,
    events: Vec<Vec<NodeEvent>>,
    exits: Vec<u8>,
    listed: fn(u8, u8) -> bool,
    /// Home 1's LAN is mapped to 10.64.1.0/24 in the mesh (issue 17).
    home_1_mapped: bool,
}

impl Net {
    fn new(n: u8, exits: &[u8], listed: fn(u8, u8) -> bool) -> Net {
        Net::build(n, exits, listed, false)
    }

    /// Like [`Net::new`], with home 1's LAN mapped to its alias.
    fn new_home_1_mapped(n: u8, exits: &[u8]) -> Net {
        Net::build(n, exits, everyone, true)
    }

    fn build(n: u8, exits: &[u8], listed: fn(u8, u8) -> bool, home_1_mapped: bool) -> Net {
        let mut net = Net {
            now: T0,
            nodes: Vec::new(),
            wire: Vec::new(),
            lan: (0..n).map(|_| Vec::new()).collect(),
            internet: (0..n).map(|_| Vec::new()).collect(),
            events: (0..n).map(|_| Vec::new()).collect(),
            exits: exits.to_vec(),
            listed,
            home_1_mapped,
        };
        for i in 1..=n {
            let node = net.make(i, n);
            net.nodes.push(Some(node));
        }
        for i in 0..n as usize {
            net.drain(i);
        }
        net
    }

    fn alias_1() -> crate::prefix::Prefix {
        crate::prefix::Prefix::v4(10, 64, 1, 0, 24).unwrap_or_else(|_| unreachable!())
    }

    fn make(&self, i: u8, n: u8) -> Box<TestNode> {
        let mut c = node_config(i);
        c.hold_time = 3;
        if self.home_1_mapped && i == 1 {
            c.lan_prefixes.clear();
            let _ = c.lan_prefixes.push(Net::alias_1());
            let map =
                crate::netmap::Map::new((console(1, 0), 24), (Ipv4Addr::new(10, 64, 1, 0), 24));
            let _ = c.lan_map.push(map.unwrap_or_else(|| unreachable!()));
        }
        if self.exits.contains(&i) {
            c.exit = Some(ExitConfig {
                nat: ExitNatConfig {
                    quota: 8,
                    ..ExitNatConfig::default()
                },
                ports_forwarded: false,
            });
        }
        let storage = crate::node::NodeMemory::leak(crate::wg::MAX_MEMBERS);
        let mut node = Box::new(Node::new(c, crypto(i), storage, self.now));
        node.set_local_addresses(&[underlay(i).ip()]);
        for m in (1..=n).filter(|&m| m != i) {
            let mut mc = member(m);
            if self.home_1_mapped && m == 1 {
                mc.prefixes.clear();
                let _ = mc.prefixes.push(Net::alias_1());
            }
            mc.exit = self.exits.contains(&m) && (self.listed)(i, m);
            node.add_member(self.now, mc).unwrap();
        }
        node
    }

    fn node(&mut self, i: u8) -> &mut TestNode {
        self.nodes[i as usize - 1].as_mut().expect("powered on")
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        while let Some(t) = node.poll_transmit() {
            match t.from {
                Port::Exit(from_port) => self.internet[i].push(Out {
                    from_port,
                    to: t.to,
                    payload: t.bytes.to_vec(),
                }),
                _ => {
                    let to = (0..self.lan.len()).find(|&j| underlay(j as u8 + 1) == t.to);
                    if let Some(to) = to.filter(|&j| j != i) {
                        let from = underlay(i as u8 + 1);
                        self.wire.push((
                            now + Duration::from_millis(1),
                            to,
                            from,
                            t.bytes.to_vec(),
                        ));
                    }
                }
            }
        }
        while let Some(p) = node.poll_lan_packet() {
            self.lan[i].push(p.to_vec());
        }
        while let Some(e) = node.poll_event() {
            self.events[i].push(e);
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            let arrival = self.wire.iter().map(|w| w.0).min();
            let deadlines = self.nodes.iter().flatten().filter_map(|n| n.poll_timeout());
            let next = deadlines.map(|(t, _)| t).chain(arrival).min();
            let Some(t) = next.filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(t);
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= now);
            self.wire = rest;
            for (_, to, from, bytes) in due {
                if let Some(n) = self.nodes[to].as_mut() {
                    n.handle_udp(now, from, &bytes);
                }
                self.drain(to);
            }
            for i in 0..self.nodes.len() {
                let due = self.nodes[i]
                    .as_ref()
                    .and_then(|n| n.poll_timeout())
                    .is_some_and(|(t, _)| t <= now);
                if due {
                    if let Some(n) = self.nodes[i].as_mut() {
                        n.handle_timeout(now);
                        // A timer that does not move would spin.
                        let next = n.poll_timeout();
                        assert!(next.is_none_or(|(t, _)| t > now), "r{}: {next:?}", i + 1);
                    }
                    self.drain(i);
                }
            }
        }
    }

    /// Console `host` behind router `n` sends a UDP datagram to `to` from
    /// port `sport`.
    fn console_sends(&mut self, n: u8, host: u8, sport: u16, to: SocketAddrV4, payload: &[u8]) {
        let mut buf = [0u8; 1500];
        let len = ip::build_udp4_plain(
            console(n, host),
            *to.ip(),
            sport,
            to.port(),
            64,
            payload,
            &mut buf,
        )
        .unwrap();
        let now = self.now;
        self.node(n).handle_lan_packet(now, &buf[..len]);
        self.drain(n as usize - 1);
        self.run_for(Duration::from_millis(20));
    }

    /// The internet answers through exit `n`'s port `port`.
    fn internet_sends(&mut self, n: u8, port: u16, from: SocketAddrV4, payload: &[u8]) {
        let now = self.now;
        self.node(n).handle_exit_datagram(now, port, from, payload);
        self.drain(n as usize - 1);
        self.run_for(Duration::from_millis(20));
    }

    /// UDP packets that reached router `n`'s consoles (not the node's own
    /// control traffic, which the test's node hands to its LAN too): source,
    /// destination, payload.
    fn lan_udp(&mut self, n: u8) -> Vec<(SocketAddrV4, SocketAddrV4, Vec<u8>)> {
        core::mem::take(&mut self.lan[n as usize - 1])
            .iter()
            .filter_map(|p| {
                let info = ip::parse(p).ok()?;
                let (sp, dp, payload) = ip::udp_parts(p, &info)?;
                match (info.src, info.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) if d.octets()[..2] == [192, 168] => Some((
                        SocketAddrV4::new(s, sp),
                        SocketAddrV4::new(d, dp),
                        payload.to_vec(),
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    fn out(&mut self, n: u8) -> Vec<Out> {
        core::mem::take(&mut self.internet[n as usize - 1])
    }
}

fn everyone(_: u8, _: u8) -> bool {
    true
}

#[test]
fn an_open_exit_offers_itself_and_a_console_gets_its_own_port_and_hears_anyone() {
    big_stack(|| {
        let mut net = Net::new(3, &[2], everyone);
        net.run_for(Duration::from_secs(5));
        assert_eq!(net.node(2).exit_offered(), Some(public(2)));
        let exits: Vec<ExitView> = net.node(1).exits().collect();
        assert_eq!(exits.len(), 1, "{exits:?}");
        assert_eq!(exits[0].overlay, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(exits[0].public, Some(public(2)));
        assert!(exits[0].best);
        assert!(net.events[0].contains(&NodeEvent::ExitAvailable { available: true }));
        // No default route in the kernel's tables: exits are not routes.
        assert!(!net.events[0].iter().any(|e| matches!(
            e,
            NodeEvent::RouteAdded { prefix, .. } if prefix.is_default()
        )));

        // Out: the console's datagram leaves the exit from its own port.
        net.console_sends(1, 10, 40000, SERVER, b"binding");
        assert_eq!(
            net.out(2),
            [Out {
                from_port: 40000,
                to: SocketAddr::V4(SERVER),
                payload: b"binding".to_vec()
            }],
            "port preserved (REQ-3)"
        );
        assert!(net.events[0].contains(&NodeEvent::ConsoleExit {
            console: console(1, 10),
            exit: Some(Ipv4Addr::new(10, 0, 0, 2)),
        }));
        // In: from a host the console never sent to (endpoint-independent
        // filtering), to the console, with the host's address as source.
        net.internet_sends(2, 40000, OTHER, b"hello");
        assert_eq!(
            net.lan_udp(1),
            [(
                OTHER,
                SocketAddrV4::new(console(1, 10), 40000),
                b"hello".to_vec()
            )]
        );
        // Nothing for a port without a mapping.
        net.internet_sends(2, 40001, OTHER, b"stray");
        assert!(net.lan_udp(1).is_empty());
        assert_eq!(net.node(2).exit_nat_stats().inbound_unmapped, 1);
    });
}

#[test]
fn a_console_of_a_mapped_lan_plays_through_its_exit_by_its_alias() {
    big_stack(|| {
        let mut net = Net::new_home_1_mapped(3, &[2]);
        net.run_for(Duration::from_secs(5));
        net.console_sends(1, 10, 40000, SERVER, b"binding");
        assert_eq!(
            net.out(2),
            [Out {
                from_port: 40000,
                to: SocketAddr::V4(SERVER),
                payload: b"binding".to_vec()
            }]
        );
        // The choice is the console's own (its LAN address), as status
        // shows it.
        assert!(net.events[0].contains(&NodeEvent::ConsoleExit {
            console: console(1, 10),
            exit: Some(Ipv4Addr::new(10, 0, 0, 2)),
        }));
        // The exit saw the alias: that is whom it answers, and home 1 maps
        // it back to the console.
        assert_eq!(net.node(2).exit_stats().spoofed, 0);
        net.internet_sends(2, 40000, OTHER, b"hello");
        assert_eq!(
            net.lan_udp(1),
            [(
                OTHER,
                SocketAddrV4::new(console(1, 10), 40000),
                b"hello".to_vec()
            )]
        );
    });
}

#[test]
fn an_exit_serves_its_own_consoles_itself() {
    big_stack(|| {
        let mut net = Net::new(3, &[2], everyone);
        net.run_for(Duration::from_secs(5));
        net.console_sends(2, 10, 3074, SERVER, b"local");
        assert_eq!(
            net.out(2),
            [Out {
                from_port: 3074,
                to: SocketAddr::V4(SERVER),
                payload: b"local".to_vec()
            }]
        );
        assert_eq!(
            net.node(2).console_exits()[0].exit,
            Ipv4Addr::new(10, 0, 0, 2),
            "local breakout"
        );
        net.internet_sends(2, 3074, OTHER, b"back");
        assert_eq!(
            net.lan_udp(2),
            [(
                OTHER,
                SocketAddrV4::new(console(2, 10), 3074),
                b"back".to_vec()
            )]
        );
        // Nothing crossed a tunnel for it.
        assert_eq!(net.node(1).exit_stats().from_exit, 0);
    });
}

#[test]
fn two_friends_are_enough_for_an_exit() {
    big_stack(|| {
        // One member's STUN answer showing the exit's own public address
        // is all it takes to know there is no NAT in front of it.
        let mut net = Net::new(2, &[2], everyone);
        assert_eq!(net.node(2).exit_offer(), Offer::Waiting);
        net.run_for(Duration::from_secs(5));
        assert_eq!(net.node(2).exit_offer(), Offer::Offered(public(2)));
        assert_eq!(net.node(1).exits().count(), 1);
        assert_eq!(net.node(1).exit_offer(), Offer::NotConfigured);
    });
}

#[test]
fn two_consoles_on_one_exit_reach_each_other_by_their_mapped_addresses() {
    big_stack(|| {
        let mut net = Net::new(3, &[2], everyone);
        net.run_for(Duration::from_secs(5));
        // Both use local port 9308: the second gets another even port.
        net.console_sends(1, 10, 9308, SERVER, b"a");
        net.console_sends(1, 11, 9308, SERVER, b"b");
        let ports: Vec<u16> = net.out(2).iter().map(|o| o.from_port).collect();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0], 9308);
        assert_ne!(ports[1], 9308, "no port overloading");
        assert_eq!(ports[1] % 2, 0, "parity kept (REQ-4)");
        // Hairpin (REQ-9): .10 sends to .11's mapped address.
        let b_mapped = SocketAddrV4::new(public(2), ports[1]);
        net.console_sends(1, 10, 9308, b_mapped, b"to b");
        assert!(net.out(2).is_empty(), "hairpinned inside the exit");
        assert_eq!(
            net.lan_udp(1),
            [(
                SocketAddrV4::new(public(2), 9308),
                SocketAddrV4::new(console(1, 11), 9308),
                b"to b".to_vec()
            )],
            "from .10's mapped address"
        );
        assert_eq!(net.node(2).exit_stats().hairpin, 1);
    });
}

#[test]
fn a_default_route_from_a_member_not_listed_as_exit_is_refused_and_counted() {
    big_stack(|| {
        let mut net = Net::new(3, &[2], |_, _| false);
        net.run_for(Duration::from_secs(5));
        assert_eq!(net.node(2).exit_offered(), Some(public(2)));
        assert_eq!(net.node(1).exits().count(), 0);
        assert!(net.node(1).stats().hijacks_refused >= 1);
        // Its LAN still comes through: only the default route is refused.
        assert!(net.node(1).next_hop(IpAddr::V4(console(2, 10))).is_some());
        // A console with no exit: no route, nothing leaves.
        let before = net.node(1).stats().no_route;
        net.console_sends(1, 10, 40000, SERVER, b"x");
        assert!(net.out(2).is_empty());
        assert_eq!(net.node(1).stats().no_route, before + 1);
        assert_eq!(net.node(1).exit_stats().to_exit, 0);
    });
}

#[test]
fn a_member_wrapping_a_source_outside_its_home_is_refused_and_counted() {
    big_stack(|| {
        let mut net = Net::new(3, &[2], everyone);
        net.run_for(Duration::from_secs(5));
        // Router 1 wraps a packet from an address that is not its home's.
        let mut inner = [0u8; 128];
        let n = ip::build_udp4_plain(
            Ipv4Addr::new(192, 168, 77, 10),
            *SERVER.ip(),
            40000,
            SERVER.port(),
            64,
            b"spoof",
            &mut inner,
        )
        .unwrap();
        let mut outer = [0u8; 256];
        let m = ip::build_ipip4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            &inner[..n],
            &mut outer,
        )
        .unwrap();
        let slot = net.node(1).member_slot("r2").unwrap();
        net.node(1).send_to_member(slot as usize, &outer[..m]);
        net.drain(0);
        net.run_for(Duration::from_millis(20));
        assert!(net.out(2).is_empty());
        // (The node's anti-spoofing sees the inner source only once
        // unwrapped: the outer one is router 1's own.)
        assert_eq!(net.node(2).exit_stats().spoofed, 1);
        assert_eq!(net.node(2).exit_nat_stats().created, 0);
    });
}

#[test]
fn a_console_opening_mapping_after_mapping_is_capped_by_its_homes_quota() {
    big_stack(|| {
        let mut net = Net::new(3, &[2], everyone);
        net.run_for(Duration::from_secs(5));
        for port in 0..20u16 {
            net.console_sends(1, 10, 50000 + port, SERVER, b"m");
        }
        assert_eq!(net.out(2).len(), 8, "the quota in this test is 8");
        assert_eq!(net.node(2).exit_stats().quota, 12);
        assert_eq!(net.node(2).exit_mappings().count(), 8);
    });
}

#[test]
fn a_console_keeps_its_exit_until_it_dies_then_moves_and_stays() {
    big_stack(|| {
        // Router 3 offers itself too, but starts later: router 1's console
        // is on router 2 by then. (Router 4 keeps router 1 company while
        // router 2 is off.)
        let mut net = Net::new(4, &[2, 3], everyone);
        net.nodes[2] = None;
        net.run_for(Duration::from_secs(5));
        net.console_sends(1, 10, 40000, SERVER, b"1");
        assert_eq!(net.out(2).len(), 1);
        net.nodes[2] = Some(net.make(3, 4));
        net.drain(2);
        net.run_for(Duration::from_secs(5));
        assert_eq!(net.node(1).exits().count(), 2);
        net.console_sends(1, 10, 40000, SERVER, b"2");
        assert_eq!(net.out(2).len(), 1, "sticky: no move to a new exit");
        assert!(net.out(3).is_empty());
        // Router 2 loses power: BFD takes its routes, the console moves.
        net.nodes[1] = None;
        net.run_for(Duration::from_millis(200));
        net.console_sends(1, 10, 40000, SERVER, b"3");
        let out = net.out(3);
        assert_eq!(out.len(), 1, "to the backup exit");
        assert_eq!(out[0].from_port, 40000);
        assert!(net.events[0].contains(&NodeEvent::ConsoleExit {
            console: console(1, 10),
            exit: Some(Ipv4Addr::new(10, 0, 0, 3)),
        }));
        // Router 2 comes back: the console stays on router 3.
        net.nodes[1] = Some(net.make(2, 4));
        net.drain(1);
        net.run_for(Duration::from_secs(6));
        assert_eq!(net.node(1).exits().count(), 2);
        net.console_sends(1, 10, 40000, SERVER, b"4");
        assert_eq!(net.out(3).len(), 1, "no preemption");
        assert!(net.out(2).is_empty());
        assert_eq!(net.node(1).exit_stats().switches, 1);
    });
}

#[test]
fn an_idle_mapping_lives_its_timeout_and_goes_after_it() {
    big_stack(|| {
        let mut net = Net::new(3, &[2], everyone);
        net.run_for(Duration::from_secs(5));
        net.console_sends(1, 10, 40000, SERVER, b"m");
        net.out(2);
        // Two minutes idle: still open to anyone (REQ-5: at least 2 min).
        net.run_for(Duration::from_secs(120));
        net.internet_sends(2, 40000, OTHER, b"late");
        assert_eq!(net.lan_udp(1).len(), 1);
        // Past the timeout (300 s) and a sweep: gone, the socket closes.
        net.run_for(Duration::from_secs(190));
        assert!(net.events[1].contains(&NodeEvent::MappingClosed { port: 40000 }));
        net.internet_sends(2, 40000, OTHER, b"too late");
        assert!(net.lan_udp(1).is_empty());
    });
}
