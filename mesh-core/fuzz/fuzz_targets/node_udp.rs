//! The mesh port of a whole node (`Node::handle_udp`), which anyone on the
//! internet can send to: meshd's own dispatch (STUN or WireGuard, message
//! type, member lookup, cookies and the handshake rate limit) runs before
//! boringtun's checks.
//!
//! R1 runs in the small mesh of `../src/lib.rs` (R2 and R3 are real nodes
//! that bring tunnels, BGP, BFD and STUN up with R1 as time passes). Byte 0
//! sets options (bit 0: R1 may be a game exit; bit 1: R1 has STUN's second
//! port; bit 2: R1's overlay address is the kernel's). Then records, the
//! first byte modulo 10 picking what happens (at most 256 records):
//! - 0 `[delay]`: the mesh runs that long (0–127 ms, 0.25–16 s, 1–80 s);
//! - 1 `[source, len, bytes…]`: a datagram of those bytes to R1, from a
//!   stranger (IPv4 or IPv6) or a forged member, R1 or R4 address;
//! - 2 `[source, type, index, n, body…]`: a WireGuard message of type 1–4
//!   with its right length (148, 92, 64, 32 + 16·(n % 8)), the receiver
//!   index one R1 or a member announced (or one from the input), the rest
//!   from the input;
//! - 3 `[source, type hi, type lo, tid, len, flags, attributes…]`: a STUN
//!   lookalike with the magic cookie, the transaction id of one of R1's
//!   requests or from the input, a FINGERPRINT that verifies (flag bit 1)
//!   and a length field that is right or from the input (bit 2);
//! - 4 `[request, mapped, source, code]`: a forged answer to one of R1's
//!   STUN requests (a Binding success showing R1 itself, a NAT's address,
//!   an IPv6 one; or an error response), from its server, the server's
//!   other port, or a stranger;
//! - 5 `[k, source]`: a replay of the k-th datagram R1 received, from where
//!   it came or elsewhere;
//! - 6 `[k, how, at, value]`: that datagram cut to `at` bytes, with byte
//!   `at` XORed with `value`, lengthened by `at` bytes, or with another
//!   type byte;
//! - 7 `[how, source]`: the next datagram on its way to R1 is lost,
//!   doubled, comes from another address (as after a NAT rebinding, or a
//!   man in the middle redirecting it), or arrives cut short;
//! - 8 `[port, source, len, bytes…]`: a datagram from the internet to one
//!   of R1's exit ports (a mapped one, or any of 5000–5019);
//! - 9: R1's `handle_timeout` now, whether or not it is due.
//!
//! At the end the mesh runs one more second. Checked after every input of
//! every node (`World::check` and `World::drain`): no panic; every datagram
//! counted exactly once (`udp_in` = the classification counters + each
//! member's `rx_datagrams`); the output queues drain within their
//! capacity; virtual time does not spin at one instant; R1 sends only to
//! members' endpoints (configured or learned from an authenticated
//! datagram), to candidates a member told it of (hole punching), or back
//! to an address that sent it something, never more
//! datagrams than it received from there; no datagram over `MAX_DATAGRAM`;
//! ICMP errors within their budget; the member table, learned candidates
//! and exit mappings within their bounds.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use mesh_core::stun;
use mesh_core::Duration;
use mesh_core_fuzz::{
    on_big_stack, source, stun_fingerprint, underlay, with_world, Input, Options, World,
};

fuzz_target!(|data: &[u8]| on_big_stack(data, run));

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let options = Options::from_byte(input.u8());
    with_world(options, |w| {
        for _ in 0..256 {
            if input.done() {
                break;
            }
            step(w, &mut input);
        }
        w.advance(Duration::from_secs(1));
    });
}

fn step(w: &mut World<'_>, input: &mut Input<'_>) {
    match input.u8() % 10 {
        0 => {
            let d = input.delay();
            w.advance(d);
        }
        1 => {
            let from = source(input.u8());
            let len = input.length();
            let bytes = input.bytes(len).to_vec();
            w.deliver(0, from, &bytes);
        }
        2 => {
            let from = source(input.u8());
            let m = wireguard(w, input);
            w.deliver(0, from, &m);
        }
        3 => {
            let from = source(input.u8());
            let m = stun_lookalike(w, input);
            w.deliver(0, from, &m);
        }
        4 => forged_stun_answer(w, input),
        5 => {
            let (k, sel) = (input.u8(), input.u8());
            let Some((from, bytes)) = pick(&w.seen.history, k) else {
                return;
            };
            let from = if sel & 1 == 0 { from } else { source(sel >> 1) };
            w.deliver(0, from, &bytes);
        }
        6 => {
            let (k, how, at, value) = (input.u8(), input.u8(), input.u8(), input.u8());
            let Some((from, mut bytes)) = pick(&w.seen.history, k) else {
                return;
            };
            mutate(&mut bytes, how, at, value);
            w.deliver(0, from, &bytes);
        }
        7 => {
            let (how, sel) = (input.u8(), input.u8());
            let Some((from, mut bytes)) = w.take_in_flight_to_r1() else {
                return;
            };
            match how % 4 {
                0 => {} // lost
                1 => {
                    w.deliver(0, from, &bytes);
                    w.deliver(0, from, &bytes);
                }
                2 => w.deliver(0, source(sel), &bytes),
                _ => {
                    bytes.truncate(sel as usize % bytes.len().max(1));
                    w.deliver(0, from, &bytes);
                }
            }
        }
        8 => {
            let sel = input.u8();
            let ports = w.exit_ports();
            let port = match ports.len() {
                0 => 5000 + u16::from(sel % 20),
                n if sel & 0x80 == 0 => ports[sel as usize % n],
                _ => 5000 + u16::from(sel % 20),
            };
            let from = source(input.u8());
            let len = input.length();
            let payload = input.bytes(len).to_vec();
            w.exit_datagram(port, from, &payload);
        }
        _ => w.spurious_timeout(),
    }
}

fn pick<T: Clone>(v: &[T], k: u8) -> Option<T> {
    (!v.is_empty()).then(|| v[k as usize % v.len()].clone())
}

fn mutate(bytes: &mut Vec<u8>, how: u8, at: u8, value: u8) {
    let at = at as usize;
    match how % 4 {
        0 => bytes.truncate(at % (bytes.len() + 1)),
        1 => {
            if !bytes.is_empty() {
                // Mostly near the end, where WireGuard's mac2 and AEAD tags are.
                let i = bytes.len() - 1 - at % bytes.len();
                bytes[i] ^= value.max(1);
            }
        }
        2 => bytes.extend(std::iter::repeat_n(value, at)),
        _ => {
            if let Some(b) = bytes.first_mut() {
                *b = value;
            }
        }
    }
}

/// A WireGuard message of a valid type and length, random inside.
fn wireguard(w: &World<'_>, input: &mut Input<'_>) -> Vec<u8> {
    let kind = input.u8() % 4 + 1;
    let sel = input.u8();
    let index = match pick(&w.seen.indices, sel) {
        Some(i) if sel & 0x80 == 0 => i,
        _ => u32::from(input.u16()) << 8 | u32::from(input.u8()),
    };
    let n = input.u8();
    let len = match kind {
        1 => 148,
        2 => 92,
        3 => 64,
        _ => 32 + 16 * (n as usize % 8),
    };
    let mut m = vec![0u8; len];
    m[0] = kind;
    let body = input.bytes(len - 4);
    m[4..4 + body.len()].copy_from_slice(body);
    let at = if kind == 2 { 8 } else { 4 };
    if kind != 1 {
        m[at..at + 4].copy_from_slice(&index.to_le_bytes());
    }
    m
}

/// A datagram that passes `stun::is_stun` (or nearly: the length field
/// may lie).
fn stun_lookalike(w: &World<'_>, input: &mut Input<'_>) -> Vec<u8> {
    let ty = input.u16() & 0x3fff;
    let tid_sel = input.u8();
    let len = input.length() & !3;
    let flags = input.u8();
    let mut m = Vec::with_capacity(20 + len + 8);
    m.extend_from_slice(&ty.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0x21, 0x12, 0xa4, 0x42]);
    match pick(&w.seen.stun_requests, tid_sel) {
        Some((_, req)) if tid_sel & 0x80 == 0 => m.extend_from_slice(&req[8..20]),
        _ => {
            let tid = input.bytes(12);
            m.extend_from_slice(tid);
            m.resize(20, 0);
        }
    }
    m.extend_from_slice(input.bytes(len));
    let body = (m.len() - 20) as u16;
    m[2..4].copy_from_slice(&body.to_be_bytes());
    if flags & 2 != 0 {
        stun_fingerprint(&mut m);
    }
    if flags & 4 != 0 {
        let lie = input.u16();
        m[2..4].copy_from_slice(&lie.to_be_bytes());
    }
    m
}

/// An answer to one of R1's STUN requests that its server did not send.
fn forged_stun_answer(w: &mut World<'_>, input: &mut Input<'_>) {
    let (k, mapped_sel, from_sel, code) = (input.u8(), input.u8(), input.u8(), input.u8());
    let Some((server, request)) = pick(&w.seen.stun_requests, k) else {
        return;
    };
    let Ok(msg) = stun::Message::parse(&request) else {
        return;
    };
    let mapped = match mapped_sel % 4 {
        0 => underlay(1),
        1 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 200)), 30000),
        2 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 200)), 30001),
        _ => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            51820,
        ),
    };
    let from = match from_sel % 3 {
        0 => server,
        1 => SocketAddr::new(server.ip(), server.port().wrapping_add(1)),
        _ => source(from_sel),
    };
    let mut out = [0u8; 548];
    let n = if code & 1 == 0 {
        stun::binding_success(&msg, mapped, &mut out)
    } else {
        let code = 300 + u16::from(code >> 1) * 2;
        stun::error_response(&msg, code, "forged", &[], &mut out)
    };
    if let Ok(n) = n {
        w.deliver(0, from, &out[..n]);
    }
}
