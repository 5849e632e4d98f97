//! `meshd`: the daemon and its command line.
//!
//! ```text
//! meshd [-c CONFIG]                 run (foreground; procd supervises it)
//! meshd check [-c CONFIG]           validate the configuration and exit
//! meshd status [--json] [-c CONFIG] ask the running daemon
//! meshd genkey                      print a new private key
//! meshd pubkey < private.key        print the public key of a private key
//! meshd --version
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use meshd::config::Config;
use meshd::daemon::{Daemon, Outcome};
use meshd::{control, keys, logger};

const DEFAULT_CONFIG: &str = "/etc/config/meshd";

fn usage() -> ExitCode {
    eprintln!(
        "usage: meshd [-c CONFIG] [run|check|status [--json]|genkey|pubkey]\n       \
         meshd [-c CONFIG] invite --name NAME [--expires 24h] [--endpoint ADDR:PORT]...\n       \
         meshd [-c CONFIG] join TOKEN\n       meshd [-c CONFIG] remove NAME\n       \
         meshd --version"
    );
    ExitCode::from(2)
}

/// The control socket the config names (without validating the rest).
fn socket_of(config: &std::path::Path) -> PathBuf {
    Config::load(config)
        .map(|c| c.main.control_socket)
        .unwrap_or_else(|_| PathBuf::from(meshd::config::DEFAULT_CONTROL_SOCKET))
}

/// `meshd invite --name NAME [--expires D] [--endpoint A:P]...`: asks the
/// running daemon for an invite and prints its token.
fn invite(socket: &std::path::Path, args: &[String]) -> ExitCode {
    let (mut name, mut seconds, mut endpoints) = (None, 86400, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = it.next();
        match (a.as_str(), value) {
            ("--name", Some(v)) => name = Some(v.clone()),
            ("--expires", Some(v)) => match meshd::invites::parse_duration(v) {
                Some(s) => seconds = s,
                None => {
                    eprintln!("error: --expires {v}: a duration like 24h, 30m, 90s or 2d");
                    return ExitCode::from(2);
                }
            },
            ("--endpoint", Some(v)) => {
                match v.parse::<std::net::SocketAddr>() {
                    Ok(e) => endpoints.push(e.to_string()),
                    Err(_) => {
                        eprintln!("error: --endpoint {v}: an address and port (a.b.c.d:port or [v6]:port)");
                        return ExitCode::from(2);
                    }
                }
            }
            _ => return usage(),
        }
    }
    let Some(name) = name else {
        eprintln!("error: --name: the name your friend's router gets here");
        return ExitCode::from(2);
    };
    let request = format!("invite {name} {seconds} {}", endpoints.join(" "));
    match control::ask(socket, request.trim_end()) {
        Ok(answer) if answer.starts_with(mesh_core::invite::TEXT_PREFIX) => {
            print!("{answer}");
            eprintln!(
                "On your friend's router: meshd join {} (valid {}, once)",
                answer.trim(),
                human(seconds)
            );
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprint!("{answer}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Asks the daemon to start something: its answer (on stderr) must begin
/// with `started`, else the command fails.
fn start(socket: &std::path::Path, request: &str, started: &str) -> Result<(), ExitCode> {
    match control::ask(socket, request) {
        Ok(answer) => {
            eprint!("{answer}");
            if answer.starts_with(started) {
                Ok(())
            } else {
                Err(ExitCode::FAILURE)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// `meshd remove NAME`: the daemon marks the member removed in the file;
/// this waits (5 s at most) until the file says so.
fn remove(config: &std::path::Path, args: &[String]) -> ExitCode {
    let [name] = args else {
        return usage();
    };
    if let Err(code) = start(&socket_of(config), &format!("remove {name}"), "removing") {
        return code;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let written = Config::load(config)
            .ok()
            .and_then(|c| c.member(name).map(|m| m.removed));
        if written == Some(true) {
            println!("removed: '{name}' is out of the group");
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("error: the file does not say '{name}' is removed (see the log)");
    ExitCode::FAILURE
}

fn human(seconds: u64) -> String {
    match seconds {
        s if s % 86400 == 0 => format!("{} d", s / 86400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `meshd join TOKEN`: the daemon asks the inviter; this waits for the
/// answer and the member section.
fn join(socket: &std::path::Path, args: &[String]) -> ExitCode {
    let [token] = args else {
        return usage();
    };
    if let Err(code) = start(socket, &format!("join {token}"), "joining") {
        return code;
    }
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(mesh_core::invite::JOIN_TIMEOUT.as_secs() + 10);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let Ok(line) = control::ask(socket, "join status") else {
            continue;
        };
        let mut words = line.trim().splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("joined"), Some(name), _) => {
                println!("joined: '{name}' is a member now; the mesh comes up in a few seconds");
                return ExitCode::SUCCESS;
            }
            (Some("failed"), inviter, reason) => {
                eprintln!(
                    "error: {}: {}",
                    inviter.unwrap_or("the inviter"),
                    reason.unwrap_or("failed")
                );
                return ExitCode::FAILURE;
            }
            _ => {}
        }
    }
    eprintln!("error: no answer from meshd about the join");
    ExitCode::FAILURE
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    match Config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            Ok(c)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            Err(ExitCode::FAILURE)
        }
    }
}

/// The event loop's stack: reserved address space, resident only as far as it
/// is used (the node itself is built on another thread, see `build_node`).
const DAEMON_STACK: usize = 16 << 20;

fn run(path: PathBuf) -> ExitCode {
    // Blocked here so that every thread inherits the mask: the daemon reads
    // them from its signalfd, and none may reach the waiting main thread.
    let mut mask = nix::sys::signal::SigSet::empty();
    for s in [
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        mask.add(s);
    }
    if let Err(e) = mask.thread_block() {
        eprintln!("error: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    match std::thread::Builder::new()
        .name("meshd".into())
        .stack_size(DAEMON_STACK)
        .spawn(move || run_daemon(path))
    {
        Ok(t) => {
            let code = t.join().unwrap_or(ExitCode::FAILURE);
            // What the log thread holds is written before the process ends.
            logger::flush();
            code
        }
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps meshd's pages in RAM: its code, libc and what it has allocated,
/// each once first touched (`MCL_ONFAULT`: nothing is read in ahead, RSS
/// stays what it was). A router short of memory evicts file-backed pages
/// that were not used lately, and a BFD down or a reload then runs code read
/// back from flash first (squashfs, decompressed): a stall of the packet
/// loop, and a false failover on every tunnel. Mappings made later (a new
/// thread's stack) are not locked: locking them too could make them fail
/// where the memlock limit applies. Without the privilege or under that
/// limit, meshd runs on unlocked and says so.
fn lock_memory() {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    let flags =
        MlockAllFlags::MCL_CURRENT | MlockAllFlags::from_bits_retain(nix::libc::MCL_ONFAULT);
    match mlockall(flags) {
        Ok(()) => log::debug!("memory: pages locked in RAM as they are touched"),
        Err(e) => log::warn!(
            "memory: cannot lock pages in RAM ({e}); under memory pressure the kernel may evict meshd's code"
        ),
    }
}

fn run_daemon(path: PathBuf) -> ExitCode {
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    logger::init(config.main.log_level);
    if !config.main.enabled {
        log::info!("disabled in {} (option enabled '0')", path.display());
        return ExitCode::SUCCESS;
    }
    let mut daemon = match Daemon::new(&path, config) {
        Ok(d) => d,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    lock_memory();
    let outcome = daemon.run();
    daemon.shutdown();
    drop(daemon);
    match outcome {
        Ok(Outcome::Exit) => ExitCode::SUCCESS,
        Ok(Outcome::Restart) => {
            // A fresh process for a fresh identity; procd sees the same pid.
            let exe = std::ffi::CString::new("/proc/self/exe").unwrap_or_default();
            let args: Vec<std::ffi::CString> = std::env::args()
                .filter_map(|a| std::ffi::CString::new(a).ok())
                .collect();
            // ... and before it becomes a new one.
            logger::flush();
            let err = nix::unistd::execv(&exe, &args);
            log::error!("restart failed: {err:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = PathBuf::from(DEFAULT_CONFIG);
    if let Some(i) = args.iter().position(|a| a == "-c" || a == "--config") {
        if i + 1 >= args.len() {
            return usage();
        }
        config = PathBuf::from(args.remove(i + 1));
        args.remove(i);
    }
    let json = if let Some(i) = args.iter().position(|a| a == "--json") {
        args.remove(i);
        true
    } else {
        false
    };
    match args.first().map(String::as_str) {
        None | Some("run") => run(config),
        Some("--version") | Some("-V") | Some("version") => {
            println!("{}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("check") => match load(&config) {
            Ok(mut c) => {
                let alias_from_key = matches!(c.main.lan_alias, meshd::config::LanAlias::On);
                if c.main.from_key.any() || alias_from_key {
                    // Numbers left to the key: derived from the key file if
                    // there is one (check never creates it).
                    let key = std::fs::read_to_string(&c.main.private_key_file)
                        .ok()
                        .and_then(|t| t.trim().parse::<mesh_core::wg::Key>().ok());
                    match key {
                        Some(private) => {
                            let public = keys::public_key(&private);
                            if let Err(errors) = c.derive_identity(&public, &config) {
                                for e in &errors {
                                    eprintln!("error: {e}");
                                }
                                return ExitCode::FAILURE;
                            }
                            println!(
                                "this router, from its key: overlay {}{}, AS {}",
                                c.main.overlay,
                                c.main.overlay6.map(|a| format!(" and {a}")).unwrap_or_default(),
                                c.main.asn
                            );
                            if let Some(m) = c.main.lan_map {
                                println!(
                                    "the LAN {}/{} is {}/{} in the mesh (mapped 1:1)",
                                    m.lan.0, m.lan.1, m.alias.0, m.alias.1
                                );
                            }
                        }
                        None => println!(
                            "this router's overlay address and AS number will be derived from its key ({}, created at first start)",
                            c.main.private_key_file.display()
                        ),
                    }
                }
                println!(
                    "{}: ok ({} members, {} enabled)",
                    config.display(),
                    c.members.len(),
                    c.enabled_members().count()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some("genkey") => match keys::generate() {
            Ok(k) => {
                println!("{k}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some("pubkey") => {
            let mut text = String::new();
            if std::io::stdin().read_to_string(&mut text).is_err() {
                return usage();
            }
            match text.trim().parse() {
                Ok(k) => {
                    println!("{}", keys::public_key(&k));
                    ExitCode::SUCCESS
                }
                Err(_) => {
                    eprintln!("error: stdin is not a WireGuard private key");
                    ExitCode::FAILURE
                }
            }
        }
        Some("invite") => invite(&socket_of(&config), &args[1..]),
        Some("join") => join(&socket_of(&config), &args[1..]),
        Some("remove") => remove(&config, &args[1..]),
        Some("status") => {
            // The socket path comes from the config, without validating the rest.
            let socket = Config::load(&config)
                .map(|c| c.main.control_socket)
                .unwrap_or_else(|_| PathBuf::from(meshd::config::DEFAULT_CONTROL_SOCKET));
            // The daemon answers compact JSON only; indenting it and
            // rendering the text happen here, off its packet loop.
            match control::ask(&socket, "status") {
                Ok(answer) => {
                    match meshd::json::Json::parse(&answer) {
                        Ok(doc) if json => {
                            println!("{}", doc.pretty());
                            ExitCode::SUCCESS
                        }
                        Ok(doc) => {
                            print!("{}", meshd::status::render(&doc));
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("error: the daemon's answer is not its status document ({e}): {answer}");
                            ExitCode::FAILURE
                        }
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(_) => usage(),
    }
}
