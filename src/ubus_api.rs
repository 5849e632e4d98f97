//! The `meshd` ubus object: what `ubus call meshd ...` can ask, and the
//! notifications subscribers get.
//!
//! | method | arguments | answer |
//! |---|---|---|
//! | `status` | – | the whole `meshd status --json` document |
//! | `members` | – | `{"members": [...]}`: tunnels, path (direct or via whom, hops), NAT, BGP, BFD |
//! | `routes` | – | `{"routes": [...]}`: best path with AS path and why it won, the alternatives |
//! | `nat` | – | `{"nat": {...}}`: this router's NAT behaviour and PlayStation type |
//! | `reload` | – | re-reads `/etc/config/meshd` (as SIGHUP does) |
//! | `member_add` | `name`, `public_key`, `overlay`, `asn`, optional `overlay6`, `prefix` (array), `endpoint` (array), `keepalive`, `hold_time`, `enabled`, `bfd`, `bfd_interval`, `bfd_multiplier` | writes the member to the UCI file (atomically), then reloads |
//! | `member_del` | `name` | removes the member from the UCI file, then reloads |
//!
//! Bad arguments (unknown, of the wrong type, or refused by meshd's own
//! configuration checks) answer INVALID_ARGUMENT and change nothing; a
//! missing member answers NOT_FOUND. The reason is logged.
//!
//! Notifications: `member` (`{"name", "event"}`: tunnel_up, session_up,
//! session_down, bfd_up, bfd_down, added, removed) and `route`
//! (`{"prefix", "event", "via"}`: added, changed, removed).

use std::path::Path;

use crate::json::Json;
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
];

/// Every method with its signature (argument name → blobmsg type).
pub const METHODS: &[(&str, &[(&str, ArgType)])] = &[
    ("status", NO_ARGS),
    ("members", NO_ARGS),
    ("routes", NO_ARGS),
    ("nat", NO_ARGS),
    ("reload", NO_ARGS),
    ("member_add", MEMBER_ADD),
    ("member_del", &[("name", ArgType::String)]),
];

/// A fresh object for the connection.
pub fn object() -> UbusObject {
    UbusObject::new(OBJECT, METHODS)
}

/// One key of the status document, as its own answer (`{"members": ...}`).
pub fn part(doc: &Json, key: &str) -> Json {
    Json::obj().with(key, doc.get(key).cloned().unwrap_or(Json::Null))
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
        overlay: required("overlay", string(args, "overlay")?)?,
        overlay6: string(args, "overlay6")?,
        asn: required("asn", number(args, "asn")?)?,
        prefixes: strings(args, "prefix")?,
        endpoints: strings(args, "endpoint")?,
        keepalive: number(args, "keepalive")?,
        hold_time: number(args, "hold_time")?,
        bfd: flag(args, "bfd")?,
        bfd_interval: number(args, "bfd_interval")?,
        bfd_multiplier: number(args, "bfd_multiplier")?,
    })
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

/// `member_add`: the file is edited, or nothing is.
pub fn member_add(config: &Path, args: &Json) -> Result<String, (Status, String)> {
    let m = new_member(args).map_err(|e| (Status::InvalidArgument, e))?;
    uci_edit::member_add(config, &m).map_err(|e| (edit_status(&e), e.to_string()))?;
    Ok(m.name)
}

/// `member_del`.
pub fn member_del(config: &Path, args: &Json) -> Result<String, (Status, String)> {
    let Json::Obj(fields) = args else {
        return Err((Status::InvalidArgument, "arguments must be a table".into()));
    };
    if let Some((k, _)) = fields.iter().find(|(k, _)| k != "name") {
        return Err((Status::InvalidArgument, format!("unknown argument '{k}'")));
    }
    let name = string(args, "name")
        .map_err(|e| (Status::InvalidArgument, e))?
        .ok_or((Status::InvalidArgument, "argument 'name' is missing".into()))?;
    uci_edit::member_del(config, &name).map_err(|e| (edit_status(&e), e.to_string()))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn parts_of_the_document() {
        let doc = Json::obj()
            .with("nat", Json::obj().with("behaviour", "cone"))
            .with("members", Json::Arr(vec![]));
        assert_eq!(
            part(&doc, "nat"),
            Json::obj().with("nat", Json::obj().with("behaviour", "cone"))
        );
        assert_eq!(part(&doc, "routes"), Json::obj().with("routes", Json::Null));
    }
}
