//! The control socket (`meshd status`): what a local client sends on it.
//!
//! Input layout: byte 0 is the write size − 1 (1..=256 bytes per write);
//! byte 1, bit 0: the client closes its side after writing (else it goes
//! silent); the rest is what the client writes. A `ControlServer` (one per
//! process, on a socket under the temp directory) accepts the client and is
//! driven as the daemon's epoll loop drives it: each write is followed by
//! `on_readable`, the answer is taken with `on_writable`, and a client that
//! stalls is dropped by `expire` at its deadline.
//!
//! Checked: no panic; `request_of` on the input as text agrees with
//! `Request::parse` of its first line; the server answers exactly once,
//! only once it has a whole line (a newline, `MAX_LINE` bytes, or the
//! client's close), with the answer to `request_of` of what the client
//! sent, and the client reads that answer whole; a silent client with a
//! partial line is answered nothing and dropped at its deadline; afterwards
//! the server serves nobody.
#![no_main]

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use meshd::control::{request_of, ControlServer, Interest, Request, CLIENT_DEADLINE, MAX_LINE};

struct Server {
    server: ControlServer,
    path: PathBuf,
}

fn server() -> &'static Mutex<Server> {
    static SERVER: OnceLock<Mutex<Server>> = OnceLock::new();
    SERVER.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("meshd-fuzz-control-{}.sock", std::process::id()));
        let server = ControlServer::bind(&path).expect("bind the control socket");
        Mutex::new(Server { server, path })
    })
}

fn answer(r: Option<Request>) -> String {
    format!("answer to {r:?}\n")
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let chunk = data[0] as usize + 1;
    let close = data[1] & 1 != 0;
    let sent = &data[2..];

    // The parse of the request line alone.
    let first = sent.split(|&b| b == b'\n').next().unwrap_or_default();
    if first.len() <= MAX_LINE {
        assert_eq!(
            request_of(sent),
            Request::parse(&String::from_utf8_lossy(first))
        );
    }

    let mut s = server().lock().unwrap();
    let Server { server, path } = &mut *s;
    let now = Instant::now();
    let mut client = UnixStream::connect(&*path).expect("connect");
    client.set_nonblocking(true).unwrap();
    let accepted = server.accept(now);
    assert_eq!(accepted.len(), 1, "one client accepted");
    let i = accepted[0].0;

    let answered = Cell::new(0);
    let respond = |r: Option<Request>| {
        answered.set(answered.get() + 1);
        answer(r)
    };
    let whole_at = sent
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(usize::MAX)
        .min(MAX_LINE);
    let mut written = 0;
    let mut state = Interest::Read;
    while state == Interest::Read && written < sent.len() {
        let end = (written + chunk).min(sent.len());
        client.write_all(&sent[written..end]).expect("write");
        written = end;
        state = server.on_readable(i, respond);
        if state == Interest::Read {
            assert!(
                written < whole_at,
                "a whole line ({written} bytes) not answered"
            );
        } else {
            assert!(
                written >= whole_at.min(sent.len()),
                "answered a partial line"
            );
        }
    }
    if state == Interest::Read && close {
        client.shutdown(Shutdown::Write).unwrap();
        state = server.on_readable(i, respond);
    }
    while state == Interest::Write {
        state = server.on_writable(i);
    }
    if state == Interest::Read {
        // A silent client with a partial line: nothing until its deadline.
        assert_eq!(answered.get(), 0);
        assert!(server.expire(now).is_empty());
        assert_eq!(server.expire(now + CLIENT_DEADLINE), vec![i]);
        assert!(!server.busy());
        return;
    }
    assert_eq!(state, Interest::Closed);
    assert_eq!(answered.get(), 1, "answered once");
    let mut reply = String::new();
    client.set_nonblocking(false).unwrap();
    client.read_to_string(&mut reply).expect("read the answer");
    assert_eq!(reply, answer(request_of(&sent[..written])));
    assert!(!server.busy(), "a client left behind");
});
