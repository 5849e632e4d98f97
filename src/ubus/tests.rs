//! Tests against the captures of a real ubusd and `ubus` CLI
//! (`tests/fixtures/ubus/`), and property tests of the codecs and the
//! object.

use std::fmt;

use proptest::prelude::*;

use super::blob::{
    self, decode_fields, encode_fields, fields_from_json, fields_to_json, BlobSink, BlobmsgType,
    EncodeError, Value,
};
use super::conn::UbusConn;
use super::msg::{Attr, FrameError, FrameSplitter, Msg, MsgType, Status, UBUS_MAX_MSGLEN};
use super::object::{ArgType, Event, UbusError, UbusObject};
use crate::json::{self, object, Json, Obj, Scalar, Show, Sink, Value as _};

const CAPTURES: [(&str, &str); 12] = [
    (
        "conn01",
        include_str!("../../tests/fixtures/ubus/conn01.txt"),
    ),
    (
        "conn02",
        include_str!("../../tests/fixtures/ubus/conn02.txt"),
    ),
    (
        "conn03",
        include_str!("../../tests/fixtures/ubus/conn03.txt"),
    ),
    (
        "conn04",
        include_str!("../../tests/fixtures/ubus/conn04.txt"),
    ),
    (
        "conn05",
        include_str!("../../tests/fixtures/ubus/conn05.txt"),
    ),
    (
        "conn06",
        include_str!("../../tests/fixtures/ubus/conn06.txt"),
    ),
    (
        "conn07",
        include_str!("../../tests/fixtures/ubus/conn07.txt"),
    ),
    (
        "conn08",
        include_str!("../../tests/fixtures/ubus/conn08.txt"),
    ),
    (
        "conn09",
        include_str!("../../tests/fixtures/ubus/conn09.txt"),
    ),
    (
        "conn10",
        include_str!("../../tests/fixtures/ubus/conn10.txt"),
    ),
    (
        "conn11",
        include_str!("../../tests/fixtures/ubus/conn11.txt"),
    ),
    (
        "conn12",
        include_str!("../../tests/fixtures/ubus/conn12.txt"),
    ),
];

/// One line of a capture.
#[derive(Debug, Clone)]
struct Captured {
    /// `>` to ubusd, `<` from ubusd.
    dir: char,
    kind: String,
    seq: u16,
    peer: u32,
    bytes: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn parse_capture(text: &str) -> Vec<Captured> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 5, "line {l:?}");
            Captured {
                dir: f[0].chars().next().unwrap(),
                kind: f[1].to_string(),
                seq: f[2].strip_prefix("seq=").unwrap().parse().unwrap(),
                peer: u32::from_str_radix(f[3].strip_prefix("peer=0x").unwrap(), 16).unwrap(),
                bytes: unhex(f[4]),
            }
        })
        .collect()
}

fn conn01() -> Vec<Captured> {
    parse_capture(CAPTURES[0].1)
}

/// The frame of a capture with this direction, type and peer (the `n`th).
fn find(cap: &[Captured], dir: char, kind: &str, peer: u32, n: usize) -> Vec<u8> {
    cap.iter()
        .filter(|c| c.dir == dir && c.kind == kind && c.peer == peer)
        .nth(n)
        .unwrap_or_else(|| panic!("no {dir} {kind} peer {peer:08x} #{n}"))
        .bytes
        .clone()
}

fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut s = FrameSplitter::new();
    s.push(bytes);
    let mut out = Vec::new();
    while let Some(f) = s.next_frame().unwrap() {
        out.push(f);
    }
    assert_eq!(s.buffered(), 0);
    out
}

/// The object of conn01.
fn demo() -> UbusObject {
    UbusObject::new(
        "demo",
        &[
            ("status", &[]),
            ("echo", &[("msg", ArgType::String), ("n", ArgType::Int32)]),
        ],
    )
}

/// What conn01's `status` returned (conn05's comment line).
fn demo_status() -> Json {
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

/// conn01's handler: `status` answers and notifies; `echo` returns its
/// arguments and wants `msg`.
fn demo_handle(o: &mut UbusObject, events: Vec<Event>) {
    for e in events {
        if let Event::Invoke {
            peer,
            seq,
            method,
            args,
        } = e
        {
            match method.as_str() {
                "status" => {
                    o.reply(peer, seq, Ok(demo_status()));
                    o.notify(
                        "member_update",
                        Json::obj().with("member", "r2").with("state", "down"),
                    );
                }
                "echo" if args.get("msg").is_none() => {
                    o.reply(peer, seq, Err(Status::InvalidArgument))
                }
                "echo" => o.reply(peer, seq, Ok(args)),
                m => panic!("unexpected method {m}"),
            }
        }
    }
}

/// A registered demo object (conn01's HELLO and registration replies).
fn registered_demo(cap: &[Captured]) -> (UbusObject, u32) {
    let mut o = demo();
    let hello = &cap.iter().find(|c| c.kind == "HELLO").unwrap().bytes;
    assert!(o.handle_bytes(hello).is_empty());
    assert_eq!(o.local_id(), Some(0x80b5_beb8));
    let add = o.take_output();
    let mut reply = find(cap, '<', "DATA", 0, 0);
    let id = Msg::decode(&reply).unwrap().objid().unwrap();
    reply.extend(find(cap, '<', "STATUS", 0, 0));
    assert_eq!(o.handle_bytes(&reply), vec![Event::Registered { id }]);
    assert!(!add.is_empty());
    (o, id)
}

#[test]
fn every_captured_frame_decodes_and_reencodes_to_the_same_bytes() {
    let mut n = 0;
    for (name, text) in CAPTURES {
        let cap = parse_capture(text);
        assert!(!cap.is_empty(), "{name}");
        for c in cap {
            let what = format!("{name} {} {} seq={}", c.dir, c.kind, c.seq);
            let msg = Msg::decode(&c.bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(msg.msg_type.name(), c.kind, "{what}");
            assert_eq!(MsgType::from_name(&c.kind), Some(msg.msg_type), "{what}");
            assert_eq!(msg.seq, c.seq, "{what}");
            assert_eq!(msg.peer, c.peer, "{what}");
            // No exceptions: every frame re-encodes byte for byte.
            assert_eq!(msg.encode().unwrap(), c.bytes, "{what}");
            // And the whole frame is exactly one frame of the stream.
            assert_eq!(split(&c.bytes), vec![c.bytes.clone()], "{what}");
            n += 1;
        }
    }
    assert_eq!(n, 93);
}

#[test]
fn captured_frames_carry_what_the_comments_say() {
    let cap = conn01();
    // The status reply: a string, an int32, a bool, an int64, an array of
    // tables.
    let data = Msg::decode(&find(&cap, '>', "DATA", 0x979a_e379, 0)).unwrap();
    let fields = data.data().unwrap();
    let types: Vec<u8> = fields.iter().map(|f| f.value.type_id()).collect();
    assert_eq!(types, [3, 5, 7, 4, 1]);
    assert_eq!(fields_to_json(fields), demo_status());
    assert_eq!(
        fields_to_json(fields).to_string(),
        r#"{"state":"up","members":3,"healthy":true,"rx_bytes":123456789012,"peers":[{"name":"r2","rtt_us":1200},{"name":"r3","rtt_us":800}]}"#
    );
    // The signature: status {}, echo {msg: STRING, n: INT32}.
    let add = Msg::decode(&find(&cap, '>', "ADD_OBJECT", 0, 0)).unwrap();
    let Some(Attr::Signature(sig)) = add.attrs.get(1) else {
        panic!("no signature: {add:?}");
    };
    assert_eq!(
        fields_to_json(sig).to_string(),
        r#"{"status":{},"echo":{"msg":3,"n":5}}"#
    );
    // The INVOKE of conn07 lacks "msg": that, not a type, made the
    // INVALID_ARGUMENT (ubusd checks nothing).
    let inv = Msg::decode(&find(&cap, '<', "INVOKE", 0xbe50_dc07, 0)).unwrap();
    assert_eq!(
        fields_to_json(inv.data().unwrap()).to_string(),
        r#"{"n":7}"#
    );
    assert_eq!(
        inv.attrs.iter().map(Attr::id).collect::<Vec<_>>(),
        [3, 4, 12, 13, 7]
    );
    let st = Msg::decode(&find(&cap, '>', "STATUS", 0xbe50_dc07, 0)).unwrap();
    assert_eq!(st.status(), Some(u32::from(Status::InvalidArgument)));
    // ubusd's NOTIFYs: ACTIVE 1 then 0.
    let n: Vec<Option<bool>> = cap
        .iter()
        .filter(|c| c.dir == '<' && c.kind == "NOTIFY")
        .map(|c| Msg::decode(&c.bytes).unwrap().active())
        .collect();
    assert_eq!(n, [Some(true), Some(false)]);
}

#[test]
fn add_object_equals_the_captured_one() {
    let cap = conn01();
    let mut o = demo();
    o.on_connected();
    assert!(o.take_output().is_empty(), "nothing before HELLO");
    let hello = cap.iter().find(|c| c.kind == "HELLO").unwrap();
    assert!(o.handle_bytes(&hello.bytes).is_empty());
    assert_eq!(o.take_output(), find(&cap, '>', "ADD_OBJECT", 0, 0));
    assert!(!o.is_registered());
}

#[test]
fn replies_and_notifies_equal_the_captured_ones() {
    let cap = conn01();
    let (mut o, id) = registered_demo(&cap);
    assert_eq!(o.id(), Some(id));
    // Nobody subscribed yet: no NOTIFY (the capture's object sent its first
    // one regardless; meshd does not), and the seq is not used up.
    assert!(!o.notify("member_update", Json::obj()));
    assert!(o.take_output().is_empty());
    let active = find(&cap, '<', "NOTIFY", 0, 0);
    assert_eq!(
        o.handle_bytes(&active),
        vec![Event::SubscribersChanged { active: true }]
    );
    assert!(o.has_subscribers());

    let mut statuses = 0;
    for inv in cap.iter().filter(|c| c.dir == '<' && c.kind == "INVOKE") {
        let events = o.handle_bytes(&inv.bytes);
        let method = Msg::decode(&inv.bytes)
            .unwrap()
            .method()
            .unwrap()
            .to_string();
        if method == "nosuch" {
            assert!(events.is_empty(), "answered by the object itself");
        } else {
            assert!(matches!(&events[..], [Event::Invoke { peer, seq, .. }]
                if *peer == inv.peer && *seq == inv.seq));
        }
        demo_handle(&mut o, events);
        let got = split(&o.take_output());
        // The captured DATA (if any) and STATUS to this caller...
        let mut want: Vec<Vec<u8>> = cap
            .iter()
            .filter(|c| c.dir == '>' && c.peer == inv.peer)
            .map(|c| c.bytes.clone())
            .collect();
        // ...then the NOTIFY sent after a status call (the capture's object
        // sent it from inside its handler, between DATA and STATUS).
        if method == "status" {
            want.push(find(&cap, '>', "NOTIFY", id, statuses));
            statuses += 1;
        }
        assert_eq!(got, want, "{method} from {:08x}", inv.peer);
    }
    assert_eq!(statuses, 2);

    // The last subscriber leaves: a status call no longer notifies.
    let inactive = find(&cap, '<', "NOTIFY", 0, 1);
    assert_eq!(
        o.handle_bytes(&inactive),
        vec![Event::SubscribersChanged { active: false }]
    );
    let again = find(&cap, '<', "INVOKE", 0x979a_e379, 0);
    let events = o.handle_bytes(&again);
    demo_handle(&mut o, events);
    let mut want = vec![find(&cap, '>', "DATA", 0x979a_e379, 0)];
    want.push(find(&cap, '>', "STATUS", 0x979a_e379, 0));
    assert_eq!(split(&o.take_output()), want);
}

#[test]
fn frames_split_anywhere_give_the_same_events() {
    let cap = conn01();
    let from_ubusd: Vec<u8> = cap
        .iter()
        .filter(|c| c.dir == '<')
        .flat_map(|c| c.bytes.clone())
        .collect();
    let run = |chunk: usize| {
        let mut o = demo();
        let mut events = Vec::new();
        let mut out = Vec::new();
        for piece in from_ubusd.chunks(chunk) {
            let evs = o.handle_bytes(piece);
            events.extend(evs.clone());
            demo_handle(&mut o, evs);
            out.extend(o.take_output());
        }
        // The order of the replies, and whether a status call still saw a
        // subscriber, depend on how many frames one read brought (the
        // object answers unknown methods at once, the handler after the
        // read): compare the replies as a set, without the NOTIFYs.
        let mut replies: Vec<Vec<u8>> = split(&out)
            .into_iter()
            .filter(|f| f[1] != u8::from(MsgType::Notify))
            .collect();
        replies.sort();
        (events, replies)
    };
    let whole = run(from_ubusd.len());
    // Registered, 4 Invokes (nosuch is answered by the object), 2
    // SubscribersChanged.
    assert_eq!(whole.0.len(), 7);
    // ADD_OBJECT, DATA+STATUS for 2 status and 1 echo calls, 2 STATUS.
    assert_eq!(whole.1.len(), 9);
    for chunk in [1, 2, 3, 5, 7, 13, 64] {
        assert_eq!(run(chunk), whole, "chunks of {chunk}");
    }
}

fn invoke(id: u32, peer: u32, seq: u16, method: &str, data: Json) -> Vec<u8> {
    let Json::Obj(fields) = data else { panic!() };
    Msg::new(MsgType::Invoke, seq, peer)
        .with(Attr::ObjId(id))
        .with(Attr::Method(method.into()))
        .with(Attr::Data(fields_from_json(&fields)))
        .encode()
        .unwrap()
}

fn status_of(frames: &[u8]) -> Vec<(u16, u32, u32, u32)> {
    split(frames)
        .iter()
        .map(|f| Msg::decode(f).unwrap())
        .filter(|m| m.msg_type == MsgType::Status)
        .map(|m| (m.seq, m.peer, m.status().unwrap(), m.objid().unwrap()))
        .collect()
}

#[test]
fn calls_are_checked_against_the_signature() {
    let cap = conn01();
    let (mut o, id) = registered_demo(&cap);
    let args = |msg: Json, n: Json| Json::obj().with("msg", msg).with("n", n);
    // Wrong types: answered INVALID_ARGUMENT without an event.
    for (i, a) in [
        args(Json::Int(1), Json::Int(7)),
        args("hi".into(), "7".into()),
        args("hi".into(), Json::Int(1 << 40)),
        args("hi".into(), Json::Bool(true)),
    ]
    .into_iter()
    .enumerate()
    {
        let seq = 10 + i as u16;
        assert!(o.handle_bytes(&invoke(id, 7, seq, "echo", a)).is_empty());
        assert_eq!(
            status_of(&o.take_output()),
            [(seq, 7, u32::from(Status::InvalidArgument), id)]
        );
    }
    // Missing arguments and unknown extra ones are the handler's business.
    let evs = o.handle_bytes(&invoke(id, 7, 20, "echo", Json::obj().with("x", 1u32)));
    assert!(matches!(&evs[..], [Event::Invoke { seq: 20, .. }]));
    // Unknown method.
    assert!(o
        .handle_bytes(&invoke(id, 7, 21, "nosuch", Json::obj()))
        .is_empty());
    assert_eq!(
        status_of(&o.take_output()),
        [(21, 7, u32::from(Status::MethodNotFound), id)]
    );
    // Another object id.
    assert!(o
        .handle_bytes(&invoke(id ^ 1, 7, 22, "status", Json::obj()))
        .is_empty());
    assert_eq!(
        status_of(&o.take_output()),
        [(22, 7, u32::from(Status::NotFound), id ^ 1)]
    );
    // No METHOD.
    let m = Msg::new(MsgType::Invoke, 23, 7).with(Attr::ObjId(id));
    assert!(o.handle_bytes(&m.encode().unwrap()).is_empty());
    assert_eq!(
        status_of(&o.take_output()),
        [(23, 7, u32::from(Status::InvalidArgument), id)]
    );
    // No DATA: an empty object.
    let m = Msg::new(MsgType::Invoke, 24, 7)
        .with(Attr::ObjId(id))
        .with(Attr::Method("status".into()));
    assert_eq!(
        o.handle_bytes(&m.encode().unwrap()),
        vec![Event::Invoke {
            peer: 7,
            seq: 24,
            method: "status".into(),
            args: Json::obj()
        }]
    );
}

#[test]
fn int64_and_double_arguments_accept_what_json_callers_send() {
    let mut o = UbusObject::new(
        "x",
        &[(
            "m",
            &[
                ("a", ArgType::Int64),
                ("d", ArgType::Double),
                ("b", ArgType::Bool),
                ("t", ArgType::Table),
                ("l", ArgType::Array),
                ("u", ArgType::Unspec),
            ],
        )],
    );
    let hello = Msg::new(MsgType::Hello, 0, 42).encode().unwrap();
    o.handle_bytes(&hello);
    let reg = Msg::new(MsgType::Data, 1, 0).with(Attr::ObjId(99));
    let ok = Msg::new(MsgType::Status, 1, 0).with(Attr::Status(0));
    let mut b = reg.encode().unwrap();
    b.extend(ok.encode().unwrap());
    assert_eq!(o.handle_bytes(&b), vec![Event::Registered { id: 99 }]);
    let args = Json::obj()
        .with("a", 5u32)
        .with("d", 1u32)
        .with("b", false)
        .with("t", Json::obj())
        .with("l", vec![Json::Null])
        .with("u", "anything");
    let evs = o.handle_bytes(&invoke(99, 1, 2, "m", args.clone()));
    assert_eq!(
        evs,
        vec![Event::Invoke {
            peer: 1,
            seq: 2,
            method: "m".into(),
            args
        }]
    );
}

#[test]
fn replies_without_data_or_with_bad_data() {
    let cap = conn01();
    let (mut o, id) = registered_demo(&cap);
    o.reply(5, 6, Ok(Json::Null));
    assert_eq!(status_of(&o.take_output()), [(6, 5, 0, id)]);
    o.reply(5, 7, Ok(Json::Int(3)));
    assert_eq!(
        status_of(&o.take_output()),
        [(7, 5, u32::from(Status::UnknownError), id)]
    );
    // Too big for ubusd: not sent (ubusd would drop the connection).
    let big = Json::obj().with("x", "y".repeat(UBUS_MAX_MSGLEN));
    o.reply(5, 8, Ok(big));
    let out = o.take_output();
    assert_eq!(split(&out).len(), 1);
    assert_eq!(
        status_of(&out),
        [(8, 5, u32::from(Status::UnknownError), id)]
    );
    // Not registered any more: dropped.
    o.on_disconnected();
    o.reply(5, 9, Ok(Json::obj()));
    assert!(o.take_output().is_empty());
    assert!(o
        .handle_bytes(&find(&cap, '<', "HELLO", 0x80b5_beb8, 0))
        .is_empty());
    assert!(o.take_output().is_empty());
}

#[test]
fn no_reply_calls_get_no_reply() {
    let cap = conn01();
    let (mut o, id) = registered_demo(&cap);
    let m = Msg::new(MsgType::Invoke, 3, 8)
        .with(Attr::NoReply(true))
        .with(Attr::ObjId(id))
        .with(Attr::Method("status".into()))
        .with(Attr::Data(vec![]));
    let evs = o.handle_bytes(&m.encode().unwrap());
    assert_eq!(evs.len(), 1);
    o.reply(8, 3, Ok(demo_status()));
    assert!(o.take_output().is_empty());
    // Nor errors.
    let m = Msg::new(MsgType::Invoke, 4, 8)
        .with(Attr::NoReply(true))
        .with(Attr::ObjId(id))
        .with(Attr::Method("nosuch".into()));
    assert!(o.handle_bytes(&m.encode().unwrap()).is_empty());
    assert!(o.take_output().is_empty());
}

#[test]
fn an_undecodable_call_is_answered_and_reported() {
    let cap = conn01();
    let (mut o, id) = registered_demo(&cap);
    let mut bad = find(&cap, '<', "INVOKE", 0xc70d_fa4e, 0);
    // The NUL of "msg" in the DATA table (name of the first field).
    let at = bad.len() - 32 + 13;
    assert_eq!(&bad[at - 3..at + 1], b"msg\0");
    bad[at] = b'x';
    let evs = o.handle_bytes(&bad);
    assert!(matches!(&evs[..], [Event::Error(UbusError::Decode(_))]));
    assert!(!matches!(&evs[0], Event::Error(e) if e.is_fatal()));
    assert_eq!(
        status_of(&o.take_output()),
        [(2, 0xc70d_fa4e, u32::from(Status::InvalidArgument), id)]
    );
    assert!(o.is_registered());
}

#[test]
fn registration_failures_are_fatal() {
    let hello = Msg::new(MsgType::Hello, 0, 1).encode().unwrap();
    let refused = Msg::new(MsgType::Status, 1, 0)
        .with(Attr::Status(u32::from(Status::InvalidArgument)))
        .encode()
        .unwrap();
    let mut o = demo();
    o.handle_bytes(&hello);
    let evs = o.handle_bytes(&refused);
    assert_eq!(
        evs,
        vec![Event::Error(UbusError::Registration(u32::from(
            Status::InvalidArgument
        )))]
    );
    assert!(o.failed());
    // Status 0 without an id: NO_DATA, as libubus.
    let mut o = demo();
    o.handle_bytes(&hello);
    let ok = Msg::new(MsgType::Status, 1, 0)
        .with(Attr::Status(0))
        .encode()
        .unwrap();
    assert_eq!(
        o.handle_bytes(&ok),
        vec![Event::Error(UbusError::Registration(u32::from(
            Status::NoData
        )))]
    );
    // A status for another seq is not ours.
    let mut o = demo();
    o.handle_bytes(&hello);
    let other = Msg::new(MsgType::Status, 9, 0)
        .with(Attr::Status(4))
        .encode()
        .unwrap();
    assert!(o.handle_bytes(&other).is_empty());
    assert!(!o.failed());
}

#[test]
fn garbage_and_oversize_streams_are_fatal() {
    let mut o = demo();
    let evs = o.handle_bytes(b"GET / HTTP/1.1\r\n");
    assert!(matches!(
        &evs[..],
        [Event::Error(UbusError::Frame(FrameError::Version(b'G')))]
    ));
    assert!(evs
        .iter()
        .all(|e| matches!(e, Event::Error(e) if e.is_fatal())));
    assert!(o.handle_bytes(&[0; 64]).is_empty(), "ignored once failed");
    o.on_connected();
    assert!(!o.failed());

    let mut s = FrameSplitter::new();
    let mut big = vec![0, 2, 0, 1, 0, 0, 0, 0];
    big.extend_from_slice(&(UBUS_MAX_MSGLEN as u32 + 4).to_be_bytes());
    s.push(&big);
    assert_eq!(
        s.next_frame(),
        Err(FrameError::TooLong {
            len: UBUS_MAX_MSGLEN + 4,
            max: UBUS_MAX_MSGLEN
        })
    );
    // For ever.
    s.push(&Msg::new(MsgType::Hello, 0, 1).encode().unwrap());
    assert!(s.next_frame().is_err());
    // Exactly the limit is fine.
    let mut s = FrameSplitter::new();
    let mut max = vec![0, 2, 0, 1, 0, 0, 0, 0];
    max.extend_from_slice(&(UBUS_MAX_MSGLEN as u32).to_be_bytes());
    s.push(&max);
    assert_eq!(s.next_frame(), Ok(None));
    let mut s = FrameSplitter::new();
    s.push(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3]);
    assert_eq!(s.next_frame(), Err(FrameError::BadLength(3)));
}

#[test]
fn every_ubus_code_table_round_trips_and_keeps_an_unknown_code() {
    for &t in MsgType::KNOWN {
        assert_eq!(MsgType::from(u8::from(t)), t);
        assert_eq!(MsgType::from_name(t.name()), Some(t));
    }
    assert_eq!(MsgType::from(12), MsgType::Unknown(12));
    assert_eq!(u8::from(MsgType::Unknown(12)), 12);
    assert_eq!(MsgType::from_name(MsgType::Unknown(12).name()), None);

    for &s in Status::KNOWN {
        assert_eq!(Status::from(u32::from(s)), s);
    }
    assert_eq!(Status::from(14), Status::Unknown(14));
    assert_eq!(u32::from(Status::Unknown(14)), 14);
    // As libubus's ubus_strerror says it.
    assert_eq!(Status::from(2).to_string(), "Invalid argument");
    assert_eq!(Status::from(14).to_string(), "Unknown error: 14");
    assert_eq!(
        UbusError::Registration(14).to_string(),
        "ubusd refused the object: status 14"
    );

    for &t in BlobmsgType::KNOWN {
        assert_eq!(BlobmsgType::from(u8::from(t)), t);
    }
    assert_eq!(BlobmsgType::from(9), BlobmsgType::Unknown(9));
    assert_eq!(u8::from(BlobmsgType::Unknown(9)), 9);
    assert!(!ArgType::Unknown(9).accepts(&Value::Unspec(Vec::new())));
}

#[test]
fn decoding_errors() {
    use super::msg::DecodeError;
    let hello = Msg::new(MsgType::Hello, 0, 1).encode().unwrap();
    assert_eq!(Msg::decode(&hello[..11]), Err(DecodeError::Short(11)));
    let mut v = hello.clone();
    v[0] = 1;
    assert_eq!(Msg::decode(&v), Err(DecodeError::Version(1)));
    let mut v = hello.clone();
    v[1] = 12;
    assert_eq!(Msg::decode(&v), Err(DecodeError::UnknownType(12)));
    let mut v = hello.clone();
    v.extend([0; 4]);
    assert!(matches!(Msg::decode(&v), Err(DecodeError::Length { .. })));
    let mut v = hello.clone();
    v[8] = 0x01;
    assert_eq!(Msg::decode(&v), Err(DecodeError::TopLevel));
    // STATUS of 2 bytes.
    let mut v = vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 6, 0, 0, 0, 0];
    assert!(matches!(
        Msg::decode(&v),
        Err(DecodeError::Attr { id: 1, .. })
    ));
    // An attribute running past the message.
    v[15] = 12;
    assert!(matches!(Msg::decode(&v), Err(DecodeError::Attrs(_))));
}

#[test]
fn monitor_messages_keep_their_attributes_raw() {
    let m = Msg::new(MsgType::Monitor, 1, 2)
        .with(Attr::Raw {
            id: 2,
            data: vec![0, 0, 0, 5],
        })
        .with(Attr::Raw {
            id: 6,
            data: vec![1, 2, 3],
        });
    let b = m.encode().unwrap();
    assert_eq!(Msg::decode(&b), Ok(m));
}

// ---- blobmsg written as the document is walked (BlobSink, reply_with) ----

/// `fields` as [`encode_fields`] writes the blobmsg of their tree.
fn tree_bytes(fields: &[(String, Json)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_fields(&mut out, &fields_from_json(fields)).unwrap();
    out
}

/// `fields` written into [`BlobSink`] both ways, after 3 bytes already in
/// the buffer (unaligned: padding counts from each attribute's start).
fn sink_bytes(fields: &[(String, Json)]) -> [Result<Vec<u8>, EncodeError>; 2] {
    let run = |write: &dyn Fn(&mut Vec<u8>) -> Result<(), EncodeError>| {
        let mut out = b"xyz".to_vec();
        write(&mut out)?;
        assert_eq!(&out[..3], b"xyz");
        Ok(out[3..].to_vec())
    };
    [
        // The object's own open/close are the table's.
        run(&|out| {
            let mut s = BlobSink::fields(out);
            Json::Obj(fields.to_vec()).emit(None, &mut s);
            s.finish()
        }),
        // Each field written at the top is an attribute.
        run(&|out| {
            let mut s = BlobSink::new(out);
            for (k, v) in fields {
                v.emit(Some(k), &mut s);
            }
            s.finish()
        }),
    ]
}

/// Every kind of value, at the edges of its encoding.
fn rich() -> Vec<(String, Json)> {
    let o = |f: Vec<(&str, Json)>| Json::Obj(f.into_iter().map(|(k, v)| (k.into(), v)).collect());
    let mut fields = vec![
        ("null", Json::Null),
        ("true", Json::Bool(true)),
        ("false", Json::Bool(false)),
        ("zero", Json::Int(0)),
        ("minus one", Json::Int(-1)),
        ("i32 max", Json::Int(i64::from(i32::MAX))),
        ("i32 min", Json::Int(i64::from(i32::MIN))),
        ("2^31", Json::Int(1 << 31)),
        ("-2^31-1", Json::Int(-(1 << 31) - 1)),
        ("i64 max", Json::Int(i64::MAX)),
        ("i64 min", Json::Int(i64::MIN)),
        ("float", Json::Float(1.5)),
        ("minus zero", Json::Float(-0.0)),
        ("nan", Json::Float(f64::NAN)),
        ("inf", Json::Float(f64::NEG_INFINITY)),
        ("empty string", Json::from("")),
        ("s1", Json::from("a")),
        ("s2", Json::from("ab")),
        ("s3", Json::from("abc")),
        ("s4", Json::from("abcd")),
        ("long", Json::from("0123456789".repeat(7_000))),
        ("unicode", Json::from("héllo wörld ✓ \u{1}")),
        ("", Json::from("an empty name")),
        ("empty object", Json::obj()),
        ("empty array", Json::Arr(vec![])),
        (
            "nested",
            o(vec![
                (
                    "mixed",
                    Json::Arr(vec![
                        Json::Int(1),
                        Json::Arr(vec![Json::Int(1 << 40), Json::Arr(vec![])]),
                        o(vec![("b", Json::obj()), ("", Json::Null)]),
                        Json::Null,
                        Json::from("s"),
                        Json::Bool(false),
                        Json::Float(-2.25),
                    ]),
                ),
                (
                    "deep",
                    o(vec![(
                        "deeper",
                        o(vec![("deepest", vec![Json::Bool(true)].into())]),
                    )]),
                ),
            ]),
        ),
        (
            "rows",
            Json::Arr(vec![
                o(vec![("x", Json::Int(1))]),
                o(vec![("y", Json::Arr(vec![]))]),
            ]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<Vec<_>>();
    fields.push(("k".repeat(300), Json::Int(i64::from(i32::MAX) + 1)));
    fields
}

/// A document shaped as the status document: thousands of fields.
fn big_document() -> Vec<(String, Json)> {
    let routes: Vec<Json> = (0..400u32)
        .map(|i| {
            Json::obj()
                .with("prefix", format!("10.{}.{}.0/24", i / 256, i % 256))
                .with("best", i % 3 == 0)
                .with("metric", i * 1000)
                .with("bytes", u64::from(i) << 33)
                .with("rtt_ms", f64::from(i) / 7.0)
                .with("via", if i % 5 == 0 { Json::Null } else { "r2".into() })
                .with(
                    "paths",
                    (0..4)
                        .map(|p| Json::obj().with("as_path", vec![Json::from(65000 + p)]))
                        .collect::<Vec<_>>(),
                )
        })
        .collect();
    vec![
        ("name".into(), "r1".into()),
        ("routes".into(), Json::Arr(routes)),
    ]
}

#[test]
fn blob_sink_writes_what_the_tree_encodes() {
    for doc in [rich(), big_document(), vec![]] {
        let want = tree_bytes(&doc);
        for got in sink_bytes(&doc) {
            assert_eq!(got.as_ref(), Ok(&want));
        }
    }
    // And the types are libubox's: INT32 up to the edges of i32, INT64
    // past them.
    let mut out = Vec::new();
    let mut s = BlobSink::fields(&mut out);
    Json::Obj(rich()).emit(None, &mut s);
    s.finish().unwrap();
    let fields = decode_fields(&out).unwrap();
    let kind = |name: &str| {
        let f = fields.iter().find(|f| f.name == name).unwrap();
        BlobmsgType::from(f.value.type_id())
    };
    assert_eq!(kind("i32 max"), BlobmsgType::Int32);
    assert_eq!(kind("i32 min"), BlobmsgType::Int32);
    assert_eq!(kind("2^31"), BlobmsgType::Int64);
    assert_eq!(kind("-2^31-1"), BlobmsgType::Int64);
    assert_eq!(kind("true"), BlobmsgType::Bool);
    assert_eq!(kind("null"), BlobmsgType::Unspec);
    assert_eq!(kind("nan"), BlobmsgType::Double);
    assert_eq!(kind("empty array"), BlobmsgType::Array);
    assert_eq!(kind("empty object"), BlobmsgType::Table);
}

/// A `Display` written in pieces.
struct Dotted<'a>(&'a [u8]);

impl fmt::Display for Dotted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

#[test]
fn show_values_are_strings_formatted_into_the_buffer() {
    let body = |o: &mut Obj<'_>| {
        o.f("addr", Show(Dotted(&[10, 0, 0, 1])))
            .f("empty", Show(Dotted(&[])))
            .f("padded", Show(format_args!("{:>6}", "ab")))
            .f("ip", Show(std::net::Ipv6Addr::LOCALHOST))
            .list("items", [Show(Dotted(&[1, 2])), Show(Dotted(&[3]))])
            .obj("in a table", |o| {
                o.f("k", Show(Dotted(&[255; 3])));
            });
    };
    let mut out = Vec::new();
    let mut s = BlobSink::fields(&mut out);
    object(&mut s, body);
    s.finish().unwrap();
    let Json::Obj(tree) = json::tree(body) else {
        panic!()
    };
    assert_eq!(out, tree_bytes(&tree));
    assert_eq!(
        fields_to_json(&decode_fields(&out).unwrap()).to_string(),
        r#"{"addr":"10.0.0.1","empty":"","padded":"    ab","ip":"::1","items":["1.2","3"],"in a table":{"k":"255.255.255"}}"#
    );

    // A Display that fails leaves what it wrote, without a panic.
    struct Failing;
    impl fmt::Display for Failing {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("part")?;
            Err(fmt::Error)
        }
    }
    let mut out = Vec::new();
    let mut s = BlobSink::new(&mut out);
    s.scalar(Some("f"), Scalar::Show(&Failing));
    s.finish().unwrap();
    assert_eq!(
        decode_fields(&out).unwrap(),
        [blob::Field::new("f", Value::String("part".into()))]
    );
}

/// Something that writes a document.
type WriteFn<'a> = &'a dyn Fn(&mut dyn Sink);

#[test]
fn blob_sink_errors_are_kept_not_panics() {
    // A name over 65535 bytes, deep inside: the error encode_field gives;
    // what comes after is ignored.
    let long = "n".repeat(65_536);
    let doc = vec![(
        "a".to_string(),
        Json::Arr(vec![
            Json::Int(1),
            Json::obj().with("ok", 1u8).with(&long, 2u8),
            Json::from("after"),
        ]),
    )];
    let want = encode_fields(&mut Vec::new(), &fields_from_json(&doc));
    assert_eq!(want, Err(EncodeError::NameTooLong(65_536)));
    for got in sink_bytes(&doc) {
        assert_eq!(got, Err(EncodeError::NameTooLong(65_536)));
    }
    // Exactly 65535 is fine.
    let doc = vec![("n".repeat(65_535), Json::obj())];
    for got in sink_bytes(&doc) {
        assert_eq!(got, Ok(tree_bytes(&doc)));
    }
    // An attribute over the 24-bit length, as encode_field says it; the
    // first error is the one kept.
    let doc = vec![
        ("s".to_string(), Json::from("x".repeat(1 << 24))),
        (long.clone(), Json::Null),
    ];
    let want = encode_fields(&mut Vec::new(), &fields_from_json(&doc));
    assert!(matches!(want, Err(EncodeError::TooLong(_))), "{want:?}");
    for got in sink_bytes(&doc) {
        assert_eq!(got, want.clone().map(|_| Vec::new()));
    }
    // In a table, the table's length overflows when it closes.
    let doc = vec![(
        "t".to_string(),
        Json::obj()
            .with("a", "x".repeat((1 << 23) + 8))
            .with("b", "x".repeat(1 << 23)),
    )];
    let want = encode_fields(&mut Vec::new(), &fields_from_json(&doc));
    assert!(matches!(want, Err(EncodeError::TooLong(_))), "{want:?}");
    for got in sink_bytes(&doc) {
        assert_eq!(got, want.clone().map(|_| Vec::new()));
    }

    // The limit is checked before a string is written.
    let mut out = vec![0; 8];
    let mut s = BlobSink::fields(&mut out).with_limit(4, 100);
    object(&mut s, |o| {
        o.f("a", "x".repeat(80))
            .f("b", "y".repeat(1000))
            .f("c", 1u8);
    });
    // 4 bytes before, "a" (4 + 4 + 84), "b" (4 + 4 + 1004).
    assert_eq!(s.finish(), Err(EncodeError::TooLong(4 + 92 + 1012)));
    assert_eq!(out.len(), 8 + 92);

    // BlobSink::fields takes one object.
    let not_objects: [WriteFn<'_>; 4] = [
        &|s| s.scalar(None, Scalar::Int(3)),
        &|s| s.scalar(Some("k"), Scalar::Int(3)),
        &|s| Json::Arr(vec![]).emit(None, s),
        &|s| {
            object(s, |o| {
                o.f("a", 1u8);
            });
            object(s, |_| {});
        },
    ];
    for write in not_objects {
        let mut out = Vec::new();
        let mut s = BlobSink::fields(&mut out);
        write(&mut s);
        assert_eq!(s.finish(), Err(EncodeError::NotAnObject));
    }
    // Nothing is an empty table; what is left open is closed.
    let mut out = Vec::new();
    assert_eq!(BlobSink::fields(&mut out).finish(), Ok(()));
    assert!(out.is_empty());
    let mut s = BlobSink::fields(&mut out);
    s.open(None, false);
    s.open(Some("t"), false);
    s.open(Some("a"), true);
    s.scalar(Some("ignored in an array"), Scalar::Bool(true));
    assert_eq!(s.finish(), Ok(()));
    let doc = vec![(
        "t".to_string(),
        Json::obj().with("a", vec![Json::Bool(true)]),
    )];
    assert_eq!(out, tree_bytes(&doc));
}

/// The frames `reply` sent before `reply_with` was its path: the DATA
/// frame of `Msg::encode` then STATUS 0.
fn reply_frames(peer: u32, seq: u16, id: u32, doc: &[(String, Json)]) -> Vec<u8> {
    let mut want = Msg::new(MsgType::Data, seq, peer)
        .with(Attr::ObjId(id))
        .with(Attr::Data(fields_from_json(doc)))
        .encode()
        .unwrap();
    want.extend(status_frame(peer, seq, Status::Ok, id));
    want
}

fn status_frame(peer: u32, seq: u16, status: Status, id: u32) -> Vec<u8> {
    Msg::new(MsgType::Status, seq, peer)
        .with(Attr::Status(u32::from(status)))
        .with(Attr::ObjId(id))
        .encode()
        .unwrap()
}

/// The same document answered as a tree and written three ways.
fn all_replies(o: &mut UbusObject, peer: u32, seq: u16, doc: &[(String, Json)]) -> [Vec<u8>; 4] {
    o.reply(peer, seq, Ok(Json::Obj(doc.to_vec())));
    let tree = o.take_output();
    o.reply_with(peer, seq, |s| Json::Obj(doc.to_vec()).emit(None, s));
    let emitted = o.take_output();
    o.reply_with(peer, seq, |s| {
        object(s, |o| {
            for (k, v) in doc {
                o.f(k, v);
            }
        })
    });
    let walked = o.take_output();
    let mut conn = UbusConn::new("/nonexistent/ubus.sock", o.clone());
    conn.reply_with(peer, seq, |s| Json::Obj(doc.to_vec()).emit(None, s));
    // Not connected: the bytes stay with the object.
    let mut object = conn.object().clone();
    [tree, emitted, walked, object.take_output()]
}

#[test]
fn reply_with_sends_the_bytes_reply_sent() {
    let cap = conn01();
    let (mut o, id) = registered_demo(&cap);
    let Json::Obj(demo) = demo_status() else {
        panic!()
    };
    for doc in [demo, rich(), big_document(), vec![]] {
        let want = reply_frames(0x1234_5678, 77, id, &doc);
        for got in all_replies(&mut o, 0x1234_5678, 77, &doc) {
            assert_eq!(got, want);
        }
    }
    // As captured from libubus (conn01's status reply).
    let peer = 0x979a_e379;
    let mut captured = find(&cap, '>', "DATA", peer, 0);
    let seq = Msg::decode(&captured).unwrap().seq;
    captured.extend(find(&cap, '>', "STATUS", peer, 0));
    o.reply_with(peer, seq, |s| demo_status().emit(None, s));
    assert_eq!(o.take_output(), captured);

    // After what is already waiting to go out.
    o.reply(5, 6, Ok(Json::Null));
    o.reply_with(5, 7, |s| {
        object(s, |o| {
            o.f("a", 1u8);
        })
    });
    let mut want = status_frame(5, 6, Status::Ok, id);
    want.extend(reply_frames(5, 7, id, &[("a".into(), Json::Int(1))]));
    assert_eq!(o.take_output(), want);

    // Not one object: UNKNOWN_ERROR alone, as `reply` answers a non-object.
    let not_objects: [WriteFn<'_>; 3] = [
        &|s| s.scalar(None, Scalar::Int(3)),
        &|s| Json::Arr(vec![Json::obj()]).emit(None, s),
        &|s| {
            object(s, |_| {});
            object(s, |_| {});
        },
    ];
    for write in not_objects {
        o.reply_with(5, 8, write);
        assert_eq!(
            o.take_output(),
            status_frame(5, 8, Status::UnknownError, id)
        );
    }
    // Nothing written: an empty table, as `reply(Ok(Json::obj()))`.
    o.reply_with(5, 9, |_| {});
    assert_eq!(o.take_output(), reply_frames(5, 9, id, &[]));

    // No reply wanted, or not registered: `write` is not even called.
    let m = Msg::new(MsgType::Invoke, 3, 8)
        .with(Attr::NoReply(true))
        .with(Attr::ObjId(id))
        .with(Attr::Method("status".into()));
    assert_eq!(o.handle_bytes(&m.encode().unwrap()).len(), 1);
    o.reply_with(8, 3, |_| panic!("written for a call without reply"));
    assert!(o.take_output().is_empty());
    o.on_disconnected();
    o.reply_with(8, 4, |_| panic!("written without a connection"));
    assert!(o.take_output().is_empty());
}

#[test]
fn an_oversize_streamed_reply_is_unknown_error_and_leaves_no_partial_frame() {
    let cap = conn01();
    let (mut o, id) = registered_demo(&cap);
    // A frame already waiting to go out stays, whole.
    o.reply(5, 6, Ok(Json::Null));
    let before = status_frame(5, 6, Status::Ok, id);
    let huge = "y".repeat(UBUS_MAX_MSGLEN);
    o.reply_with(5, 8, |s| {
        object(s, |o| {
            o.f("x", huge.as_str());
        })
    });
    let out = o.take_output();
    assert_eq!(split(&out).len(), 2);
    let mut want = before.clone();
    want.extend(status_frame(5, 8, Status::UnknownError, id));
    assert_eq!(out, want);

    // Too long only once many small fields are written: stopped there, and
    // nothing of it is sent either.
    o.reply(5, 6, Ok(Json::Null));
    let mut fields = 0;
    o.reply_with(5, 9, |s| {
        object(s, |o| {
            for i in 0..200_000u32 {
                fields += 1;
                o.f("k", i);
            }
        })
    });
    assert_eq!(fields, 200_000);
    let mut want = before.clone();
    want.extend(status_frame(5, 9, Status::UnknownError, id));
    assert_eq!(o.take_output(), want);

    // At the limit exactly, both ways send the frame; past it, neither.
    // The message: top header 4, OBJID 8, DATA header 4, then the field:
    // header 4, name "x" 4, the string and its NUL padded.
    let at_limit = UBUS_MAX_MSGLEN - 24 - 1;
    for (len, fits) in [(at_limit, true), (at_limit + 1, false)] {
        let doc = vec![("x".to_string(), Json::from("z".repeat(len)))];
        let tree = Msg::new(MsgType::Data, 10, 5)
            .with(Attr::ObjId(id))
            .with(Attr::Data(fields_from_json(&doc)))
            .encode();
        assert_eq!(tree.is_ok(), fits, "{len}");
        for got in all_replies(&mut o, 5, 10, &doc) {
            if fits {
                assert_eq!(got, reply_frames(5, 10, id, &doc));
                assert_eq!(split(&got)[0].len(), 8 + UBUS_MAX_MSGLEN);
            } else {
                assert_eq!(got, status_frame(5, 10, Status::UnknownError, id));
            }
        }
    }
    // The object goes on answering.
    o.reply_with(5, 11, |s| demo_status().emit(None, s));
    let Json::Obj(demo) = demo_status() else {
        panic!()
    };
    assert_eq!(o.take_output(), reply_frames(5, 11, id, &demo));
}

// ---- property tests ----

fn json_leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::Int),
        (-1_000_000i64..1_000_000).prop_map(Json::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Json::Float),
        ".{0,12}".prop_map(Json::Str),
    ]
}

fn json_value() -> impl Strategy<Value = Json> {
    json_leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Arr),
            prop::collection::vec(("[a-z_]{0,10}", inner), 0..6).prop_map(Json::Obj),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Vec<(String, Json)>> {
    prop::collection::vec((".{0,10}", json_value()), 0..8)
}

fn attr() -> impl Strategy<Value = Attr> {
    let fields = || json_object().prop_map(|o| fields_from_json(&o));
    prop_oneof![
        any::<u32>().prop_map(Attr::Status),
        ".{0,20}".prop_map(Attr::ObjPath),
        any::<u32>().prop_map(Attr::ObjId),
        ".{0,20}".prop_map(Attr::Method),
        any::<u32>().prop_map(Attr::ObjType),
        fields().prop_map(Attr::Signature),
        fields().prop_map(Attr::Data),
        any::<u32>().prop_map(Attr::Target),
        any::<bool>().prop_map(Attr::Active),
        any::<bool>().prop_map(Attr::NoReply),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Attr::Subscribers),
        ".{0,8}".prop_map(Attr::User),
        ".{0,8}".prop_map(Attr::Group),
        (
            prop_oneof![Just(0u8), 14u8..=127],
            prop::collection::vec(any::<u8>(), 0..12)
        )
            .prop_map(|(id, data)| Attr::Raw { id, data }),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        0u8..11, // all but MONITOR, whose attributes stay raw
        any::<u16>(),
        any::<u32>(),
        prop::collection::vec(attr(), 0..6),
    )
        .prop_map(|(t, seq, peer, attrs)| Msg {
            msg_type: MsgType::from(t),
            seq,
            peer,
            attrs,
        })
}

proptest! {
    #[test]
    fn blobmsg_json_round_trip(obj in json_object()) {
        let fields = fields_from_json(&obj);
        let mut bytes = Vec::new();
        encode_fields(&mut bytes, &fields).unwrap();
        prop_assert_eq!(bytes.len() % 4, 0);
        let back = decode_fields(&bytes).unwrap();
        prop_assert_eq!(&back, &fields);
        prop_assert_eq!(fields_to_json(&back), Json::Obj(obj));
    }

    #[test]
    fn blobmsg_value_round_trip(j in json_value(), i16v in any::<i16>(), raw in prop::collection::vec(any::<u8>(), 0..9)) {
        // Types JSON never produces: INT16, UNSPEC with a payload.
        let fields = vec![
            blob::Field::new("j", blob::value_from_json(&j)),
            blob::Field::new("s", Value::Int16(i16v)),
            blob::Field::new("u", Value::Unspec(raw)),
        ];
        let mut bytes = Vec::new();
        encode_fields(&mut bytes, &fields).unwrap();
        prop_assert_eq!(decode_fields(&bytes).unwrap(), fields);
    }

    #[test]
    fn frame_round_trip(m in msg()) {
        let bytes = m.encode().unwrap();
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(Msg::decode(&bytes).unwrap(), m);
        prop_assert_eq!(split(&bytes), vec![bytes]);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Msg::decode(&bytes);
        let _ = decode_fields(&bytes);
        let mut s = FrameSplitter::new();
        s.push(&bytes);
        while let Ok(Some(f)) = s.next_frame() {
            let _ = Msg::decode(&f);
        }
    }

    #[test]
    fn decoding_random_attributes_never_panics(
        t in 0u8..13, body in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        // A valid header and top-level length around random attributes, so
        // that the attribute decoders see them.
        let mut body = body;
        body.resize(blob::pad4(body.len()), 0);
        let mut frame = vec![0, t, 0, 1, 0, 0, 0, 2];
        frame.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        if let Ok(m) = Msg::decode(&frame) {
            // What decodes re-encodes to something that decodes the same.
            let again = m.encode().unwrap();
            prop_assert_eq!(Msg::decode(&again).unwrap(), m);
        }
        let _ = decode_fields(&body);
    }

    #[test]
    fn splitter_is_indifferent_to_chunking(
        msgs in prop::collection::vec(msg(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let frames: Vec<Vec<u8>> = msgs.iter().map(|m| m.encode().unwrap()).collect();
        let stream: Vec<u8> = frames.concat();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        at.push(0);
        at.push(stream.len());
        at.sort_unstable();
        let mut s = FrameSplitter::new();
        let mut got = Vec::new();
        for w in at.windows(2) {
            s.push(&stream[w[0]..w[1]]);
            while let Some(f) = s.next_frame().unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn registered_object_survives_random_bytes(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)
    ) {
        let cap = conn01();
        let (mut o, _) = registered_demo(&cap);
        for c in &chunks {
            let evs = o.handle_bytes(c);
            demo_handle(&mut o, evs);
            for f in split(&o.take_output()) {
                prop_assert!(Msg::decode(&f).is_ok());
            }
        }
    }

    #[test]
    fn registered_object_answers_every_well_formed_call(
        method in prop_oneof![Just("status".to_string()), Just("echo".to_string()), ".{0,8}"],
        args in json_object(),
        peer in any::<u32>(),
        seq in any::<u16>(),
    ) {
        let cap = conn01();
        let (mut o, id) = registered_demo(&cap);
        let evs = o.handle_bytes(&invoke(id, peer, seq, &method, Json::Obj(args)));
        demo_handle(&mut o, evs);
        let out = split(&o.take_output());
        // Exactly one STATUS, last, to the caller.
        let msgs: Vec<Msg> = out.iter().map(|f| Msg::decode(f).unwrap()).collect();
        let last = msgs.last().unwrap();
        prop_assert_eq!(last.msg_type, MsgType::Status);
        prop_assert_eq!((last.peer, last.seq, last.objid()), (peer, seq, Some(id)));
        prop_assert_eq!(msgs.iter().filter(|m| m.msg_type == MsgType::Status).count(), 1);
    }
}

proptest! {
    #[test]
    fn blob_sink_equals_the_tree_encoding(obj in json_object()) {
        let want = tree_bytes(&obj);
        for got in sink_bytes(&obj) {
            prop_assert_eq!(got, Ok(want.clone()));
        }
    }

    #[test]
    fn reply_with_equals_the_tree_reply(
        obj in json_object(),
        peer in any::<u32>(),
        seq in any::<u16>(),
    ) {
        let cap = conn01();
        let (mut o, id) = registered_demo(&cap);
        let want = reply_frames(peer, seq, id, &obj);
        for got in all_replies(&mut o, peer, seq, &obj) {
            prop_assert_eq!(&got, &want);
        }
    }
}
