//! JSON for `meshd status --json` and the ubus object (as blobmsg).
//!
//! Two ways to write a document. A [`Json`] value is a tree: small answers
//! (an invite, an event) are built as one. The status document is not: it
//! lists every route with every alternative path, thousands of fields with
//! 16 members, and a tree of it costs half a MiB of small allocations on the
//! packet loop, which glibc keeps in the loop's arena once freed. It is
//! written instead as it is walked, field by field, into a [`Sink`]: JSON
//! text ([`Text`]), blobmsg straight into a ubus frame, or a tree
//! ([`Tree`], for tests and small parts).

use std::fmt::{self, Write};

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    /// Keys keep their insertion order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn obj() -> Json {
        Json::Obj(Vec::new())
    }

    /// Adds a field to an object (no-op on other values).
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Json {
        if let Json::Obj(fields) = &mut self {
            fields.push((key.to_string(), value.into()));
        }
        self
    }

    pub fn push(&mut self, key: &str, value: impl Into<Json>) {
        if let Json::Obj(fields) = self {
            fields.push((key.to_string(), value.into()));
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_array(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    /// Indented output for humans.
    pub fn pretty(&self) -> String {
        let mut s = String::new();
        self.emit(None, &mut Text::new(&mut s, true));
        s
    }
}

fn write_string(out: &mut String, s: &str) -> fmt::Result {
    out.push('"');
    escape_into(out, s)?;
    out.push('"');
    Ok(())
}

fn escape_into(out: &mut String, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.push(c),
        }
    }
    Ok(())
}

impl fmt::Display for Json {
    /// Compact output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.emit(None, &mut Text::new(&mut s, false));
        f.write_str(&s)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}
impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_string())
    }
}
impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}
impl From<Vec<Json>> for Json {
    fn from(v: Vec<Json>) -> Json {
        Json::Arr(v)
    }
}
impl From<f64> for Json {
    fn from(f: f64) -> Json {
        Json::Float(f)
    }
}
macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Json {
            fn from(i: $t) -> Json {
                Json::Int(i64::try_from(i).unwrap_or(i64::MAX))
            }
        }
    )*};
}
from_int!(u8, u16, u32, u64, usize, i32, i64);
impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(o: Option<T>) -> Json {
        o.map_or(Json::Null, Into::into)
    }
}

/// One scalar, borrowed: what a [`Sink`] is handed.
#[derive(Clone, Copy)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// Written as `null` when not finite (JSON has no NaN).
    Float(f64),
    Str(&'a str),
    /// A string written from its `Display` (an address, a key) without
    /// allocating it first.
    Show(&'a dyn fmt::Display),
}

/// Where a document is written, event by event. `key` is the field's name
/// inside an object and `None` inside an array (or for the top value).
/// Every [`Sink::open`] is matched by one [`Sink::close`].
pub trait Sink {
    fn open(&mut self, key: Option<&str>, array: bool);
    fn close(&mut self);
    fn scalar(&mut self, key: Option<&str>, value: Scalar<'_>);
}

/// Something a document can hold: a scalar, an `Option` of one (`None` is
/// `null`), or a whole [`Json`] tree.
pub trait Value {
    fn emit(&self, key: Option<&str>, sink: &mut dyn Sink);
}

impl<T: Value + ?Sized> Value for &T {
    fn emit(&self, key: Option<&str>, sink: &mut dyn Sink) {
        (**self).emit(key, sink)
    }
}
impl<T: Value> Value for Option<T> {
    fn emit(&self, key: Option<&str>, sink: &mut dyn Sink) {
        match self {
            Some(v) => v.emit(key, sink),
            None => sink.scalar(key, Scalar::Null),
        }
    }
}
impl Value for bool {
    fn emit(&self, key: Option<&str>, sink: &mut dyn Sink) {
        sink.scalar(key, Scalar::Bool(*self))
    }
}
impl Value for f64 {
    fn emit(&self, key: Option<&str>, sink: &mut dyn Sink) {
        sink.scalar(key, Scalar::Float(*self))
    }
}
impl Value for str {
    fn emit(&self, key: Option<&str>, sink: &mut dyn Sink) {
        sink.scalar(key, Scalar::Str(self))
    }
}
impl Value for String {
    fn emit(&self, key: Option<&str>, sink: &mut dyn Sink) {
        sink.scalar(key, Scalar::Str(self))
    }
}
macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn emit(&self, key: Option<&str>, sink: &mut dyn Sink) {
                sink.scalar(key, Scalar::Int(i64::try_from(*self).unwrap_or(i64::MAX)))
            }
        }
    )*};
}
int_value!(u8, u16, u32, u64, usize, i32, i64);

/// A value written as the string its `Display` gives (`Show(&addr)`).
pub struct Show<T: fmt::Display>(pub T);

impl<T: fmt::Display> Value for Show<T> {
    fn emit(&self, key: Option<&str>, sink: &mut dyn Sink) {
        sink.scalar(key, Scalar::Show(&self.0))
    }
}

impl Value for Json {
    fn emit(&self, key: Option<&str>, sink: &mut dyn Sink) {
        match self {
            Json::Null => sink.scalar(key, Scalar::Null),
            Json::Bool(b) => sink.scalar(key, Scalar::Bool(*b)),
            Json::Int(i) => sink.scalar(key, Scalar::Int(*i)),
            Json::Float(f) => sink.scalar(key, Scalar::Float(*f)),
            Json::Str(s) => sink.scalar(key, Scalar::Str(s)),
            Json::Arr(items) => {
                sink.open(key, true);
                for v in items {
                    v.emit(None, sink);
                }
                sink.close();
            }
            Json::Obj(fields) => {
                sink.open(key, false);
                for (k, v) in fields {
                    v.emit(Some(k), sink);
                }
                sink.close();
            }
        }
    }
}

/// Writes the fields of an object (see [`object`]).
pub struct Obj<'s> {
    sink: &'s mut dyn Sink,
}

/// Writes the items of an array.
pub struct Arr<'s> {
    sink: &'s mut dyn Sink,
}

/// Writes one object into `sink`: what `body` puts in it.
pub fn object(sink: &mut dyn Sink, body: impl FnOnce(&mut Obj<'_>)) {
    sink.open(None, false);
    body(&mut Obj { sink: &mut *sink });
    sink.close();
}

impl Obj<'_> {
    /// A field.
    pub fn f(&mut self, key: &str, value: impl Value) -> &mut Self {
        value.emit(Some(key), self.sink);
        self
    }

    /// A field holding an object.
    pub fn obj(&mut self, key: &str, body: impl FnOnce(&mut Obj<'_>)) -> &mut Self {
        self.sink.open(Some(key), false);
        body(&mut Obj {
            sink: &mut *self.sink,
        });
        self.sink.close();
        self
    }

    /// A field holding an object when `value` is `Some`, `null` otherwise.
    pub fn opt_obj<T>(
        &mut self,
        key: &str,
        value: Option<T>,
        body: impl FnOnce(&mut Obj<'_>, T),
    ) -> &mut Self {
        match value {
            Some(v) => self.obj(key, |o| body(o, v)),
            None => self.f(key, Json::Null),
        }
    }

    /// A field holding an array.
    pub fn arr(&mut self, key: &str, body: impl FnOnce(&mut Arr<'_>)) -> &mut Self {
        self.sink.open(Some(key), true);
        body(&mut Arr {
            sink: &mut *self.sink,
        });
        self.sink.close();
        self
    }

    /// A field holding an array of `items`.
    pub fn list<V: Value>(&mut self, key: &str, items: impl IntoIterator<Item = V>) -> &mut Self {
        self.arr(key, |a| {
            for v in items {
                a.v(v);
            }
        })
    }
}

impl Arr<'_> {
    /// An item.
    pub fn v(&mut self, value: impl Value) -> &mut Self {
        value.emit(None, self.sink);
        self
    }

    /// An item that is an object.
    pub fn obj(&mut self, body: impl FnOnce(&mut Obj<'_>)) -> &mut Self {
        self.sink.open(None, false);
        body(&mut Obj {
            sink: &mut *self.sink,
        });
        self.sink.close();
        self
    }
}

/// JSON text, compact or indented as [`Json::pretty`], into a `String`.
pub struct Text<'o> {
    out: &'o mut String,
    pretty: bool,
    /// One entry per open container: whether it has an item yet, and
    /// whether it is an array.
    open: Vec<(bool, bool)>,
}

impl<'o> Text<'o> {
    pub fn new(out: &'o mut String, pretty: bool) -> Text<'o> {
        Text {
            out,
            pretty,
            open: Vec::new(),
        }
    }

    fn newline(&mut self, level: usize) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..level {
                self.out.push_str("  ");
            }
        }
    }

    /// Before an item: the comma, the line, the key.
    fn item(&mut self, key: Option<&str>) {
        let level = self.open.len();
        if let Some((any, array)) = self.open.last_mut() {
            let (was, array) = (*any, *array);
            *any = true;
            if was {
                self.out.push(',');
            }
            self.newline(level);
            if let (Some(k), false) = (key, array) {
                let _ = write_string(self.out, k);
                self.out.push(':');
                if self.pretty {
                    self.out.push(' ');
                }
            }
        }
    }
}

impl Sink for Text<'_> {
    fn open(&mut self, key: Option<&str>, array: bool) {
        self.item(key);
        self.out.push(if array { '[' } else { '{' });
        self.open.push((false, array));
    }

    fn close(&mut self) {
        let Some((any, array)) = self.open.pop() else {
            return;
        };
        if any {
            self.newline(self.open.len());
        }
        self.out.push(if array { ']' } else { '}' });
    }

    fn scalar(&mut self, key: Option<&str>, value: Scalar<'_>) {
        self.item(key);
        let out = &mut *self.out;
        let _ = match value {
            Scalar::Null => {
                out.push_str("null");
                Ok(())
            }
            Scalar::Bool(b) => write!(out, "{b}"),
            Scalar::Int(i) => write!(out, "{i}"),
            Scalar::Float(f) if f.is_finite() => write!(out, "{f}"),
            Scalar::Float(_) => {
                out.push_str("null");
                Ok(())
            }
            Scalar::Str(s) => write_string(out, s),
            Scalar::Show(d) => {
                out.push('"');
                let r = write!(Escaped(out), "{d}");
                out.push('"');
                r
            }
        };
    }
}

/// A `fmt::Write` that escapes what it is given as inside a JSON string.
struct Escaped<'o>(&'o mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s)
    }
}

/// A [`Json`] tree, built from the events.
#[derive(Default)]
pub struct Tree {
    /// The open containers, each with the key it goes under.
    open: Vec<(Option<String>, Json)>,
    done: Option<Json>,
}

impl Tree {
    /// The value written (`Null` if nothing was).
    pub fn into_json(self) -> Json {
        self.done.unwrap_or(Json::Null)
    }

    fn put(&mut self, key: Option<&str>, value: Json) {
        match self.open.last_mut() {
            Some((_, Json::Arr(items))) => items.push(value),
            Some((_, Json::Obj(fields))) => fields.push((key.unwrap_or("").to_string(), value)),
            _ => self.done = Some(value),
        }
    }
}

impl Sink for Tree {
    fn open(&mut self, key: Option<&str>, array: bool) {
        let empty = if array {
            Json::Arr(Vec::new())
        } else {
            Json::Obj(Vec::new())
        };
        self.open.push((key.map(str::to_string), empty));
    }

    fn close(&mut self) {
        if let Some((key, value)) = self.open.pop() {
            self.put(key.as_deref(), value);
        }
    }

    fn scalar(&mut self, key: Option<&str>, value: Scalar<'_>) {
        let v = match value {
            Scalar::Null => Json::Null,
            Scalar::Bool(b) => Json::Bool(b),
            Scalar::Int(i) => Json::Int(i),
            Scalar::Float(f) => Json::Float(f),
            Scalar::Str(s) => Json::Str(s.to_string()),
            Scalar::Show(d) => Json::Str(d.to_string()),
        };
        self.put(key, v);
    }
}

/// The tree of one object written by `body`.
pub fn tree(body: impl FnOnce(&mut Obj<'_>)) -> Json {
    let mut t = Tree::default();
    object(&mut t, body);
    t.into_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let j = Json::obj().with("a\"b", "line\nbreak\t\u{1}");
        assert_eq!(j.to_string(), r#"{"a\"b":"line\nbreak\t\u0001"}"#);
    }

    #[test]
    fn nested_values_and_pretty_output() {
        let j = Json::obj()
            .with("n", 3u32)
            .with("list", vec![Json::from(true), Json::Null])
            .with("none", Option::<u8>::None);
        assert_eq!(j.to_string(), r#"{"n":3,"list":[true,null],"none":null}"#);
        assert!(j.pretty().contains("\n  \"list\": [\n    true"));
    }

    /// The same document written as text as it is walked, and as a tree
    /// printed afterwards: byte for byte the same, compact and indented.
    #[test]
    fn streamed_text_is_the_trees_text() {
        let write = |o: &mut Obj<'_>| {
            o.f("name", "a\"b")
                .f("addr", Show(std::net::Ipv4Addr::new(10, 0, 0, 1)))
                .f("quoted", Show("tab\there"))
                .f("n", 7u64)
                .f("big", u64::MAX)
                .f("ms", 1.5)
                .f("nan", f64::NAN)
                .f("none", Option::<u8>::None)
                .obj("empty", |_| {})
                .arr("nothing", |_| {})
                .list("list", [1u8, 2])
                .opt_obj("maybe", Some(3u8), |o, n| {
                    o.f("n", n);
                })
                .opt_obj("never", Option::<u8>::None, |_, _| {})
                .arr("rows", |a| {
                    a.obj(|o| {
                        o.f("x", true);
                    })
                    .v(Json::obj().with("tree", vec![Json::Null]));
                });
        };
        let tree = tree(write);
        for pretty in [false, true] {
            let mut text = String::new();
            object(&mut Text::new(&mut text, pretty), write);
            let expected = if pretty {
                tree.pretty()
            } else {
                tree.to_string()
            };
            assert_eq!(text, expected);
        }
        assert_eq!(
            tree.to_string(),
            r#"{"name":"a\"b","addr":"10.0.0.1","quoted":"tab\there","n":7,"big":9223372036854775807,"ms":1.5,"nan":null,"none":null,"empty":{},"nothing":[],"list":[1,2],"maybe":{"n":3},"never":null,"rows":[{"x":true},{"tree":[null]}]}"#
        );
    }
}
