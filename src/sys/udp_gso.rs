//! UDP segmentation offload on the mesh socket, both ways.
//!
//! Sending (`UDP_SEGMENT`): the datagrams a TSO frame from the TUN became,
//! all to one member and all of one size but the last, go to the kernel in
//! one `sendmsg`. The stack then handles them as one buffer as far as it can
//! (on a veth or a NIC with UDP segmentation, to the wire), where `sendto`
//! per datagram paid the whole stack each time.
//!
//! Receiving (`UDP_GRO`): the kernel may hand over several datagrams from
//! one sender, of one size but the last, in one read; the control message
//! says the size. [`recv`] returns it, and the caller cuts the buffer.
//!
//! Both need Linux 5.0 (4.18 for sending). A kernel or a device that cannot
//! do it answers the first `sendmsg` with an error; the daemon then sends
//! each datagram alone from then on.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{setsockopt, sockopt};

/// At most this many datagrams in one `sendmsg` (the kernel's
/// `UDP_MAX_SEGMENTS` was 64 before Linux 6.2).
pub const MAX_SEGMENTS: usize = 64;

/// At most this many bytes in one `sendmsg`: an IPv4 datagram's payload
/// limit, less the UDP header, with room to spare.
pub const MAX_BYTES: usize = 65000;

/// Datagrams gathered for one `sendmsg`: same destination, same size, the
/// last one possibly shorter (nothing may follow a short one).
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    to: Option<SocketAddr>,
    /// Every datagram's size but a short last one's.
    seg: usize,
    count: usize,
    /// Bytes gathered.
    used: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            // Zeroed, so only what a batch reaches is ever touched.
            buf: vec![0; MAX_BYTES],
            to: None,
            seg: 0,
            count: 0,
            used: 0,
        }
    }
}

impl Batch {
    /// Adds `bytes` for `to` if it can join what is gathered; `false` if it
    /// cannot (another destination, a longer datagram, one after a short one,
    /// or full): send what is gathered, then add it again.
    pub fn push(&mut self, bytes: &[u8], to: SocketAddr) -> bool {
        if bytes.is_empty() {
            return false;
        }
        if self.count == 0 {
            if bytes.len() > MAX_BYTES {
                return false;
            }
            self.to = Some(to);
            self.seg = bytes.len();
        } else if self.to != Some(to)
            || self.used != self.count * self.seg
            || bytes.len() > self.seg
            || self.count == MAX_SEGMENTS
            || self.used + bytes.len() > MAX_BYTES
        {
            return false;
        }
        self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
        self.count += 1;
        true
    }

    /// How many datagrams are gathered.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// What is gathered: the destination, the segment size, the bytes (the
    /// datagrams back to back); the batch is then empty.
    pub fn take(&mut self) -> Option<(SocketAddr, usize, &[u8])> {
        let to = self.to.take()?;
        let used = std::mem::take(&mut self.used);
        self.count = 0;
        Some((to, self.seg, &self.buf[..used]))
    }
}

/// Sends `bytes`, datagrams of `seg` bytes back to back (the last possibly
/// shorter), to `to` in one `sendmsg` with `UDP_SEGMENT`.
pub fn send(sock: &UdpSocket, bytes: &[u8], seg: usize, to: SocketAddr) -> io::Result<()> {
    let seg = u16::try_from(seg).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    super::raw::send_segments(sock.as_raw_fd(), bytes, seg, to).map(drop)
}

/// Whether an error from [`send`] means the offload itself was refused
/// (so the datagrams should go one by one), not the destination.
pub fn refused(e: &io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|n| {
        [
            Errno::EIO,
            Errno::EINVAL,
            Errno::ENOPROTOOPT,
            Errno::EOPNOTSUPP,
        ]
        .contains(&Errno::from_raw(n))
    })
}

/// Asks the kernel to hand over coalesced datagrams on `sock`. Without it
/// (a kernel before 5.0) every read is one datagram, as before.
pub fn enable_gro(sock: &UdpSocket) -> io::Result<()> {
    setsockopt(sock, sockopt::UdpGroSegment, &true).map_err(io::Error::from)
}

/// Reads into `buf`: the length, the sender, and the size of each datagram
/// in it if the kernel coalesced several (0: one datagram). Straight on
/// libc: nix's `recvmsg` allocates its control buffer, once a packet.
pub fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, usize)> {
    use nix::libc;
    // One cmsghdr and an int, 8-byte aligned.
    let mut control = [0u64; 4];
    // The sender: a sockaddr_in6 has room for either family (and is a
    // quarter of a sockaddr_storage to clear, once a packet).
    // SAFETY: all-zero is a valid sockaddr_in6 and msghdr.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` is to a live local (or `buf`) of the
    // length given, and lives past the call.
    let n = unsafe { super::raw::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT)? };
    let mut seg = 0;
    // SAFETY: `msg` came back from recvmsg: its control pointer and length
    // describe what the kernel wrote into `control`, which CMSG_FIRSTHDR
    // and CMSG_NXTHDR walk within; the data of a SOL_UDP/UDP_GRO message is
    // one int, read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                seg = usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let addr = match i32::from(from.sin6_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET), which
            // is smaller than the sockaddr_in6 it is in, and no more aligned.
            let a = unsafe { &*(&from as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            SocketAddr::from((
                std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            let a = &from;
            SocketAddr::V6(std::net::SocketAddrV6::new(
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            ))
        }
        _ => return Err(io::Error::other("datagram without a sender address")),
    };
    Ok((n, addr, seg))
}

/// The datagrams of a coalesced read: `seg` bytes each, the last possibly
/// shorter; `seg` 0 (not coalesced) is the whole buffer as one.
pub fn datagrams(buf: &[u8], seg: usize) -> impl Iterator<Item = &[u8]> {
    let size = if seg == 0 { buf.len().max(1) } else { seg };
    buf.chunks(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn a_batch_takes_equal_datagrams_then_one_short_one() {
        let mut b = Batch::default();
        assert!(b.push(&[1; 100], addr(1)));
        assert!(b.push(&[2; 100], addr(1)));
        assert!(!b.push(&[3; 101], addr(1)), "longer than the first");
        assert!(!b.push(&[3; 100], addr(2)), "another destination");
        assert!(b.push(&[3; 40], addr(1)), "a short last one");
        assert!(!b.push(&[4; 40], addr(1)), "nothing after a short one");
        assert_eq!(b.len(), 3);
        let (to, seg, bytes) = b.take().unwrap();
        assert_eq!((to, seg, bytes.len()), (addr(1), 100, 240));
        let cut: Vec<&[u8]> = datagrams(bytes, seg).collect();
        assert_eq!(cut, [&[1u8; 100][..], &[2; 100][..], &[3; 40][..]]);
        assert!(b.is_empty() && b.take().is_none());
        // Empty again: a new destination and size.
        assert!(b.push(&[5; 10], addr(2)));
        assert_eq!(
            b.take().map(|(t, s, b)| (t, s, b.len())),
            Some((addr(2), 10, 10))
        );
    }

    #[test]
    fn a_batch_is_bounded() {
        let mut b = Batch::default();
        for _ in 0..MAX_SEGMENTS {
            assert!(b.push(&[0; 1000], addr(1)));
        }
        assert!(!b.push(&[0; 1000], addr(1)), "segments");
        b.take();
        for _ in 0..MAX_BYTES / 1452 {
            assert!(b.push(&[0; 1452], addr(1)));
        }
        assert!(!b.push(&[0; 1452], addr(1)), "bytes");
        b.take();
        assert!(!b.push(&[], addr(1)), "an empty datagram is sent alone");
    }

    #[test]
    fn a_read_that_was_not_coalesced_is_one_datagram() {
        assert_eq!(datagrams(&[7; 30], 0).count(), 1);
        assert_eq!(datagrams(&[7; 30], 30).count(), 1);
        assert_eq!(
            datagrams(&[7; 30], 7).map(<[u8]>::len).collect::<Vec<_>>(),
            [7, 7, 7, 7, 2]
        );
    }

    /// The real kernel, over loopback: a batch sent in one `sendmsg`
    /// arrives as its datagrams, each whole, in order, whether the receiving
    /// socket asks for coalescing or not.
    #[test]
    fn a_batch_crosses_loopback_as_its_datagrams() {
        for (gro, at) in [
            (false, "127.0.0.1:0"),
            (true, "127.0.0.1:0"),
            (false, "[::1]:0"),
            (true, "[::1]:0"),
        ] {
            let Ok(rx) = UdpSocket::bind(at) else {
                assert!(at.starts_with('['), "IPv4 loopback must be there");
                eprintln!("no IPv6 loopback here: {at} not tried");
                continue;
            };
            if gro {
                enable_gro(&rx).unwrap();
            }
            let tx = UdpSocket::bind(at).unwrap();
            let mut b = Batch::default();
            for i in 0..10u8 {
                assert!(b.push(&[i; 1200], rx.local_addr().unwrap()));
            }
            assert!(b.push(&[99; 500], rx.local_addr().unwrap()));
            let (to, seg, bytes) = b.take().unwrap();
            send(&tx, bytes, seg, to).unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            while got.len() < 11 {
                // MSG_DONTWAIT: wait for readability first.
                let mut peek = [0u8; 1];
                rx.peek(&mut peek).unwrap();
                let (len, from, seg) = recv(&rx, &mut buf).unwrap();
                assert_eq!(from, tx.local_addr().unwrap());
                got.extend(datagrams(&buf[..len], seg).map(<[u8]>::to_vec));
            }
            assert_eq!(got.len(), 11, "gro {gro}");
            for (i, d) in got.iter().enumerate() {
                let (len, byte) = if i == 10 { (500, 99) } else { (1200, i as u8) };
                assert_eq!((d.len(), d[0]), (len, byte), "datagram {i}, gro {gro}");
            }
        }
    }
}
