//! The engine's own parts, without sockets: what it originates, how it
//! reports Loc-RIB changes, the import policy, and its timers. Sessions over
//! the overlay stack run end to end in the node's tests.

use super::*;
use crate::bgp::attr::AsPath;
use crate::node::tests::fixtures::{big_stack, lan, member, node_config, overlay, slots};

extern crate std;
use std::boxed::Box;
use std::vec::Vec;

const T0: Instant = Instant::from_secs(100);

fn engine(n: u8) -> Box<Engine<'static>> {
    let storage = crate::node::NodeMemory::<()>::leak(MAX_MEMBERS);
    Box::new(Engine::new(
        storage.overlay,
        storage.rib,
        &node_config(n),
        T0,
    ))
}

/// A path through members (AS 65000 + n), from the first one.
fn path(asns: &[u32]) -> PathAttributes {
    PathAttributes {
        as_path: AsPath::from_sequence(asns).unwrap(),
        next_hop: Some(overlay((asns[0] - 65000) as u8)),
        ..Default::default()
    }
}

fn sync(e: &mut Engine<'_>) -> Vec<NodeEvent> {
    let mut v = Vec::new();
    e.sync_routes(|ev| v.push(ev));
    v
}

#[test]
fn a_new_engine_originates_its_overlay_address_and_its_home() {
    big_stack(|| {
        let e = engine(1);
        for p in [Prefix::host(IpAddr::V4(overlay(1))), lan(1)] {
            let best = e.rib.entry(&p).and_then(|x| x.best()).map(|b| b.source);
            assert_eq!(best, Some(Source::Local), "{p}");
        }
        assert_eq!(e.rib.len(), 2);
    });
}

#[test]
fn route_changes_are_reported_once_in_prefix_order() {
    big_stack(|| {
        let mut e = engine(1);
        e.add_peer(0, &member(2));
        e.add_peer(1, &member(3));
        e.rib.peer_up(0);
        e.rib.peer_up(1);
        // Our own prefixes are not reported: they are not routed to the mesh.
        assert_eq!(sync(&mut e), []);
        e.rib
            .update(Source::Peer(0), lan(4), &path(&[65002, 65004]))
            .unwrap();
        e.rib
            .update(Source::Peer(0), lan(3), &path(&[65002, 65003]))
            .unwrap();
        assert_eq!(
            sync(&mut e),
            [
                NodeEvent::RouteAdded {
                    prefix: lan(3),
                    via: 0
                },
                NodeEvent::RouteAdded {
                    prefix: lan(4),
                    via: 0
                },
            ]
        );
        assert_eq!(sync(&mut e), [], "nothing changed since");
        // A shorter path through member 1 wins 192.168.3.0/24.
        e.rib
            .update(Source::Peer(1), lan(3), &path(&[65003]))
            .unwrap();
        assert_eq!(
            sync(&mut e),
            [NodeEvent::PathChanged {
                prefix: lan(3),
                from: 0,
                to: 1
            }]
        );
        e.rib.withdraw(Source::Peer(0), lan(4));
        assert_eq!(sync(&mut e), [NodeEvent::RouteRemoved { prefix: lan(4) }]);
    });
}

#[test]
fn a_member_may_send_only_what_its_origin_member_may_originate() {
    big_stack(|| {
        // Node 1 with members 2 (slot 0, home 192.168.2.0/24) and 3 (slot 1).
        let mut table = slots(T0, 1, &[member(2), member(3)]);
        let mut refused = 0;
        let (this, others) = table.split(0).unwrap();
        let mut filter = Membership {
            this: &this.wg.config,
            others,
            own_asn: 65001,
            refused: &mut refused,
        };
        let (r2, r3) = (65002, 65003);
        // Member 2's own home, and member 3's home through member 2.
        assert!(filter.accept(0, &lan(2), &path(&[r2])));
        assert!(filter.accept(0, &lan(3), &path(&[r2, r3])));
        // A slice of member 3's home, originated by member 3.
        let slice = Prefix::v4(192, 168, 3, 128, 25).unwrap();
        assert!(filter.accept(0, &slice, &path(&[r2, r3])));
        // Member 2 claiming member 3's home, our home, or a stranger's.
        assert!(!filter.accept(0, &lan(3), &path(&[r2])));
        assert!(!filter.accept(0, &lan(1), &path(&[r2, 65001])));
        assert!(!filter.accept(0, &lan(9), &path(&[r2, 65009])));
        assert_eq!(refused, 3);
    });
}

#[test]
fn sessions_we_dial_wait_their_connect_retry_and_the_stack_wakes_only_once_it_ran() {
    big_stack(|| {
        let mut e = engine(1);
        // Node 1 leads 2 and 3 and knows their endpoints: both dial, each
        // with a connect-retry timer running.
        let table = slots(T0, 1, &[member(2), member(3)]);
        for (_, s) in table.iter() {
            let retry = T0 + node_config(1).connect_retry;
            assert_eq!(s.bgp.session.poll_timeout(), Some(retry));
            assert!(!s.bgp.session.config().passive);
        }
        // The stack has not run: it asks for nothing. Once it has sockets
        // to attend (a connection in flight), it does.
        assert_eq!(e.poll_timeout(), None);
        let mut table = table;
        let local = Local {
            asn: 65001,
            overlay: overlay(1),
            overlay_v6: None,
        };
        let mut refused = 0;
        e.begin_pump();
        while e.round(T0, &mut table, local, &mut refused) {
            while e.poll_transmit().is_some() {}
        }
        e.end_pump(T0);
        let (at, why) = e.poll_timeout().expect("a SYN in flight is retransmitted");
        assert_eq!(why, Timer::Overlay);
        assert!(at > T0);
    });
}
