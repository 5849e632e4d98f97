//! `member_add` / `member_del` on real files: minimal text edits in uci's
//! format, validated by meshd's own config parser, and nothing at all
//! changed when an edit is refused.

/// In a module of this name so that `cargo test uci_edit` runs these too.
mod uci_edit {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use meshd::config::{Config, Endpoint};
    use meshd::uci::Package;
    use meshd::uci_edit::{
        add_member_text, del_member_text, member_add, member_del, EditError, NewMember,
    };

    const KEY2: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const KEY3: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
    const KEY4: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    const KEY5: &str = "ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=";

    /// A file as uci writes them (a blank line before each section and at the
    /// end), plus comments a person added.
    const START: &str = "# meshd on Alice's router
# (meshd's edits keep comments; uci commit drops them)

config meshd 'main'
\toption overlay '10.0.0.1'
\toption asn '65001'
\tlist announce '192.168.1.0/24'

# Bob, upstairs
config member 'bob'
\toption public_key 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='
\toption overlay '10.0.0.2'
\toption asn '65002'
\tlist prefix '192.168.2.0/24'
\tlist endpoint 'bob.example.net:51820'

config member 'carol'
\toption public_key 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw='
\toption overlay '10.0.0.3'
\toption asn '65003'
\t# her ISP gives her IPv6 only
\tlist endpoint '[2001:db8::3]:51820'

";

    /// What uci writes for dave (`uci set meshd.dave=member`, `uci set` /
    /// `uci add_list` of each option in this order, `uci commit`).
    const DAVE_SECTION: &str = "config member 'dave'
\toption public_key 'AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA='
\toption overlay '10.0.0.4'
\toption overlay6 'fd00::4'
\toption asn '65004'
\tlist prefix '192.168.4.0/24'
\tlist prefix 'fd00:4::/64'
\tlist endpoint 'dave.example.net:51820'
\tlist endpoint '[2001:db8::4]:51820'
\toption keepalive '15'
";

    fn dave() -> NewMember {
        NewMember {
            overlay6: Some("fd00::4".into()),
            prefixes: vec!["192.168.4.0/24".into(), "fd00:4::/64".into()],
            endpoints: vec![
                "dave.example.net:51820".into(),
                "[2001:db8::4]:51820".into(),
            ],
            keepalive: Some("15".into()),
            ..NewMember::new("dave", KEY4, "10.0.0.4", "65004")
        }
    }

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/uci")
            .join(name);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A fresh directory holding `meshd` with `text`, mode 0640.
    fn scratch(name: &str, text: &str) -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("meshd-uci-edit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("meshd");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        (dir, path)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    fn member_names(text: &str) -> Vec<String> {
        match Config::parse(text, Path::new("/etc/config/meshd")) {
            Ok(c) => c.members.into_iter().map(|m| m.name).collect(),
            Err(e) => panic!("{e:?}\nin:\n{text}"),
        }
    }

    fn file() -> &'static Path {
        Path::new("/etc/config/meshd")
    }

    #[test]
    fn add_then_del_gives_back_the_file_byte_for_byte() {
        let (dir, path) = scratch("roundtrip", START);
        member_add(&path, &dave()).unwrap();

        let added = read(&path);
        // Everything before is untouched; the section is what uci writes, and the
        // file still ends with uci's blank line.
        assert_eq!(added, format!("{START}{DAVE_SECTION}\n"));
        assert_eq!(mode(&path), 0o640);
        assert_eq!(entries(&dir), ["meshd"]);

        let config = Config::load(&path).unwrap();
        let names: Vec<_> = config.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["bob", "carol", "dave"]);
        let d = config.member("dave").unwrap();
        assert_eq!(d.public_key, KEY4.parse().unwrap());
        assert_eq!(d.overlay, "10.0.0.4".parse::<std::net::Ipv4Addr>().unwrap());
        assert_eq!(d.overlay6, Some("fd00::4".parse().unwrap()));
        assert_eq!(d.asn, 65004);
        let prefixes: Vec<String> = d.prefixes.iter().map(|p| p.to_string()).collect();
        assert_eq!(prefixes, ["192.168.4.0/24", "fd00:4::/64"]);
        assert_eq!(
            d.endpoints,
            [
                Endpoint::Name("dave.example.net".into(), 51820),
                Endpoint::Addr("[2001:db8::4]:51820".parse().unwrap()),
            ]
        );
        assert_eq!(d.keepalive, Some(15));
        assert!(d.enabled);
        assert_eq!(config.warnings, []);

        member_del(&path, "dave").unwrap();
        assert_eq!(read(&path), START);
        assert_eq!(mode(&path), 0o640);
        assert_eq!(entries(&dir), ["meshd"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_section_text_is_uci_s() {
        assert_eq!(dave().section_text(), DAVE_SECTION);
        // What uci's writer (golden-tested in tests/uci_golden.rs) makes of the
        // whole file is the file meshd wrote, but for the comments uci drops.
        let added = add_member_text(START, file(), &dave()).unwrap();
        let uncommented: String = START
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let uncommented = uncommented.trim_start_matches('\n');
        assert_eq!(
            Package::parse(&added).unwrap().to_config_file(),
            format!("\n{uncommented}{DAVE_SECTION}\n")
        );
    }

    #[test]
    fn del_removes_the_section_with_its_comments_and_nothing_else() {
        let without_bob = del_member_text(START, file(), "bob").unwrap();
        assert_eq!(
            without_bob,
            START.replace(
                "# Bob, upstairs
config member 'bob'
\toption public_key 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='
\toption overlay '10.0.0.2'
\toption asn '65002'
\tlist prefix '192.168.2.0/24'
\tlist endpoint 'bob.example.net:51820'

",
                ""
            )
        );
        assert_eq!(member_names(&without_bob), ["carol"]);

        // The last section, in uci's layout: the blank line that ends the file
        // stays the file's last line.
        let without_carol = del_member_text(START, file(), "carol").unwrap();
        assert!(without_carol.ends_with("\tlist endpoint 'bob.example.net:51820'\n\n"));
        assert_eq!(
            without_carol,
            START.split("config member 'carol'").next().unwrap()
        );
        let neither = del_member_text(&without_carol, file(), "bob").unwrap();
        assert_eq!(
            neither,
            "# meshd on Alice's router
# (meshd's edits keep comments; uci commit drops them)

config meshd 'main'
\toption overlay '10.0.0.1'
\toption asn '65001'
\tlist announce '192.168.1.0/24'

"
        );
    }

    #[test]
    fn a_hand_written_file_keeps_its_own_ending() {
        // No blank lines at all, no blank line at the end.
        let text = format!(
        "config meshd 'main'\n\toption overlay '10.0.0.1'\n\toption asn '65001'\nconfig member 'bob'\n\toption public_key '{KEY2}'\n\toption overlay '10.0.0.2'\n\toption asn '65002'\n"
    );
        let added = add_member_text(&text, file(), &dave()).unwrap();
        assert_eq!(added, format!("{text}\n{DAVE_SECTION}"));
        assert_eq!(del_member_text(&added, file(), "dave").unwrap(), text);
        assert_eq!(
            del_member_text(&text, file(), "bob").unwrap(),
            "config meshd 'main'\n\toption overlay '10.0.0.1'\n\toption asn '65001'\n"
        );

        // No newline at the end: one is added (and stays after a delete).
        let cut = text.trim_end_matches('\n');
        let added = add_member_text(cut, file(), &dave()).unwrap();
        assert_eq!(added, format!("{cut}\n\n{DAVE_SECTION}"));
        assert_eq!(
            del_member_text(&added, file(), "dave").unwrap(),
            format!("{cut}\n")
        );
    }

    /// written-by-uci.conf, given what meshd needs of its anonymous member.
    fn written_by_uci() -> String {
        let text = fixture("written-by-uci.conf");
        let fixed = text.replace(
            "\nconfig member\n",
            "\nconfig member\n\toption name 'r3'\n\toption asn '4200000003'\n",
        );
        assert_ne!(fixed, text);
        fixed
    }

    #[test]
    fn a_file_uci_wrote_stays_as_uci_writes_it() {
        let text = written_by_uci();
        assert_eq!(Package::parse(&text).unwrap().to_config_file(), text);

        let added = add_member_text(&text, file(), &dave()).unwrap();
        assert_eq!(added, format!("{text}{DAVE_SECTION}\n"));
        assert_eq!(Package::parse(&added).unwrap().to_config_file(), added);
        assert_eq!(member_names(&added), ["r2", "r3", "dave"]);
        assert_eq!(del_member_text(&added, file(), "dave").unwrap(), text);

        // The anonymous member, found by its `option name`.
        let without_r3 = del_member_text(&added, file(), "r3").unwrap();
        assert_eq!(
            Package::parse(&without_r3).unwrap().to_config_file(),
            without_r3
        );
        assert_eq!(member_names(&without_r3), ["r2", "dave"]);
        let anonymous = "config member\n\toption name 'r3'\n\toption asn '4200000003'\n\toption public_key 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw='\n\toption overlay '10.0.0.3'\n\toption comment 'a \"quoted\" word and a tab\there'\n\n";
        assert_eq!(without_r3, added.replace(anonymous, ""));

        // A named one before an anonymous one: the anonymous one is untouched.
        let without_r2 = del_member_text(&text, file(), "r2").unwrap();
        assert_eq!(
            Package::parse(&without_r2).unwrap().to_config_file(),
            without_r2
        );
        assert!(without_r2.contains(anonymous));
        assert!(without_r2.contains("\toption description 'Alice'\\''s router (living room)'\n"));
        assert_eq!(member_names(&without_r2), ["r3"]);
    }

    /// tricky.conf, given what meshd needs.
    fn tricky() -> String {
        let text = fixture("tricky.conf")
        .replace(
            "# trailing comment\n",
            "# trailing comment\n\toption overlay '10.0.0.1'\n\toption asn '65001'\n",
        )
        .replace(
            "\toption empty ''\n",
            "\toption empty ''\n\toption name anon\n\toption overlay 10.0.0.8\n\toption asn 65008\n",
        )
        .replace(
            "\toption overlay 10.0.0.9\n",
            &format!("\toption overlay 10.0.0.9\n\toption public_key {KEY3}\n"),
        );
        assert_eq!(member_names(&text), ["anon", "named"]);
        text
    }

    #[test]
    fn odd_quoting_anonymous_and_repeated_sections_are_left_alone() {
        let text = tricky();
        let added = add_member_text(&text, file(), &dave()).unwrap();
        // tricky.conf ends without a blank line.
        assert_eq!(added, format!("{text}\n{DAVE_SECTION}"));
        assert_eq!(member_names(&added), ["anon", "named", "dave"]);
        assert_eq!(del_member_text(&added, file(), "dave").unwrap(), text);

        // 'named' is given in two blocks: both go.
        let without_named = del_member_text(&added, file(), "named").unwrap();
        let named = format!("config member 'named'\n\toption overlay 10.0.0.9\n\toption public_key {KEY3}\nconfig member 'named'\n\toption asn 4200000009\n");
        assert_eq!(without_named, added.replace(&format!("{named}\n"), ""));
        assert_eq!(member_names(&without_named), ["anon", "dave"]);
        assert_eq!(
            del_member_text(&text, file(), "named").unwrap(),
            text.replace(&format!("\n{named}"), "")
        );

        // The anonymous one, between the main section and 'named'.
        let without_anon = del_member_text(&text, file(), "anon").unwrap();
        assert_eq!(
        without_anon,
        text.replace(
            "config member\n\toption public_key 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='\n\toption empty ''\n\toption name anon\n\toption overlay 10.0.0.8\n\toption asn 65008\n\n",
            ""
        )
    );
        assert!(
            without_anon.starts_with("# comment line\nconfig meshd 'main'   # trailing comment\n")
        );
        assert!(without_anon.contains("\toption mixed 'a'\"b\"c\n"));
        assert_eq!(member_names(&without_anon), ["named"]);
    }

    #[test]
    fn quotes_in_values_are_written_as_uci_writes_them() {
        // No member option may hold a `'`; the quoting is uci's all the same,
        // as in the fixture uci wrote (`option description 'Alice'\''s ...'`).
        let odd = NewMember {
            endpoints: vec!["Alice's router (living room)".into()],
            ..NewMember::new("eve", KEY5, "10.0.0.5", "65005")
        };
        let written = "\tlist endpoint 'Alice'\\''s router (living room)'\n";
        assert!(odd.section_text().contains(written));
        assert!(fixture("written-by-uci.conf").contains("'Alice'\\''s router (living room)'"));
        // ... and meshd's parser reads the value back whole: its error quotes it.
        match add_member_text(START, file(), &odd) {
            Err(EditError::Rejected(errors)) => {
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].section, "member 'eve'");
                assert_eq!(errors[0].option.as_deref(), Some("endpoint"));
                assert!(
                    errors[0]
                        .message
                        .starts_with("'Alice's router (living room)' is not an endpoint"),
                    "{}",
                    errors[0].message
                );
            }
            other => panic!("{other:?}"),
        }
        let key = NewMember::new("eve", "it's", "10.0.0.5", "65005");
        assert!(key
            .section_text()
            .contains("\toption public_key 'it'\\''s'\n"));
        let e = add_member_text(START, file(), &key).unwrap_err();
        assert_eq!(
        e.to_string(),
        "/etc/config/meshd:25: member 'eve': option 'public_key': 'it's' is not a WireGuard key (44 characters of base64)"
    );
    }

    /// Runs `edit` on a copy of `text` and checks that it fails and leaves the
    /// file (bytes, mode) and its directory as they were.
    fn refused(
        name: &str,
        text: &str,
        edit: impl FnOnce(&Path) -> Result<(), EditError>,
    ) -> EditError {
        let (dir, path) = scratch(name, text);
        let e = edit(&path).expect_err("the edit should be refused");
        assert_eq!(read(&path), text, "{name}: file changed");
        assert_eq!(mode(&path), 0o640, "{name}: mode changed");
        assert_eq!(entries(&dir), ["meshd"], "{name}: files left behind");
        fs::remove_dir_all(&dir).unwrap();
        e
    }

    #[test]
    fn a_refused_member_leaves_the_file_as_it_was() {
        let with = |f: fn(&mut NewMember)| {
            let mut m = dave();
            f(&mut m);
            m
        };
        let cases: Vec<(&str, NewMember, &str)> = vec![
        (
            "dup-name",
            with(|m| m.name = "bob".into()),
            "a section named 'bob' exists already (line 10)",
        ),
        (
            "main-name",
            with(|m| m.name = "main".into()),
            "a section named 'main' exists already (line 4)",
        ),
        (
            "space",
            with(|m| m.name = "dave smith".into()),
            "'dave smith' is not a member name (1..32 of A-Z a-z 0-9 _)",
        ),
        (
            "quote-name",
            with(|m| m.name = "d'ave".into()),
            "'d'ave' is not a member name (1..32 of A-Z a-z 0-9 _)",
        ),
        (
            "long-name",
            with(|m| m.name = "d".repeat(33)),
            "member name 'ddddddddddddddddddddddddddddddddd' is longer than 32 bytes",
        ),
        (
            "dup-key",
            with(|m| m.public_key = KEY2.into()),
            "option 'public_key': same public key as member 'bob' (line 11)",
        ),
        (
            "bad-key",
            with(|m| m.public_key = "not-a-key".into()),
            "option 'public_key': 'not-a-key' is not a WireGuard key (44 characters of base64)",
        ),
        (
            "no-key",
            with(|m| m.public_key = String::new()),
            "member 'dave': missing required option 'public_key'",
        ),
        (
            "dup-asn",
            with(|m| m.asn = "65003".into()),
            "option 'asn': 65003 is the AS number of member 'carol' (line 20)",
        ),
        (
            "own-asn",
            with(|m| m.asn = "65001".into()),
            "option 'asn': 65001 is this node's own AS number",
        ),
        (
            "as-trans",
            with(|m| m.asn = "23456".into()),
            "option 'asn': '23456' is AS_TRANS (RFC 6793), which is not a usable AS number",
        ),
        (
            "dup-overlay",
            with(|m| m.overlay = "10.0.0.2".into()),
            "option 'overlay': 10.0.0.2 is the overlay address of member 'bob' (line 12)",
        ),
        (
            "bad-prefix",
            with(|m| m.prefixes[1] = "fd00:4::/129".into()),
            "option 'prefix': 'fd00:4::/129' is not an IP prefix (address/length)",
        ),
        (
            "default-route",
            with(|m| m.prefixes = vec!["0.0.0.0/0".into()]),
            "option 'prefix': '0.0.0.0/0' is a default route; meshd carries home networks only",
        ),
        (
            "bad-endpoint",
            with(|m| m.endpoints = vec!["dave.example.net".into()]),
            "option 'endpoint': 'dave.example.net' is not an endpoint: the port is missing (host:port)",
        ),
        (
            "bad-keepalive",
            with(|m| m.keepalive = Some("-1".into())),
            "option 'keepalive': '-1' is not a keepalive interval (0..65535 seconds, 0 = off)",
        ),
        (
            "newline",
            with(|m| m.overlay = "10.0.0.4\nconfig member 'x'".into()),
            "option 'overlay': '10.0.0.4\nconfig member 'x'' is not a unicast IPv4 address",
        ),
        (
            "nul",
            with(|m| m.bfd = Some("1\0".into())),
            "NUL byte in file",
        ),
    ];
        for (name, member, expected) in cases {
            let e = refused(name, START, |path| member_add(path, &member));
            let message = e.to_string();
            assert!(
                message.contains(expected),
                "{name}: {message:?} does not contain {expected:?}"
            );
            match (name, &e) {
                ("dup-name" | "main-name", EditError::NameTaken { .. })
                | ("space" | "quote-name", EditError::InvalidName(_)) => {}
                (_, EditError::Rejected(errors)) => assert_eq!(errors.len(), 1, "{name}: {e}"),
                _ => panic!("{name}: {e:?}"),
            }
        }
    }

    #[test]
    fn deleting_a_member_that_is_not_there_is_refused() {
        for name in ["dave", "main", "Bob", ""] {
            match refused("missing", START, |path| member_del(path, name)) {
                EditError::NoSuchMember(n) => assert_eq!(n, name),
                e => panic!("{e:?}"),
            }
        }
        let (dir, _) = scratch("no-file", START);
        match member_del(&dir.join("nothing"), "bob") {
            Err(EditError::Io { error, .. }) => {
                assert_eq!(error.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(entries(&dir), ["meshd"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_broken_file_is_not_edited() {
        let unterminated = START.replace(
            "\toption asn '65003'\n",
            "\toption asn '65003'\n\toption note \"oops\n",
        );
        let bad_asn = START.replace("\toption asn '65002'\n", "\toption asn '65x02'\n");
        let cases: [(&str, &str, &str); 3] = [
            (
                "unterminated",
                &unterminated,
                "/meshd:24: EOF with unterminated \"",
            ),
            (
                "bad-asn",
                &bad_asn,
                "meshd:13: member 'bob': option 'asn': '65x02' is not an AS number (1..4294967294)",
            ),
            (
                "no-main",
                "config member 'bob'\n",
                ": no 'config meshd' section",
            ),
        ];
        for (name, text, expected) in cases {
            for e in [
                refused(name, text, |path| member_add(path, &dave())),
                refused(name, text, |path| member_del(path, "carol")),
            ] {
                match &e {
                    EditError::BrokenFile(errors) => {
                        assert!(
                            errors.iter().any(|x| x.to_string().ends_with(expected)),
                            "{name}: {e}"
                        );
                    }
                    _ => panic!("{name}: {e:?}"),
                }
                assert!(e
                    .to_string()
                    .starts_with("the configuration has errors, not edited:\n"));
            }
        }
        // Not UTF-8.
        let (dir, path) = scratch("latin1", "");
        let bytes = [START.as_bytes(), b"# caf\xe9\n"].concat();
        fs::write(&path, &bytes).unwrap();
        match member_add(&path, &dave()) {
            Err(EditError::BrokenFile(errors)) => {
                assert_eq!(errors[0].line, 24);
                assert_eq!(errors[0].message, "not UTF-8 text");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(&path).unwrap(), bytes);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_layout_that_lines_cannot_split_is_refused() {
        let main = "config meshd 'main'\n\toption overlay '10.0.0.1'\n\toption asn '65001'\n";
        // Two sections on one line.
        let two = format!(
        "{main}config member 'bob'; option public_key '{KEY2}'; option overlay '10.0.0.2'; option asn '65002'; config member 'carol'; option public_key '{KEY3}'; option overlay '10.0.0.3'; option asn '65003'\n"
    );
        // A section that begins after an option of another.
        let late = format!(
        "{main}config member 'bob'\n\toption public_key '{KEY2}'\n\toption overlay '10.0.0.2'\n\toption asn '65002'; config member 'carol'\n\toption public_key '{KEY3}'\n\toption overlay '10.0.0.3'\n\toption asn '65003'\n"
    );
        assert_eq!(member_names(&two), ["bob", "carol"]);
        assert_eq!(member_names(&late), ["bob", "carol"]);
        for (name, text) in [("two", &two), ("late", &late)] {
            match refused(name, text, |path| member_del(path, "bob")) {
                EditError::Unsupported(_) => {}
                e => panic!("{name}: {e:?}"),
            }
        }
        // Adding at the end is fine for both.
        for text in [&two, &late] {
            let added = add_member_text(text, file(), &dave()).unwrap();
            assert_eq!(added, format!("{text}\n{DAVE_SECTION}"));
        }
    }

    #[test]
    fn the_edit_waits_for_a_uci_commit_holding_the_lock() {
        use nix::fcntl::{Flock, FlockArg};
        let (dir, path) = scratch("lock", START);
        let locked = Flock::lock(fs::File::open(&path).unwrap(), FlockArg::LockExclusive).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(150));
            drop(locked);
        });
        let started = std::time::Instant::now();
        member_add(&path, &dave()).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(100));
        releaser.join().unwrap();
        assert_eq!(read(&path), format!("{START}{DAVE_SECTION}\n"));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Is `small` what is left of `big` after taking some of its lines out?
    fn lines_taken_out(small: &str, big: &str) -> bool {
        let mut left = small.split_inclusive('\n').peekable();
        for line in big.split_inclusive('\n') {
            if left.peek() == Some(&line) {
                left.next();
            }
        }
        left.next().is_none()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Files as people write them (blank lines or none, comments above
        /// and inside sections, any quoting, named and anonymous members):
        /// every member can be deleted, taking out only its own lines, and
        /// adding a member then deleting it gives back the file.
        #[test]
        fn plain_layouts_edit_cleanly(
            header in proptest::bool::ANY,
            members in proptest::collection::vec(
                (proptest::bool::ANY, 0..3usize, proptest::bool::ANY, proptest::bool::ANY, 0..3usize),
                1..6,
            ),
            trailing_blank in proptest::bool::ANY,
        ) {
            let mut text = String::new();
            if header {
                text.push_str("# header\n");
            }
            text.push_str("config meshd 'main'\n\toption overlay '10.0.0.1'\n\toption asn '65001'\n");
            for (i, &(anonymous, blanks, comment, inner, quoting)) in members.iter().enumerate() {
                let q = |v: String| match quoting {
                    0 => format!("'{v}'"),
                    1 => format!("\"{v}\""),
                    _ => v,
                };
                text.push_str(&"\n".repeat(blanks));
                if comment {
                    text.push_str(&format!("# member {i}\n"));
                }
                if anonymous {
                    text.push_str(&format!("config member\n\toption name {}\n", q(format!("m{i}"))));
                } else {
                    text.push_str(&format!("config member 'm{i}'\n"));
                }
                let key = mesh_core::wg::Key([i as u8 + 1; 32]).to_string();
                text.push_str(&format!("\toption public_key {}\n", q(key)));
                if inner {
                    text.push_str(&format!("\t# note {i}\n"));
                }
                text.push_str(&format!(
                    "\toption overlay {}\n\toption asn {}\n",
                    q(format!("10.0.1.{}", i + 1)),
                    q(format!("{}", 65100 + i))
                ));
            }
            if trailing_blank {
                text.push('\n');
            }
            let names: Vec<String> = (0..members.len()).map(|i| format!("m{i}")).collect();
            proptest::prop_assert_eq!(member_names(&text), names.clone());

            for (i, name) in names.iter().enumerate() {
                let left = del_member_text(&text, file(), name).unwrap();
                let others: Vec<String> = names.iter().filter(|n| *n != name).cloned().collect();
                proptest::prop_assert_eq!(member_names(&left), others);
                proptest::prop_assert!(lines_taken_out(&left, &text), "{}\n---\n{}", text, left);
                for j in (0..names.len()).filter(|&j| j != i) {
                    proptest::prop_assert_eq!(
                        left.contains(&format!("# member {j}\n")),
                        members[j].2
                    );
                    proptest::prop_assert_eq!(
                        left.contains(&format!("\t# note {j}\n")),
                        members[j].3
                    );
                }
                let (note, comment) = (format!("# note {i}\n"), format!("# member {i}\n"));
                proptest::prop_assert!(!left.contains(&note) && !left.contains(&comment));
                proptest::prop_assert_eq!(left.starts_with("# header\n"), header);
            }

            let added = add_member_text(&text, file(), &dave()).unwrap();
            proptest::prop_assert!(added.starts_with(&text));
            proptest::prop_assert_eq!(del_member_text(&added, file(), "dave").unwrap(), text.clone());

            let mut all_gone = text.clone();
            for name in &names {
                all_gone = del_member_text(&all_gone, file(), name).unwrap();
            }
            proptest::prop_assert!(member_names(&all_gone).is_empty());
        }
    }
}
