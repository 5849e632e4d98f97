//! Keys, members and nodes for the children's tests: node `n` has overlay
//! address 10.0.0.n, AS 65000+n, home 192.168.n.0/24, and is reached at
//! 198.51.100.n:51820.

extern crate std;

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::prefix::Prefix;
use crate::wg::boring::{public_key, BoringCrypto, BoringTunnel};
use crate::wg::{BfdSetting, Key, MemberConfig};

use crate::node::slots::Slots;
use crate::node::NodeConfig;

/// Runs `f` on a thread with a stack that holds a member table (a few
/// MB) or a node, as the simulation does.
pub fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(1 << 28)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

pub fn private_key(n: u8) -> Key {
    // Not in byte 0 or 31: x25519 clamps their low and high bits.
    let mut k = [0x11u8; 32];
    k[5] = n;
    Key(k)
}

pub fn overlay(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

pub fn lan(n: u8) -> Prefix {
    Prefix::v4(192, 168, n, 0, 24).unwrap()
}

pub fn underlay(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)), 51820)
}

pub fn asn(n: u8) -> u32 {
    65000 + n as u32
}

/// Node `n`'s own settings.
pub fn node_config(n: u8) -> NodeConfig {
    let mut c = NodeConfig::new(private_key(n), overlay(n), asn(n));
    c.lan_prefixes.push(lan(n)).unwrap();
    c.seed = 0x5eed_0000 + n as u64;
    c
}

pub fn crypto(n: u8) -> BoringCrypto {
    BoringCrypto::new(&private_key(n))
}

/// Node `n` as a member entry, with its one endpoint.
pub fn member(n: u8) -> MemberConfig {
    MemberConfig {
        name: heapless::String::try_from(std::format!("r{n}").as_str()).unwrap(),
        public_key: public_key(&private_key(n)),
        overlay: overlay(n),
        overlay_v6: None,
        asn: asn(n),
        prefixes: heapless::Vec::from_slice(&[lan(n)]).unwrap(),
        endpoints: heapless::Vec::from_slice(&[underlay(n)]).unwrap(),
        keepalive: Some(25),
        hold_time: None,
        bfd: BfdSetting::Inherit,
        exit: false,
        inviter: true,
    }
}

/// Node `own`'s member table holding `members`, in that order from
/// slot 0.
pub fn slots(
    now: embassy_time::Instant,
    own: u8,
    members: &[MemberConfig],
) -> std::boxed::Box<Slots<'static, BoringTunnel>> {
    let node = node_config(own);
    let crypto = crypto(own);
    let mut s = std::boxed::Box::new(Slots::leak());
    for m in members {
        s.add(now, &node, &crypto, m.clone()).unwrap();
    }
    s
}
