//! Progress reporting, owned by the library as a trait with a no-op default
//! (as rustic does): the engines report, the binary picks how it is shown:
//! bars on a terminal, a periodic line on a non-terminal with `-v`, JSON
//! events with `--json-progress`, else nothing.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives progress events from a backup or a restore.
pub trait Progress: Send + Sync {
    /// Another batch of entries was scanned (or listed); `total` so far.
    fn scanned(&self, _total: usize) {}
    /// `files` more files (`bytes` of them) were hashed to see what changed.
    fn hashed(&self, _files: u64, _bytes: u64) {}
    /// More work was found: `files` more to handle, `bytes` more to move.
    fn queued(&self, _files: u64, _bytes: u64) {}
    /// `bytes` more were sent or received.
    fn advance(&self, _bytes: u64) {}
    /// One file is finished: `what` happened to it (`uploaded`, `copied`,
    /// `touched`, `deleted`, `downloaded`, `unchanged`, `failed`, …).
    fn done(&self, _path: &str, _what: &str) {}
    /// Everything is done; clear the display.
    fn finish(&self) {}
}

/// Reports nothing: for scripts, tests and `-q`.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Totals every reporter keeps, lock-free.
#[derive(Default)]
struct Totals {
    scanned: AtomicU64,
    hashed: AtomicU64,
    hashed_bytes: AtomicU64,
    files: AtomicU64,
    files_done: AtomicU64,
    bytes: AtomicU64,
    bytes_done: AtomicU64,
}

impl Totals {
    fn add_hashed(&self, files: u64, bytes: u64) {
        self.hashed.fetch_add(files, Ordering::Relaxed);
        self.hashed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn rate(&self, started: Instant) -> u64 {
        let secs = started.elapsed().as_secs_f64();
        if secs > 0.0 {
            (self.bytes_done.load(Ordering::Relaxed) as f64 / secs) as u64
        } else {
            0
        }
    }
}

/// An indicatif bar on stderr, for interactive use: the entries scanned,
/// the files done out of those found so far, and bytes with speed and ETA
/// (the total grows while the walk still finds work, so the ETA firms up
/// once the walk is over).
pub struct BarProgress {
    bar: ProgressBar,
    totals: Totals,
}

impl BarProgress {
    /// A bar on stderr, ticking on its own so a stalled transfer still shows.
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:25}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message("scanning");
        Self {
            bar,
            totals: Totals::default(),
        }
    }

    fn message(&self) {
        let t = &self.totals;
        self.bar.set_message(format!(
            "scanned {} · hashed {} ({}) · files {}/{}",
            t.scanned.load(Ordering::Relaxed),
            t.hashed.load(Ordering::Relaxed),
            indicatif::HumanBytes(t.hashed_bytes.load(Ordering::Relaxed)),
            t.files_done.load(Ordering::Relaxed),
            t.files.load(Ordering::Relaxed)
        ));
    }
}

impl Default for BarProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for BarProgress {
    fn scanned(&self, total: usize) {
        self.totals.scanned.store(total as u64, Ordering::Relaxed);
        self.message();
    }

    fn hashed(&self, files: u64, bytes: u64) {
        self.totals.add_hashed(files, bytes);
        self.message();
    }

    fn queued(&self, files: u64, bytes: u64) {
        self.totals.files.fetch_add(files, Ordering::Relaxed);
        self.bar.inc_length(bytes);
        self.message();
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn done(&self, _path: &str, _what: &str) {
        self.totals.files_done.fetch_add(1, Ordering::Relaxed);
        self.message();
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// One line on stderr at most every `every`, and one at the end, for logs
/// of runs that have no terminal (`-v` from cron): what was scanned, done
/// and moved, and the speed.
pub struct LineProgress {
    totals: Totals,
    started: Instant,
    every: Duration,
    last: Mutex<Instant>,
}

impl LineProgress {
    /// A reporter printing at most every `every`.
    pub fn new(every: Duration) -> Self {
        let now = Instant::now();
        Self {
            totals: Totals::default(),
            started: now,
            every,
            last: Mutex::new(now),
        }
    }

    fn line(&self) -> String {
        let t = &self.totals;
        format!(
            "progress: scanned {}, hashed {}, files {}/{}, {} of {} ({}/s), {:.0?}",
            t.scanned.load(Ordering::Relaxed),
            t.hashed.load(Ordering::Relaxed),
            t.files_done.load(Ordering::Relaxed),
            t.files.load(Ordering::Relaxed),
            indicatif::HumanBytes(t.bytes_done.load(Ordering::Relaxed)),
            indicatif::HumanBytes(t.bytes.load(Ordering::Relaxed)),
            indicatif::HumanBytes(t.rate(self.started)),
            self.started.elapsed()
        )
    }

    fn maybe_print(&self) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() >= self.every {
            *last = Instant::now();
            eprintln!("{}", self.line());
        }
    }
}

impl Progress for LineProgress {
    fn scanned(&self, total: usize) {
        self.totals.scanned.store(total as u64, Ordering::Relaxed);
        self.maybe_print();
    }

    fn hashed(&self, files: u64, bytes: u64) {
        self.totals.add_hashed(files, bytes);
        self.maybe_print();
    }

    fn queued(&self, files: u64, bytes: u64) {
        self.totals.files.fetch_add(files, Ordering::Relaxed);
        self.totals.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.maybe_print();
    }

    fn advance(&self, bytes: u64) {
        self.totals.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.maybe_print();
    }

    fn done(&self, _path: &str, _what: &str) {
        self.totals.files_done.fetch_add(1, Ordering::Relaxed);
        self.maybe_print();
    }

    /// The totals once more, so even a short run leaves one line in the log.
    fn finish(&self) {
        eprintln!("{}", self.line());
    }
}

/// `--json-progress`: one JSON object per line on stdout while running
/// (documented in `docs/json.md`): a `file` event per file finished, and
/// `progress` events with the totals at most every `every` and once at the
/// end. The run's summary object follows as the last line.
pub struct JsonProgress {
    totals: Totals,
    started: Instant,
    every: Duration,
    last: Mutex<Instant>,
}

impl JsonProgress {
    /// A reporter writing totals at most every `every`.
    pub fn new(every: Duration) -> Self {
        let now = Instant::now();
        Self {
            totals: Totals::default(),
            started: now,
            every,
            last: Mutex::new(now),
        }
    }

    fn emit(&self, value: &serde_json::Value) {
        // A reader that went away is not worth failing the backup for.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}").and_then(|()| out.flush());
    }

    fn totals_event(&self) -> serde_json::Value {
        let t = &self.totals;
        serde_json::json!({
            "event": "progress",
            "scanned": t.scanned.load(Ordering::Relaxed),
            "hashed": t.hashed.load(Ordering::Relaxed),
            "hashed_bytes": t.hashed_bytes.load(Ordering::Relaxed),
            "files": t.files.load(Ordering::Relaxed),
            "files_done": t.files_done.load(Ordering::Relaxed),
            "bytes": t.bytes.load(Ordering::Relaxed),
            "bytes_done": t.bytes_done.load(Ordering::Relaxed),
            "bytes_per_sec": t.rate(self.started),
            "elapsed_ms": self.started.elapsed().as_millis() as u64,
        })
    }

    fn maybe_totals(&self) {
        let due = match self.last.lock() {
            Ok(mut last) if last.elapsed() >= self.every => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if due {
            self.emit(&self.totals_event());
        }
    }
}

impl Progress for JsonProgress {
    fn scanned(&self, total: usize) {
        self.totals.scanned.store(total as u64, Ordering::Relaxed);
        self.maybe_totals();
    }

    fn hashed(&self, files: u64, bytes: u64) {
        self.totals.add_hashed(files, bytes);
        self.maybe_totals();
    }

    fn queued(&self, files: u64, bytes: u64) {
        self.totals.files.fetch_add(files, Ordering::Relaxed);
        self.totals.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.maybe_totals();
    }

    fn advance(&self, bytes: u64) {
        self.totals.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.maybe_totals();
    }

    fn done(&self, path: &str, what: &str) {
        self.totals.files_done.fetch_add(1, Ordering::Relaxed);
        self.emit(&serde_json::json!({"event": "file", "path": path, "action": what}));
        self.maybe_totals();
    }

    fn finish(&self) {
        self.emit(&self.totals_event());
    }
}
