//! The control socket: `meshd status` asks the running daemon over a unix
//! stream socket. One request line, one answer, then the daemon closes.
//!
//! Requests: `status` (text) and `status json`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A request the daemon answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Status,
    StatusJson,
}

impl Request {
    pub fn parse(line: &str) -> Option<Request> {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["status"] => Some(Request::Status),
            ["status", "json"] => Some(Request::StatusJson),
            _ => None,
        }
    }
}

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
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
        })
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Accepts pending clients, answering each with `answer`.
    pub fn serve(&self, mut answer: impl FnMut(Option<Request>) -> String) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = serve_one(stream, &mut answer);
        }
    }
}

fn serve_one(
    stream: UnixStream,
    answer: &mut impl FnMut(Option<Request>) -> String,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    // A client that connects and says nothing must not stall the daemon.
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(256)
        .read_line(&mut line)?;
    let reply = answer(Request::parse(&line));
    (&stream).write_all(reply.as_bytes())
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
