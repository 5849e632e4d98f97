//! The `meshd` ubus object: what `ubus call meshd ...` can ask, and the
//! notifications subscribers get.
//!
//! | method | arguments | answer |
//! |---|---|---|
//! | `status` | – | the whole `meshd status --json` document |
//! | `members` | – | `{"members": [...]}`: tunnels, path (direct or via whom, hops), NAT, BGP, BFD |
//! | `routes` | – | `{"routes": [...]}`: best path with AS path and why it won, the alternatives |
//! | `nat` | – | `{"nat": {...}}`: this router's NAT behaviour and PlayStation type |
//! | `consoles` | – | the exit part of `status`: consoles (each one's exit, public address, NAT type), the exits, this router's offer, mappings per home, counters |
//! | `reload` | – | re-reads `/etc/config/meshd` (as SIGHUP does); answered once applied or refused |
//! | `member_add` | `name`, `public_key`, optional `overlay`, `asn` (left out: derived from the key), `overlay6`, `prefix` (array), `endpoint` (array), `keepalive`, `hold_time`, `enabled`, `bfd`, `bfd_interval`, `bfd_multiplier`, `exit` | writes the member to the UCI file (atomically), then reloads |
//! | `member_del` | `name` | removes the member from the UCI file, then reloads |
//! | `member_remove` | `name` | removes the member from the group (marks its section removed and disabled; the group's records carry it), then reloads |
//!
//! Bad arguments (unknown, of the wrong type, or refused by meshd's own
//! configuration checks) answer INVALID_ARGUMENT and change nothing; a
//! missing member answers NOT_FOUND. The reason is logged.
//!
//! Notifications: `member` (`{"name", "event"}`: tunnel_up (the first
//! authenticated datagram since the tunnel was down or the member added),
//! tunnel_down (nothing authenticated for 30 s), session_up, session_down,
//! bfd_up, bfd_down (traffic moves; BGP goes only if BFD stays down for
//! `bfd_confirm`), bfd_admin_down (the member took BFD out of service:
//! no failure), traffic_moved and traffic_back (forwarding avoids the
//! member, or uses it again), added, removed) and `route`
//! (`{"prefix", "event", "via"}`: added, changed, removed), and `exit`
//! (`{"event": "chosen"|"lost", "console", "exit"}` when a console gets,
//! changes or loses its game exit; `{"event": "available"|"unavailable"}`;
//! `{"event": "offered"|"withdrawn", "public"}` for this router's own offer).
//!
//! [`METHODS`] is the one place a method is declared: its name, its
//! signature and its handler, which reaches the daemon only through
//! [`Api`].

use std::path::Path;

use crate::json::{Json, Sink};
use crate::status::Part;
use crate::ubus::{ArgType, Status, UbusObject};
use crate::uci_edit::{self, EditError, NewMember};

/// The object's path on the bus.
pub const OBJECT: &str = "meshd";

const NO_ARGS: &[(&str, ArgType)] = &[];

const MEMBER_ADD: &[(&str, ArgType)] = &[
    ("name", ArgType::String),
    ("public_key", ArgType::String),
    ("overlay", ArgType::String),
    ("overlay6", ArgType::String),
    ("asn", ArgType::Int64),
    ("prefix", ArgType::Array),
    ("endpoint", ArgType::Array),
    ("keepalive", ArgType::Int32),
    ("hold_time", ArgType::Int32),
    ("enabled", ArgType::Bool),
    ("bfd", ArgType::Bool),
    ("bfd_interval", ArgType::Int32),
    ("bfd_multiplier", ArgType::Int32),
    ("exit", ArgType::Bool),
];

/// What a method needs of the daemon. The daemon is the one real
/// implementation; the table's tests use a double.
pub trait Api {
    /// The status document (`meshd status --json`), or the part asked
    /// for, written into `sink` as one object.
    fn status(&self, part: Part, sink: &mut dyn Sink);
    /// The UCI file that `member_add`/`member_del` edit.
    fn config_path(&self) -> &Path;
    /// Sends a notification to the object's subscribers (if any).
    fn notify(&mut self, event_type: &str, data: Json);
    /// Makes an invite (as `meshd invite`): its token, or why not.
    fn invite(
        &mut self,
        name: &str,
        seconds: u64,
        endpoints: Vec<std::net::SocketAddr>,
    ) -> Result<String, String>;
    /// Starts joining with a token (as `meshd join`): or why not.
    fn join(&mut self, token: &str) -> Result<String, String>;
}

/// How an edit went: the member's name, or the status and why not.
pub type EditResult = Result<String, (Status, String)>;

/// A file edit a method asks for: it runs off the packet loop (it takes
/// uci's lock, which another writer may hold for up to 2 s, and fsyncs),
/// and the call is answered when it is done ([`finish_edit`]).
pub struct Edit {
    pub method: &'static str,
    /// The member event subscribers hear when it was written.
    pub event: &'static str,
    /// The edit of the file at the path given: the member's name, or why
    /// not.
    pub job: Box<dyn FnOnce(&Path) -> EditResult + Send>,
}

impl std::fmt::Debug for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edit")
            .field("method", &self.method)
            .finish()
    }
}

/// How a method answers: now, or once the file was re-read (off the
/// packet loop) and applied.
#[derive(Debug)]
pub enum Answer {
    Now(Result<Json, Status>),
    /// The status document or a part of it, written straight into the
    /// reply ([`Api::status`]): never built as a tree.
    Document(Part),
    /// `{"reloaded": true}` once the file was re-read and applied, or
    /// refused (the log says why, and the running configuration stays).
    AfterReload,
    /// Once its file edit ran and, when it was written, the file was
    /// re-read and applied: see [`finish_edit`].
    AfterEdit(Edit),
}

/// The answer to `reload`.
pub fn reloaded() -> Result<Json, Status> {
    Ok(Json::obj().with("reloaded", true))
}

/// A method of the object: what ubusd publishes and checks arguments
/// against (name, signature), and what answers it.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub name: &'static str,
    /// Argument name → blobmsg type, in the order registered.
    pub args: &'static [(&'static str, ArgType)],
    /// Called with arguments of the declared types (the object checks
    /// them first); answers the DATA table or the status, now or after a
    /// file edit.
    pub call: fn(&mut dyn Api, &Json) -> Answer,
}

/// Every method: the object registers exactly these, in this order (the
/// signature ubusd publishes), and calls are looked up here, so the two
/// cannot disagree.
pub const METHODS: &[Method] = &[
    Method {
        name: "status",
        args: NO_ARGS,
        call: |_, _| Answer::Document(Part::Whole),
    },
    Method {
        name: "members",
        args: NO_ARGS,
        call: |_, _| Answer::Document(Part::Members),
    },
    Method {
        name: "routes",
        args: NO_ARGS,
        call: |_, _| Answer::Document(Part::Routes),
    },
    Method {
        name: "nat",
        args: NO_ARGS,
        call: |_, _| Answer::Document(Part::Nat),
    },
    Method {
        // Consoles first: each one's exit, public address and NAT type;
        // then the exits the mesh offers, this router's own offer, its
        // mappings and counters.
        name: "consoles",
        args: NO_ARGS,
        call: |_, _| Answer::Document(Part::Exit),
    },
    Method {
        name: "reload",
        args: NO_ARGS,
        call: |_, _| Answer::AfterReload,
    },
    Method {
        name: "member_add",
        args: MEMBER_ADD,
        call: |_, args| match new_member(args) {
            Ok(m) => Answer::AfterEdit(Edit {
                method: "member_add",
                event: "added",
                job: Box::new(move |config| {
                    uci_edit::member_add(config, &m)
                        .map_err(|e| (edit_status(&e), e.to_string()))?;
                    Ok(m.name)
                }),
            }),
            Err(why) => refused("member_add", Status::InvalidArgument, why),
        },
    },
    Method {
        // An invite for a friend's router: {"token": ...}, or {"error":
        // why} (a name taken, too many pending, no endpoint known).
        name: "invite",
        args: &[
            ("name", ArgType::String),
            ("expires", ArgType::Int32),
            ("endpoint", ArgType::Array),
        ],
        call: |api, args| Answer::Now(Ok(invite_call(api, args))),
    },
    Method {
        // Join a mesh with a friend's token: {"state": "joining"}, or
        // {"error": why}; `invites` (or `status`) then tells how it went.
        name: "join",
        args: &[("token", ArgType::String)],
        call: |api, args| {
            Answer::Now(Ok(match string(args, "token") {
                Ok(Some(t)) => match api.join(&t) {
                    Ok(_) => Json::obj().with("state", "joining"),
                    Err(why) => Json::obj().with("error", why),
                },
                Ok(None) => Json::obj().with("error", "argument 'token' is missing"),
                Err(why) => Json::obj().with("error", why),
            }))
        },
    },
    Method {
        // Pending invites, their counters, and our own join.
        name: "invites",
        args: NO_ARGS,
        call: |_, _| Answer::Document(Part::Invites),
    },
    Method {
        name: "member_del",
        args: &[("name", ArgType::String)],
        call: |_, args| match member_name(args) {
            Ok(name) => Answer::AfterEdit(Edit {
                method: "member_del",
                event: "removed",
                job: Box::new(move |config| {
                    uci_edit::member_del(config, &name)
                        .map_err(|e| (edit_status(&e), e.to_string()))?;
                    Ok(name)
                }),
            }),
            Err(why) => refused("member_del", Status::InvalidArgument, why),
        },
    },
    Method {
        // Removes a member from the group (`meshd remove`): its section is
        // marked removed and disabled, and our signed record says so.
        name: "member_remove",
        args: &[("name", ArgType::String)],
        call: |_, args| match member_name(args) {
            Ok(name) => Answer::AfterEdit(remove_edit(name)),
            Err(why) => refused("member_remove", Status::InvalidArgument, why),
        },
    },
];

/// The edit that removes member `name` from the group: `option removed
/// '1'` and `option enabled '0'` on its section (the rest of the file as it
/// was); the reload closes its tunnel and our record lists it removed.
pub fn remove_edit(name: String) -> Edit {
    Edit {
        method: "member_remove",
        event: "removed",
        job: Box::new(move |config| {
            uci_edit::member_set(config, &name, &[("removed", "1"), ("enabled", "0")])
                .map_err(|e| (edit_status(&e), e.to_string()))?;
            Ok(name)
        }),
    }
}

/// A fresh object for the connection.
pub fn object() -> UbusObject {
    let signature: Vec<(&str, &[(&str, ArgType)])> =
        METHODS.iter().map(|m| (m.name, m.args)).collect();
    UbusObject::new(OBJECT, &signature)
}

/// Answers a call of `method`: METHOD_NOT_FOUND when the table has none.
pub fn call(api: &mut dyn Api, method: &str, args: &Json) -> Answer {
    match METHODS.iter().find(|m| m.name == method) {
        Some(m) => (m.call)(api, args),
        None => Answer::Now(Err(Status::MethodNotFound)),
    }
}

fn refused(method: &str, status: Status, why: String) -> Answer {
    log::warn!("ubus: {method} refused, nothing changed: {why}");
    Answer::Now(Err(status))
}

fn string(args: &Json, key: &str) -> Result<Option<String>, String> {
    match args.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("argument '{key}' must be a string")),
    }
}

fn number(args: &Json, key: &str) -> Result<Option<String>, String> {
    match args.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Int(i)) => Ok(Some(i.to_string())),
        Some(_) => Err(format!("argument '{key}' must be an integer")),
    }
}

fn flag(args: &Json, key: &str) -> Result<Option<String>, String> {
    match args.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(if *b { "1" } else { "0" }.into())),
        Some(Json::Int(i @ (0 | 1))) => Ok(Some(i.to_string())),
        Some(_) => Err(format!("argument '{key}' must be a boolean")),
    }
}

fn strings(args: &Json, key: &str) -> Result<Vec<String>, String> {
    match args.get(key) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Str(s)) => Ok(vec![s.clone()]),
        Some(Json::Arr(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("argument '{key}' must be an array of strings"))
            })
            .collect(),
        Some(_) => Err(format!("argument '{key}' must be an array of strings")),
    }
}

/// The `member_add` arguments as a UCI section (values checked later by
/// the configuration parser, exactly as if written by hand).
pub fn new_member(args: &Json) -> Result<NewMember, String> {
    let Json::Obj(fields) = args else {
        return Err("arguments must be a table".into());
    };
    for (k, _) in fields {
        if !MEMBER_ADD.iter().any(|(name, _)| name == k) {
            return Err(format!("unknown argument '{k}'"));
        }
    }
    let required = |key: &str, v: Option<String>| v.ok_or(format!("argument '{key}' is missing"));
    Ok(NewMember {
        name: required("name", string(args, "name")?)?,
        enabled: flag(args, "enabled")?,
        public_key: required("public_key", string(args, "public_key")?)?,
        // Left out: derived from the member's key (issue 17).
        overlay: string(args, "overlay")?.unwrap_or_default(),
        overlay6: string(args, "overlay6")?,
        asn: number(args, "asn")?.unwrap_or_default(),
        prefixes: strings(args, "prefix")?,
        endpoints: strings(args, "endpoint")?,
        keepalive: number(args, "keepalive")?,
        hold_time: number(args, "hold_time")?,
        bfd: flag(args, "bfd")?,
        bfd_interval: number(args, "bfd_interval")?,
        bfd_multiplier: number(args, "bfd_multiplier")?,
        exit: flag(args, "exit")?,
        // Written by hand: not ours to list in the group record, nor the
        // group's to remove.
        vouch: None,
        via: None,
    })
}

/// `invite {name, expires (s, default 86400), endpoint [...]}`.
fn invite_call(api: &mut dyn Api, args: &Json) -> Json {
    let parsed = (|| -> Result<(String, u64, Vec<std::net::SocketAddr>), String> {
        let name = string(args, "name")?.ok_or("argument 'name' is missing")?;
        let seconds = match args.get("expires") {
            None | Some(Json::Null) => 86400,
            Some(Json::Int(i)) if *i > 0 => *i as u64,
            Some(_) => return Err("argument 'expires' must be a positive integer (s)".into()),
        };
        let endpoints = strings(args, "endpoint")?
            .iter()
            .map(|e| {
                e.parse()
                    .map_err(|_| format!("endpoint '{e}': an address and port"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((name, seconds, endpoints))
    })();
    match parsed.and_then(|(name, seconds, endpoints)| api.invite(&name, seconds, endpoints)) {
        Ok(token) => Json::obj().with("token", token.trim()),
        Err(why) => Json::obj().with("error", why),
    }
}

/// The ubus status for an edit that failed, and why (for the log).
pub fn edit_status(e: &EditError) -> Status {
    match e {
        EditError::Rejected(_) | EditError::InvalidName(_) | EditError::NameTaken { .. } => {
            Status::InvalidArgument
        }
        EditError::NoSuchMember(_) => Status::NotFound,
        _ => Status::UnknownError,
    }
}

/// `member_del`'s argument: the member's name.
fn member_name(args: &Json) -> Result<String, String> {
    let Json::Obj(fields) = args else {
        return Err("arguments must be a table".into());
    };
    if let Some((k, _)) = fields.iter().find(|(k, _)| k != "name") {
        return Err(format!("unknown argument '{k}'"));
    }
    string(args, "name")?.ok_or("argument 'name' is missing".into())
}

/// After a member edit: when the file was written (the daemon has then
/// already re-read and applied it: the edit is no use until reloaded),
/// subscribers hear of the member as `event`; when it was refused,
/// nothing changed and the log says why (the caller only sees the status).
pub fn finish_edit(
    api: &mut dyn Api,
    method: &str,
    event: &str,
    done: Result<String, (Status, String)>,
) -> Result<Json, Status> {
    match done {
        Ok(name) => {
            log::info!(
                "ubus: {method} {name}: {} written",
                api.config_path().display()
            );
            api.notify(
                "member",
                Json::obj().with("name", name.as_str()).with("event", event),
            );
            Ok(Json::obj().with("name", name))
        }
        Err((status, why)) => {
            log::warn!("ubus: {method} refused, nothing changed: {why}");
            Err(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A double of the daemon, because the real `Api` is a whole daemon
    /// (sockets, a TUN device, a node): it answers a fixed status document
    /// and records the notifications it was asked for, and edits
    /// a real file of its own.
    struct FakeDaemon {
        config: PathBuf,
        notes: Vec<(String, Json)>,
    }

    impl FakeDaemon {
        /// With a config file of its own, holding `text` (`test` names it).
        fn with_config(test: &str, text: &str) -> FakeDaemon {
            let dir =
                std::env::temp_dir().join(format!("meshd-ubus-api-{}-{test}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("meshd");
            std::fs::write(&config, text).unwrap();
            FakeDaemon {
                config,
                notes: Vec::new(),
            }
        }

        fn file(&self) -> String {
            std::fs::read_to_string(&self.config).unwrap()
        }
    }

    impl Drop for FakeDaemon {
        fn drop(&mut self) {
            if let Some(dir) = self.config.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    impl Api for FakeDaemon {
        fn status(&self, part: Part, sink: &mut dyn Sink) {
            crate::json::object(sink, |o| {
                o.f("part", format!("{part:?}"));
            });
        }

        fn config_path(&self) -> &Path {
            &self.config
        }

        fn notify(&mut self, event_type: &str, data: Json) {
            self.notes.push((event_type.to_string(), data));
        }

        fn invite(
            &mut self,
            name: &str,
            seconds: u64,
            endpoints: Vec<std::net::SocketAddr>,
        ) -> Result<String, String> {
            // The stand-in echoes what reached it (lab_invite runs the
            // real one).
            Ok(format!("MESHD1FAKE {name} {seconds} {}", endpoints.len()))
        }

        fn join(&mut self, token: &str) -> Result<String, String> {
            Err(format!("the stand-in joins nothing: {token}"))
        }
    }

    /// A call answered at once, the edit and the reload running where it
    /// is called: what the daemon does in steps (the edit and the re-read
    /// on its file thread, then the rest on the loop), in one.
    fn call_and_edit(d: &mut FakeDaemon, method: &str, args: &Json) -> Result<Json, Status> {
        match call(d, method, args) {
            Answer::Now(r) => r,
            Answer::Document(part) => {
                let mut tree = crate::json::Tree::default();
                d.status(part, &mut tree);
                Ok(tree.into_json())
            }
            Answer::AfterReload => reloaded(),
            Answer::AfterEdit(edit) => {
                let done = (edit.job)(d.config_path());
                finish_edit(d, edit.method, edit.event, done)
            }
        }
    }

    const CONFIG: &str = "config meshd 'main'\n\toption overlay '10.0.0.1'\n\toption asn '65001'\n";
    const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn bob() -> Json {
        args(&[
            ("name", "bob".into()),
            ("public_key", KEY.into()),
            ("overlay", "10.0.0.2".into()),
            ("asn", Json::Int(65002)),
        ])
    }

    #[test]
    fn invite_answers_a_token_or_why_not_and_join_passes_the_token_on() {
        let mut d = FakeDaemon::with_config("invite", CONFIG);
        let args = |name: Option<&str>, expires: Option<Json>, endpoint: &str| {
            let mut a = Json::obj();
            if let Some(n) = name {
                a.push("name", n);
            }
            if let Some(e) = expires {
                a.push("expires", e);
            }
            a.push("endpoint", Json::Arr(vec![endpoint.into()]));
            a
        };
        let ok = args(Some("bob"), Some(Json::Int(3600)), "198.51.100.1:51820");
        assert_eq!(
            call_and_edit(&mut d, "invite", &ok),
            Ok(Json::obj().with("token", "MESHD1FAKE bob 3600 1"))
        );
        let default = args(Some("bob"), None, "[2001:db8::1]:51820");
        assert_eq!(
            call_and_edit(&mut d, "invite", &default),
            Ok(Json::obj().with("token", "MESHD1FAKE bob 86400 1"))
        );
        for (bad, why) in [
            (
                args(None, None, "198.51.100.1:51820"),
                "argument 'name' is missing",
            ),
            (
                args(Some("bob"), Some(Json::Int(0)), "198.51.100.1:51820"),
                "argument 'expires' must be a positive integer (s)",
            ),
            (
                args(Some("bob"), None, "bob.example:51820"),
                "endpoint 'bob.example:51820': an address and port",
            ),
        ] {
            assert_eq!(
                call_and_edit(&mut d, "invite", &bad),
                Ok(Json::obj().with("error", why))
            );
        }
        let join = Json::obj().with("token", "MESHD1ABC");
        assert_eq!(
            call_and_edit(&mut d, "join", &join),
            Ok(Json::obj().with("error", "the stand-in joins nothing: MESHD1ABC"))
        );
        assert_eq!(
            call_and_edit(&mut d, "join", &Json::obj()),
            Ok(Json::obj().with("error", "argument 'token' is missing"))
        );
        assert_eq!(d.file(), CONFIG);
    }

    #[test]
    fn every_method_name_is_unique() {
        for (i, m) in METHODS.iter().enumerate() {
            assert!(
                METHODS[..i].iter().all(|earlier| earlier.name != m.name),
                "'{}' is in the table twice",
                m.name
            );
        }
    }

    #[test]
    fn an_unknown_method_is_method_not_found_and_touches_nothing() {
        let mut d = FakeDaemon::with_config("unknown", CONFIG);
        for method in ["nosuch", "", "Status", "member"] {
            assert_eq!(
                call_and_edit(&mut d, method, &bob()),
                Err(Status::MethodNotFound),
                "{method:?}"
            );
        }
        assert_eq!(d.notes.len(), 0);
        assert_eq!(d.file(), CONFIG);
    }

    #[test]
    fn the_document_methods_answer_their_part_of_the_document() {
        let mut d = FakeDaemon::with_config("document", CONFIG);
        for (method, part) in [
            ("status", Part::Whole),
            ("members", Part::Members),
            ("routes", Part::Routes),
            ("nat", Part::Nat),
            ("consoles", Part::Exit),
            ("invites", Part::Invites),
        ] {
            assert_eq!(
                call_and_edit(&mut d, method, &Json::obj()),
                Ok(Json::obj().with("part", format!("{part:?}"))),
                "{method}"
            );
        }
        assert_eq!(d.notes.len(), 0);
        assert_eq!(d.file(), CONFIG);
    }

    #[test]
    fn member_add_with_a_bad_argument_answers_invalid_argument_and_changes_nothing() {
        let mut d = FakeDaemon::with_config("bad-add", CONFIG);
        let with = |key: &str, value: Json| {
            let Json::Obj(mut fields) = bob() else {
                unreachable!()
            };
            fields.retain(|(k, _)| k != key);
            fields.push((key.to_string(), value));
            Json::Obj(fields)
        };
        for bad in [
            // Refused here: the wrong JSON type, an unknown name.
            with("asn", "65002".into()),
            with("nmae", "bob".into()),
            // Refused by the configuration parser.
            with("overlay", "10.0.0.256".into()),
            with("asn", Json::Int(23456)),
            with("public_key", "short".into()),
            // Refused by the editor: `main` is taken.
            with("name", "main".into()),
        ] {
            assert_eq!(
                call_and_edit(&mut d, "member_add", &bad),
                Err(Status::InvalidArgument),
                "{bad:?}"
            );
        }
        assert_eq!(d.file(), CONFIG);
        assert_eq!(d.notes.len(), 0);
    }

    #[test]
    fn member_add_then_member_del_write_the_file_and_tell_the_subscribers() {
        let mut d = FakeDaemon::with_config("add-del", CONFIG);
        assert_eq!(
            call_and_edit(&mut d, "member_add", &bob()),
            Ok(Json::obj().with("name", "bob"))
        );
        assert!(d.file().contains("config member 'bob'"), "{}", d.file());
        let note = |event| {
            (
                "member".to_string(),
                Json::obj().with("name", "bob").with("event", event),
            )
        };
        assert_eq!(d.notes, [note("added")]);

        let bob_only = args(&[("name", "bob".into())]);
        assert_eq!(
            call_and_edit(&mut d, "member_del", &bob_only),
            Ok(Json::obj().with("name", "bob"))
        );
        assert_eq!(d.file(), CONFIG);
        assert_eq!(d.notes, [note("added"), note("removed")]);

        // Gone now: NOT_FOUND, and nothing more happens.
        assert_eq!(
            call_and_edit(&mut d, "member_del", &bob_only),
            Err(Status::NotFound)
        );
        assert_eq!(d.notes.len(), 2);
    }

    fn args(pairs: &[(&str, Json)]) -> Json {
        let mut j = Json::obj();
        for (k, v) in pairs {
            j.push(k, v.clone());
        }
        j
    }

    #[test]
    fn member_add_arguments() {
        let a = args(&[
            ("name", "bob".into()),
            ("public_key", "k".into()),
            ("overlay", "10.0.0.2".into()),
            ("asn", Json::Int(65002)),
            ("prefix", Json::Arr(vec!["192.168.2.0/24".into()])),
            ("endpoint", "bob.example.net:51820".into()),
            ("bfd", Json::Bool(false)),
        ]);
        let m = new_member(&a).unwrap();
        assert_eq!(m.asn, "65002");
        assert_eq!(m.prefixes, vec!["192.168.2.0/24"]);
        assert_eq!(m.endpoints, vec!["bob.example.net:51820"]);
        assert_eq!(m.bfd.as_deref(), Some("0"));
        // Numbers left out are left to the key: the section has none.
        let keyed = new_member(&args(&[
            ("name", "carol".into()),
            ("public_key", "k".into()),
        ]))
        .unwrap();
        let section = keyed.to_section();
        let names: Vec<&str> = section.options.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["public_key"]);
        for (bad, why) in [
            (args(&[("name", Json::Int(1))]), "must be a string"),
            (args(&[("nmae", "x".into())]), "unknown argument 'nmae'"),
            (args(&[("name", "x".into())]), "'public_key' is missing"),
            (
                args(&[
                    ("name", "x".into()),
                    ("public_key", "k".into()),
                    ("overlay", "10.0.0.2".into()),
                    ("asn", "65002".into()),
                ]),
                "'asn' must be an integer",
            ),
            (
                args(&[
                    ("name", "x".into()),
                    ("public_key", "k".into()),
                    ("overlay", "10.0.0.2".into()),
                    ("asn", Json::Int(65002)),
                    ("prefix", Json::Arr(vec![Json::Int(1)])),
                ]),
                "array of strings",
            ),
        ] {
            let e = new_member(&bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
