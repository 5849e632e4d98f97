use super::*;

extern crate std;
use std::boxed::Box;
use std::vec::Vec;

use core::net::{IpAddr, SocketAddr};

use crate::wg::boring::BoringCrypto;

use crate::node::tests::fixtures::{asn, big_stack, lan, member, node_config, private_key};

const T0: Instant = Instant::from_secs(100);
/// When the new configuration comes.
const T1: Instant = Instant::from_secs(110);

type TestNode = Node<'static, BoringCrypto>;

/// Node 1 with members 2 and 3, every output drained.
fn node() -> Box<TestNode> {
    let config = node_config(1);
    let storage = crate::node::NodeMemory::leak(crate::wg::MAX_MEMBERS);
    let crypto = BoringCrypto::new(&config.private_key);
    let mut n = Box::new(Node::new(config, crypto, storage, T0));
    for m in members() {
        n.add_member(T0, m).unwrap();
    }
    drain(&mut n);
    n
}

fn members() -> Vec<MemberConfig> {
    std::vec![member(2), member(3)]
}

/// Outputs of the last input, counted.
fn drain(n: &mut TestNode) -> usize {
    let mut count = 0;
    while n.poll_transmit().is_some() {
        count += 1;
    }
    while n.poll_lan_packet().is_some() {
        count += 1;
    }
    while n.poll_event().is_some() {
        count += 1;
    }
    count
}

fn names(n: &TestNode) -> Vec<&str> {
    n.members().map(|m| m.config.name.as_str()).collect()
}

fn name(s: &str) -> heapless::String<32> {
    heapless::String::try_from(s).unwrap()
}

#[test]
fn the_same_configuration_again_changes_nothing() {
    big_stack(|| {
        let mut n = node();
        let changes = n.reconfigure(T1, node_config(1), &members());
        assert_eq!(changes, Changes::default());
        assert_eq!(changes.count(), 0);
        assert_eq!(drain(&mut n), 0);
        assert_eq!(names(&n), ["r2", "r3"]);
    });
}

#[test]
fn a_new_hold_time_changes_the_sessions_only() {
    big_stack(|| {
        let mut n = node();
        let mut config = node_config(1);
        config.hold_time = 30;
        let changes = n.reconfigure(T1, config, &members());
        assert_eq!(
            changes,
            Changes {
                sessions: true,
                ..Changes::default()
            }
        );
        assert_eq!(changes.count(), 1);
        assert_eq!(n.config().hold_time, 30);
        for (_, s) in n.slots.iter() {
            assert_eq!(s.bgp.session.config().hold_time, 30);
        }
    });
}

#[test]
fn a_new_bfd_hold_down_changes_failover_only() {
    big_stack(|| {
        let mut n = node();
        let mut config = node_config(1);
        config.bfd_hold_down = Duration::from_secs(7);
        let changes = n.reconfigure(T1, config, &members());
        assert_eq!(
            changes,
            Changes {
                failover: true,
                ..Changes::default()
            }
        );
        assert_eq!(n.config().bfd_hold_down, Duration::from_secs(7));
    });
}

#[test]
fn new_lan_prefixes_are_originated_and_the_old_one_withdrawn() {
    big_stack(|| {
        let mut n = node();
        let new = Prefix::v4(192, 168, 11, 0, 24).unwrap();
        assert!(n.is_local(&lan(1)));
        assert!(!n.is_local(&new));
        let mut config = node_config(1);
        config.lan_prefixes.clear();
        config.lan_prefixes.push(new).unwrap();
        let changes = n.reconfigure(T1, config, &members());
        assert_eq!(
            changes,
            Changes {
                lan_prefixes: true,
                ..Changes::default()
            }
        );
        assert!(n.is_local(&new));
        assert!(!n.is_local(&lan(1)));
        assert!(n.rib().entry(&lan(1)).is_none());
        assert_eq!(n.config().lan_prefixes.as_slice(), [new]);
        // The overlay address stays ours.
        assert!(n.is_local(&Prefix::host(IpAddr::V4(n.config().overlay))));
    });
}

#[test]
fn a_new_key_overlay_address_or_as_number_needs_a_new_node_and_nothing_is_applied() {
    big_stack(|| {
        let mut n = node();
        let before = n.config().clone();
        let changes: [fn(&mut NodeConfig); 4] = [
            |c| c.private_key = private_key(9),
            |c| c.overlay = core::net::Ipv4Addr::new(10, 0, 0, 9),
            |c| c.overlay_v6 = Some("fd00::1".parse().unwrap()),
            |c| c.asn = asn(9),
        ];
        for change in changes {
            let mut config = node_config(1);
            change(&mut config);
            // Along with something that alone would apply.
            config.hold_time = 30;
            let got = n.reconfigure(T1, config, &[member(4)]);
            assert_eq!(
                got,
                Changes {
                    rebuild: true,
                    ..Changes::default()
                }
            );
            assert_eq!(got.count(), 0);
            assert_eq!(*n.config(), before);
            assert_eq!(names(&n), ["r2", "r3"]);
            assert_eq!(drain(&mut n), 0);
        }
    });
}

#[test]
fn a_member_left_out_is_removed() {
    big_stack(|| {
        let mut n = node();
        let changes = n.reconfigure(T1, node_config(1), &[member(3)]);
        assert_eq!(
            changes.members.as_slice(),
            [MemberChange::Removed { name: name("r2") }]
        );
        assert_eq!(changes.count(), 1);
        assert_eq!(names(&n), ["r3"]);
        assert_eq!(n.member_slot("r2"), None);
    });
}

#[test]
fn a_new_member_is_added() {
    big_stack(|| {
        let mut n = node();
        let mut all = members();
        all.push(member(4));
        let changes = n.reconfigure(T1, node_config(1), &all);
        assert_eq!(
            changes.members.as_slice(),
            [MemberChange::Added { slot: 2 }]
        );
        assert_eq!(names(&n), ["r2", "r3", "r4"]);
        assert_eq!(n.member_slot("r4"), Some(2));
    });
}

#[test]
fn a_new_member_with_a_taken_as_number_is_refused() {
    big_stack(|| {
        let mut n = node();
        let mut impostor = member(4);
        impostor.asn = asn(2);
        let mut all = members();
        all.push(impostor);
        let changes = n.reconfigure(T1, node_config(1), &all);
        assert_eq!(
            changes.members.as_slice(),
            [MemberChange::Refused {
                name: name("r4"),
                error: MemberError::DuplicateAsn
            }]
        );
        assert_eq!(names(&n), ["r2", "r3"]);
    });
}

#[test]
fn a_member_with_a_new_endpoint_is_updated_in_place() {
    big_stack(|| {
        let mut n = node();
        let slot = n.member_slot("r3").unwrap();
        let moved: SocketAddr = "198.51.100.33:51820".parse().unwrap();
        let mut all = members();
        all[1].endpoints.clear();
        all[1].endpoints.push(moved).unwrap();
        let changes = n.reconfigure(T1, node_config(1), &all);
        assert_eq!(changes.members.as_slice(), [MemberChange::Updated { slot }]);
        assert_eq!(changes.count(), 1);
        assert_eq!(n.member_slot("r3"), Some(slot));
        assert_eq!(n.member(slot).unwrap().config.endpoints.as_slice(), [moved]);
    });
}
