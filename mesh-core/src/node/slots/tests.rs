use super::*;
use crate::node::tests::fixtures::*;

extern crate std;

use core::net::{Ipv4Addr, Ipv6Addr};

const T0: Instant = Instant::from_secs(100);

#[test]
fn a_duplicate_key_asn_or_overlay_address_is_refused() {
    big_stack(|| {
        let mut slots = slots(T0, 1, &[member(2)]);
        let mut same_key = member(3);
        same_key.public_key = member(2).public_key;
        let mut same_asn = member(3);
        same_asn.asn = asn(2);
        let mut same_overlay = member(3);
        same_overlay.overlay = overlay(2);
        assert_eq!(slots.vacancy(&same_key), Err(MemberError::DuplicateKey));
        assert_eq!(slots.vacancy(&same_asn), Err(MemberError::DuplicateAsn));
        assert_eq!(
            slots.vacancy(&same_overlay),
            Err(MemberError::DuplicateOverlay)
        );
        // A refusal takes no slot: the next member still gets slot 1.
        assert_eq!(slots.vacancy(&member(3)).map(|(slot, _)| slot), Ok(1));
    });
}

#[test]
fn a_full_table_is_refused() {
    big_stack(|| {
        let node = node_config(1);
        let crypto = crypto(1);
        let mut slots = std::boxed::Box::new(Slots::leak());
        let mut n = 2u8;
        while slots.iter().count() < MAX_MEMBERS {
            slots.add(T0, &node, &crypto, member(n)).unwrap();
            n += 1;
        }
        assert_eq!(slots.vacancy(&member(n)), Err(MemberError::Full));
        // One leaving makes room for one.
        assert!(slots.remove(17).is_some());
        assert_eq!(slots.vacancy(&member(n)).map(|(slot, _)| slot), Ok(17));
    });
}

#[test]
fn a_slots_next_member_gets_receiver_indices_its_previous_one_never_had() {
    big_stack(|| {
        let node = node_config(1);
        let crypto = crypto(1);
        let mut slots = slots(T0, 1, &[member(2), member(3)]);
        let old = slots.get(0).unwrap().wg.index();
        assert_eq!(slots.by_index(old), Some(0));
        assert!(slots.remove(0).is_some());
        assert_eq!(slots.by_index(old), None);
        // Member 4 takes the same slot, under another index.
        let slot = slots.add(T0, &node, &crypto, member(4)).unwrap();
        assert_eq!(slot, 0);
        let new = slots.get(0).unwrap().wg.index();
        assert_ne!(new, old);
        assert_eq!(new & 0x3f, old & 0x3f, "the low bits are the slot");
        // A datagram for the member that left finds nobody.
        assert_eq!(slots.by_index(old), None);
        assert_eq!(slots.by_index(new), Some(0));
        assert_eq!(slots.by_key(&member(4).public_key), Some(0));
        assert_eq!(slots.by_key(&member(2).public_key), None);
    });
}

#[test]
fn by_overlay_finds_v4_and_v6_overlay_addresses() {
    big_stack(|| {
        let v6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
        let mut three = member(3);
        three.overlay_v6 = Some(v6);
        let slots = slots(T0, 1, &[member(2), three]);
        assert_eq!(slots.by_overlay(IpAddr::V4(overlay(2))), Some(0));
        assert_eq!(slots.by_overlay(IpAddr::V4(overlay(3))), Some(1));
        assert_eq!(slots.by_overlay(IpAddr::V6(v6)), Some(1));
        // Not overlay addresses: a home's LAN, ours, an unknown v6.
        assert_eq!(
            slots.by_overlay(IpAddr::V4(Ipv4Addr::new(192, 168, 2, 10))),
            None
        );
        assert_eq!(slots.by_overlay(IpAddr::V4(overlay(1))), None);
        assert_eq!(
            slots.by_overlay(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2))),
            None
        );
    });
}

#[test]
fn a_members_deadline_is_its_childrens_earliest_and_names_it() {
    big_stack(|| {
        let mut table = slots(T0, 1, &[member(2)]);
        let s = table.get_mut(0).unwrap();
        // Quiet everything but BFD and the BGP session's connect retry.
        s.punch = Default::default();
        s.wg.endpoint = None;
        s.bfd.handle_timeout(T0);
        while s.bfd.poll_transmit().is_some() {}
        let (at, why) = s.poll_timeout(0).unwrap();
        assert_eq!(
            why,
            Wake::Supervision {
                member: 0,
                timer: crate::node::SupervisionTimer::Bfd
            }
        );
        assert!(at > T0 && at <= T0 + Duration::from_secs(1), "{at:?}");
        // BFD off: the session's connect retry is next.
        s.bfd.reconfigure(
            T0,
            None,
            crate::node::supervision::Damping {
                hold_down: Duration::from_secs(2),
                confirm: Duration::from_secs(2),
            },
        );
        let retry = T0 + node_config(1).connect_retry;
        assert_eq!(
            s.poll_timeout(0),
            Some((retry, Wake::Bgp(BgpTimer::Session(0))))
        );
        // An endpoint known: asking it where it sees us is due at once.
        s.wg.endpoint = Some(underlay(2));
        assert_eq!(
            s.poll_timeout(0),
            Some((T0, Wake::Stun(StunTimer::Probe(0))))
        );
    });
}
