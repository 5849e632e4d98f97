//! Golden tests of the UCI parser and writer against files made by OpenWrt's
//! real `uci` tool (`tests/fixtures/uci/`, see its README), and property
//! tests: no input makes the parser panic, and whatever the writer writes
//! reads back the same.
//!
//! - `X.conf` with `X.show`: `Package::show` prints exactly what `uci show`
//!   printed for it (the package name is the one the `.show` file uses);
//! - `X.export`: `Package::export` prints exactly what `uci export` printed;
//! - `written-by-*.conf`: `to_config_file` gives back the file byte for byte;
//! - `bad-*.conf`: parsing fails on the line, and with the reason, that uci
//!   printed (`uci: Parse error (<reason>) at line <n>, byte <b>`).

use std::fs;
use std::path::{Path, PathBuf};

use meshd::uci::{Package, Section, UciOption, Value};
use proptest::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/uci")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.conf` fixture, sorted, as (stem, path).
fn conf_fixtures() -> Vec<(String, PathBuf)> {
    let mut all: Vec<(String, PathBuf)> = fs::read_dir(fixtures())
        .expect("the fixtures directory tests/fixtures/uci")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    all.sort();
    all
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

#[test]
fn the_fixtures_are_all_there() {
    let stems: Vec<String> = conf_fixtures().into_iter().map(|(s, _)| s).collect();
    for expected in [
        "bad-option-outside-section",
        "bad-unterminated",
        "tricky",
        "written-by-uci",
    ] {
        assert!(
            stems.iter().any(|s| s == expected),
            "missing {expected}.conf"
        );
    }
}

#[test]
fn show_matches_uci_show_for_every_good_fixture() {
    let mut checked = 0;
    for (stem, path) in conf_fixtures() {
        if stem.starts_with("bad-") {
            continue;
        }
        let expected = read(&path.with_extension("show"));
        // `uci show` prints `<package>.<section>...`; take the package name
        // from the fixture itself.
        let package_name = expected.split('.').next().unwrap();
        let package = Package::parse(&read(&path)).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(package.show(package_name), expected, "{stem}.show");
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn export_matches_uci_export() {
    let mut checked = 0;
    for (stem, path) in conf_fixtures() {
        let export = path.with_extension("export");
        if stem.starts_with("bad-") || !export.exists() {
            continue;
        }
        let expected = read(&export);
        let package_name = expected
            .strip_prefix("package ")
            .and_then(|rest| rest.lines().next())
            .expect("an export starts with `package <name>`");
        let package = Package::parse(&read(&path)).unwrap();
        assert_eq!(package.export(package_name), expected, "{stem}.export");
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn files_written_by_uci_are_written_back_byte_for_byte() {
    let mut checked = 0;
    for (stem, path) in conf_fixtures() {
        if !stem.starts_with("written-by-") {
            continue;
        }
        let text = read(&path);
        let package = Package::parse(&text).unwrap();
        assert_eq!(package.to_config_file(), text, "{stem}.conf");
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn the_written_fixture_has_what_uci_set_put_there() {
    let package = Package::parse(&read(&fixtures().join("written-by-uci.conf"))).unwrap();
    let main = package.section("main").unwrap();
    assert_eq!(main.stype, "meshd");
    assert_eq!(main.line, 2);
    assert_eq!(
        main.get("description"),
        Some(&Value::Single("Alice's router (living room)".into()))
    );
    assert_eq!(
        main.get("announce"),
        Some(&Value::List(vec![
            "192.168.1.0/24".into(),
            "fd00:1::/64".into()
        ]))
    );
    let anonymous = &package.sections[2];
    assert_eq!(anonymous.name, None);
    assert_eq!(
        anonymous.get("comment"),
        Some(&Value::Single("a \"quoted\" word and a tab\there".into()))
    );
    assert_eq!(package.section_ref(2), "@member[1]");
}

/// `uci: Parse error (<reason>) at line <n>, byte <b>` → (reason, n).
fn uci_parse_error(show: &str) -> (String, usize) {
    let show = show.trim_end();
    let rest = show
        .strip_prefix("uci: Parse error (")
        .unwrap_or_else(|| panic!("not a uci parse error: {show:?}"));
    let (reason, position) = rest.rsplit_once(") at line ").unwrap();
    let line = position.split(',').next().unwrap().parse().unwrap();
    (reason.to_string(), line)
}

#[test]
fn bad_fixtures_fail_on_the_line_uci_names() {
    let mut checked = 0;
    for (stem, path) in conf_fixtures() {
        if !stem.starts_with("bad-") {
            continue;
        }
        let (reason, line) = uci_parse_error(&read(&path.with_extension("show")));
        match Package::parse(&read(&path)) {
            Ok(p) => panic!("{stem}: uci rejects it, we parsed {p:?}"),
            Err(e) => {
                assert_eq!(e.line, line, "{stem}: {e}");
                assert_eq!(e.message, reason, "{stem}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 2);
}

// ---- properties ----

/// Text made of the pieces UCI syntax is made of, so that the interesting
/// paths (quotes across lines, continuations, `;`, comments) are hit often.
fn uci_like_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("config"),
        Just("option"),
        Just("list"),
        Just("package"),
        Just("c"),
        Just("o"),
        Just("l"),
        Just("p"),
        Just(" "),
        Just("\t"),
        Just("\n"),
        Just("\r\n"),
        Just("'"),
        Just("\""),
        Just("\\"),
        Just("#"),
        Just(";"),
        Just("a"),
        Just("b_1"),
        Just("-"),
        Just("é"),
        Just("\u{b}"),
        Just("\0"),
    ];
    prop::collection::vec(piece, 0..80).prop_map(|pieces| pieces.concat())
}

/// Lines shaped like UCI commands, with names from a small set (so that
/// sections and options repeat and merge) and values of quoted, escaped and
/// bare parts, sometimes across lines or broken; now and then a wild line.
fn uci_like_lines() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        3 => "[abc]",
        2 => "[A-Za-z0-9_]{1,4}",
        2 => "'[^'\0]{0,6}'",
        2 => "\"[^\"\\\\\0]{0,6}\"",
        1 => Just("'\\''".to_string()),
        1 => Just("\\\n".to_string()),
        1 => Just("\"a\\\"b\"".to_string()),
        1 => "[ -~]{1,2}",
    ];
    let arg = prop::collection::vec(part, 1..3).prop_map(|parts| parts.concat());
    let name = || {
        prop_oneof![
            4 => "[abc]",
            2 => "[A-Za-z0-9_]{1,5}",
            1 => "'[abc]'",
            1 => "\"[ab]\"c",
        ]
    };
    let tail = || {
        prop_oneof![
            8 => Just(""),
            1 => Just(" # note"),
            1 => Just(" ; option z 1"),
            1 => Just(" x"),
        ]
    };
    let indent = || prop_oneof![Just(""), Just("\t"), Just("  ")];
    let option = (
        indent(),
        prop_oneof![Just("option"), Just("o"), Just("list"), Just("l")],
        name(),
        arg.clone(),
        tail(),
    )
        .prop_map(|(i, k, n, v, t)| format!("{i}{k} {n} {v}{t}\n"));
    let config = (
        prop_oneof![Just("config"), Just("c")],
        prop_oneof![3 => "[st]", 1 => "[!-~]{1,3}"],
        prop::option::of(name()),
        tail(),
    )
        .prop_map(|(k, ty, n, t)| format!("{k} {ty} {}{t}\n", n.unwrap_or_default()));
    let wild = (
        prop_oneof![
            Just("option"),
            Just("config"),
            Just("package"),
            Just(""),
            Just("#")
        ],
        prop::collection::vec(arg, 0..4),
    )
        .prop_map(|(k, args)| format!("{k} {}\n", args.join(" ")));
    let line = prop_oneof![
        6 => option,
        3 => config,
        1 => Just("\n".to_string()),
        1 => Just("# comment 'x\n".to_string()),
        1 => wild,
    ];
    // Start with a section most of the time, so that options have a home.
    (
        prop::bool::weighted(0.9),
        prop::collection::vec(line, 0..14),
    )
        .prop_map(|(start, lines)| {
            let head = if start { "config t main\n" } else { "" };
            format!("{head}{}", lines.concat())
        })
}

/// Whatever parses is written so that it parses back to the same package,
/// and printing it never panics.
fn check_reparse(text: &str) -> Result<(), TestCaseError> {
    if let Ok(package) = Package::parse(text) {
        let _ = package.show("p");
        let _ = package.export("p");
        let written = package.to_config_file();
        let again = Package::parse(&written)
            .map_err(|e| TestCaseError::fail(format!("{e} reading back {written:?}")))?;
        prop_assert_eq!(strip_lines(again), strip_lines(package));
    }
    Ok(())
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_]{1,8}"
}

fn section_type() -> impl Strategy<Value = String> {
    // Mostly names; sometimes anything uci takes as a type.
    prop_oneof![4 => name(), 1 => "[!-~]{1,6}"]
}

/// Any text without NUL, with the characters quoting must get right often.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~\t\n\r'\"\\\\#;]{0,12}", "[^\u{0}]{0,12}",]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        // An empty `option` is not stored by uci: it cannot be written.
        text()
            .prop_filter("an option needs a value", |s| !s.is_empty())
            .prop_map(Value::Single),
        prop::collection::vec(text(), 1..4).prop_map(Value::List),
    ]
}

fn package() -> impl Strategy<Value = Package> {
    let options = prop::collection::vec((name(), value()), 0..6);
    let section = (section_type(), prop::option::of(name()), options);
    prop::collection::vec(section, 0..6).prop_map(|sections| {
        let mut package = Package::new();
        for (stype, name, options) in sections {
            // uci merges a section named twice, and an option set twice.
            if name
                .as_deref()
                .is_some_and(|n| package.section(n).is_some())
            {
                continue;
            }
            let mut section = Section::new(&stype, name, 0);
            for (option, value) in options {
                if section.get(&option).is_none() {
                    section.options.push(UciOption {
                        name: option,
                        value,
                        line: 0,
                    });
                }
            }
            package.sections.push(section);
        }
        package
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_reparse(&text)?;
    }

    #[test]
    fn uci_like_text_never_panics_and_reads_back(text in uci_like_text()) {
        check_reparse(&text)?;
    }

    #[test]
    fn uci_like_lines_never_panic_and_read_back(text in uci_like_lines()) {
        check_reparse(&text)?;
    }

    #[test]
    fn written_packages_read_back_the_same(package in package()) {
        let written = package.to_config_file();
        let parsed = Package::parse(&written)
            .map_err(|e| TestCaseError::fail(format!("{e} reading {written:?}")))?;
        prop_assert_eq!(strip_lines(parsed), package);
    }
}
