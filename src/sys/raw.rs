//! The packet path's system calls, made directly (`syscall(2)`), not through
//! libc's wrappers: glibc's `read`, `write`, `writev`, `recvmsg` and `sendto`
//! are thread-cancellation points, and each call switches cancellation on
//! and off around the system call. meshd never cancels a thread, and on a
//! 128-byte game packet those switches cost about 3 % of the instructions
//! (callgrind, `scripts/bench-cpu.sh`). musl makes the same calls.
//!
//! Each retries on `EINTR` and returns the kernel's error otherwise.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::libc;

fn retry(mut call: impl FnMut() -> libc::c_long) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `read(2)` into `buf`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which
    // is live and exclusively borrowed for the call.
    retry(|| unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) })
}

/// `write(2)` of `buf`.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads `buf.len()` bytes from the live `buf`.
    retry(|| unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), buf.len()) })
}

/// `writev(2)` of `a` then `b`.
pub fn writev2(fd: RawFd, a: &[u8], b: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: a.as_ptr() as *mut libc::c_void,
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        },
    ];
    // SAFETY: both iovecs describe live slices, which the kernel only reads.
    retry(|| unsafe { libc::syscall(libc::SYS_writev, fd, iov.as_ptr(), 2) })
}

/// `recvmsg(2)` with `msg` as set up by the caller.
///
/// # Safety
/// Every pointer in `msg` must be valid for the lengths it gives, for the
/// call's duration.
pub unsafe fn recvmsg(fd: RawFd, msg: &mut libc::msghdr, flags: libc::c_int) -> io::Result<usize> {
    let msg: *mut libc::msghdr = msg;
    // SAFETY: the caller vouches for `msg`'s pointers.
    retry(|| unsafe { libc::syscall(libc::SYS_recvmsg, fd, msg, flags) })
}

/// `to` as the kernel takes it: the address and its length.
fn sockaddr(to: SocketAddr) -> (libc::sockaddr_in6, libc::socklen_t) {
    // A sockaddr_in6 has room for either family.
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut storage: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let len = match to {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: a sockaddr_in is smaller than a sockaddr_in6 and no
            // more aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_in6).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            storage = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// `sendto(2)` of `buf` to `to`.
pub fn send_to(fd: RawFd, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
    let (addr, len) = sockaddr(to);
    let addr: *const libc::sockaddr_in6 = &addr;
    // SAFETY: `buf` and the address are live for the call and only read;
    // `len` is the length of the address written into `addr`.
    retry(|| unsafe { libc::syscall(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), 0, addr, len) })
}

/// `sendmsg(2)` of `buf` to `to` with a `UDP_SEGMENT` control message: the
/// kernel sends it as datagrams of `seg` bytes (the last possibly shorter).
/// The control message is built on the stack (nix's `sendmsg` allocates
/// one).
pub fn send_segments(fd: RawFd, buf: &[u8], seg: u16, to: SocketAddr) -> io::Result<usize> {
    let (mut addr, len) = sockaddr(to);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // One cmsghdr and a u16, 8-byte aligned.
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&control));
    msg.msg_controllen = space as _;
    // SAFETY: `msg` describes `control`, at least `space` bytes long, so
    // CMSG_FIRSTHDR is a header within it, and its data has room for the
    // u16 (CMSG_LEN of it), written unaligned.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
    }
    let msg: *const libc::msghdr = &msg;
    // SAFETY: every pointer in `msg` is to a live local or `buf`, of the
    // length given, and only read by the kernel.
    retry(|| unsafe { libc::syscall(libc::SYS_sendmsg, fd, msg, 0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// The real kernel: a datagram sent with `send_to` over loopback (both
    /// families, where there is IPv6) arrives whole from the sender.
    #[test]
    fn send_to_reaches_the_address_given() {
        for at in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(rx) = UdpSocket::bind(at) else {
                assert!(at.starts_with('['), "IPv4 loopback must be there");
                continue;
            };
            let tx = UdpSocket::bind(at).unwrap();
            let n = send_to(tx.as_raw_fd(), b"game packet", rx.local_addr().unwrap()).unwrap();
            assert_eq!(n, 11);
            let mut buf = [0u8; 64];
            rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let (len, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..len], from),
                (&b"game packet"[..], tx.local_addr().unwrap())
            );
        }
    }

    #[test]
    fn read_write_and_writev_move_bytes_through_a_pipe() {
        let (r, w) = nix::unistd::pipe().unwrap();
        assert_eq!(write(w.as_raw_fd(), b"abc").unwrap(), 3);
        assert_eq!(writev2(w.as_raw_fd(), b"de", b"fgh").unwrap(), 5);
        let mut buf = [0u8; 16];
        let n = read(r.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"abcdefgh");
        drop(w);
        assert_eq!(read(r.as_raw_fd(), &mut buf).unwrap(), 0);
        let e = read(-1, &mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
}
