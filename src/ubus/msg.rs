//! ubus frames: an 8-byte header (`u8 version` = 0, `u8 type`, `u16 seq`,
//! `u32 peer`, big-endian) and one blob attribute (id 0) holding the
//! message's attributes (`ubusmsg.h`); and a splitter that cuts a byte
//! stream into frames.

use std::fmt;

use super::blob::{
    self, begin_attr, decode_fields, encode_fields, end_attr, pad4, parse_attrs, put_attr,
    BlobError, BlobSink, EncodeError, Field, ATTR_HEADER_LEN, LEN_MASK,
};
use crate::json::Sink;

/// ubusd and libubus drop a connection whose message (the padded top-level
/// blob attribute, after the 8-byte header) is longer than this.
pub const UBUS_MAX_MSGLEN: usize = 1_048_576;
/// The ubus header before the blob attribute.
pub const HEADER_LEN: usize = 8;
/// The header plus the top-level attribute's header: the least a frame is.
pub const MIN_FRAME_LEN: usize = HEADER_LEN + ATTR_HEADER_LEN;

mesh_core::enum_with_unknown! {
    /// Message types (`enum ubus_msg_type`). A frame of an `Unknown` type
    /// does not decode.
    pub enum MsgType(u8) {
        Hello = 0,
        Status = 1,
        Data = 2,
        Ping = 3,
        Lookup = 4,
        Invoke = 5,
        AddObject = 6,
        RemoveObject = 7,
        Subscribe = 8,
        Unsubscribe = 9,
        Notify = 10,
        Monitor = 11,
    }
}

impl MsgType {
    /// The name without `UBUS_MSG_`, as in the captures: `ADD_OBJECT`.
    pub fn name(self) -> &'static str {
        match self {
            MsgType::Hello => "HELLO",
            MsgType::Status => "STATUS",
            MsgType::Data => "DATA",
            MsgType::Ping => "PING",
            MsgType::Lookup => "LOOKUP",
            MsgType::Invoke => "INVOKE",
            MsgType::AddObject => "ADD_OBJECT",
            MsgType::RemoveObject => "REMOVE_OBJECT",
            MsgType::Subscribe => "SUBSCRIBE",
            MsgType::Unsubscribe => "UNSUBSCRIBE",
            MsgType::Notify => "NOTIFY",
            MsgType::Monitor => "MONITOR",
            MsgType::Unknown(_) => "UNKNOWN",
        }
    }

    /// The known type of that name ([`MsgType::name`]); `None` for any
    /// other, `UNKNOWN` included.
    pub fn from_name(name: &str) -> Option<MsgType> {
        MsgType::KNOWN.iter().copied().find(|t| t.name() == name)
    }
}

mesh_core::enum_with_unknown! {
    /// Status codes (`enum ubus_msg_status`).
    pub enum Status(u32) {
        Ok = 0,
        InvalidCommand = 1,
        InvalidArgument = 2,
        MethodNotFound = 3,
        NotFound = 4,
        NoData = 5,
        PermissionDenied = 6,
        Timeout = 7,
        NotSupported = 8,
        UnknownError = 9,
        ConnectionFailed = 10,
        /// Newer ubus only (as are the next two).
        NoMemory = 11,
        ParseError = 12,
        SystemError = 13,
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // libubus's ubus_strerror texts.
        f.write_str(match self {
            Status::Ok => "Success",
            Status::InvalidCommand => "Invalid command",
            Status::InvalidArgument => "Invalid argument",
            Status::MethodNotFound => "Method not found",
            Status::NotFound => "Not found",
            Status::NoData => "No response",
            Status::PermissionDenied => "Permission denied",
            Status::Timeout => "Request timed out",
            Status::NotSupported => "Operation not supported",
            Status::UnknownError => "Unknown error",
            Status::ConnectionFailed => "Connection failed",
            Status::NoMemory => "Out of memory",
            Status::ParseError => "Parsing message data failed",
            Status::SystemError => "System error",
            Status::Unknown(code) => return write!(f, "Unknown error: {code}"),
        })
    }
}

/// Top-level attribute ids (`enum ubus_msg_attr`).
pub mod attr {
    pub const STATUS: u8 = 1;
    pub const OBJPATH: u8 = 2;
    pub const OBJID: u8 = 3;
    pub const METHOD: u8 = 4;
    pub const OBJTYPE: u8 = 5;
    pub const SIGNATURE: u8 = 6;
    pub const DATA: u8 = 7;
    pub const TARGET: u8 = 8;
    pub const ACTIVE: u8 = 9;
    pub const NO_REPLY: u8 = 10;
    pub const SUBSCRIBERS: u8 = 11;
    pub const USER: u8 = 12;
    pub const GROUP: u8 = 13;
}

/// A top-level attribute, in the order it appears in the message.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Status(u32),
    ObjPath(String),
    ObjId(u32),
    Method(String),
    ObjType(u32),
    /// One blobmsg table per method: argument name → blobmsg type (INT32).
    Signature(Vec<Field>),
    /// A blobmsg table's contents.
    Data(Vec<Field>),
    Target(u32),
    Active(bool),
    NoReply(bool),
    /// Nested OBJID attributes, kept as bytes.
    Subscribers(Vec<u8>),
    User(String),
    Group(String),
    /// An id meshd does not know, and every attribute of a MONITOR message
    /// (which has its own attribute ids).
    Raw {
        id: u8,
        data: Vec<u8>,
    },
}

impl Attr {
    pub fn id(&self) -> u8 {
        match self {
            Attr::Status(_) => attr::STATUS,
            Attr::ObjPath(_) => attr::OBJPATH,
            Attr::ObjId(_) => attr::OBJID,
            Attr::Method(_) => attr::METHOD,
            Attr::ObjType(_) => attr::OBJTYPE,
            Attr::Signature(_) => attr::SIGNATURE,
            Attr::Data(_) => attr::DATA,
            Attr::Target(_) => attr::TARGET,
            Attr::Active(_) => attr::ACTIVE,
            Attr::NoReply(_) => attr::NO_REPLY,
            Attr::Subscribers(_) => attr::SUBSCRIBERS,
            Attr::User(_) => attr::USER,
            Attr::Group(_) => attr::GROUP,
            Attr::Raw { id, .. } => *id,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let id = self.id();
        let string = |out: &mut Vec<u8>, s: &str| {
            let at = begin_attr(out);
            out.extend_from_slice(s.as_bytes());
            out.push(0);
            end_attr(out, at, id, false)
        };
        match self {
            Attr::Status(v) | Attr::ObjId(v) | Attr::ObjType(v) | Attr::Target(v) => {
                put_attr(out, id, &v.to_be_bytes())
            }
            Attr::ObjPath(s) | Attr::Method(s) | Attr::User(s) | Attr::Group(s) => string(out, s),
            Attr::Signature(fields) | Attr::Data(fields) => {
                let at = begin_attr(out);
                encode_fields(out, fields)?;
                end_attr(out, at, id, false)
            }
            Attr::Active(b) | Attr::NoReply(b) => put_attr(out, id, &[u8::from(*b)]),
            Attr::Subscribers(data) | Attr::Raw { data, .. } => put_attr(out, id, data),
        }
    }

    fn decode(a: blob::RawAttr<'_>) -> Result<Attr, DecodeError> {
        let bad = |reason| DecodeError::Attr { id: a.id, reason };
        if a.extended {
            return Err(bad("extended (blobmsg) header"));
        }
        let p = a.payload;
        let int32 = || -> Result<u32, DecodeError> {
            match p {
                [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => Err(bad("not 4 bytes")),
            }
        };
        let int8 = || -> Result<bool, DecodeError> {
            match p {
                [b] => Ok(*b != 0),
                _ => Err(bad("not 1 byte")),
            }
        };
        let string = || -> Result<String, DecodeError> {
            match p.split_last() {
                Some((0, s)) => String::from_utf8(s.to_vec()).map_err(|_| bad("not UTF-8")),
                _ => Err(bad("string without NUL")),
            }
        };
        let fields = || decode_fields(p).map_err(|e| DecodeError::Blob { id: a.id, error: e });
        Ok(match a.id {
            attr::STATUS => Attr::Status(int32()?),
            attr::OBJPATH => Attr::ObjPath(string()?),
            attr::OBJID => Attr::ObjId(int32()?),
            attr::METHOD => Attr::Method(string()?),
            attr::OBJTYPE => Attr::ObjType(int32()?),
            attr::SIGNATURE => Attr::Signature(fields()?),
            attr::DATA => Attr::Data(fields()?),
            attr::TARGET => Attr::Target(int32()?),
            attr::ACTIVE => Attr::Active(int8()?),
            attr::NO_REPLY => Attr::NoReply(int8()?),
            attr::SUBSCRIBERS => Attr::Subscribers(p.to_vec()),
            attr::USER => Attr::User(string()?),
            attr::GROUP => Attr::Group(string()?),
            id => Attr::Raw {
                id,
                data: p.to_vec(),
            },
        })
    }
}

/// Why a frame does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header and the top-level attribute header.
    Short(usize),
    /// Not version 0.
    Version(u8),
    UnknownType(u8),
    /// The frame's size is not what the top-level attribute says.
    Length {
        expected: usize,
        actual: usize,
    },
    /// The top-level attribute is not a plain attribute with id 0.
    TopLevel,
    /// The attributes do not tile the top-level attribute.
    Attrs(BlobError),
    /// A malformed top-level attribute.
    Attr {
        id: u8,
        reason: &'static str,
    },
    /// A malformed blobmsg payload (DATA, SIGNATURE).
    Blob {
        id: u8,
        error: BlobError,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short(n) => write!(f, "frame of {n} bytes is too short"),
            DecodeError::Version(v) => write!(f, "ubus version {v}"),
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t}"),
            DecodeError::Length { expected, actual } => {
                write!(f, "frame of {actual} bytes, its header says {expected}")
            }
            DecodeError::TopLevel => write!(f, "top-level attribute is not id 0"),
            DecodeError::Attrs(e) => write!(f, "attributes: {e}"),
            DecodeError::Attr { id, reason } => write!(f, "attribute {id}: {reason}"),
            DecodeError::Blob { id, error } => write!(f, "attribute {id}: {error}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    /// The raw type (it may not be a known [`MsgType`]).
    pub msg_type: u8,
    pub seq: u16,
    pub peer: u32,
}

impl Header {
    /// The header of a frame (or of its first 8 bytes).
    pub fn peek(frame: &[u8]) -> Option<Header> {
        let h = frame.get(..HEADER_LEN)?;
        Some(Header {
            version: h[0],
            msg_type: h[1],
            seq: u16::from_be_bytes([h[2], h[3]]),
            peer: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        })
    }
}

/// One ubus message.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub msg_type: MsgType,
    pub seq: u16,
    pub peer: u32,
    pub attrs: Vec<Attr>,
}

impl Msg {
    pub fn new(msg_type: MsgType, seq: u16, peer: u32) -> Msg {
        Msg {
            msg_type,
            seq,
            peer,
            attrs: Vec::new(),
        }
    }

    /// Appends an attribute.
    pub fn with(mut self, a: Attr) -> Msg {
        self.attrs.push(a);
        self
    }

    /// The whole frame. Fails if a name or the message is too long for ubus
    /// (ubusd would drop the connection).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out, |_| Ok(()))?;
        Ok(out)
    }

    /// Appends to `out` the frame of this message with one more attribute
    /// last: a DATA table whose contents `write` writes as it walks them,
    /// into the frame ([`BlobSink::fields`]: `write` writes one object).
    /// The same bytes as [`Msg::encode`] with [`Attr::Data`] pushed last,
    /// without a tree of the data. On an error (a name or the message too
    /// long for ubus, not an object) `out` is left as it was.
    pub fn encode_with_data(
        &self,
        out: &mut Vec<u8>,
        write: impl FnOnce(&mut dyn Sink),
    ) -> Result<(), EncodeError> {
        let start = out.len();
        let r = self.encode_into(out, |out| {
            let at = begin_attr(out);
            let mut sink = BlobSink::fields(out).with_limit(start + HEADER_LEN, UBUS_MAX_MSGLEN);
            write(&mut sink);
            sink.finish()?;
            end_attr(out, at, attr::DATA, false)
        });
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Appends the frame to `out`: the header, the attributes, what `last`
    /// appends, with the message's length checked after each.
    fn encode_into(
        &self,
        out: &mut Vec<u8>,
        last: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        out.push(0);
        out.push(u8::from(self.msg_type));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.peer.to_be_bytes());
        let at = begin_attr(out);
        let check = |out: &Vec<u8>| match out.len() - at {
            n if n > UBUS_MAX_MSGLEN => Err(EncodeError::TooLong(n)),
            _ => Ok(()),
        };
        for a in &self.attrs {
            a.encode(out)?;
            check(out)?;
        }
        last(out)?;
        check(out)?;
        end_attr(out, at, 0, false)
    }

    /// Decodes exactly one frame.
    pub fn decode(frame: &[u8]) -> Result<Msg, DecodeError> {
        if frame.len() < MIN_FRAME_LEN {
            return Err(DecodeError::Short(frame.len()));
        }
        let h = Header::peek(frame).ok_or(DecodeError::Short(frame.len()))?;
        if h.version != 0 {
            return Err(DecodeError::Version(h.version));
        }
        let msg_type = match MsgType::from(h.msg_type) {
            MsgType::Unknown(t) => return Err(DecodeError::UnknownType(t)),
            t => t,
        };
        let top = parse_attrs(&frame[HEADER_LEN..]).map_err(|_| DecodeError::Length {
            expected: frame_len(&frame[HEADER_LEN..]).unwrap_or(0),
            actual: frame.len(),
        })?;
        let [top] = top.as_slice() else {
            return Err(DecodeError::Length {
                expected: frame_len(&frame[HEADER_LEN..]).unwrap_or(0),
                actual: frame.len(),
            });
        };
        if top.id != 0 || top.extended {
            return Err(DecodeError::TopLevel);
        }
        let raw = parse_attrs(top.payload).map_err(DecodeError::Attrs)?;
        let attrs = if msg_type == MsgType::Monitor {
            raw.into_iter()
                .map(|a| {
                    if a.extended {
                        Err(DecodeError::Attr {
                            id: a.id,
                            reason: "extended (blobmsg) header",
                        })
                    } else {
                        Ok(Attr::Raw {
                            id: a.id,
                            data: a.payload.to_vec(),
                        })
                    }
                })
                .collect::<Result<_, _>>()?
        } else {
            raw.into_iter()
                .map(Attr::decode)
                .collect::<Result<_, _>>()?
        };
        Ok(Msg {
            msg_type,
            seq: h.seq,
            peer: h.peer,
            attrs,
        })
    }

    pub fn status(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            Attr::Status(s) => Some(*s),
            _ => None,
        })
    }

    pub fn objid(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            Attr::ObjId(s) => Some(*s),
            _ => None,
        })
    }

    pub fn method(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match a {
            Attr::Method(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn data(&self) -> Option<&[Field]> {
        self.attrs.iter().find_map(|a| match a {
            Attr::Data(f) => Some(f.as_slice()),
            _ => None,
        })
    }

    pub fn active(&self) -> Option<bool> {
        self.attrs.iter().find_map(|a| match a {
            Attr::Active(b) => Some(*b),
            _ => None,
        })
    }

    pub fn no_reply(&self) -> bool {
        self.attrs.iter().any(|a| matches!(a, Attr::NoReply(true)))
    }
}

/// The frame length announced by the top-level attribute header at the start
/// of `blob` (the bytes after the ubus header).
fn frame_len(blob: &[u8]) -> Option<usize> {
    let h = blob.get(..ATTR_HEADER_LEN)?;
    let len = (u32::from_be_bytes([h[0], h[1], h[2], h[3]]) & LEN_MASK) as usize;
    Some(HEADER_LEN + pad4(len))
}

/// Why a byte stream cannot be cut into frames. The stream is lost: the
/// connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A header with a version other than 0: not ubus, or out of step.
    Version(u8),
    /// A top-level attribute length below its own header.
    BadLength(usize),
    /// A message longer than the limit.
    TooLong { len: usize, max: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Version(v) => write!(f, "garbage on the ubus socket (version byte {v})"),
            FrameError::BadLength(n) => {
                write!(f, "garbage on the ubus socket (message length {n})")
            }
            FrameError::TooLong { len, max } => {
                write!(
                    f,
                    "ubus message of {len} bytes exceeds the {max}-byte limit"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Cuts a byte stream, read in arbitrary pieces, into whole frames.
#[derive(Debug, Clone)]
pub struct FrameSplitter {
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` start.
    start: usize,
    max: usize,
    failed: Option<FrameError>,
}

impl Default for FrameSplitter {
    fn default() -> Self {
        FrameSplitter::new()
    }
}

impl FrameSplitter {
    /// With ubusd's limit, [`UBUS_MAX_MSGLEN`].
    pub fn new() -> FrameSplitter {
        FrameSplitter::with_max(UBUS_MAX_MSGLEN)
    }

    /// With another limit on the padded top-level attribute.
    pub fn with_max(max: usize) -> FrameSplitter {
        FrameSplitter {
            buf: Vec::new(),
            start: 0,
            max,
            failed: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next whole frame, `None` until one has arrived. After an error
    /// the same error is returned for ever.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let data = &self.buf[self.start..];
        let Some(h) = Header::peek(data) else {
            return Ok(None);
        };
        if h.version != 0 {
            return Err(self.fail(FrameError::Version(h.version)));
        }
        let Some(blob) = data.get(HEADER_LEN..MIN_FRAME_LEN) else {
            return Ok(None);
        };
        let len = (u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) & LEN_MASK) as usize;
        if len < ATTR_HEADER_LEN {
            return Err(self.fail(FrameError::BadLength(len)));
        }
        if pad4(len) > self.max {
            return Err(self.fail(FrameError::TooLong {
                len: pad4(len),
                max: self.max,
            }));
        }
        let total = HEADER_LEN + pad4(len);
        if data.len() < total {
            return Ok(None);
        }
        let frame = data[..total].to_vec();
        self.start += total;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 65536 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(frame))
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.start = 0;
        e
    }

    /// Bytes received and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Forgets everything (a new connection).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.failed = None;
    }
}
