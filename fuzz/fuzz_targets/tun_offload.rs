//! Frames read from the TUN with `IFF_VNET_HDR`: a `virtio_net_hdr`, then a
//! packet or a TSO super-packet. `offload::split` turns one into packets.
//!
//! Input layout: byte 0 is the scratch buffer's size in units of 16 bytes
//! (so segments that do not fit are tried too); the rest is the frame.
//!
//! Checked: no panic; the count returned is the number of packets handed
//! out; every packet fits its buffer; a frame whose header asks for no
//! offload (type none, ECN bit or not) gives exactly one packet, as long as the frame's packet; each
//! segment of a super-packet is no longer than the super-packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::sys::offload::{split, VNET_HDR_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&room, frame)) = data.split_first() else {
        return;
    };
    let mut frame = frame.to_vec();
    let mut scratch = vec![0u8; usize::from(room) * 16];
    let whole = frame.len().saturating_sub(VNET_HDR_LEN);
    // GSO type none, with or without the ECN bit.
    let plain = frame.get(1).is_some_and(|t| t & 0x7f == 0);
    let mut lens = Vec::new();
    if let Ok(n) = split(&mut frame, &mut scratch, |p| lens.push(p.len())) {
        assert_eq!(n, lens.len());
        if plain {
            assert_eq!(lens, [whole]);
        } else {
            assert!(lens.iter().all(|&l| l <= scratch.len() && l <= whole));
        }
    }
});
