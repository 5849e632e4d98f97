//! [`Crypto`] and [`Tunnel`] on boringtun's `noise` module (feature `std`).
//!
//! One rate limiter is shared by all tunnels: under a flood of handshake
//! initiations it answers with cookie replies (WireGuard §5.4.7) instead of
//! doing Diffie-Hellman for each.

extern crate std;

use core::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use embassy_time::Duration;

use super::{Crypto, Identified, Key, Tunnel, TunnelResult, WgError};

/// Handshakes per second accepted before cookies are required.
pub const HANDSHAKE_RATE_LIMIT: u64 = 100;

pub struct BoringCrypto {
    secret: StaticSecret,
    public: PublicKey,
    limiter: Arc<RateLimiter>,
}

impl core::fmt::Debug for BoringCrypto {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BoringCrypto")
            .field("public", &Key(self.public.to_bytes()))
            .finish_non_exhaustive()
    }
}

impl BoringCrypto {
    pub fn new(private_key: &Key) -> BoringCrypto {
        let secret = StaticSecret::from(private_key.0);
        let public = PublicKey::from(&secret);
        let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        BoringCrypto {
            secret,
            public,
            limiter,
        }
    }
}

/// The public key of a private key.
pub fn public_key(private_key: &Key) -> Key {
    Key(PublicKey::from(&StaticSecret::from(private_key.0)).to_bytes())
}

fn map_error(e: WireGuardError) -> WgError {
    match e {
        WireGuardError::InvalidMac | WireGuardError::InvalidAeadTag | WireGuardError::WrongKey => {
            WgError::Authentication
        }
        WireGuardError::InvalidCounter | WireGuardError::DuplicateCounter => WgError::Replay,
        WireGuardError::WrongTai64nTimestamp | WireGuardError::InvalidTai64nTimestamp => {
            WgError::StaleHandshake
        }
        WireGuardError::NoCurrentSession | WireGuardError::WrongIndex => WgError::NoSession,
        WireGuardError::ConnectionExpired => WgError::Expired,
        WireGuardError::UnderLoad => WgError::UnderLoad,
        WireGuardError::InvalidPacket
        | WireGuardError::IncorrectPacketLength
        | WireGuardError::WrongPacketType
        | WireGuardError::UnexpectedPacket => WgError::InvalidPacket,
        _ => WgError::Other,
    }
}

fn convert(r: TunnResult<'_>) -> TunnelResult<'_> {
    match r {
        TunnResult::Done => TunnelResult::Done,
        TunnResult::Err(e) => TunnelResult::Error(map_error(e)),
        TunnResult::WriteToNetwork(b) => TunnelResult::Network(b),
        TunnResult::WriteToTunnelV4(b, _) | TunnResult::WriteToTunnelV6(b, _) => {
            TunnelResult::Inner(b)
        }
    }
}

impl Crypto for BoringCrypto {
    type Tunnel = BoringTunnel;

    fn public_key(&self) -> Key {
        Key(self.public.to_bytes())
    }

    fn tunnel(&self, peer: &Key, index: u32, keepalive: Option<u16>) -> BoringTunnel {
        BoringTunnel(Tunn::new(
            self.secret.clone(),
            PublicKey::from(peer.0),
            None,
            keepalive,
            index,
            Some(self.limiter.clone()),
        ))
    }

    fn identify<'o>(&self, from: SocketAddr, datagram: &[u8], out: &'o mut [u8]) -> Identified<'o> {
        let packet = match self.limiter.verify_packet(Some(from.ip()), datagram, out) {
            Ok(p) => p,
            Err(TunnResult::WriteToNetwork(cookie)) => return Identified::CookieReply(cookie),
            Err(TunnResult::Err(e)) => return Identified::Drop(map_error(e)),
            Err(_) => return Identified::Drop(WgError::Other),
        };
        match packet {
            Packet::HandshakeInit(p) => {
                match parse_handshake_anon(&self.secret, &self.public, &p) {
                    Ok(half) => Identified::Initiation(Key(half.peer_static_public)),
                    Err(e) => Identified::Drop(map_error(e)),
                }
            }
            Packet::HandshakeResponse(p) => Identified::Index(p.receiver_idx >> 8),
            Packet::PacketCookieReply(p) => Identified::Index(p.receiver_idx >> 8),
            Packet::PacketData(p) => Identified::Index(p.receiver_idx >> 8),
        }
    }

    fn data_index(&self, datagram: &[u8]) -> Option<u32> {
        // boringtun's parse_incoming_packet for a data message: type 4 with
        // zero reserved octets, at least header and tag; the rate limiter
        // checks only handshakes.
        match datagram {
            [4, 0, 0, 0, a, b, c, d, ..] if datagram.len() >= 32 => {
                Some(u32::from_le_bytes([*a, *b, *c, *d]) >> 8)
            }
            _ => None,
        }
    }

    fn tick(&self) {
        self.limiter.reset_count();
    }
}

/// A boringtun tunnel.
pub struct BoringTunnel(Tunn);

impl core::fmt::Debug for BoringTunnel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BoringTunnel").finish_non_exhaustive()
    }
}

impl Tunnel for BoringTunnel {
    fn encapsulate<'o>(&mut self, packet: &[u8], out: &'o mut [u8]) -> TunnelResult<'o> {
        // boringtun panics on a short output buffer: refuse instead.
        if out.len() < packet.len() + super::WG_OVERHEAD || out.len() < 148 {
            return TunnelResult::Error(WgError::Other);
        }
        convert(self.0.encapsulate(packet, out))
    }

    fn decapsulate<'o>(
        &mut self,
        from: Option<IpAddr>,
        datagram: &[u8],
        out: &'o mut [u8],
    ) -> TunnelResult<'o> {
        // boringtun panics when a datagram's plaintext cannot fit: refuse.
        if out.len() < datagram.len().max(148) {
            return TunnelResult::Error(WgError::Other);
        }
        convert(self.0.decapsulate(from, datagram, out))
    }

    fn update_timers<'o>(&mut self, out: &'o mut [u8]) -> TunnelResult<'o> {
        convert(self.0.update_timers(out))
    }

    fn initiate<'o>(&mut self, out: &'o mut [u8]) -> TunnelResult<'o> {
        convert(self.0.format_handshake_initiation(out, true))
    }

    fn start_handshake<'o>(&mut self, out: &'o mut [u8]) -> TunnelResult<'o> {
        convert(self.0.format_handshake_initiation(out, false))
    }

    fn since_handshake(&self) -> Option<Duration> {
        self.0
            .time_since_last_handshake()
            .map(|d| Duration::from_micros(d.as_micros() as u64))
    }

    fn rtt(&self) -> Option<Duration> {
        self.0.stats().4.map(|ms| Duration::from_millis(ms as u64))
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, SocketAddrV4};

    fn from() -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 51820))
    }

    #[test]
    fn data_index_answers_what_identify_answers_for_data_and_nothing_else() {
        let (ka, kb) = (Key([1; 32]), Key([2; 32]));
        let (a, b) = (BoringCrypto::new(&ka), BoringCrypto::new(&kb));
        let mut ta = a.tunnel(&b.public_key(), 7, None);
        let mut tb = b.tunnel(&a.public_key(), 9, None);
        let (mut m1, mut m2, mut m3) = ([0u8; 256], [0u8; 256], [0u8; 256]);
        let init = match ta.initiate(&mut m1) {
            TunnelResult::Network(p) => p.to_vec(),
            r => panic!("no initiation: {r:?}"),
        };
        let response = match tb.decapsulate(None, &init, &mut m2) {
            TunnelResult::Network(p) => p.to_vec(),
            r => panic!("no response: {r:?}"),
        };
        let _ = ta.decapsulate(None, &response, &mut m3);
        let data = match ta.encapsulate(&[0x45; 40], &mut m1) {
            TunnelResult::Network(p) => p.to_vec(),
            r => panic!("no data message: {r:?}"),
        };
        let mut scratch = [0u8; 148];
        match b.identify(from(), &data, &mut scratch) {
            Identified::Index(i) => assert_eq!(b.data_index(&data), Some(i)),
            _ => panic!("data not identified by index"),
        }
        // Handshakes go the long way (the rate limiter, the static key).
        assert_eq!(b.data_index(&init), None);
        assert_eq!(a.data_index(&response), None);
        // A data header without its tag, or with reserved octets set, is
        // no data message.
        assert_eq!(b.data_index(&data[..31]), None);
        let mut reserved = data.clone();
        reserved[2] = 1;
        assert_eq!(b.data_index(&reserved), None);
        assert!(matches!(
            b.identify(from(), &reserved, &mut scratch),
            Identified::Drop(_)
        ));
    }
}
