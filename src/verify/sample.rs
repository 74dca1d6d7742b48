//! Rolling deep verify (issue 16): `verify --deep --sample 5%` (or
//! `--sample 1/20`) downloads and hashes a slice of the snapshot's files
//! each run, so a cycle of runs reads every object once without a full
//! egress bill; the other files get the listing's checks (presence, size,
//! ETag), as without `--deep`.
//!
//! The slice is `ceil(fraction × files)` files (at least 1). With a state
//! file, the files never checked come first (in manifest order), then
//! those attempted longest ago; the state's `verify_checks` table remembers
//! each attempt (by target, endpoint included, and object key, with the
//! content checked and the result: a key whose content changed since, or
//! whose check found damage, counts as never checked). A file the store
//! would not give (archived, access denied) is remembered as an attempt
//! that covers nothing, so it goes to the back of the queue instead of
//! being taken first every run. So 20 runs of `1/20` check each file of an
//! unchanging snapshot once. A file this run finds missing, mismatched or
//! unreadable (by the listing or the download) is not covered, whatever
//! the record says. Without a state file (none at `--state` or the default
//! place; verify does not create one) the slice is chosen at random and
//! is not remembered; the summary says so.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;

use std::sync::Arc;

use crate::manifest::ReadError;
use crate::snapshots::{self, Snapshot, SnapshotError};
use crate::state::{CheckResult, StateDb, StateError, VerifyCheck};
use crate::store::{ObjectStore, join_key};
use crate::verify::{VerifyError, VerifyOptions, next_file};

/// The share of a snapshot's files one run reads: `N%` (decimals allowed,
/// above 0 up to 100) or `A/B` (0 < A ≤ B), held as a ratio so that 5 % of
/// 40 files is exactly 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fraction {
    num: u128,
    den: u128,
    text: String,
}

impl FromStr for Fraction {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{text}' is not a share of the files: give a percentage such as 5% or a fraction such as 1/20"
            )
        };
        // Refused rather than trimmed, so that the share echoed back is the
        // one typed and a stray space never reads as another share.
        if text.chars().any(char::is_whitespace) {
            return Err(format!(
                "'{text}' has a space in it: give the share without spaces, such as 5% or 1/20"
            ));
        }
        let t = text;
        let (num, den) = if let Some(pct) = t.strip_suffix('%') {
            let (whole, frac) = pct.split_once('.').unwrap_or((pct, ""));
            if whole.is_empty() && frac.is_empty() || frac.len() > 9 {
                return Err(bad());
            }
            let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            if !digits(whole) || !digits(frac) {
                return Err(bad());
            }
            let scale = 10u128.pow(frac.len() as u32);
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| bad())?
            };
            let frac: u128 = if frac.is_empty() {
                0
            } else {
                frac.parse().map_err(|_| bad())?
            };
            (whole * scale + frac, 100 * scale)
        } else if let Some((a, b)) = t.split_once('/') {
            let a: u128 = a.parse().map_err(|_| bad())?;
            let b: u128 = b.parse().map_err(|_| bad())?;
            (a, b)
        } else {
            return Err(bad());
        };
        if num == 0 || den == 0 || num > den {
            return Err(format!(
                "'{text}' must be above 0 and at most all of the files (100%, 1/1)"
            ));
        }
        Ok(Fraction {
            num,
            den,
            text: t.to_string(),
        })
    }
}

impl Fraction {
    /// How many of `files` one run reads: `ceil(fraction × files)`, at
    /// least 1 (0 of none).
    pub fn slice(&self, files: u64) -> u64 {
        if files == 0 {
            return 0;
        }
        let n = (u128::from(files) * self.num).div_ceil(self.den);
        u64::try_from(n).unwrap_or(files).clamp(1, files)
    }
}

/// A file of the snapshot, as sampling sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its path in the snapshot.
    pub path: String,
    /// Its object's key.
    pub key: String,
    /// The content it should hold: blake3, or the ETag without one.
    pub content: String,
}

/// What the summary and `--json` say of a sampled run (`sample`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SampleReport {
    /// The share asked for, as typed.
    pub fraction: String,
    /// Files in the snapshot.
    pub files: u64,
    /// The slice: files chosen to read this run.
    pub slice: u64,
    /// Files of the slice downloaded whole and hashed this run (not those
    /// the store would not give, nor those the listing found missing); the
    /// bytes are the report's `bytes_checked`.
    pub checked: u64,
    /// Files of the slice that could not be read (also in the report's
    /// `unreadable`): attempted, not covered, taken again after the others.
    pub unreadable: u64,
    /// Files of the snapshot whose present content passed a check on
    /// record (this run's included) and that this run did not find
    /// missing, mismatched or unreadable: the cycle's progress, `files`
    /// when a whole cycle is done. This run's alone without a state file.
    pub covered: u64,
    /// Files not covered: no passing check on record of their present
    /// content, or found damaged or unreadable this run.
    pub never_checked: u64,
    /// The oldest of the covered files' checks (RFC 3339, UTC), if any.
    pub oldest_check: Option<String>,
    /// Whether the state file remembers the checks (false: no state file,
    /// the slice was chosen at random).
    pub remembered: bool,
}

/// One run's sampling: the chosen files, and what it found of them.
pub struct Sampler {
    fraction: Fraction,
    /// Every file of the snapshot, manifest order.
    candidates: Vec<Candidate>,
    /// Chosen paths, with their index in `candidates`.
    chosen: HashMap<String, usize>,
    /// The last checks on record, by key (None: no state file).
    history: Option<HashMap<String, VerifyCheck>>,
    /// The target as the state keys it, endpoint included.
    target: String,
    /// This run's checks.
    done: Vec<VerifyCheck>,
    /// Files of the slice downloaded whole and hashed.
    hashed: u64,
    /// Paths this run found missing, mismatched or unreadable.
    bad: HashSet<String>,
}

/// What this run found of one file of the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Held the recorded content.
    Intact,
    /// Missing or other content.
    Damaged,
    /// The store would not give it.
    Unreadable,
}

/// The last passing check of `c`'s present content, if any, ns since the epoch.
fn last_good(history: &HashMap<String, VerifyCheck>, c: &Candidate) -> Option<i64> {
    history
        .get(&c.key)
        .filter(|h| h.result == CheckResult::Intact && h.content == c.content)
        .map(|h| h.checked_ns)
}

/// When `c`'s present content was last attempted, intact or unreadable
/// (None: never, or the last check found damage: read again first).
fn last_attempt(history: &HashMap<String, VerifyCheck>, c: &Candidate) -> Option<i64> {
    history
        .get(&c.key)
        .filter(|h| h.result != CheckResult::Damaged && h.content == c.content)
        .map(|h| h.checked_ns)
}

impl Sampler {
    /// Chooses the slice of `candidates` (see the module doc) from the
    /// checks on record in `history` for `target` (as the state keys it,
    /// endpoint included; None: none, choose at random).
    pub fn choose(
        fraction: Fraction,
        candidates: Vec<Candidate>,
        history: Option<HashMap<String, VerifyCheck>>,
        target: String,
    ) -> Sampler {
        let slice = fraction.slice(candidates.len() as u64) as usize;
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        match &history {
            // Never checked (None) sorts first, then the oldest attempt; ties in manifest order.
            Some(h) => order.sort_by_key(|&i| (last_attempt(h, &candidates[i]), i)),
            None => fastrand::shuffle(&mut order),
        }
        let chosen = order
            .into_iter()
            .take(slice)
            .map(|i| (candidates[i].path.clone(), i))
            .collect();
        Sampler {
            fraction,
            candidates,
            chosen,
            history,
            target,
            done: Vec::new(),
            hashed: 0,
            bad: HashSet::new(),
        }
    }

    /// The chosen paths.
    pub fn chosen(&self) -> HashSet<String> {
        self.chosen.keys().cloned().collect()
    }

    /// Whether `path` is in the slice.
    pub fn is_chosen(&self, path: &str) -> bool {
        self.chosen.contains_key(path)
    }

    /// Notes this run's verdict on any file: one found missing, mismatched
    /// or unreadable (`intact` false) is not covered, whatever the record
    /// says.
    pub fn note(&mut self, path: &str, intact: bool) {
        if !intact {
            self.bad.insert(path.to_string());
        }
    }

    /// Notes the check of the chosen `path` at `now_ns`: what it found, and
    /// whether its bytes were downloaded whole and hashed.
    pub fn record(&mut self, path: &str, outcome: Outcome, hashed: bool, now_ns: i64) {
        self.note(path, outcome == Outcome::Intact);
        if let Some(&i) = self.chosen.get(path) {
            let c = &self.candidates[i];
            self.hashed += u64::from(hashed);
            self.done.push(VerifyCheck {
                key: c.key.clone(),
                content: c.content.clone(),
                checked_ns: now_ns,
                result: match outcome {
                    Outcome::Intact => CheckResult::Intact,
                    Outcome::Damaged => CheckResult::Damaged,
                    Outcome::Unreadable => CheckResult::Unreadable,
                },
            });
        }
    }

    /// Writes this run's checks to the state file at `state` (when there
    /// was one to read) under the sampler's target, and says what the
    /// cycle covers.
    ///
    /// # Errors
    /// [`StateError`] when the state file cannot be written.
    pub fn finish(mut self, state: Option<&Path>) -> Result<SampleReport, StateError> {
        let remembered = self.history.is_some();
        if let (Some(path), true) = (state, remembered && !self.done.is_empty()) {
            StateDb::open(path)?.record_verify_checks(&self.target, &self.done)?;
        }
        let unreadable = self
            .done
            .iter()
            .filter(|c| c.result == CheckResult::Unreadable)
            .count() as u64;
        let mut history = self.history.take().unwrap_or_default();
        for c in self.done.drain(..) {
            history.insert(c.key.clone(), c);
        }
        let good: Vec<i64> = self
            .candidates
            .iter()
            .filter(|c| !self.bad.contains(&c.path))
            .filter_map(|c| last_good(&history, c))
            .collect();
        let files = self.candidates.len() as u64;
        Ok(SampleReport {
            fraction: self.fraction.text.clone(),
            files,
            slice: self.fraction.slice(files),
            checked: self.hashed,
            unreadable,
            covered: good.len() as u64,
            never_checked: files - good.len() as u64,
            oldest_check: good.iter().min().map(|&ns| {
                chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }),
            remembered,
        })
    }
}

/// The checks on record for `target` in the state file at `state`, or
/// None when there is no state file there (verify does not make one).
///
/// # Errors
/// [`StateError`] when the state file exists but cannot be read.
pub fn history(
    state: Option<&Path>,
    target: &str,
) -> Result<Option<HashMap<String, VerifyCheck>>, StateError> {
    match state {
        Some(path) if path.is_file() => Ok(Some(StateDb::open(path)?.verify_checks(target)?)),
        _ => Ok(None),
    }
}

/// Opens the snapshot's manifest a second time to list its files, and
/// chooses the slice `--sample` reads ([`sample`]) from the checks the
/// state file remembers for this target.
///
/// # Errors
/// The snapshot cannot be opened again; the state file cannot be read.
pub(super) async fn choose_for(
    opts: &VerifyOptions,
    store: &Arc<dyn ObjectStore>,
    all: &[Snapshot],
    id: &str,
    fraction: Fraction,
) -> Result<Sampler, VerifyError> {
    let opened = snapshots::open(&**store, all, id, &opts.target.to_string()).await?;
    let prefix = opts.target.prefix();
    let mut reader = opened.reader;
    let mut candidates = Vec::new();
    loop {
        match next_file(&mut reader) {
            Ok(Some(entry)) => candidates.push(Candidate {
                key: join_key(prefix, &entry.path),
                content: if entry.blake3.is_empty() {
                    entry.etag
                } else {
                    entry.blake3
                },
                path: entry.path,
            }),
            Ok(None) => break,
            // The walk reports the damaged line; its file cannot be chosen.
            Err(ReadError::Line { .. }) => {}
            Err(cause @ ReadError::Stopped { .. }) => {
                return Err(VerifyError::Snapshot(SnapshotError::Stopped {
                    id: id.to_string(),
                    cause,
                }));
            }
        }
    }
    let target = crate::store::set_target(&opts.target, &**store);
    let history = history(opts.state.as_deref(), &target)?;
    Ok(Sampler::choose(fraction, candidates, history, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(text: &str) -> Fraction {
        text.parse().unwrap()
    }

    #[test]
    fn fractions_are_exact_ratios() {
        assert_eq!(f("5%").slice(40), 2);
        assert_eq!(f("1/20").slice(40), 2);
        assert_eq!(f("5%").slice(41), 3);
        assert_eq!(f("5%").slice(1), 1);
        assert_eq!(f("0.5%").slice(1000), 5);
        assert_eq!(f("100%").slice(7), 7);
        assert_eq!(f("1/3").slice(0), 0);
        for bad in [
            "0%", "0/5", "101%", "3/2", "5", "x%", "1/0", "%", "-5%", "1.2.3%", "1 /20", " 5%", "5 %",
            "1/20 ",
        ] {
            assert!(bad.parse::<Fraction>().is_err(), "{bad}");
        }
    }

    fn candidates(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                path: format!("f{i:02}"),
                key: format!("p/f{i:02}"),
                content: format!("h{i}"),
            })
            .collect()
    }

    #[test]
    fn never_checked_first_then_the_oldest_and_changed_content_counts_as_never() {
        let mut history = HashMap::new();
        for (i, at) in [(0, 50), (1, 10), (2, 30), (3, 20)] {
            let c = &candidates(4)[i];
            history.insert(
                c.key.clone(),
                VerifyCheck {
                    key: c.key.clone(),
                    content: c.content.clone(),
                    checked_ns: at,
                    result: CheckResult::Intact,
                },
            );
        }
        let mut files = candidates(5);
        files[2].content = "changed".into();
        let s = Sampler::choose(f("3/5"), files, Some(history), "s3://b/p".into());
        let mut chosen: Vec<String> = s.chosen().into_iter().collect();
        chosen.sort();
        // f04 never checked, f02 changed since, then f01 (checked at 10).
        assert_eq!(chosen, ["f01", "f02", "f04"]);
    }

    #[test]
    fn an_unreadable_attempt_goes_after_the_never_checked() {
        let files = candidates(4);
        let check = |i: usize, at, result| {
            let c = &files[i];
            let check = VerifyCheck {
                key: c.key.clone(),
                content: c.content.clone(),
                checked_ns: at,
                result,
            };
            (c.key.clone(), check)
        };
        // f00 unreadable at 5, f01 damaged at 1, f02 intact at 10, f03 never.
        let history: HashMap<_, _> = [
            check(0, 5, CheckResult::Unreadable),
            check(1, 1, CheckResult::Damaged),
            check(2, 10, CheckResult::Intact),
        ]
        .into_iter()
        .collect();
        let pick = |share| {
            let s = Sampler::choose(f(share), files.clone(), Some(history.clone()), "t".into());
            let mut chosen: Vec<String> = s.chosen().into_iter().collect();
            chosen.sort();
            (chosen, s)
        };
        // The damaged and the never checked first, then the oldest attempt.
        assert_eq!(pick("2/4").0, ["f01", "f03"]);
        let (chosen, s) = pick("3/4");
        assert_eq!(chosen, ["f00", "f01", "f03"]);
        let report = s.finish(None).unwrap();
        // Only the intact check covers a file.
        assert_eq!((report.covered, report.never_checked), (1, 3));
    }
}
