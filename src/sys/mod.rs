//! Linux system interfaces: the TUN device, kernel routes (netlink), and the
//! LAN's discovery socket.

pub mod discovery;
pub mod netlink;
pub mod nft;
pub mod offload;
pub mod path_probe;
pub mod raw;
pub mod tun;
pub mod udp_gso;

use std::fmt;
use std::io;

/// Puts the calling thread in `SCHED_IDLE`: it runs when the packet loop
/// does not want the CPU, and the loop, woken, preempts it at once.
///
/// For meshd's helper threads (the configuration file, the log, name
/// lookups): their work can wait a few milliseconds, the loop's cannot. On
/// a one- or two-core router a reload or a burst of ubus edits otherwise
/// takes the core from the loop for a scheduler slice or more, and BFD at
/// 10 ms × 4 has no slack for that. Lowering one's own priority needs no
/// privilege. Under a CPU hog such a thread still gets a small share, so it
/// is slowed, not starved.
pub fn yield_to_the_loop() -> io::Result<()> {
    let param = nix::libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call's duration; pid 0
    // is the calling thread.
    let rc = unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(context(io::Error::last_os_error(), "SCHED_IDLE"))
    }
}

/// Raises the calling thread's priority to nice -10: for the packet loop's
/// thread, which answers BFD every 10 ms and has about 40 ms of slack
/// before a false failover. Other processes on the router (a reload's
/// validation, `meshd check`, LuCI, a package install) then take the CPU
/// from it for much less than a scheduler slice, where at equal priority a
/// busy one- or two-core router can hold it off for one. Nice, not a
/// real-time class: a loop that went wrong still shares the CPU. Needs
/// `CAP_SYS_NICE` (meshd runs as root); without it the loop runs at the
/// priority it was given.
pub fn favour_the_loop() -> io::Result<()> {
    // SAFETY: no pointers; PRIO_PROCESS with 0 is the calling thread on
    // Linux (each thread has its own nice value).
    let rc = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, -10) };
    if rc == 0 {
        Ok(())
    } else {
        Err(context(io::Error::last_os_error(), "nice -10"))
    }
}

/// An [`io::Error`] with a description of what was being done in front of it
/// (and, for netlink, the kernel's extended-ack message behind it). The
/// [`io::ErrorKind`] of the underlying error is kept; [`errno`] digs out the
/// OS error number.
#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
    detail: Option<String>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.what.is_empty() {
            write!(f, "{}: ", self.what)?;
        }
        write!(f, "{}", self.source)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Context {}

/// Wraps `err` so that it reads "`what`: `err`", keeping its kind and errno.
pub(crate) fn context(err: io::Error, what: impl fmt::Display) -> io::Error {
    // An error that has only a detail so far (a kernel message) takes the
    // description in place rather than nesting.
    let bare = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<Context>())
        .is_some_and(|c| c.what.is_empty());
    if bare {
        let kind = err.kind();
        return match err.into_inner().map(|e| e.downcast::<Context>()) {
            Some(Ok(c)) => with_detail(c.source, what, c.detail),
            _ => io::Error::new(kind, what.to_string()), // unreachable
        };
    }
    with_detail(err, what, None)
}

fn with_detail(err: io::Error, what: impl fmt::Display, detail: Option<String>) -> io::Error {
    io::Error::new(
        err.kind(),
        Context {
            what: what.to_string(),
            source: err,
            detail,
        },
    )
}

/// The OS error number (`errno`) behind an error returned by this module,
/// looking through the context added to it.
pub fn errno(err: &io::Error) -> Option<i32> {
    if let Some(n) = err.raw_os_error() {
        return Some(n);
    }
    let ctx = err.get_ref()?.downcast_ref::<Context>()?;
    errno(&ctx.source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_and_errno() {
        let e = context(io::Error::from_raw_os_error(17), "adding x");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(errno(&e), Some(17));
        assert!(e.to_string().starts_with("adding x: "), "{e}");
        let e = context(e, "outer");
        assert_eq!(errno(&e), Some(17));
        let e = with_detail(
            io::Error::from_raw_os_error(22),
            "op",
            Some("kernel: bad".into()),
        );
        assert!(e.to_string().ends_with("(kernel: bad)"), "{e}");
        assert_eq!(errno(&io::Error::other("plain")), None);
    }

    #[test]
    fn the_loop_is_raised_and_only_the_calling_thread() {
        let nice = || {
            // SAFETY: no pointers; the calling thread's nice value.
            unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) }
        };
        let before = nice();
        let (raised, result) = std::thread::spawn(move || {
            let result = favour_the_loop();
            (nice(), result.map_err(|e| e.to_string()))
        })
        .join()
        .unwrap();
        if nix::unistd::geteuid().is_root() {
            assert_eq!(result, Ok(()));
            assert_eq!(raised, -10);
        } else {
            // Without CAP_SYS_NICE: a clear error, the priority unchanged.
            assert!(
                result.as_ref().is_err_and(|e| e.starts_with("nice -10")),
                "{result:?}"
            );
            assert_eq!(raised, before);
        }
        // This thread was not touched.
        assert_eq!(nice(), before);
    }
}
