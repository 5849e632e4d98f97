//! The LAN side of relayed discovery (issue 14): a packet socket on the LAN
//! device that takes in the consoles' discovery broadcasts and multicasts,
//! and sends the ones relayed from friends' homes.
//!
//! - **Capture.** An `AF_PACKET`/`SOCK_DGRAM` socket (IP packets, no link
//!   header) bound to the LAN device for IPv4, with a classic BPF filter in
//!   the kernel: only frames that arrived as link-layer broadcast or
//!   multicast (never `PACKET_OUTGOING`, so never what this router sends,
//!   relayed packets included), IPv4 UDP, not a later fragment, to one of
//!   the relayed ports. Everything else on the LAN never wakes meshd, and
//!   nothing else on the router is disturbed: a packet socket takes a copy,
//!   the kernel's own receive path goes on as before.
//! - **Groups.** SSDP's and mDNS's groups (when relayed) are joined on the
//!   LAN device at the IP level (an unbound UDP socket holds the
//!   membership), so that the NIC's multicast filter and a snooping bridge
//!   pass them up to us.
//! - **Send.** A relayed packet is sent on the same socket to the link-layer
//!   broadcast address, or to the group's multicast MAC (RFC 1112 §6.4): it
//!   does not go through the host's routing, firewall or reverse-path
//!   checks, which would refuse a source from another home.
//!
//! The filter is the first line; mesh-core's relay decides (`Policy`,
//! sources inside the LAN, rate caps) and counts.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::libc;

/// `ETH_P_IP` in network byte order, as `sockaddr_ll` and `socket(2)` take it.
const ETH_P_IP_BE: u16 = (libc::ETH_P_IP as u16).to_be();

/// The LAN's discovery socket.
#[derive(Debug)]
pub struct LanSocket {
    fd: OwnedFd,
    ifindex: u32,
    /// Holds the joined groups while it is open.
    _groups: Option<UdpSocket>,
}

impl LanSocket {
    /// A socket on device `ifindex` taking broadcasts to `ports` and the
    /// multicast `groups` (group, port).
    pub fn open(ifindex: u32, ports: &[u16], groups: &[(Ipv4Addr, u16)]) -> io::Result<LanSocket> {
        // Protocol 0 at first: nothing is queued before the filter is on and
        // the socket is bound to the one device.
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let all_ports: Vec<u16> = ports
            .iter()
            .copied()
            .chain(groups.iter().map(|(_, p)| *p))
            .collect();
        attach_filter(fd.as_fd(), &filter(&all_ports))?;
        let addr = link_addr(ifindex, None);
        // SAFETY: `addr` is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let groups = if groups.is_empty() {
            None
        } else {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            for (group, _) in groups {
                join(s.as_fd(), *group, ifindex)?;
            }
            Some(s)
        };
        Ok(LanSocket {
            fd,
            ifindex,
            _groups: groups,
        })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// One captured IPv4 packet (`WouldBlock` when there is none).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Sends an IPv4 packet as a link-layer broadcast, or to its
    /// destination group's multicast MAC.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let dst = packet
            .get(16..20)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(Ipv4Addr::from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IPv4 packet"))?;
        let addr = link_addr(self.ifindex, Some(link_destination(dst)));
        // SAFETY: `packet` is valid for reads of its length; `addr` is a
        // valid sockaddr_ll of the size given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                libc::MSG_DONTWAIT,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Frames the kernel dropped because meshd did not read them in time
    /// (reading resets the count).
    pub fn drops(&self) -> io::Result<u32> {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `stats` is valid for writes of `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stats.tp_drops)
    }
}

impl AsFd for LanSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The link-layer destination of a relayed packet: the group's multicast
/// MAC (01:00:5e and the group's low 23 bits), else broadcast.
pub fn link_destination(dst: Ipv4Addr) -> [u8; 6] {
    if dst.is_multicast() {
        let o = dst.octets();
        [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
    } else {
        [0xff; 6]
    }
}

fn link_addr(ifindex: u32, mac: Option<[u8; 6]>) -> libc::sockaddr_ll {
    let mut addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_IP_BE,
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    if let Some(mac) = mac {
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&mac);
    }
    addr
}

fn join(fd: BorrowedFd<'_>, group: Ipv4Addr, ifindex: u32) -> io::Result<()> {
    let req = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from(group).to_be(),
        },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as i32,
    };
    // SAFETY: `req` is a valid ip_mreqn of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            (&req as *const libc::ip_mreqn).cast(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("joining {group}: {e}")));
    }
    Ok(())
}

fn attach_filter(fd: BorrowedFd<'_>, program: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, alive for the call; the kernel
    // copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// Classic BPF (linux/filter.h), what the kernel runs per frame.
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MSH: u16 = 0xa0;
const BPF_AND: u16 = 0x50;
const BPF_JEQ: u16 = 0x10;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;
/// Ancillary data: the frame's packet type (`SKF_AD_OFF + SKF_AD_PKTTYPE`).
const SKF_AD_PKTTYPE: u32 = (-0x1000i32) as u32 + 4;
const PACKET_BROADCAST: u32 = 1;
const PACKET_MULTICAST: u32 = 2;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The capture filter for `ports` (offsets from the IP header: the socket
/// is `SOCK_DGRAM`). At most 255 ports (the relay takes ten).
pub fn filter(ports: &[u16]) -> Vec<libc::sock_filter> {
    let ports: Vec<u16> = {
        let mut p = ports.to_vec();
        p.sort_unstable();
        p.dedup();
        p.truncate(200);
        p
    };
    if ports.is_empty() {
        return vec![stmt(BPF_RET | BPF_K, 0)];
    }
    let n = ports.len() as u8;
    // Jump offsets count from the next instruction; `drop` is the last.
    // Layout: 0 ld pkttype; 1 jeq bcast; 2 jeq mcast; 3 ldb [0]; 4 and;
    // 5 jeq 0x40; 6 ldb [9]; 7 jeq udp; 8 ldh [6]; 9 jset 0x1fff;
    // 10 ldxb msh; 11 ldh [x+2]; 12.. one jeq per port; accept; drop.
    let to_drop = |at: u8| 12 + n + 1 - (at + 1);
    let mut p = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_PKTTYPE),
        jump(BPF_JMP | BPF_JEQ | BPF_K, PACKET_BROADCAST, 1, 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, PACKET_MULTICAST, 0, to_drop(2)),
        stmt(BPF_LD | BPF_B | BPF_ABS, 0),
        stmt(BPF_ALU | BPF_AND | BPF_K, 0xf0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 0x40, 0, to_drop(5)),
        stmt(BPF_LD | BPF_B | BPF_ABS, 9),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 17, 0, to_drop(7)),
        stmt(BPF_LD | BPF_H | BPF_ABS, 6),
        jump(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, to_drop(9), 0),
        stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
        stmt(BPF_LD | BPF_H | BPF_IND, 2),
    ];
    for (i, port) in ports.iter().enumerate() {
        // A match jumps to `accept`, right after the last port's test.
        let at = 12 + i as u8;
        let to_accept = 12 + n - (at + 1);
        // No match falls through to the next port's test; after the last
        // one, over `accept` to `drop`.
        let last = u8::from(i + 1 == ports.len());
        p.push(jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            *port as u32,
            to_accept,
            last,
        ));
    }
    p.push(stmt(BPF_RET | BPF_K, 0x0004_0000)); // accept: the whole packet
    p.push(stmt(BPF_RET | BPF_K, 0)); // drop
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program the way the kernel does, for the
    /// instructions `filter` uses.
    fn run(prog: &[libc::sock_filter], pkttype: u32, packet: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |i: usize| packet.get(i).copied().map(u32::from);
        let half = |i: usize| Some((byte(i)? << 8) | byte(i + 1)?);
        loop {
            let f = prog[pc];
            pc += 1;
            let k = f.k;
            match f.code {
                c if c == BPF_LD | BPF_W | BPF_ABS && k == SKF_AD_PKTTYPE => a = pkttype,
                c if c == BPF_LD | BPF_B | BPF_ABS => match byte(k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LD | BPF_H | BPF_ABS => match half(k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LD | BPF_H | BPF_IND => match half((x + k) as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LDX | BPF_B | BPF_MSH => match byte(k as usize) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                c if c == BPF_ALU | BPF_AND | BPF_K => a &= k,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += usize::from(if a == k { f.jt } else { f.jf })
                }
                c if c == BPF_JMP | BPF_JSET | BPF_K => {
                    pc += usize::from(if a & k != 0 { f.jt } else { f.jf })
                }
                c if c == BPF_RET | BPF_K => return k,
                c => panic!("instruction {c:#x} not modelled"),
            }
        }
    }

    fn udp(dst: Ipv4Addr, port: u16) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        let n = mesh_core::ip::build_udp4_plain(
            Ipv4Addr::new(192, 168, 1, 10),
            dst,
            40000,
            port,
            64,
            b"hi",
            &mut out,
        )
        .unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn the_filter_takes_incoming_broadcast_and_multicast_udp_to_the_ports_only() {
        let prog = filter(&[987, 9302, 30000, 1900]);
        let bcast = Ipv4Addr::BROADCAST;
        for port in [987, 9302, 30000, 1900] {
            assert_ne!(run(&prog, PACKET_BROADCAST, &udp(bcast, port)), 0);
            assert_ne!(run(&prog, PACKET_MULTICAST, &udp(bcast, port)), 0);
        }
        assert_eq!(run(&prog, PACKET_BROADCAST, &udp(bcast, 5353)), 0);
        assert_eq!(run(&prog, PACKET_BROADCAST, &udp(bcast, 67)), 0);
        // Unicast to the router, and what the router itself sends.
        assert_eq!(run(&prog, 0, &udp(bcast, 9302)), 0);
        assert_eq!(run(&prog, 4, &udp(bcast, 9302)), 0);
        // Not UDP; a later fragment; IPv6; truncated.
        let mut tcp = udp(bcast, 9302);
        tcp[9] = 6;
        assert_eq!(run(&prog, PACKET_BROADCAST, &tcp), 0);
        let mut frag = udp(bcast, 9302);
        frag[6..8].copy_from_slice(&[0x00, 0x10]);
        assert_eq!(run(&prog, PACKET_BROADCAST, &frag), 0);
        let mut first = udp(bcast, 9302);
        first[6..8].copy_from_slice(&[0x20, 0x00]); // more fragments: the relay counts it
        assert_ne!(run(&prog, PACKET_BROADCAST, &first), 0);
        let mut v6 = udp(bcast, 9302);
        v6[0] = 0x60;
        assert_eq!(run(&prog, PACKET_BROADCAST, &v6), 0);
        assert_eq!(run(&prog, PACKET_BROADCAST, &udp(bcast, 9302)[..21]), 0);
        // An IP header with options: the port is found after them.
        let mut opts = udp(bcast, 9302);
        opts[0] = 0x46;
        opts.splice(20..20, [1, 1, 1, 1]);
        assert_ne!(run(&prog, PACKET_BROADCAST, &opts), 0);
        // No ports: nothing.
        assert_eq!(run(&filter(&[]), PACKET_BROADCAST, &udp(bcast, 9302)), 0);
    }

    #[test]
    fn multicast_groups_map_to_their_ethernet_addresses() {
        let ssdp = Ipv4Addr::new(239, 255, 255, 250);
        assert_eq!(link_destination(ssdp), [0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa]);
        let mdns = Ipv4Addr::new(224, 0, 0, 251);
        assert_eq!(link_destination(mdns), [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
        assert_eq!(link_destination(Ipv4Addr::new(192, 168, 2, 255)), [0xff; 6]);
    }
}
