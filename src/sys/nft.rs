//! The game exit's kernel rules for consoles set to `exit_all`: their TCP
//! and ICMP leave the exit through the kernel's masquerade (their UDP goes
//! through meshd's own NAT, which filters endpoint-independently; the
//! kernel's does not, and TCP needs no such thing), with the MSS of their
//! connections clamped to what fits the wrapped path.
//!
//! Rules go in meshd's own table, `ip meshd_exit`, loaded with `nft -f -`:
//! a table of its own lives beside fw4's on OpenWrt and is removed in one
//! step. `nft` runs as a child process that the caller does not wait for
//! (the packet loop never blocks on it): [`Nft::reap`] collects its exit
//! status later and logs a failure.
//!
//! One `nft` runs at a time. Two at once commit in whichever order the
//! kernel takes them: start-up's removal of a stale table, committed after
//! the exit's rules that followed it, left an exit with no masquerade and
//! no error. Each ruleset replaces the whole table, so of the loads asked
//! for while one runs only the last is kept, and run when it ends.

use std::io::{self, Write};
use std::process::{Child, Command, Stdio};

/// meshd's table.
pub const TABLE: &str = "meshd_exit";

/// The ruleset of an exit whose TUN device is `tun`, with LAN device `lan`,
/// clamping TCP to `mss`: masquerade what the mesh sends to the internet,
/// clamp SYNs both ways. Loading it replaces an earlier one.
pub fn exit_ruleset(tun: &str, lan: &str, mss: u16) -> String {
    format!(
        "table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\t# consoles' TCP and ICMP through this game exit (exit_all)\n\
         \t\tiifname \"{tun}\" oifname != {{ \"{tun}\", \"{lan}\" }} counter masquerade\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority mangle; policy accept;\n\
         \t\t# what fits the wrapped path: SYNs out, and SYN-ACKs back\n\
         \t\tiifname \"{tun}\" oifname != {{ \"{tun}\", \"{lan}\" }} tcp flags syn tcp option maxseg size set {mss}\n\
         \t\toifname \"{tun}\" ct status snat tcp flags syn tcp option maxseg size set {mss}\n\
         \t}}\n\
         }}\n"
    )
}

/// Removes the table, if it is there.
pub fn remove_ruleset() -> String {
    format!("table ip {TABLE}\ndelete table ip {TABLE}\n")
}

/// `nft` runs, one at a time, not waited for.
#[derive(Debug, Default)]
pub struct Nft {
    running: Option<(Child, &'static str)>,
    /// The ruleset to load once the running `nft` ends (the last asked for).
    next: Option<(String, &'static str)>,
}

impl Nft {
    /// Loads `ruleset` with `nft -f -`: now, or, while an earlier load
    /// runs, after it (in place of any other waiting). An error is the
    /// failure to start `nft` now; a later start's is logged by
    /// [`Nft::reap`].
    pub fn load(&mut self, ruleset: &str, what: &'static str) -> io::Result<()> {
        if self.running.is_some() {
            if let Some((_, dropped)) = self.next.replace((ruleset.to_string(), what)) {
                log::debug!("nft ({dropped}) replaced by ({what}) before it ran");
            }
            return Ok(());
        }
        self.running = Some((spawn(ruleset)?, what));
        Ok(())
    }

    /// Collects a finished run, logs it if it failed, and starts the
    /// waiting load.
    pub fn reap(&mut self) {
        let Some((child, what)) = self.running.as_mut() else {
            return;
        };
        match child.try_wait() {
            Ok(None) => return,
            Ok(Some(status)) => {
                if status.success() {
                    log::debug!("nft ({what}) loaded");
                } else {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = io::Read::read_to_string(&mut e, &mut err);
                    }
                    log::warn!("nft ({what}) failed: {status}: {}", err.trim());
                }
            }
            Err(e) => log::warn!("nft ({what}): {e}"),
        }
        self.running = None;
        if let Some((ruleset, what)) = self.next.take() {
            if let Err(e) = self.load(&ruleset, what) {
                log::warn!("nft ({what}): cannot run nft: {e}");
            }
        }
    }

    /// Waits for the running load and the one waiting (at shutdown).
    pub fn wait(&mut self) {
        while let Some((child, _)) = self.running.as_mut() {
            let _ = child.wait();
            self.reap();
        }
    }
}

/// Starts `nft -f -` with `ruleset` on its standard input.
fn spawn(ruleset: &str) -> io::Result<Child> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // A ruleset of a few hundred bytes fits the pipe: this write does not
    // wait for nft.
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(ruleset.as_bytes())?;
    }
    Ok(child)
}
