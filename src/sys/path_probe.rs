//! Is there a carrier-grade NAT between us and the internet?
//!
//! STUN sees only the outermost NAT. A carrier-grade NAT shows itself on the
//! path instead: its inside address is in the shared address space
//! 100.64.0.0/10 (RFC 6598). Like traceroute, we send a STUN Binding request
//! towards a member's public endpoint with IP TTL 1, 2, 3, ... and read the
//! ICMP Time Exceeded each router on the way sends back (Linux queues them
//! on the socket's error queue with `IP_RECVERR`, offender address
//! included). A hop in 100.64.0.0/10 before the member answers means CGNAT.
//!
//! The probe blocks for up to a few seconds, so it runs on its own thread and
//! the event loop picks up its verdict; it needs no privileges.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn};

use mesh_core::nat::is_shared_address;
use mesh_core::stun;

/// Hops tried before giving up.
pub const MAX_HOPS: u8 = 6;
/// How long one hop may take to answer.
const HOP_WAIT: Duration = Duration::from_millis(400);

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathReport {
    /// Routers that answered, in hop order.
    pub hops: Vec<Ipv4Addr>,
    /// The target itself answered (the path is complete).
    pub reached: bool,
}

impl PathReport {
    /// CGNAT if any hop is in the shared address space. `None` when the
    /// path told nothing (no hop answered and the target did not either).
    pub fn cgnat(&self) -> Option<bool> {
        if self.hops.iter().any(|h| is_shared_address(IpAddr::V4(*h))) {
            Some(true)
        } else if self.reached || !self.hops.is_empty() {
            Some(false)
        } else {
            None
        }
    }
}

/// Walks the path to `target` (blocking, a few seconds at most).
pub fn probe(target: SocketAddr) -> std::io::Result<PathReport> {
    let SocketAddr::V4(target) = target else {
        return Ok(PathReport {
            hops: Vec::new(),
            reached: false,
        });
    };
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket::setsockopt(&sock, sockopt::Ipv4RecvErr, &true)?;
    let mut report = PathReport {
        hops: Vec::new(),
        reached: false,
    };
    let mut buf = [0u8; 512];
    for ttl in 1..=MAX_HOPS {
        socket::setsockopt(&sock, sockopt::Ipv4Ttl, &(ttl as i32))?;
        let mut tid = [0u8; 12];
        tid[0] = ttl;
        // Unique enough to tell our answers apart; nothing rides on it.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        tid[1..9].copy_from_slice(&stamp.to_be_bytes());
        tid[9..].copy_from_slice(&std::process::id().to_be_bytes()[1..]);
        let mut req = [0u8; 64];
        let n = stun::binding_request(stun::TransactionId(tid), None, &mut req)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        sock.send_to(&req[..n], target)?;
        let deadline = Instant::now() + HOP_WAIT;
        let mut answered = false;
        while !answered {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [PollFd::new(
                std::os::fd::AsFd::as_fd(&sock),
                PollFlags::POLLIN | PollFlags::POLLERR,
            )];
            let ms = PollTimeout::from(left.as_millis().min(1000) as u16);
            if poll(&mut fds, ms)? == 0 {
                break;
            }
            // An ICMP error for our datagram?
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in);
            if let Ok(msg) = socket::recvmsg::<SockaddrIn>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            ) {
                for c in msg.cmsgs().into_iter().flatten() {
                    if let ControlMessageOwned::Ipv4RecvErr(err, Some(offender)) = c {
                        let from = Ipv4Addr::from(u32::from_be(offender.sin_addr.s_addr));
                        // ICMP type 11 (time exceeded): a router on the way.
                        // Anything else (port unreachable) comes from the end.
                        if err.ee_type == 11 {
                            report.hops.push(from);
                        } else {
                            report.reached = true;
                        }
                        answered = true;
                    }
                }
                continue;
            }
            // The member's STUN answer: the path is complete.
            if let Ok((_, from)) = sock.recv_from(&mut buf) {
                if from == SocketAddr::V4(target) {
                    report.reached = true;
                    answered = true;
                }
            }
        }
        if report.reached {
            break;
        }
    }
    Ok(report)
}

/// Runs [`probe`] on a thread; the verdict lands in the returned cell.
pub fn spawn(target: SocketAddr) -> Arc<Mutex<Option<PathReport>>> {
    let cell = Arc::new(Mutex::new(None));
    let out = cell.clone();
    let spawned = std::thread::Builder::new()
        .name("path-probe".into())
        .spawn(move || {
            // Made by the loop, it would share the loop's raised priority.
            let _ = crate::sys::yield_to_the_loop();
            match probe(target) {
                Ok(r) => {
                    if let Ok(mut g) = out.lock() {
                        *g = Some(r);
                    }
                }
                Err(e) => log::warn!("path probe towards {target}: {e}"),
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the path probe: {e}");
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let r = |hops: &[&str], reached| PathReport {
            hops: hops.iter().map(|h| h.parse().unwrap()).collect(),
            reached,
        };
        assert_eq!(r(&[], false).cgnat(), None);
        assert_eq!(r(&[], true).cgnat(), Some(false));
        assert_eq!(r(&["192.168.1.1"], true).cgnat(), Some(false));
        assert_eq!(r(&["10.5.0.1", "100.64.5.1"], true).cgnat(), Some(true));
        assert_eq!(r(&["100.127.0.1"], false).cgnat(), Some(true));
    }
}
