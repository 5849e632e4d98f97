//! A member's mesh numbers derived from its public key (issue 17): no
//! numbers to coordinate between homes.
//!
//! A router's overlay addresses and AS number used to be chosen by hand and
//! agreed across every friend's config. Derived from the WireGuard public
//! key instead, every router computes the same numbers for a member from the
//! one value it must know anyway. Explicit values in the config still win,
//! so existing configs keep theirs.
//!
//! - **IPv4 overlay**: a host of [`OVERLAY_V4`] (198.18.0.0/15, set aside
//!   for benchmarking by RFC 2544 and RFC 6890: no home LAN, ISP or carrier
//!   NAT uses it, unlike 10/8, 172.16/12, 192.168/16 or CGNAT's 100.64/10,
//!   where a derived address could shadow a LAN host or the WAN gateway).
//!   17 bits: two of 64 members share one with a chance of about 1.5 %,
//!   two of 8 about 0.02 %.
//! - **IPv6 overlay**: an address of the ULA prefix [`OVERLAY_V6`]
//!   (RFC 4193), 80 bits of it from the key.
//! - **AS number**: a private 4-octet AS (RFC 6996), 4200000000-4294967294.
//!
//! **The collision rule.** Derived numbers are hashes, so two members may
//! get the same one. Nothing is renumbered silently (each router knows a
//! different set of members, and a silent rule would give one member
//! different numbers on different routers): the config is refused with an
//! error naming both members and the number, and setting `overlay` (or
//! `asn`) by hand on one of them resolves it. The hash has no key: a member
//! who wants to collide with another on purpose can search for such a key in
//! moments, so a collision is a refused config, never a taken address.

use core::hash::Hasher;
use core::net::{Ipv4Addr, Ipv6Addr};

use crate::hash::Fnv;
use crate::wg::Key;

/// Derived IPv4 overlay addresses are hosts of 198.18.0.0/15.
pub const OVERLAY_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);
/// Derived IPv6 overlay addresses are in fd6d:6573:6864::/48 ("meshd").
pub const OVERLAY_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfd6d, 0x6573, 0x6864, 0, 0, 0, 0, 0), 48);
/// The first private 4-octet AS number (RFC 6996).
pub const ASN_FIRST: u32 = 4_200_000_000;
/// The last one.
pub const ASN_LAST: u32 = 4_294_967_294;

/// 64 bits of the key, for one purpose (`tag`), so the three numbers do not
/// depend on one another.
fn hash(tag: &[u8], key: &Key, round: u8) -> u64 {
    let mut h = Fnv::new();
    h.write(b"meshd identity ");
    h.write(tag);
    h.write(&[round]);
    h.write(&key.0);
    // FNV's low bits mix poorly on their own: fold the high half in.
    let x = h.finish();
    x ^ (x >> 29) ^ (x >> 47)
}

/// The IPv4 overlay address derived from a member's public key: a host of
/// [`OVERLAY_V4`], never its first or last address.
pub fn overlay_v4(key: &Key) -> Ipv4Addr {
    let hosts = (1u32 << (32 - OVERLAY_V4.1)) - 2;
    let host = 1 + (hash(b"v4", key, 0) % hosts as u64) as u32;
    Ipv4Addr::from(u32::from(OVERLAY_V4.0) | host)
}

/// The IPv6 overlay address derived from a member's public key, in
/// [`OVERLAY_V6`]; its interface identifier is never all zeros.
pub fn overlay_v6(key: &Key) -> Ipv6Addr {
    let prefix = u128::from(OVERLAY_V6.0);
    let a = hash(b"v6a", key, 0) as u128;
    let b = (hash(b"v6b", key, 0) & 0xffff) as u128;
    let host = ((b << 64) | a) & ((1u128 << (128 - OVERLAY_V6.1)) - 1);
    Ipv6Addr::from(prefix | host.max(1))
}

/// Derived LAN aliases are /24s of 10.64.0.0/10 (issue 17: two homes on
/// the same LAN prefix reach each other's consoles at their aliases).
pub const LAN_ALIASES: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 64, 0, 0), 10);
/// The length of a derived alias: a home LAN is a /24 (OpenWrt's default,
/// and most routers'); a longer one maps into the start of it.
pub const LAN_ALIAS_LEN: u8 = 24;

/// The /24 alias derived from a member's public key, in [`LAN_ALIASES`]:
/// 16,384 of them, so two of 8 homes share one with a chance of about
/// 0.2 % (refused like any collision: set `lan_alias` by hand on one).
pub fn lan_alias(key: &Key) -> Ipv4Addr {
    let blocks = 1u64 << (LAN_ALIAS_LEN - LAN_ALIASES.1);
    let block = (hash(b"lan", key, 0) % blocks) as u32;
    Ipv4Addr::from(u32::from(LAN_ALIASES.0) | (block << (32 - LAN_ALIAS_LEN)))
}

/// The AS number derived from a member's public key: a private 4-octet AS.
pub fn asn(key: &Key) -> u32 {
    let span = (ASN_LAST - ASN_FIRST) as u64 + 1;
    ASN_FIRST + (hash(b"asn", key, 0) % span) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Key {
        // Public keys are uniform 32-byte values; these stand in for them.
        let mut k = [0u8; 32];
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ n as u64;
        for chunk in k.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        Key(k)
    }

    const PIN_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 211, 116);
    const PIN_V6: Ipv6Addr = Ipv6Addr::new(
        0xfd6d, 0x6573, 0x6864, 0xc2b0, 0xb98b, 0x518b, 0x5fe0, 0x5891,
    );
    const PIN_ASN: u32 = 4_201_375_659;

    #[test]
    fn derived_numbers_lie_in_their_ranges_and_are_stable() {
        let net = u32::from(OVERLAY_V4.0);
        for n in 0..10_000 {
            let k = key(n);
            let v4 = u32::from(overlay_v4(&k));
            assert_eq!(v4 >> 17, net >> 17, "{}", Ipv4Addr::from(v4));
            assert!(v4 != net && v4 != net | 0x1_ffff);
            let v6 = overlay_v6(&k).segments();
            assert_eq!(v6[..3], [0xfd6d, 0x6573, 0x6864]);
            assert!(v6[3..] != [0; 5]);
            assert!((ASN_FIRST..=ASN_LAST).contains(&asn(&k)));
            let lan = lan_alias(&k).octets();
            assert!(lan[0] == 10 && (64..128).contains(&lan[1]) && lan[3] == 0);
            assert_eq!(overlay_v4(&k), overlay_v4(&key(n)), "stable");
        }
        // A fixed example, so that a change of the derivation is seen: it
        // renumbers every mesh built on derived numbers.
        let zero = Key([0u8; 32]);
        assert_eq!(
            (overlay_v4(&zero), overlay_v6(&zero), asn(&zero)),
            (PIN_V4, PIN_V6, PIN_ASN)
        );
    }

    #[test]
    fn derived_addresses_spread_over_the_range() {
        // 10,000 keys over 131,070 hosts: a uniform spread puts about 370
        // pairs together (n²/2m); a poor mix would put many more.
        let mut seen = std::collections::HashMap::new();
        let mut pairs = 0;
        let mut asns = std::collections::HashSet::new();
        for n in 0..10_000 {
            let c = seen.entry(overlay_v4(&key(n))).or_insert(0);
            pairs += *c;
            *c += 1;
            asns.insert(asn(&key(n)));
        }
        assert!(
            (250..500).contains(&pairs),
            "{pairs} pairs share an address"
        );
        assert!(
            asns.len() >= 9_998,
            "{} AS numbers for 10,000 keys",
            asns.len()
        );
    }
}
