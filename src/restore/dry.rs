//! `restore --dry-run`: the list of what a restore would do, written by
//! the same stages that would do it.
//!
//! A dry run is not a second restore. The source, the selection and
//! [`crate::restore::decide`] run as they always do, reading DEST (without
//! following links, as ever) and, for a listing, the objects' metadata;
//! only at the points where a restore would change something does
//! [`crate::restore::dest::Dest`] (opened for listing) or
//! [`crate::restore::place`] record a line here instead. So nothing in
//! DEST is created, written, renamed, removed or given a mode or a time,
//! no temporary file is made, and no object body is downloaded.
//!
//! The lines use the verbs of `backup --dry-run` where they mean the same
//! (`create`, `touch`, `delete`), one line per change, its path relative
//! to DEST, notes in brackets:
//! - `create DEST`: DEST does not exist yet;
//! - `mkdir P`: a directory the restore would create;
//! - `download P`, `download P (overwrite)`, `download P (symlink)`: a
//!   file or symlink fetched (replacing what differs there);
//!   `download P (overwrite 'Q')`: replacing a file a case-folding DEST
//!   holds under the other spelling `Q` (the new file is spelled `P`);
//! - `touch P`: the same content is there, its mtime or mode would be set
//!   (only what DEST keeps of them is compared: [`crate::restore::meta::Keeps`]);
//! - `keep P (differs, --no-clobber)`: left as it is, and reported (with
//!   `; DEST spells it 'Q'` where it does);
//! - `refuse P: WHY`: it would fail (an unsafe name, a link or a file
//!   where a directory is needed, a directory where a file goes);
//! - `delete P (stale temporary file)`: one an interrupted restore left.
//!
//! Files found the same whose metadata already matches change nothing and
//! get no line (they count as `unchanged`). The lines are sorted by path,
//! so a directory comes before what it would hold.
//!
//! Reading is the restore's own: the decision opens each local file of
//! the backup's size read-only, without following a link, to hash it (as
//! any reader, that may update its access time), and a dry run stats that
//! same handle to see whether its mtime or mode would change, where a
//! restore sets them through it. The stale-file sweep takes and drops the
//! advisory lock of each temporary file it finds, as it would before
//! removing it, so one a live restore is writing is not listed. The
//! write probe of DEST becomes `access(2)`.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The lines of a dry run, collected from every stage (and task) that
/// would have changed something.
#[derive(Debug, Default)]
pub struct Planned {
    /// `(path, line)`, in the order they were found.
    lines: Mutex<Vec<(String, String)>>,
    /// Directories the restore would create (text paths relative to DEST).
    dirs: Mutex<BTreeSet<String>>,
}

impl Planned {
    /// Records `line`, about `path` (relative to DEST; empty for DEST itself).
    pub fn line(&self, path: &str, line: String) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push((path.to_string(), line));
        }
    }

    /// Records that `dir` (and, since it is missing, nothing below it
    /// exists either) would be created; `true` if it was new to the list.
    pub fn mkdir(&self, dir: &str) -> bool {
        self.dirs
            .lock()
            .is_ok_and(|mut dirs| dirs.insert(dir.to_string()))
    }

    /// Whether `dir` is one the restore would create.
    pub fn makes(&self, dir: &str) -> bool {
        self.dirs.lock().is_ok_and(|dirs| dirs.contains(dir))
    }

    /// The directories the restore would create.
    pub fn made_dirs(&self) -> Vec<String> {
        self.dirs
            .lock()
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every line, the `mkdir`s included, sorted by path (stable: one
    /// path's lines keep their order).
    pub fn take(&self) -> Vec<String> {
        let mut lines = self
            .lines
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        lines.extend(self.made_dirs().into_iter().map(|d| {
            let line = format!("mkdir {}", name(&d));
            (d, line)
        }));
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        lines.into_iter().map(|(_, line)| line).collect()
    }
}

/// A key's relative path as the name it is written under (the
/// manifest's escapes undone: `z‛‛w.txt` is `z‛w.txt`), as a line
/// shows it; a name that is not UTF-8 keeps its escaped form, the one
/// text that says which bytes it holds.
pub fn name(path: &str) -> std::borrow::Cow<'_, str> {
    match crate::fs::names::decode(path) {
        std::borrow::Cow::Owned(os) => match os.into_string() {
            Ok(text) => std::borrow::Cow::Owned(text),
            Err(_) => std::borrow::Cow::Borrowed(path),
        },
        std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(path),
    }
}

/// The `refuse` lines of entries that would fail (an entry of the source
/// that could not be read, with no path, gets none: it is no decision).
pub fn refuse(planned: &Planned, failures: &[crate::report::Failure]) {
    for f in failures.iter().filter(|f| !f.path.is_empty()) {
        planned.line(&f.path, format!("refuse {}: {}", name(&f.path), f.error));
    }
}

/// The `download` line of a file or symlink.
pub fn download_line(path: &str, symlink: bool, overwrite: bool) -> String {
    let note = match (symlink, overwrite) {
        (false, false) => "",
        (false, true) => " (overwrite)",
        (true, false) => " (symlink)",
        (true, true) => " (symlink, overwrite)",
    };
    format!("download {}{note}", name(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_out_by_path_with_the_directories_first() {
        let p = Planned::default();
        p.line("d/x", download_line("d/x", false, false));
        p.line("a", download_line("a", true, true));
        assert!(p.mkdir("d"));
        assert!(!p.mkdir("d"));
        p.line("", "create /dest".into());
        assert!(p.makes("d") && !p.makes("a"));
        assert_eq!(
            p.take(),
            [
                "create /dest",
                "download a (symlink, overwrite)",
                "mkdir d",
                "download d/x"
            ]
        );
    }
}
