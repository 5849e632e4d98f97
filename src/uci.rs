//! UCI configuration files (OpenWrt syntax): parser and writer.
//!
//! meshd reads `/etc/config/meshd` itself, on OpenWrt and on buildroot images
//! alike, so this module reads what OpenWrt's `uci` reads and writes what `uci
//! commit` writes. The reference is libuci's `file.c` (`uci_parse_line`,
//! `next_arg`, `parse_str`, the quote parsers, `uci_export`) and `list.c`
//! (`uci_set`, `uci_add_list`), in the version that accepts values spanning
//! several lines. The golden files in `tests/fixtures/uci/` were made with the
//! real tool; `tests/uci_golden.rs` compares against them byte for byte.
//!
//! # Syntax, as uci reads it (strict mode, the `uci` default)
//!
//! - A line holds commands: `config <type> [<name>]`, `option <name> <value>`,
//!   `list <name> <value>`, `package <name>` (ignored). The command words may be
//!   abbreviated to their first letter. `;` separates commands on one line.
//!   `#` starts a comment, also after arguments (and inside a bare word:
//!   `a#b` is `a`).
//! - An argument is made of adjacent parts: bare text (a backslash takes the
//!   next character literally), `'...'` (no escapes at all) and `"..."`
//!   (backslash escapes). `'a'"b"c` is `abc`; `'it'\''s'` is `it's`. A
//!   backslash at the end of a line joins the next line; quotes may span lines
//!   and keep the newlines.
//! - Section and option names are `[A-Za-z0-9_]+`; a type may be any printable
//!   ASCII without spaces. More arguments than a command takes is an error.
//! - `config` with a name already used continues that section (same type
//!   required). `option` with an empty value does nothing; `option` on an
//!   existing name replaces it (and moves it last, unless the value is the
//!   same); `list` appends, turning an earlier `option` into the list's first
//!   item.
//! - uci names anonymous sections internally (`cfg` + a counter + a hash of
//!   the type, e.g. `cfg0292bd`); a later `config <type> 'cfg0292bd'`
//!   continues that section, so this parser computes those names too.
//!
//! # Where this differs from uci, on purpose
//!
//! - A NUL byte anywhere is an error (uci's C strings silently cut lines there).
//! - An error on a last line without a newline names that line (uci counts one
//!   less, because it counts newlines).
//! - A section type that a bare word cannot carry (it holds `'`, `"`, `\`, `#`
//!   or `;`) is written quoted, so that it reads back; uci writes it bare and
//!   cannot read its own file back.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A parsed UCI file: its sections in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    pub sections: Vec<Section>,
}

/// One `config <type> [<name>]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub stype: String,
    /// `None` for an anonymous section (`uci show` calls it `@type[N]`).
    pub name: Option<String>,
    /// Line of the (first) `config` command; 0 for sections made in code.
    pub line: usize,
    pub options: Vec<UciOption>,
}

/// One option (`option`) or list (`list`, one line per item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciOption {
    pub name: String,
    pub value: Value,
    /// Line of the command that made the option; for a list, its first item.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Single(String),
    List(Vec<String>),
}

impl Value {
    /// The value of an `option`, `None` for a list.
    pub fn as_single(&self) -> Option<&str> {
        match self {
            Value::Single(s) => Some(s),
            Value::List(_) => None,
        }
    }

    /// The items: one for an `option`, all of them for a list.
    pub fn items(&self) -> &[String] {
        match self {
            Value::Single(s) => std::slice::from_ref(s),
            Value::List(items) => items,
        }
    }
}

/// A file `uci` would refuse, with the line it names and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    /// uci's own wording, e.g. `EOF with unterminated "`.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// An edit that would produce a file uci cannot read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// Not `[A-Za-z0-9_]+` (section and option names).
    InvalidName(String),
    /// Not printable ASCII without spaces (section types).
    InvalidType(String),
    /// Values cannot hold a NUL byte.
    NulInValue(String),
    /// A section of that name exists already.
    DuplicateSection(String),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::InvalidName(n) => write!(f, "'{n}' is not a valid uci name ([A-Za-z0-9_])"),
            EditError::InvalidType(t) => write!(f, "'{t}' is not a valid uci section type"),
            EditError::NulInValue(o) => write!(f, "option '{o}': a value cannot hold a NUL byte"),
            EditError::DuplicateSection(n) => write!(f, "a section named '{n}' exists already"),
        }
    }
}

impl std::error::Error for EditError {}

/// A section or option name as uci accepts it: `[A-Za-z0-9_]+`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A section type as uci accepts it: printable ASCII, no spaces, not empty.
pub fn is_valid_type(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic())
}

/// A package name (`package <name>`): a name that may also hold `-`.
fn is_valid_package_name(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

impl Package {
    pub fn new() -> Package {
        Package::default()
    }

    /// Reads a UCI file the way `uci` does in strict mode (its default).
    pub fn parse(text: &str) -> Result<Package, ParseError> {
        if let Some(at) = text.bytes().position(|b| b == 0) {
            let line = text.as_bytes()[..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(ParseError {
                line,
                message: "NUL byte in file".to_string(),
            });
        }
        let mut parser = Parser::new(text.as_bytes());
        parser.run()?;
        Ok(parser.package)
    }

    /// Exactly what `uci show <package_name>` prints.
    pub fn show(&self, package_name: &str) -> String {
        let mut out = String::new();
        for (index, section) in self.sections.iter().enumerate() {
            let sref = self.section_ref(index);
            out.push_str(&format!("{package_name}.{sref}={}\n", section.stype));
            for option in &section.options {
                out.push_str(&format!("{package_name}.{sref}.{}=", option.name));
                match &option.value {
                    Value::Single(v) => push_show_quoted(&mut out, v),
                    Value::List(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                out.push(' ');
                            }
                            push_show_quoted(&mut out, item);
                        }
                    }
                }
                out.push('\n');
            }
        }
        out
    }

    /// Exactly what `uci export <package_name>` prints.
    pub fn export(&self, package_name: &str) -> String {
        let mut out = format!("package {}\n", escape(package_name));
        out.push_str(&self.to_config_file());
        out
    }

    /// Exactly what `uci commit` writes to `/etc/config/<package>`.
    pub fn to_config_file(&self) -> String {
        let mut out = String::new();
        for section in &self.sections {
            out.push_str("\nconfig ");
            if is_bare_safe(&section.stype) {
                out.push_str(&section.stype);
            } else {
                push_export_quoted(&mut out, &section.stype);
            }
            if let Some(name) = &section.name {
                out.push(' ');
                push_export_quoted(&mut out, name);
            }
            out.push('\n');
            for option in &section.options {
                let (keyword, items) = match &option.value {
                    Value::Single(v) => ("option", std::slice::from_ref(v)),
                    Value::List(items) => ("list", items.as_slice()),
                };
                for item in items {
                    out.push('\t');
                    out.push_str(keyword);
                    out.push(' ');
                    out.push_str(&escape(&option.name));
                    out.push(' ');
                    push_export_quoted(&mut out, item);
                    out.push('\n');
                }
            }
        }
        out.push('\n');
        out
    }

    /// How `uci show` refers to the section at `index`: its name, or
    /// `@type[N]` with N counting every section of that type before it.
    pub fn section_ref(&self, index: usize) -> String {
        let Some(section) = self.sections.get(index) else {
            return String::new();
        };
        match &section.name {
            Some(name) => name.clone(),
            None => {
                let n = self.sections[..index]
                    .iter()
                    .filter(|s| s.stype == section.stype)
                    .count();
                format!("@{}[{}]", section.stype, n)
            }
        }
    }

    /// The named section `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
    }

    pub fn section_mut(&mut self, name: &str) -> Option<&mut Section> {
        self.sections
            .iter_mut()
            .find(|s| s.name.as_deref() == Some(name))
    }

    /// The sections of type `stype`, named and anonymous, in file order.
    pub fn sections_of_type<'a>(&'a self, stype: &'a str) -> impl Iterator<Item = &'a Section> {
        self.sections.iter().filter(move |s| s.stype == stype)
    }

    /// Appends a new, empty section.
    pub fn add_section(
        &mut self,
        stype: &str,
        name: Option<&str>,
    ) -> Result<&mut Section, EditError> {
        if !is_valid_type(stype) {
            return Err(EditError::InvalidType(stype.to_string()));
        }
        if let Some(name) = name {
            if !is_valid_name(name) {
                return Err(EditError::InvalidName(name.to_string()));
            }
            if self.section(name).is_some() {
                return Err(EditError::DuplicateSection(name.to_string()));
            }
        }
        self.sections
            .push(Section::new(stype, name.map(str::to_string), 0));
        let last = self.sections.len() - 1;
        Ok(&mut self.sections[last])
    }

    /// Removes the named section `name`; false if there is none.
    pub fn remove_section(&mut self, name: &str) -> bool {
        let before = self.sections.len();
        self.sections.retain(|s| s.name.as_deref() != Some(name));
        self.sections.len() != before
    }
}

impl Section {
    pub fn new(stype: &str, name: Option<String>, line: usize) -> Section {
        Section {
            stype: stype.to_string(),
            name,
            line,
            options: Vec::new(),
        }
    }

    pub fn get(&self, option: &str) -> Option<&Value> {
        self.option(option).map(|o| &o.value)
    }

    /// The option with its line.
    pub fn option(&self, option: &str) -> Option<&UciOption> {
        self.options.iter().find(|o| o.name == option)
    }

    /// Sets `option` to `value`, in place if it exists (so a rewritten file
    /// keeps its order), else last. An empty value (`''` or an empty list)
    /// removes the option, as `uci set` does.
    pub fn set(&mut self, option: &str, value: Value) -> Result<(), EditError> {
        if !is_valid_name(option) {
            return Err(EditError::InvalidName(option.to_string()));
        }
        if value.items().iter().any(|v| v.contains('\0')) {
            return Err(EditError::NulInValue(option.to_string()));
        }
        let empty = match &value {
            Value::Single(s) => s.is_empty(),
            Value::List(items) => items.is_empty(),
        };
        if empty {
            self.remove(option);
            return Ok(());
        }
        match self.options.iter_mut().find(|o| o.name == option) {
            Some(existing) => existing.value = value,
            None => self.options.push(UciOption {
                name: option.to_string(),
                value,
                line: 0,
            }),
        }
        Ok(())
    }

    /// Appends `item` to the list `option`, as `uci add_list` does (an
    /// `option` of that name becomes the list's first item).
    pub fn add_list(&mut self, option: &str, item: &str) -> Result<(), EditError> {
        if !is_valid_name(option) {
            return Err(EditError::InvalidName(option.to_string()));
        }
        if item.contains('\0') {
            return Err(EditError::NulInValue(option.to_string()));
        }
        match self.options.iter_mut().find(|o| o.name == option) {
            Some(existing) => match &mut existing.value {
                Value::List(items) => items.push(item.to_string()),
                Value::Single(s) => {
                    existing.value = Value::List(vec![std::mem::take(s), item.to_string()]);
                }
            },
            None => self.options.push(UciOption {
                name: option.to_string(),
                value: Value::List(vec![item.to_string()]),
                line: 0,
            }),
        }
        Ok(())
    }

    /// Removes `option`, returning its value.
    pub fn remove(&mut self, option: &str) -> Option<Value> {
        let index = self.options.iter().position(|o| o.name == option)?;
        Some(self.options.remove(index).value)
    }
}

/// uci's escaping inside single quotes: `'` becomes `'\''`.
fn escape(s: &str) -> String {
    s.replace('\'', "'\\''")
}

/// `\toption NAME 'VALUE'` and a newline, as `uci commit` writes one.
pub fn option_line(name: &str, value: &str) -> String {
    let mut out = format!("\toption {} ", escape(name));
    push_export_quoted(&mut out, value);
    out.push('\n');
    out
}

fn push_export_quoted(out: &mut String, s: &str) {
    out.push('\'');
    out.push_str(&escape(s));
    out.push('\'');
}

/// `uci show` quotes the same way as export.
fn push_show_quoted(out: &mut String, s: &str) {
    push_export_quoted(out, s);
}

/// Can a section type be written as a bare word and read back unchanged?
fn is_bare_safe(stype: &str) -> bool {
    is_valid_type(stype)
        && !stype
            .bytes()
            .any(|c| matches!(c, b'\'' | b'"' | b'\\' | b'#' | b';'))
}

/// C's `isspace` in the C locale.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// uci's djb hash (`list.c`), used for the names it gives anonymous sections.
fn djb_hash(s: &str) -> u32 {
    let mut hash: u32 = 5381;
    for &c in s.as_bytes() {
        // C adds a (signed) char; types are ASCII, so the sign never shows.
        hash = hash
            .wrapping_shl(5)
            .wrapping_add(hash)
            .wrapping_add(c as i8 as i32 as u32);
    }
    hash & 0x7fff_ffff
}

type ParseResult<T> = Result<T, ParseError>;

/// The parser works like libuci's: a line buffer it rewrites in place (a NUL
/// ends the current string), a position in it, and a target the unquoted
/// argument text is copied down to. Keeping that model is what makes the odd
/// cases come out as uci has them (e.g. `option a b;c` is `a` = `b`, and the
/// `c` is lost, while `option a 'b';c` is an error).
struct Parser<'a> {
    src: &'a [u8],
    /// Offset in `src` of the next line to read.
    next: usize,
    buf: Vec<u8>,
    /// What the last line read filled the buffer up to (uci's `buf_filled`).
    filled: usize,
    pos: usize,
    /// Lines read so far.
    line: usize,
    package: Package,
    /// The section `option`/`list` commands go to.
    current: Option<usize>,
    /// Sections created (uci's `n_section`), for the names of anonymous ones.
    created: u32,
    /// The names uci gives anonymous sections (`cfg02a1b2`): a later
    /// `config <type> 'cfg02a1b2'` continues that section.
    anonymous_names: Vec<(String, usize)>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a [u8]) -> Parser<'a> {
        Parser {
            src,
            next: 0,
            buf: Vec::new(),
            filled: 0,
            pos: 0,
            line: 0,
            package: Package::new(),
            current: None,
            created: 0,
            anonymous_names: Vec::new(),
        }
    }

    fn run(&mut self) -> ParseResult<()> {
        while self.next < self.src.len() {
            self.buf.clear();
            self.filled = 0;
            self.pos = 0;
            self.read_line_at(0);
            self.parse_line()?;
        }
        Ok(())
    }

    fn error<T>(&self, message: &str) -> ParseResult<T> {
        Err(ParseError {
            line: self.line,
            message: message.to_string(),
        })
    }

    fn char_at(&self, i: usize) -> u8 {
        self.buf.get(i).copied().unwrap_or(0)
    }

    fn cur(&self) -> u8 {
        self.char_at(self.pos)
    }

    fn set_char(&mut self, i: usize, c: u8) {
        if let Some(slot) = self.buf.get_mut(i) {
            *slot = c;
        }
    }

    /// The NUL-terminated string at `i`.
    fn c_str(&self, i: usize) -> &[u8] {
        let rest = self.buf.get(i..).unwrap_or(&[]);
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Reads the next line of the file into the buffer at `at` (uci_getln):
    /// at EOF the buffer just ends at `at`.
    fn read_line_at(&mut self, at: usize) {
        self.buf.resize(at, 0);
        if self.next >= self.src.len() {
            return;
        }
        let rest = &self.src[self.next..];
        let len = rest
            .iter()
            .position(|&c| c == b'\n')
            .map_or(rest.len(), |i| i + 1);
        self.buf.extend_from_slice(&rest[..len]);
        self.next += len;
        self.filled = self.buf.len();
        self.line += 1;
    }

    fn skip_whitespace(&mut self) {
        while self.cur() != 0 && is_c_space(self.cur()) {
            self.pos += 1;
        }
    }

    /// One line: commands until its end (uci_parse_line).
    fn parse_line(&mut self) -> ParseResult<()> {
        self.skip_whitespace();
        loop {
            // strtok(" \t") from the current position.
            let mut start = self.pos;
            while matches!(self.char_at(start), b' ' | b'\t') {
                start += 1;
            }
            if self.char_at(start) == 0 {
                return Ok(());
            }
            let mut end = start;
            while !matches!(self.char_at(end), 0 | b' ' | b'\t') {
                end += 1;
            }
            self.set_char(end, 0);
            let word = &self.buf[start..end];
            let line = self.line;
            let command = match word {
                [b'#', ..] => return Ok(()),
                b"p" | b"package" => Command::Package,
                b"c" | b"config" => Command::Config,
                b"o" | b"option" => Command::Option,
                b"l" | b"list" => Command::List,
                _ => return self.error("invalid command"),
            };
            match command {
                Command::Package => {
                    self.skip_command_word(end, "package without name")?;
                    self.next_arg(Arg::PackageName)?;
                    self.assert_eol()?;
                }
                Command::Config => {
                    self.skip_command_word(end, "config without name")?;
                    self.parse_config(line)?;
                }
                Command::Option | Command::List => {
                    let Some(section) = self.current else {
                        return self.error("option/list command found before the first section");
                    };
                    self.skip_command_word(end, "option without name")?;
                    self.parse_option(section, command == Command::List, line)?;
                }
            }
        }
    }

    /// Moves past the command word and the NUL strtok left after it.
    fn skip_command_word(&mut self, word_end: usize, message: &str) -> ParseResult<()> {
        if word_end + 1 > self.filled {
            return self.error(message);
        }
        self.pos = word_end + 1;
        Ok(())
    }

    fn parse_config(&mut self, line: usize) -> ParseResult<()> {
        let stype = self.next_arg(Arg::Type)?;
        let stype = String::from_utf8_lossy(&stype).into_owned();
        if !is_valid_type(&stype) {
            return self.error("invalid character in type field");
        }
        let name = self.next_arg(Arg::SectionName)?;
        let name = String::from_utf8_lossy(&name).into_owned();
        self.assert_eol()?;

        if name.is_empty() {
            self.created += 2;
            let generated = format!(
                "cfg{:02x}{:04x}",
                self.created,
                djb_hash(&stype) % (1 << 16)
            );
            self.package.sections.push(Section::new(&stype, None, line));
            let index = self.package.sections.len() - 1;
            self.anonymous_names.push((generated, index));
            self.current = Some(index);
            return Ok(());
        }
        let existing = self
            .package
            .sections
            .iter()
            .position(|s| s.name.as_deref() == Some(name.as_str()))
            .or_else(|| {
                self.anonymous_names
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|&(_, i)| i)
            });
        match existing {
            Some(index) => {
                if self.package.sections[index].stype != stype {
                    return self.error(
                        "section of different type overwrites prior section with same name",
                    );
                }
                self.current = Some(index);
            }
            None => {
                self.created += 1;
                self.package
                    .sections
                    .push(Section::new(&stype, Some(name), line));
                self.current = Some(self.package.sections.len() - 1);
            }
        }
        Ok(())
    }

    fn parse_option(&mut self, section: usize, list: bool, line: usize) -> ParseResult<()> {
        let name = self.next_arg(Arg::OptionName)?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let value = self.next_arg(Arg::Value)?;
        let value = String::from_utf8_lossy(&value).into_owned();
        self.assert_eol()?;

        let options = &mut self.package.sections[section].options;
        let existing = options.iter().position(|o| o.name == name);
        if list {
            // uci_add_list: append, or turn an option into a two-item list.
            match existing {
                Some(i) => match &mut options[i].value {
                    Value::List(items) => items.push(value),
                    Value::Single(old) => {
                        let old = std::mem::take(old);
                        let first_line = options.remove(i).line;
                        options.push(UciOption {
                            name,
                            value: Value::List(vec![old, value]),
                            line: first_line,
                        });
                    }
                },
                None => options.push(UciOption {
                    name,
                    value: Value::List(vec![value]),
                    line,
                }),
            }
        } else {
            // uci_set: an empty value does nothing; the same value keeps its
            // place; anything else replaces the option (a list too) at the end.
            if value.is_empty() {
                return Ok(());
            }
            if let Some(i) = existing {
                if options[i].value.as_single() == Some(value.as_str()) {
                    return Ok(());
                }
                options.remove(i);
            }
            options.push(UciOption {
                name,
                value: Value::Single(value),
                line,
            });
        }
        Ok(())
    }

    /// The next argument (next_arg): its text, empty when there is none.
    fn next_arg(&mut self, kind: Arg) -> ParseResult<Vec<u8>> {
        self.skip_whitespace();
        let start = self.pos;
        if self.cur() == b';' {
            self.set_char(self.pos, 0);
            self.pos += 1;
        } else {
            self.parse_str(start)?;
        }
        let text = self.c_str(start).to_vec();
        if text.is_empty() {
            if kind.required() {
                return self.error("insufficient arguments");
            }
            return Ok(text);
        }
        let valid = match kind {
            Arg::SectionName | Arg::OptionName => is_valid_name(&String::from_utf8_lossy(&text)),
            Arg::PackageName => is_valid_package_name(&text),
            Arg::Type | Arg::Value => true,
        };
        if !valid {
            return self.error("invalid character in name field");
        }
        Ok(text)
    }

    /// One argument: quoted and bare parts until a space (parse_str). The
    /// text is copied down to `target`, then NUL-terminated there.
    fn parse_str(&mut self, mut target: usize) -> ParseResult<()> {
        let mut advance = true;
        loop {
            match self.cur() {
                b'\'' => self.parse_single_quote(&mut target)?,
                b'"' => self.parse_double_quote(&mut target)?,
                b'#' => {
                    self.set_char(self.pos, 0);
                    break;
                }
                0 => break,
                b';' => {
                    advance = false;
                    break;
                }
                b'\\' => {
                    if self.parse_backslash() {
                        self.add_char(&mut target);
                    }
                }
                _ => self.add_char(&mut target),
            }
            let c = self.cur();
            if c == 0 || is_c_space(c) {
                break;
            }
        }
        if self.cur() != 0 && advance {
            self.pos += 1;
        }
        self.set_char(target, 0);
        Ok(())
    }

    fn add_char(&mut self, target: &mut usize) {
        let c = self.cur();
        self.set_char(*target, c);
        *target += 1;
        self.pos += 1;
    }

    /// After a backslash: true if the next character is to be taken; false
    /// if the backslash ended the line, which then continues with the next.
    fn parse_backslash(&mut self) -> bool {
        self.pos += 1;
        let c = self.cur();
        let crlf_end =
            c == b'\r' && self.char_at(self.pos + 1) == b'\n' && self.char_at(self.pos + 2) == 0;
        if c == 0 || c == b'\n' || crlf_end {
            self.read_line_at(self.pos);
            return false;
        }
        true
    }

    fn parse_double_quote(&mut self, target: &mut usize) -> ParseResult<()> {
        self.pos += 1;
        loop {
            match self.cur() {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.read_line_at(self.pos);
                    if self.cur() == 0 {
                        return self.error("EOF with unterminated \"");
                    }
                }
                b'\\' => {
                    if self.parse_backslash() {
                        self.add_char(target);
                    }
                }
                _ => self.add_char(target),
            }
        }
    }

    fn parse_single_quote(&mut self, target: &mut usize) -> ParseResult<()> {
        self.pos += 1;
        loop {
            match self.cur() {
                b'\'' => {
                    self.pos += 1;
                    return Ok(());
                }
                0 => {
                    self.read_line_at(self.pos);
                    if self.cur() == 0 {
                        return self.error("EOF with unterminated '");
                    }
                }
                _ => self.add_char(target),
            }
        }
    }

    /// Nothing may follow the arguments of a command but a comment, a `;` or
    /// the end of the line (strict mode).
    fn assert_eol(&mut self) -> ParseResult<()> {
        self.skip_whitespace();
        if !self.next_arg(Arg::Value)?.is_empty() {
            return self.error("too many arguments");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Package,
    Config,
    Option,
    List,
}

/// What an argument is, which says whether it is required and how uci
/// checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    PackageName,
    Type,
    SectionName,
    OptionName,
    Value,
}

impl Arg {
    fn required(self) -> bool {
        matches!(self, Arg::PackageName | Arg::Type | Arg::OptionName)
    }
}

/// Replaces the file at `path` with `contents` so that a reader sees the old
/// file or the new one, never a mix, and a crash leaves one of them whole.
///
/// The new text goes to a temporary file in the same directory (with the old
/// file's permissions and, where allowed, owner; 0600 like uci for a new
/// file), is fsynced, renamed over `path` and the directory fsynced. A
/// symlink at `path` is followed, as uci does. On an error before the rename
/// the old file is untouched and the temporary file removed; an error from
/// the final directory fsync means the new file is in place but perhaps not
/// yet durable.
pub fn write_atomically(path: &Path, contents: &str) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(file_name) = target.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        ));
    };
    let old = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };

    let (temp_path, mut file) = {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let mut attempt = 0;
        loop {
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut name = std::ffi::OsString::from(".");
            name.push(file_name);
            name.push(format!(".meshd-{}-{n}", std::process::id()));
            let candidate = dir.join(name);
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&candidate)
            {
                Ok(f) => break (candidate, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    };

    let written = (|| {
        file.write_all(contents.as_bytes())?;
        if let Some(old) = &old {
            // Best effort: only root may give a file away.
            let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
            file.set_permissions(old.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&temp_path, &target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(e);
    }
    fs::File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Package {
        match Package::parse(text) {
            Ok(p) => p,
            Err(e) => panic!("{e} in {text:?}"),
        }
    }

    fn parse_err(text: &str) -> ParseError {
        match Package::parse(text) {
            Ok(p) => panic!("parsed {p:?} from {text:?}"),
            Err(e) => e,
        }
    }

    /// The content without line numbers (sections made in code have none).
    fn strip_lines(mut p: Package) -> Package {
        for s in &mut p.sections {
            s.line = 0;
            for o in &mut s.options {
                o.line = 0;
            }
        }
        p
    }

    fn single(p: &Package, section: usize, option: &str) -> Option<String> {
        p.sections[section]
            .get(option)
            .and_then(|v| v.as_single())
            .map(str::to_string)
    }

    #[test]
    fn reads_quoting_styles_and_their_concatenation() {
        let p = parse(
            "config t 'n'\n\
             \toption bare word\n\
             \toption sq 'a b\\c'\n\
             \toption dq \"x\\\"y\\\\z\"\n\
             \toption cat 'a'\"b\"c\n\
             \toption esc 'it'\\''s'\n\
             \toption bs a\\ b\n",
        );
        assert_eq!(single(&p, 0, "bare").as_deref(), Some("word"));
        assert_eq!(single(&p, 0, "sq").as_deref(), Some("a b\\c"));
        assert_eq!(single(&p, 0, "dq").as_deref(), Some("x\"y\\z"));
        assert_eq!(single(&p, 0, "cat").as_deref(), Some("abc"));
        assert_eq!(single(&p, 0, "esc").as_deref(), Some("it's"));
        assert_eq!(single(&p, 0, "bs").as_deref(), Some("a b"));
    }

    #[test]
    fn comments_end_arguments_even_inside_bare_words() {
        let p = parse("config t n # c\n  # whole line\n\toption a b#c\n\toption q '#x' # y\n");
        assert_eq!(single(&p, 0, "a").as_deref(), Some("b"));
        assert_eq!(single(&p, 0, "q").as_deref(), Some("#x"));
    }

    #[test]
    fn quotes_may_span_lines_and_keep_the_newlines() {
        let p = parse("config t n\n\toption a 'one\ntwo'\n\toption b \"x\ny\"\n\toption c after\n");
        assert_eq!(single(&p, 0, "a").as_deref(), Some("one\ntwo"));
        assert_eq!(single(&p, 0, "b").as_deref(), Some("x\ny"));
        assert_eq!(p.sections[0].option("c").map(|o| o.line), Some(6));
    }

    #[test]
    fn a_backslash_at_the_end_of_a_line_joins_the_next() {
        let p = parse("config t n\n\toption a \"one\\\ntwo\"\n\toption b x\\\ny\n");
        assert_eq!(single(&p, 0, "a").as_deref(), Some("onetwo"));
        assert_eq!(single(&p, 0, "b").as_deref(), Some("xy"));
    }

    #[test]
    fn abbreviated_commands_and_semicolons() {
        let p = parse("c t n ; o a 1 ; l b 2 ; l b 3\n");
        assert_eq!(single(&p, 0, "a").as_deref(), Some("1"));
        assert_eq!(
            p.sections[0].get("b"),
            Some(&Value::List(vec!["2".into(), "3".into()]))
        );
        // As in uci: a `;` right after bare text ends the line there.
        let p = parse("config t n\n\toption a b;option c d\n");
        assert_eq!(single(&p, 0, "a").as_deref(), Some("b"));
        assert_eq!(p.sections[0].get("c"), None);
        // After a quote it stays a separator: `c` is then a command (config).
        let p = parse("config t n\n\toption a 'b';c u v\n");
        assert_eq!(p.sections.len(), 2);
        assert_eq!(
            parse_err("config t n\n\toption a 'b';c\n").message,
            "invalid command"
        );
        // ... and one at the very end of a line leaves the newline as a command.
        assert_eq!(
            parse_err("config t n\n\toption a b ;\n").message,
            "invalid command"
        );
    }

    #[test]
    fn option_after_list_replaces_and_list_after_option_extends() {
        let p =
            parse("config t n\n\tlist a 1\n\tlist a 2\n\toption b x\n\toption a 3\n\tlist b y\n");
        let names: Vec<_> = p.sections[0]
            .options
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(p.sections[0].get("a"), Some(&Value::Single("3".into())));
        assert_eq!(
            p.sections[0].get("b"),
            Some(&Value::List(vec!["x".into(), "y".into()]))
        );
    }

    #[test]
    fn setting_the_same_value_keeps_the_place_and_an_empty_one_does_nothing() {
        let p = parse("config t n\n\toption a 1\n\toption b 2\n\toption a 1\n\toption b ''\n");
        let names: Vec<_> = p.sections[0]
            .options
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(single(&p, 0, "b").as_deref(), Some("2"));
        let p = parse("config t n\n\tlist a ''\n");
        assert_eq!(
            p.sections[0].get("a"),
            Some(&Value::List(vec![String::new()]))
        );
    }

    #[test]
    fn a_named_section_given_twice_is_one_section() {
        let p = parse("config t a\n\toption x 1\nconfig t b\nconfig t a\n\toption y 2\n");
        assert_eq!(p.sections.len(), 2);
        assert_eq!(p.sections[0].line, 1);
        assert_eq!(single(&p, 0, "y").as_deref(), Some("2"));
        let e = parse_err("config t a\nconfig u a\n");
        assert_eq!(e.line, 2);
        assert_eq!(
            e.message,
            "section of different type overwrites prior section with same name"
        );
    }

    #[test]
    fn anonymous_sections_answer_to_the_names_uci_gives_them() {
        // First section: n_section 2, djb("rule") % 65536 = 0x92bd (the
        // familiar `cfg..92bd` of firewall rules).
        let p = parse("config rule\n\toption a 1\nconfig rule 'cfg0292bd'\n\toption b 2\n");
        assert_eq!(p.sections.len(), 1);
        assert_eq!(p.sections[0].name, None);
        assert_eq!(single(&p, 0, "b").as_deref(), Some("2"));
    }

    #[test]
    fn rejects_what_uci_rejects_on_the_line_it_names() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "option a b\n",
                1,
                "option/list command found before the first section",
            ),
            (
                "config t n\n\toption a \"b\n",
                2,
                "EOF with unterminated \"",
            ),
            (
                "config t n\n\toption a 'b\nc\n",
                3,
                "EOF with unterminated '",
            ),
            ("config t n\nbogus\n", 2, "invalid command"),
            ("config\n", 1, "invalid command"),
            ("config", 1, "config without name"),
            ("config \n", 1, "insufficient arguments"),
            ("config t n\n\toption\n", 2, "invalid command"),
            ("config t n\n\toption \n", 2, "insufficient arguments"),
            ("config t n-x\n", 1, "invalid character in name field"),
            (
                "config t n\n\toption a.b c\n",
                2,
                "invalid character in name field",
            ),
            ("config t\u{e9} n\n", 1, "invalid character in type field"),
            ("config t n x\n", 1, "too many arguments"),
            ("config t n\n\toption a b c\n", 2, "too many arguments"),
            ("package a.b\n", 1, "invalid character in name field"),
            ("\n\nconfig t n\n\toption a 'x\0'\n", 4, "NUL byte in file"),
        ];
        for &(text, line, message) in cases {
            let e = parse_err(text);
            assert_eq!((e.line, e.message.as_str()), (line, message), "{text:?}");
        }
    }

    #[test]
    fn accepts_what_uci_accepts_at_the_edges() {
        let p = parse("package meshd\n\nconfig 'odd-type.x'\n\toption a 1\r\n");
        assert_eq!(p.sections[0].stype, "odd-type.x");
        assert_eq!(single(&p, 0, "a").as_deref(), Some("1"));
        assert_eq!(parse("").sections.len(), 0);
        assert_eq!(
            parse("config t n\n\toption a 1").sections[0].options.len(),
            1
        );
    }

    #[test]
    fn show_numbers_anonymous_sections_among_all_of_their_type() {
        let p = parse("config m a\nconfig m\nconfig x\nconfig m\n\toption v \"it's\"\n");
        assert_eq!(
            p.show("pkg"),
            "pkg.a=m\npkg.@m[1]=m\npkg.@x[0]=x\npkg.@m[2]=m\npkg.@m[2].v='it'\\''s'\n"
        );
    }

    #[test]
    fn writes_types_a_bare_word_cannot_carry_quoted() {
        let mut p = Package::new();
        p.add_section("we'ird#", None).unwrap();
        let text = p.to_config_file();
        assert_eq!(text, "\nconfig 'we'\\''ird#'\n\n");
        assert_eq!(strip_lines(parse(&text)), p);
    }

    #[test]
    fn edits() {
        let mut p = parse("config member 'r2'\n\toption asn 1\n\toption overlay x\n");
        assert!(p.add_section("member", Some("r2")).is_err());
        assert!(p.add_section("member", Some("bad name")).is_err());
        let s = p.add_section("member", Some("r3")).unwrap();
        s.set("asn", Value::Single("3".into())).unwrap();
        s.add_list("prefix", "10.3.0.0/16").unwrap();
        s.add_list("prefix", "fd03::/64").unwrap();
        assert!(s.set("bad-name", Value::Single("x".into())).is_err());
        assert!(s.set("x", Value::Single("a\0b".into())).is_err());

        let r2 = p.section_mut("r2").unwrap();
        r2.set("asn", Value::Single("2".into())).unwrap();
        r2.set("overlay", Value::Single(String::new())).unwrap();
        assert_eq!(r2.remove("nothing"), None);
        assert_eq!(
            p.to_config_file(),
            "\nconfig member 'r2'\n\toption asn '2'\n\n\
             config member 'r3'\n\toption asn '3'\n\tlist prefix '10.3.0.0/16'\n\tlist prefix 'fd03::/64'\n\n"
        );
        assert!(p.remove_section("r2"));
        assert!(!p.remove_section("r2"));
        assert_eq!(p.sections.len(), 1);
        assert_eq!(p.sections_of_type("member").count(), 1);
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("meshd-uci-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomically_replaces_and_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch_dir("replace");
        let path = dir.join("meshd");
        write_atomically(&path, "first\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "first\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, "second\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(entries(&dir), ["meshd"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_atomically_follows_a_symlink() {
        let dir = scratch_dir("symlink");
        fs::write(dir.join("real"), "old").unwrap();
        std::os::unix::fs::symlink("real", dir.join("link")).unwrap();
        write_atomically(&dir.join("link"), "new").unwrap();
        assert_eq!(fs::read_to_string(dir.join("real")).unwrap(), "new");
        assert!(fs::symlink_metadata(dir.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_atomically_leaves_nothing_behind_on_failure() {
        let dir = scratch_dir("failure");
        // The target is a non-empty directory: the rename fails.
        fs::create_dir(dir.join("meshd")).unwrap();
        fs::write(dir.join("meshd").join("keep"), "x").unwrap();
        assert!(write_atomically(&dir.join("meshd"), "new").is_err());
        assert_eq!(entries(&dir), ["meshd"]);
        assert_eq!(
            fs::read_to_string(dir.join("meshd").join("keep")).unwrap(),
            "x"
        );
        // No such directory: nothing is created.
        assert!(write_atomically(&dir.join("missing").join("meshd"), "new").is_err());
        assert_eq!(entries(&dir), ["meshd"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
