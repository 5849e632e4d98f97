//! Logs to stderr, which procd hands to the system log on OpenWrt.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

static LOGGER: Stderr = Stderr;
static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

impl Log for Stderr {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        // One write per line so lines from a crash do not interleave.
        // Seconds since start: the system log adds wall-clock time itself.
        let t = START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs_f64();
        let line = format!(
            "meshd: [{t:9.3}] {}: {}\n",
            r.level().as_str().to_lowercase(),
            r.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger (once) and sets the level (any number of times).
pub fn init(level: LevelFilter) {
    START.get_or_init(std::time::Instant::now);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
