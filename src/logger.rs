//! Logs to stderr, which procd hands to the system log on OpenWrt.
//!
//! Lines are written by a thread of their own: a slow reader of stderr
//! (logd behind procd's pipe, a file on a busy disk) never holds up the
//! packet loop, where a write that waits would stall every tunnel. The
//! queue holds [`QUEUE_LINES`]; when it is full a line is dropped and
//! counted, and the count is written before the next line that gets
//! through. [`flush`](Log::flush) waits (up to a second) until the queue is
//! written: before meshd exits or re-executes itself.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use log::{LevelFilter, Log, Metadata, Record};

/// Lines the queue holds before it drops.
pub const QUEUE_LINES: usize = 1024;

struct Stderr;

static LOGGER: Stderr = Stderr;
static START: OnceLock<Instant> = OnceLock::new();
static QUEUE: OnceLock<SyncSender<String>> = OnceLock::new();
/// Lines queued and not yet written.
static PENDING: AtomicUsize = AtomicUsize::new(0);
/// Lines dropped since the writer last said so.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// One write per line, so that lines from several threads do not
/// interleave.
fn write_line(line: &str) {
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

impl Log for Stderr {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        // Seconds since start: the system log adds wall-clock time itself.
        let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
        let line = format!(
            "meshd: [{t:9.3}] {}: {}\n",
            r.level().as_str().to_lowercase(),
            r.args()
        );
        let Some(queue) = QUEUE.get() else {
            return write_line(&line);
        };
        PENDING.fetch_add(1, Ordering::SeqCst);
        match queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                PENDING.fetch_sub(1, Ordering::SeqCst);
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            // The writer is gone: write here.
            Err(TrySendError::Disconnected(line)) => {
                PENDING.fetch_sub(1, Ordering::SeqCst);
                write_line(&line);
            }
        }
    }

    fn flush(&self) {
        let until = Instant::now() + Duration::from_secs(1);
        while PENDING.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Starts the writer thread (once); without it lines are written inline.
fn start_writer() {
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel::<String>(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("meshd-log".into())
            .spawn(move || {
                // Lines wait in the queue while the loop works; a failure
                // to lower the priority only costs the loop a little.
                let _ = crate::sys::yield_to_the_loop();
                for line in rx {
                    let dropped = DROPPED.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        write_line(&format!(
                            "meshd: {dropped} log lines dropped: stderr was not read fast enough\n"
                        ));
                    }
                    write_line(&line);
                    PENDING.fetch_sub(1, Ordering::SeqCst);
                }
            });
        if spawned.is_err() {
            write_line("meshd: cannot start the log thread: logging inline\n");
        }
        tx
    });
}

/// Installs the logger (once) and sets the level (any number of times).
pub fn init(level: LevelFilter) {
    START.get_or_init(Instant::now);
    start_writer();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Waits until every queued line is written (at most a second).
pub fn flush() {
    LOGGER.flush();
}
