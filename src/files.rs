//! File work off the packet loop: reading the configuration (SIGHUP, the
//! ubus `reload` method) and the ubus edits of it (`member_add`,
//! `member_del`).
//!
//! An edit takes uci's lock (another writer may hold it for up to 2 s),
//! writes a temporary file, fsyncs, renames and fsyncs the directory; a
//! reload reads and parses the file and reads (or creates) the key file.
//! On the loop, any of those would hold up every packet and BFD answer of
//! every tunnel. Here they run on a thread of their own, one job at a time
//! and in the order asked (an edit's own re-read sees its edit; uci's lock
//! orders it with other writers anyway). The loop gets the result, already
//! parsed, and applies it: only the node's reconfiguration runs there.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};

use mesh_core::wg::Key;

use crate::config::Config;
use crate::keys;
use crate::ubus_api::{Edit, EditResult};

/// Who asked on the bus: the caller's peer id and sequence number.
pub type Caller = (u32, u16);

/// The configuration file as read now, with its private key; or every
/// reason it cannot be used (the running configuration then stays).
pub type Loaded = Result<(Config, Key), Vec<String>>;

/// What the thread is asked to do.
#[derive(Debug)]
pub enum Job {
    /// Re-read the file; `caller` (a ubus `reload`) is answered once the
    /// result was applied. SIGHUP has no caller.
    Reload { caller: Option<Caller> },
    /// Edit the file for `caller` (none: the daemon's own edit, for an
    /// invite); when it was written, re-read it.
    Edit { caller: Option<Caller>, edit: Edit },
}

/// A job done.
#[derive(Debug)]
pub enum Done {
    Reloaded {
        caller: Option<Caller>,
        loaded: Loaded,
    },
    Edited {
        caller: Option<Caller>,
        method: &'static str,
        /// The member event subscribers hear when the file was written.
        event: &'static str,
        result: EditResult,
        /// The file as re-read after the edit; none when the edit was
        /// refused (nothing changed).
        loaded: Option<Loaded>,
    },
}

impl Done {
    /// The configuration this job read, if it read one.
    pub fn loaded(&self) -> Option<&Loaded> {
        match self {
            Done::Reloaded { loaded, .. } => Some(loaded),
            Done::Edited { loaded, .. } => loaded.as_ref(),
        }
    }
}

/// Reads the configuration at `path` and the private key it names.
pub fn load(path: &Path) -> Loaded {
    let config = Config::load(path).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<String>>()
    })?;
    let mut config = config;
    let key =
        keys::load_or_create(&config.main.private_key_file).map_err(|e| vec![e.to_string()])?;
    let public = mesh_core::wg::boring::public_key(&key);
    config
        .derive_identity(&public, path)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    Ok((config, key))
}

/// The thread and the way back from it.
#[derive(Debug)]
pub struct FileWorker {
    jobs: Sender<Job>,
    done: Receiver<Done>,
    wake: UnixStream,
}

impl FileWorker {
    /// Starts the thread for the configuration file at `path`.
    pub fn start(path: PathBuf) -> io::Result<FileWorker> {
        let (jobs, todo) = channel::<Job>();
        let (finished, done) = channel();
        let (wake, mut ring) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        std::thread::Builder::new()
            .name("meshd-files".into())
            .spawn(move || {
                if let Err(e) = crate::sys::yield_to_the_loop() {
                    log::warn!("file thread: {e}: reloads compete with the packet loop");
                }
                for job in todo {
                    let done = match job {
                        Job::Reload { caller } => Done::Reloaded {
                            caller,
                            loaded: load(&path),
                        },
                        Job::Edit { caller, edit } => {
                            let result = (edit.job)(&path);
                            let loaded = result.is_ok().then(|| load(&path));
                            Done::Edited {
                                caller,
                                method: edit.method,
                                event: edit.event,
                                result,
                                loaded,
                            }
                        }
                    };
                    if finished.send(done).is_err() {
                        return;
                    }
                    let _ = ring.write_all(&[1]);
                }
            })?;
        Ok(FileWorker { jobs, done, wake })
    }

    /// Queues `job`; false when the thread is gone (a caller is then
    /// answered with an error).
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }

    /// The fd to watch.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Jobs done since last asked, in the order they were submitted.
    pub fn done(&mut self) -> Vec<Done> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.done.try_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meshd-files-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn wait(w: &mut FileWorker, n: usize) -> Vec<Done> {
        let mut all = Vec::new();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while all.len() < n && std::time::Instant::now() < until {
            all.extend(w.done());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        all
    }

    #[test]
    fn a_reload_reads_the_file_and_the_key_and_an_edit_is_followed_by_its_own_reread() {
        let d = dir("order");
        let key = d.join("key");
        let config = d.join("meshd");
        let text = format!(
            "config meshd 'main'\n\toption overlay '10.0.0.1'\n\toption asn '65001'\n\toption private_key_file '{}'\n",
            key.display()
        );
        std::fs::write(&config, &text).unwrap();
        let mut w = FileWorker::start(config.clone()).unwrap();
        assert!(w.submit(Job::Reload { caller: None }));
        let m = crate::ubus_api::new_member(
            &crate::json::Json::obj()
                .with("name", "bob")
                .with("public_key", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=")
                .with("overlay", "10.0.0.2")
                .with("asn", crate::json::Json::Int(65002)),
        )
        .unwrap();
        let edit = Edit {
            method: "member_add",
            event: "added",
            job: Box::new(move |p| {
                crate::uci_edit::member_add(p, &m)
                    .map_err(|e| (crate::ubus::Status::UnknownError, e.to_string()))?;
                Ok(m.name)
            }),
        };
        assert!(w.submit(Job::Edit {
            caller: Some((7, 1)),
            edit
        }));
        let done = wait(&mut w, 2);
        assert_eq!(done.len(), 2, "{done:?}");
        let first = done[0].loaded().unwrap().as_ref().unwrap();
        assert_eq!(first.0.members.len(), 0);
        // The key file was created by the first reload and read again.
        let second = done[1].loaded().unwrap().as_ref().unwrap();
        assert_eq!(first.1 .0, second.1 .0);
        assert_eq!(second.0.members.len(), 1, "the edit's re-read sees it");
        assert!(
            matches!(&done[1], Done::Edited { caller: Some((7, 1)), result: Ok(n), .. } if n == "bob")
        );

        // A refused edit: nothing written, so nothing re-read.
        let gone = Edit {
            method: "member_del",
            event: "removed",
            job: Box::new(|p| {
                crate::uci_edit::member_del(p, "carol")
                    .map_err(|e| (crate::ubus::Status::NotFound, e.to_string()))?;
                Ok("carol".into())
            }),
        };
        assert!(w.submit(Job::Edit {
            caller: Some((7, 2)),
            edit: gone
        }));
        let done = wait(&mut w, 1);
        assert!(
            matches!(
                &done[0],
                Done::Edited {
                    result: Err(_),
                    loaded: None,
                    ..
                }
            ),
            "{done:?}"
        );

        // A broken file: refused, with the line named.
        std::fs::write(&config, format!("{text}\toption asn 'x'\n")).unwrap();
        assert!(w.submit(Job::Reload {
            caller: Some((7, 3))
        }));
        let done = wait(&mut w, 1);
        let errors = done[0].loaded().unwrap().as_ref().unwrap_err();
        assert!(errors.iter().any(|e| e.contains(":5:")), "{errors:?}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
