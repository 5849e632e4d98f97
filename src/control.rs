//! The control socket: `meshd status` asks the running daemon over a unix
//! stream socket. One request line, one answer, then the daemon closes.
//! The daemon serves it from its packet loop without ever waiting on a
//! client: see [`ControlServer`].
//!
//! Requests: `status` (or `status json`: the same) answers the status
//! document as JSON, which `meshd status` renders as text itself; and for
//! invites (see
//! `meshd invite` and `meshd join`): `invite NAME SECONDS [ENDPOINT...]`,
//! `join TOKEN` and `join status`; `remove NAME` (`meshd remove`).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A request the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The status document, JSON (`meshd status` renders its text from it).
    Status,
    /// Make an invite giving `name`, valid `seconds`, carrying `endpoints`
    /// (none: what the daemon knows of itself).
    Invite {
        name: String,
        seconds: u64,
        endpoints: Vec<std::net::SocketAddr>,
    },
    /// Join with a token (its text).
    Join(String),
    /// Where our join stands.
    JoinStatus,
    /// Remove a member from the group (`meshd remove NAME`).
    Remove(String),
}

impl Request {
    pub fn parse(line: &str) -> Option<Request> {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["status"] | ["status", "json"] => Some(Request::Status),
            ["invite", name, seconds, endpoints @ ..] => Some(Request::Invite {
                name: name.to_string(),
                seconds: seconds.parse().ok()?,
                endpoints: endpoints
                    .iter()
                    .map(|e| e.parse().ok())
                    .collect::<Option<Vec<_>>>()?,
            }),
            ["join", "status"] => Some(Request::JoinStatus),
            ["join", token] => Some(Request::Join(token.to_string())),
            ["remove", name] => Some(Request::Remove(name.to_string())),
            _ => None,
        }
    }
}

/// The request in what a client sent: its first line (at most
/// [`MAX_LINE`] bytes; bytes that are not UTF-8 are replaced), parsed.
pub fn request_of(sent: &[u8]) -> Option<Request> {
    let end = sent.iter().position(|&b| b == b'\n').unwrap_or(sent.len());
    Request::parse(&String::from_utf8_lossy(&sent[..end.min(MAX_LINE)]))
}

/// Clients served at once; more wait in the listen backlog.
pub const MAX_CLIENTS: usize = 16;
/// A client that has not sent its line, or not taken its answer, by then is
/// dropped (its socket closed).
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// The request line, at most (an invite token is some 200 characters).
pub const MAX_LINE: usize = 1024;

/// One client: its request line as it arrives, then its answer as it leaves.
struct Client {
    stream: UnixStream,
    since: Instant,
    line: Vec<u8>,
    /// The answer and how much of it went out.
    reply: Option<(Vec<u8>, usize)>,
}

/// What [`ControlServer::on_readable`] / [`ControlServer::on_writable`] want
/// of the driver's epoll for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Wait for its request line.
    Read,
    /// Wait until its socket takes more of the answer.
    Write,
    /// Done (or dropped): forget the fd.
    Closed,
}

/// The control socket's server. Nothing here blocks: every socket is
/// non-blocking, a client is served as its bytes arrive and as its socket
/// takes the answer, and one that stalls is dropped after
/// [`CLIENT_DEADLINE`] (the packet loop never waits for a client).
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Option<Client>>,
    /// How many of `clients` are open (the loop asks after every wake-up).
    open: usize,
    /// Clients dropped for stalling.
    pub dropped: u64,
}

impl ControlServer {
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A socket left by a crashed daemon: nobody answers on it.
        if UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another meshd is running", path.display()),
            ));
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
            open: 0,
            dropped: 0,
        })
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Accepts pending clients while there is room; returns each new one's
    /// index and fd for the driver to watch for reading.
    pub fn accept(&mut self, now: Instant) -> Vec<(usize, BorrowedFd<'_>)> {
        let mut new = Vec::new();
        while let Some(i) = self.clients.iter().position(Option::is_none) {
            let Ok((stream, _)) = self.listener.accept() else {
                break;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            self.clients[i] = Some(Client {
                stream,
                since: now,
                line: Vec::new(),
                reply: None,
            });
            self.open += 1;
            new.push(i);
        }
        new.into_iter()
            .filter_map(|i| Some((i, self.clients[i].as_ref()?.stream.as_fd())))
            .collect()
    }

    /// The fd of client `i`, to stop watching it.
    pub fn fd(&self, i: usize) -> Option<BorrowedFd<'_>> {
        Some(self.clients.get(i)?.as_ref()?.stream.as_fd())
    }

    /// Client `i` is readable: reads what arrived; once the line is whole
    /// (or the client closed, or the line is too long), answers it with
    /// `answer` and starts writing.
    pub fn on_readable(
        &mut self,
        i: usize,
        answer: impl FnOnce(Option<Request>) -> String,
    ) -> Interest {
        match self.read_request(i) {
            Ok(request) => self.answer(i, answer(request)),
            Err(interest) => interest,
        }
    }

    /// Client `i` is readable: reads what arrived. Once the line is whole
    /// (or the client closed, or the line is too long), the request in it,
    /// which [`ControlServer::answer`] must answer; else what to wait for.
    pub fn read_request(&mut self, i: usize) -> Result<Option<Request>, Interest> {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return Err(Interest::Closed);
        };
        if c.reply.is_some() {
            return Err(Interest::Write);
        }
        let mut buf = [0u8; MAX_LINE];
        let whole = loop {
            match c.stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    c.line.extend_from_slice(&buf[..n]);
                    if c.line.contains(&b'\n') || c.line.len() >= MAX_LINE {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => {
                    self.close(i);
                    return Err(Interest::Closed);
                }
            }
        };
        if !whole {
            return Err(Interest::Read);
        }
        Ok(request_of(&c.line))
    }

    /// Answers client `i`'s request and starts writing.
    pub fn answer(&mut self, i: usize, answer: String) -> Interest {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return Interest::Closed;
        };
        c.reply = Some((answer.into_bytes(), 0));
        self.on_writable(i)
    }

    /// Client `i` takes more of its answer; closed once all of it went.
    pub fn on_writable(&mut self, i: usize) -> Interest {
        let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut) else {
            return Interest::Closed;
        };
        let Some((reply, sent)) = c.reply.as_mut() else {
            return Interest::Read;
        };
        while *sent < reply.len() {
            match c.stream.write(&reply[*sent..]) {
                Ok(0) => break,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Interest::Write,
                Err(_) => break,
            }
        }
        self.close(i);
        Interest::Closed
    }

    fn close(&mut self, i: usize) {
        if self.clients.get_mut(i).and_then(Option::take).is_some() {
            self.open -= 1;
        }
    }

    /// Clients past their deadline, dropped; returns their indexes for the
    /// driver to forget (call before it closes the fds: this closes them).
    pub fn expire(&mut self, now: Instant) -> Vec<usize> {
        let mut gone = Vec::new();
        for (i, slot) in self.clients.iter_mut().enumerate() {
            if slot
                .as_ref()
                .is_some_and(|c| now.saturating_duration_since(c.since) >= CLIENT_DEADLINE)
            {
                gone.push(i);
                *slot = None;
                self.open -= 1;
                self.dropped += 1;
            }
        }
        gone
    }

    /// Whether any client is being served (the driver checks deadlines then).
    pub fn busy(&self) -> bool {
        debug_assert_eq!(self.open, self.clients.iter().flatten().count());
        self.open > 0
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Client side: sends `request` and returns the answer.
pub fn ask(path: &Path, request: &str) -> io::Result<String> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{}: {e} (is meshd running?)", path.display()),
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{request}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
