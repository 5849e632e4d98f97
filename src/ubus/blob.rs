//! libubox's `blob_attr` and `blobmsg` encodings, and their conversion to
//! and from [`Json`].
//!
//! A blob attribute is a big-endian `u32` header — bit 31 "extended"
//! (blobmsg), bits 24–30 the id (or blobmsg type), bits 0–23 the length
//! including the 4-byte header but not the trailing padding — then the
//! payload, padded with zeros to a multiple of 4. A container's length
//! includes its children's padding. A blobmsg attribute (extended) starts its
//! payload with `u16 namelen`, the name and a NUL, padded to 4 bytes from
//! the start of the payload; the value follows.
//!
//! JSON mapping, as libubox's `blobmsg_json.c` does it: an integer is INT32
//! when it fits in an `i32`, INT64 otherwise; a boolean is BOOL (INT8, one
//! byte); a float is DOUBLE; `null` is UNSPEC with no payload. Back to JSON:
//! INT8 is a boolean, INT16/32/64 are signed integers, UNSPEC is `null`.
//!
//! A JSON document can also be written as blobmsg as it is walked, without
//! a [`Json`] tree or a [`Value`] tree: [`BlobSink`].

use std::fmt;

use crate::json::{Json, Scalar, Sink};

/// Bit 31 of the header: a blobmsg attribute (name + typed value).
pub const EXTENDED: u32 = 0x8000_0000;
const ID_SHIFT: u32 = 24;
const ID_MASK: u32 = 0x7f;
/// Bits 0–23 of the header: the length.
pub const LEN_MASK: u32 = 0x00ff_ffff;
/// The header of one attribute.
pub const ATTR_HEADER_LEN: usize = 4;
/// Deepest nesting of tables/arrays the decoder accepts (each level is a
/// recursion; a 1 MiB frame could otherwise nest 100,000 levels).
pub const MAX_DEPTH: usize = 32;

mesh_core::enum_with_unknown! {
    /// blobmsg types (`enum blobmsg_type`): the type of a field, and the type
    /// a ubus signature declares an argument with (see
    /// [`ArgType`](super::ArgType)). A field of an `Unknown` type does not
    /// decode.
    pub enum BlobmsgType(u8) {
        /// No value, JSON `null`; as a declared argument type, anything.
        Unspec = 0,
        Array = 1,
        Table = 2,
        String = 3,
        Int64 = 4,
        Int32 = 5,
        Int16 = 6,
        /// INT8, which blobmsg also calls BOOL: one byte, a JSON boolean.
        Bool = 7,
        Double = 8,
    }
}

/// Rounds up to the 4-byte blob alignment.
pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Why bytes are not a valid blob/blobmsg encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// Fewer bytes left than an attribute header, or than its length says.
    Truncated,
    /// A length field below the 4-byte header.
    BadLength(usize),
    /// An attribute whose padding runs past the end of its container.
    MissingPadding,
    /// A plain attribute where a blobmsg (extended) one is required.
    NotExtended,
    /// A blobmsg name longer than its attribute, or not NUL-terminated.
    BadName,
    /// A name or string that is not UTF-8.
    BadUtf8,
    /// A STRING without its terminating NUL.
    StringNotTerminated,
    /// A fixed-size value (INT8/16/32/64, DOUBLE) of the wrong size.
    BadSize { kind: u8, len: usize },
    /// A blobmsg type above DOUBLE.
    UnknownType(u8),
    /// Tables/arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobError::Truncated => write!(f, "truncated attribute"),
            BlobError::BadLength(n) => write!(f, "attribute length {n} below its header"),
            BlobError::MissingPadding => write!(f, "attribute padding past its container"),
            BlobError::NotExtended => write!(f, "plain attribute inside a blobmsg container"),
            BlobError::BadName => write!(f, "bad blobmsg name"),
            BlobError::BadUtf8 => write!(f, "name or string is not UTF-8"),
            BlobError::StringNotTerminated => write!(f, "string without its NUL"),
            BlobError::BadSize { kind, len } => write!(f, "blobmsg type {kind} with {len} bytes"),
            BlobError::UnknownType(t) => write!(f, "unknown blobmsg type {t}"),
            BlobError::TooDeep => write!(f, "nested deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl std::error::Error for BlobError {}

/// Why a value cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// An attribute longer than the 24-bit length field, or a message longer
    /// than `UBUS_MAX_MSGLEN`.
    TooLong(usize),
    /// A blobmsg name longer than 65535 bytes.
    NameTooLong(usize),
    /// What [`BlobSink::fields`] was given is not one object (a scalar or
    /// an array, or a second value after the object).
    NotAnObject,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLong(n) => write!(f, "{n} bytes: too long for ubus"),
            EncodeError::NameTooLong(n) => write!(f, "blobmsg name of {n} bytes"),
            EncodeError::NotAnObject => write!(f, "the data is not an object"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// One attribute as found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    pub id: u8,
    pub extended: bool,
    /// The bytes after the header, without the padding.
    pub payload: &'a [u8],
}

/// Splits a container's payload into its attributes, which must tile it
/// exactly (each one padded to 4 bytes).
pub fn parse_attrs(mut data: &[u8]) -> Result<Vec<RawAttr<'_>>, BlobError> {
    let mut attrs = Vec::new();
    while !data.is_empty() {
        let Some(hdr) = data.get(..ATTR_HEADER_LEN) else {
            return Err(BlobError::Truncated);
        };
        let hdr = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let len = (hdr & LEN_MASK) as usize;
        if len < ATTR_HEADER_LEN {
            return Err(BlobError::BadLength(len));
        }
        let payload = data.get(ATTR_HEADER_LEN..len).ok_or(BlobError::Truncated)?;
        let padded = pad4(len);
        if padded > data.len() {
            return Err(BlobError::MissingPadding);
        }
        attrs.push(RawAttr {
            id: ((hdr >> ID_SHIFT) & ID_MASK) as u8,
            extended: hdr & EXTENDED != 0,
            payload,
        });
        data = &data[padded..];
    }
    Ok(attrs)
}

/// Starts an attribute: reserves its header. Returns where it starts.
pub fn begin_attr(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; ATTR_HEADER_LEN]);
    at
}

/// Ends the attribute begun at `at`: writes its header, pads it.
pub fn end_attr(out: &mut Vec<u8>, at: usize, id: u8, extended: bool) -> Result<(), EncodeError> {
    let len = out.len() - at;
    if len > LEN_MASK as usize {
        return Err(EncodeError::TooLong(len));
    }
    let mut hdr = (u32::from(id) & ID_MASK) << ID_SHIFT | len as u32;
    if extended {
        hdr |= EXTENDED;
    }
    out[at..at + ATTR_HEADER_LEN].copy_from_slice(&hdr.to_be_bytes());
    pad_from(out, at);
    Ok(())
}

/// Pads `out` with zeros to a multiple of 4 bytes counted from `at`.
fn pad_from(out: &mut Vec<u8>, at: usize) {
    let len = out.len() - at;
    out.resize(at + pad4(len), 0);
}

/// A plain (non-blobmsg) attribute with the given payload.
pub fn put_attr(out: &mut Vec<u8>, id: u8, payload: &[u8]) -> Result<(), EncodeError> {
    let at = begin_attr(out);
    out.extend_from_slice(payload);
    end_attr(out, at, id, false)
}

/// A blobmsg value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// UNSPEC (0): libubox's `null`, with whatever payload it carried.
    Unspec(Vec<u8>),
    /// ARRAY (1): the elements' names are normally empty.
    Array(Vec<Field>),
    /// TABLE (2).
    Table(Vec<Field>),
    /// STRING (3), without its NUL.
    String(String),
    Int64(i64),
    Int32(i32),
    Int16(i16),
    /// INT8 / BOOL (7).
    Int8(u8),
    Double(f64),
}

impl Value {
    /// The blobmsg type id.
    pub fn type_id(&self) -> u8 {
        u8::from(match self {
            Value::Unspec(_) => BlobmsgType::Unspec,
            Value::Array(_) => BlobmsgType::Array,
            Value::Table(_) => BlobmsgType::Table,
            Value::String(_) => BlobmsgType::String,
            Value::Int64(_) => BlobmsgType::Int64,
            Value::Int32(_) => BlobmsgType::Int32,
            Value::Int16(_) => BlobmsgType::Int16,
            Value::Int8(_) => BlobmsgType::Bool,
            Value::Double(_) => BlobmsgType::Double,
        })
    }
}

/// A named blobmsg attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub value: Value,
}

impl Field {
    pub fn new(name: impl Into<String>, value: Value) -> Field {
        Field {
            name: name.into(),
            value,
        }
    }
}

/// Decodes the blobmsg attributes that tile `data` (a table's or array's
/// contents, or the payload of ubus's DATA and SIGNATURE attributes).
pub fn decode_fields(data: &[u8]) -> Result<Vec<Field>, BlobError> {
    decode_fields_at(data, 0)
}

fn decode_fields_at(data: &[u8], depth: usize) -> Result<Vec<Field>, BlobError> {
    if depth > MAX_DEPTH {
        return Err(BlobError::TooDeep);
    }
    parse_attrs(data)?
        .into_iter()
        .map(|a| decode_field(a, depth))
        .collect()
}

fn decode_field(attr: RawAttr<'_>, depth: usize) -> Result<Field, BlobError> {
    if !attr.extended {
        return Err(BlobError::NotExtended);
    }
    let p = attr.payload;
    let namelen = match p.get(..2) {
        Some(n) => usize::from(u16::from_be_bytes([n[0], n[1]])),
        None => return Err(BlobError::BadName),
    };
    let hdrlen = pad4(2 + namelen + 1);
    if p.len() < hdrlen || p[2 + namelen] != 0 {
        return Err(BlobError::BadName);
    }
    let name = std::str::from_utf8(&p[2..2 + namelen]).map_err(|_| BlobError::BadUtf8)?;
    let data = &p[hdrlen..];
    let kind = attr.id;
    let fixed = |n: usize| -> Result<&[u8], BlobError> {
        if data.len() == n {
            Ok(data)
        } else {
            Err(BlobError::BadSize {
                kind,
                len: data.len(),
            })
        }
    };
    let value = match BlobmsgType::from(kind) {
        BlobmsgType::Unspec => Value::Unspec(data.to_vec()),
        BlobmsgType::Array => Value::Array(decode_fields_at(data, depth + 1)?),
        BlobmsgType::Table => Value::Table(decode_fields_at(data, depth + 1)?),
        BlobmsgType::String => match data.split_last() {
            Some((0, s)) => {
                Value::String(String::from_utf8(s.to_vec()).map_err(|_| BlobError::BadUtf8)?)
            }
            _ => return Err(BlobError::StringNotTerminated),
        },
        BlobmsgType::Int64 => Value::Int64(i64::from_be_bytes(array(fixed(8)?))),
        BlobmsgType::Int32 => Value::Int32(i32::from_be_bytes(array(fixed(4)?))),
        BlobmsgType::Int16 => Value::Int16(i16::from_be_bytes(array(fixed(2)?))),
        BlobmsgType::Bool => Value::Int8(fixed(1)?[0]),
        BlobmsgType::Double => Value::Double(f64::from_bits(u64::from_be_bytes(array(fixed(8)?)))),
        BlobmsgType::Unknown(t) => return Err(BlobError::UnknownType(t)),
    };
    Ok(Field::new(name, value))
}

/// A slice of checked length as an array.
fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&s[..N]);
    a
}

/// Encodes blobmsg attributes one after the other.
pub fn encode_fields(out: &mut Vec<u8>, fields: &[Field]) -> Result<(), EncodeError> {
    fields.iter().try_for_each(|f| encode_field(out, f))
}

/// Encodes one blobmsg attribute.
pub fn encode_field(out: &mut Vec<u8>, field: &Field) -> Result<(), EncodeError> {
    let name = field.name.as_bytes();
    let namelen = u16::try_from(name.len()).map_err(|_| EncodeError::NameTooLong(name.len()))?;
    let at = begin_attr(out);
    out.extend_from_slice(&namelen.to_be_bytes());
    out.extend_from_slice(name);
    out.push(0);
    pad_from(out, at + ATTR_HEADER_LEN);
    match &field.value {
        Value::Unspec(data) => out.extend_from_slice(data),
        Value::Array(fields) | Value::Table(fields) => encode_fields(out, fields)?,
        Value::String(s) => {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        Value::Int64(i) => out.extend_from_slice(&i.to_be_bytes()),
        Value::Int32(i) => out.extend_from_slice(&i.to_be_bytes()),
        Value::Int16(i) => out.extend_from_slice(&i.to_be_bytes()),
        Value::Int8(i) => out.push(*i),
        Value::Double(d) => out.extend_from_slice(&d.to_bits().to_be_bytes()),
    }
    end_attr(out, at, field.value.type_id(), true)
}

/// The blobmsg value of a JSON value (`blobmsg_add_json_element`).
pub fn value_from_json(j: &Json) -> Value {
    match j {
        Json::Null => Value::Unspec(Vec::new()),
        Json::Bool(b) => Value::Int8(u8::from(*b)),
        Json::Int(i) => match i32::try_from(*i) {
            Ok(i) => Value::Int32(i),
            Err(_) => Value::Int64(*i),
        },
        Json::Float(f) => Value::Double(*f),
        Json::Str(s) => Value::String(s.clone()),
        Json::Arr(items) => Value::Array(
            items
                .iter()
                .map(|v| Field::new("", value_from_json(v)))
                .collect(),
        ),
        Json::Obj(fields) => Value::Table(fields_from_json(fields)),
    }
}

/// A JSON object's members as the contents of a blobmsg table.
pub fn fields_from_json(fields: &[(String, Json)]) -> Vec<Field> {
    fields
        .iter()
        .map(|(k, v)| Field::new(k.clone(), value_from_json(v)))
        .collect()
}

/// The JSON value of a blobmsg value (`blobmsg_format_json`).
pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Unspec(_) => Json::Null,
        Value::Array(items) => Json::Arr(items.iter().map(|f| value_to_json(&f.value)).collect()),
        Value::Table(fields) => fields_to_json(fields),
        Value::String(s) => Json::Str(s.clone()),
        Value::Int64(i) => Json::Int(*i),
        Value::Int32(i) => Json::Int(i64::from(*i)),
        Value::Int16(i) => Json::Int(i64::from(*i)),
        Value::Int8(b) => Json::Bool(*b != 0),
        Value::Double(d) => Json::Float(*d),
    }
}

/// A blobmsg table's contents as a JSON object.
pub fn fields_to_json(fields: &[Field]) -> Json {
    Json::Obj(
        fields
            .iter()
            .map(|f| (f.name.clone(), value_to_json(&f.value)))
            .collect(),
    )
}

/// Writes a document as blobmsg attributes into a buffer as it is walked
/// (a [`Sink`]), byte for byte what [`encode_field`] writes of
/// [`value_from_json`] of the same document as a tree: a boolean is BOOL,
/// an integer INT32 when it fits in an `i32` and INT64 otherwise, a float
/// DOUBLE, `null` UNSPEC without payload, a string ([`Scalar::Str`], and
/// [`Scalar::Show`] formatted straight into the buffer) STRING with its NUL;
/// an object is a TABLE, an array an ARRAY whose items have empty names.
///
/// Two ways to start:
/// - [`BlobSink::new`]: every value written at the top is one attribute,
///   named by its key (empty without one), as [`encode_fields`] writes a
///   list of fields;
/// - [`BlobSink::fields`]: the top value is the table that holds the
///   attributes (ubus's DATA attribute): it must be one object, whose own
///   `open` and `close` write nothing; its fields are the attributes.
///
/// Errors (a name over 65535 bytes, an attribute over the 24-bit length,
/// the limit of [`BlobSink::with_limit`], [`EncodeError::NotAnObject`]) do
/// not panic: the first one is kept, everything after it is ignored, and
/// [`BlobSink::finish`] returns it. The buffer then holds a partial
/// encoding: the caller cuts it back to where it was.
pub struct BlobSink<'o> {
    out: &'o mut Vec<u8>,
    /// The open tables and arrays: where each attribute starts, its type.
    open: Vec<(usize, u8)>,
    top: Top,
    /// [`BlobSink::with_limit`]: the bytes counted start at `from`, and at
    /// most `max` of them.
    from: usize,
    max: usize,
    error: Option<EncodeError>,
}

/// A `fmt::Write` that appends to a buffer.
struct Bytes<'o>(&'o mut Vec<u8>);

impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Where a [`BlobSink`] is at the top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Top {
    /// [`BlobSink::new`]: top-level values are attributes.
    Attrs,
    /// [`BlobSink::fields`], before the object.
    Before,
    /// [`BlobSink::fields`], inside the object.
    Inside,
    /// [`BlobSink::fields`], after the object.
    After,
}

impl<'o> BlobSink<'o> {
    /// Each value written at the top level is one attribute, appended to
    /// `out`.
    pub fn new(out: &'o mut Vec<u8>) -> BlobSink<'o> {
        BlobSink::with_top(out, Top::Attrs)
    }

    /// The value written is one object, the table whose contents are
    /// appended to `out` (its fields, as attributes): write it with
    /// [`crate::json::object`] or a [`Json::Obj`]'s `emit(None, ..)`.
    /// Nothing written is an empty table.
    pub fn fields(out: &'o mut Vec<u8>) -> BlobSink<'o> {
        BlobSink::with_top(out, Top::Before)
    }

    fn with_top(out: &'o mut Vec<u8>, top: Top) -> BlobSink<'o> {
        BlobSink {
            out,
            open: Vec::new(),
            top,
            from: 0,
            max: usize::MAX,
            error: None,
        }
    }

    /// Fails with [`EncodeError::TooLong`]`(n)` when the buffer would hold
    /// more than `max` bytes from offset `from` on (`n` of them), before
    /// writing them (after, for a [`Scalar::Show`], whose length is not
    /// known before).
    pub fn with_limit(mut self, from: usize, max: usize) -> BlobSink<'o> {
        self.from = from;
        self.max = max;
        self
    }

    /// Ends the writing: closes what is still open, and returns the first
    /// error.
    pub fn finish(mut self) -> Result<(), EncodeError> {
        while self.error.is_none() {
            let Some((at, kind)) = self.open.pop() else {
                break;
            };
            self.end(at, kind);
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: EncodeError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Whether the buffer can take `more` bytes.
    fn fits(&mut self, more: usize) -> bool {
        let n = (self.out.len() + more).saturating_sub(self.from);
        if n > self.max {
            self.fail(EncodeError::TooLong(n));
            return false;
        }
        true
    }

    /// Where the next value goes: `Some(name)` for an attribute (empty in
    /// an array), `None` for nothing (the top object of
    /// [`BlobSink::fields`], or an error).
    fn place<'k>(&mut self, key: Option<&'k str>, object: bool) -> Option<&'k str> {
        if self.error.is_some() {
            return None;
        }
        match self.open.last() {
            Some(&(_, kind)) if kind == u8::from(BlobmsgType::Array) => Some(""),
            Some(_) => Some(key.unwrap_or("")),
            None => match self.top {
                Top::Attrs | Top::Inside => Some(key.unwrap_or("")),
                Top::Before if object => {
                    self.top = Top::Inside;
                    None
                }
                Top::Before | Top::After => {
                    self.fail(EncodeError::NotAnObject);
                    None
                }
            },
        }
    }

    /// Starts an attribute of `payload` bytes (0 if not known yet) named
    /// `name`: its header and its name. Returns where it starts.
    fn begin(&mut self, name: &str, payload: usize) -> Option<usize> {
        let Ok(namelen) = u16::try_from(name.len()) else {
            self.fail(EncodeError::NameTooLong(name.len()));
            return None;
        };
        let hdrlen = ATTR_HEADER_LEN + pad4(2 + name.len() + 1);
        if !self.fits(hdrlen + pad4(payload)) {
            return None;
        }
        let at = begin_attr(self.out);
        self.out.extend_from_slice(&namelen.to_be_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad_from(self.out, at + ATTR_HEADER_LEN);
        Some(at)
    }

    /// Ends the attribute begun at `at`.
    fn end(&mut self, at: usize, kind: u8) {
        if let Err(e) = end_attr(self.out, at, kind, true) {
            self.fail(e);
        } else {
            self.fits(0);
        }
    }
}

impl Sink for BlobSink<'_> {
    fn open(&mut self, key: Option<&str>, array: bool) {
        let Some(name) = self.place(key, !array) else {
            return;
        };
        if let Some(at) = self.begin(name, 0) {
            let kind = if array {
                BlobmsgType::Array
            } else {
                BlobmsgType::Table
            };
            self.open.push((at, u8::from(kind)));
        }
    }

    fn close(&mut self) {
        if self.error.is_some() {
            return;
        }
        match self.open.pop() {
            Some((at, kind)) => self.end(at, kind),
            None if self.top == Top::Inside => self.top = Top::After,
            // A close without its open: nothing to end.
            None => {}
        }
    }

    fn scalar(&mut self, key: Option<&str>, value: Scalar<'_>) {
        let Some(name) = self.place(key, false) else {
            return;
        };
        let (kind, payload) = match value {
            Scalar::Null => (BlobmsgType::Unspec, 0),
            Scalar::Bool(_) => (BlobmsgType::Bool, 1),
            Scalar::Int(i) if i32::try_from(i).is_ok() => (BlobmsgType::Int32, 4),
            Scalar::Int(_) => (BlobmsgType::Int64, 8),
            Scalar::Float(_) => (BlobmsgType::Double, 8),
            Scalar::Str(s) => (BlobmsgType::String, s.len() + 1),
            Scalar::Show(_) => (BlobmsgType::String, 1),
        };
        let Some(at) = self.begin(name, payload) else {
            return;
        };
        let out = &mut *self.out;
        match value {
            Scalar::Null => {}
            Scalar::Bool(b) => out.push(u8::from(b)),
            Scalar::Int(i) => match i32::try_from(i) {
                Ok(i) => out.extend_from_slice(&i.to_be_bytes()),
                Err(_) => out.extend_from_slice(&i.to_be_bytes()),
            },
            Scalar::Float(f) => out.extend_from_slice(&f.to_bits().to_be_bytes()),
            Scalar::Str(s) => {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            Scalar::Show(d) => {
                // A `Display` that fails leaves what it wrote, as in
                // `json::Text` (`io::Write::write_fmt` would panic).
                let _ = fmt::write(&mut Bytes(out), format_args!("{d}"));
                out.push(0);
            }
        }
        self.end(at, u8::from(kind));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn string_and_int32_fields_as_libubox_writes_them() {
        // From conn06's INVOKE DATA: {"msg":"hi","n":7}.
        let bytes = hex("8300000f00036d7367000000686900008500000c00016e0000000007");
        let fields = decode_fields(&bytes).unwrap();
        assert_eq!(
            fields,
            vec![
                Field::new("msg", Value::String("hi".into())),
                Field::new("n", Value::Int32(7)),
            ]
        );
        let mut out = Vec::new();
        encode_fields(&mut out, &fields).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(
            fields_to_json(&fields),
            Json::obj().with("msg", "hi").with("n", 7u32)
        );
    }

    #[test]
    fn json_integers_are_int32_when_they_fit() {
        assert_eq!(
            value_from_json(&Json::Int(-2_147_483_648)),
            Value::Int32(i32::MIN)
        );
        assert_eq!(
            value_from_json(&Json::Int(2_147_483_648)),
            Value::Int64(1 << 31)
        );
        assert_eq!(value_from_json(&Json::Bool(true)), Value::Int8(1));
        assert_eq!(value_from_json(&Json::Null), Value::Unspec(vec![]));
    }

    #[test]
    fn malformed_fields_are_errors() {
        // Not extended.
        assert_eq!(
            decode_fields(&hex("05000008000000ff")),
            Err(BlobError::NotExtended)
        );
        // Length below the header.
        assert_eq!(
            decode_fields(&hex("85000003")),
            Err(BlobError::BadLength(3))
        );
        // Length past the end.
        assert_eq!(
            decode_fields(&hex("85000010000000")),
            Err(BlobError::Truncated)
        );
        // INT32 with 2 bytes.
        assert_eq!(
            decode_fields(&hex("8500000a00016e000007")),
            Err(BlobError::MissingPadding)
        );
        assert_eq!(
            decode_fields(&hex("8500000a00016e0000070000")),
            Err(BlobError::BadSize { kind: 5, len: 2 })
        );
        // STRING without NUL.
        assert_eq!(
            decode_fields(&hex("8300000a00016e0068690000")),
            Err(BlobError::StringNotTerminated)
        );
        // Name not NUL-terminated.
        assert_eq!(
            decode_fields(&hex("8500000c00016e0100000007")),
            Err(BlobError::BadName)
        );
        // Type 9.
        assert_eq!(
            decode_fields(&hex("8900000800016e00")),
            Err(BlobError::UnknownType(9))
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut v = Value::Table(vec![]);
        for _ in 0..MAX_DEPTH + 1 {
            v = Value::Table(vec![Field::new("", v)]);
        }
        let mut out = Vec::new();
        encode_field(&mut out, &Field::new("", v)).unwrap();
        assert_eq!(decode_fields(&out), Err(BlobError::TooDeep));
    }
}
