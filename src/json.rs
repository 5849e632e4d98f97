//! A small JSON value: what `meshd status --json` prints, and what the ubus
//! object returns (as blobmsg). Serialization only; meshd never parses JSON.

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
        let _ = self.write(&mut s, Some(0));
        s
    }

    fn write(&self, out: &mut String, indent: Option<usize>) -> fmt::Result {
        let nl = |out: &mut String, level: usize| {
            if indent.is_some() {
                out.push('\n');
                for _ in 0..level {
                    out.push_str("  ");
                }
            }
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => write!(out, "{b}")?,
            Json::Int(i) => write!(out, "{i}")?,
            Json::Float(f) if f.is_finite() => write!(out, "{f}")?,
            Json::Float(_) => out.push_str("null"),
            Json::Str(s) => write_string(out, s)?,
            Json::Arr(items) => {
                out.push('[');
                let level = indent.unwrap_or(0) + 1;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    nl(out, level);
                    v.write(out, indent.map(|_| level))?;
                }
                if !items.is_empty() {
                    nl(out, level - 1);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                let level = indent.unwrap_or(0) + 1;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    nl(out, level);
                    write_string(out, k)?;
                    out.push(':');
                    if indent.is_some() {
                        out.push(' ');
                    }
                    v.write(out, indent.map(|_| level))?;
                }
                if !fields.is_empty() {
                    nl(out, level - 1);
                }
                out.push('}');
            }
        }
        Ok(())
    }
}

fn write_string(out: &mut String, s: &str) -> fmt::Result {
    out.push('"');
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
    out.push('"');
    Ok(())
}

impl fmt::Display for Json {
    /// Compact output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write(&mut s, None)?;
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
}
