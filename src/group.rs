//! The group's member list, the daemon's half (issue 17, part 4; the record
//! and its carriage are `mesh_core::group` and the node's group room).
//!
//! - **Our record** lists the member sections we vouch for (`option vouch
//!   '1'`: the invite flows write it on both sides, for the member we
//!   invited and for our inviter), and the members we removed (`option
//!   removed '1'`, which `meshd remove` writes on any member's section). The
//!   daemon signs it with the router's WireGuard key whenever those entries
//!   change, and when a member shows it holds a version of it as new as ours
//!   or newer (we restarted, or our clock went back): see [`next_version`].
//! - **What the records want** (the node's [`mesh_core::node::Node::group_membership`])
//!   becomes member sections: a member wanted and not in the file gets a
//!   section (its key, the name the record gives it, `option via` naming the
//!   member whose record brought it; overlay address and AS from its key,
//!   endpoints from peer exchange); a member removed loses its section if
//!   the group added it (`via`), or has it marked removed if we vouched for
//!   it. A section written by hand (neither) is kept: the record does not
//!   overrule the owner's own file; status and the log say so.
//!
//! The file is edited on the file thread (`files.rs`) with the UCI editor,
//! in one edit per change; the reload that follows opens or closes the
//! tunnels. Nothing here runs on the packet loop but the comparison of what
//! the records want with the running configuration, and a signature when
//! our own entries changed (one scalar multiplication).

use mesh_core::group::{self, Entry, Record, Wanted};
use mesh_core::invite::Name;
use mesh_core::wg::Key;

use crate::config::Config;
use crate::uci::Package;
use crate::uci_edit::{self, EditError, NewMember};

/// The daemon's group state.
#[derive(Debug, Default)]
pub struct State {
    /// The version of our record last signed (none: none yet).
    pub version: Option<u64>,
    /// What it lists.
    pub entries: Vec<Entry>,
    /// Members the group removed whose sections were written by hand: kept.
    pub kept: Vec<String>,
    /// An edit is on the file thread; `again`: the records changed since.
    pub editing: bool,
    pub again: bool,
    /// Edits the file thread could not make.
    pub errors: u64,
}

impl State {
    /// Whether a member holds a record of ours as new as the one we signed
    /// last, or one we did not sign in this run (`seen`: the highest version
    /// members showed): ours must go above it.
    pub fn outrun(&self, seen: Option<u64>) -> bool {
        seen.is_some_and(|s| self.version.is_none_or(|v| s >= v))
    }
}

/// Our record's entries: the member sections we vouch for or removed
/// (`meshd remove` of any member says so to the group), in file order,
/// at most [`group::MAX_ENTRIES`]; and how many more there were (left out).
pub fn own_entries(config: &Config) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut left_out = 0;
    for m in config.members.iter().filter(|m| m.vouch || m.removed) {
        let Ok(name) = Name::try_from(m.name.as_str()) else {
            left_out += 1;
            continue;
        };
        if entries.len() == group::MAX_ENTRIES {
            left_out += 1;
            continue;
        }
        entries.push(Entry {
            key: m.public_key.0,
            name,
            removed: m.removed,
        });
    }
    (entries, left_out)
}

/// The version of our next record: the time (seconds since 1970), but
/// above the last one we signed and above every one a member showed us
/// (a router's clock may start at its image's build date until NTP runs).
pub fn next_version(unix_now: u64, last: Option<u64>, seen: Option<u64>) -> u64 {
    let above = |v: Option<u64>| v.map_or(0, |v| v.saturating_add(1));
    unix_now.max(above(last)).max(above(seen))
}

/// Our record, signed with `private` (whose public key is `public`), with
/// 64 octets from a secure source.
pub fn sign(
    private: &Key,
    public: &Key,
    version: u64,
    entries: &[Entry],
    random: &[u8; 64],
) -> Result<Vec<u8>, group::Error> {
    let record = Record {
        signer: public.0,
        version,
        entries: heapless::Vec::from_slice(entries).map_err(|_| group::Error::Length)?,
    };
    let mut out = vec![0u8; group::MAX_LEN];
    let n = record.sign(&private.0, random, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// A member the records want, as the file will name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub key: Key,
    /// The name the record gives it (made unique when written).
    pub name: String,
    /// Our name for the member whose record brought it.
    pub via: String,
}

/// What the records ask of the file that it does not yet say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Members to add.
    pub add: Vec<Want>,
    /// Members removed from the group that run here, by key.
    pub remove: Vec<Key>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Compares what the records want (`wanted`, `removed`, from the node) with
/// the running configuration: the plan of edits, and the names of members
/// written by hand that the group removed (kept).
pub fn plan(config: &Config, wanted: &[Wanted], removed: &[[u8; 32]]) -> (Plan, Vec<String>) {
    let mut plan = Plan::default();
    let mut kept = Vec::new();
    let section = |key: &[u8; 32]| config.members.iter().find(|m| m.public_key.0 == *key);
    for w in wanted {
        if section(&w.key).is_some() {
            continue;
        }
        // Records count only from members: the signer has a section.
        let Some(via) = section(&w.via) else { continue };
        plan.add.push(Want {
            key: Key(w.key),
            name: w.name.to_string(),
            via: via.name.clone(),
        });
    }
    for key in removed {
        match section(key) {
            None => {}
            Some(m) if m.removed => {}
            // Written by hand: the owner's to remove.
            Some(m) if !m.vouch && m.via.is_none() => kept.push(m.name.clone()),
            Some(_) => plan.remove.push(Key(*key)),
        }
    }
    (plan, kept)
}

/// [`apply_text`] on the file at `path`, under uci's lock; written only if
/// something changed. What was done, one line each.
pub fn apply(path: &std::path::Path, plan: &Plan) -> Result<Vec<String>, EditError> {
    let mut done = Vec::new();
    uci_edit::edit_file_if_changed(path, |text| {
        let (new, d) = apply_text(text, path, plan)?;
        done = d;
        Ok(new)
    })?;
    Ok(done)
}

/// Applies `plan` to the file's text as it is now (it may have changed
/// since the plan was made): a member to add that a section already names
/// (by key) is not added again; a name taken gets the key's first
/// characters; a member to remove is deleted if the group added it, marked
/// removed (and disabled) if we vouched for it, and kept if written by
/// hand. Each step is one of the UCI editor's checked edits.
pub fn apply_text(
    text: &str,
    file: &std::path::Path,
    plan: &Plan,
) -> Result<(String, Vec<String>), EditError> {
    let mut text = text.to_string();
    let mut done = Vec::new();
    let read = |text: &str| -> Result<(Config, Package), EditError> {
        let config = Config::parse(text, file).map_err(EditError::BrokenFile)?;
        let package = Package::parse(text).map_err(|e| EditError::Unsupported(e.to_string()))?;
        Ok((config, package))
    };
    for want in &plan.add {
        let (config, package) = read(&text)?;
        if config.members.iter().any(|m| m.public_key == want.key) {
            continue;
        }
        let taken: Vec<&str> = package
            .sections
            .iter()
            .filter_map(|s| s.name.as_deref())
            .chain(config.members.iter().map(|m| m.name.as_str()))
            .collect();
        let name = crate::invites::unique_name(&want.name, &want.key, taken.iter().copied());
        let mut m = NewMember::new(name.as_str(), &want.key.to_string(), "", "");
        m.via = Some(want.via.clone());
        text = uci_edit::add_member_text(&text, file, &m)?;
        done.push(format!("added '{name}' (brought in by '{}')", want.via));
    }
    for key in &plan.remove {
        let (config, _) = read(&text)?;
        let Some(m) = config.members.iter().find(|m| m.public_key == *key) else {
            continue;
        };
        if m.removed {
            continue;
        }
        let name = m.name.clone();
        if m.vouch {
            text = uci_edit::set_member_options_text(
                &text,
                file,
                &name,
                &[("removed", "1"), ("enabled", "0")],
            )?;
            done.push(format!("marked '{name}' removed"));
        } else if m.via.is_some() {
            text = uci_edit::del_member_text(&text, file, &name)?;
            done.push(format!("deleted '{name}'"));
        }
    }
    Ok((text, done))
}

/// The group in status: our record, the records held (by signer: our name
/// for it, else its key), what the group removed that we keep, and the
/// counters.
pub fn document<C: mesh_core::wg::Crypto>(
    node: &mesh_core::node::Node<'_, C>,
    members: &[crate::config::MemberEntry],
    state: &State,
) -> crate::json::Json {
    use crate::json::Json;
    let own = node.public_key();
    let name_of = |key: &[u8; 32]| -> String {
        if *key == own.0 {
            return "self".into();
        }
        members
            .iter()
            .find(|m| m.public_key.0 == *key)
            .map_or_else(|| Key(*key).to_string(), |m| m.name.clone())
    };
    let g = node.group();
    let records: Vec<Json> = g
        .records()
        .map(|r| {
            let names = |removed: bool| -> Json {
                Json::Arr(
                    r.entries
                        .iter()
                        .filter(|e| e.removed == removed)
                        .map(|e| Json::from(e.name.as_str()))
                        .collect(),
                )
            };
            Json::obj()
                .with("signer", name_of(&r.signer))
                .with("version", r.version)
                .with("members", names(false))
                .with("removed", names(true))
        })
        .collect();
    let c = &g.counters;
    Json::obj()
        .with("version", state.version.map_or(Json::Null, Json::from))
        .with("records", Json::Arr(records))
        .with(
            "kept",
            Json::Arr(state.kept.iter().map(|n| Json::from(n.as_str())).collect()),
        )
        .with("editing", state.editing)
        .with("edit_errors", state.errors)
        .with("accepted", c.accepted)
        .with("stale", c.stale)
        .with("bad", c.bad)
        .with("not_inviter", c.not_inviter)
        .with("full", c.full)
        .with("bad_digests", c.bad_digests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const K1: &str = "XHJPSd8c7/T+bScgUFYq1Jzx/ybgB+i0/HnCcYRTQEo=";
    const K2: &str = "QARvSsTxZBWGVxeh4eiTMHmJ7bApVCz8uJrB8TFqQwc=";
    const K3: &str = "zlwjtIBrW1/G/VfdgzZDuU+sBQ7Mkx4VMkh2aE/s+FU=";
    const K4: &str = "DM9B4MjuL/e5MjZ8cvVeHO6yiNwSWxpQKa+Bs2V7NXo=";

    fn file() -> &'static Path {
        Path::new("/etc/config/meshd")
    }

    fn home(extra: &str) -> String {
        format!(
            "config meshd 'main'\n\toption private_key_file '/etc/meshd/key'\n\tlist announce '192.168.1.0/24'\n{extra}"
        )
    }

    fn key(s: &str) -> Key {
        s.parse().unwrap()
    }

    fn wanted(k: &str, name: &str, via: &str) -> Wanted {
        Wanted {
            key: key(k).0,
            name: Name::try_from(name).unwrap(),
            via: key(via).0,
        }
    }

    #[test]
    fn versions_grow_past_the_last_and_what_members_hold() {
        assert_eq!(next_version(1000, None, None), 1000);
        assert_eq!(next_version(1000, Some(1000), None), 1001);
        // A clock back at the image's build date: above what members hold.
        assert_eq!(next_version(5, None, Some(1_700_000_000)), 1_700_000_001);
        assert_eq!(next_version(5, Some(u64::MAX), None), u64::MAX);
    }

    #[test]
    fn our_record_lists_the_members_we_vouch_for_and_verifies() {
        let text = home(&format!(
            "\nconfig member 'r2'\n\toption public_key '{K2}'\n\toption vouch '1'\n\
             \nconfig member 'r3'\n\toption public_key '{K3}'\n\toption via 'r2'\n\
             \nconfig member 'hand'\n\toption public_key '{K4}'\n\toption overlay '10.0.0.4'\n\toption asn '65004'\n\
             \nconfig member 'gone'\n\toption public_key '{K1}'\n\toption vouch '1'\n\toption removed '1'\n\toption enabled '0'\n"
        ));
        let c = Config::parse(&text, file()).unwrap();
        let (entries, left_out) = own_entries(&c);
        assert_eq!(left_out, 0);
        let listed: Vec<(&str, bool)> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.removed))
            .collect();
        assert_eq!(listed, [("r2", false), ("gone", true)]);
        // The removed member does not run.
        let running: Vec<&str> = c.enabled_members().map(|m| m.name.as_str()).collect();
        assert_eq!(running, ["r2", "r3", "hand"]);

        let private = Key([7; 32]);
        let public = mesh_core::wg::boring::public_key(&private);
        let bytes = sign(&private, &public, 42, &entries, &[9; 64]).unwrap();
        let r = Record::decode(&bytes).unwrap();
        assert_eq!((r.signer, r.version), (public.0, 42));
        assert_eq!(r.entries.as_slice(), entries.as_slice());
        // Signed by another key, it is not ours.
        let other = mesh_core::wg::boring::public_key(&Key([8; 32]));
        let forged = sign(&Key([8; 32]), &public, 42, &entries, &[9; 64]).unwrap();
        assert!(Record::decode(&forged).is_err());
        assert!(Record::decode(&sign(&Key([8; 32]), &other, 1, &[], &[1; 64]).unwrap()).is_ok());
    }

    #[test]
    fn what_the_records_want_is_added_once_and_removals_follow_who_wrote_the_section() {
        let text = home(&format!(
            "\nconfig member 'r2'\n\toption public_key '{K2}'\n\toption vouch '1'\n\
             \n# my own friend, by hand\nconfig member 'hand'\n\toption public_key '{K4}'\n"
        ));
        let c = Config::parse(&text, file()).unwrap();
        // r2's record wants r3 (named "r2" there: a name we use already) and us.
        let (p, kept) = plan(&c, &[wanted(K3, "r2", K2), wanted(K2, "x", K2)], &[]);
        assert!(kept.is_empty());
        assert_eq!(p.add.len(), 1, "{p:?}");
        let (added, done) = apply_text(&text, file(), &p).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        let c2 = Config::parse(&added, file()).unwrap();
        let r3 = c2.members.iter().find(|m| m.public_key == key(K3)).unwrap();
        assert_ne!(r3.name, "r2");
        assert!(r3.name.starts_with("r2_"), "{}", r3.name);
        assert_eq!(r3.via.as_deref(), Some("r2"));
        assert!(!r3.vouch && r3.enabled && !r3.removed);
        // The earlier text is untouched, byte for byte.
        assert!(added.starts_with(&text), "{added}");
        // Applied again (a plan made before the reload): nothing more.
        let (again, done) = apply_text(&added, file(), &p).unwrap();
        assert_eq!((again.as_str(), done.len()), (added.as_str(), 0));
        let (p2, _) = plan(&c2, &[wanted(K3, "r2", K2)], &[]);
        assert!(p2.is_empty(), "{p2:?}");

        // The group removes r3 (added by it), r2 (we vouched) and hand.
        let (p, kept) = plan(&c2, &[], &[key(K3).0, key(K2).0, key(K4).0]);
        assert_eq!(kept, ["hand"]);
        assert_eq!(p.remove, [key(K3), key(K2)]);
        let (after, done) = apply_text(&added, file(), &p).unwrap();
        assert_eq!(done.len(), 2, "{done:?}");
        let c3 = Config::parse(&after, file()).unwrap();
        assert!(
            c3.members.iter().all(|m| m.public_key != key(K3)),
            "{after}"
        );
        let r2 = c3.member("r2").unwrap();
        assert!(r2.removed && !r2.enabled && r2.vouch);
        assert!(c3.member("hand").is_some_and(|m| m.enabled));
        assert!(after.contains("# my own friend, by hand\n"), "{after}");
        // Marked once: the plan of the file as it is now is empty.
        let (p3, kept) = plan(&c3, &[], &[key(K3).0, key(K2).0, key(K4).0]);
        assert!(p3.is_empty(), "{p3:?}");
        assert_eq!(kept, ["hand"]);
    }
}
