//! The buildroot br2-external tree (`buildroot/`), and what starts meshd on
//! an image without procd: `/etc/init.d/S50meshd` runs OpenWrt's init script
//! over procd-lite (both in `buildroot/board/meshd/rootfs-overlay/`).
//!
//! Buildroot itself does not run here (it downloads its sources), so the
//! tree is checked for what holds without it: the names it uses exist, the
//! defconfig's paths and this tree's symbols are there, and the package, the
//! overlay and the init scripts agree on where each file goes. The scripts
//! do run: with busybox's sh (Debian package busybox-static), as buildroot's
//! images run them, and the whole life of a supervised meshd runs as root
//! (meshd opens a TUN device), in a network namespace of its own
//! (`unshare`), so that its address and routes stay off this machine's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The br2-external tree.
fn tree() -> PathBuf {
    repo().join("buildroot")
}

fn overlay() -> PathBuf {
    tree().join("board/meshd/rootfs-overlay")
}

fn s50meshd() -> PathBuf {
    overlay().join("etc/init.d/S50meshd")
}

fn procd_lite() -> PathBuf {
    overlay().join("usr/share/meshd/procd-lite.sh")
}

fn post_build() -> PathBuf {
    tree().join("board/meshd/post-build.sh")
}

fn openwrt_init() -> PathBuf {
    repo().join("openwrt/meshd/files/meshd.init")
}

fn defconfig() -> PathBuf {
    tree().join("configs/meshd_qemu_aarch64_virt_defconfig")
}

fn meshd_mk() -> PathBuf {
    tree().join("package/meshd/meshd.mk")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o111
        != 0
}

/// busybox's sh, the shell of buildroot's images.
fn busybox_sh() -> Command {
    match Command::new("busybox").args(["sh", "-c", "true"]).output() {
        Ok(out) if out.status.success() => {
            let mut sh = Command::new("busybox");
            sh.arg("sh");
            sh
        }
        _ => panic!(
            "`busybox` is needed to run the init scripts with the shell of buildroot's \
             images and was not found: install the Debian package busybox-static"
        ),
    }
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshd-buildroot-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// `$(BR2_EXTERNAL_MESHD_PATH)` and `$BR2_EXTERNAL_MESHD_PATH` in `text`,
/// replaced by the tree's path.
fn in_tree(text: &str) -> String {
    let path = tree().display().to_string();
    text.replace("$(BR2_EXTERNAL_MESHD_PATH)", &path)
        .replace("$BR2_EXTERNAL_MESHD_PATH", &path)
}

// ---- the tree: external.desc, Config.in, external.mk ----

fn external_desc() -> BTreeMap<String, String> {
    read(&tree().join("external.desc"))
        .lines()
        // buildroot reads `^name: +(.*)$`: a colon and at least one space.
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn external_desc_names_the_tree_meshd_and_every_file_uses_that_name() {
    let desc = external_desc();
    assert_eq!(
        desc.get("name").map(String::as_str),
        Some("MESHD"),
        "{desc:?}"
    );
    // The manual: a short description, "40 chars is probably a good upper limit".
    let text = desc.get("desc").expect("a desc line");
    assert!(!text.is_empty() && text.len() <= 40, "desc: {text:?}");

    // Buildroot sets BR2_EXTERNAL_<name>_PATH: any other name is empty.
    let mut files = vec![tree()];
    let mut used = BTreeSet::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        for (i, _) in text.match_indices("BR2_EXTERNAL_") {
            let rest = &text[i + "BR2_EXTERNAL_".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            if let Some(name) = rest[..end].strip_suffix("_PATH") {
                used.insert((name.to_string(), path.clone()));
            }
        }
    }
    assert!(used.len() >= 4, "{used:?}");
    for (name, path) in &used {
        assert_eq!(
            name,
            "MESHD",
            "BR2_EXTERNAL_{name}_PATH in {}",
            path.display()
        );
    }
}

/// The `source` lines of a Config.in, as paths.
fn kconfig_sources(file: &Path) -> Vec<PathBuf> {
    read(file)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("source "))
        .map(|s| PathBuf::from(in_tree(s.trim().trim_matches('"'))))
        .collect()
}

/// Every Config.in of the tree, from its top one along `source` lines, and
/// the symbols they define.
fn kconfig_tree() -> (Vec<PathBuf>, BTreeSet<String>) {
    let mut files = Vec::new();
    let mut symbols = BTreeSet::new();
    let mut pending = vec![tree().join("Config.in")];
    while let Some(file) = pending.pop() {
        for line in read(&file).lines() {
            let mut words = line.split_whitespace();
            if let (Some("config" | "menuconfig"), Some(symbol)) = (words.next(), words.next()) {
                symbols.insert(symbol.to_string());
            }
        }
        pending.extend(kconfig_sources(&file));
        files.push(file);
    }
    (files, symbols)
}

/// The paths that match `pattern`, whose `*` matches within one path
/// segment (make's wildcard, as external.mk uses it).
fn glob(pattern: &str) -> Vec<PathBuf> {
    fn matches(pattern: &str, name: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == name,
            Some((head, tail)) => {
                name.starts_with(head)
                    && (head.len()..=name.len())
                        .any(|i| name.is_char_boundary(i) && matches(tail, &name[i..]))
            }
        }
    }
    let mut found = vec![PathBuf::from("/")];
    for segment in pattern.split('/').filter(|s| !s.is_empty()) {
        found = found
            .iter()
            .flat_map(|dir| {
                fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .map(|e| e.unwrap().path())
                    .filter(|p| matches(segment, &p.file_name().unwrap().to_string_lossy()))
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    found.sort();
    found
}

/// What the `include` lines of external.mk include.
fn external_mk_includes() -> Vec<PathBuf> {
    let mut included = Vec::new();
    for line in read(&tree().join("external.mk")).lines() {
        let Some(what) = line.trim().strip_prefix("include ") else {
            continue;
        };
        let what = in_tree(what.trim());
        let files = match what.find("$(wildcard ") {
            Some(i) => {
                let pattern = &what[i + "$(wildcard ".len()..];
                glob(&pattern[..pattern.find(')').expect("a closed $(wildcard ...)")])
            }
            None => vec![PathBuf::from(&what)],
        };
        assert!(!files.is_empty(), "`{line}` includes nothing");
        included.extend(files);
    }
    included
}

#[test]
fn every_path_config_in_and_external_mk_name_exists_and_each_package_is_in_both() {
    let (files, symbols) = kconfig_tree();
    for file in &files {
        assert!(file.is_file(), "{} is sourced and missing", file.display());
    }
    let included = external_mk_includes();
    for file in &included {
        assert!(file.is_file(), "{} is included and missing", file.display());
    }
    let packages: Vec<PathBuf> = fs::read_dir(tree().join("package"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!packages.is_empty());
    for dir in packages {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let config_in = dir.join("Config.in");
        assert!(
            files.contains(&config_in),
            "{name}: Config.in is not sourced"
        );
        assert!(
            included.contains(&dir.join(format!("{name}.mk"))),
            "{name}: {name}.mk is not included"
        );
        let symbol = format!("BR2_PACKAGE_{}", name.to_uppercase().replace('-', "_"));
        assert!(symbols.contains(&symbol), "{name}: no `config {symbol}`");
    }
}

#[test]
fn the_package_follows_the_manuals_cargo_package_tutorial() {
    let config_in = read(&tree().join("package/meshd/Config.in"));
    let lines: Vec<&str> = config_in.lines().collect();
    assert_eq!(lines[0], "config BR2_PACKAGE_MESHD");
    for attribute in [
        "\tbool \"meshd\"",
        "\tdepends on BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS",
        "\tselect BR2_PACKAGE_HOST_RUSTC",
        "\thelp",
    ] {
        assert!(lines.contains(&attribute), "no `{attribute}` in Config.in");
    }
    // check-package: help text is <tab><2 spaces><at most 62 characters>.
    let help = lines.iter().position(|l| *l == "\thelp").unwrap();
    for line in &lines[help + 1..] {
        assert!(
            line.is_empty()
                || (line.starts_with("\t  ") && line.chars().count() <= 3 + 62)
                || line.trim().starts_with("http"),
            "help text line {line:?}"
        );
    }

    let mk = read(&meshd_mk());
    // check-package's header: 80 hashes, `#`, `# meshd`, `#`, 80 hashes, blank.
    let hashes = "#".repeat(80);
    let header: Vec<&str> = mk.lines().take(6).collect();
    assert_eq!(header, [&hashes, "#", "# meshd", "#", &hashes, ""]);
    assert_eq!(
        mk.lines().rfind(|l| !l.is_empty()),
        Some("$(eval $(cargo-package))")
    );
}

// ---- meshd.mk ----

/// `NAME = value` lines of a makefile, outside `define` blocks, with their
/// continuation lines joined.
fn mk_variables(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut in_define = false;
    let mut pending: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some((name, mut value)) = pending.take() {
            value.push(' ');
            value.push_str(line.trim().trim_end_matches('\\').trim());
            if line.ends_with('\\') {
                pending = Some((name, value));
            } else {
                vars.insert(name, value);
            }
            continue;
        }
        if line.starts_with("define ") {
            in_define = true;
        } else if line.starts_with("endef") {
            in_define = false;
        } else if !in_define && !line.starts_with('#') {
            if let Some((name, value)) = line.split_once(" = ") {
                let value = value.trim_end_matches('\\').trim().to_string();
                if line.ends_with('\\') {
                    pending = Some((name.trim().to_string(), value));
                } else {
                    vars.insert(name.trim().to_string(), value);
                }
            }
        }
    }
    vars
}

/// The body of each `define NAME` ... `endef`, continuation lines joined.
fn mk_defines(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut defines = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("define ") {
            current = Some((name.trim().to_string(), Vec::new()));
        } else if line.starts_with("endef") {
            let (name, body) = current.take().expect("endef without define");
            defines.insert(name, body);
        } else if let Some((_, body)) = current.as_mut() {
            let joined = body.last().is_some_and(|l: &String| l.ends_with('\\'));
            let part = line.trim().to_string();
            if joined {
                let last = body.last_mut().unwrap();
                last.pop();
                last.push(' ');
                last.push_str(&part);
            } else {
                body.push(part);
            }
        }
    }
    defines
}

/// The words of a make command line: split at blanks outside `$(...)`.
fn make_words(line: &str) -> Vec<String> {
    let mut words = vec![String::new()];
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if !words.last().unwrap().is_empty() {
                words.push(String::new());
            }
        } else {
            words.last_mut().unwrap().push(c);
        }
    }
    words.retain(|w| !w.is_empty());
    words
}

/// What the package installs: target path (under TARGET_DIR) -> source.
/// A source in the build tree, `$(@D)/...`, is a path of this repository
/// (MESHD_SITE is the repository); one under `target/` is a build product,
/// kept as it is written.
fn package_installs() -> BTreeMap<String, String> {
    let mk = read(&meshd_mk());
    let mut installs = BTreeMap::new();
    for (name, body) in mk_defines(&mk) {
        if !name.starts_with("MESHD_INSTALL_") {
            continue;
        }
        for command in body {
            let Some(args) = command.strip_prefix("$(INSTALL) ") else {
                continue;
            };
            let mut words: Vec<String> = Vec::new();
            let mut iter = make_words(args).into_iter();
            while let Some(word) = iter.next() {
                match word.as_str() {
                    "-m" => {
                        iter.next();
                    }
                    w if w.starts_with('-') => {}
                    _ => words.push(word),
                }
            }
            let (target, sources) = words.split_last().expect("an install with a target");
            assert_eq!(sources.len(), 1, "{command}");
            let target = target
                .strip_prefix("$(TARGET_DIR)")
                .unwrap_or_else(|| panic!("{command}: installs outside TARGET_DIR"));
            installs.insert(target.to_string(), sources[0].to_string());
        }
    }
    installs
}

/// A package source path as a path of this repository, None for a build
/// product.
fn source_in_repo(source: &str) -> Option<PathBuf> {
    if let Some(path) = source.strip_prefix("$(@D)/") {
        return (!path.starts_with("target/")).then(|| repo().join(path));
    }
    if let Some(path) = source.strip_prefix("$(MESHD_PKGDIR)") {
        return Some(
            tree()
                .join("package/meshd")
                .join(path.trim_start_matches('/')),
        );
    }
    let path = in_tree(source);
    assert!(path.starts_with('/'), "{source}: a path of what?");
    Some(PathBuf::from(path))
}

/// The files of the rootfs overlay, as target paths.
fn overlay_files() -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut pending = vec![overlay()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let target = path.strip_prefix(overlay()).unwrap();
                files.insert(format!("/{}", target.display()));
            }
        }
    }
    files
}

/// The value of `NAME=...` (the first assignment) in a shell script, unquoted.
fn shell_assignment(script: &Path, name: &str) -> String {
    read(script)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {}", script.display()))
        .trim_matches('"')
        .to_string()
}

fn cargo_toml_value(key: &str) -> String {
    read(&repo().join("Cargo.toml"))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no `{key} = ` in Cargo.toml"))
        .trim_matches('"')
        .to_string()
}

#[test]
fn meshd_mk_builds_this_repository_and_installs_files_that_exist() {
    let vars = mk_variables(&read(&meshd_mk()));
    assert_eq!(vars["MESHD_SITE"], "$(BR2_EXTERNAL_MESHD_PATH)/..");
    assert_eq!(
        Path::new(&in_tree(&vars["MESHD_SITE"])).join("Cargo.toml"),
        tree().join("../Cargo.toml")
    );
    assert_eq!(vars["MESHD_SITE_METHOD"], "local");
    assert_eq!(vars["MESHD_VERSION"], cargo_toml_value("version"));
    assert_eq!(vars["MESHD_LICENSE"], cargo_toml_value("license"));
    for file in vars["MESHD_LICENSE_FILES"].split_whitespace() {
        assert!(repo().join(file).is_file(), "license file {file}");
    }

    let installs = package_installs();
    for (target, source) in &installs {
        match source_in_repo(source) {
            Some(path) => assert!(path.is_file(), "{target}: {} is missing", path.display()),
            // A build product: one of Cargo.toml's binaries.
            None => assert_eq!(
                source.rsplit('/').next(),
                Some(cargo_toml_value("name").as_str()),
                "{target} from {source}"
            ),
        }
    }
    let from = |target: &str| -> Option<PathBuf> {
        installs
            .get(target)
            .and_then(|source| source_in_repo(source))
    };
    assert_eq!(from("/etc/init.d/meshd"), Some(openwrt_init()));
    assert_eq!(
        from("/etc/config/meshd"),
        Some(repo().join("openwrt/meshd/files/meshd.config"))
    );
    // The binary is where the init script runs it from.
    let prog = shell_assignment(&openwrt_init(), "PROG");
    assert!(
        installs.contains_key(&prog) && from(&prog).is_none(),
        "the init script runs {prog}; the package installs {installs:?}"
    );
}

#[test]
fn the_package_and_the_overlay_put_each_file_in_one_place_where_s50meshd_looks() {
    let installs: BTreeSet<String> = package_installs().into_keys().collect();
    let overlay = overlay_files();
    assert_eq!(
        overlay,
        BTreeSet::from([
            "/etc/init.d/S50meshd".to_string(),
            "/usr/share/meshd/procd-lite.sh".to_string()
        ])
    );
    let both: Vec<&String> = installs.intersection(&overlay).collect();
    assert!(both.is_empty(), "installed twice: {both:?}");

    // S50meshd's defaults name what the image has.
    let daemon = shell_assignment(&s50meshd(), "DAEMON");
    let default = |name: &str| -> String {
        let value = shell_assignment(&s50meshd(), name);
        let value = value
            .strip_prefix(&format!("${{{name}:-"))
            .and_then(|v| v.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{name}={value}: want ${{{name}:-default}}"));
        value.replace("$DAEMON", &daemon)
    };
    let init = default("MESHD_INIT");
    assert!(installs.contains(&init), "S50meshd runs {init}");
    let lite = default("PROCD_LITE");
    assert!(overlay.contains(&lite), "S50meshd sources {lite}");

    // check-package: DAEMON names the daemon and the file is S<nn><DAEMON>;
    // the scripts are executable, procd-lite is sourced.
    let name = s50meshd()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(name[3..], daemon, "{name}");
    assert!(name.starts_with('S') && name[1..3].chars().all(|c| c.is_ascii_digit()));
    assert!(is_executable(&s50meshd()));
    assert!(!is_executable(&procd_lite()));
}

// ---- the defconfig and the board ----

/// `SYMBOL=value` and `# SYMBOL is not set` lines: symbol -> value (`n`
/// for not set), quotes kept.
fn defconfig_symbols() -> BTreeMap<String, String> {
    let mut symbols = BTreeMap::new();
    for line in read(&defconfig()).lines() {
        if let Some(symbol) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            symbols.insert(symbol.to_string(), "n".to_string());
        } else if let Some((symbol, value)) = line.split_once('=') {
            if !line.starts_with('#') {
                symbols.insert(symbol.to_string(), value.to_string());
            }
        }
    }
    symbols
}

#[test]
fn the_defconfig_names_paths_that_exist_and_symbols_this_tree_defines() {
    let symbols = defconfig_symbols();
    // Every path in this tree that a value names.
    let mut paths = 0;
    for (symbol, value) in &symbols {
        if !value.contains("BR2_EXTERNAL_MESHD_PATH") {
            continue;
        }
        for path in in_tree(value.trim_matches('"')).split_whitespace() {
            assert!(Path::new(path).exists(), "{symbol}: {path} is missing");
            paths += 1;
        }
    }
    assert!(paths >= 2, "{symbols:?}");
    let path = |symbol: &str| -> PathBuf {
        PathBuf::from(in_tree(
            symbols
                .get(symbol)
                .unwrap_or_else(|| panic!("no {symbol}"))
                .trim_matches('"'),
        ))
    };
    assert_eq!(path("BR2_ROOTFS_OVERLAY"), overlay());
    assert_eq!(path("BR2_ROOTFS_POST_BUILD_SCRIPT"), post_build());
    assert!(is_executable(&post_build()), "buildroot runs it");

    // This tree's symbols (BR2_PACKAGE_<one of its packages>...) are ones
    // its Config.in files define.
    let (_, defined) = kconfig_tree();
    let ours: Vec<String> = fs::read_dir(tree().join("package"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            format!("BR2_PACKAGE_{}", name.to_uppercase().replace('-', "_"))
        })
        .collect();
    let mut checked = 0;
    for symbol in symbols.keys() {
        if ours.iter().any(|p| symbol.starts_with(p.as_str())) {
            assert!(defined.contains(symbol), "{symbol} is not defined here");
            checked += 1;
        }
    }
    assert!(checked >= 1);
    assert_eq!(
        symbols.get("BR2_PACKAGE_MESHD").map(String::as_str),
        Some("y")
    );
    // Rust's std needs glibc or musl.
    assert!(
        symbols.contains_key("BR2_TOOLCHAIN_BUILDROOT_GLIBC")
            || symbols.contains_key("BR2_TOOLCHAIN_BUILDROOT_MUSL"),
        "{symbols:?}"
    );
}

#[test]
fn the_readme_builds_this_defconfig_and_boots_the_image_it_makes() {
    let readme = read(&tree().join("board/meshd/readme.txt"));
    let make = readme
        .lines()
        .find(|l| l.trim_start().starts_with("make BR2_EXTERNAL="))
        .expect("a `make BR2_EXTERNAL=...` line");
    let words: Vec<&str> = make.split_whitespace().collect();
    let name = defconfig()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(words[2..], [name.as_str(), "&&", "make"], "{make}");
    assert!(words[1].ends_with("/buildroot"), "{make}");

    let qemu = readme
        .lines()
        .find(|l| l.trim_start().starts_with("qemu-system-aarch64 "))
        .expect("a qemu command");
    // The image the defconfig makes: ext4, the arch's kernel, virtio-net.
    let symbols = defconfig_symbols();
    assert!(symbols.contains_key("BR2_TARGET_ROOTFS_EXT2_4"));
    assert!(symbols.contains_key("BR2_aarch64"));
    for part in [
        "file=output/images/rootfs.ext4",
        "-kernel output/images/Image",
        "virtio-net-device",
        "-cpu cortex-a53",
    ] {
        assert!(qemu.contains(part), "no `{part}` in {qemu}");
    }
    assert!(symbols.contains_key("BR2_cortex_a53"));
}

#[test]
fn post_build_turns_forwarding_on_and_makes_a_key_from_an_overlay_private() {
    let dir = scratch("post-build");
    let target = dir.join("target");
    fs::create_dir_all(target.join("etc/meshd")).unwrap();
    let key = target.join("etc/meshd/private.key");
    fs::write(&key, "not a key\n").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let run = || {
        let out = Command::new(post_build()).arg(&target).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out
    };
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;

    // No S02sysctl: it says that nothing applies the setting.
    let out = run();
    assert!(stderr(&out).contains("S02sysctl"), "{}", stderr(&out));
    assert_eq!(
        read(&target.join("etc/sysctl.d/50-meshd.conf")).trim(),
        "net.ipv4.ip_forward = 1"
    );
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(key.parent().unwrap()), 0o700);

    // With one, and run twice (a rebuild): quiet, and the same file.
    let sysctl = target.join("etc/init.d/S02sysctl");
    fs::create_dir_all(sysctl.parent().unwrap()).unwrap();
    fs::write(&sysctl, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&sysctl, fs::Permissions::from_mode(0o755)).unwrap();
    let out = run();
    assert_eq!(stderr(&out), "");
    assert_eq!(
        read(&target.join("etc/sysctl.d/50-meshd.conf")).trim(),
        "net.ipv4.ip_forward = 1"
    );
    fs::remove_dir_all(&dir).unwrap();
}

// ---- the scripts ----

#[test]
fn every_script_is_valid_sh_for_busybox_and_dash() {
    for script in [s50meshd(), procd_lite(), post_build(), openwrt_init()] {
        for mut sh in [busybox_sh(), Command::new("sh")] {
            let out = sh.arg("-n").arg(&script).output().unwrap();
            assert!(
                out.status.success(),
                "{:?} -n {}: {}",
                sh.get_program(),
                script.display(),
                stderr(&out)
            );
        }
    }
}

/// A section as `uci show` prints it: its type, and its options and their
/// values in order, a list's items joined by spaces.
type ShownSection = (String, Vec<(String, String)>);

/// What `uci show` prints for a fixture: the sections in order, and each.
fn uci_show(path: &Path) -> (Vec<String>, BTreeMap<String, ShownSection>) {
    // 'it'\''s' -> it's; 'a' 'b' -> a b
    fn unquote(value: &str) -> String {
        let mut items = Vec::new();
        let mut item = String::new();
        let mut quoted = false;
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('\'', true) => quoted = false,
                ('\'', false) => quoted = true,
                ('\\', false) => item.extend(chars.next()),
                (' ', false) => items.push(std::mem::take(&mut item)),
                (c, _) => item.push(c),
            }
        }
        items.push(item);
        items.join(" ")
    }
    let mut order = Vec::new();
    let mut sections: BTreeMap<String, ShownSection> = BTreeMap::new();
    for line in read(path).lines() {
        let (key, value) = line.split_once('=').unwrap();
        let mut parts = key.splitn(3, '.').skip(1);
        let section = parts.next().unwrap().to_string();
        match parts.next() {
            None => {
                order.push(section.clone());
                sections.insert(section, (value.to_string(), Vec::new()));
            }
            Some(option) => sections
                .get_mut(&section)
                .unwrap()
                .1
                .push((option.to_string(), unquote(value))),
        }
    }
    (order, sections)
}

/// Runs procd-lite's config_load, config_foreach and uci_load_validate over
/// `conf` with busybox's sh: `section=type` for each section, in order, then
/// `section.option=value` for each option it has (the spec names every
/// option of the file, each with a default that marks it absent).
fn procd_lite_reads(conf: &Path, types: &BTreeSet<String>) -> Output {
    let log = conf.with_extension("procd-lite.log");
    let _ = fs::remove_file(&log);
    let script = r#"
        . "$1"
        CONFIG="$2"
        types="$3"
        config_load meshd || exit 1
        names=$(sed -n 's/^[[:space:]]*\(option\|list\)[[:space:]]\{1,\}\([A-Za-z0-9_]*\).*/\2/p' "$CONFIG" | sort -u)
        specs=
        for n in $names; do specs="$specs $n:string:(absent)"; done
        options() {
            for n in $names; do
                eval "v=\$$n"
                [ "$v" = "(absent)" ] || printf '%s.%s=%s\n' "$1" "$n" "$v"
            done
        }
        section() {
            echo "$1=$2"
            # shellcheck disable=SC2086
            uci_load_validate meshd "$2" "$1" options $specs
        }
        for t in $types; do config_foreach section "$t" "$t"; done
    "#;
    let mut sh = busybox_sh();
    sh.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(procd_lite())
        .arg(conf)
        .arg(types.iter().cloned().collect::<Vec<_>>().join(" "))
        .env("PROCD_LITE_LOG", &log);
    let mut out = sh.output().unwrap();
    // What procd-lite logged, after what the script printed to stderr.
    out.stderr.extend(fs::read(&log).unwrap_or_default());
    let _ = fs::remove_file(&log);
    out
}

#[test]
fn procd_lite_reads_each_uci_fixture_as_uci_show_does_and_refuses_what_uci_refuses() {
    let fixtures = repo().join("tests/fixtures/uci");
    let scratch = scratch("uci");
    let mut checked = 0;
    for entry in fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "conf") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        // A copy: procd-lite writes nothing next to the fixtures.
        let conf = scratch.join(format!("{stem}.conf"));
        fs::copy(&path, &conf).unwrap();
        let show = path.with_extension("show");
        if stem.starts_with("bad-") {
            // uci: "... at line N, byte M"; procd-lite names the file's line.
            let uci = read(&show);
            let line = uci
                .split(" at line ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .unwrap();
            let out = procd_lite_reads(&conf, &BTreeSet::from(["meshd".to_string()]));
            assert!(!out.status.success(), "{stem}: accepted\n{}", stdout(&out));
            let log = stderr(&out);
            assert!(
                log.contains(&format!("procd-lite: {}:{line}: ", conf.display())),
                "{stem}: uci says {uci:?}; procd-lite logged {log:?}"
            );
            checked += 1;
            continue;
        }
        let (order, sections) = uci_show(&show);
        let types: BTreeSet<String> = sections.values().map(|(t, _)| t.clone()).collect();
        let out = procd_lite_reads(&conf, &types);
        assert!(out.status.success(), "{stem}: {}", stderr(&out));
        let text = stdout(&out);
        // Sections come type by type: compare each type's in order.
        for ty in &types {
            let expected: Vec<&String> = order.iter().filter(|s| &sections[*s].0 == ty).collect();
            let got: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_suffix(&format!("={ty}")))
                .filter(|s| !s.contains('.'))
                .collect();
            assert_eq!(got, expected, "{stem}: sections of type {ty}");
        }
        for (section, (_, options)) in &sections {
            let mut expected: Vec<String> = options
                .iter()
                .map(|(o, v)| format!("{section}.{o}={v}"))
                .collect();
            expected.sort();
            let mut got: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{section}.")))
                .map(String::from)
                .collect();
            got.sort();
            assert_eq!(got, expected, "{stem}: section {section}");
        }
        checked += 1;
    }
    assert!(checked >= 4, "{checked} fixtures");
    fs::remove_dir_all(&scratch).unwrap();
}

// ---- a supervised meshd's whole life ----

/// The processes a test started, by the pid files procd-lite wrote: stopped
/// if the test ends early (SIGTERM to the supervisor, which stops meshd and
/// logs it; SIGKILL to what is left after 5 s), and the directory removed.
struct Started {
    dir: PathBuf,
    run: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let signal = |pid: i32, signal| {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        };
        let pids: Vec<i32> = ["meshd.supervisor.pid", "meshd.pid"]
            .iter()
            .filter_map(|file| pid_in(&self.run.join(file)))
            .filter(|pid| alive(*pid))
            .collect();
        if let Some(first) = pids.first() {
            signal(*first, nix::sys::signal::SIGTERM);
        }
        if wait_for(5, || (!pids.iter().any(|p| alive(*p))).then_some(())).is_none() {
            for pid in &pids {
                signal(*pid, nix::sys::signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn pid_in(file: &Path) -> Option<i32> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// A process that runs: one that exited and waits for its parent to reap
/// it (a zombie) does not.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Polls `what` every 50 ms for up to `secs` seconds.
fn wait_for<T>(secs: u64, mut what: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = what() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `Max open files` soft and hard limits of a process.
fn nofile(pid: i32) -> (String, String) {
    let limits = read(Path::new(&format!("/proc/{pid}/limits")));
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line["Max open files".len()..].split_whitespace();
    (
        numbers.next().unwrap().to_string(),
        numbers.next().unwrap().to_string(),
    )
}

#[test]
fn s50meshd_starts_reloads_respawns_and_stops_meshd_as_procd_would() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs meshd, which opens a TUN device, in a network namespace: \
         it must run as root (scripts/test.sh does)"
    );
    let dir = scratch("life");
    let run = dir.join("run");
    let started = Started {
        dir: dir.clone(),
        run: run.clone(),
    };
    let log = dir.join("meshd.log");
    let config = dir.join("meshd");
    let key = dir.join("keys/private.key");
    let tun = format!("mbr{}", std::process::id() % 100_000);
    let text = read(&repo().join("openwrt/meshd/files/meshd.config"))
        .replace("option enabled '0'", "option enabled '1'")
        .replace("option listen_port '51820'", "option listen_port '51999'")
        .replace("/etc/meshd/private.key", key.to_str().unwrap())
        .replace("option tun 'meshd0'", &format!("option tun '{tun}'"))
        .replace(
            "/var/run/meshd.sock",
            dir.join("meshd.sock").to_str().unwrap(),
        );
    assert!(text.contains("option enabled '1'") && text.contains(&tun));
    fs::write(&config, &text).unwrap();

    let meshd = env!("CARGO_BIN_EXE_meshd");
    let s50 = |action: &str, netns: bool| -> Output {
        let mut cmd = if netns {
            let mut unshare = Command::new("unshare");
            unshare.args(["--net", "busybox", "sh"]);
            unshare
        } else {
            busybox_sh()
        };
        cmd.arg(s50meshd())
            .arg(action)
            .env("MESHD_INIT", openwrt_init())
            .env("PROCD_LITE", procd_lite())
            .env("MESHD_PROG", meshd)
            .env("MESHD_CONFIG", &config)
            .env("PROCD_LITE_RUNDIR", &run)
            .env("PROCD_LITE_LOG", &log)
            .env("PROCD_LITE_RESPAWN_DELAY", "1")
            .output()
            .unwrap()
    };
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    let instance = || pid_in(&run.join("meshd.pid")).filter(|p| alive(*p));
    // The pid is written right after the fork, before the exec.
    let runs_meshd = |pid: i32| {
        let expected = [meshd.to_string(), "-c".into(), config.display().to_string()];
        if wait_for(5, || (cmdline(pid) == expected).then_some(())).is_none() {
            assert_eq!(cmdline(pid), expected);
        }
    };
    // Says what is missing before unshare would.
    busybox_sh();

    // start: the init script's command line, under a supervisor.
    let out = s50("start", true);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "Starting meshd: OK\n", "{}", stderr(&out));
    let first = wait_for(10, instance)
        .unwrap_or_else(|| panic!("meshd did not start; its log:\n{}", log_text()));
    runs_meshd(first);
    assert!(
        // The shipped config leaves the AS number to the key: a private
        // 4-octet AS, 4200000000 and up.
        wait_for(10, || log_text().contains(" up: AS42").then_some(())).is_some(),
        "{}",
        log_text()
    );
    let supervisor = pid_in(&run.join("meshd.supervisor.pid")).unwrap();
    assert!(alive(supervisor) && supervisor != first);
    // What else procd would have done: the open-file limit, the key, the
    // firewall rule in the service data.
    assert_eq!(nofile(first), ("4096".to_string(), "4096".to_string()));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let data = read(&run.join("meshd.data"));
    assert!(
        data.contains("firewall[0].name=Allow-meshd\n")
            && data.contains("firewall[0].dest_port=51999\n"),
        "{data}"
    );

    // reload with the file as it was: nothing to do, as procd.
    let out = s50("reload", false);
    assert_eq!(stdout(&out), "Reloading meshd: OK\n", "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!log_text().contains("reloaded "), "{}", log_text());
    // A file meshd refuses: refused, and meshd keeps running as it was.
    fs::write(
        &config,
        text.replace("#option asn '65001'", "option asn '65x01'"),
    )
    .unwrap();
    let out = s50("reload", false);
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "Reloading meshd: FAIL\n", "{}", stderr(&out));
    assert!(log_text().contains("not reloading"), "{}", log_text());
    // A changed file: SIGHUP, and the same meshd reloads it.
    fs::write(
        &config,
        text.replace("option keepalive '25'", "option keepalive '30'"),
    )
    .unwrap();
    let out = s50("reload", false);
    assert_eq!(stdout(&out), "Reloading meshd: OK\n", "{}", stderr(&out));
    let reloaded = format!("reloaded {}: ", config.display());
    assert!(
        wait_for(10, || log_text().contains(&reloaded).then_some(())).is_some(),
        "meshd did not reload; its log:\n{}",
        log_text()
    );
    assert_eq!(instance(), Some(first));

    // kill -9: the supervisor starts it again, after the respawn delay.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::SIGKILL).unwrap();
    let second = wait_for(10, || instance().filter(|p| *p != first))
        .unwrap_or_else(|| panic!("meshd was not respawned; its log:\n{}", log_text()));
    runs_meshd(second);
    assert!(
        log_text().contains("respawning meshd in 1 s"),
        "{}",
        log_text()
    );
    assert_eq!(pid_in(&run.join("meshd.supervisor.pid")), Some(supervisor));
    assert!(alive(supervisor));

    // stop: both gone, and their files.
    let out = s50("stop", false);
    assert_eq!(stdout(&out), "Stopping meshd: OK\n", "{}", stderr(&out));
    assert!(
        wait_for(10, || (!alive(second) && !alive(supervisor)).then_some(())).is_some(),
        "still running: meshd {}, supervisor {}",
        alive(second),
        alive(supervisor)
    );
    for file in ["meshd.pid", "meshd.supervisor.pid", "meshd.instance"] {
        assert!(!run.join(file).exists(), "{file} is left");
    }
    drop(started);
}
