//! Walking the source tree: one `stat` per entry and nothing else, so an
//! unchanged tree of 100k files costs a directory walk and no reads.
//!
//! Symlinks are not followed (a backup of `/home` must not wander into `/`)
//! and, like special files, are reported as skipped. Names that are not
//! UTF-8 cannot become S3 keys; they are reported as errors, not dropped
//! silently. The top-level `.s3backup` entry is reserved for the tool.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

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
/// without holding either in memory.
pub fn walk(root: &Path, mut tick: impl FnMut(usize)) -> Result<impl Iterator<Item = Walked>, ScanError> {
    match std::fs::metadata(root) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(ScanError::NotADirectory(root.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ScanError::Missing(root.to_path_buf()));
        }
        Err(e) => return Err(ScanError::Unreadable(root.to_path_buf(), e)),
    }
    if let Err(e) = std::fs::read_dir(root) {
        return Err(ScanError::Unreadable(root.to_path_buf(), e));
    }
    let root = root.to_path_buf();
    let walker = WalkDir::new(&root)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| tree_order_key(a).cmp(&tree_order_key(b)))
        .into_iter()
        .filter_entry(|e| !(e.depth() == 1 && e.file_name() == RESERVED));
    Ok(walker.enumerate().map(move |(n, item)| {
        if n % 1000 == 999 {
            tick(n + 1);
        }
        classify(&root, item)
    }))
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

fn tree_order_key(entry: &walkdir::DirEntry) -> Vec<u8> {
    let mut key = entry.file_name().as_encoded_bytes().to_vec();
    if entry.file_type().is_dir() {
        key.push(b'/');
    }
    key
}

fn classify(root: &Path, item: walkdir::Result<walkdir::DirEntry>) -> Walked {
    let entry = match item {
        Ok(entry) => entry,
        Err(err) => {
            let path = err.path().map(|p| relative_lossy(root, p)).unwrap_or_default();
            let reason = err.io_error().map_or_else(|| err.to_string(), |e| e.to_string());
            return Walked::Error(ScanProblem { path, reason });
        }
    };
    let Some(path) = relative_utf8(root, entry.path()) else {
        return Walked::Error(ScanProblem {
            path: relative_lossy(root, entry.path()),
            reason: "name is not valid UTF-8 and cannot be stored as a key".into(),
        });
    };
    let file_type = entry.file_type();
    let kind = if file_type.is_file() {
        EntryKind::File
    } else if file_type.is_dir() {
        EntryKind::Dir
    } else {
        let what = if file_type.is_symlink() {
            "symlink"
        } else {
            "special file"
        };
        return Walked::Skipped(ScanProblem {
            path,
            reason: format!("{what} not backed up"),
        });
    };
    match entry.metadata() {
        Ok(md) => Walked::Entry(ScanEntry {
            path,
            kind,
            size: if kind == EntryKind::File { md.len() } else { 0 },
            mtime_ns: mtime_ns(&md),
            mode: mode(&md),
            seen_ns: now_ns(),
        }),
        Err(e) => Walked::Error(ScanProblem {
            path,
            reason: e.to_string(),
        }),
    }
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

fn relative_utf8(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

fn relative_lossy(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
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
