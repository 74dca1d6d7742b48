//! The progress renderers of the binary: what the library's
//! [`Progress`] events look like to a user. Bars on a terminal
//! ([`BarProgress`]), a periodic line on stderr for logs
//! ([`LineProgress`], `-v` without a terminal), JSON events on stdout with
//! `--json-progress` ([`JsonProgress`], documented in `docs/json.md`), and
//! nothing otherwise; [`progress_for`] picks one.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::{NoProgress, Progress, Totals};

/// How a run shows progress: JSON events when asked, bars on a terminal,
/// a periodic line with `-v` elsewhere, else nothing.
pub(crate) fn progress_for(json_progress: bool, json: bool, quiet: bool, verbose: u8) -> Arc<dyn Progress> {
    if json_progress {
        Arc::new(JsonProgress::new(Duration::from_secs(1)))
    } else if quiet || json {
        Arc::new(NoProgress)
    } else if std::io::stderr().is_terminal() {
        Arc::new(BarProgress::new())
    } else if verbose > 0 {
        Arc::new(LineProgress::new(Duration::from_secs(5)))
    } else {
        Arc::new(NoProgress)
    }
}

/// An indicatif bar on stderr, for interactive use: the entries scanned,
/// the files done out of those found so far, and bytes with speed and ETA
/// (the total grows while the walk still finds work, so the ETA firms up
/// once the walk is over).
pub(crate) struct BarProgress {
    bar: ProgressBar,
    totals: Totals,
}

impl BarProgress {
    /// A bar on stderr, ticking on its own so a stalled transfer still shows.
    pub(crate) fn new() -> Self {
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

/// How a [`Periodic`] reporter writes what it has counted.
pub(crate) trait Writer: Send + Sync {
    /// The totals so far (at most every period, and once at the end).
    fn totals(&self, totals: &Totals, started: Instant);
    /// One file finished.
    fn file(&self, _path: &str, _what: &str) {}
}

/// Counts every event and hands the totals to its [`Writer`] at most once
/// per period and once at the end: the reporter for output that is not a
/// terminal.
pub(crate) struct Periodic<W> {
    totals: Totals,
    started: Instant,
    every: Duration,
    last: Mutex<Instant>,
    writer: W,
}

impl<W: Writer> Periodic<W> {
    fn with_writer(every: Duration, writer: W) -> Self {
        let now = Instant::now();
        Self {
            totals: Totals::default(),
            started: now,
            every,
            last: Mutex::new(now),
            writer,
        }
    }

    fn tick(&self) {
        let due = match self.last.lock() {
            Ok(mut last) if last.elapsed() >= self.every => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if due {
            self.writer.totals(&self.totals, self.started);
        }
    }
}

impl<W: Writer> Progress for Periodic<W> {
    fn scanned(&self, total: usize) {
        self.totals.scanned.store(total as u64, Ordering::Relaxed);
        self.tick();
    }

    fn hashed(&self, files: u64, bytes: u64) {
        self.totals.add_hashed(files, bytes);
        self.tick();
    }

    fn queued(&self, files: u64, bytes: u64) {
        self.totals.files.fetch_add(files, Ordering::Relaxed);
        self.totals.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.tick();
    }

    fn advance(&self, bytes: u64) {
        self.totals.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.tick();
    }

    fn done(&self, path: &str, what: &str) {
        self.totals.files_done.fetch_add(1, Ordering::Relaxed);
        self.writer.file(path, what);
        self.tick();
    }

    fn finish(&self) {
        self.writer.totals(&self.totals, self.started);
    }
}

/// Writes the totals as one line on stderr, for logs of runs that have no
/// terminal (`-v` from cron): what was scanned, hashed, done and moved, and
/// the speed.
pub(crate) struct LineWriter;

impl Writer for LineWriter {
    fn totals(&self, t: &Totals, started: Instant) {
        crate::cli::output::errln!(
            "progress: scanned {}, hashed {}, files {}/{}, {} of {} ({}/s), {:.0?}",
            t.scanned.load(Ordering::Relaxed),
            t.hashed.load(Ordering::Relaxed),
            t.files_done.load(Ordering::Relaxed),
            t.files.load(Ordering::Relaxed),
            indicatif::HumanBytes(t.bytes_done.load(Ordering::Relaxed)),
            indicatif::HumanBytes(t.bytes.load(Ordering::Relaxed)),
            indicatif::HumanBytes(t.rate(started)),
            started.elapsed()
        );
    }
}

/// A line on stderr at most every period and one at the end.
pub(crate) type LineProgress = Periodic<LineWriter>;

impl Periodic<LineWriter> {
    /// A reporter printing at most every `every`.
    pub(crate) fn new(every: Duration) -> Self {
        Self::with_writer(every, LineWriter)
    }
}

/// `--json-progress`: one JSON object per line on stdout while running
/// (documented in `docs/json.md`): a `file` event per file finished, and
/// `progress` events with the totals. The run's summary follows as the
/// last line.
pub(crate) struct JsonWriter;

impl JsonWriter {
    fn emit(value: &serde_json::Value) {
        // A reader that went away is not worth failing the run for.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}").and_then(|()| out.flush());
    }
}

impl Writer for JsonWriter {
    fn totals(&self, t: &Totals, started: Instant) {
        Self::emit(&serde_json::json!({
            "event": "progress",
            "scanned": t.scanned.load(Ordering::Relaxed),
            "hashed": t.hashed.load(Ordering::Relaxed),
            "hashed_bytes": t.hashed_bytes.load(Ordering::Relaxed),
            "files": t.files.load(Ordering::Relaxed),
            "files_done": t.files_done.load(Ordering::Relaxed),
            "bytes": t.bytes.load(Ordering::Relaxed),
            "bytes_done": t.bytes_done.load(Ordering::Relaxed),
            "bytes_per_sec": t.rate(started),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }));
    }

    fn file(&self, path: &str, what: &str) {
        Self::emit(&serde_json::json!({"event": "file", "path": path, "action": what}));
    }
}

/// JSON events on stdout, totals at most every period and once at the end.
pub(crate) type JsonProgress = Periodic<JsonWriter>;

impl Periodic<JsonWriter> {
    /// A reporter writing totals at most every `every`.
    pub(crate) fn new(every: Duration) -> Self {
        Self::with_writer(every, JsonWriter)
    }
}
