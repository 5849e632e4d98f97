//! Minimal edits of `/etc/config/meshd` for the ubus methods `member_add`
//! and `member_del`.
//!
//! meshd edits the file's text, not a re-export of it: everything but the
//! added or removed member section stays byte for byte (comments, other
//! sections, quoting, blank lines). `uci commit` would rewrite the whole file
//! and drop every comment; meshd keeps them. uci reads the result as it
//! reads any file, and meshd has checked it as it checks the file it loads.
//!
//! # Validation
//!
//! The new text is built, then read back with [`Config::parse`], the very
//! checks the daemon applies when it loads the file; any error refuses the
//! edit and is returned as the parser reported it (its line numbers are
//! those of the file as it would have been). A file that does not pass those
//! checks to begin with is not edited at all ([`EditError::BrokenFile`]).
//! Then, as a safety net for odd layouts, the new text must read, as UCI, as
//! exactly the old sections plus the new one (or minus the removed one);
//! otherwise the edit is refused ([`EditError::Unsupported`]).
//!
//! # What `member_add` writes
//!
//! The section exactly as `uci commit` writes one (the writer is
//! [`Package::to_config_file`], golden-tested against the real uci): `config
//! member '<name>'`, then a tab-indented line per option in the order of
//! [`NewMember`], values in `'...'` with an embedded `'` written `'\''`, the
//! list options (`prefix`, `endpoint`) as one `list` line per item. Empty
//! values are left out (uci ignores `option x ''`). It goes at the end of the
//! file, with a blank line before it as uci separates sections, keeping the
//! file's own ending: after a file that ends with a blank line (as uci writes
//! them) it ends with a blank line too, otherwise it does not. So adding a
//! member to a file uci wrote gives the file uci would have written.
//!
//! # What `member_del` removes
//!
//! Whole lines (a value spanning lines counts as one): the section's `config`
//! line and everything after it up to its last `option`/`list` line, then
//! the blank lines and indented comments after that, up to the next `config`
//! line, a comment at the start of a line, or the end of the file. Also the
//! comments at the start of a line directly above the `config` line (no
//! blank line between): they are taken to describe the section, unless they
//! begin the file (a file header). If what is removed ends the file and
//! does not end with a blank line, the blank line separating it from what
//! comes before goes too. So deleting a member just added gives back the
//! file as it was, byte for byte, when that file ended with a newline. A
//! section given in several `config` blocks (uci merges them) loses all of
//! them.
//!
//! # Writing
//!
//! The file is locked with `flock` as uci locks it for a commit, read, and
//! replaced with [`uci::write_atomically`]: a temporary file in the same
//! directory with the old file's mode (and owner, where allowed), fsynced,
//! renamed over the file, the directory fsynced. On any error the file is
//! left as it was and no temporary file is left behind. No `.bak` copy is
//! kept (uci keeps none either): the rename is the whole commit. Pending
//! changes made with `uci set` but not yet committed live in uci's delta
//! directory and are applied on top of this file at the next `uci commit`.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::config::{Config, ConfigError};
use crate::uci::{self, Package, Section, UciOption, Value};

/// A member to add, its values as text, exactly as they would stand in the
/// file: they are checked by the same code that reads the file (see
/// [`crate::config`] for what each option takes). `None` or an empty text
/// leaves an option out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMember {
    /// The section name: 1..32 of `A-Z a-z 0-9 _`.
    pub name: String,
    /// `1`/`0` (or `yes`/`no`, ...); absent means enabled.
    pub enabled: Option<String>,
    /// Required: a WireGuard public key (44 characters of base64).
    pub public_key: String,
    /// An IPv4 address; empty: left out, derived from the key.
    pub overlay: String,
    pub overlay6: Option<String>,
    /// 1..4294967294, not 23456; empty: left out, derived from the key.
    pub asn: String,
    /// `list prefix`: what the member may originate.
    pub prefixes: Vec<String>,
    /// `list endpoint`: `a.b.c.d:port`, `[v6]:port` or `host:port`.
    pub endpoints: Vec<String>,
    pub keepalive: Option<String>,
    pub hold_time: Option<String>,
    pub bfd: Option<String>,
    pub bfd_interval: Option<String>,
    pub bfd_multiplier: Option<String>,
    /// `1`/`0`: the member is a game exit.
    pub exit: Option<String>,
    /// `1`: we brought it into the group (an invite flow wrote it).
    pub vouch: Option<String>,
    /// The member whose group record brought it in.
    pub via: Option<String>,
}

impl NewMember {
    /// A member with its required options and nothing else.
    pub fn new(name: &str, public_key: &str, overlay: &str, asn: &str) -> NewMember {
        NewMember {
            name: name.to_string(),
            public_key: public_key.to_string(),
            overlay: overlay.to_string(),
            asn: asn.to_string(),
            ..NewMember::default()
        }
    }

    /// The section as meshd writes it (named, type `member`; no line numbers).
    pub fn to_section(&self) -> Section {
        fn single(options: &mut Vec<UciOption>, name: &str, value: Option<&String>) {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                options.push(UciOption {
                    name: name.to_string(),
                    value: Value::Single(v.clone()),
                    line: 0,
                });
            }
        }
        let mut options = Vec::new();
        single(&mut options, "enabled", self.enabled.as_ref());
        single(&mut options, "public_key", Some(&self.public_key));
        single(&mut options, "overlay", Some(&self.overlay));
        single(&mut options, "overlay6", self.overlay6.as_ref());
        single(&mut options, "asn", Some(&self.asn));
        for (name, items) in [("prefix", &self.prefixes), ("endpoint", &self.endpoints)] {
            if !items.is_empty() {
                options.push(UciOption {
                    name: name.to_string(),
                    value: Value::List(items.clone()),
                    line: 0,
                });
            }
        }
        single(&mut options, "keepalive", self.keepalive.as_ref());
        single(&mut options, "hold_time", self.hold_time.as_ref());
        single(&mut options, "bfd", self.bfd.as_ref());
        single(&mut options, "bfd_interval", self.bfd_interval.as_ref());
        single(&mut options, "bfd_multiplier", self.bfd_multiplier.as_ref());
        single(&mut options, "exit", self.exit.as_ref());
        single(&mut options, "vouch", self.vouch.as_ref());
        single(&mut options, "via", self.via.as_ref());
        Section {
            stype: "member".to_string(),
            name: Some(self.name.clone()),
            line: 0,
            options,
        }
    }

    /// The section's text as `uci commit` writes it: `config member
    /// '<name>'` and its option lines, each ending in a newline, without the
    /// blank line uci puts before it.
    pub fn section_text(&self) -> String {
        let file = Package {
            sections: vec![self.to_section()],
        }
        .to_config_file();
        // to_config_file() is "\n" + the section + "\n".
        file[1..file.len() - 1].to_string()
    }
}

/// Why an edit was refused. The file is unchanged in every case.
#[derive(Debug)]
pub enum EditError {
    /// The file as it stands fails meshd's checks (or is not UTF-8): meshd
    /// does not edit a file it would not run with. The errors name its lines.
    BrokenFile(Vec<ConfigError>),
    /// With the new member the file would fail meshd's checks (bad key,
    /// prefix, endpoint; a public key, AS number or overlay address another
    /// member has, ...). The errors are the parser's, with the lines the file
    /// would have had.
    Rejected(Vec<ConfigError>),
    /// Not a possible member name (1..32 of `A-Z a-z 0-9 _`).
    InvalidName(String),
    /// A section of that name exists (a member or not), on `line`.
    NameTaken { name: String, line: usize },
    /// `member_del` of a member the file does not have.
    NoSuchMember(String),
    /// The file's layout (e.g. several sections on one line) does not allow
    /// an edit of whole lines that leaves the other sections as they are.
    Unsupported(String),
    /// Opening, locking, reading or writing the file.
    Io { path: PathBuf, error: io::Error },
}

impl EditError {
    /// The configuration errors of [`EditError::BrokenFile`] and
    /// [`EditError::Rejected`]; empty for the others.
    pub fn config_errors(&self) -> &[ConfigError] {
        match self {
            EditError::BrokenFile(errors) | EditError::Rejected(errors) => errors,
            _ => &[],
        }
    }
}

fn join_errors(f: &mut fmt::Formatter<'_>, errors: &[ConfigError]) -> fmt::Result {
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            f.write_str("\n")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::BrokenFile(errors) => {
                f.write_str("the configuration has errors, not edited:\n")?;
                join_errors(f, errors)
            }
            EditError::Rejected(errors) => join_errors(f, errors),
            EditError::InvalidName(name) => write!(
                f,
                "'{name}' is not a member name (1..{} of A-Z a-z 0-9 _)",
                crate::config::MAX_MEMBER_NAME
            ),
            EditError::NameTaken { name, line } => {
                write!(f, "a section named '{name}' exists already (line {line})")
            }
            EditError::NoSuchMember(name) => write!(f, "no member named '{name}'"),
            EditError::Unsupported(why) => write!(f, "cannot edit the file: {why}"),
            EditError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for EditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EditError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Adds `member` to the UCI file at `path` (see the module documentation).
pub fn member_add(path: &Path, member: &NewMember) -> Result<(), EditError> {
    edit_file(path, |text| add_member_text(text, path, member))
}

/// Removes the member `name` (a named section, or an anonymous one with
/// `option name`) from the UCI file at `path`.
pub fn member_del(path: &Path, name: &str) -> Result<(), EditError> {
    edit_file(path, |text| del_member_text(text, path, name))
}

/// [`member_add`] on text: the new text, or why not. `file` only names the
/// file in errors.
pub fn add_member_text(text: &str, file: &Path, member: &NewMember) -> Result<String, EditError> {
    let (_, package) = check_current(text, file)?;
    let name = &member.name;
    if !uci::is_valid_name(name) {
        return Err(EditError::InvalidName(name.clone()));
    }
    if let Some(existing) = package.section(name) {
        return Err(EditError::NameTaken {
            name: name.clone(),
            line: existing.line,
        });
    }

    let section = member.to_section();
    let section_text = member.section_text();
    let mut new = String::with_capacity(text.len() + section_text.len() + 2);
    new.push_str(text);
    if text.is_empty() {
        new.push('\n');
    } else if !ends_with_blank_line(text) {
        if !text.ends_with('\n') {
            new.push('\n');
        }
        new.push('\n');
    }
    new.push_str(&section_text);
    if text.is_empty() || ends_with_blank_line(text) {
        new.push('\n');
    }

    Config::parse(&new, file).map_err(EditError::Rejected)?;
    let mut expected = strip_lines(package);
    expected.sections.push(section);
    verify(&new, &expected)?;
    Ok(new)
}

/// [`member_del`] on text: the new text, or why not. `file` only names the
/// file in errors.
pub fn del_member_text(text: &str, file: &Path, name: &str) -> Result<String, EditError> {
    let (config, package) = check_current(text, file)?;
    let target = member_section(&config, &package, name)?;
    let lines = logical_lines(text);
    let owners = section_owners(text, &lines, &package);
    let mut remove = vec![false; lines.len()];
    let mut found = false;
    for &(config_line, owner) in &owners {
        if owner != Some(target) {
            continue;
        }
        found = true;
        let (start, end) = block_to_remove(&lines, config_line);
        remove[start..end].iter_mut().for_each(|r| *r = true);
    }
    remove_separator_before_end(&lines, &mut remove);
    if !found {
        return Err(EditError::Unsupported(format!(
            "the 'config' line of member '{name}' was not found"
        )));
    }
    let new: String = lines
        .iter()
        .zip(&remove)
        .filter(|(_, &r)| !r)
        .map(|(l, _)| &text[l.start..l.end])
        .collect();

    let mut expected = strip_lines(package);
    expected.sections.remove(target);
    verify(&new, &expected)?;
    Config::parse(&new, file).map_err(EditError::Rejected)?;
    Ok(new)
}

/// The index in `package` of member `name`'s section: a named section, or
/// an anonymous one with `option name`.
fn member_section(config: &Config, package: &Package, name: &str) -> Result<usize, EditError> {
    if config.member(name).is_none() {
        return Err(EditError::NoSuchMember(name.to_string()));
    }
    package
        .sections
        .iter()
        .position(|s| s.stype == "member" && s.name.as_deref() == Some(name))
        .or_else(|| {
            package.sections.iter().position(|s| {
                s.stype == "member"
                    && s.name.is_none()
                    && s.get("name").and_then(Value::as_single) == Some(name)
            })
        })
        .ok_or_else(|| EditError::NoSuchMember(name.to_string()))
}

/// Sets `options` (name, value) on the member `name` at `path` (see
/// [`set_member_options_text`]).
pub fn member_set(path: &Path, name: &str, options: &[(&str, &str)]) -> Result<(), EditError> {
    edit_file(path, |text| {
        set_member_options_text(text, path, name, options)
    })
}

/// Sets options of the member `name` in `text`: each `option` line of that
/// name in the section is replaced by `\toption NAME 'VALUE'`; an option the
/// section lacks is added after its last option line. Every other line
/// stays byte for byte (comments in the section too). The result must read
/// as the old sections with just these options set, and pass meshd's
/// checks.
pub fn set_member_options_text(
    text: &str,
    file: &Path,
    name: &str,
    options: &[(&str, &str)],
) -> Result<String, EditError> {
    let (config, package) = check_current(text, file)?;
    let target = member_section(&config, &package, name)?;
    let mut expected = strip_lines(package.clone());
    for (option, value) in options {
        if value.is_empty() {
            return Err(EditError::Unsupported(format!(
                "option '{option}': an empty value"
            )));
        }
        expected.sections[target]
            .set(option, Value::Single(value.to_string()))
            .map_err(|e| EditError::Unsupported(e.to_string()))?;
    }
    let lines = logical_lines(text);
    let owners = section_owners(text, &lines, &package);
    // Per line index: the text that replaces it, if any.
    let mut replaced: Vec<Option<String>> = vec![None; lines.len()];
    let mut last_command = None;
    for &(config_line, owner) in &owners {
        if owner != Some(target) {
            continue;
        }
        let next_config = lines[config_line + 1..]
            .iter()
            .position(|l| l.kind == Kind::Config)
            .map_or(lines.len(), |p| config_line + 1 + p);
        for i in config_line..next_config {
            if matches!(lines[i].kind, Kind::Config | Kind::Command) {
                last_command = Some(i);
            }
            if lines[i].kind != Kind::Command {
                continue;
            }
            let mut words = text[lines[i].start..lines[i].end].split_whitespace();
            let (Some("option"), Some(word)) = (words.next(), words.next()) else {
                continue;
            };
            let word = word.trim_matches(|c| c == '\'' || c == '"');
            if let Some((option, value)) = options.iter().find(|(o, _)| *o == word) {
                replaced[i] = Some(uci::option_line(option, value));
            }
        }
    }
    let Some(after) = last_command else {
        return Err(EditError::Unsupported(format!(
            "the 'config' line of member '{name}' was not found"
        )));
    };
    let mut added = String::new();
    for (option, value) in options {
        if package.sections[target].option(option).is_none() {
            added.push_str(&uci::option_line(option, value));
        }
    }
    let mut new = String::with_capacity(text.len() + added.len() + 64);
    for (i, l) in lines.iter().enumerate() {
        match &replaced[i] {
            Some(r) => new.push_str(r),
            None => new.push_str(&text[l.start..l.end]),
        }
        if i == after && !added.is_empty() {
            if !new.ends_with('\n') {
                new.push('\n');
            }
            new.push_str(&added);
        }
    }
    verify(&new, &expected)?;
    Config::parse(&new, file).map_err(EditError::Rejected)?;
    Ok(new)
}

/// The file must pass meshd's checks before it is edited.
fn check_current(text: &str, file: &Path) -> Result<(Config, Package), EditError> {
    let config = Config::parse(text, file).map_err(EditError::BrokenFile)?;
    let package = Package::parse(text).map_err(|e| {
        // Config::parse read it: cannot happen, but say so if it does.
        EditError::Unsupported(e.to_string())
    })?;
    Ok((config, package))
}

/// The new text must read as exactly the sections expected.
fn verify(new: &str, expected: &Package) -> Result<(), EditError> {
    match Package::parse(new).map(strip_lines) {
        Ok(p) if p == *expected => Ok(()),
        _ => Err(EditError::Unsupported(
            "the file's layout does not allow changing one section without touching others"
                .to_string(),
        )),
    }
}

fn strip_lines(mut p: Package) -> Package {
    for s in &mut p.sections {
        s.line = 0;
        for o in &mut s.options {
            o.line = 0;
        }
    }
    p
}

/// Is the last line of `text` (which ends with a newline) blank?
fn ends_with_blank_line(text: &str) -> bool {
    let Some(body) = text.strip_suffix('\n') else {
        return false;
    };
    let last = &body[body.rfind('\n').map_or(0, |i| i + 1)..];
    last.bytes().all(is_blank_byte)
}

/// C's `isspace` but for the newline.
fn is_blank_byte(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

// ---- the file as lines ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing but white space.
    Blank,
    /// Only a comment; `indented` if white space comes before the `#`.
    Comment { indented: bool },
    /// Begins with a `config` command.
    Config,
    /// Begins with another command (`option`, `list`, `package`).
    Command,
}

/// One line as uci reads it: a physical line, or several when a quoted
/// value spans lines or a backslash ends one. `end` is past its newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    start: usize,
    end: usize,
    kind: Kind,
}

fn logical_lines(text: &str) -> Vec<Line> {
    let b = text.as_bytes();
    let mut lines = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && is_blank_byte(b[i]) {
            i += 1;
        }
        let kind = if i >= b.len() || b[i] == b'\n' {
            i = (i + 1).min(b.len());
            Kind::Blank
        } else if b[i] == b'#' {
            let indented = i > start;
            i = physical_line_end(b, i);
            Kind::Comment { indented }
        } else {
            let word_end = (i..b.len())
                .find(|&j| matches!(b[j], b' ' | b'\t' | b'\n'))
                .unwrap_or(b.len());
            let kind = match &b[i..word_end] {
                b"config" | b"c" => Kind::Config,
                _ => Kind::Command,
            };
            i = command_line_end(b, i);
            kind
        };
        lines.push(Line {
            start,
            end: i,
            kind,
        });
    }
    lines
}

/// Past the next newline (or the end).
fn physical_line_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| from + p + 1)
}

/// Where a line of commands ends, following uci's quoting: `'...'` and
/// `"..."` may span lines, a backslash takes the next character (a newline
/// too, which joins the next line), `#` outside quotes comments out the rest
/// of the physical line.
fn command_line_end(b: &[u8], from: usize) -> usize {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut i = from;
    // The index of the last byte a backslash at `i` takes.
    let escaped = |i: usize| {
        if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
            i + 2
        } else {
            i + 1
        }
    };
    while i < b.len() {
        let c = b[i];
        match quote {
            Quote::None => match c {
                b'\n' => return i + 1,
                b'#' => return physical_line_end(b, i),
                b'\'' => quote = Quote::Single,
                b'"' => quote = Quote::Double,
                b'\\' => i = escaped(i),
                _ => {}
            },
            Quote::Single => {
                if c == b'\'' {
                    quote = Quote::None;
                }
            }
            Quote::Double => match c {
                b'"' => quote = Quote::None,
                b'\\' => i = escaped(i),
                _ => {}
            },
        }
        i += 1;
    }
    b.len()
}

/// For each line that begins with `config`: its index in `lines` and the
/// index in `package.sections` of the section it opens or continues (`None`
/// if that cannot be told, e.g. a reference to an anonymous section by the
/// name uci makes up for it).
fn section_owners(text: &str, lines: &[Line], package: &Package) -> Vec<(usize, Option<usize>)> {
    let mut owners = Vec::new();
    let mut created = 0;
    for (index, line) in lines.iter().enumerate() {
        if line.kind != Kind::Config {
            continue;
        }
        // The line on its own says the type and name.
        let alone = Package::parse(&text[line.start..line.end]).ok();
        let header = alone
            .as_ref()
            .filter(|p| p.sections.len() == 1)
            .map(|p| &p.sections[0]);
        let owner = match header {
            None => None,
            Some(h) => match &h.name {
                None => {
                    created += 1;
                    Some(created - 1)
                }
                Some(name) => {
                    let earlier = package.sections[..created.min(package.sections.len())]
                        .iter()
                        .position(|s| s.name.as_deref() == Some(name.as_str()));
                    match earlier {
                        Some(i) => Some(i),
                        None if package.sections.get(created).and_then(|s| s.name.as_ref())
                            == Some(name) =>
                        {
                            created += 1;
                            Some(created - 1)
                        }
                        None => None,
                    }
                }
            },
        };
        owners.push((index, owner));
    }
    owners
}

/// The lines to remove for the `config` line at `config_line`, as a range
/// of line indices (see the module documentation for the rules).
fn block_to_remove(lines: &[Line], config_line: usize) -> (usize, usize) {
    let next_config = lines[config_line + 1..]
        .iter()
        .position(|l| l.kind == Kind::Config)
        .map_or(lines.len(), |p| config_line + 1 + p);
    let last_command = (config_line..next_config)
        .rev()
        .find(|&i| matches!(lines[i].kind, Kind::Config | Kind::Command))
        .unwrap_or(config_line);
    let mut end = last_command + 1;
    while end < next_config
        && matches!(
            lines[end].kind,
            Kind::Blank | Kind::Comment { indented: true }
        )
    {
        end += 1;
    }

    let mut start = config_line;
    while start > 0 && lines[start - 1].kind == (Kind::Comment { indented: false }) {
        start -= 1;
    }
    if start == 0 {
        // A comment at the top of the file is the file's, not the section's.
        start = config_line;
    }
    (start, end)
}

/// When what is removed ends the file without a blank line, the blank line
/// before it (which separated it from the rest) goes too.
fn remove_separator_before_end(lines: &[Line], remove: &mut [bool]) {
    let Some(last) = lines.len().checked_sub(1) else {
        return;
    };
    if !remove[last] || lines[last].kind == Kind::Blank {
        return;
    }
    let start = (0..=last).rev().find(|&i| !remove[i]).map_or(0, |i| i + 1);
    if start > 0 && lines[start - 1].kind == Kind::Blank {
        remove[start - 1] = true;
    }
}

// ---- the file ----

/// Locks, reads, edits, writes.
fn edit_file(
    path: &Path,
    edit: impl FnOnce(&str) -> Result<String, EditError>,
) -> Result<(), EditError> {
    edit_file_with(path, edit, |_, _| true)
}

/// Locks, reads, edits, and writes if `write(old, new)` says so.
fn edit_file_with(
    path: &Path,
    edit: impl FnOnce(&str) -> Result<String, EditError>,
    write: impl FnOnce(&str, &str) -> bool,
) -> Result<(), EditError> {
    let io_error = |error: io::Error| EditError::Io {
        path: path.to_path_buf(),
        error,
    };
    let held = lock(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    held.file().read_to_end(&mut bytes).map_err(io_error)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        EditError::BrokenFile(vec![ConfigError {
            file: path.to_path_buf(),
            line: good.iter().filter(|&&b| b == b'\n').count() + 1,
            section: String::new(),
            option: None,
            message: "not UTF-8 text".to_string(),
        }])
    })?;
    let new = edit(&text)?;
    if write(&text, &new) {
        uci::write_atomically(path, &new).map_err(io_error)?;
    }
    drop(held);
    Ok(())
}

/// [`edit_file`], but the file is written only if `edit` changed its text.
pub fn edit_file_if_changed(
    path: &Path,
    edit: impl FnOnce(&str) -> Result<String, EditError>,
) -> Result<(), EditError> {
    edit_file_with(path, edit, |old, new| old != new)
}

/// The file, open and (where the file system allows) locked.
enum Held {
    Locked(Flock<File>),
    Unlocked(File),
}

impl Held {
    fn file(&self) -> &File {
        match self {
            Held::Locked(f) => f,
            Held::Unlocked(f) => f,
        }
    }
}

/// How long to wait for another writer (a `uci commit`): 100 × 20 ms.
const LOCK_ATTEMPTS: u32 = 100;
const LOCK_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Opens the file and takes the exclusive `flock` uci takes to commit. uci
/// replaces the file by a rename while it holds the lock, so once the lock
/// is ours the path may name a newer file: then again with that one.
fn lock(path: &Path) -> io::Result<Held> {
    use std::os::unix::fs::MetadataExt;
    for _ in 0..LOCK_ATTEMPTS {
        let file = File::open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => {
                let held = locked.metadata()?;
                let now = fs::metadata(path)?;
                if (held.dev(), held.ino()) == (now.dev(), now.ino()) {
                    return Ok(Held::Locked(locked));
                }
            }
            Err((_, Errno::EWOULDBLOCK)) | Err((_, Errno::EINTR)) => std::thread::sleep(LOCK_PAUSE),
            Err((file, Errno::ENOSYS | Errno::ENOLCK | Errno::EOPNOTSUPP)) => {
                return Ok(Held::Unlocked(file))
            }
            Err((_, errno)) => return Err(errno.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        "locked by another process (a uci commit?)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        logical_lines(text)
            .into_iter()
            .map(|l| (l.kind, &text[l.start..l.end]))
            .collect()
    }

    #[test]
    fn lines_follow_uci_quoting() {
        let text = "# top\nconfig meshd 'main' # c\n\toption a 'x\nconfig y'\n\toption b \"q\\\"\nconfig\"\n\toption c x\\\nconfig\n  \n\t# in\nc member\n\toption d '#'#\"\nlist e f";
        assert_eq!(
            kinds(text),
            [
                (Kind::Comment { indented: false }, "# top\n"),
                (Kind::Config, "config meshd 'main' # c\n"),
                (Kind::Command, "\toption a 'x\nconfig y'\n"),
                (Kind::Command, "\toption b \"q\\\"\nconfig\"\n"),
                (Kind::Command, "\toption c x\\\nconfig\n"),
                (Kind::Blank, "  \n"),
                (Kind::Comment { indented: true }, "\t# in\n"),
                (Kind::Config, "c member\n"),
                (Kind::Command, "\toption d '#'#\"\n"),
                (Kind::Command, "list e f"),
            ]
        );
        let joined: String = kinds(text).iter().map(|(_, t)| *t).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn blank_line_endings() {
        assert!(ends_with_blank_line("a\n\n"));
        assert!(ends_with_blank_line("a\n \t\n"));
        assert!(ends_with_blank_line("\n"));
        assert!(!ends_with_blank_line("a\n"));
        assert!(!ends_with_blank_line("a"));
        assert!(!ends_with_blank_line(""));
    }

    #[test]
    fn blocks_take_their_comments_and_leave_the_next_sections() {
        let text = "# header\nconfig member 'a'\n\toption x 1\n\n# about b\nconfig member 'b'\n\toption x 2\n\t# inside b\n\n# about c\nconfig member 'c'\n\toption x 3\n";
        let lines = logical_lines(text);
        let removed = |config_line: usize| {
            let (s, e) = block_to_remove(&lines, config_line);
            lines[s..e]
                .iter()
                .map(|l| &text[l.start..l.end])
                .collect::<String>()
        };
        assert_eq!(removed(1), "config member 'a'\n\toption x 1\n\n");
        assert_eq!(
            removed(5),
            "# about b\nconfig member 'b'\n\toption x 2\n\t# inside b\n\n"
        );
        assert_eq!(removed(10), "# about c\nconfig member 'c'\n\toption x 3\n");
        let mut remove = vec![false; lines.len()];
        remove[9..].iter_mut().for_each(|r| *r = true);
        remove_separator_before_end(&lines, &mut remove);
        assert_eq!(remove.iter().filter(|&&r| r).count(), 4);
        assert!(remove[8]);
    }

    #[test]
    fn setting_options_replaces_their_lines_and_adds_the_rest_after_the_last_option() {
        let key = "XHJPSd8c7/T+bScgUFYq1Jzx/ybgB+i0/HnCcYRTQEo=";
        let key2 = "QARvSsTxZBWGVxeh4eiTMHmJ7bApVCz8uJrB8TFqQwc=";
        let file = Path::new("/etc/config/meshd");
        let text = format!(
            "config meshd 'main'\n\toption private_key_file '/k'\n\n# my friend\nconfig member 'b'\n\toption enabled \"yes\" # on\n\toption public_key '{key}'\n\t# its numbers come from its key\n\nconfig member\n\toption name 'c'\n\toption public_key '{key2}'"
        );
        let new = set_member_options_text(&text, file, "b", &[("removed", "1"), ("enabled", "0")])
            .unwrap();
        assert_eq!(
            new,
            format!(
                "config meshd 'main'\n\toption private_key_file '/k'\n\n# my friend\nconfig member 'b'\n\toption enabled '0'\n\toption public_key '{key}'\n\toption removed '1'\n\t# its numbers come from its key\n\nconfig member\n\toption name 'c'\n\toption public_key '{key2}'"
            )
        );
        let c = Config::parse(&new, file).unwrap();
        assert!(c.member("b").is_some_and(|m| m.removed && !m.enabled));
        // An anonymous section, last in a file without a final newline.
        let new = set_member_options_text(&text, file, "c", &[("removed", "1")]).unwrap();
        assert_eq!(new, format!("{text}\n\toption removed '1'\n"));
        // A value the parser refuses leaves the text unchanged (an error).
        assert!(matches!(
            set_member_options_text(&text, file, "b", &[("removed", "maybe")]),
            Err(EditError::Rejected(_))
        ));
        assert!(matches!(
            set_member_options_text(&text, file, "nobody", &[("removed", "1")]),
            Err(EditError::NoSuchMember(_))
        ));
    }
}
