//! `s3backup snapshots diff|ls|find`: see the history. Each opens the
//! snapshots it needs as `restore` and `verify` do (any ID form, `latest`
//! the newest readable one, a damaged one named by ID an error naming
//! it), streams their manifests through [`crate::browse`] and prints as
//! it goes ([`crate::cli::browse_output`]).
//!
//! Exit codes: 0 when everything asked for was shown; 1 when a snapshot
//! cannot be found or read, an `ls` PATH names nothing, or manifest lines
//! could not be read (each is named on stderr as it is skipped, and what
//! was shown lacks it); 2 for a bad command line (an invalid pattern). A
//! `find` over every snapshot still prints what it found in the readable
//! ones, and exits 1 naming those it could not search whole.

use anyhow::{Context, bail};
use futures::StreamExt;

use crate::browse::select::{Paths, Patterns};
use crate::browse::{BrowseError, Entries, Node};
use crate::cli::Exit;
use crate::cli::args::{DiffArgs, FindArgs, LsArgs};
use crate::cli::browse_output as out;
use crate::cli::commands::open_existing_store;
use crate::cli::output::errln;
use crate::snapshots::{self, Snapshot, SnapshotError};
use crate::store::ObjectStore;

/// `snapshots diff TARGET A B`.
///
/// # Errors
/// A store that cannot be read, a snapshot that cannot be found or read whole.
pub(crate) async fn diff(args: DiffArgs) -> anyhow::Result<Exit> {
    let target = args.target.to_string();
    let store = open_existing_store(&args.target, args.s3).await?;
    let list = snapshots::list(&*store, args.target.prefix())
        .await
        .with_context(|| target.clone())?;
    let (a, b) = futures::future::try_join(
        snapshots::open(&*store, &list, &args.a, &target),
        snapshots::open(&*store, &list, &args.b, &target),
    )
    .await?;
    let (a_id, b_id) = (a.snapshot.id.clone(), b.snapshot.id.clone());
    let mut left = Entries::new(&a_id, a.reader);
    let mut right = Entries::new(&b_id, b.reader);
    let changes = crate::browse::diff::diff(&mut left, &mut right)?;
    let bad = [(&a_id, left.bad_lines()), (&b_id, right.bad_lines())];
    let unreadable: u64 = bad.iter().map(|(_, n)| n).sum();
    out::diff(&a_id, &b_id, changes, unreadable, args.json)?;
    Ok(lines_exit(&bad, "the diff lacks them"))
}

/// `snapshots ls TARGET ID [PATH…]`.
///
/// # Errors
/// A store that cannot be read, a snapshot that cannot be found or read
/// whole (after what was read is printed).
pub(crate) async fn ls(args: LsArgs) -> anyhow::Result<Exit> {
    let target = args.target.to_string();
    let store = open_existing_store(&args.target, args.s3).await?;
    let list = snapshots::list(&*store, args.target.prefix())
        .await
        .with_context(|| target.clone())?;
    let opened = snapshots::open(&*store, &list, &args.id, &target).await?;
    let id = opened.snapshot.id.clone();
    let mut entries = Entries::new(&id, opened.reader);
    let mut paths = Paths::new(&args.paths);
    for entry in entries.by_ref() {
        let entry = entry?;
        if paths.wants(&entry.path, entry.kind == "dir") {
            out::ls_line(&entry.path, &Node::from(&entry), args.json)?;
        }
    }
    let unmatched = paths.unmatched();
    if !unmatched.is_empty() {
        let named: Vec<String> = unmatched.iter().map(|p| format!("'{p}'")).collect();
        errln!(
            "error: snapshot {id} holds no {} (see 's3backup snapshots ls {target} {id}')",
            named.join(", ")
        );
    }
    let exit = lines_exit(&[(&id, entries.bad_lines())], "the listing lacks them");
    Ok(if unmatched.is_empty() { exit } else { Exit::Error })
}

/// Exit 0, or 1 with an error line per snapshot that had manifest lines
/// that could not be read (each was named in a warning as it was skipped).
fn lines_exit(bad: &[(&String, u64)], what: &str) -> Exit {
    let mut exit = Exit::Ok;
    for (id, n) in bad.iter().filter(|(_, n)| *n > 0) {
        errln!("error: snapshot {id}: {n} manifest line(s) could not be read; {what}");
        exit = Exit::Error;
    }
    exit
}

/// `snapshots find TARGET PATTERN… [--snapshot ID]`.
///
/// # Errors
/// A store that cannot be read, no snapshots, or (with `--snapshot`) a
/// snapshot that cannot be found or read whole.
pub(crate) async fn find(args: FindArgs) -> anyhow::Result<Exit> {
    let target = args.target.to_string();
    let patterns = Patterns::new(&args.patterns)?;
    let store = open_existing_store(&args.target, args.s3).await?;
    let list = snapshots::list(&*store, args.target.prefix())
        .await
        .with_context(|| target.clone())?;
    if list.is_empty() {
        bail!("no snapshots in {target}");
    }
    let mut search = Search {
        patterns,
        json: args.json,
        matches: 0,
        holding: 0,
        searched: 0,
        bad_lines: 0,
        skipped: Vec::new(),
    };
    if let Some(id) = &args.snapshot {
        let opened = snapshots::open(&*store, &list, id, &target).await?;
        let id = opened.snapshot.id.clone();
        search.one(&id, opened.reader)?;
    } else {
        search.all(&*store, &list, &target).await?;
    }
    if !search.json {
        out::find_summary(search.matches, search.holding, search.searched)?;
    }
    Ok(search.exit())
}

/// Manifests a `find` over every snapshot downloads ahead of the one it
/// reads (each into a temporary file, not memory).
const MANIFESTS_AHEAD: usize = 4;

/// A `find` under way: what it matches, and what it found so far.
struct Search {
    patterns: Patterns,
    json: bool,
    /// Entries that matched.
    matches: u64,
    /// Snapshots with a match.
    holding: usize,
    /// Snapshots read (whole or not).
    searched: usize,
    /// Manifest lines that could not be read.
    bad_lines: u64,
    /// Snapshots not searched whole, and why.
    skipped: Vec<String>,
}

impl Search {
    /// Searches every snapshot, newest first; one that is damaged, breaks
    /// off or lists paths out of order is skipped with a warning (what it
    /// matched before stays printed), and the search goes on.
    async fn all(&mut self, store: &dyn ObjectStore, list: &[Snapshot], target: &str) -> anyhow::Result<()> {
        let mut opened =
            futures::stream::iter(list.iter().rev())
                .map(|snapshot| async move {
                    (snapshot, snapshots::open(store, list, &snapshot.id, target).await)
                })
                .buffered(MANIFESTS_AHEAD);
        while let Some((snapshot, opened)) = opened.next().await {
            let failed = match opened {
                Ok(opened) => match self.one(&snapshot.id, opened.reader) {
                    Ok(()) => continue,
                    Err(e) => e.downcast::<BrowseError>()?.to_string(),
                },
                Err(e @ SnapshotError::Damaged { .. }) => e.to_string(),
                Err(e) => return Err(e.into()),
            };
            tracing::warn!("{failed}; not searched (whole)");
            self.skipped.push(snapshot.id.clone());
        }
        Ok(())
    }

    /// Searches one snapshot's manifest, printing its matches as found.
    ///
    /// # Errors
    /// A [`BrowseError`] when the manifest cannot be read on; what could
    /// not be printed.
    fn one(&mut self, id: &str, reader: crate::manifest::Reader<std::fs::File>) -> anyhow::Result<()> {
        let created = reader.header.created.clone();
        let mut entries = Entries::new(id, reader);
        self.searched += 1;
        let searched = self.each_match(&mut entries, id, &created);
        self.bad_lines += entries.bad_lines();
        searched
    }

    /// Prints the matches of `entries`, counting them.
    fn each_match(
        &mut self,
        entries: &mut Entries<std::fs::File>,
        id: &str,
        created: &str,
    ) -> anyhow::Result<()> {
        let mut found = false;
        for entry in entries {
            let entry = entry?;
            if !self.patterns.matches(&entry) {
                continue;
            }
            if !found {
                found = true;
                self.holding += 1;
                if !self.json {
                    out::find_heading(id, created)?;
                }
            }
            self.matches += 1;
            out::find_line(id, created, &entry.path, &Node::from(&entry), self.json)?;
        }
        Ok(())
    }

    /// 0, or 1 with an error line when some snapshot or manifest line
    /// could not be searched.
    fn exit(&self) -> Exit {
        let mut exit = Exit::Ok;
        if !self.skipped.is_empty() {
            errln!(
                "error: {} snapshot(s) could not be searched whole: {} (each named above); the matches shown come from what could be read",
                self.skipped.len(),
                self.skipped.join(", ")
            );
            exit = Exit::Error;
        }
        if self.bad_lines > 0 {
            errln!(
                "error: {} manifest line(s) could not be read (each named above); they were not searched",
                self.bad_lines
            );
            exit = Exit::Error;
        }
        exit
    }
}
