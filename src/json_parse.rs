//! Reading JSON text back into a [`Json`] tree: what `meshd status` makes of
//! the daemon's `status json` answer before rendering its text.
//!
//! The parser is strict: it takes exactly the grammar of RFC 8259 (no
//! comments, no trailing commas, no `NaN`, no leading `+` or zeros, no byte
//! order mark) and refuses the whole text on the first error, naming the
//! byte where it was found. It never panics, whatever the text, and it is
//! bounded:
//!
//! - nesting deeper than [`MAX_DEPTH`] arrays and objects is refused, so the
//!   recursion (two stack frames per level) stays shallow;
//! - what it allocates is what the text holds: strings, and vectors with one
//!   entry per item or field present, nothing sized from a number read in
//!   the text. The memory of a tree is proportional to the text's length.
//!
//! What [`Json::pretty`] and the compact `to_string` write (and the
//! streaming [`Text`](crate::json::Text) sink, which writes the same text)
//! parses back to the same tree, with one exception that follows from JSON
//! having one kind of number: a [`Json::Float`] that is integral and fits an
//! `i64` (`3.0`) is written without a fraction (`3`) and reads back as
//! [`Json::Int`] (`3`). (`-0.0`, written `-0`, reads back as itself: no
//! `i64` is negative zero.) A float that is not finite is written as `null`
//! and reads back as [`Json::Null`]. Either way, the text written from a
//! parsed tree reads back as a tree that writes the same text.

use std::fmt;
use std::str::FromStr;

use crate::json::Json;

/// The deepest nesting of arrays and objects [`Json::parse`] accepts: `[]`
/// is depth 1, `[[]]` depth 2, a scalar alone depth 0.
pub const MAX_DEPTH: usize = 64;

/// Why a text is not a JSON document, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// The byte of the text where the error was found: the offending byte
    /// (for a bad escape the byte after its backslash, for a number out of
    /// range or a lone surrogate the start of the number or of its `\u`
    /// escape), or the text's length when it ends too early. Always at most
    /// the text's length.
    pub offset: usize,
    /// What is wrong, in a few words.
    pub what: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for ParseError {}

impl Json {
    /// Parses one JSON document (RFC 8259): a value with optional whitespace
    /// (space, tab, line feed, carriage return) around it and nothing else.
    ///
    /// A number without fraction or exponent that fits an `i64` gives
    /// [`Json::Int`]; any other number gives [`Json::Float`] with the
    /// nearest `f64`, and so does `-0` (no `i64` is negative zero). A number
    /// too large for an `f64` (it would be infinite) is an error; one nearer
    /// zero than any `f64` gives zero. Object fields keep their order, and
    /// a key given twice is kept twice ([`Json::get`] finds the first).
    /// Strings may hold any escape, `\uXXXX` ones included; a surrogate
    /// escape must be the high half of a pair directly followed by the low
    /// half. Raw control characters (below U+0020) are refused inside
    /// strings.
    pub fn parse(text: &str) -> Result<Json, ParseError> {
        let mut parser = Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        };
        let value = parser.value(0)?;
        parser.skip_whitespace();
        if parser.pos < parser.bytes.len() {
            return Err(parser.fail("trailing characters after the value"));
        }
        Ok(value)
    }
}

impl FromStr for Json {
    type Err = ParseError;

    /// [`Json::parse`].
    fn from_str(text: &str) -> Result<Json, ParseError> {
        Json::parse(text)
    }
}

/// The text and how far it has been read. Invariant: `pos <= bytes.len()`,
/// and `pos` only moves past bytes that were looked at.
struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Moves past `b` if it is the next byte.
    fn eat(&mut self, b: u8) -> bool {
        let next = self.peek() == Some(b);
        if next {
            self.pos += 1;
        }
        next
    }

    /// An error at the current byte, or "unexpected end of text" at the
    /// end when there is no byte left.
    fn fail(&self, what: &'static str) -> ParseError {
        if self.pos < self.bytes.len() {
            ParseError {
                offset: self.pos,
                what,
            }
        } else {
            ParseError {
                offset: self.bytes.len(),
                what: "unexpected end of text",
            }
        }
    }

    /// The text from `start` to the current byte.
    fn since(&self, start: usize) -> Result<&str, ParseError> {
        // Every caller cuts next to ASCII bytes, on character boundaries;
        // `get` keeps even a mistake in that from panicking.
        self.text.get(start..self.pos).ok_or(ParseError {
            offset: start,
            what: "internal error: not a character boundary",
        })
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// One value, after optional whitespace. `depth` is the number of
    /// arrays and objects it is inside.
    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            _ => Err(self.fail("expected a value")),
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, ParseError> {
        let end = self.pos.saturating_add(word.len());
        if self.bytes.get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(value)
        } else {
            Err(self.fail("expected a value"))
        }
    }

    /// Refuses a container at `depth` deeper than [`MAX_DEPTH`], before
    /// anything in it is read.
    fn check_depth(&self, depth: usize) -> Result<(), ParseError> {
        if depth > MAX_DEPTH {
            Err(self.fail("nested deeper than 64 arrays and objects"))
        } else {
            Ok(())
        }
    }

    /// An array at `depth`, the current byte being its `[`.
    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.check_depth(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.eat(b']') {
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            if self.eat(b']') {
                return Ok(Json::Arr(items));
            }
            if !self.eat(b',') {
                return Err(self.fail("expected ',' or ']'"));
            }
        }
    }

    /// An object at `depth`, the current byte being its `{`.
    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.check_depth(depth)?;
        self.pos += 1;
        let mut fields = Vec::new();
        self.skip_whitespace();
        if self.eat(b'}') {
            return Ok(Json::Obj(fields));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.fail("expected a string key"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if !self.eat(b':') {
                return Err(self.fail("expected ':'"));
            }
            fields.push((key, self.value(depth)?));
            self.skip_whitespace();
            if self.eat(b'}') {
                return Ok(Json::Obj(fields));
            }
            if !self.eat(b',') {
                return Err(self.fail("expected ',' or '}'"));
            }
        }
    }

    /// A string, the current byte being its opening quote.
    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            // A run of characters as they are (multi-byte ones included:
            // their bytes are all 0x80 or more).
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(self.since(start)?);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => self.escape(&mut out)?,
                _ => return Err(self.fail("control character in string")),
            }
        }
    }

    /// One escape, the current byte being its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), ParseError> {
        let start = self.pos;
        self.pos += 1;
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                return self.unicode(start, out);
            }
            _ => return Err(self.fail("invalid escape")),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    /// The rest of a `\u` escape that starts at `start`: its four hex
    /// digits, and the low half's escape after a high surrogate.
    fn unicode(&mut self, start: usize, out: &mut String) -> Result<(), ParseError> {
        let lone = ParseError {
            offset: start,
            what: "lone surrogate in \\u escape",
        };
        let code = match self.hex4()? {
            high @ 0xD800..=0xDBFF => {
                let end = self.pos.saturating_add(2);
                if self.bytes.get(self.pos..end) != Some(b"\\u") {
                    return Err(lone);
                }
                self.pos = end;
                match self.hex4()? {
                    low @ 0xDC00..=0xDFFF => 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00),
                    _ => return Err(lone),
                }
            }
            0xDC00..=0xDFFF => return Err(lone),
            code => code,
        };
        // Not a surrogate, and at most 0x10FFFF: always a char.
        out.push(char::from_u32(code).ok_or(lone)?);
        Ok(())
    }

    /// Four hex digits, either case.
    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.fail("expected 4 hex digits in \\u escape"))?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }

    /// Moves past digits; whether there was one.
    fn digits(&mut self) -> bool {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos > start
    }

    /// A number, the current byte being its `-` or first digit.
    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.fail("leading zero in number"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fail("expected a digit")),
        }
        let mut integer = true;
        if self.eat(b'.') {
            integer = false;
            if !self.digits() {
                return Err(self.fail("expected a digit after '.'"));
            }
        }
        if self.eat(b'e') || self.eat(b'E') {
            integer = false;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !self.digits() {
                return Err(self.fail("expected a digit in exponent"));
            }
        }
        let text = self.since(start)?;
        if integer && text != "-0" {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Json::Int(i));
            }
        }
        // The grammar above is a subset of what `f64::from_str` takes.
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Json::Float(f)),
            _ => Err(ParseError {
                offset: start,
                what: "number out of range",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{object, tree, Obj, Show, Text};
    use proptest::prelude::*;

    fn err(offset: usize, what: &'static str) -> Result<Json, ParseError> {
        Err(ParseError { offset, what })
    }

    /// Arrays nested `depth` deep, with `inner` in the deepest.
    fn nested(depth: usize, inner: &str) -> String {
        "[".repeat(depth) + inner + &"]".repeat(depth)
    }

    fn rich() -> Json {
        Json::obj()
            .with("null", Json::Null)
            .with("yes", true)
            .with("no", false)
            .with("zero", 0i64)
            .with("negative", -42i64)
            .with("min", i64::MIN)
            .with("max", i64::MAX)
            .with("half", 1.5)
            .with("quarter", 0.25)
            .with("negative float", -0.001)
            .with("huge", 1e300)
            .with("tiny", 1e-300)
            .with("beyond i64", 1e19)
            .with(
                "escapes",
                "quote \" backslash \\ slash / \n\r\t\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            )
            .with("unicode", "héllo wörld ☃ 𝄞 😀 \u{ffff} \u{10ffff}")
            .with("", "empty key")
            .with("empty", "")
            .with(
                "array",
                vec![Json::Int(1), Json::from("two"), Json::Arr(vec![])],
            )
            .with("object", Json::obj())
            .with(
                "nested",
                Json::obj().with(
                    "deeper",
                    vec![Json::obj().with("k\u{0}ey\"", vec![Json::Null, Json::Float(-2.5)])],
                ),
            )
            .with("duplicate", 1i64)
            .with("duplicate", 2i64)
    }

    #[test]
    fn rich_value_round_trips() {
        let j = rich();
        assert_eq!(Json::parse(&j.pretty()), Ok(j.clone()));
        assert_eq!(Json::parse(&j.to_string()), Ok(j.clone()));
        assert_eq!(j.to_string().parse::<Json>(), Ok(j));
    }

    /// Documented: JSON has one kind of number, and an integral float is
    /// written as an integer, so it reads back as one.
    #[test]
    fn integral_floats_read_back_as_ints() {
        assert_eq!(Json::Float(3.0).to_string(), "3");
        assert_eq!(Json::parse("3"), Ok(Json::Int(3)));
        assert_eq!(Json::parse(&Json::Float(3.0).to_string()), Ok(Json::Int(3)));
        assert_eq!(Json::parse("-3"), Ok(Json::Int(-3)));
        assert_eq!(Json::parse("0"), Ok(Json::Int(0)));
        // Negative zero is no i64: a float, with its sign (which `==` on
        // floats does not see).
        let negative_zero = |text| match Json::parse(text) {
            Ok(Json::Float(f)) => f == 0.0 && f.is_sign_negative(),
            _ => false,
        };
        assert_eq!(Json::Float(-0.0).to_string(), "-0");
        assert!(negative_zero("-0"));
        assert!(negative_zero("-0.0"));
        assert!(negative_zero("-0e5"));
        // Spelled as a float, or beyond i64: a float.
        assert_eq!(Json::parse("3.0"), Ok(Json::Float(3.0)));
        assert_eq!(Json::parse("3e0"), Ok(Json::Float(3.0)));
        assert_eq!(
            Json::parse("9223372036854775808"),
            Ok(Json::Float(9223372036854775808.0))
        );
        assert_eq!(Json::parse("-9223372036854775808"), Ok(Json::Int(i64::MIN)));
        // Not finite: written as null.
        assert_eq!(
            Json::parse(&Json::Float(f64::NAN).to_string()),
            Ok(Json::Null)
        );
    }

    #[test]
    fn accepts_the_whole_grammar() {
        let cases: &[(&str, Json)] = &[
            (" \t\r\n true \n", Json::Bool(true)),
            ("false", Json::Bool(false)),
            ("null", Json::Null),
            ("-12", Json::Int(-12)),
            ("1E2", Json::Float(100.0)),
            ("1e+2", Json::Float(100.0)),
            ("25e-2", Json::Float(0.25)),
            ("-0.5E-1", Json::Float(-0.05)),
            ("1e-400", Json::Float(0.0)),
            (r#""\u00e9\u00C9\/""#, Json::from("éÉ/")),
            (r#""\ud834\udd1e""#, Json::from("𝄞")),
            (r#""\uD83D\uDE00x""#, Json::from("😀x")),
            (r#""\u0000""#, Json::from("\u{0}")),
            ("\"\u{7f}é\"", Json::from("\u{7f}é")),
            (
                "[ 1 , { \"a\" : [ ] , \"b\":{}} ]",
                Json::Arr(vec![
                    Json::Int(1),
                    Json::obj()
                        .with("a", Json::Arr(vec![]))
                        .with("b", Json::obj()),
                ]),
            ),
        ];
        for (text, value) in cases {
            assert_eq!(Json::parse(text).as_ref(), Ok(value), "{text:?}");
        }
    }

    #[test]
    fn refuses_what_rfc_8259_refuses() {
        let end = "unexpected end of text";
        let value = "expected a value";
        let lone = "lone surrogate in \\u escape";
        let cases: &[(&str, Result<Json, ParseError>)] = &[
            ("", err(0, end)),
            ("   ", err(3, end)),
            ("\u{feff}1", err(0, value)),
            ("1 2", err(2, "trailing characters after the value")),
            ("{}x", err(2, "trailing characters after the value")),
            ("nul", err(0, value)),
            ("True", err(0, value)),
            ("nullx", err(4, "trailing characters after the value")),
            ("NaN", err(0, value)),
            ("Infinity", err(0, value)),
            ("-Infinity", err(1, "expected a digit")),
            ("+1", err(0, value)),
            (".5", err(0, value)),
            ("-", err(1, end)),
            ("01", err(1, "leading zero in number")),
            ("-00", err(2, "leading zero in number")),
            ("1.", err(2, end)),
            ("1.e5", err(2, "expected a digit after '.'")),
            ("1e", err(2, end)),
            ("1e+", err(3, end)),
            ("1ex", err(2, "expected a digit in exponent")),
            ("0x10", err(1, "trailing characters after the value")),
            ("1e400", err(0, "number out of range")),
            ("[-1e400]", err(1, "number out of range")),
            ("[", err(1, end)),
            ("[1", err(2, end)),
            ("[1,]", err(3, value)),
            ("[,1]", err(1, value)),
            ("[1 2]", err(3, "expected ',' or ']'")),
            ("{", err(1, end)),
            ("{1:2}", err(1, "expected a string key")),
            ("{a:1}", err(1, "expected a string key")),
            (r#"{"a",1}"#, err(4, "expected ':'")),
            (r#"{"a":}"#, err(5, value)),
            (r#"{"a":1,}"#, err(7, "expected a string key")),
            (r#"{"a":1 "b":2}"#, err(7, "expected ',' or '}'")),
            ("\"abc", err(4, end)),
            ("\"a\nb\"", err(2, "control character in string")),
            ("\"\t\"", err(1, "control character in string")),
            ("\"\u{0}\"", err(1, "control character in string")),
            (r#""\x""#, err(2, "invalid escape")),
            (r#""\'""#, err(2, "invalid escape")),
            ("\"\\", err(2, end)),
            (r#""\u12""#, err(5, "expected 4 hex digits in \\u escape")),
            (r#""\u12g4""#, err(5, "expected 4 hex digits in \\u escape")),
            (r#""\u+123""#, err(3, "expected 4 hex digits in \\u escape")),
            (r#""\ud800""#, err(1, lone)),
            (r#""x\udc00""#, err(2, lone)),
            (r#""\ud800\u0041""#, err(1, lone)),
            (r#""\ud800\ud800""#, err(1, lone)),
            (r#""\ud800\n""#, err(1, lone)),
            (r#""\ud800x""#, err(1, lone)),
            (r#""\ud800\u00"#, err(11, end)),
        ];
        for (text, expected) in cases {
            assert_eq!(&Json::parse(text), expected, "{text:?}");
        }
        let e = Json::parse("[1 2]").unwrap_err();
        assert_eq!(e.to_string(), "byte 3: expected ',' or ']'");
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn nesting_up_to_64_deep() {
        let deepest = nested(MAX_DEPTH, "7");
        let mut expected = Json::Int(7);
        for _ in 0..MAX_DEPTH {
            expected = Json::Arr(vec![expected]);
        }
        assert_eq!(Json::parse(&deepest), Ok(expected));
        let too_deep = "nested deeper than 64 arrays and objects";
        assert_eq!(Json::parse(&nested(MAX_DEPTH + 1, "7")), err(64, too_deep));
        // Objects count as arrays do.
        let objects = |depth| "{\"k\":".repeat(depth) + "1" + &"}".repeat(depth);
        assert!(Json::parse(&objects(MAX_DEPTH)).is_ok());
        assert_eq!(Json::parse(&objects(MAX_DEPTH + 1)), err(5 * 64, too_deep));
        assert_eq!(
            Json::parse(&("[{\"a\":".repeat(32) + "[]" + &"}]".repeat(32))),
            err(6 * 32, too_deep)
        );
        // Refused where it gets too deep, without reading (or recursing
        // into) the rest.
        assert_eq!(Json::parse(&"[".repeat(1_000_000)), err(64, too_deep));
    }

    /// What the daemon writes with the streaming sink (as `status json`
    /// does) reads back as the tree of the same document.
    #[test]
    fn streamed_text_reads_back() {
        let write = |o: &mut Obj<'_>| {
            o.f("addr", Show(std::net::Ipv4Addr::new(10, 0, 0, 1)))
                .f("name", "tab\there \"quoted\"")
                .f("big", u64::MAX)
                .f("ms", 1.5)
                .f("nan", f64::NAN)
                .f("none", Option::<u8>::None)
                .obj("empty", |_| {})
                .list("list", [1u8, 2])
                .arr("rows", |a| {
                    a.obj(|o| {
                        o.f("x", true);
                    });
                });
        };
        // The NaN is written as null.
        let Json::Obj(mut fields) = tree(write) else {
            panic!("not an object")
        };
        for (_, v) in &mut fields {
            if matches!(v, Json::Float(f) if !f.is_finite()) {
                *v = Json::Null;
            }
        }
        let expected = Json::Obj(fields);
        for pretty in [false, true] {
            let mut text = String::new();
            object(&mut Text::new(&mut text, pretty), write);
            assert_eq!(Json::parse(&text), Ok(expected.clone()), "{text}");
        }
    }

    /// Any string, `\u{1}` and the like included.
    fn any_string() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..12).prop_map(|cs| cs.into_iter().collect())
    }

    /// Any value that reads back as itself: finite floats that are not
    /// integral, or are beyond i64, or negative zero (other integral floats
    /// read back as ints).
    fn any_json() -> impl Strategy<Value = Json> {
        let float = any::<f64>().prop_filter("reads back as a float", |f| {
            f.is_finite()
                && (f.fract() != 0.0
                    || f.abs() > 9223372036854775808.0
                    || (*f == 0.0 && f.is_sign_negative()))
        });
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(Json::Int),
            float.prop_map(Json::Float),
            any_string().prop_map(Json::Str),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Json::Arr),
                proptest::collection::vec((any_string(), inner), 0..8).prop_map(Json::Obj),
            ]
        })
    }

    /// Texts made of JSON tokens and parts of them: seldom JSON, often
    /// close to it.
    fn almost_json() -> impl Strategy<Value = String> {
        const PIECES: &[&str] = &[
            "{", "}", "[", "]", ",", ":", " ", "\"", "\\", "\\u", "\\ud83d", "\\ude00", "\\n",
            "\n", "\u{1}", "é", "a", "0", "1", "9", "-", "+", ".", "e", "E", "true", "null",
            "fals", "\"k\":",
        ];
        let piece = prop::sample::select(PIECES);
        proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    /// What a text that parses writes reads back as what it wrote (the
    /// same text: a float may come back as an int, see the module doc).
    fn reads_back(text: &str) -> Result<(), TestCaseError> {
        match Json::parse(text) {
            Ok(v) => {
                for written in [v.to_string(), v.pretty()] {
                    let back = Json::parse(&written).map(|w| w.to_string());
                    prop_assert_eq!(back, Ok(v.to_string()));
                }
            }
            Err(e) => prop_assert!(e.offset <= text.len(), "{e} in {text:?}"),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn written_values_read_back(v in any_json()) {
            prop_assert_eq!(Json::parse(&v.pretty()), Ok(v.clone()));
            prop_assert_eq!(Json::parse(&v.to_string()), Ok(v));
        }

        #[test]
        fn any_text_is_parsed_without_panic(text in any::<String>()) {
            reads_back(&text)?;
        }

        #[test]
        fn almost_json_is_parsed_without_panic(text in almost_json()) {
            reads_back(&text)?;
        }

        /// Every prefix of a document, cut on any character boundary.
        #[test]
        fn cut_documents_are_parsed_without_panic(v in any_json(), cut in any::<prop::sample::Index>()) {
            let text = v.to_string();
            let boundaries: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
            let at = boundaries[cut.index(boundaries.len())];
            reads_back(&text[..at])?;
        }
    }
}
