//! ubus edits of the configuration file off the packet loop: `member_add`
//! and `member_del` take uci's lock (another writer may hold it for up to
//! 2 s), write a temporary file, fsync, rename, fsync the directory. On the
//! loop, any of those would hold up every packet and BFD answer; here they
//! run on a thread of their own, one at a time (uci's lock orders them
//! with other writers anyway), and the call is answered when its edit is
//! done.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};

use crate::ubus_api::{Edit, EditResult};

/// Who asked: the caller's peer id and sequence number on the bus.
pub type Caller = (u32, u16);

/// An edit done: who asked, what it was, how it went.
pub type Done = (Caller, &'static str, &'static str, EditResult);

/// The editor thread and the way back from it.
#[derive(Debug)]
pub struct Editor {
    jobs: Sender<(Caller, PathBuf, Edit)>,
    done: Receiver<Done>,
    wake: UnixStream,
}

impl Editor {
    pub fn start() -> io::Result<Editor> {
        let (jobs, todo) = channel::<(Caller, PathBuf, Edit)>();
        let (finished, done) = channel();
        let (wake, mut ring) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        std::thread::Builder::new()
            .name("meshd-edit".into())
            .spawn(move || {
                for (caller, path, edit) in todo {
                    let result = (edit.job)(&path);
                    if finished
                        .send((caller, edit.method, edit.event, result))
                        .is_err()
                    {
                        return;
                    }
                    let _ = ring.write_all(&[1]);
                }
            })?;
        Ok(Editor { jobs, done, wake })
    }

    /// Runs `edit` on the file at `path` for `caller`; false when the
    /// thread is gone (the caller is then answered with an error).
    pub fn submit(&self, caller: Caller, path: PathBuf, edit: Edit) -> bool {
        self.jobs.send((caller, path, edit)).is_ok()
    }

    /// The fd to watch.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Edits done since last asked.
    pub fn done(&mut self) -> Vec<Done> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.done.try_iter().collect()
    }
}
