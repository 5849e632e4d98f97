//! The configuration file (`/etc/config/meshd`), which users edit by hand:
//! the UCI parser (`uci::Package::parse`), the typed configuration
//! (`config::Config::parse`) and the editor behind `meshd member add/del`
//! (`uci_edit`).
//!
//! Input layout: byte 0 picks the member the editor adds (bits 0-1: its
//! name, `r9`, `r2`, `main` or `bad-name`; bits 2-3: its overlay address;
//! bits 4-5: its AS number) and the one it removes (bits 6-7: `r2`, `r1`,
//! the file's first member, `nobody`); the rest, as UTF-8, is the file.
//!
//! Checked: no panic; every parse error names a line of the file; every
//! section and option the parser reads names the line it stands on; what
//! the writer makes of a parsed file (`to_config_file`, `export`) parses
//! back to the same sections and options; every error of the typed
//! configuration names a line of the file, or line 0 for what is about the
//! file as a whole, never for a section; a file that checks yields its
//! node and member configurations; an edit the editor makes checks, holds
//! the member it added (or not the one it removed), and leaves the other
//! sections as they were.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mesh_core::wg::Key;
use meshd::config::Config;
use meshd::uci::Package;
use meshd::uci_edit::{add_member_text, del_member_text, NewMember};

const FILE: &str = "/etc/config/meshd";
const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

fn strip(mut p: Package) -> Package {
    for s in &mut p.sections {
        s.line = 0;
        for o in &mut s.options {
            o.line = 0;
        }
    }
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let file = Path::new(FILE);
    let lines = text.matches('\n').count() + 1;

    let package = match Package::parse(text) {
        Err(e) => {
            assert!(
                e.line >= 1 && e.line <= lines,
                "error on line {} of {lines}: {e}",
                e.line
            );
            None
        }
        Ok(p) => {
            for s in &p.sections {
                assert!(s.line >= 1 && s.line <= lines, "section on line {}", s.line);
                for o in &s.options {
                    assert!(o.line >= 1 && o.line <= lines, "option on line {}", o.line);
                }
            }
            let written = p.to_config_file();
            let back = Package::parse(&written)
                .unwrap_or_else(|e| panic!("the writer's file does not parse: {e}\n{written}"));
            assert_eq!(strip(back), strip(p.clone()), "written:\n{written}");
            let exported = p.export("meshd");
            let back = Package::parse(&exported)
                .unwrap_or_else(|e| panic!("the export does not parse: {e}\n{exported}"));
            assert_eq!(strip(back), strip(p.clone()), "exported:\n{exported}");
            let _ = p.show("meshd");
            Some(p)
        }
    };

    let config = Config::parse(text, file);
    match &config {
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            for e in errors {
                assert!(e.line <= lines, "{e}");
                assert!(
                    e.line > 0 || e.section.is_empty(),
                    "an error about a section names no line: {e}"
                );
                let _ = e.to_string();
            }
        }
        Ok(c) => {
            assert!(package.is_some(), "checks but does not parse");
            for w in &c.warnings {
                assert!(w.line <= lines, "{w}");
            }
            let _ = c.main.node_config(Key([7; 32]), 1);
            for m in &c.members {
                let _ = m.member_config(&c.main, &[]);
                let _ = m.bfd_setting(&c.main);
                let _ = m.endpoint_names().count();
            }
        }
    }

    let name = ["r9", "r2", "main", "bad-name"][sel as usize & 3];
    let overlay = ["10.0.0.9", "10.0.0.2", "10.0.0.300", ""][(sel as usize >> 2) & 3];
    let asn = ["65009", "65002", "23456", "x"][(sel as usize >> 4) & 3];
    let member = NewMember::new(name, KEY, overlay, asn);
    if let Ok(new) = add_member_text(text, file, &member) {
        let c = Config::parse(&new, file).expect("the editor's file checks");
        assert!(c.member(name).is_some(), "added {name} is not there");
        let old = strip(package.clone().expect("edited a file that does not parse"));
        let now = strip(Package::parse(&new).unwrap());
        assert_eq!(
            now.sections[..old.sections.len()],
            old.sections[..],
            "other sections changed"
        );
        assert_eq!(now.sections.len(), old.sections.len() + 1);
    }
    let first = config
        .as_ref()
        .ok()
        .and_then(|c| c.members.first())
        .map(|m| m.name.clone());
    let gone = match sel >> 6 {
        0 => "r2".to_string(),
        1 => "r1".to_string(),
        2 => first.unwrap_or_default(),
        _ => "nobody".to_string(),
    };
    if let Ok(new) = del_member_text(text, file, &gone) {
        let c = Config::parse(&new, file).expect("the editor's file checks");
        assert!(c.member(&gone).is_none(), "removed {gone} is still there");
        let old = strip(package.expect("edited a file that does not parse"));
        let now = strip(Package::parse(&new).unwrap());
        assert_eq!(now.sections.len() + 1, old.sections.len());
        assert!(
            now.sections.iter().all(|s| old.sections.contains(s)),
            "other sections changed"
        );
    }
});
