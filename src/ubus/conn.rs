//! The ubusd connection around a [`UbusObject`]: a non-blocking unix stream
//! socket, driven from the daemon's epoll loop, reconnected (with backoff)
//! when ubusd goes away or restarts; the object registers again on every
//! new connection.
//!
//! ```text
//! Event::Connected        → epoll.add(conn.fd(), EPOLLIN)
//! fd readable             → conn.on_readable(): Invoke → conn.reply(..)
//!                                                     or conn.reply_with(..)
//! timer                   → conn.poll_reconnect(Instant::now())
//! after each of these     → arm the timer at conn.next_reconnect()
//! ```

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

use super::msg::Status;
use super::object::{Event, UbusObject};
use crate::json::{Json, Sink};

/// Where ubusd listens on OpenWrt.
pub const DEFAULT_SOCKET: &str = "/var/run/ubus/ubus.sock";
/// First delay before reconnecting; doubled after each failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection on which ubusd has not registered the object by then is
/// dropped (and retried).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most output buffer kept between writes.
const KEPT_OUTPUT: usize = 16 * 1024;

/// The object's connection to ubusd.
#[derive(Debug)]
pub struct UbusConn {
    path: PathBuf,
    object: UbusObject,
    stream: Option<UnixStream>,
    /// Bytes the socket did not take yet.
    pending: Vec<u8>,
    /// When to try to connect, while disconnected.
    next_attempt: Option<Instant>,
    /// When to give up waiting for the registration, while connected.
    register_by: Option<Instant>,
    backoff: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl UbusConn {
    /// A connection to the socket at `path` (e.g. [`DEFAULT_SOCKET`]). Not
    /// connected yet: the first [`UbusConn::poll_reconnect`] connects.
    pub fn new(path: impl Into<PathBuf>, object: UbusObject) -> UbusConn {
        UbusConn {
            path: path.into(),
            object,
            stream: None,
            pending: Vec::new(),
            next_attempt: Some(Instant::now()),
            register_by: None,
            backoff: MIN_BACKOFF,
            min_backoff: MIN_BACKOFF,
            max_backoff: MAX_BACKOFF,
        }
    }

    /// Other reconnection delays (tests).
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> UbusConn {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self.backoff = min;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn object(&self) -> &UbusObject {
        &self.object
    }

    /// The socket, while connected: register it with epoll on
    /// [`Event::Connected`]. (A new socket comes with every reconnection,
    /// so this is not `AsFd`.)
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.stream.as_ref().map(|s| s.as_fd())
    }

    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// When [`UbusConn::poll_reconnect`] wants to run next: the next
    /// connection attempt, or the end of the wait for the registration;
    /// `None` once registered.
    pub fn next_reconnect(&self) -> Option<Instant> {
        match self.stream {
            None => self.next_attempt,
            Some(_) if self.object.is_registered() => None,
            Some(_) => self.register_by,
        }
    }

    /// Connects if disconnected and the backoff delay has passed (returns
    /// [`Event::Connected`]); drops a connection on which the object was
    /// not registered within [`REGISTER_TIMEOUT`] (returns
    /// [`Event::Disconnected`]).
    pub fn poll_reconnect(&mut self, now: Instant) -> Vec<Event> {
        if self.stream.is_some() {
            if !self.object.is_registered() && self.register_by.is_some_and(|t| t <= now) {
                self.disconnect("ubusd did not register the object in time");
                return vec![Event::Disconnected];
            }
            return Vec::new();
        }
        match self.next_attempt {
            Some(t) if t <= now => {}
            _ => return Vec::new(),
        }
        match connect(&self.path) {
            Ok(stream) => {
                log::debug!("ubus: connected to {}", self.path.display());
                self.stream = Some(stream);
                self.next_attempt = None;
                self.register_by = Some(now + REGISTER_TIMEOUT);
                self.pending.clear();
                self.object.on_connected();
                vec![Event::Connected]
            }
            Err(e) => {
                log::debug!(
                    "ubus: {}: {e}; next attempt in {:?}",
                    self.path.display(),
                    self.backoff
                );
                self.schedule(now);
                Vec::new()
            }
        }
    }

    fn schedule(&mut self, now: Instant) {
        self.next_attempt = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.max_backoff);
    }

    /// Reads what ubusd sent, answers what the object answers by itself
    /// (registration, unknown methods, bad arguments), writes. On EOF, an
    /// error, or a fatal protocol error the socket is closed and
    /// [`Event::Disconnected`] ends the list.
    pub fn on_readable(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let mut buf = [0u8; 16384];
        let mut lost = None;
        while let Some(stream) = &mut self.stream {
            match stream.read(&mut buf) {
                Ok(0) => {
                    lost = Some("ubusd closed the connection".to_string());
                    break;
                }
                Ok(n) => {
                    let evs = self.object.handle_bytes(&buf[..n]);
                    for e in &evs {
                        match e {
                            Event::Registered { id } => {
                                log::info!(
                                    "ubus: object {} registered as {id:08x}",
                                    self.object.path()
                                );
                                self.backoff = self.min_backoff;
                            }
                            Event::Error(e) if e.is_fatal() => lost = Some(e.to_string()),
                            Event::Error(e) => log::warn!("ubus: {e}"),
                            _ => {}
                        }
                    }
                    events.extend(evs);
                    if lost.is_some() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    lost = Some(e.to_string());
                    break;
                }
            }
        }
        if lost.is_none() {
            lost = self.write_out().err().map(|e| e.to_string());
        }
        if let Some(why) = lost {
            if self.stream.is_some() {
                self.disconnect(&why);
                events.push(Event::Disconnected);
            }
        }
        events
    }

    /// Writes what the object has to send. A write error closes the socket
    /// (see [`UbusConn::next_reconnect`]).
    pub fn flush(&mut self) {
        if let Err(e) = self.write_out() {
            self.disconnect(&e.to_string());
        }
    }

    /// Whether bytes wait for the socket to become writable (EPOLLOUT).
    pub fn wants_write(&self) -> bool {
        !self.pending.is_empty()
    }

    fn write_out(&mut self) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            return Ok(());
        };
        let out = self.object.take_output();
        if self.pending.is_empty() {
            self.pending = out;
        } else {
            self.pending.extend_from_slice(&out);
        }
        while !self.pending.is_empty() {
            match stream.write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // A status reply is 100 KiB with 16 members: its buffer is not kept
        // (resident) once written.
        if self.pending.is_empty() && self.pending.capacity() > KEPT_OUTPUT {
            self.pending = Vec::new();
        }
        Ok(())
    }

    fn disconnect(&mut self, why: &str) {
        log::warn!("ubus: connection lost: {why}");
        self.stream = None;
        self.register_by = None;
        self.pending.clear();
        self.object.on_disconnected();
        self.schedule(Instant::now());
    }

    /// Answers a call ([`UbusObject::reply`]) and writes.
    pub fn reply(&mut self, peer: u32, seq: u16, result: Result<Json, Status>) {
        self.object.reply(peer, seq, result);
        self.flush();
    }

    /// Answers a call with data written straight into the frame
    /// ([`UbusObject::reply_with`]) and writes.
    pub fn reply_with(&mut self, peer: u32, seq: u16, write: impl FnOnce(&mut dyn Sink)) {
        self.object.reply_with(peer, seq, write);
        self.flush();
    }

    /// Notifies the subscribers ([`UbusObject::notify`]) and writes.
    pub fn notify(&mut self, event_type: &str, data: Json) -> bool {
        let sent = self.object.notify(event_type, data);
        self.flush();
        sent
    }
}

/// A non-blocking connection: a unix socket either connects at once or
/// fails (EAGAIN when ubusd's backlog is full counts as a failure).
fn connect(path: &Path) -> io::Result<UnixStream> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)?;
    Ok(UnixStream::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_maximum_and_nothing_is_due_before() {
        let dir = std::env::temp_dir().join(format!("meshd-ubus-backoff-{}", std::process::id()));
        let obj = UbusObject::new("meshd", &[]);
        let mut c = UbusConn::new(dir.join("nosuch.sock"), obj)
            .with_backoff(Duration::from_secs(1), Duration::from_secs(8));
        let t0 = Instant::now();
        let mut t = t0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            assert!(c.poll_reconnect(t).is_empty());
            assert!(!c.is_connected());
            let next = c.next_reconnect().unwrap();
            delays.push((next - t).as_secs());
            // Not due yet: nothing happens, the deadline stays.
            assert!(c.poll_reconnect(next - Duration::from_millis(1)).is_empty());
            assert_eq!(c.next_reconnect(), Some(next));
            t = next;
        }
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        assert!(c.fd().is_none());
        assert!(c.on_readable().is_empty());
        c.flush();
        assert!(!c.notify("x", Json::Null));
    }

    #[test]
    fn a_silent_ubusd_is_left_after_the_registration_timeout() {
        let dir = std::env::temp_dir().join(format!("meshd-ubus-silent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ubus.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let obj = UbusObject::new("meshd", &[]);
        let mut c = UbusConn::new(&path, obj);
        let t0 = Instant::now();
        assert_eq!(c.poll_reconnect(t0), vec![Event::Connected]);
        assert!(c.fd().is_some());
        let _server = listener.accept().unwrap();
        assert_eq!(c.next_reconnect(), Some(t0 + REGISTER_TIMEOUT));
        assert!(c.on_readable().is_empty(), "no HELLO yet");
        assert!(c.poll_reconnect(t0 + REGISTER_TIMEOUT / 2).is_empty());
        assert!(c.is_connected());
        assert_eq!(
            c.poll_reconnect(t0 + REGISTER_TIMEOUT),
            vec![Event::Disconnected]
        );
        assert!(!c.is_connected() && c.fd().is_none());
        // Retried after the backoff, not at once.
        assert!(c.next_reconnect().unwrap() > Instant::now());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
