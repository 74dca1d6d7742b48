//! Walking the source tree: one `stat` per entry and nothing else, so an
//! unchanged tree of 100k files costs a directory walk and no reads.
//!
//! Symlinks are kept as links, not followed (a backup of `/home` must not
//! wander into `/`): the link itself is backed up and restored. With
//! `--follow-symlinks` they are followed instead, and a link back to a
//! directory being walked is reported as a loop. Special files (FIFOs,
//! sockets, devices) are reported as skipped. Names are carried in
//! their text form ([`crate::fs::names`]), so names that are not UTF-8 are
//! backed up too. The top-level `.s3backup` entry is reserved for the tool.

use std::path::{Path, PathBuf};

use ignore::gitignore::Gitignore;

use crate::fs::filter::{self, Filters, Verdict};
use crate::fs::leave_out::{LeaveOut, Reason};
use crate::fs::names;
use crate::fs::own::{FileId, OwnFiles, dir_identity};

/// The name reserved at the top of a source and of a store.
pub(crate) const RESERVED: &str = ".s3backup";

/// What kind of entry a scanned path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file: its bytes are backed up.
    File,
    /// A directory: recorded so empty directories and their modes come back.
    Dir,
    /// A symbolic link, kept as a link: its target is its content.
    Symlink,
}

impl EntryKind {
    /// The name used in manifests and JSON output.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
        }
    }

    /// The kind a manifest or JSON name stands for.
    pub(crate) fn from_name(name: &str) -> Option<EntryKind> {
        match name {
            "file" => Some(EntryKind::File),
            "dir" => Some(EntryKind::Dir),
            "symlink" => Some(EntryKind::Symlink),
            _ => None,
        }
    }

    /// Whether it has bytes of its own (an object in the bucket).
    pub(crate) fn has_content(self) -> bool {
        self != EntryKind::Dir
    }
}

/// One file or directory found under the source, with what `stat` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// Path relative to the source root, `/`-separated.
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories; a symlink's is its target's length).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Unix permission bits.
    pub mode: u32,
    /// When it was stat-ed, ns since the epoch (the content was read no earlier).
    pub seen_ns: i64,
    /// Change time, inode and device, from the same stat.
    pub stamp: Stamp,
}

/// What a stat says about a file besides its size and mtime, so that a
/// file rewritten at the same size with its mtime put back (`tar -x`,
/// `cp -p`, `rsync -t`, `touch -r`) is still noticed: writing a file or
/// setting its mtime always sets its change time, which no user call can
/// set back (restic detects changes the same way). A new inode or device
/// means another file (replaced by rename, or another file system).
///
/// On platforms whose standard library does not expose them (Windows), all
/// three are 0, and size and mtime decide as before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    /// Status change time (`st_ctime`), ns since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Device the file is on.
    pub device: u64,
}

impl Stamp {
    /// The stamp of a stat result.
    pub fn of(md: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Stamp {
                ctime_ns: md
                    .ctime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(md.ctime_nsec()),
                inode: md.ino(),
                device: md.dev(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = md;
            Stamp::default()
        }
    }
}

/// Something under the source that was not scanned, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanProblem {
    /// Path relative to the source (lossy for non-UTF-8 names).
    pub path: String,
    /// Why it is not backed up.
    pub reason: String,
    /// Whether it is a directory (so summaries count files and directories apart).
    pub is_dir: bool,
}

/// Everything a walk found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files and directories to back up.
    pub entries: Vec<ScanEntry>,
    /// Symlinks and special files, intentionally left out.
    pub skipped: Vec<ScanProblem>,
    /// Entries that could not be read.
    pub errors: Vec<ScanProblem>,
    /// Paths left out by filters.
    pub excluded: Vec<String>,
}

/// Why a scan could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The source directory does not exist.
    #[error("source directory '{0}' does not exist")]
    Missing(PathBuf),
    /// The source is a file or something else.
    #[error("source '{0}' is not a directory")]
    NotADirectory(PathBuf),
    /// The source cannot be read.
    #[error("cannot read source directory '{0}': {1}")]
    Unreadable(PathBuf, std::io::Error),
}

/// One thing a walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walked {
    /// A file or directory to back up.
    Entry(ScanEntry),
    /// A symlink or special file, left out on purpose.
    Skipped(ScanProblem),
    /// Something that could not be read.
    Error(ScanProblem),
    /// Left out by a filter or a [`LeaveOut`] option (a directory: with
    /// everything under it; a mount point, yielded after its entry: what
    /// is under it).
    Excluded {
        /// Relative path.
        path: String,
        /// Whether it is a directory.
        is_dir: bool,
        /// Why.
        reason: Reason,
    },
}

/// How to walk: what to follow and what to leave out.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Follow symlinks instead of keeping them as links.
    pub follow_symlinks: bool,
    /// The command line's `--exclude`/`--include` filters.
    pub filters: Filters,
    /// Obey `.s3backupignore` files.
    pub ignore_files: bool,
    /// Caches, marked directories, other devices and large files to leave out.
    pub leave_out: LeaveOut,
    /// s3backup's own files and the local store, left out silently
    /// ([`crate::fs::own`]; `-v` says once which were met).
    pub own: OwnFiles,
}

impl Default for WalkOptions {
    fn default() -> Self {
        Self {
            follow_symlinks: false,
            filters: Filters::default(),
            ignore_files: true,
            leave_out: LeaveOut::default(),
            own: OwnFiles::default(),
        }
    }
}

/// Walks `root` lazily (symlinks kept as links), calling `tick` every 1000 entries for progress.
///
/// # Errors
/// As [`walk_with`].
pub fn walk<F: FnMut(usize)>(
    root: &Path,
    tick: F,
) -> Result<impl Iterator<Item = Walked> + use<F>, ScanError> {
    walk_with(root, &WalkOptions::default(), tick)
}

/// [`walk`] with options: following symlinks (loops are reported, not
/// walked) and leaving out what the filters exclude (see [`crate::fs::filter`];
/// an excluded directory is not even read, unless an `--include` might
/// take something under it).
///
/// Files come in byte order of their relative paths (siblings are sorted
/// as `name/` for directories, which makes the depth-first order the byte
/// order), so the walk can be merged with state rows read `ORDER BY path`
/// without holding either in memory. Each directory is read once and its
/// entries are stat-ed relative to it (`fstatat` on the open directory, as
/// `find` does), not by full path.
///
/// # Errors
/// [`ScanError`] when `root` is missing, not a directory or unreadable;
/// what cannot be read beneath it is reported in the walk
/// ([`Walked`]), not as an error.
pub fn walk_with<F: FnMut(usize)>(
    root: &Path,
    opts: &WalkOptions,
    tick: F,
) -> Result<impl Iterator<Item = Walked> + use<F>, ScanError> {
    let follow = opts.follow_symlinks;
    let root_id = match std::fs::metadata(root) {
        Ok(md) if md.is_dir() => dir_identity(root, &md),
        Ok(_) => return Err(ScanError::NotADirectory(root.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ScanError::Missing(root.to_path_buf()));
        }
        Err(e) => return Err(ScanError::Unreadable(root.to_path_buf(), e)),
    };
    let children =
        read_children(root, true, follow).map_err(|e| ScanError::Unreadable(root.to_path_buf(), e))?;
    let ignore = opts
        .ignore_files
        .then(|| ignore_file_of(root, "", &children))
        .flatten();
    let marked = marked(&opts.leave_out, root, &children);
    Ok(Walker {
        root: root.to_path_buf(),
        follow,
        filters: opts.filters.clone(),
        ignore_files: opts.ignore_files,
        leave_out: opts.leave_out.clone(),
        root_device: root_id.map(|(device, _)| device),
        own: opts.own.clone(),
        own_met: Vec::new(),
        ignore_frames: usize::from(ignore.is_some()),
        stack: vec![Frame {
            rel: String::new(),
            id: root_id,
            ignore,
            marked,
            children: children.into_iter(),
        }],
        pending: None,
        seen: 0,
        tick,
    })
}

/// One directory being walked: its relative path and its sorted entries.
struct Frame {
    rel: String,
    /// Its identity ([`dir_identity`]), to notice a followed link back
    /// into the walk and to know the directories of s3backup's own files;
    /// None where the platform gives none (which matches nothing).
    id: Option<FileId>,
    /// The directory's `.s3backupignore`, if it has one.
    ignore: Option<Gitignore>,
    /// Why its contents (but a tag or marker) are left out, if they are.
    marked: Option<Reason>,
    children: std::vec::IntoIter<Child>,
}

/// An entry of a directory, stat-ed while the directory was open.
struct Child {
    /// The name's text form ([`names::encode`]), which is what sorts.
    text: String,
    sort_key: Vec<u8>,
    is_dir: bool,
    stat: std::io::Result<(std::fs::FileType, std::fs::Metadata)>,
}

/// Reads a directory's entries and stats each relative to it, sorted in
/// tree order; with `follow`, a symlink is stat-ed through to its target.
fn read_children(dir: &Path, top: bool, follow: bool) -> std::io::Result<Vec<Child>> {
    let mut children = Vec::new();
    let windows_names = names::windows_named(dir);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        // A restore's temporary files (one killed mid-download leaves them) are not the user's data.
        if (top && name == RESERVED) || crate::fs::own::is_temp_name(&name) {
            continue;
        }
        // `DirEntry::metadata` stats relative to the open directory and does not follow symlinks.
        let mut stat = entry
            .file_type()
            .and_then(|ft| entry.metadata().map(|md| (ft, md)));
        if follow && stat.as_ref().is_ok_and(|(ft, _)| ft.is_symlink()) {
            stat = std::fs::metadata(entry.path())
                .map(|md| (md.file_type(), md))
                .map_err(|e| std::io::Error::new(e.kind(), format!("following symlink: {e}")));
        }
        let is_dir = stat.as_ref().is_ok_and(|(ft, _)| ft.is_dir());
        let text = names::key_with(&name, windows_names).into_owned();
        let mut sort_key = text.as_bytes().to_vec();
        if is_dir {
            sort_key.push(b'/');
        }
        children.push(Child {
            text,
            sort_key,
            is_dir,
            stat,
        });
    }
    children.sort_by(|a, b| a.sort_key.cmp(&b.sort_key));
    Ok(children)
}

struct Walker<F> {
    root: PathBuf,
    follow: bool,
    filters: Filters,
    ignore_files: bool,
    leave_out: LeaveOut,
    /// SOURCE's root's device (`--one-file-system`), where the platform gives one.
    root_device: Option<u64>,
    own: OwnFiles,
    /// The own files and store met so far (relative paths), said at the end.
    own_met: Vec<String>,
    /// How many frames on the stack have an ignore file.
    ignore_frames: usize,
    stack: Vec<Frame>,
    pending: Option<Walked>,
    seen: usize,
    tick: F,
}

impl<F: FnMut(usize)> Iterator for Walker<F> {
    type Item = Walked;

    fn next(&mut self) -> Option<Walked> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        loop {
            let Some(frame) = self.stack.last_mut() else {
                self.say_own_met();
                return None;
            };
            let Some(child) = frame.children.next() else {
                if self.stack.pop().is_some_and(|f| f.ignore.is_some()) {
                    self.ignore_frames -= 1;
                }
                continue;
            };
            let (parent_id, marked, rel) = (frame.id, frame.marked, child_path(&frame.rel, &child.text));
            self.seen += 1;
            if self.seen.is_multiple_of(1000) {
                (self.tick)(self.seen);
            }
            if self.is_own(parent_id, &rel, &child) {
                self.own_met.push(rel);
                continue;
            }
            if let Some(reason) = marked.filter(|_| !self.leave_out.is_marker_name(&child.text)) {
                return Some(Walked::Excluded {
                    path: rel,
                    is_dir: child.is_dir,
                    reason,
                });
            }
            if let Some(walked) = self.visit(rel, child) {
                return Some(walked);
            }
        }
    }
}

impl<F> Walker<F> {
    /// Says (at `-v`) which of the tool's own files the walk left out.
    fn say_own_met(&mut self) {
        if !self.own_met.is_empty() {
            tracing::info!(
                "not backed up: s3backup's own files (state, locks, history) or local store inside the source: {}",
                std::mem::take(&mut self.own_met).join(", ")
            );
        }
    }

    /// Whether `child` of the directory `parent_id` is one of the tool's
    /// own files or the local store's root ([`OwnFiles`]).
    fn is_own(&self, parent_id: Option<FileId>, rel: &str, child: &Child) -> bool {
        let is_store = || {
            self.own.has_store()
                && child.is_dir
                && child.stat.as_ref().is_ok_and(|(_, md)| {
                    dir_identity(&names::local(&self.root, rel), md).is_some_and(|id| self.own.is_store(id))
                })
        };
        let is_own_file = || parent_id.is_some_and(|id| self.own.is_own_file(id, &child.text));
        !self.own.is_empty() && (is_own_file() || is_store())
    }

    /// Decides one entry at `rel`: what the walk yields for it, or `None`
    /// when it yields nothing (a directory left out whose contents an
    /// `--include` may take), so the walk goes on with the next.
    fn visit(&mut self, rel: String, child: Child) -> Option<Walked> {
        let through = match self.excluded(&rel, child.is_dir) {
            Exclusion::No => false,
            Exclusion::WalkThrough => true,
            Exclusion::Yes => {
                return Some(Walked::Excluded {
                    path: rel,
                    is_dir: child.is_dir,
                    reason: Reason::Filter,
                });
            }
        };
        let (file_type, md) = match child.stat {
            Ok(stat) => stat,
            Err(e) => {
                return Some(Walked::Error(ScanProblem {
                    path: rel,
                    reason: e.to_string(),
                    is_dir: child.is_dir,
                }));
            }
        };
        let kind = if file_type.is_file() {
            EntryKind::File
        } else if child.is_dir {
            EntryKind::Dir
        } else if file_type.is_symlink() {
            EntryKind::Symlink
        } else {
            return Some(Walked::Skipped(ScanProblem {
                path: rel,
                reason: "special file (FIFO, socket or device) not backed up".into(),
                is_dir: false,
            }));
        };
        if kind == EntryKind::File && self.leave_out.too_large(md.len()) {
            return Some(Walked::Excluded {
                path: rel,
                is_dir: false,
                reason: Reason::TooLarge,
            });
        }
        if kind == EntryKind::Dir {
            if let Some(symlink_loop) = self.enter_dir(&rel, &md) {
                return Some(symlink_loop);
            }
            if through {
                // Left out itself; what is under it is decided one by one.
                return self.pending.take();
            }
        }
        Some(Walked::Entry(ScanEntry {
            path: rel,
            kind,
            size: if kind.has_content() { md.len() } else { 0 },
            mtime_ns: mtime_ns(&md),
            mode: mode(&md),
            seen_ns: now_ns(),
            stamp: Stamp::of(&md),
        }))
    }

    /// Pushes the directory at `rel` on the stack to be walked next, or
    /// leaves its read error in `pending` (yielded after the directory
    /// itself). Returns the error for a followed link back into a
    /// directory being walked, which is not entered.
    fn enter_dir(&mut self, rel: &str, md: &std::fs::Metadata) -> Option<Walked> {
        let dir = names::local(&self.root, rel);
        let id = dir_identity(&dir, md);
        if self.follow && id.is_some() && self.stack.iter().any(|f| f.id == id) {
            return Some(Walked::Error(ScanProblem {
                path: rel.to_string(),
                reason: "symlink loop: leads back to a directory it is inside; not followed".into(),
                is_dir: true,
            }));
        }
        if self.leave_out.one_file_system
            && let (Some((device, _)), Some(root)) = (id, self.root_device)
            && device != root
        {
            // A mount point: kept, empty; what is under it is left out unread.
            self.pending = Some(Walked::Excluded {
                path: rel.to_string(),
                is_dir: true,
                reason: Reason::OtherDevice,
            });
            return None;
        }
        match read_children(&dir, false, self.follow) {
            Ok(children) => {
                let ignore = self
                    .ignore_files
                    .then(|| ignore_file_of(&dir, rel, &children))
                    .flatten();
                self.ignore_frames += usize::from(ignore.is_some());
                let marked = marked(&self.leave_out, &dir, &children);
                self.stack.push(Frame {
                    rel: rel.to_string(),
                    id,
                    ignore,
                    marked,
                    children: children.into_iter(),
                })
            }
            Err(e) => {
                self.pending = Some(Walked::Error(ScanProblem {
                    path: rel.to_string(),
                    reason: e.to_string(),
                    is_dir: true,
                }))
            }
        }
        None
    }
}

/// The relative path of `name` in the directory at `parent` (`""` at the top).
fn child_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether a walked path is left out.
enum Exclusion {
    /// Taken.
    No,
    /// Left out, with everything under it.
    Yes,
    /// A directory left out whose contents an `--include` may take.
    WalkThrough,
}

impl<F> Walker<F> {
    fn excluded(&self, rel: &str, is_dir: bool) -> Exclusion {
        let out = match self.filters.verdict(rel, is_dir) {
            Verdict::Included => false,
            Verdict::Excluded => true,
            Verdict::NoRule if self.ignore_frames == 0 => false,
            Verdict::NoRule => {
                let files: Vec<&Gitignore> = self.stack.iter().filter_map(|f| f.ignore.as_ref()).collect();
                filter::ignored_by(&files, rel, is_dir) == Some(true)
            }
        };
        match (out, is_dir && self.filters.has_includes()) {
            (false, _) => Exclusion::No,
            (true, false) => Exclusion::Yes,
            (true, true) => Exclusion::WalkThrough,
        }
    }
}

/// Why the contents of the directory `dir` with `children` are left out
/// ([`LeaveOut::marked`]), if they are.
fn marked(leave_out: &LeaveOut, dir: &Path, children: &[Child]) -> Option<Reason> {
    leave_out.marked(
        dir,
        children
            .iter()
            .map(|c| (c.text.as_str(), c.stat.as_ref().is_ok_and(|(ft, _)| ft.is_file()))),
    )
}

/// The `.s3backupignore` among a directory's children, loaded.
fn ignore_file_of(dir: &Path, rel: &str, children: &[Child]) -> Option<Gitignore> {
    children
        .iter()
        .any(|c| c.text == filter::IGNORE_FILE && !c.is_dir)
        .then(|| filter::ignore_file(dir, rel))
        .flatten()
}

/// Walks `root` and collects everything (for tests and benchmarks; a backup streams [`walk`]).
///
/// # Errors
/// As [`walk_with`].
pub fn scan(root: &Path, tick: impl FnMut(usize)) -> Result<Scan, ScanError> {
    scan_with(root, &WalkOptions::default(), tick)
}

/// [`scan`], following symlinks when `follow`.
///
/// # Errors
/// As [`walk_with`].
pub(crate) fn scan_with(root: &Path, opts: &WalkOptions, tick: impl FnMut(usize)) -> Result<Scan, ScanError> {
    let mut scan = Scan::default();
    for item in walk_with(root, opts, tick)? {
        match item {
            Walked::Entry(e) => scan.entries.push(e),
            Walked::Skipped(p) => scan.skipped.push(p),
            Walked::Error(p) => scan.errors.push(p),
            Walked::Excluded { path, .. } => scan.excluded.push(path),
        }
    }
    Ok(scan)
}

/// The current time, ns since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Modification time of a stat result, in nanoseconds since the epoch.
pub fn mtime_ns(md: &std::fs::Metadata) -> i64 {
    let t = filetime::FileTime::from_last_modification_time(md);
    t.unix_seconds()
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(t.nanoseconds()))
}

/// Permission bits of a stat result.
pub fn mode(md: &std::fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        md.permissions().mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        if md.permissions().readonly() { 0o444 } else { 0o644 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_dirs_and_links_skips_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("a/b/c.txt"), "hello").unwrap();
        std::fs::write(root.join("top.txt"), "").unwrap();
        std::fs::create_dir_all(root.join(".s3backup/x")).unwrap();
        std::fs::create_dir_all(root.join("a/.s3backup")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();

        let scan = scan(root, |_| {}).unwrap();
        let mut paths: Vec<_> = scan.entries.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        let mut want = vec!["a", "a/.s3backup", "a/b", "a/b/c.txt", "empty", "top.txt"];
        if cfg!(unix) {
            want.insert(5, "link");
        }
        assert_eq!(paths, want);
        let c = scan.entries.iter().find(|e| e.path == "a/b/c.txt").unwrap();
        assert_eq!((c.kind, c.size), (EntryKind::File, 5));
        #[cfg(unix)]
        {
            let link = scan.entries.iter().find(|e| e.path == "link").unwrap();
            assert_eq!((link.kind, link.size), (EntryKind::Symlink, 4));
        }
        assert!(scan.skipped.is_empty() && scan.errors.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn following_links_walks_targets_and_reports_loops_and_dangling_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f.txt"), "x").unwrap();
        std::os::unix::fs::symlink("..", root.join("d/up")).unwrap();
        std::os::unix::fs::symlink("d", root.join("to_d")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();

        let scan = scan_with(
            root,
            &WalkOptions {
                follow_symlinks: true,
                ..WalkOptions::default()
            },
            |_| {},
        )
        .unwrap();
        let kinds: Vec<_> = scan.entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("d", EntryKind::Dir),
                ("d/f.txt", EntryKind::File),
                ("to_d", EntryKind::Dir),
                ("to_d/f.txt", EntryKind::File),
            ]
        );
        let mut errors: Vec<_> = scan.errors.iter().map(|p| p.path.as_str()).collect();
        errors.sort();
        assert_eq!(errors, ["d/up", "dangling", "to_d/up"]);
        assert!(scan.errors.iter().any(|p| p.reason.contains("symlink loop")));

        // Not following: three links, kept as links, nothing else.
        let scan = scan_with(root, &WalkOptions::default(), |_| {}).unwrap();
        let links = scan
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Symlink)
            .count();
        assert_eq!((links, scan.errors.len()), (3, 0));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_names_are_walked_in_text_order() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(std::ffi::OsStr::from_bytes(b"caf\xe9")), "x").unwrap();
        std::fs::write(root.join("caf\u{e9}"), "y").unwrap();
        let scan = scan(root, |_| {}).unwrap();
        let paths: Vec<_> = scan.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["caf\u{e9}", "caf\u{201b}E9"]);
        assert!(scan.errors.is_empty());
    }

    #[test]
    fn missing_source_is_an_error_naming_it() {
        let err = scan(Path::new("/nonexistent/src"), |_| {}).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/src"));
    }
}
