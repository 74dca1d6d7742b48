//! Which snapshots a retention policy keeps: restic's `forget` rules
//! (`--keep-last`, `--keep-hourly` … `--keep-yearly`, `--keep-within`,
//! `--keep-tag`), with restic's semantics, as a pure function of the
//! snapshots' times and tags, so it is tested on hand-made times.
//!
//! Snapshots are walked newest first. Each count rule has a bucket
//! function (hour, day, ISO week, month, year of the snapshot's time in
//! the given time zone — the local one, `TZ` respected, for the command
//! line — or the snapshot itself for `last`): a snapshot whose bucket
//! differs from the last kept one's takes one of the rule's slots, while
//! slots are left; one snapshot may take a slot of several rules. While a
//! rule still has slots when the walk reaches the oldest snapshot, that
//! one is kept too (restic ≥ 0.17: the longest history the counts allow).
//! `--keep-within D` keeps every snapshot strictly after (newest − D),
//! the newest being the newest snapshot not in the future — relative to
//! the newest snapshot, not to now, as restic does, so a machine that
//! stopped backing up does not see its history expire. `--keep-tag a,b`
//! keeps snapshots that carry both `a` and `b`; several `--keep-tag`s keep
//! what any of them keeps. A count of [`UNLIMITED`] never runs out.
//!
//! Where s3backup differs from restic: a rule given with a count of 0
//! (`--keep-last 0`) is still a rule that keeps nothing (restic treats an
//! all-zero policy as "keep everything"), and the caller always keeps the
//! newest readable snapshot whatever the policy says.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// A count that never runs out (`--keep-daily unlimited`).
pub const UNLIMITED: usize = usize::MAX;

/// The keep rules, as typed or saved with a named set. `None`: the rule
/// was not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// `--keep-last N`: the newest N snapshots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<usize>,
    /// `--keep-hourly N`: the newest snapshot of each of the last N hours that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly: Option<usize>,
    /// `--keep-daily N`: the same per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily: Option<usize>,
    /// `--keep-weekly N`: the same per ISO week.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly: Option<usize>,
    /// `--keep-monthly N`: the same per month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly: Option<usize>,
    /// `--keep-yearly N`: the same per year.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yearly: Option<usize>,
    /// `--keep-within`, in seconds: every snapshot younger than this, counted back from the newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_secs: Option<u64>,
    /// `--keep-tag`: each entry a list of tags a snapshot must all carry to be kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    /// Whether no rule was given (then nothing is forgotten by policy).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// The rules in words, for summaries ("keep the last 2, 7 daily, 4 weekly").
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (count, what) in self.counts() {
            match (count, what) {
                (Some(UNLIMITED), _) => parts.push(format!("all {what}")),
                (Some(n), "last") => parts.push(format!("the last {n}")),
                (Some(n), _) => parts.push(format!("{n} {what}")),
                (None, _) => {}
            }
        }
        if let Some(secs) = self.within_secs {
            let d = humantime::format_duration(std::time::Duration::from_secs(secs));
            parts.push(format!("all within {d} of the newest"));
        }
        for tags in &self.tags {
            parts.push(format!("all tagged {}", tags.join(",")));
        }
        format!("keep {}", parts.join(", "))
    }

    fn counts(&self) -> [(Option<usize>, &'static str); 6] {
        [
            (self.last, "last"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ]
    }
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Its tags.
    pub tags: &'a [String],
}

/// The bucket a rule puts a time in; `nr` (the walk's index) makes every
/// snapshot its own bucket for `last`.
fn bucket<Tz: TimeZone>(rule: usize, time: DateTime<Utc>, tz: &Tz, nr: usize) -> i64 {
    let t = time.with_timezone(tz);
    let (y, m, d, h) = (
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
        i64::from(t.hour()),
    );
    match rule {
        0 => i64::try_from(nr).unwrap_or(i64::MAX),
        1 => ((y * 100 + m) * 100 + d) * 100 + h,
        2 => (y * 100 + m) * 100 + d,
        3 => {
            let w = t.iso_week();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }
        4 => y * 100 + m,
        _ => y,
    }
}

/// Why each snapshot is kept, for `candidates` given oldest first: the
/// result has one entry per candidate, in the same order, listing the
/// rules that keep it ("last", "daily", "within", "tag", …); an empty
/// list means the policy forgets it. `now` bounds the newest time
/// `--keep-within` counts from (a snapshot from the future does not count).
pub fn apply<Tz: TimeZone>(
    candidates: &[Candidate<'_>],
    policy: &Policy,
    tz: &Tz,
    now: DateTime<Utc>,
) -> Vec<Vec<&'static str>> {
    const NAMES: [&str; 6] = ["last", "hourly", "daily", "weekly", "monthly", "yearly"];
    let mut reasons = vec![Vec::new(); candidates.len()];
    let mut slots: Vec<Option<usize>> = policy.counts().iter().map(|(c, _)| *c).collect();
    let mut last_bucket: [Option<i64>; 6] = [None; 6];
    let newest = candidates.iter().map(|c| c.time).filter(|t| *t <= now).max();
    let within_from = policy.within_secs.and_then(|secs| {
        let back = chrono::Duration::try_seconds(i64::try_from(secs).ok()?)?;
        newest.map(|n| n.checked_sub_signed(back).unwrap_or(DateTime::<Utc>::MIN_UTC))
    });
    let n = candidates.len();
    for (nr, i) in (0..n).rev().enumerate() {
        let cur = candidates[i];
        let why = &mut reasons[i];
        if policy
            .tags
            .iter()
            .any(|need| !need.is_empty() && need.iter().all(|t| cur.tags.contains(t)))
        {
            why.push("tag");
        }
        if within_from.is_some_and(|from| cur.time > from) {
            why.push("within");
        }
        for rule in 0..NAMES.len() {
            let Some(left) = slots[rule] else { continue };
            if left == 0 {
                continue;
            }
            let b = bucket(rule, cur.time, tz, nr);
            if last_bucket[rule] != Some(b) || nr == n - 1 {
                last_bucket[rule] = Some(b);
                if left != UNLIMITED {
                    slots[rule] = Some(left - 1);
                }
                why.push(NAMES[rule]);
            }
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    fn t(text: &str) -> DateTime<Utc> {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
    }

    /// The start of restic's own test list (`testExpireSnapshots` in
    /// `internal/restic/snapshot_policy_test.go`), oldest first.
    const TIMES: &[&str] = &[
        "2014-08-08 10:20:30",
        "2014-08-10 10:20:30",
        "2014-08-12 10:20:30",
        "2014-08-13 10:20:30",
        "2014-08-13 10:20:30",
        "2014-08-15 10:20:30",
        "2014-08-18 10:20:30",
        "2014-08-20 10:20:30",
        "2014-08-21 10:20:30",
        "2014-08-22 10:20:30",
        "2014-10-01 10:20:30",
        "2014-10-02 10:20:30",
        "2014-10-05 10:20:30",
        "2014-10-06 10:20:30",
        "2014-10-08 10:20:30",
        "2014-10-09 10:20:30",
        "2014-10-10 10:20:30",
        "2014-10-11 10:20:30",
        "2014-10-20 10:20:30",
        "2014-10-22 10:20:30",
        "2014-11-08 10:20:30",
        "2014-11-10 10:20:30",
        "2014-11-12 10:20:30",
        "2014-11-13 10:20:30",
        "2014-11-13 10:20:30",
        "2014-11-15 10:20:30",
        "2014-11-18 10:20:30",
        "2014-11-20 10:20:30",
        "2014-11-21 10:20:30",
        "2014-11-22 10:20:30",
        "2015-09-01 10:20:30",
        "2015-09-02 10:20:30",
        "2015-09-05 10:20:30",
        "2015-09-06 10:20:30",
        "2015-09-08 10:20:30",
        "2015-09-09 10:20:30",
        "2015-09-10 10:20:30",
        "2015-09-11 10:20:30",
        "2015-09-20 10:20:30",
        "2015-09-22 10:20:30",
        "2016-01-01 01:02:03",
        "2016-01-01 01:03:03",
        "2016-01-01 07:08:03",
        "2016-01-03 07:02:03",
        "2016-01-04 10:23:03",
        "2016-01-04 11:23:03",
        "2016-01-04 12:23:03",
        "2016-01-04 12:24:03",
        "2016-01-04 12:28:03",
        "2016-01-04 12:30:03",
        "2016-01-04 16:23:03",
        "2016-01-05 09:02:03",
        "2016-01-06 08:02:03",
        "2016-01-07 10:02:03",
        "2016-01-08 20:02:03",
        "2016-01-09 21:02:03",
        "2016-01-12 21:02:03",
        "2016-01-12 21:08:03",
        "2016-01-18 12:02:03",
    ];

    fn kept_times(policy: &Policy, tags: &[Vec<String>], tz: &impl TimeZone) -> Vec<&'static str> {
        let none = Vec::new();
        let cands: Vec<Candidate> = TIMES
            .iter()
            .enumerate()
            .map(|(i, s)| Candidate {
                time: t(s),
                tags: tags.get(i).unwrap_or(&none),
            })
            .collect();
        let now = t("2016-01-18 12:02:03");
        let why = apply(&cands, policy, tz, now);
        TIMES
            .iter()
            .zip(why)
            .filter(|(_, w)| !w.is_empty())
            .map(|(s, _)| *s)
            .rev()
            .collect()
    }

    fn utc_kept(policy: Policy) -> Vec<&'static str> {
        kept_times(&policy, &[], &Utc)
    }

    #[test]
    fn an_empty_policy_keeps_nothing_and_last_keeps_the_newest_n() {
        assert!(utc_kept(Policy::default()).is_empty());
        assert!(Policy::default().is_empty());
        let kept = utc_kept(Policy {
            last: Some(3),
            ..Policy::default()
        });
        assert_eq!(
            kept,
            [
                "2016-01-18 12:02:03",
                "2016-01-12 21:08:03",
                "2016-01-12 21:02:03"
            ]
        );
        assert!(
            utc_kept(Policy {
                last: Some(0),
                ..Policy::default()
            })
            .is_empty()
        );
        let all = utc_kept(Policy {
            last: Some(UNLIMITED),
            ..Policy::default()
        });
        assert_eq!(all.len(), TIMES.len());
    }

    #[test]
    fn hourly_and_daily_keep_the_newest_of_each_bucket() {
        let kept = utc_kept(Policy {
            daily: Some(5),
            ..Policy::default()
        });
        assert_eq!(
            kept,
            [
                "2016-01-18 12:02:03",
                "2016-01-12 21:08:03",
                "2016-01-09 21:02:03",
                "2016-01-08 20:02:03",
                "2016-01-07 10:02:03",
            ]
        );
        let kept = utc_kept(Policy {
            hourly: Some(4),
            ..Policy::default()
        });
        assert_eq!(
            kept,
            [
                "2016-01-18 12:02:03",
                "2016-01-12 21:08:03",
                "2016-01-09 21:02:03",
                "2016-01-08 20:02:03",
            ]
        );
    }

    #[test]
    fn weekly_monthly_yearly_use_iso_weeks_months_and_years() {
        let kept = utc_kept(Policy {
            weekly: Some(3),
            ..Policy::default()
        });
        // 2016-01-18 is week 3, 01-12 week 2, 01-09 week 1 of ISO 2016.
        assert_eq!(
            kept,
            [
                "2016-01-18 12:02:03",
                "2016-01-12 21:08:03",
                "2016-01-09 21:02:03"
            ]
        );
        let kept = utc_kept(Policy {
            monthly: Some(3),
            ..Policy::default()
        });
        assert_eq!(
            kept,
            [
                "2016-01-18 12:02:03",
                "2015-09-22 10:20:30",
                "2014-11-22 10:20:30"
            ]
        );
        let kept = utc_kept(Policy {
            yearly: Some(10),
            ..Policy::default()
        });
        // Slots left at the oldest: it is kept too (restic ≥ 0.17).
        assert_eq!(
            kept,
            [
                "2016-01-18 12:02:03",
                "2015-09-22 10:20:30",
                "2014-11-22 10:20:30",
                "2014-08-08 10:20:30",
            ]
        );
    }

    #[test]
    fn one_snapshot_takes_a_slot_of_every_rule_it_fits() {
        let kept = utc_kept(Policy {
            daily: Some(2),
            weekly: Some(2),
            ..Policy::default()
        });
        // daily: 01-18, 01-12; weekly: 01-18 (week 3), 01-12 (week 2).
        assert_eq!(kept, ["2016-01-18 12:02:03", "2016-01-12 21:08:03"]);
        let kept = utc_kept(Policy {
            last: Some(1),
            monthly: Some(2),
            ..Policy::default()
        });
        assert_eq!(kept, ["2016-01-18 12:02:03", "2015-09-22 10:20:30"]);
    }

    #[test]
    fn within_counts_back_from_the_newest_snapshot_not_from_now() {
        let kept = utc_kept(Policy {
            within_secs: Some(7 * 86400),
            ..Policy::default()
        });
        assert_eq!(
            kept,
            [
                "2016-01-18 12:02:03",
                "2016-01-12 21:08:03",
                "2016-01-12 21:02:03"
            ]
        );
        // Strictly after newest − D: 01-11 12:02:03 exactly is out.
        let kept = utc_kept(Policy {
            within_secs: Some(6 * 86400 + 15 * 3600),
            ..Policy::default()
        });
        assert_eq!(
            kept,
            [
                "2016-01-18 12:02:03",
                "2016-01-12 21:08:03",
                "2016-01-12 21:02:03"
            ]
        );
        // A snapshot from the future is not the newest to count from.
        let cands = [
            Candidate {
                time: t("2016-01-01 00:00:00"),
                tags: &[],
            },
            Candidate {
                time: t("2016-01-10 00:00:00"),
                tags: &[],
            },
            Candidate {
                time: t("2030-01-01 00:00:00"),
                tags: &[],
            },
        ];
        let why = apply(
            &cands,
            &Policy {
                within_secs: Some(86400),
                ..Policy::default()
            },
            &Utc,
            t("2016-01-10 12:00:00"),
        );
        assert_eq!(why, [vec![], vec!["within"], vec!["within"]]);
    }

    #[test]
    fn keep_tag_needs_every_tag_of_one_list() {
        let tags: Vec<Vec<String>> = TIMES
            .iter()
            .enumerate()
            .map(|(i, _)| match i {
                0 => vec!["a".to_string(), "b".to_string()],
                1 => vec!["a".to_string()],
                2 => vec!["c".to_string()],
                _ => vec![],
            })
            .collect();
        let policy = Policy {
            tags: vec![vec!["a".into(), "b".into()], vec!["c".into()]],
            ..Policy::default()
        };
        assert_eq!(
            kept_times(&policy, &tags, &Utc),
            ["2014-08-12 10:20:30", "2014-08-08 10:20:30"]
        );
    }

    #[test]
    fn buckets_follow_the_time_zone() {
        // 20:00 and 22:00 on Jan 1 and 01:00 on Jan 2, UTC. In UTC the days
        // are 1, 1, 2: daily 2 keeps 01:00 and 22:00. At UTC+3 they are
        // 23:00 on Jan 1 and 01:00, 04:00 on Jan 2: it keeps 04:00 (01:00
        // UTC) and 23:00 (20:00 UTC).
        let cands: Vec<Candidate> = [
            "2016-01-01 20:00:00",
            "2016-01-01 22:00:00",
            "2016-01-02 01:00:00",
        ]
        .iter()
        .map(|s| Candidate {
            time: t(s),
            tags: &[],
        })
        .collect();
        let policy = Policy {
            daily: Some(2),
            ..Policy::default()
        };
        let now = t("2016-01-03 00:00:00");
        let kept = |why: Vec<Vec<&str>>| why.iter().map(|w| !w.is_empty()).collect::<Vec<_>>();
        assert_eq!(kept(apply(&cands, &policy, &Utc, now)), [false, true, true]);
        let east = FixedOffset::east_opt(3 * 3600).unwrap();
        assert_eq!(kept(apply(&cands, &policy, &east, now)), [true, false, true]);
    }

    #[test]
    fn describe_names_each_rule() {
        let p = Policy {
            last: Some(2),
            daily: Some(7),
            weekly: Some(UNLIMITED),
            within_secs: Some(86400),
            tags: vec![vec!["a".into(), "b".into()]],
            ..Policy::default()
        };
        assert_eq!(
            p.describe(),
            "keep the last 2, 7 daily, all weekly, all within 1day of the newest, all tagged a,b"
        );
    }
}
