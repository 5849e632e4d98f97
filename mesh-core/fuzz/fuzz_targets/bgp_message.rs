//! One input = one BGP message (or the start of a TCP stream): the framer, the
//! message parser, the UPDATE attribute decoder in all four session contexts,
//! and the OPEN / NOTIFICATION accessors. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::bgp::message::Message;
use mesh_core::bgp::notification::{CeaseSubcode, ErrorCode, NotificationRepr};
use mesh_core::bgp::open::OpenPacket;
use mesh_core::bgp::route_refresh::RouteRefresh;
use mesh_core::bgp::update::{DecodeContext, UpdatePacket};
use mesh_core::bgp::wire::{frame, HEADER_LEN, MAX_MESSAGE_LEN};
use mesh_core::Family;

fn update(p: &UpdatePacket<'_>) {
    let _ = p.is_ipv4_end_of_rib();
    for a in p.raw_attributes() {
        let _ = a;
    }
    for four_octet_as in [false, true] {
        for ebgp in [false, true] {
            let ctx = DecodeContext {
                four_octet_as,
                ebgp,
                peer_asn: 65002,
            };
            let Ok(u) = p.decode(&ctx) else { continue };
            let announced = u.announced().count();
            let _ = u.withdrawn().count();
            if u.treat_as_withdraw.is_some() {
                assert_eq!(announced, 0, "treat-as-withdraw still announces");
            }
            let _ = u.end_of_rib();
            let _ = u.unknown_attributes().count();
            let _ = u.mp_reach().map(|m| m.nlri.clone().count());
            let _ = u.discarded.iter().count();
            let _ = u.attrs.next_hop_for(Family::Ipv4);
            let _ = u.attrs.next_hop_for(Family::Ipv6);
            let _ = u.attrs.as_path.selection_len();
            let _ = u.attrs.as_path.first_as();
            let _ = u.attrs.as_path.origin_as();
            let _ = u.attrs.as_path.segments().count();
        }
    }
}

fn open(o: &OpenPacket<'_>) {
    let _ = (o.version(), o.my_as(), o.hold_time(), o.bgp_identifier());
    let _ = o.capabilities().count();
    let _ = o.summary();
    let _ = o.peer_asn();
}

fn notification(n: &NotificationRepr<'_>) {
    let _ = n.shutdown_communication();
    let _ = n.error.to_wire();
    for error in [
        ErrorCode::Cease(CeaseSubcode::AdministrativeShutdown),
        ErrorCode::Cease(CeaseSubcode::AdministrativeReset),
    ] {
        let _ = NotificationRepr { error, ..*n }.shutdown_communication();
    }
}

fuzz_target!(|data: &[u8]| {
    // As a stream: frame and parse message after message.
    let mut rest = data;
    while let Ok(Some(n)) = frame(rest) {
        assert!((HEADER_LEN..=MAX_MESSAGE_LEN).contains(&n) && n <= rest.len());
        match Message::parse(&rest[..n]) {
            Ok(Message::Update(p)) => update(&p),
            Ok(Message::Open(o)) => open(&o),
            Ok(Message::Notification(m)) => notification(&m),
            Ok(Message::Keepalive) | Ok(Message::RouteRefresh(_)) => {}
            Err(e) => {
                let _ = e.notification();
            }
        }
        rest = &rest[n..];
    }
    // As one message, whatever framing says.
    if let Err(e) = Message::parse(data) {
        let _ = e.notification();
    }
    // As a bare body of each type, to reach the body decoders without the
    // fuzzer having to find a header first.
    if let Ok(p) = UpdatePacket::new_checked(data) {
        update(&p);
    }
    if let Ok(o) = OpenPacket::new_checked(data) {
        open(&o);
    }
    if let Ok(n) = NotificationRepr::parse(data) {
        notification(&n);
    }
    let _ = RouteRefresh::parse(data);
});
