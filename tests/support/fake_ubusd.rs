//! Playing ubusd's side for a real meshd (Debian ships no ubusd): reading
//! and writing frames on the unix socket meshd is pointed at
//! (`MESHD_UBUS_SOCKET`), with ubusd's own frames from the capture where
//! they fit (`ubus_capture.rs`). Shared by the tests that talk to meshd's
//! ubus object.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use meshd::json::Json;
use meshd::ubus::blob::{fields_from_json, fields_to_json};
use meshd::ubus::msg::Attr;
use meshd::ubus::{Msg, MsgType};

use super::ubus_capture::nth as captured;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn read_frame(s: &mut UnixStream) -> Msg {
    let mut frame = vec![0u8; 12];
    s.read_exact(&mut frame).expect("a frame header from meshd");
    let len = u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]) & 0x00ff_ffff;
    frame.resize(8 + ((len as usize + 3) & !3), 0);
    s.read_exact(&mut frame[12..])
        .expect("a frame body from meshd");
    Msg::decode(&frame).expect("meshd sent a frame that decodes")
}

/// The next frame that is not a NOTIFY (those are collected).
pub fn reply(s: &mut UnixStream, notes: &mut Vec<Json>) -> Msg {
    loop {
        let m = read_frame(s);
        if m.msg_type == MsgType::Notify {
            notes.push(fields_to_json(m.data().unwrap_or(&[])));
            continue;
        }
        return m;
    }
}

/// An INVOKE as ubusd forwards it (OBJID, METHOD, DATA, USER, GROUP).
pub fn invoke(obj: u32, peer: u32, method: &str, args: Json) -> Vec<u8> {
    let Json::Obj(fields) = args else { panic!() };
    Msg::new(MsgType::Invoke, 2, peer)
        .with(Attr::ObjId(obj))
        .with(Attr::Method(method.into()))
        .with(Attr::Data(fields_from_json(&fields)))
        .with(Attr::User("root".into()))
        .with(Attr::Group("root".into()))
        .encode()
        .unwrap()
}

/// Calls `method`; returns (status, data).
pub fn call(
    s: &mut UnixStream,
    obj: u32,
    method: &str,
    args: Json,
    notes: &mut Vec<Json>,
) -> (u32, Json) {
    let peer = 0x1234_5678;
    s.write_all(&invoke(obj, peer, method, args)).unwrap();
    let mut data = Json::Null;
    loop {
        let m = reply(s, notes);
        assert_eq!(m.peer, peer, "{m:?}");
        match m.msg_type {
            MsgType::Data => data = fields_to_json(m.data().unwrap_or(&[])),
            MsgType::Status => return (m.status().unwrap(), data),
            t => panic!("unexpected {t:?}"),
        }
    }
}

/// HELLO, then meshd's ADD_OBJECT, answered with ubusd's captured reply.
/// Returns the object id meshd was given and the methods it declared.
pub fn register(s: &mut UnixStream) -> (u32, Vec<String>) {
    s.write_all(&captured('<', "HELLO", 0)).unwrap();
    let add = read_frame(s);
    assert_eq!(add.msg_type, MsgType::AddObject);
    assert!(
        add.attrs.contains(&Attr::ObjPath("meshd".into())),
        "{add:?}"
    );
    let Some(Attr::Signature(sig)) = add.attrs.iter().find(|a| matches!(a, Attr::Signature(_)))
    else {
        panic!("no signature: {add:?}")
    };
    let methods = sig.iter().map(|f| f.name.clone()).collect();
    let data = captured('<', "DATA", 0);
    let id = Msg::decode(&data).unwrap().objid().unwrap();
    s.write_all(&data).unwrap();
    s.write_all(&captured('<', "STATUS", 0)).unwrap();
    (id, methods)
}

pub fn accept(l: &UnixListener) -> UnixStream {
    l.set_nonblocking(true).unwrap();
    let t = Instant::now();
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                return s;
            }
            Err(_) if t.elapsed() < Duration::from_secs(40) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("meshd did not connect to the bus: {e}"),
        }
    }
}
