//! meshd's ubus object against ubusd's side of a real capture, over a real
//! unix socket.
//!
//! Debian has no ubusd package (ubus is OpenWrt's), so instead of running
//! one this test replays, byte for byte, what a real ubusd sent to a real
//! libubus object owner (`tests/fixtures/ubus/conn01.txt`: the object
//! "demo" with `status` and `echo`), and checks that meshd's `UbusConn`
//! answers with exactly the bytes that libubus answered. Then it "restarts"
//! ubusd (closes the connection, removes the socket, listens again) and
//! checks that the object reconnects and registers again.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use meshd::json::Json;
use meshd::ubus::{ArgType, Event, Msg, Status, UbusConn, UbusObject};

#[path = "support/ubus_capture.rs"]
mod ubus_capture;

use ubus_capture::{capture, find, Captured};

const WAIT: Duration = Duration::from_secs(10);

/// What the captured object's `status` returned.
fn status_json() -> Json {
    Json::obj()
        .with("state", "up")
        .with("members", 3u32)
        .with("healthy", true)
        .with("rx_bytes", 123_456_789_012u64)
        .with(
            "peers",
            vec![
                Json::obj().with("name", "r2").with("rtt_us", 1200u32),
                Json::obj().with("name", "r3").with("rtt_us", 800u32),
            ],
        )
}

/// The object side: a `UbusConn` driven as the daemon would, with the
/// captured object's handlers. Every event goes to `tx`.
fn spawn_object(path: PathBuf, stop: Arc<AtomicBool>, tx: Sender<Event>) -> JoinHandle<()> {
    thread::spawn(move || {
        let obj = UbusObject::new(
            "demo",
            &[
                ("status", &[]),
                ("echo", &[("msg", ArgType::String), ("n", ArgType::Int32)]),
            ],
        );
        let mut conn = UbusConn::new(path, obj)
            .with_backoff(Duration::from_millis(20), Duration::from_millis(200));
        while !stop.load(Ordering::Relaxed) {
            let mut events = conn.poll_reconnect(Instant::now());
            events.extend(conn.on_readable());
            for e in events {
                if let Event::Invoke {
                    peer,
                    seq,
                    method,
                    args,
                } = &e
                {
                    match method.as_str() {
                        "status" => {
                            conn.reply(*peer, *seq, Ok(status_json()));
                            conn.notify(
                                "member_update",
                                Json::obj().with("member", "r2").with("state", "down"),
                            );
                        }
                        "echo" if args.get("msg").is_none() => {
                            conn.reply(*peer, *seq, Err(Status::InvalidArgument))
                        }
                        "echo" => conn.reply(*peer, *seq, Ok(args.clone())),
                        _ => conn.reply(*peer, *seq, Err(Status::NotSupported)),
                    }
                }
                if tx.send(e).is_err() {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
    })
}

/// The next event that is not a call (those are answered by the object
/// thread); an error event fails the test.
fn next_event(rx: &Receiver<Event>) -> Event {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Invoke { .. }) => {}
            Ok(Event::Error(e)) => panic!("object error: {e}"),
            Ok(e) => return e,
            Err(e) => panic!("no event: {e}"),
        }
    }
}

fn accept(listener: &UnixListener) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the object did not connect");
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// One whole frame from the object.
fn read_frame(s: &mut UnixStream) -> Vec<u8> {
    let mut frame = vec![0u8; 12];
    s.read_exact(&mut frame).expect("a frame header");
    let len = u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]) & 0x00ff_ffff;
    let total = 8 + ((len as usize + 3) & !3);
    frame.resize(total, 0);
    s.read_exact(&mut frame[12..]).expect("a frame body");
    frame
}

/// Plays the registration: HELLO, expects the captured ADD_OBJECT, answers
/// with the captured DATA and STATUS. Returns the object id.
fn register(s: &mut UnixStream, cap: &[Captured], rx: &Receiver<Event>) -> u32 {
    let hello = cap.iter().find(|c| c.kind == "HELLO").unwrap();
    s.write_all(&hello.bytes).unwrap();
    assert_eq!(
        read_frame(s),
        find(cap, '>', "ADD_OBJECT", 0, 0),
        "ADD_OBJECT differs from libubus's"
    );
    let data = find(cap, '<', "DATA", 0, 0);
    let id = Msg::decode(&data).unwrap().objid().unwrap();
    s.write_all(&data).unwrap();
    s.write_all(&find(cap, '<', "STATUS", 0, 0)).unwrap();
    assert_eq!(next_event(rx), Event::Registered { id });
    id
}

fn socket_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshd-ubus-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn object_answers_ubusd_like_libubus_and_registers_again_after_a_restart() {
    let cap = capture();
    let dir = socket_dir();
    let path = dir.join("ubus.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let object = spawn_object(path.clone(), stop.clone(), tx);

    let mut s = accept(&listener);
    assert_eq!(next_event(&rx), Event::Connected);
    let id = register(&mut s, &cap, &rx);

    // A subscriber comes (ubusd's NOTIFY ACTIVE 1). meshd sends NOTIFYs only
    // to subscribers, so it is announced before the calls: the capture's
    // object sent its first NOTIFY (seq 2) before conn10 subscribed.
    s.write_all(&find(&cap, '<', "NOTIFY", 0, 0)).unwrap();
    assert_eq!(next_event(&rx), Event::SubscribersChanged { active: true });

    // The calls, in the capture's order: status, echo, echo without "msg"
    // (INVALID_ARGUMENT from the handler), nosuch (METHOD_NOT_FOUND from the
    // object itself), status.
    let mut notifies = 0;
    for (i, inv) in cap
        .iter()
        .filter(|c| c.dir == '<' && c.kind == "INVOKE")
        .enumerate()
    {
        if i == 1 {
            // Split across two writes: the object reads partial frames.
            let (a, b) = inv.bytes.split_at(21);
            s.write_all(a).unwrap();
            s.flush().unwrap();
            thread::sleep(Duration::from_millis(30));
            s.write_all(b).unwrap();
        } else {
            s.write_all(&inv.bytes).unwrap();
        }
        let method = Msg::decode(&inv.bytes)
            .unwrap()
            .method()
            .unwrap()
            .to_string();
        // libubus's DATA and STATUS to this caller; after a status call,
        // the NOTIFY (the capture's handler sent it between its DATA and
        // STATUS, meshd's after the reply).
        let mut want: Vec<Vec<u8>> = cap
            .iter()
            .filter(|c| c.dir == '>' && c.peer == inv.peer)
            .map(|c| c.bytes.clone())
            .collect();
        if method == "status" {
            want.push(find(&cap, '>', "NOTIFY", id, notifies));
            notifies += 1;
        }
        for (n, w) in want.iter().enumerate() {
            assert_eq!(
                &read_frame(&mut s),
                w,
                "frame {n} of the answer to {method} from {:08x}",
                inv.peer
            );
        }
    }
    assert_eq!(notifies, 2);

    // The subscriber leaves: a status call is answered without NOTIFY (the
    // next frame after its STATUS is the answer to the following call).
    // Each call is written once the previous one is answered: in one read,
    // the object answers an unknown method at once, before the handler
    // answers the calls that came before it in the same read.
    s.write_all(&find(&cap, '<', "NOTIFY", 0, 1)).unwrap();
    assert_eq!(next_event(&rx), Event::SubscribersChanged { active: false });
    let first = cap.iter().find(|c| c.kind == "INVOKE").unwrap().peer;
    s.write_all(&find(&cap, '<', "INVOKE", first, 0)).unwrap();
    assert_eq!(read_frame(&mut s), find(&cap, '>', "DATA", first, 0));
    assert_eq!(read_frame(&mut s), find(&cap, '>', "STATUS", first, 0));
    // (A NOTIFY would have been written with the reply, before this call.)
    let nosuch = Msg::decode(&find(&cap, '<', "INVOKE", 0x5b63_e3db, 0)).unwrap();
    assert_eq!(nosuch.method(), Some("nosuch"));
    s.write_all(&find(&cap, '<', "INVOKE", nosuch.peer, 0))
        .unwrap();
    assert_eq!(
        read_frame(&mut s),
        find(&cap, '>', "STATUS", nosuch.peer, 0)
    );

    // ubusd restarts: the connection closes, the socket goes away for a
    // while (reconnection attempts fail), then a new ubusd listens.
    drop(s);
    drop(listener);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(next_event(&rx), Event::Disconnected);
    thread::sleep(Duration::from_millis(150));
    let listener = UnixListener::bind(&path).unwrap();
    let mut s = accept(&listener);
    assert_eq!(next_event(&rx), Event::Connected);
    // The same ADD_OBJECT (seq 1 again) and the same answers.
    let id2 = register(&mut s, &cap, &rx);
    assert_eq!(id2, id);
    s.write_all(&find(&cap, '<', "INVOKE", first, 0)).unwrap();
    assert_eq!(read_frame(&mut s), find(&cap, '>', "DATA", first, 0));
    assert_eq!(read_frame(&mut s), find(&cap, '>', "STATUS", first, 0));

    stop.store(true, Ordering::Relaxed);
    object.join().unwrap();
    drop(s);
    cleanup(&dir);
}

#[test]
fn garbage_from_ubusd_drops_the_connection_and_the_object_comes_back() {
    let cap = capture();
    let dir = std::env::temp_dir().join(format!("meshd-ubus-garbage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ubus.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let object = spawn_object(path.clone(), stop.clone(), tx);

    let mut s = accept(&listener);
    assert_eq!(next_event(&rx), Event::Connected);
    register(&mut s, &cap, &rx);
    // Not ubus (version byte 0x47): the object gives up on this stream.
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Error(e)) => assert!(e.is_fatal(), "{e}"),
            Ok(Event::Disconnected) => break,
            Ok(e) => panic!("unexpected {e:?}"),
            Err(e) => panic!("no Disconnected: {e}"),
        }
    }
    // The same listener (ubusd did not restart): the object reconnects.
    let mut s2 = accept(&listener);
    assert_eq!(next_event(&rx), Event::Connected);
    register(&mut s2, &cap, &rx);

    stop.store(true, Ordering::Relaxed);
    object.join().unwrap();
    drop((s, s2));
    cleanup(&dir);
}
