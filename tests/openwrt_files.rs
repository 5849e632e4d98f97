//! The OpenWrt packaging (`openwrt/meshd/`) and the LuCI app
//! (`openwrt/luci-app-meshd/`): the files parse, the views call only what the
//! ACL grants, the init script asks procd for what meshd needs and refuses
//! what meshd would refuse, the default configuration is one meshd accepts,
//! the package options follow `src/config.rs`, the status view reads
//! exactly the fields `status-contract.json` lists with one ubus call per
//! refresh, updates in place, and shows the consoles first, each with its
//! game exit and NAT type in gamers' words, and says what to do when there
//! is nothing to show. What a person sees in a browser is checked by
//! `tests/openwrt/browser/` (scripts/test.sh runs it).
//!
//! Needs `node` (Debian package `nodejs`) and a POSIX `sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn openwrt() -> PathBuf {
    repo().join("openwrt")
}

fn luci_app() -> PathBuf {
    openwrt().join("luci-app-meshd")
}

fn views() -> PathBuf {
    luci_app().join("htdocs/luci-static/resources/view")
}

fn init_script() -> PathBuf {
    openwrt().join("meshd/files/meshd.init")
}

fn default_config() -> PathBuf {
    openwrt().join("meshd/files/meshd.config")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files under `dir` whose name ends in `.ext`, sorted.
fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn node() -> Command {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Command::new("node"),
        _ => panic!(
            "`node` (Node.js) is needed to check the LuCI views and was not found: \
             install the Debian package nodejs (scripts/test.sh does)"
        ),
    }
}

fn meshd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshd"))
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshd-openwrt-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The quoted strings of `text` from `start` up to `end`.
fn quoted_between(text: &str, start: &str, end: &str, quote: char) -> Vec<String> {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("`{start}` not found"));
    let body = &text[from + start.len()..];
    let body = &body[..body
        .find(end)
        .unwrap_or_else(|| panic!("no `{end}` after `{start}`"))];
    body.split(quote)
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

// ---- syntax ----

#[test]
fn every_javascript_file_is_valid_syntax() {
    let files = files_with_extension(&openwrt(), "js");
    assert!(
        files.len() >= 2,
        "expected the status and config views, found {files:?}"
    );
    for file in files {
        let out = node().arg("--check").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "node --check {}:\n{}",
            file.display(),
            stderr(&out)
        );
    }
}

#[test]
fn every_json_file_parses() {
    let files = files_with_extension(&openwrt(), "json");
    assert!(
        files.len() >= 3,
        "expected menu, ACL and contract, found {files:?}"
    );
    for file in files {
        json(&file);
    }
}

#[test]
fn the_shell_scripts_parse() {
    for script in [init_script(), openwrt().join("meshd/test.sh")] {
        let out = Command::new("sh").arg("-n").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "sh -n {}:\n{}",
            script.display(),
            stderr(&out)
        );
    }
}

// ---- the LuCI app: ACL, menu ----

/// `(object, method)` of every `rpc.declare({...})` in `source`.
fn declared_ubus_calls(source: &str) -> Vec<(String, String)> {
    let field = |block: &str, key: &str| -> Option<String> {
        let rest = block[block.find(&format!("{key}:"))? + key.len() + 1..].trim_start();
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let rest = &rest[1..];
        Some(rest[..rest.find(quote)?].to_string())
    };
    let mut calls = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("rpc.declare(") {
        let after = &rest[at + "rpc.declare(".len()..];
        // The argument runs to the parenthesis that closes the call.
        let mut depth = 1;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("unterminated rpc.declare(");
        let block = &after[..end];
        let object = field(block, "object").unwrap_or_else(|| panic!("no object in {block}"));
        let method = field(block, "method").unwrap_or_else(|| panic!("no method in {block}"));
        calls.push((object, method));
        rest = &after[end..];
    }
    calls
}

fn acl() -> Value {
    json(&luci_app().join("root/usr/share/rpcd/acl.d/luci-app-meshd.json"))
}

fn granted(acl: &Value, access: &str, object: &str) -> Vec<String> {
    acl["luci-app-meshd"][access]["ubus"][object]
        .as_array()
        .map(|a| a.iter().map(|m| m.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn the_acl_grants_every_ubus_method_the_views_declare() {
    let acl = acl();
    let mut meshd_methods = BTreeSet::new();
    for view in files_with_extension(&views(), "js") {
        for (object, method) in declared_ubus_calls(&read(&view)) {
            let read_ok = granted(&acl, "read", &object);
            let write_ok = granted(&acl, "write", &object);
            assert!(
                [read_ok, write_ok]
                    .iter()
                    .flatten()
                    .any(|m| m == &method || m == "*"),
                "{}: calls ubus {object}.{method}, which the ACL luci-app-meshd does not grant \
                 (the browser would get \"Permission denied\")",
                view.display()
            );
            if object == "meshd" {
                meshd_methods.insert(method);
            }
        }
    }
    // The status view fetches the whole document, one consistent snapshot,
    // with one call per refresh (the other methods return parts of it); the
    // Friends card's dialogs make an invite, join a mesh, and follow the
    // join with `invites`.
    let expected: BTreeSet<String> = ["status", "invite", "join", "invites"]
        .map(String::from)
        .into();
    assert_eq!(meshd_methods, expected);
    // Reading is `read`; what changes /etc/config/meshd (an invite's join
    // adds a member on both routers) is `write` only.
    for (method, access) in [
        ("status", "read"),
        ("invites", "read"),
        ("invite", "write"),
        ("join", "write"),
    ] {
        for a in ["read", "write"] {
            assert_eq!(
                granted(&acl, a, "meshd").contains(&method.to_string()),
                a == access,
                "ubus meshd {method}: {access} only"
            );
        }
    }
    // Reading and editing /etc/config/meshd through the form.
    for access in ["read", "write"] {
        assert_eq!(
            acl["luci-app-meshd"][access]["uci"],
            serde_json::json!(["meshd"]),
            "{access}"
        );
    }
}

#[test]
fn the_menu_points_at_existing_views_behind_the_apps_acl() {
    let menu = json(&luci_app().join("root/usr/share/luci/menu.d/luci-app-meshd.json"));
    let acl = acl();
    let menu = menu.as_object().unwrap();
    let top = &menu["admin/services/meshd"];
    for name in top["depends"]["acl"].as_array().unwrap() {
        assert!(acl.get(name.as_str().unwrap()).is_some(), "{name}");
    }
    assert_eq!(top["depends"]["uci"]["meshd"], Value::Bool(true));
    let mut tabs = BTreeSet::new();
    for (path, entry) in menu {
        if entry["action"]["type"] == "view" {
            let view = entry["action"]["path"].as_str().unwrap();
            assert!(
                views().join(format!("{view}.js")).is_file(),
                "{path}: no view {view}.js"
            );
            tabs.insert(path.as_str());
        }
    }
    assert_eq!(
        tabs,
        BTreeSet::from(["admin/services/meshd/config", "admin/services/meshd/status"])
    );
}

// ---- the package: version, test hook ----

fn makefile_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:=")))
        .unwrap_or_else(|| panic!("no {key}:= in the Makefile"))
        .trim()
        .to_string()
}

#[test]
fn the_package_version_is_the_crate_version_and_the_ci_hook_checks_it() {
    let makefile = read(&openwrt().join("meshd/Makefile"));
    assert_eq!(
        makefile_value(&makefile, "PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    );
    let release = makefile_value(&makefile, "PKG_RELEASE");
    assert!(
        !release.is_empty() && release.bytes().all(|b| b.is_ascii_digit()),
        "PKG_RELEASE {release:?} must be a plain integer (apk)"
    );
    assert_eq!(
        makefile_value(&makefile, "PKG_LICENSE"),
        "GPL-2.0-only",
        "as in Cargo.toml"
    );

    // test.sh as the packages CI runs it, with the built meshd on PATH.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_meshd")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |version: &str| {
        Command::new("sh")
            .arg(openwrt().join("meshd/test.sh"))
            .args(["meshd", version])
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let ok = run(env!("CARGO_PKG_VERSION"));
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    assert!(!run("9.9.9").status.success());
}

// ---- the configuration ----

#[test]
fn the_default_config_passes_meshd_check_without_warnings() {
    let out = meshd()
        .arg("check")
        .arg("-c")
        .arg(default_config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "warnings (unknown options?)");

    // Its commented-out options and example member are valid too, once
    // uncommented.
    let text = read(&default_config());
    let uncommented: String = uncomment(&text).join("\n");
    let dir = scratch("example-member");
    let file = dir.join("meshd");
    fs::write(&file, uncommented).unwrap();
    let out = meshd().arg("check").arg("-c").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert!(
        stdout(&out).contains("(1 members, 1 enabled)"),
        "{}",
        stdout(&out)
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// The default config's lines with its examples uncommented: the member
/// (`#config`, `#\t...`) and the options of `config meshd` (`\t#option`,
/// `\t#list`).
fn uncomment(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            l.strip_prefix("#config")
                .map(|r| format!("config{r}"))
                .or_else(|| l.strip_prefix("#\t").map(|r| format!("\t{r}")))
                .or_else(|| l.strip_prefix("\t#option").map(|r| format!("\toption{r}")))
                .or_else(|| l.strip_prefix("\t#list").map(|r| format!("\tlist{r}")))
                .unwrap_or_else(|| l.to_string())
        })
        .collect()
}

#[test]
fn the_default_config_shows_every_game_exit_option_commented_out() {
    let text = read(&default_config());
    let shown = |prefix: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|r| r.split_whitespace().next())
            .map(String::from)
            .collect()
    };
    let main: BTreeSet<String> = ["\t#option ", "\t#list "]
        .iter()
        .flat_map(|p| shown(p))
        .collect();
    for option in [
        "exit",
        "exit_ports",
        "exit_mappings",
        "exit_timeout",
        "consoles",
        "console",
        "exit_all",
        "lan_interface",
    ] {
        assert!(
            config_rs_options("MAIN_OPTIONS").contains(option),
            "{option}: not an option of config meshd"
        );
        assert!(
            main.contains(option),
            "the default config does not show `{option}` (commented out) in config meshd"
        );
    }
    assert!(
        shown("#\toption ").contains("exit"),
        "the example member does not show `option exit`"
    );
    // Commented out: the router is no game exit until its owner says so.
    let set = shown("\toption ");
    assert!(
        !set.contains("exit") && !set.contains("exit_ports"),
        "{set:?}"
    );
}

/// The option names meshd reads, from the lists in `src/config.rs`.
fn config_rs_options(list: &str) -> BTreeSet<String> {
    let source = read(&repo().join("src/config.rs"));
    quoted_between(&source, &format!("const {list}: &[&str] = &["), "];", '"')
        .into_iter()
        .collect()
}

/// The options an init script validation function names.
fn init_options(function: &str) -> BTreeSet<String> {
    let script = read(&init_script());
    let start = format!("{function}() {{");
    let body = &script[script
        .find(&start)
        .unwrap_or_else(|| panic!("no {function}"))..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix('\''))
        .map(|spec| spec.split(':').next().unwrap().to_string())
        .collect()
}

/// The options config.js declares (`form.<Class>, '<option>'`), before and
/// after the members' GridSection; `_name` ones are not stored.
fn form_options() -> (BTreeSet<String>, BTreeSet<String>) {
    let source = read(&views().join("meshd/config.js"));
    let split = source
        .find("form.GridSection")
        .expect("the members' GridSection");
    let names = |part: &str| -> BTreeSet<String> {
        part.split("form.")
            .skip(1)
            .filter(|s| {
                let class: String = s.chars().take_while(char::is_ascii_alphanumeric).collect();
                class != "Map" && !class.ends_with("Section")
            })
            .filter_map(|s| {
                let rest = s.split_once(", '")?.1;
                let (name, _) = rest.split_once('\'')?;
                (!name.starts_with('_')).then(|| name.to_string())
            })
            .collect()
    };
    (names(&source[..split]), names(&source[split..]))
}

#[test]
fn the_init_script_and_the_form_know_every_option_of_config_rs() {
    let main = config_rs_options("MAIN_OPTIONS");
    let member = config_rs_options("MEMBER_OPTIONS");
    assert!(main.contains("listen_port") && member.contains("public_key"));

    assert_eq!(
        init_options("validate_meshd_section"),
        main,
        "init: config meshd"
    );
    assert_eq!(
        init_options("validate_member_section"),
        member,
        "init: config member"
    );

    let (form_main, form_member) = form_options();
    assert_eq!(form_main, main, "config.js: this router");
    // A member's name is its section's name in the form.
    let mut member_but_name = member.clone();
    member_but_name.remove("name");
    assert_eq!(form_member, member_but_name, "config.js: members");
}

/// `option -> default` of an init script validation function (the third
/// field of `'option:datatype:default'`; options without one are left out).
fn init_defaults(function: &str) -> BTreeMap<String, String> {
    let script = read(&init_script());
    let body = &script[script
        .find(&format!("{function}() {{"))
        .unwrap_or_else(|| panic!("no {function}"))..];
    let body = &body[..body.find("\n}").unwrap()];
    body.lines()
        .filter_map(|l| l.trim().strip_prefix('\''))
        .filter_map(|spec| {
            let spec = spec.trim_end_matches(['\\', ' ']).strip_suffix('\'')?;
            let mut fields = spec.splitn(3, ':');
            let name = fields.next()?;
            let default = fields.nth(1)?;
            Some((name.to_string(), default.to_string()))
        })
        .collect()
}

/// `option -> default` as the documentation at the top of `src/config.rs`
/// states it, for the section whose example starts with `section`
/// (`config meshd`, `config member`): the word after "; default" in the
/// option's comment ("as shown": the example's value); options whose default
/// is none, or main's, are left out.
fn documented_defaults(section: &str) -> BTreeMap<String, String> {
    let source = read(&repo().join("src/config.rs"));
    let doc: Vec<&str> = source
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .collect();
    let start = doc
        .iter()
        .position(|l| l.trim_start().starts_with(section))
        .unwrap_or_else(|| panic!("no `{section}` in the doc of src/config.rs"));
    let mut defaults = BTreeMap::new();
    let mut current: Option<(String, String, String)> = None;
    let mut finish = |current: Option<(String, String, String)>| {
        let Some((name, example, comment)) = current else {
            return;
        };
        let comment = comment.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some(after) = comment.split("; default ").nth(1) else {
            return;
        };
        let word = after
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches([';', ':', ',']);
        let value = match word {
            "as" => example,
            "none" | "main's" => return,
            w => w.to_string(),
        };
        defaults.insert(name, value);
    };
    for line in &doc[start + 1..] {
        let text = line.trim_start();
        if text.starts_with("config ") || text.starts_with("```") {
            break;
        }
        let (code, comment) = text.split_once('#').unwrap_or((text, ""));
        let mut words = code.split_whitespace();
        match (words.next(), words.next()) {
            (Some("option" | "list"), Some(name)) => {
                finish(current.take());
                let example = code.split('\'').nth(1).unwrap_or("").to_string();
                current = Some((name.to_string(), example, comment.to_string()));
            }
            _ => {
                if let Some((_, _, c)) = current.as_mut() {
                    c.push(' ');
                    c.push_str(comment);
                }
            }
        }
    }
    finish(current);
    defaults
}

#[test]
fn the_init_validation_defaults_are_meshds_own() {
    for (function, section, undefaulted) in [
        // Unset exit_ports is not the same as '1024-65535' written out: only
        // a written range says a NAT in front forwards it (src/config.rs).
        // discovery_port: a list whose default is three ports, not one.
        (
            "validate_meshd_section",
            "config meshd",
            &["exit_ports", "discovery_port"][..],
        ),
        ("validate_member_section", "config member", &[][..]),
    ] {
        let init = init_defaults(function);
        let documented = documented_defaults(section);
        assert!(
            documented.get("exit").map(String::as_str) == Some("0"),
            "{section}: {documented:?}"
        );
        for (option, default) in &init {
            assert_eq!(
                documented.get(option),
                Some(default),
                "{function}: '{option}' defaults to '{default}', src/config.rs says {:?}",
                documented.get(option)
            );
        }
        for option in documented.keys() {
            assert!(
                init.contains_key(option) || undefaulted.contains(&option.as_str()),
                "{function}: '{option}' has a default in src/config.rs and none in the init script"
            );
        }
    }
}

/// A form option at its default is left out of the file on save when the
/// file leaves it out (config.js, keepAsIs): so its default must be the one
/// meshd applies to an absent option.
#[test]
fn the_forms_defaults_are_meshds_own() {
    let out = node()
        .arg(repo().join("tests/openwrt/run-config-view.js"))
        .arg(views().join("meshd/config.js"))
        .arg("--defaults")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let form: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&stdout(&out)).unwrap();
    for (section, function) in [
        ("meshd", "validate_meshd_section"),
        ("member", "validate_member_section"),
    ] {
        let init = init_defaults(function);
        let defaults = &form[section];
        assert!(defaults.contains_key("enabled"), "{section}: {defaults:?}");
        for (option, default) in defaults {
            assert_eq!(
                init.get(option),
                Some(default),
                "config.js: {section}.{option} defaults to '{default}', the init script to {:?}",
                init.get(option)
            );
        }
    }
}

// ---- the init script, run with procd stubbed ----

struct InitRun {
    out: String,
    ok: bool,
}

impl InitRun {
    fn started(&self) -> bool {
        self.out.contains("procd_open_instance")
    }

    fn has(&self, line: &str) -> bool {
        self.out.lines().any(|l| l == line)
    }
}

/// Sources the init script over the procd stand-ins of
/// `tests/openwrt/procd-stubs.sh` and calls `function`.
fn run_init(config: &Path, function: &str, env: &[(&str, &str)]) -> InitRun {
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#". "$1"; . "$2"; PROG="$3"; CONFIG="$4"; "$5""#)
        .arg("sh")
        .arg(repo().join("tests/openwrt/procd-stubs.sh"))
        .arg(init_script())
        .arg(env!("CARGO_BIN_EXE_meshd"))
        .arg(config)
        .arg(function)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    InitRun {
        out: format!("{}{}", stdout(&out), stderr(&out)),
        ok: out.status.success(),
    }
}

/// The default config, enabled, in a fresh directory; and its key's path.
fn enabled_config(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    let config = dir.join("meshd");
    let text = read(&default_config()).replace("option enabled '0'", "option enabled '1'");
    fs::write(&config, text).unwrap();
    let key = dir.join("keys/private.key");
    (dir, config, key)
}

#[test]
fn init_starts_one_supervised_instance_that_reloads_on_sighup_and_opens_the_mesh_port() {
    let (dir, config, key) = enabled_config("start");
    let key_str = key.to_str().unwrap();
    let run = run_init(
        &config,
        "start_service",
        &[
            ("VALUE_private_key_file", key_str),
            ("VALUE_listen_port", "51999"),
        ],
    );
    assert!(run.ok, "{}", run.out);
    assert_eq!(run.out.matches("procd_open_instance").count(), 1);
    for line in [
        format!(
            "procd_set_param command {} -c {}",
            env!("CARGO_BIN_EXE_meshd"),
            config.display()
        ),
        format!("procd_set_param file {}", config.display()),
        "procd_set_param reload_signal HUP".into(),
        "procd_set_param respawn".into(),
        "procd_set_param stdout 1".into(),
        "procd_set_param stderr 1".into(),
        "json_add_array firewall".into(),
        "json_add_string type rule".into(),
        "json_add_string proto udp".into(),
        "json_add_string src wan".into(),
        "json_add_int dest_port 51999".into(),
        "json_add_string target ACCEPT".into(),
        "procd_close_instance".into(),
    ] {
        assert!(run.has(&line), "missing `{line}` in:\n{}", run.out);
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// The firewall rules the script put in procd's service data, in order:
/// each `json_add_*` between `json_add_object` and `json_close_object`
/// inside `json_add_array firewall`, as key -> value.
fn firewall_rules(out: &str) -> Vec<BTreeMap<String, String>> {
    let mut rules = Vec::new();
    let mut in_firewall = false;
    let mut rule: Option<BTreeMap<String, String>> = None;
    for line in out.lines() {
        match line {
            "json_add_array firewall" => in_firewall = true,
            "json_close_array" => in_firewall = false,
            _ if !in_firewall => {}
            "json_add_object " => rule = Some(BTreeMap::new()),
            "json_close_object" => rules.extend(rule.take()),
            _ => {
                let field = line
                    .strip_prefix("json_add_string ")
                    .or_else(|| line.strip_prefix("json_add_int "));
                if let (Some(field), Some(rule)) = (field, rule.as_mut()) {
                    let (key, value) = field.split_once(' ').unwrap_or((field, ""));
                    rule.insert(key.to_string(), value.to_string());
                }
            }
        }
    }
    rules
}

#[test]
fn init_opens_the_exit_ports_from_wan_only_while_this_router_is_a_game_exit() {
    let (dir, config, key) = enabled_config("exit");
    let key = key.to_str().unwrap();
    let rules = |env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.push(("VALUE_private_key_file", key));
        let run = run_init(&config, "start_service", &env);
        assert!(run.ok && run.started(), "{}", run.out);
        firewall_rules(&run.out)
    };
    let names = |rules: &[BTreeMap<String, String>]| -> Vec<String> {
        rules.iter().map(|r| r["name"].clone()).collect()
    };
    let exit_rule = |ports: &str| -> BTreeMap<String, String> {
        [
            ("type", "rule"),
            ("name", "Allow-meshd-exit"),
            ("family", "ipv4"),
            ("proto", "udp"),
            ("src", "wan"),
            ("dest_port", ports),
            ("target", "ACCEPT"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into()
    };

    // Not an exit (the default, or said so): the mesh port alone.
    for env in [&[][..], &[("VALUE_exit", "0")][..]] {
        assert_eq!(names(&rules(env)), ["Allow-meshd"], "{env:?}");
    }
    // An exit: UDP from wan to meshd's default range, after the mesh port.
    let on = rules(&[("VALUE_exit", "1")]);
    assert_eq!(names(&on), ["Allow-meshd", "Allow-meshd-exit"]);
    assert_eq!(on[1], exit_rule("1024-65535"));
    // Behind a NAT that forwards a range: that range alone.
    let forwarded = rules(&[("VALUE_exit", "1"), ("VALUE_exit_ports", "40000-40999")]);
    assert_eq!(forwarded[1], exit_rule("40000-40999"));
    fs::remove_dir_all(&dir).unwrap();
}

/// A constant of mesh-core, read from its source.
fn mesh_core_const(file: &str, name: &str) -> u64 {
    let source = read(&repo().join("mesh-core/src").join(file));
    let line = source
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("pub const {name}:")))
        .unwrap_or_else(|| panic!("no {name} in mesh-core/src/{file}"));
    let value = line.split('=').nth(1).unwrap().trim().trim_end_matches(';');
    value
        .replace('_', "")
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn init_raises_the_open_file_limit_for_one_socket_per_exit_mapping() {
    let (dir, config, key) = enabled_config("nofile");
    let run = run_init(
        &config,
        "start_service",
        &[("VALUE_private_key_file", key.to_str().unwrap())],
    );
    assert!(run.ok && run.started(), "{}", run.out);
    let instance = &run.out[run.out.find("procd_open_instance").unwrap()
        ..run.out.find("procd_close_instance").unwrap()];
    let limit = instance
        .lines()
        .find_map(|l| l.strip_prefix("procd_set_param limits nofile="))
        .unwrap_or_else(|| panic!("no `procd_set_param limits nofile=...` in:\n{}", run.out));
    let (soft, hard) = limit
        .split_once(' ')
        .map(|(s, h)| (s.parse::<u64>().unwrap(), h.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("nofile={limit}: want \"<soft> <hard>\""));
    // meshd raises its soft limit to the hard one: procd sets both.
    assert_eq!(soft, hard, "nofile={limit}");
    // One socket per exit mapping, and room for meshd's own descriptors.
    let mappings = mesh_core_const("node/exitnat.rs", "EXIT_MAPPINGS");
    assert!(
        soft >= mappings + 64,
        "nofile={limit}: {mappings} exit mappings and meshd's own descriptors do not fit"
    );
    // Never below Linux's default hard limit.
    assert!(hard >= 4096, "nofile={limit}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_creates_the_private_key_once_and_privately() {
    let (dir, config, key) = enabled_config("key");
    let env = [("VALUE_private_key_file", key.to_str().unwrap())];
    let first = run_init(&config, "start_service", &env);
    assert!(first.ok && first.started(), "{}", first.out);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(key.parent().unwrap()), 0o700);
    let text = read(&key);
    // A key meshd (and so wg) accepts.
    let pubkey = meshd()
        .arg("pubkey")
        .stdin(fs::File::open(&key).unwrap())
        .output()
        .unwrap();
    assert!(pubkey.status.success(), "{}", stderr(&pubkey));
    assert_eq!(stdout(&pubkey).trim().len(), 44);

    let second = run_init(&config, "start_service", &env);
    assert!(second.ok && second.started(), "{}", second.out);
    assert_eq!(read(&key), text, "the key was replaced");
    assert!(!second.out.contains("created a new private key"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_refuses_to_start_when_uci_validation_fails() {
    let (dir, config, key) = enabled_config("invalid");
    let run = run_init(
        &config,
        "start_service",
        &[
            ("VALUE_private_key_file", key.to_str().unwrap()),
            ("VALIDATION_RESULT", "1"),
        ],
    );
    assert!(!run.ok && !run.started(), "{}", run.out);
    assert!(
        run.out.contains("not starting: section 'main' of ")
            && run.out.contains("has invalid values"),
        "{}",
        run.out
    );
    assert!(!key.exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_refuses_to_start_with_a_file_meshd_check_rejects_and_logs_why() {
    let (dir, config, key) = enabled_config("rejected");
    let text = read(&config).replace("#option asn '65001'", "option asn '65x01'");
    fs::write(&config, text).unwrap();
    let run = run_init(
        &config,
        "start_service",
        &[("VALUE_private_key_file", key.to_str().unwrap())],
    );
    assert!(!run.ok && !run.started(), "{}", run.out);
    assert!(
        run.out.contains("logger -t meshd -p daemon.err error: ")
            && run
                .out
                .contains("option 'asn': '65x01' is not an AS number"),
        "meshd's own message, in the system log:\n{}",
        run.out
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_starts_nothing_when_disabled() {
    let (dir, config, key) = enabled_config("disabled");
    let run = run_init(
        &config,
        "start_service",
        &[
            ("VALUE_private_key_file", key.to_str().unwrap()),
            ("VALUE_enabled", "0"),
        ],
    );
    assert!(run.ok && !run.started(), "{}", run.out);
    assert!(run.out.contains("disabled in"), "{}", run.out);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reload_keeps_the_running_meshd_when_the_new_file_is_broken() {
    let (dir, config, _) = enabled_config("reload");
    let good = run_init(&config, "reload_service", &[]);
    assert!(good.ok && good.has("start"), "{}", good.out);

    fs::write(
        &config,
        read(&config).replace("#option overlay '10.0.0.1'", "option overlay6 '10.0.0.1'"),
    )
    .unwrap();
    let broken = run_init(&config, "reload_service", &[]);
    assert!(!broken.ok && !broken.has("start"), "{}", broken.out);
    assert!(broken.out.contains("not reloading"), "{}", broken.out);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn service_triggers_reload_on_config_changes_and_declare_the_validation() {
    let (dir, config, _) = enabled_config("triggers");
    let run = run_init(&config, "service_triggers", &[]);
    assert!(run.ok, "{}", run.out);
    assert!(run.has("procd_add_reload_trigger meshd"), "{}", run.out);
    assert!(
        run.has("procd_add_validation validate_meshd_config"),
        "{}",
        run.out
    );
    fs::remove_dir_all(&dir).unwrap();
}

// ---- the status contract ----

fn contract() -> BTreeMap<String, Vec<String>> {
    let value = json(&luci_app().join("status-contract.json"));
    serde_json::from_value(value)
        .expect("status-contract.json: an object of ubus method -> list of JSON paths")
}

/// Paths whose fields `src/status.rs` does not write yet (none now; the
/// NAT lab, `tests/lab_nat.rs`, also checks every path against a live
/// daemon's document).
const PENDING: &[&str] = &[];

/// Where the reply of a ubus method of meshd sits in the status document:
/// `members`, `routes` and `nat` answer `{"<method>": ...}`, `consoles` the
/// document's `exit` object itself (`src/ubus_api.rs`). Contract paths are
/// paths in the status document, so they start there.
fn reply_root(method: &str) -> &str {
    match method {
        "consoles" => "exit",
        m => m,
    }
}

#[test]
fn status_contract_is_well_formed() {
    let contract = contract();
    let methods: BTreeSet<&str> = contract.keys().map(String::as_str).collect();
    assert_eq!(
        methods,
        BTreeSet::from(["consoles", "invites", "members", "nat", "routes", "status"]),
        "one entry per ubus method of meshd the views call"
    );
    for (method, paths) in &contract {
        assert!(!paths.is_empty(), "{method}: no paths");
        let unique: BTreeSet<&String> = paths.iter().collect();
        assert_eq!(unique.len(), paths.len(), "{method}: a path twice");
        for path in paths {
            // `a.b`, `list[].field`, `list[]`: lower-case names.
            for segment in path.split('.') {
                let name = segment.strip_suffix("[]").unwrap_or(segment);
                assert!(
                    !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{method}: bad path {path:?}"
                );
            }
            if method != "status" {
                let root = reply_root(method);
                assert!(
                    path.starts_with(&format!("{root}.")) || path.starts_with(&format!("{root}[]")),
                    "{method}: {path:?} does not start with {root}"
                );
            }
        }
    }
}

/// The field names of a path, without `[]`.
fn names(path: &str) -> impl Iterator<Item = &str> {
    path.split('.').map(|s| s.strip_suffix("[]").unwrap_or(s))
}

#[test]
fn contract_fields_are_written_by_status_rs_unless_pending() {
    // A check of names against the source that writes them, not against live
    // output (lab_nat.rs checks the paths in a busy mesh's answers):
    // status.rs writes each field with `.f("<name>", ...)` (or `.obj`,
    // `.opt_obj`, `.arr`, `.list` for what holds more), which rustfmt may
    // break over lines; its `invites` object comes from invites.rs, which
    // builds it with `.with("<name>", ...)`.
    let source: String = ["src/status.rs", "src/invites.rs"]
        .map(|f| read(&repo().join(f)))
        .concat()
        .split_whitespace()
        .collect();
    for (method, paths) in contract() {
        for path in paths {
            if PENDING.iter().any(|p| path.starts_with(p)) {
                continue;
            }
            for name in names(&path) {
                assert!(
                    ["with", "f", "obj", "opt_obj", "arr", "list"]
                        .iter()
                        .any(|call| source.contains(&format!(".{call}(\"{name}\""))),
                    "{method}: {path}: src/status.rs writes no field \"{name}\" \
                     (a typo, or a new field to list in PENDING)"
                );
            }
        }
    }
}

/// Every value at `path` in `doc` (`[]` walks an array).
fn values_at<'a>(doc: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![doc];
    for segment in path.split('.') {
        let (name, each) = match segment.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (segment, false),
        };
        let mut next = Vec::new();
        for v in current {
            match v.get(name) {
                Some(Value::Array(items)) if each => next.extend(items),
                Some(x) if !each => next.push(x),
                _ => {}
            }
        }
        current = next;
    }
    current
}

fn sample_document() -> PathBuf {
    repo().join("tests/openwrt/status-sample.json")
}

#[test]
fn the_sample_document_has_a_value_at_every_contract_path() {
    let doc = json(&sample_document());
    for (method, paths) in contract() {
        for path in paths {
            assert!(
                values_at(&doc, &path).iter().any(|v| !v.is_null()),
                "{method}: tests/openwrt/status-sample.json has no value at {path}"
            );
        }
    }
}

/// Runs the status view on `doc` (see `tests/openwrt/run-status-view.js`),
/// selects member `select`, and refreshes once with `after` (else `doc`).
fn run_status_view(doc: &Path, select: &str, after: Option<&Path>) -> Value {
    let mut cmd = node();
    cmd.arg(repo().join("tests/openwrt/run-status-view.js"))
        .arg(views().join("meshd/status.js"))
        .arg(doc)
        .arg(select);
    if let Some(after) = after {
        cmd.arg(after);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The cards of a section in the report, each as its parts' text.
fn cards(report: &Value, section: &str) -> Vec<Vec<String>> {
    serde_json::from_value(report["cards"][section].clone())
        .unwrap_or_else(|e| panic!("cards.{section}: {e}"))
}

/// The rows of a section's table in the report, each as its cells' text.
fn table_rows(report: &Value, section: &str) -> Vec<Vec<String>> {
    serde_json::from_value(report["tables"][section].clone())
        .unwrap_or_else(|e| panic!("tables.{section}: {e}"))
}

/// The sample as it is before any game exit exists: no exit, this router
/// not offering one (waiting for the NAT check).
fn document_without_exits(dir: &Path) -> PathBuf {
    let mut doc = json(&sample_document());
    let home = doc["nat"]["console"].clone();
    let x = &mut doc["exit"];
    x["offered"] = Value::Null;
    x["offer"] = "waiting for the NAT check (members' STUN answers)".into();
    x["exits"] = serde_json::json!([]);
    for c in x["consoles"].as_array_mut().unwrap() {
        c["exit"] = Value::Null;
        c["public"] = Value::Null;
        c["exit_since_s"] = Value::Null;
        c["nat"] = home.clone();
    }
    let file = dir.join("no-exits.json");
    fs::write(&file, serde_json::to_string(&doc).unwrap()).unwrap();
    file
}

/// The ubus method that returns the part of the status document `path`
/// lies in (the contract's grouping; `consoles` returns `exit`).
fn part_of(path: &str) -> &str {
    match path.split(['.', '[']).next().unwrap() {
        "members" => "members",
        "routes" => "routes",
        "nat" => "nat",
        "exit" => "consoles",
        "invites" => "invites",
        _ => "status",
    }
}

#[test]
fn the_status_view_reads_exactly_the_contract_fields_and_draws_the_path() {
    let dir = scratch("view-contract");
    let report = run_status_view(&sample_document(), "r4", None);
    // Before game exits exist, the view reads what this home's NAT gives a
    // console, and why this router offers no exit.
    let early = run_status_view(&document_without_exits(&dir), "r4", None);

    assert_eq!(report["poll_interval"], 2, "refreshed every 2 s");
    // One ubus call of meshd at start (load() fetched, and the poll LuCI
    // runs at once when it is added does not fetch again), one per refresh;
    // the host names of the LAN once.
    assert_eq!(
        report["calls_at_start"],
        serde_json::json!(["meshd.status", "luci-rpc.getHostHints"])
    );
    assert_eq!(
        report["calls_per_poll"],
        serde_json::json!(["meshd.status"])
    );
    // Updated in place: a refresh with the same document touches nothing.
    assert_eq!(report["mutations_unchanged"], 0);

    // What it read, leaves only (`members[].bgp` is read on the way to
    // `members[].bgp.state`), grouped as the contract groups them.
    let contract = contract();
    let mut read: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in [&report, &early] {
        let by_method: BTreeMap<String, Vec<String>> =
            serde_json::from_value(r["read"].clone()).unwrap();
        assert_eq!(
            by_method.keys().collect::<Vec<_>>(),
            ["status"],
            "it reads the status document only"
        );
        for path in &by_method["status"] {
            let group = read.entry(part_of(path).to_string()).or_default();
            if !group.contains(path) {
                group.push(path.clone());
            }
        }
    }
    assert_eq!(
        read.keys().collect::<Vec<_>>(),
        contract.keys().collect::<Vec<_>>()
    );
    for (method, paths) in &read {
        let leaves: BTreeSet<String> = paths
            .iter()
            .filter(|p| {
                !paths
                    .iter()
                    .any(|q| q.starts_with(&format!("{p}.")) || q.starts_with(&format!("{p}[]")))
            })
            .map(|p| {
                // A list of strings is read whole: `announce` is `announce[]`.
                if contract[method].contains(&format!("{p}[]")) {
                    format!("{p}[]")
                } else {
                    p.clone()
                }
            })
            .collect();
        let listed: BTreeSet<String> = contract[method].iter().cloned().collect();
        assert_eq!(
            leaves, listed,
            "ubus meshd {method}: the fields status.js reads (left) and status-contract.json (right)"
        );
    }

    let text = report["text"].as_str().unwrap();
    for expected in [
        "Type 2 (cone NAT)",
        "public address 203.0.113.7:51820",
        "via r2, 2 hops",
        "Type 3 (carrier-grade NAT)",
        "Established",
        "Up, 40 ms",
        "192.168.4.0/24",
        "65002 65004",
        "lower latency",
        "relayed on br-lan, ports 987, 9302, 30000, 1900",
        "12 sent to friends, 11 from friends · 2 over the rate cap · 1 forged or replayed",
        // The Friends card: its buttons, the invites not used yet with the
        // time they have left, and this router's latest join.
        "Invite a friendJoin a mesh",
        "Invites not used yetbob · 23 h 59 min leftcarol_2 · 43 min left",
        "Could not join r5's mesh: no answer from r5's router (198.51.100.5:51820) in 20 s",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    // Tunnels: R1-R2, R1-R3 (its own), R2-R4, R3-R4 (reported in AS paths);
    // the path to r4 is R1 -> R2 -> R4.
    assert_eq!(report["path_segments"], 2);
    assert_eq!(report["svg_lines"], 4 + 2);
    fs::remove_dir_all(&dir).unwrap();
}

// ---- the consoles and game exits panels ----

fn rows(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

#[test]
fn the_status_view_shows_the_consoles_first_with_their_game_exit_and_nat_type_in_gamers_words() {
    let report = run_status_view(&sample_document(), "r4", None);
    assert_eq!(
        report["headings"],
        serde_json::json!([
            "Consoles",
            "Friends",
            "Game exits",
            "This router",
            "Map",
            "Members",
            "Routes"
        ])
    );
    // One card per console: its name (the LAN's host name, else its maker
    // and address), maker, address, MAC and how it was found; the NAT type
    // it gets in its own maker's words and through whose router, the other
    // makers' words, what that means; its game exit and public address; the
    // friends it reaches and how.
    let friends = "Friends it can reachr2: direct tunnel, 11 msr3: direct tunnel, 18 msr4: through r2, 2 hops";
    let open = "Open: it can host matches and join anyone's, voice chat included.";
    assert_eq!(
        cards(&report, "consoles"),
        rows(&[
            &[
                "PS5-Living",
                "PlayStation · 192.168.1.20 · 00:04:1f:3a:7c:01 · found on the LAN",
                &format!("PlayStation: Type 2 through r2's router\nXbox Open · Switch A\n{open}"),
                "Game exit: r2, seen on the internet as 198.51.100.2 · for 5 min",
                friends,
            ],
            &[
                "Xbox at 192.168.1.21",
                "Xbox · 192.168.1.21 · 00:0d:3a:5e:11:02 · found on the LAN",
                &format!("Xbox: Open through this router\nPlayStation Type 2 · Switch A\n{open}"),
                "Game exit: this router, seen on the internet as 203.0.113.7 · for 95.0 s",
                friends,
            ],
            &[
                "Nintendo Switch at 192.168.1.22",
                "Nintendo Switch · 192.168.1.22 · 00:09:bf:20:44:03 · listed in the settings",
                "Switch: B through this home's own internet\nPlayStation Type 2 · Xbox Moderate\n\
                 Moderate: it joins most matches, but players behind a strict NAT may not reach it.",
                "No game exit: it plays through this home's own internet.",
                friends,
            ],
            &[
                "192.168.1.50",
                "console of no known maker · 192.168.1.50 · listed in the settings",
                &format!("PlayStation Type 2, Xbox Open, Switch A through r2's router\n{open}"),
                "Game exit: r2, seen on the internet as 198.51.100.2 · for 66 min",
                friends,
            ],
        ])
    );
    // Exit, public address, load, hops, the one new consoles get.
    assert_eq!(
        table_rows(&report, "exits"),
        rows(&[
            &[
                "r2\n10.0.0.2",
                "198.51.100.2",
                "3 consoles",
                "1",
                "get this one"
            ],
            &[
                "this router\n10.0.0.1",
                "203.0.113.7",
                "1 console",
                "–",
                "–"
            ],
        ])
    );
    let text = report["text"].as_str().unwrap();
    assert!(
        text.contains("This router is a game exit at 203.0.113.7."),
        "{text}"
    );
}

#[test]
fn the_consoles_panel_follows_meshd_on_every_refresh() {
    // r2 lost power: its consoles moved to r3, and this router stopped
    // offering itself.
    let mut doc = json(&sample_document());
    let x = &mut doc["exit"];
    x["offered"] = Value::Null;
    for c in x["consoles"].as_array_mut().unwrap() {
        if c["exit"] == "r2" {
            c["exit"] = "r3".into();
            c["public"] = "198.51.100.3".into();
            c["exit_since_s"] = 1.5.into();
        }
    }
    x["exits"] = serde_json::json!([{
        "name": "r3", "overlay": "10.0.0.3", "public": "198.51.100.3",
        "load": 4, "hops": 2, "best": true, "local": false
    }]);
    let dir = scratch("view-after");
    let after = dir.join("after.json");
    fs::write(&after, serde_json::to_string(&doc).unwrap()).unwrap();

    let report = run_status_view(&sample_document(), "r4", Some(&after));
    let before = report["text"].as_str().unwrap();
    let text = report["text_after"].as_str().unwrap();
    for gone in [
        "r2, seen on the internet as 198.51.100.2 · for 5 min",
        "This router is a game exit",
        "3 consoles",
    ] {
        assert!(before.contains(gone), "{gone:?} not in:\n{before}");
        assert!(!text.contains(gone), "{gone:?} still in:\n{text}");
    }
    for new in [
        "r3, seen on the internet as 198.51.100.3 · for 1.5 s",
        "PlayStation: Type 2 through r3's router",
        "4 consoles",
        "10.0.0.3",
    ] {
        assert!(text.contains(new), "{new:?} not in:\n{text}");
    }
    // Refreshed in place: the same sections, once each.
    assert_eq!(text.matches("Game exits").count(), 1, "{text}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_status_view_still_shows_the_mesh_when_meshd_has_no_consoles_method() {
    let mut doc = json(&sample_document());
    doc.as_object_mut().unwrap().remove("exit");
    let dir = scratch("view-no-consoles");
    let file = dir.join("status.json");
    fs::write(&file, serde_json::to_string(&doc).unwrap()).unwrap();

    let report = run_status_view(&file, "r4", None);
    let text = report["text"].as_str().unwrap();
    assert!(
        text.contains("meshd did not say which consoles it found"),
        "{text}"
    );
    assert!(table_rows(&report, "exits").is_empty());
    for expected in ["Type 2 (cone NAT)", "via r2, 2 hops", "65002 65004"] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert_eq!(report["path_segments"], 2);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn before_any_game_exit_the_view_says_in_words_what_this_homes_nat_gives_a_console() {
    let dir = scratch("view-no-exits");
    let report = run_status_view(&document_without_exits(&dir), "r4", None);
    let consoles = cards(&report, "consoles");
    assert_eq!(consoles.len(), 4 + 1, "{consoles:?}");
    assert_eq!(
        consoles[0][2],
        "PlayStation: Type 2 through this home's own internet\nXbox Moderate · Switch B\n\
         Moderate: it joins most matches, but players behind a strict NAT may not reach it."
    );
    assert_eq!(
        consoles[4],
        [
            "This home's internet",
            "What a console gets here without a game exit",
            "PlayStation Type 2, Xbox Moderate, Switch B through this home's own internet\n\
             Moderate: it joins most matches, but players behind a strict NAT may not reach it.",
            "This router is behind Type 2 (cone NAT), public address 203.0.113.7:51820. \
             A friend's game exit gives consoles an open NAT (PlayStation Type 2, Xbox Open, Switch A).",
        ]
    );
    let text = report["text"].as_str().unwrap();
    for expected in [
        "This router as a game exit: waiting for the NAT check",
        "No game exit in the mesh yet: consoles play through this home's own internet.",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }

    // No console either: what to do, and still what a console would get.
    let mut doc = json(&document_without_exits(&dir));
    doc["exit"]["consoles"] = serde_json::json!([]);
    let file = dir.join("no-consoles.json");
    fs::write(&file, serde_json::to_string(&doc).unwrap()).unwrap();
    let report = run_status_view(&file, "r4", None);
    let consoles = cards(&report, "consoles");
    assert_eq!(consoles.len(), 2, "{consoles:?}");
    assert_eq!(consoles[0][0], "No console found yet");
    assert!(
        consoles[0][1].contains("List it in Configuration › Game exit › Consoles."),
        "{consoles:?}"
    );
    assert_eq!(consoles[1][0], "This home's internet");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_meshd_down_the_page_says_what_to_do_and_no_heading_stands_over_nothing() {
    let dir = scratch("view-down");
    let file = dir.join("down.json");
    fs::write(&file, "null").unwrap();
    let report = run_status_view(&file, "", None);
    assert_eq!(
        report["headings"],
        serde_json::json!(["meshd is not answering"])
    );
    let text = report["text"].as_str().unwrap();
    for expected in [
        "Check Services › Game Mesh › Configuration",
        "system log",
        "service meshd start",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    // Once meshd answers, the page fills in place.
    let report = run_status_view(&file, "", Some(&sample_document()));
    let after = report["text_after"].as_str().unwrap();
    assert!(
        after.contains("PS5-Living") && after.contains("65002 65004"),
        "{after}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_no_member_yet_each_section_says_what_to_do() {
    let mut doc = json(&sample_document());
    doc["members"] = serde_json::json!([]);
    doc["routes"] = serde_json::json!([]);
    let dir = scratch("view-alone");
    let file = dir.join("alone.json");
    fs::write(&file, serde_json::to_string(&doc).unwrap()).unwrap();
    let report = run_status_view(&file, "", None);
    let text = report["text"].as_str().unwrap();
    for expected in [
        "No friend's router yet: invite one under Friends, or add one in Configuration › Members.",
        "The map appears once a friend's router joins (Friends: Invite a friend) or is added \
         (Configuration › Members).",
        "No friend's router yet. Invite one under Friends (Invite a friend), or add one in \
         Configuration › Members with its public key, overlay address and AS number",
        // The Friends card is there from the start.
        "Invite a friendJoin a mesh",
        "No routes yet: they appear once a member's BGP session is up.",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert_eq!(report["svg_lines"], 0);
    fs::remove_dir_all(&dir).unwrap();
}

// ---- the configuration form's own checks ----

/// Whether `meshd check` accepts the default config with `option` of
/// `config meshd` set to `value` (`list` for a list option).
fn meshd_accepts(dir: &Path, option: &str, value: &str) -> bool {
    let kind = if option == "console" {
        "list"
    } else {
        "option"
    };
    let mut text = String::new();
    for line in read(&default_config()).lines() {
        if line.starts_with(&format!("\toption {option} "))
            || line.starts_with(&format!("\tlist {option} "))
        {
            continue;
        }
        text.push_str(line);
        text.push('\n');
        if line == "config meshd 'main'" {
            text.push_str(&format!("\t{kind} {option} '{value}'\n"));
        }
    }
    let file = dir.join("meshd");
    fs::write(&file, text).unwrap();
    meshd()
        .arg("check")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn the_forms_own_checks_accept_exactly_what_meshd_accepts() {
    // Values without spaces around them: the form refuses those, and so
    // does procd's validation of the same options.
    let values = serde_json::json!({
        "exit_ports": [
            "1024-65535", "40000-40999", "1024-1024", "65535-65535", "01024-2000",
            "1023-2000", "80-90", "5000-4000", "1024-65536", "0-0", "1024", "1024-",
            "-2000", "abc", "1024-2000-3000", "99999999999999999999-1"
        ],
        "console": [
            "00:04:1f:aa:bb:cc", "00-04-1F-AA-BB-CC", "70:48:0f:12:34:56",
            "00:04-1f:aa:bb:cc", "01:00:5e:00:00:01", "00:00:00:00:00:00",
            "0:4:1f:aa:bb:cc", "00:04:1f:aa:bb:cc:dd", "00:04:1f:aa:bb", "fe80::1",
            "192.168.1.50", "10.0.0.1", "240.0.0.1", "0.0.0.0", "255.255.255.255",
            "224.0.0.251", "127.0.0.1", "192.168.001.050", "192.168.1", "192.168.1.256",
            "hello", "a-b"
        ],
        "lan_interface": [
            "br-lan", "eth0.1", "wlan0-1", "lan", "a_b", "abcdefghijklmno",
            "abcdefghijklmnop", ".", "..", "a b", "lan@x", "é"
        ],
        "tun": ["meshd0", "tun.1", "abcdefghijklmnop", "..", "a/b"]
    });
    let dir = scratch("form-checks");
    let values_file = dir.join("values.json");
    fs::write(&values_file, values.to_string()).unwrap();
    let out = node()
        .arg(repo().join("tests/openwrt/run-config-view.js"))
        .arg(views().join("meshd/config.js"))
        .arg(&values_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let answers: BTreeMap<String, BTreeMap<String, Value>> =
        serde_json::from_str(&stdout(&out)).unwrap();

    for (option, answers) in &answers {
        let mut seen = BTreeSet::new();
        for (value, answer) in answers {
            let form = *answer == Value::Bool(true);
            let daemon = meshd_accepts(&dir, option, value);
            assert_eq!(
                form,
                daemon,
                "option {option} '{value}': the form says {answer}, meshd check {}",
                if daemon { "accepts it" } else { "refuses it" }
            );
            seen.insert(form);
        }
        assert_eq!(seen.len(), 2, "{option}: ask about good and bad values");
    }
    assert_eq!(answers.len(), 4);
    fs::remove_dir_all(&dir).unwrap();
}
