//! Walking the source tree: one `stat` per entry and nothing else, so an
//! unchanged tree of 100k files costs a directory walk and no reads.
//!
//! Symlinks are not followed (a backup of `/home` must not wander into `/`)
//! and, like special files, are reported as skipped. Names that are not
//! UTF-8 cannot become S3 keys; they are reported as errors, not dropped
//! silently. The top-level `.s3backup` entry is reserved for the tool.

use std::path::{Path, PathBuf};

/// The name reserved at the top of a source and of a store.
pub const RESERVED: &str = ".s3backup";

/// What kind of entry a scanned path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file: its bytes are backed up.
    File,
    /// A directory: recorded so empty directories and their modes come back.
    Dir,
}

/// One file or directory found under the source, with what `stat` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// Path relative to the source root, `/`-separated.
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Unix permission bits.
    pub mode: u32,
    /// When it was stat-ed, ns since the epoch (the content was read no earlier).
    pub seen_ns: i64,
}

/// Something under the source that was not scanned, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanProblem {
    /// Path relative to the source (lossy for non-UTF-8 names).
    pub path: String,
    /// Why it is not backed up.
    pub reason: String,
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
}

/// Walks `root` lazily, calling `tick` every 1000 entries for progress.
///
/// Files come in byte order of their relative paths (siblings are sorted
/// as `name/` for directories, which makes the depth-first order the byte
/// order), so the walk can be merged with state rows read `ORDER BY path`
/// without holding either in memory. Each directory is read once and its
/// entries are stat-ed relative to it (`fstatat` on the open directory, as
/// `find` does), not by full path.
pub fn walk(root: &Path, tick: impl FnMut(usize)) -> Result<impl Iterator<Item = Walked>, ScanError> {
    match std::fs::metadata(root) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(ScanError::NotADirectory(root.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ScanError::Missing(root.to_path_buf()));
        }
        Err(e) => return Err(ScanError::Unreadable(root.to_path_buf(), e)),
    }
    let children = read_children(root, true).map_err(|e| ScanError::Unreadable(root.to_path_buf(), e))?;
    Ok(Walker {
        root: root.to_path_buf(),
        stack: vec![Frame {
            rel: String::new(),
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
    children: std::vec::IntoIter<Child>,
}

/// An entry of a directory, stat-ed while the directory was open.
struct Child {
    name: std::ffi::OsString,
    sort_key: Vec<u8>,
    is_dir: bool,
    stat: std::io::Result<(std::fs::FileType, std::fs::Metadata)>,
}

/// Reads a directory's entries and stats each relative to it, sorted in tree order.
fn read_children(dir: &Path, top: bool) -> std::io::Result<Vec<Child>> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if top && name == RESERVED {
            continue;
        }
        // `DirEntry::metadata` stats relative to the open directory and does not follow symlinks.
        let stat = entry
            .file_type()
            .and_then(|ft| entry.metadata().map(|md| (ft, md)));
        let is_dir = stat.as_ref().is_ok_and(|(ft, _)| ft.is_dir());
        let mut sort_key = name.as_encoded_bytes().to_vec();
        if is_dir {
            sort_key.push(b'/');
        }
        children.push(Child {
            name,
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
            let frame = self.stack.last_mut()?;
            let Some(child) = frame.children.next() else {
                self.stack.pop();
                continue;
            };
            self.seen += 1;
            if self.seen.is_multiple_of(1000) {
                (self.tick)(self.seen);
            }
            let parent = &frame.rel;
            let Some(name) = child.name.to_str() else {
                let lossy = child.name.to_string_lossy();
                let path = if parent.is_empty() {
                    lossy.to_string()
                } else {
                    format!("{parent}/{lossy}")
                };
                return Some(Walked::Error(ScanProblem {
                    path,
                    reason: "name is not valid UTF-8 and cannot be stored as a key".into(),
                }));
            };
            let rel = if parent.is_empty() {
                name.to_string()
            } else {
                format!("{parent}/{name}")
            };
            let (file_type, md) = match child.stat {
                Ok(stat) => stat,
                Err(e) => {
                    return Some(Walked::Error(ScanProblem {
                        path: rel,
                        reason: e.to_string(),
                    }));
                }
            };
            let kind = if file_type.is_file() {
                EntryKind::File
            } else if child.is_dir {
                EntryKind::Dir
            } else {
                let what = if file_type.is_symlink() {
                    "symlink"
                } else {
                    "special file"
                };
                return Some(Walked::Skipped(ScanProblem {
                    path: rel,
                    reason: format!("{what} not backed up"),
                }));
            };
            if kind == EntryKind::Dir {
                match read_children(&self.root.join(&rel), false) {
                    Ok(children) => self.stack.push(Frame {
                        rel: rel.clone(),
                        children: children.into_iter(),
                    }),
                    Err(e) => {
                        self.pending = Some(Walked::Error(ScanProblem {
                            path: rel.clone(),
                            reason: e.to_string(),
                        }))
                    }
                }
            }
            return Some(Walked::Entry(ScanEntry {
                path: rel,
                kind,
                size: if kind == EntryKind::File { md.len() } else { 0 },
                mtime_ns: mtime_ns(&md),
                mode: mode(&md),
                seen_ns: now_ns(),
            }));
        }
    }
}

/// Walks `root` and collects everything (for tests and benchmarks; a backup streams [`walk`]).
pub fn scan(root: &Path, tick: impl FnMut(usize)) -> Result<Scan, ScanError> {
    let mut scan = Scan::default();
    for item in walk(root, tick)? {
        match item {
            Walked::Entry(e) => scan.entries.push(e),
            Walked::Skipped(p) => scan.skipped.push(p),
            Walked::Error(p) => scan.errors.push(p),
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
    fn finds_files_and_dirs_skips_reserved_and_symlinks() {
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
        assert_eq!(
            paths,
            ["a", "a/.s3backup", "a/b", "a/b/c.txt", "empty", "top.txt"]
        );
        let c = scan.entries.iter().find(|e| e.path == "a/b/c.txt").unwrap();
        assert_eq!((c.kind, c.size), (EntryKind::File, 5));
        #[cfg(unix)]
        assert_eq!(scan.skipped.len(), 1);
        assert!(scan.errors.is_empty());
    }

    #[test]
    fn missing_source_is_an_error_naming_it() {
        let err = scan(Path::new("/nonexistent/src"), |_| {}).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/src"));
    }
}
