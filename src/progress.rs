//! Progress reporting, owned by the library as a trait with a no-op default
//! (as rustic does): the engine reports, the binary picks bars on a
//! terminal and silence otherwise.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives progress events from a backup.
pub trait Progress: Send + Sync {
    /// Another batch of entries was scanned; `total` so far.
    fn scanned(&self, _total: usize) {}
    /// Transfers start: `actions` operations moving `bytes` bytes (0 when not known yet).
    fn transferring(&self, _actions: u64, _bytes: u64) {}
    /// `bytes` more were sent.
    fn advance(&self, _bytes: u64) {}
    /// Everything is done; clear the display.
    fn finish(&self) {}
}

/// Reports nothing: for scripts, tests and non-terminals.
pub struct NoProgress;

impl Progress for NoProgress {}

/// An indicatif bar on stderr, for interactive use.
pub struct BarProgress {
    bar: ProgressBar,
}

impl BarProgress {
    /// A spinner that turns into byte bars as phases start.
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message("scanning");
        Self { bar }
    }

    fn bytes_phase(&self, what: &str, count: u64, bytes: u64) {
        self.bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.bar.set_message(format!("{what} {count} files"));
        self.bar.set_length(bytes);
        self.bar.set_position(0);
        self.bar.reset_eta();
    }
}

impl Default for BarProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for BarProgress {
    fn scanned(&self, total: usize) {
        self.bar.set_message(format!("scanning: {total} entries"));
    }

    fn transferring(&self, actions: u64, bytes: u64) {
        if bytes > 0 {
            self.bytes_phase("sending", actions, bytes);
            return;
        }
        // Totals unknown while the walk is still finding work: count bytes as they go.
        self.bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        self.bar.set_message("backing up");
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
