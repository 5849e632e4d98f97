//! Name resolution off the packet loop: members' endpoint names
//! (`list endpoint 'bob.example.net:51820'`) are resolved on a thread of
//! their own, because `getaddrinfo` can wait seconds for a DNS server, and
//! a packet loop that waits 40 ms takes every BFD session down.
//!
//! The daemon sends a member entry; the thread resolves its names and sends
//! the entry back with the addresses, then writes a byte to a pipe the
//! daemon's epoll watches. Until the answer comes the member runs with its
//! literal endpoints (and any it knew before).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};

use crate::config::MemberEntry;

/// Resolves one entry's endpoint names (blocking: only on the worker, or
/// before the packet loop starts).
pub fn resolve(entry: &MemberEntry) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (host, port) in entry.endpoint_names() {
        match (host, port).to_socket_addrs() {
            Ok(addrs) => out.extend(addrs),
            Err(e) => log::warn!("member {}: cannot resolve {host}: {e}", entry.name),
        }
    }
    out
}

/// The worker and the way back from it.
#[derive(Debug)]
pub struct Resolver {
    requests: Sender<MemberEntry>,
    answers: Receiver<(MemberEntry, Vec<SocketAddr>)>,
    /// Readable when answers wait.
    wake: UnixStream,
}

impl Resolver {
    pub fn start() -> io::Result<Resolver> {
        let (requests, todo) = channel::<MemberEntry>();
        let (done, answers) = channel();
        let (wake, mut ring) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        std::thread::Builder::new()
            .name("meshd-resolve".into())
            .spawn(move || {
                if let Err(e) = crate::sys::yield_to_the_loop() {
                    log::warn!("name lookups: {e}");
                }
                for entry in todo {
                    let addrs = resolve(&entry);
                    if done.send((entry, addrs)).is_err() {
                        return;
                    }
                    let _ = ring.write_all(&[1]);
                }
            })?;
        Ok(Resolver {
            requests,
            answers,
            wake,
        })
    }

    /// Asks for `entry`'s names.
    pub fn ask(&self, entry: MemberEntry) {
        if self.requests.send(entry).is_err() {
            log::warn!("resolver: the worker is gone; names stay unresolved");
        }
    }

    /// The fd to watch.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The answers that arrived.
    pub fn answers(&mut self) -> Vec<(MemberEntry, Vec<SocketAddr>)> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.answers.try_iter().collect()
    }
}
