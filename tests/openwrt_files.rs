//! The OpenWrt packaging (`openwrt/meshd/`) and the LuCI app
//! (`openwrt/luci-app-meshd/`): the files parse, the views call only what the
//! ACL grants, the init script asks procd for what meshd needs and refuses
//! what meshd would refuse, the default configuration is one meshd accepts,
//! the package options follow `src/config.rs`, and the status view reads
//! exactly the fields `status-contract.json` lists.
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
    let expected: BTreeSet<String> = ["status", "members", "routes", "nat"]
        .map(String::from)
        .into();
    assert_eq!(meshd_methods, expected);
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

    // Its commented-out example member is valid too, once uncommented.
    let text = read(&default_config());
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix("#config")
                .map(|r| format!("config{r}"))
                .or_else(|| l.strip_prefix("#\t").map(|r| format!("\t{r}")))
                .unwrap_or_else(|| l.to_string())
        })
        .collect::<Vec<_>>()
        .join("\n");
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
    let text = read(&config).replace("option asn '65001'", "option asn '65x01'");
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
        read(&config).replace("option overlay ", "option overlay6 "),
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

#[test]
fn status_contract_is_well_formed() {
    let contract = contract();
    let methods: BTreeSet<&str> = contract.keys().map(String::as_str).collect();
    assert_eq!(
        methods,
        BTreeSet::from(["members", "nat", "routes", "status"]),
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
            // members, routes and nat answer {"<method>": ...}: the same paths
            // as in the status document.
            if method != "status" {
                assert!(
                    path.starts_with(&format!("{method}."))
                        || path.starts_with(&format!("{method}[]")),
                    "{method}: {path:?} does not start with {method}"
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
    // output: status.rs writes each field with `.with("<name>", ...)`, which
    // rustfmt may break over lines.
    let source: String = read(&repo().join("src/status.rs"))
        .split_whitespace()
        .collect();
    for (method, paths) in contract() {
        for path in paths {
            if PENDING.iter().any(|p| path.starts_with(p)) {
                continue;
            }
            for name in names(&path) {
                assert!(
                    source.contains(&format!(".with(\"{name}\"")),
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

#[test]
fn the_status_view_reads_exactly_the_contract_fields_and_draws_the_path() {
    let out = node()
        .arg(repo().join("tests/openwrt/run-status-view.js"))
        .arg(views().join("meshd/status.js"))
        .arg(sample_document())
        .arg("r4")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();

    assert_eq!(report["poll_interval"], 2, "refreshed every 2 s");

    // What it read, leaves only (`members[].bgp` is read on the way to
    // `members[].bgp.state`).
    let contract = contract();
    let read: BTreeMap<String, Vec<String>> =
        serde_json::from_value(report["read"].clone()).unwrap();
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
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    // Tunnels: R1-R2, R1-R3 (its own), R2-R4, R3-R4 (reported in AS paths);
    // the path to r4 is R1 -> R2 -> R4.
    assert_eq!(report["path_segments"], 2);
    assert_eq!(report["svg_lines"], 4 + 2);
}
