//! UPDATE decode cost and decision-process cost per route change.
//!
//! `cargo bench -p mesh-core --bench bgp`; the figures go in the issue notes.

use core::net::Ipv4Addr;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mesh_core::bgp::attr::{AsPath, PathAttributes};
use mesh_core::bgp::update::{DecodeContext, UpdatePacket, UpdateRepr};
use mesh_core::bgp::wire::HEADER_LEN;
use mesh_core::rib::{PeerInfo, Rib, Source};
use mesh_core::Prefix;

fn attrs(path: &[u32]) -> PathAttributes {
    let mut a = PathAttributes {
        as_path: AsPath::from_sequence(path).unwrap(),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
        med: Some(10),
        ..Default::default()
    };
    a.communities.push((65002 << 16) | 100).unwrap();
    a
}

fn prefixes(n: u32) -> Vec<Prefix> {
    (0..n)
        .map(|i| Prefix::v4(10, (i >> 8) as u8, i as u8, 0, 24).unwrap())
        .collect()
}

fn encoded_update(n: u32) -> Vec<u8> {
    let a = attrs(&[65002, 65010, 65020]);
    let ps = prefixes(n);
    let repr = UpdateRepr {
        withdrawn: &[],
        attrs: Some(&a),
        announced: &ps,
        four_octet_as: true,
    };
    let mut buf = vec![0u8; 4096];
    let len = repr.emit(&mut buf).unwrap();
    buf.truncate(len);
    buf
}

fn decode(c: &mut Criterion) {
    let ctx = DecodeContext {
        four_octet_as: true,
        ebgp: true,
        peer_asn: 65002,
    };
    let mut g = c.benchmark_group("update_decode");
    for n in [1u32, 500] {
        let msg = encoded_update(n);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{n}_prefixes"), |b| {
            b.iter(|| {
                let p = UpdatePacket::new_checked(&msg[HEADER_LEN..]).unwrap();
                let u = p.decode(black_box(&ctx)).unwrap();
                // Walk the NLRI too: decoding is not done until the routes are read.
                black_box(u.announced().count())
            })
        });
    }
    g.finish();
}

/// A RIB for a node with 8 peers, each sending the same 500 prefixes with
/// paths of different lengths; one route change at a time flips a best path.
fn decision(c: &mut Criterion) {
    let ps = prefixes(500);
    let build = || {
        let mut rib: Box<Rib<512, 1024>> = Box::new(Rib::new(65001, 4));
        for peer in 0..8u8 {
            rib.set_peer(
                peer,
                PeerInfo {
                    asn: 65100 + peer as u32,
                    router_id: Ipv4Addr::new(10, 0, 1, peer),
                    address: Ipv4Addr::new(10, 0, 1, peer).into(),
                    ebgp: true,
                    latency: Some(1000 * (peer as u32 + 1)),
                },
            );
            let path: Vec<u32> = std::iter::once(65100 + peer as u32)
                .chain((0..(peer as u32 % 3)).map(|i| 64000 + i))
                .chain(std::iter::once(65500))
                .collect();
            let a = attrs(&path);
            for p in &ps {
                rib.update(Source::Peer(peer), *p, &a).unwrap();
            }
        }
        rib
    };
    let short = attrs(&[65107, 65500]);
    let long = attrs(&[65107, 64000, 64001, 65500]);
    let mut g = c.benchmark_group("decision");
    g.throughput(Throughput::Elements(1));
    g.bench_function("route_change_8_paths", |b| {
        let mut rib = build();
        let mut i = 0usize;
        b.iter(|| {
            // Peer 7 alternates between the shortest and a long path: every
            // change moves the best path of one prefix.
            let p = ps[i % ps.len()];
            let a = if (i / ps.len()) % 2 == 0 {
                &short
            } else {
                &long
            };
            black_box(rib.update(Source::Peer(7), p, a).unwrap());
            i += 1;
        })
    });
    g.bench_function("withdraw_50_of_8_paths", |b| {
        b.iter_batched_ref(
            build,
            |rib| {
                for p in ps.iter().take(50) {
                    rib.withdraw(Source::Peer(0), *p);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, decode, decision);
criterion_main!(benches);
