//! ubus: what ubusd (or anything on its socket) sends to meshd's object.
//!
//! Input layout: byte 0 is the read size − 1 (1..=256 bytes per
//! `handle_bytes`); the rest is the byte stream from "ubusd", after a
//! scripted HELLO and registration (object id 0xb4c8c559, as in
//! `tests/fixtures/ubus/conn01.txt`, so that captured INVOKEs reach the
//! handler). The rest is also decoded directly as one frame
//! (`Msg::decode`), as blobmsg fields (`decode_fields`), and split into
//! frames (`FrameSplitter`).
//!
//! Checked: no panic; what decodes re-encodes to something that decodes the
//! same; every byte the object writes is a whole frame that decodes; it
//! writes only STATUS (STATUS + OBJID), DATA immediately followed by the
//! STATUS 0 of the same call, and NOTIFY (no reply, from our object); only
//! methods of the signature reach the handler; a fatal error leaves the
//! object failed, unregistered and deaf.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::json::Json;
use meshd::ubus::blob::{decode_fields, encode_fields, fields_to_json};
use meshd::ubus::msg::{Attr, FrameSplitter, Msg, MsgType};
use meshd::ubus::{ArgType, Event, Status, UbusObject};

const OBJ_ID: u32 = 0xb4c8_c559;

fn object() -> UbusObject {
    let mut o = UbusObject::new(
        "demo",
        &[
            ("status", &[]),
            ("echo", &[("msg", ArgType::String), ("n", ArgType::Int32)]),
            (
                "typed",
                &[
                    ("i", ArgType::Int64),
                    ("d", ArgType::Double),
                    ("b", ArgType::Bool),
                ],
            ),
        ],
    );
    let mut reg = Msg::new(MsgType::Hello, 0, 0x80b5_beb8).encode().unwrap();
    reg.extend(
        Msg::new(MsgType::Data, 1, 0)
            .with(Attr::ObjId(OBJ_ID))
            .with(Attr::ObjType(0xbeb0_248e))
            .encode()
            .unwrap(),
    );
    reg.extend(
        Msg::new(MsgType::Status, 1, 0)
            .with(Attr::Status(0))
            .encode()
            .unwrap(),
    );
    assert_eq!(o.handle_bytes(&reg), vec![Event::Registered { id: OBJ_ID }]);
    assert!(!o.take_output().is_empty());
    o
}

/// Every frame of `out` decodes; returns them.
fn frames(out: &[u8]) -> Vec<Msg> {
    let mut s = FrameSplitter::new();
    s.push(out);
    let mut msgs = Vec::new();
    while let Some(f) = s.next_frame().expect("our output frames") {
        msgs.push(Msg::decode(&f).expect("our output decodes"));
    }
    assert_eq!(s.buffered(), 0, "a partial frame in our output");
    msgs
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, rest)) = data.split_first() else {
        return;
    };

    // Round trips compare encodings, not values: a double may be a NaN,
    // which equals nothing, itself included (the crash kept as
    // seeds/ubus_frame/regression_nan_double).
    if let Ok(m) = Msg::decode(rest) {
        let again = m.encode().expect("a decoded message encodes");
        let back = Msg::decode(&again).expect("our encoding decodes");
        assert_eq!(back.encode().ok().as_ref(), Some(&again), "a message round trip differs");
    }
    if let Ok(fields) = decode_fields(rest) {
        let mut out = Vec::new();
        encode_fields(&mut out, &fields).expect("decoded fields encode");
        let back = decode_fields(&out).expect("our encoding decodes");
        let mut again = Vec::new();
        encode_fields(&mut again, &back).expect("decoded fields encode");
        assert_eq!(again, out, "a fields round trip differs");
        let _ = fields_to_json(&fields).to_string();
    }
    let mut s = FrameSplitter::new();
    s.push(rest);
    while let Ok(Some(f)) = s.next_frame() {
        let _ = Msg::decode(&f);
    }

    let mut o = object();
    for piece in rest.chunks(usize::from(c) + 1) {
        let was_failed = o.failed();
        let events = o.handle_bytes(piece);
        if was_failed {
            assert!(events.is_empty());
        }
        for e in events {
            match e {
                Event::Invoke {
                    peer,
                    seq,
                    method,
                    args,
                } => {
                    assert!(matches!(args, Json::Obj(_)));
                    match method.as_str() {
                        "status" => {
                            o.reply(
                                peer,
                                seq,
                                Ok(Json::obj().with("state", "up").with("n", 1u32)),
                            );
                            o.notify("member_update", Json::obj().with("member", "r2"));
                        }
                        "echo" if args.get("msg").is_none() => {
                            o.reply(peer, seq, Err(Status::InvalidArgument))
                        }
                        "echo" => o.reply(peer, seq, Ok(args)),
                        "typed" => o.reply(peer, seq, Ok(Json::Null)),
                        m => panic!("unknown method {m:?} reached the handler"),
                    }
                }
                Event::Registered { .. } => panic!("registered twice"),
                Event::Error(e) if e.is_fatal() => assert!(o.failed()),
                Event::Connected | Event::Disconnected => {
                    panic!("connection event from the object")
                }
                _ => {}
            }
        }
        let out = o.take_output();
        if o.failed() {
            assert!(o.id().is_none() && !o.has_subscribers());
        }
        let msgs = frames(&out);
        for (i, m) in msgs.iter().enumerate() {
            match m.msg_type {
                // STATUS, OBJID.
                MsgType::Status => assert_eq!(m.attrs.len(), 2),
                // A DATA is followed by the STATUS of the same call.
                MsgType::Data => {
                    let next = msgs.get(i + 1).expect("DATA without STATUS");
                    assert_eq!(next.msg_type, MsgType::Status);
                    assert_eq!((next.peer, next.seq), (m.peer, m.seq));
                    assert_eq!(next.status(), Some(0));
                }
                // Only sent while subscribed: to ubusd, from our object.
                MsgType::Notify => {
                    assert_eq!((m.peer, m.objid()), (OBJ_ID, Some(OBJ_ID)));
                    assert!(m.no_reply());
                }
                t => panic!("the object sent {t:?}"),
            }
        }
    }
});
