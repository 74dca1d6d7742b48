//! How many requests a run keeps in flight: a limit that finds its own
//! level between 1 and the ceiling (`--jobs`), so the same default fills a
//! store 50 ms away and does not swamp one on this machine or one that
//! throttles.
//!
//! Callers take a permit per request ([`Flow::acquire`]) as they took one
//! from a fixed semaphore before; the permit is given back when the request
//! is done, and that is when [`Control`] (pure: it is handed timestamps)
//! decides:
//! - **windows**: completions are counted per window, which ends once it
//!   holds at least one level's worth of them and lasted [`MIN_WINDOW`]; its
//!   rate is completions per second;
//! - **slow start**: from [`START`] (or the ceiling if lower), the level
//!   doubles after each window whose rate beat the one before by
//!   [`SLOW_START_GAIN`]; the first window that did not puts the level back
//!   to where the rate was as good and ends slow start;
//! - **probing** (after slow start): every [`HOLD_WINDOWS`] windows the
//!   level tries a quarter more; the step stays (and the next window tries
//!   again) only if the rate grew by at least half the step's share,
//!   otherwise it is taken back. So the level grows while throughput grows
//!   and stops where it stops;
//! - **backing off**: a throttling answer (503 SlowDown, 503, 429) or a
//!   timeout seen on *any* attempt, the SDK's own retries included (the S3
//!   store's interceptor reports them into [`Signals`]), halves the level at
//!   once, at most once per window;
//! - a window in which the requests in flight never reached the level (the
//!   run could not feed more: hashing, the end of a run) says nothing about
//!   the level: it is not judged.
//!
//! The level never goes below 1 nor above the ceiling. A lower level takes
//! effect as permits come back (the surplus is not returned), a higher one
//! at once.
//!
//! Memory does not grow with the level: a request holds no body in memory
//! beyond a chunk. Uploads stream from the file (the SDK reads a few KiB at
//! a time; a body of at most one chunk, 64 KiB, and a symlink's target are
//! read whole), downloads are written chunk by chunk as frames arrive
//! (`restore::fetch`), multipart parts stream their range of the file. So a run's request buffers are at
//! most about ceiling × (one HTTP connection's buffers + one chunk, under
//! 200 KiB): under 50 MiB at the largest ceiling, 256.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::StoreError;

/// The level a run starts at (or its ceiling, if lower): what a fixed
/// `--jobs` default was, good on this machine.
pub const START: usize = 16;
/// The default ceiling (`--jobs`): enough to fill a link 50 ms away with
/// small files, as s5cmd's 256 workers do.
pub const DEFAULT_CEILING: usize = 256;
/// The shortest window a rate is measured over: long enough that a rate
/// counts hundreds of completions on this machine.
pub const MIN_WINDOW: Duration = Duration::from_millis(50);
/// How much faster a window must be than the one before for slow start to
/// double the level again.
pub const SLOW_START_GAIN: f64 = 1.3;
/// Windows the level holds between probes after slow start.
pub const HOLD_WINDOWS: u32 = 4;

/// What a store's requests told about throttling, and the figures of the
/// run's limits: one per opened store, shared by every [`Flow`] on it.
#[derive(Debug, Default)]
pub struct Signals {
    throttled: AtomicU64,
    in_flight_max: AtomicUsize,
    level: AtomicUsize,
    level_max: AtomicUsize,
}

impl Signals {
    /// Notes one throttling answer or timeout (any attempt).
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    fn throttles(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// The figures so far.
    #[must_use]
    pub fn figures(&self) -> Concurrency {
        Concurrency {
            max_in_flight: self.in_flight_max.load(Ordering::Relaxed),
            max_level: self.level_max.load(Ordering::Relaxed),
            final_level: self.level.load(Ordering::Relaxed),
            throttled: self.throttles(),
        }
    }
}

/// The `concurrency` object of `--json` (docs/json.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Concurrency {
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// Highest level the limit reached.
    pub max_level: usize,
    /// The level at the end of the run.
    pub final_level: usize,
    /// Throttling answers (503, 429) and timeouts seen, every attempt counted.
    pub throttled: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Doubling while the rate keeps up; the level and rate before the
    /// last doubling.
    SlowStart { before: Option<(usize, f64)> },
    /// Holding for some windows, then probing.
    Hold { windows: u32, rate: Option<f64> },
    /// A step of `step` was tried from a level whose rate was `rate`.
    Probe { step: usize, rate: f64 },
}

/// The pure decisions: timestamps in, levels out.
#[derive(Debug, Clone)]
pub struct Control {
    level: usize,
    ceiling: usize,
    phase: Phase,
    start: Duration,
    done: u64,
    peak: usize,
    /// Whether the level was halved in this window already.
    cut: bool,
}

impl Control {
    /// A limit under `ceiling` (at least 1) starting at [`START`] or the
    /// ceiling, at time `now`.
    #[must_use]
    pub fn new(ceiling: usize, now: Duration) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            level: START.min(ceiling),
            ceiling,
            phase: Phase::SlowStart { before: None },
            start: now,
            done: 0,
            peak: 0,
            cut: false,
        }
    }

    /// The current level.
    #[must_use]
    pub fn level(&self) -> usize {
        self.level
    }

    /// A request started with `in_flight` requests now in flight.
    pub fn started(&mut self, in_flight: usize) {
        self.peak = self.peak.max(in_flight);
    }

    /// A throttling answer or timeout arrived at `now`: halves the level,
    /// once per window. Returns the new level if it changed.
    pub fn throttled(&mut self, now: Duration) -> Option<usize> {
        if self.cut {
            return None;
        }
        let old = self.level;
        self.level = (old / 2).max(1);
        self.phase = Phase::Hold {
            windows: 0,
            rate: None,
        };
        self.new_window(now);
        self.cut = true;
        (self.level != old).then_some(self.level)
    }

    /// A request finished at `now`. Returns the new level if it changed.
    pub fn completed(&mut self, now: Duration) -> Option<usize> {
        self.done += 1;
        let elapsed = now.saturating_sub(self.start);
        if self.done < self.level as u64 || elapsed < MIN_WINDOW {
            return None;
        }
        let rate = self.done as f64 / elapsed.as_secs_f64();
        let saturated = self.peak >= self.level;
        self.new_window(now);
        if !saturated {
            return None;
        }
        let old = self.level;
        self.judge(rate);
        (self.level != old).then_some(self.level)
    }

    fn new_window(&mut self, now: Duration) {
        self.start = now;
        self.done = 0;
        self.peak = 0;
        self.cut = false;
    }

    /// Decides the next level after a window of `rate` at this level.
    fn judge(&mut self, rate: f64) {
        match self.phase {
            Phase::SlowStart { before } => match before {
                Some((level, was)) if rate < was * SLOW_START_GAIN => {
                    // Doubling did not pay: back to where it was as good.
                    self.level = level;
                    self.phase = Phase::Hold {
                        windows: 0,
                        rate: None,
                    };
                }
                _ if self.level >= self.ceiling => {
                    self.phase = Phase::Hold {
                        windows: 0,
                        rate: Some(rate),
                    };
                }
                _ => {
                    self.phase = Phase::SlowStart {
                        before: Some((self.level, rate)),
                    };
                    self.level = (self.level * 2).min(self.ceiling);
                }
            },
            Phase::Hold { windows, rate: was } => {
                let rate = was.map_or(rate, |w| w.max(rate));
                if windows + 1 < HOLD_WINDOWS || self.level >= self.ceiling {
                    self.phase = Phase::Hold {
                        windows: windows + 1,
                        rate: Some(rate),
                    };
                } else {
                    self.probe(rate);
                }
            }
            Phase::Probe { step, rate: was } => {
                let share = step as f64 / (self.level - step) as f64;
                if rate >= was * (1.0 + share / 2.0) {
                    self.probe(rate);
                } else {
                    self.level -= step;
                    self.phase = Phase::Hold {
                        windows: 0,
                        rate: Some(was),
                    };
                }
            }
        }
    }

    /// Tries a quarter more than now (at least one), from a window of `rate`.
    fn probe(&mut self, rate: f64) {
        let step = (self.level / 4).max(1).min(self.ceiling - self.level);
        if step == 0 {
            self.phase = Phase::Hold {
                windows: 0,
                rate: Some(rate),
            };
            return;
        }
        self.level += step;
        self.phase = Phase::Probe { step, rate };
    }
}

/// The limit callers take permits from: a semaphore whose size follows
/// [`Control`]. One per engine (backup, restore, verify, prune…), reporting
/// into its store's [`Signals`].
pub struct Flow {
    permits: Semaphore,
    control: Mutex<Control>,
    /// Permits to drop rather than give back (the level went down).
    debt: AtomicUsize,
    in_flight: AtomicUsize,
    /// Throttles already acted on.
    seen: AtomicU64,
    signals: Arc<Signals>,
    epoch: Instant,
    /// What the requests are for, in log lines.
    what: &'static str,
}

/// One request's right to be in flight; dropping it ends the request.
pub struct FlowPermit<'f> {
    flow: &'f Flow,
    permit: Option<SemaphorePermit<'f>>,
}

impl Flow {
    /// A limit of at most `ceiling` requests (`--jobs`) for `what`
    /// ("uploads", "downloads"…), reporting into `signals`.
    #[must_use]
    pub fn new(ceiling: usize, signals: Arc<Signals>, what: &'static str) -> Self {
        let epoch = Instant::now();
        let control = Control::new(ceiling, Duration::ZERO);
        let level = control.level();
        signals.level.store(level, Ordering::Relaxed);
        signals.level_max.fetch_max(level, Ordering::Relaxed);
        tracing::debug!(what, level, ceiling, "request limit");
        Self {
            permits: Semaphore::new(level),
            control: Mutex::new(control),
            debt: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            seen: AtomicU64::new(signals.throttles()),
            signals,
            epoch,
            what,
        }
    }

    /// Waits for room for one more request.
    ///
    /// # Errors
    /// [`StoreError::Fatal`] if the limit was closed (it never is while
    /// the run holds it).
    pub async fn acquire(&self) -> Result<FlowPermit<'_>, StoreError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Fatal(format!("the queue of {} closed", self.what)))?;
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.signals.in_flight_max.fetch_max(n, Ordering::Relaxed);
        self.lock().started(n);
        Ok(FlowPermit {
            flow: self,
            permit: Some(permit),
        })
    }

    /// The current level.
    #[must_use]
    pub fn level(&self) -> usize {
        self.lock().level()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        // A panic elsewhere cannot leave the counters unusable.
        self.control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One request ended: tells the control, then resizes the semaphore.
    fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let now = self.epoch.elapsed();
        let throttles = self.signals.throttles();
        let mut control = self.lock();
        let old = control.level();
        let mut changed = None;
        let throttled = throttles > self.seen.swap(throttles, Ordering::Relaxed);
        if throttled {
            changed = control.throttled(now);
        }
        changed = control.completed(now).or(changed);
        if let Some(new) = changed {
            let highest = self.signals.level_max.load(Ordering::Relaxed);
            self.resize(old, new);
            // `-v` tells of a new high and of backing off; `-vv` of every probe.
            if throttled || new > highest {
                tracing::info!(
                    what = self.what,
                    from = old,
                    to = new,
                    throttles,
                    "requests in flight"
                );
            } else {
                tracing::debug!(
                    what = self.what,
                    from = old,
                    to = new,
                    throttles,
                    "requests in flight"
                );
            }
        }
    }

    /// Goes from `old` permits to `new` (under the control's lock).
    fn resize(&self, old: usize, new: usize) {
        self.signals.level.store(new, Ordering::Relaxed);
        self.signals.level_max.fetch_max(new, Ordering::Relaxed);
        if new > old {
            let mut more = new - old;
            while more > 0 && self.pay_debt() {
                more -= 1;
            }
            self.permits.add_permits(more);
        } else {
            let mut less = old - new;
            while less > 0 {
                match self.permits.try_acquire() {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
                less -= 1;
            }
            self.debt.fetch_add(less, Ordering::Relaxed);
        }
    }

    /// Takes one permit off the debt, if there is any.
    fn pay_debt(&self) -> bool {
        self.debt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1))
            .is_ok()
    }
}

impl Drop for FlowPermit<'_> {
    fn drop(&mut self) {
        self.flow.finished();
        if let Some(p) = self.permit.take()
            && self.flow.pay_debt()
        {
            p.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `n` completions spread evenly over `span` from `at`, with the
    /// level's worth in flight; returns the time after them.
    fn run(c: &mut Control, at: Duration, n: u32, span: Duration) -> Duration {
        for i in 1..=n {
            c.started(c.level());
            c.completed(at + span * i / n);
        }
        at + span
    }

    #[test]
    fn slow_start_doubles_while_the_rate_follows_the_level() {
        let mut c = Control::new(256, Duration::ZERO);
        assert_eq!(c.level(), 16);
        let mut t = Duration::ZERO;
        // A store 20 ms away: each level completes level/20 ms per ms.
        for want in [32, 64, 128, 256, 256] {
            let n = (c.level() as u32 * 5).max(1);
            t = run(&mut c, t, n, 50 * MS);
            assert_eq!(c.level(), want);
        }
    }

    #[test]
    fn slow_start_ends_where_the_rate_stops_growing() {
        let mut c = Control::new(256, Duration::ZERO);
        let mut t = run(&mut c, Duration::ZERO, 1000, 50 * MS);
        assert_eq!(c.level(), 32);
        // Same rate at 32: back to 16, and it holds there.
        t = run(&mut c, t, 1000, 50 * MS);
        assert_eq!(c.level(), 16);
        for _ in 1..HOLD_WINDOWS {
            t = run(&mut c, t, 1000, 50 * MS);
            assert_eq!(c.level(), 16);
        }
        // Then it probes a quarter more, and takes it back when the rate stays.
        t = run(&mut c, t, 1000, 50 * MS);
        assert_eq!(c.level(), 20);
        run(&mut c, t, 1000, 50 * MS);
        assert_eq!(c.level(), 16);
    }

    #[test]
    fn a_probe_that_pays_is_kept_and_followed_by_another() {
        let mut c = Control::new(256, Duration::ZERO);
        let mut t = run(&mut c, Duration::ZERO, 1000, 50 * MS);
        t = run(&mut c, t, 1000, 50 * MS);
        for _ in 0..HOLD_WINDOWS {
            t = run(&mut c, t, 1000, 50 * MS);
        }
        assert_eq!(c.level(), 20);
        t = run(&mut c, t, 1250, 50 * MS);
        assert_eq!(c.level(), 25);
        run(&mut c, t, 1250, 50 * MS);
        assert_eq!(c.level(), 20);
    }

    #[test]
    fn throttling_halves_once_per_window_and_never_below_one() {
        let mut c = Control::new(256, Duration::ZERO);
        assert_eq!(c.throttled(MS), Some(8));
        assert_eq!(c.throttled(2 * MS), None, "once per window");
        let t = run(&mut c, 2 * MS, 100, 50 * MS);
        assert_eq!(c.throttled(t), Some(4));
        let mut t = t;
        for _ in 0..5 {
            t = run(&mut c, t, 100, 50 * MS);
            c.throttled(t);
        }
        assert_eq!(c.level(), 1);
        assert_eq!(c.throttled(t + MS), None);
    }

    #[test]
    fn the_ceiling_bounds_the_start_and_every_step() {
        let mut c = Control::new(8, Duration::ZERO);
        assert_eq!(c.level(), 8);
        let mut t = Duration::ZERO;
        for _ in 0..20 {
            let n = c.level() as u32 * 10;
            t = run(&mut c, t, n, 50 * MS);
            assert!(c.level() <= 8);
        }
        assert_eq!(Control::new(0, Duration::ZERO).level(), 1);
    }

    #[test]
    fn windows_are_a_level_of_completions_and_min_window_long() {
        let mut c = Control::new(256, Duration::ZERO);
        // 15 completions in a second: not a window yet.
        run(&mut c, Duration::ZERO, 15, 1000 * MS);
        assert_eq!(c.level(), 16);
        // 1000 completions within 10 ms: not a window yet either.
        let mut c = Control::new(256, Duration::ZERO);
        for i in 0..1000 {
            c.started(16);
            assert_eq!(c.completed(MS * i / 100), None);
        }
    }

    #[test]
    fn an_unfed_window_is_not_judged() {
        let mut c = Control::new(256, Duration::ZERO);
        for i in 1..=1000u32 {
            c.started(3);
            c.completed(100 * MS * i / 1000);
        }
        assert_eq!(c.level(), 16);
    }

    #[tokio::test]
    async fn permits_follow_the_level() {
        let signals = Arc::new(Signals::default());
        let flow = Flow::new(64, signals.clone(), "tests");
        let held: Vec<_> = futures::future::join_all((0..16).map(|_| flow.acquire())).await;
        assert!(flow.permits.try_acquire().is_err(), "16 at the start");
        signals.throttled();
        drop(held);
        // Halved on the first return, then the others paid the debt.
        assert_eq!(flow.level(), 8);
        assert_eq!(flow.permits.available_permits(), 8);
        let f = signals.figures();
        assert_eq!(
            (f.max_in_flight, f.final_level, f.max_level, f.throttled),
            (16, 8, 16, 1)
        );
    }
}
