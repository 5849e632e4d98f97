//! Frames read from the TUN with `IFF_VNET_HDR` (a `virtio_net_hdr`, then a
//! packet or a TSO super-packet), which `offload::split` turns into
//! packets, and packets decrypted from the tunnels (a hostile member's
//! among them), which `offload::Coalescer` joins for one TUN write.
//!
//! Input layout: byte 0 is the scratch buffer's size in units of 16 bytes
//! (so segments that do not fit are tried too); the rest is the frame.
//!
//! Checked: no panic; the count returned is the number of packets handed
//! out; every packet fits its buffer; a frame whose header asks for no
//! offload (type none, ECN bit or not) gives exactly one packet, as long as
//! the frame's packet; each segment of a super-packet is no longer than the
//! super-packet. Then the packets, and the frame's own packet, go through
//! the coalescer as the daemon sends them (joined where they may be, alone
//! otherwise), and the frames it makes, cut again, give back exactly those
//! packets in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::sys::offload::{split, Coalescer, VNET_HDR_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&room, frame)) = data.split_first() else {
        return;
    };
    let mut frame = frame.to_vec();
    let original = frame.get(VNET_HDR_LEN..).unwrap_or(&[]).to_vec();
    let mut scratch = vec![0u8; usize::from(room) * 16];
    let whole = frame.len().saturating_sub(VNET_HDR_LEN);
    // GSO type none, with or without the ECN bit.
    let plain = frame.get(1).is_some_and(|t| t & 0x7f == 0);
    let mut packets: Vec<Vec<u8>> = Vec::new();
    if let Ok(n) = split(&mut frame, &mut scratch, |p| packets.push(p.to_vec())) {
        assert_eq!(n, packets.len());
        if plain {
            assert_eq!(packets.iter().map(Vec::len).collect::<Vec<_>>(), [whole]);
        } else {
            assert!(packets.iter().all(|p| p.len() <= scratch.len() && p.len() <= whole));
        }
    }
    packets.push(original);

    // As Daemon::drain writes them.
    let mut c = Coalescer::default();
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut cut = vec![0u8; 65536];
    let mut unpack = |frame: &[u8], written: &mut Vec<Vec<u8>>| {
        let mut frame = frame.to_vec();
        split(&mut frame, &mut cut, |p| written.push(p.to_vec()))
            .expect("a coalescer's frame cuts");
    };
    for p in &packets {
        if c.push(p) {
            continue;
        }
        if let Some(f) = c.take() {
            unpack(f, &mut written);
            if c.push(p) {
                continue;
            }
        }
        written.push(p.clone());
    }
    if let Some(f) = c.take() {
        unpack(f, &mut written);
    }
    assert!(written == packets, "joined and cut again, the packets changed");
});
