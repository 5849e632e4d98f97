//! A ubus object owner as a sans-IO state machine: bytes from ubusd in,
//! events and bytes to ubusd out. It does what libubus does for a server
//! object (`ubus_add_object`, `ubus_process_invoke`, `ubus_send_reply`,
//! `ubus_notify`), byte for byte as the captures in
//! `tests/fixtures/ubus/conn01.txt` show:
//!
//! 1. ubusd sends HELLO (its header's peer is our client id);
//! 2. we send ADD_OBJECT (seq 1: OBJPATH, SIGNATURE); ubusd answers DATA
//!    (OBJID, OBJTYPE) and STATUS 0 with the same seq;
//! 3. ubusd forwards calls as INVOKE (OBJID, METHOD, USER, GROUP, DATA) with
//!    the caller's peer id and seq; we answer DATA (OBJID, DATA) then STATUS
//!    (STATUS, OBJID), or STATUS alone for an error;
//! 4. ubusd sends NOTIFY (OBJID, ACTIVE) when the first subscriber comes and
//!    the last one goes; we send NOTIFY (OBJID, METHOD = event type, DATA,
//!    NO_REPLY) to the subscribers, with our own request seq.
//!
//! Unknown methods are answered METHOD_NOT_FOUND and arguments of the wrong
//! type INVALID_ARGUMENT without bothering the daemon. ubusd itself checks
//! nothing against the signature: it only publishes it (`ubus -v list`).

use std::fmt;

use super::blob::{fields_from_json, fields_to_json, BlobmsgType, EncodeError, Field, Value};
use super::msg::{Attr, DecodeError, FrameError, FrameSplitter, Header, Msg, MsgType, Status};
use crate::json::{Json, Sink, Value as _};

/// The blobmsg type an argument is declared with in the signature. ubusd
/// publishes it; [`UbusObject`] checks the arguments of each call against
/// it (see [`ArgType::accepts`]). `Unspec` declares an argument of any type.
pub type ArgType = BlobmsgType;

impl ArgType {
    /// Whether a value may stand for an argument of this type. Strict, as
    /// libubox's `blobmsg_parse`, except where JSON callers (`ubus call`,
    /// rpcd for LuCI) cannot choose the type: an INT64 argument accepts an
    /// INT32 or INT16 (JSON integers that fit in 32 bits are sent as INT32),
    /// an INT32 argument an INT16, and a DOUBLE argument any integer (JSON
    /// `1` is an integer). A type this table does not name accepts nothing.
    pub fn accepts(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (ArgType::Unspec, _)
                | (ArgType::Array, Value::Array(_))
                | (ArgType::Table, Value::Table(_))
                | (ArgType::String, Value::String(_))
                | (
                    ArgType::Int64,
                    Value::Int64(_) | Value::Int32(_) | Value::Int16(_)
                )
                | (ArgType::Int32, Value::Int32(_) | Value::Int16(_))
                | (ArgType::Int16, Value::Int16(_))
                | (ArgType::Bool, Value::Int8(_))
                | (
                    ArgType::Double,
                    Value::Double(_) | Value::Int64(_) | Value::Int32(_) | Value::Int16(_)
                )
        )
    }
}

/// What the object reports to its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// ubusd accepted the object under this id.
    Registered { id: u32 },
    /// A call of a method of the signature, with arguments of the declared
    /// types. Answer it with [`UbusObject::reply`] or
    /// [`UbusObject::reply_with`] (exactly once).
    Invoke {
        peer: u32,
        seq: u16,
        method: String,
        args: Json,
    },
    /// The object gained its first subscriber (`true`) or lost its last.
    SubscribersChanged { active: bool },
    /// Something went wrong; see [`UbusError::is_fatal`].
    Error(UbusError),
    /// From [`super::UbusConn`] only: a new socket (add its fd to epoll).
    Connected,
    /// From [`super::UbusConn`] only: the socket is gone (closed, so it left
    /// epoll by itself); a reconnection is scheduled.
    Disconnected,
}

/// Errors reported as [`Event::Error`].
#[derive(Debug, Clone, PartialEq)]
pub enum UbusError {
    /// The byte stream cannot be framed. Fatal: reconnect.
    Frame(FrameError),
    /// A frame that does not decode; it was skipped (and a call answered
    /// INVALID_ARGUMENT).
    Decode(DecodeError),
    /// ubusd refused the object (a status code, e.g. another process owns
    /// the path). Fatal: reconnect later.
    Registration(u32),
    /// Our own message could not be encoded (e.g. ADD_OBJECT with a
    /// 70,000-byte name). Fatal during registration.
    Encode(EncodeError),
}

impl UbusError {
    /// Whether the connection is of no further use.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            UbusError::Frame(_) | UbusError::Registration(_) | UbusError::Encode(_)
        )
    }
}

impl fmt::Display for UbusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UbusError::Frame(e) => write!(f, "{e}"),
            UbusError::Decode(e) => write!(f, "bad message from ubusd: {e}"),
            UbusError::Registration(code) => match Status::from(*code) {
                Status::Unknown(_) => write!(f, "ubusd refused the object: status {code}"),
                s => write!(f, "ubusd refused the object: {s} ({code})"),
            },
            UbusError::Encode(e) => write!(f, "cannot encode: {e}"),
        }
    }
}

impl std::error::Error for UbusError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection: input is ignored.
    Disconnected,
    AwaitHello,
    /// ADD_OBJECT sent with this seq; the id once its DATA came.
    AwaitRegistration {
        seq: u16,
        id: Option<u32>,
    },
    Registered {
        id: u32,
    },
    /// After a fatal error: input is ignored until `on_connected`.
    Failed,
}

/// At most this many calls with NO_REPLY are remembered (their replies are
/// dropped).
const MAX_NO_REPLY: usize = 32;

/// A method: its name and its arguments with their types.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Method {
    name: String,
    args: Vec<(String, ArgType)>,
}

/// The object owner's side of one ubusd connection.
#[derive(Debug, Clone)]
pub struct UbusObject {
    path: String,
    methods: Vec<Method>,
    state: State,
    splitter: FrameSplitter,
    out: Vec<u8>,
    /// libubus's `ctx->request_seq`: the seq of our last request.
    request_seq: u16,
    /// Our client id, from ubusd's HELLO.
    local_id: Option<u32>,
    subscribers: bool,
    /// Calls that asked for no reply: (peer, seq).
    no_reply: Vec<(u32, u16)>,
}

impl UbusObject {
    /// An object at `path` with methods `(name, [(argument, type)])`. Call
    /// [`UbusObject::on_connected`] on each new connection (a fresh object
    /// is ready for its first one).
    pub fn new(path: &str, methods: &[(&str, &[(&str, ArgType)])]) -> UbusObject {
        UbusObject {
            path: path.to_string(),
            methods: methods
                .iter()
                .map(|(name, args)| Method {
                    name: name.to_string(),
                    args: args.iter().map(|(a, t)| (a.to_string(), *t)).collect(),
                })
                .collect(),
            state: State::AwaitHello,
            splitter: FrameSplitter::new(),
            out: Vec::new(),
            request_seq: 0,
            local_id: None,
            subscribers: false,
            no_reply: Vec::new(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Forgets the last connection: wait for ubusd's HELLO, then register.
    pub fn on_connected(&mut self) {
        self.reset(State::AwaitHello);
    }

    /// The connection is gone: ignore input, send nothing.
    pub fn on_disconnected(&mut self) {
        self.reset(State::Disconnected);
    }

    fn reset(&mut self, state: State) {
        self.state = state;
        self.splitter.reset();
        self.out.clear();
        self.request_seq = 0;
        self.local_id = None;
        self.subscribers = false;
        self.no_reply.clear();
    }

    /// Our object id, once registered.
    pub fn id(&self) -> Option<u32> {
        match self.state {
            State::Registered { id } => Some(id),
            _ => None,
        }
    }

    pub fn is_registered(&self) -> bool {
        self.id().is_some()
    }

    /// Our client id on this connection (ubusd's HELLO).
    pub fn local_id(&self) -> Option<u32> {
        self.local_id
    }

    /// Whether anybody is subscribed (ubusd's last NOTIFY said ACTIVE).
    pub fn has_subscribers(&self) -> bool {
        self.subscribers
    }

    /// Whether a fatal error happened: the connection should be dropped.
    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Bytes to write to the socket, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Feeds bytes read from ubusd (any amount, frames may be split).
    ///
    /// Every whole frame is handled before the events are returned: what
    /// the object answers by itself (unknown methods, bad arguments) goes
    /// out before the driver's replies to calls that came earlier in the
    /// same bytes, and [`UbusObject::has_subscribers`] is already the state
    /// after the last frame. Harmless for ubus (each answer goes to its own
    /// caller), but not libubus's exact order when several frames come in
    /// one read.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        if matches!(self.state, State::Disconnected | State::Failed) {
            return events;
        }
        self.splitter.push(bytes);
        loop {
            match self.splitter.next_frame() {
                Ok(Some(frame)) => self.handle_frame(&frame, &mut events),
                Ok(None) => break,
                Err(e) => {
                    self.fail(UbusError::Frame(e), &mut events);
                    break;
                }
            }
            if self.state == State::Failed {
                break;
            }
        }
        events
    }

    fn fail(&mut self, e: UbusError, events: &mut Vec<Event>) {
        self.state = State::Failed;
        self.subscribers = false;
        events.push(Event::Error(e));
    }

    fn handle_frame(&mut self, frame: &[u8], events: &mut Vec<Event>) {
        let msg = match Msg::decode(frame) {
            Ok(m) => m,
            Err(e) => {
                // A call we cannot read is still answered, as libubus
                // answers one it cannot parse.
                if let (State::Registered { id }, Some(h)) = (self.state, Header::peek(frame)) {
                    if MsgType::from(h.msg_type) == MsgType::Invoke && h.version == 0 {
                        self.send_status(h.peer, h.seq, Status::InvalidArgument, id);
                    }
                }
                log::debug!("ubus: undecodable frame: {e}");
                events.push(Event::Error(UbusError::Decode(e)));
                return;
            }
        };
        match (self.state, msg.msg_type) {
            (State::AwaitHello, MsgType::Hello) => {
                self.local_id = Some(msg.peer);
                self.send_add_object(events);
            }
            (State::AwaitRegistration { seq, .. }, MsgType::Data) if msg.seq == seq => {
                if let Some(id) = msg.objid() {
                    self.state = State::AwaitRegistration { seq, id: Some(id) };
                }
            }
            (State::AwaitRegistration { seq, id }, MsgType::Status) if msg.seq == seq => {
                match (msg.status(), id) {
                    (Some(0), Some(id)) => {
                        self.state = State::Registered { id };
                        events.push(Event::Registered { id });
                    }
                    // libubus: "if (!obj->id) return UBUS_STATUS_NO_DATA".
                    (Some(0), None) => {
                        self.fail(UbusError::Registration(u32::from(Status::NoData)), events)
                    }
                    (Some(code), _) => self.fail(UbusError::Registration(code), events),
                    (None, _) => self.fail(
                        UbusError::Registration(u32::from(Status::InvalidCommand)),
                        events,
                    ),
                }
            }
            (State::Registered { id }, MsgType::Invoke) => self.handle_invoke(&msg, id, events),
            (State::Registered { id }, MsgType::Notify) if msg.objid() == Some(id) => {
                if let Some(active) = msg.active() {
                    self.subscribers = active;
                    events.push(Event::SubscribersChanged { active });
                }
            }
            (_, t) => log::debug!("ubus: ignored {} seq {}", t.name(), msg.seq),
        }
    }

    fn send_add_object(&mut self, events: &mut Vec<Event>) {
        let seq = self.next_seq();
        let signature = self
            .methods
            .iter()
            .map(|m| {
                Field::new(
                    m.name.clone(),
                    Value::Table(
                        m.args
                            .iter()
                            .map(|(a, t)| {
                                Field::new(a.clone(), Value::Int32(i32::from(u8::from(*t))))
                            })
                            .collect(),
                    ),
                )
            })
            .collect();
        let msg = Msg::new(MsgType::AddObject, seq, 0)
            .with(Attr::ObjPath(self.path.clone()))
            .with(Attr::Signature(signature));
        match msg.encode() {
            Ok(bytes) => {
                self.out.extend_from_slice(&bytes);
                self.state = State::AwaitRegistration { seq, id: None };
            }
            Err(e) => self.fail(UbusError::Encode(e), events),
        }
    }

    fn handle_invoke(&mut self, msg: &Msg, id: u32, events: &mut Vec<Event>) {
        let (peer, seq) = (msg.peer, msg.seq);
        let no_reply = msg.no_reply();
        let answer = |this: &mut Self, status: Status, objid: u32| {
            if !no_reply {
                this.send_status(peer, seq, status, objid);
            }
        };
        match msg.objid() {
            Some(o) if o == id => {}
            other => return answer(self, Status::NotFound, other.unwrap_or(0)),
        }
        let Some(name) = msg.method() else {
            return answer(self, Status::InvalidArgument, id);
        };
        let Some(method) = self.methods.iter().find(|m| m.name == name) else {
            return answer(self, Status::MethodNotFound, id);
        };
        let fields = msg.data().unwrap_or(&[]);
        let typed = fields.iter().all(|f| {
            method
                .args
                .iter()
                .filter(|(a, _)| *a == f.name)
                .all(|(_, t)| t.accepts(&f.value))
        });
        if !typed {
            return answer(self, Status::InvalidArgument, id);
        }
        if no_reply {
            if self.no_reply.len() >= MAX_NO_REPLY {
                self.no_reply.remove(0);
            }
            self.no_reply.push((peer, seq));
        }
        events.push(Event::Invoke {
            peer,
            seq,
            method: name.to_string(),
            args: fields_to_json(fields),
        });
    }

    /// Answers the call `(peer, seq)` of an [`Event::Invoke`]:
    /// - `Ok(Json::Obj(..))`: DATA (OBJID, DATA) then STATUS 0, as
    ///   [`UbusObject::reply_with`] writing the object;
    /// - `Ok(Json::Null)`: STATUS 0 alone (a method without data);
    /// - `Err(status)`: STATUS alone.
    ///
    /// Any other JSON value, or data too big for ubus, is answered
    /// UNKNOWN_ERROR (and logged). Nothing is sent when the call asked for
    /// no reply or the object is no longer registered (the call died with
    /// the connection).
    pub fn reply(&mut self, peer: u32, seq: u16, result: Result<Json, Status>) {
        let data = match result {
            Ok(data @ Json::Obj(_)) => data,
            other => {
                let Some(id) = self.answering(peer, seq) else {
                    return;
                };
                let status = match other {
                    Ok(Json::Null) => Status::Ok,
                    Ok(other) => {
                        log::error!("ubus: reply to {peer:08x}/{seq} is not an object: {other}");
                        Status::UnknownError
                    }
                    Err(status) => status,
                };
                return self.send_status(peer, seq, status, id);
            }
        };
        self.reply_with(peer, seq, |sink| data.emit(None, sink));
    }

    /// Answers the call `(peer, seq)` of an [`Event::Invoke`] with data
    /// that `write` writes as it walks it, one object
    /// ([`crate::json::object`]), straight into the DATA frame: DATA
    /// (OBJID, DATA) then STATUS 0, the bytes [`UbusObject::reply`] sends
    /// for the same object as a tree, without the tree.
    ///
    /// Data too big for ubus (or a name over 65535 bytes, or not an object)
    /// is answered UNKNOWN_ERROR alone (and logged): no part of the DATA
    /// frame is sent. `write` is not called when nothing is to be sent (the
    /// call asked for no reply, or the object is no longer registered).
    pub fn reply_with(&mut self, peer: u32, seq: u16, write: impl FnOnce(&mut dyn Sink)) {
        let Some(id) = self.answering(peer, seq) else {
            return;
        };
        let data = Msg::new(MsgType::Data, seq, peer).with(Attr::ObjId(id));
        let status = match data.encode_with_data(&mut self.out, write) {
            Ok(()) => Status::Ok,
            Err(e) => {
                log::error!("ubus: reply to {peer:08x}/{seq}: {e}");
                Status::UnknownError
            }
        };
        self.send_status(peer, seq, status, id);
    }

    /// The object id to answer the call `(peer, seq)` with; `None` when
    /// nothing is to be sent: the object is not registered, or the call
    /// asked for no reply (it is forgotten now).
    fn answering(&mut self, peer: u32, seq: u16) -> Option<u32> {
        let State::Registered { id } = self.state else {
            log::debug!("ubus: reply to {peer:08x}/{seq} dropped: not registered");
            return None;
        };
        if let Some(i) = self.no_reply.iter().position(|&c| c == (peer, seq)) {
            self.no_reply.remove(i);
            return None;
        }
        Some(id)
    }

    fn send_status(&mut self, peer: u32, seq: u16, status: Status, objid: u32) {
        let msg = Msg::new(MsgType::Status, seq, peer)
            .with(Attr::Status(u32::from(status)))
            .with(Attr::ObjId(objid));
        if let Ok(bytes) = msg.encode() {
            self.out.extend_from_slice(&bytes);
        }
    }

    /// Sends an event (`data`: an object, or `Null` for none) to the
    /// subscribers, as `ubus_notify` without waiting for replies. Nothing is
    /// sent, and `false` returned, when nobody is subscribed (or the object
    /// is not registered, or the data is too big for ubus).
    pub fn notify(&mut self, event_type: &str, data: Json) -> bool {
        let State::Registered { id } = self.state else {
            return false;
        };
        if !self.subscribers {
            return false;
        }
        let fields = match data {
            Json::Obj(fields) => fields_from_json(&fields),
            Json::Null => Vec::new(),
            other => {
                log::error!("ubus: notify {event_type}: not an object: {other}");
                return false;
            }
        };
        let seq = self.request_seq.wrapping_add(1);
        let msg = Msg::new(MsgType::Notify, seq, id)
            .with(Attr::ObjId(id))
            .with(Attr::Method(event_type.to_string()))
            .with(Attr::Data(fields))
            .with(Attr::NoReply(true));
        match msg.encode() {
            Ok(bytes) => {
                self.request_seq = seq;
                self.out.extend_from_slice(&bytes);
                true
            }
            Err(e) => {
                log::error!("ubus: notify {event_type}: {e}");
                false
            }
        }
    }

    fn next_seq(&mut self) -> u16 {
        self.request_seq = self.request_seq.wrapping_add(1);
        self.request_seq
    }
}
