//! The command line: what packaging and users rely on.

use std::io::Write;
use std::process::{Command, Stdio};

fn meshd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshd"))
}

fn pipe(mut cmd: Command, input: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn version_is_the_plain_package_version() {
    // OpenWrt's packages CI compares this with PKG_VERSION.
    let out = meshd().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn keys_agree_with_wireguard_tools() {
    let wg_found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("wg").is_file()))
        .unwrap_or(false);
    assert!(
        wg_found,
        "`wg` not found: install the Debian package wireguard-tools (scripts/test.sh does)"
    );
    for _ in 0..5 {
        let private = String::from_utf8(meshd().arg("genkey").output().unwrap().stdout).unwrap();
        let ours = pipe(
            {
                let mut c = meshd();
                c.arg("pubkey");
                c
            },
            &private,
        );
        let theirs = pipe(
            {
                let mut c = Command::new("wg");
                c.arg("pubkey");
                c
            },
            &private,
        );
        assert_eq!(ours, theirs);
    }
    // And the other way: a key from `wg genkey`.
    let private =
        String::from_utf8(Command::new("wg").arg("genkey").output().unwrap().stdout).unwrap();
    let mut c = meshd();
    c.arg("pubkey");
    let mut w = Command::new("wg");
    w.arg("pubkey");
    assert_eq!(pipe(c, &private), pipe(w, &private));
}

#[test]
fn pubkey_refuses_garbage() {
    let mut child = meshd()
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"not a key\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn check_accepts_a_good_config_and_names_the_line_of_a_bad_one() {
    let dir = std::env::temp_dir().join(format!("meshd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    std::fs::write(
        &good,
        "config meshd 'main'\n\toption overlay '10.0.0.1'\n\toption asn '65001'\n",
    )
    .unwrap();
    let out = meshd().arg("check").arg("-c").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.join("bad");
    std::fs::write(
        &bad,
        "config meshd 'main'\n\toption overlay '10.0.0.1'\n\toption asn '65001'\n\toption hold_time '2'\n",
    )
    .unwrap();
    let out = meshd().arg("check").arg("-c").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4:", bad.display())) && err.contains("hold_time"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
