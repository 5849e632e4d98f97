//! The real meshd daemon's ubus object, end to end.
//!
//! Debian ships no ubusd, so this test plays ubusd's side itself, on a unix
//! socket meshd is pointed at (`MESHD_UBUS_SOCKET`), replaying ubusd's frames
//! from a real capture (`tests/fixtures/ubus/conn01.txt`) byte for byte
//! where they fit meshd (HELLO, the ADD_OBJECT reply, a subscriber arriving,
//! the INVOKE of `status`, the INVOKE of an unknown method) and building the
//! INVOKEs of meshd's own methods in the same shape (with ubusd's USER and
//! GROUP). It checks meshd's answers, that `member_add`/`member_del`/`member_remove` persist
//! to the UCI file and refuse bad arguments with INVALID_ARGUMENT leaving
//! the file as it was, the notifications, and that meshd registers again
//! when "ubusd" restarts.
//!
//! Needs root (meshd creates a TUN device in a namespace of its own).

mod lab;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab::{require_root, Netns, TempDir};
use meshd::json::Json;
use meshd::ubus::blob::fields_to_json;
use meshd::ubus::{Msg, MsgType, Status};

#[path = "support/fake_ubusd.rs"]
mod fake_ubusd;
#[path = "support/ubus_capture.rs"]
mod ubus_capture;

use fake_ubusd::{accept, call, invoke, register, reply};

use ubus_capture::{capture, nth as captured};

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn meshd_serves_its_ubus_object() {
    require_root();
    let dir = TempDir::new("meshd-ubus");
    let ns = Netns::new(&lab::lab_prefix("ubus"));
    let meshd = Path::new(env!("CARGO_BIN_EXE_meshd"));
    let bus = dir.path().join("ubus.sock");
    let listener = UnixListener::bind(&bus).unwrap();
    let config = dir.path().join("meshd");
    let key = Command::new(meshd).arg("genkey").output().unwrap().stdout;
    let pubkey = {
        let mut c = Command::new(meshd)
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&key).unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    };
    std::fs::write(dir.path().join("key"), &key).unwrap();
    std::fs::set_permissions(
        dir.path().join("key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let original = format!(
        "# meshd on the test router\n\
         config meshd 'main'\n\
         \toption private_key_file '{}'\n\
         \toption overlay '10.0.0.1'\n\
         \toption asn '65001'\n\
         \tlist announce '192.168.1.0/24'\n\
         \toption tun 'meshd0'\n\
         \toption control_socket '{}'\n\
         \n\
         config member 'bob'\n\
         \toption public_key '{}'\n\
         \toption overlay '10.0.0.2'\n\
         \toption asn '65002'\n\
         \tlist prefix '192.168.2.0/24'\n",
        dir.path().join("key").display(),
        dir.path().join("control.sock").display(),
        pubkey.trim(),
    );
    std::fs::write(&config, &original).unwrap();
    let log = std::fs::File::create(dir.path().join("meshd.log")).unwrap();
    let _daemon = Daemon(
        ns.cmd(meshd.to_str().unwrap())
            .arg("-c")
            .arg(&config)
            .env("MESHD_UBUS_SOCKET", &bus)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let logs = || std::fs::read_to_string(dir.path().join("meshd.log")).unwrap_or_default();

    let mut s = accept(&listener);
    let (obj, methods) = register(&mut s);
    assert_eq!(
        methods,
        [
            "status",
            "members",
            "routes",
            "nat",
            "consoles",
            "reload",
            "member_add",
            "invite",
            "join",
            "invites",
            "member_del",
            "member_remove"
        ]
    );
    // A subscriber arrives (ubusd's captured NOTIFY with ACTIVE).
    s.write_all(&captured('<', "NOTIFY", 0)).unwrap();
    let mut notes = Vec::new();

    // ubusd's captured INVOKE of `status`, byte for byte.
    s.write_all(&captured('<', "INVOKE", 0)).unwrap();
    let data = reply(&mut s, &mut notes);
    assert_eq!(data.msg_type, MsgType::Data);
    let doc = fields_to_json(data.data().unwrap());
    assert_eq!(doc.get("overlay").and_then(Json::as_str), Some("10.0.0.1"));
    assert!(
        doc.get("nat").is_some() && doc.get("members").is_some(),
        "{doc}"
    );
    let status = reply(&mut s, &mut notes);
    assert_eq!(status.status(), Some(0));
    // Every field the LuCI status view reads starts at a key of this answer
    // (the full paths are checked against a busy mesh in lab_nat.rs).
    let contract: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("openwrt/luci-app-meshd/status-contract.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for path in contract
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap())
    {
        let path = path.as_str().unwrap();
        let top = path.split(['.', '[']).next().unwrap();
        assert!(doc.get(top).is_some(), "ubus status lacks '{top}' ({path})");
    }
    // The captured call of a method the object lacks: answered as libubus
    // answered it, byte for byte.
    s.write_all(&captured('<', "INVOKE", 3)).unwrap();
    let nosuch = reply(&mut s, &mut notes).encode().unwrap();
    let peer = Msg::decode(&captured('<', "INVOKE", 3)).unwrap().peer;
    let expected = ubus_capture::find(&capture(), '>', "STATUS", peer, 0);
    assert_eq!(nosuch, expected, "METHOD_NOT_FOUND differs from libubus's");

    // members / routes / nat are parts of the document.
    let (st, members) = call(&mut s, obj, "members", Json::obj(), &mut notes);
    assert_eq!(st, 0);
    let names: Vec<&str> = members
        .get("members")
        .map(Json::as_array)
        .unwrap_or(&[])
        .iter()
        .filter_map(|m| m.get("name").and_then(Json::as_str))
        .collect();
    assert_eq!(names, ["bob"]);
    // Each part is that key of the whole document and nothing else, with
    // the same fields (values may move on between the calls).
    let keys = |j: &Json| -> Vec<String> {
        match j {
            Json::Obj(fields) => fields.iter().map(|(k, _)| k.clone()).collect(),
            Json::Arr(items) => items
                .iter()
                .flat_map(|i| match i {
                    Json::Obj(f) => f.iter().map(|(k, _)| k.clone()).collect(),
                    _ => vec![],
                })
                .collect(),
            _ => vec![],
        }
    };
    for m in ["members", "routes", "nat", "invites"] {
        let (st, d) = call(&mut s, obj, m, Json::obj(), &mut notes);
        assert_eq!(st, 0);
        assert_eq!(keys(&d), [m], "{m}: {d}");
        let (part, whole) = (d.get(m).unwrap(), doc.get(m).unwrap());
        assert_eq!(keys(part), keys(whole), "{m}: {part} vs {whole}");
        assert!(!keys(part).is_empty(), "{m}: {part}");
    }
    // consoles: the exit part of the document (no console on this host's
    // LAN, no exit in this mesh: empty lists, counters at zero).
    let (st, d) = call(&mut s, obj, "consoles", Json::obj(), &mut notes);
    assert_eq!(st, 0);
    assert_eq!(keys(&d), keys(doc.get("exit").unwrap()), "{d}");
    for key in ["consoles", "exits", "counters"] {
        assert!(d.get(key).is_some(), "consoles lacks {key}: {d}");
    }
    assert_eq!(d.get("consoles").map(Json::as_array), Some(&[][..]), "{d}");

    // Bad arguments: INVALID_ARGUMENT, and the file is untouched.
    const KEY3: &str = "mH7aSzFAuXc8Wd8ETSykk5+YUxYAFYMOUNvKOe1VvFM=";
    let carol = |key: &str, overlay: &str, asn: Json| {
        Json::obj()
            .with("name", "carol")
            .with("public_key", key)
            .with("overlay", overlay)
            .with("asn", asn)
            .with("prefix", Json::Arr(vec!["192.168.3.0/24".into()]))
            .with("endpoint", Json::Arr(vec!["198.51.100.3:51820".into()]))
    };
    let bad = [
        carol("not-a-key", "10.0.0.3", Json::Int(65003)),
        carol(pubkey.trim(), "10.0.0.3", Json::Int(65003)), // bob's key again
        carol(KEY3, "10.0.0.3", "65003".into()),            // a string for a number
        carol(KEY3, "10.0.0.2", Json::Int(65003)),          // bob's overlay address
        carol(KEY3, "10.0.0.3", Json::Int(23456)),          // AS_TRANS
        carol(KEY3, "10.0.0.3", Json::Int(65003)).with("colour", "red"),
    ];
    for args in bad {
        let (st, _) = call(&mut s, obj, "member_add", args.clone(), &mut notes);
        assert_eq!(st, u32::from(Status::InvalidArgument), "{args}\n{}", logs());
        assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    }
    let (st, _) = call(
        &mut s,
        obj,
        "member_del",
        Json::obj().with("name", "nobody"),
        &mut notes,
    );
    assert_eq!(st, u32::from(Status::NotFound));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

    // A good one: written as uci writes it, loaded, announced. Another
    // writer (a `uci commit`) holds the file's lock for 600 ms: the edit
    // waits for it off the packet loop, and meanwhile `status` is answered.
    let good = carol(KEY3, "10.0.0.3", Json::Int(65003));
    let held = nix::fcntl::Flock::lock(
        std::fs::File::open(&config).unwrap(),
        nix::fcntl::FlockArg::LockExclusive,
    )
    .unwrap();
    let add_peer = 0x0bad_cafe;
    s.write_all(&invoke(obj, add_peer, "member_add", good))
        .unwrap();
    let asked = Instant::now();
    let (st, _) = call(&mut s, obj, "status", Json::obj(), &mut notes);
    let status_took = asked.elapsed();
    assert_eq!(st, 0);
    assert!(
        status_took < Duration::from_millis(300),
        "status waited {status_took:?} behind a member_add that waits for the lock"
    );
    std::thread::sleep(Duration::from_millis(600));
    drop(held);
    let mut d = Json::Null;
    let st = loop {
        let m = reply(&mut s, &mut notes);
        assert_eq!(m.peer, add_peer, "{m:?}");
        match m.msg_type {
            MsgType::Data => d = fields_to_json(m.data().unwrap_or(&[])),
            MsgType::Status => break m.status().unwrap(),
            t => panic!("unexpected {t:?}"),
        }
    };
    assert_eq!(st, 0, "{}", logs());
    assert_eq!(d.get("name").and_then(Json::as_str), Some("carol"));
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        text,
        format!(
            "{original}\nconfig member 'carol'\n\toption public_key \
             'mH7aSzFAuXc8Wd8ETSykk5+YUxYAFYMOUNvKOe1VvFM='\n\toption overlay '10.0.0.3'\n\
             \toption asn '65003'\n\tlist prefix '192.168.3.0/24'\n\
             \tlist endpoint '198.51.100.3:51820'\n"
        )
    );
    assert_eq!(member_count(&mut s, obj, &mut notes), Some(2));
    assert!(
        notes.contains(&Json::obj().with("name", "carol").with("event", "added")),
        "{notes:?}"
    );
    // Removed from the group: the section stays, marked removed and
    // disabled (the rest of the file as it was); the member is no longer run.
    let (st, _) = call(
        &mut s,
        obj,
        "member_remove",
        Json::obj().with("name", "carol"),
        &mut notes,
    );
    assert_eq!(st, 0, "{}", logs());
    let removed = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        removed,
        format!("{text}\toption removed '1'\n\toption enabled '0'\n"),
        "{}",
        logs()
    );
    assert_eq!(member_count(&mut s, obj, &mut notes), Some(1));
    let (st, _) = call(
        &mut s,
        obj,
        "member_remove",
        Json::obj().with("name", "nobody"),
        &mut notes,
    );
    assert_eq!(st, u32::from(Status::NotFound));
    let (st, _) = call(
        &mut s,
        obj,
        "member_del",
        Json::obj().with("name", "carol"),
        &mut notes,
    );
    assert_eq!(st, 0);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert_eq!(member_count(&mut s, obj, &mut notes), Some(1));
    assert!(notes.contains(&Json::obj().with("name", "carol").with("event", "removed")));
    let (st, _) = call(&mut s, obj, "reload", Json::obj(), &mut notes);
    assert_eq!(st, 0);

    // ubusd restarts: meshd comes back and registers again.
    drop(s);
    drop(listener);
    std::fs::remove_file(&bus).unwrap();
    let listener = UnixListener::bind(&bus).unwrap();
    let t = Instant::now();
    let mut s = accept(&listener);
    let (obj2, _) = register(&mut s);
    println!(
        "ubusd restarted: meshd registered again after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (st, _) = call(&mut s, obj2, "status", Json::obj(), &mut notes);
    assert_eq!(st, 0);
}

/// How many members `members` lists.
fn member_count(
    s: &mut std::os::unix::net::UnixStream,
    obj: u32,
    notes: &mut Vec<Json>,
) -> Option<usize> {
    let (_, members) = call(s, obj, "members", Json::obj(), notes);
    members
        .get("members")
        .map(Json::as_array)
        .map(<[Json]>::len)
}
