//! The floor `scripts/bench-cpu.sh` measures meshd against: boringtun alone,
//! as meshd drives it (`mesh_core::wg::boring`), after a handshake, with no
//! I/O. `wg_floor SIZE COUNT` encrypts COUNT IPv4/UDP packets of SIZE bytes
//! in `encrypt_all`, then decrypts them in `decrypt_all`. Run under callgrind
//! with `--toggle-collect` on one of them, the total divided by COUNT is the
//! floor per packet, for sending or for receiving.

use std::net::{IpAddr, Ipv4Addr};

use mesh_core::wg::boring::BoringCrypto;
use mesh_core::wg::{Crypto, Key, Tunnel, TunnelResult};

const OUT: usize = 2048;

fn key(seed: u8) -> Key {
    let mut k = [seed; 32];
    k[0] &= 248;
    k[31] = (k[31] & 127) | 64;
    Key(k)
}

/// Moves a handshake's datagrams between `a` and `b` until both are quiet.
fn handshake(a: &mut impl Tunnel, b: &mut impl Tunnel) {
    let mut out = [0u8; OUT];
    let mut back = [0u8; OUT];
    let mut flush = [0u8; OUT];
    let from = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
    let TunnelResult::Network(init) = a.initiate(&mut out) else {
        panic!("no handshake initiation");
    };
    let TunnelResult::Network(resp) = b.decapsulate(from, init, &mut back) else {
        panic!("no handshake response");
    };
    let resp = resp.to_vec();
    match a.decapsulate(from, &resp, &mut out) {
        TunnelResult::Network(keepalive) => {
            let keepalive = keepalive.to_vec();
            let _ = b.decapsulate(from, &keepalive, &mut back);
        }
        TunnelResult::Done => {}
        other => panic!("handshake: {other:?}"),
    }
    while let TunnelResult::Network(_) = a.decapsulate(None, &[], &mut flush) {}
}

/// Encrypts `packet` into each of `slots` (made beforehand: no allocation
/// or copy of the harness's own is counted), noting each datagram's length.
#[inline(never)]
fn encrypt_all(a: &mut impl Tunnel, packet: &[u8], slots: &mut [(Vec<u8>, usize)]) {
    for (slot, len) in slots.iter_mut() {
        match a.encapsulate(packet, slot) {
            TunnelResult::Network(d) => *len = d.len(),
            other => panic!("encrypt: {other:?}"),
        }
    }
}

#[inline(never)]
fn decrypt_all(b: &mut impl Tunnel, sent: &[(Vec<u8>, usize)]) -> usize {
    let mut out = [0u8; OUT];
    let from = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
    let mut ok = 0;
    for (d, len) in sent {
        if let TunnelResult::Inner(_) = b.decapsulate(from, &d[..*len], &mut out) {
            ok += 1;
        }
    }
    ok
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let (ka, kb) = (key(1), key(2));
    let (ca, cb) = (BoringCrypto::new(&ka), BoringCrypto::new(&kb));
    let mut a = ca.tunnel(&cb.public_key(), 1, None);
    let mut b = cb.tunnel(&ca.public_key(), 2, None);
    handshake(&mut a, &mut b);
    let payload = vec![0x5au8; size.saturating_sub(28)];
    let mut packet = vec![0u8; size.max(28)];
    let n = mesh_core::ip::build_udp4(
        Ipv4Addr::new(192, 168, 1, 10),
        Ipv4Addr::new(192, 168, 2, 10),
        3074,
        3074,
        64,
        &payload,
        &mut packet,
    )
    .expect("a packet");
    packet.truncate(n);
    let mut sent: Vec<(Vec<u8>, usize)> = (0..count).map(|_| (vec![0u8; OUT], 0)).collect();
    encrypt_all(&mut a, &packet, &mut sent);
    let ok = decrypt_all(&mut b, &sent);
    assert_eq!(ok, count, "every packet decrypts");
    println!(
        "{count} packets of {} bytes encrypted and decrypted",
        packet.len()
    );
}
