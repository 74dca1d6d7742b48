//! Carrying out each file's [`Action`] (set the metadata of a file found
//! the same, keep one that differs, or fetch it into place), then, once
//! every file is written, placing the symlinks (`place_links`); the
//! directories get their modes and mtimes after that, deepest first
//! ([`Dest::finish_dirs`]), since writing files and links changes them.

use std::ffi::OsStr;
use std::path::Path;

use crate::fs::confine::Dir;
use crate::fs::safe_path;
use crate::report::Failure;
use crate::restore::decide::{Action, Local, decide};
use crate::restore::dest::Dest;
use crate::restore::fetch::{Fetch, FetchError, Fetched, Fetcher};
use crate::restore::meta::{set_file_times_and_mode, set_link_time};
use crate::restore::source::Item;
use crate::store::join_key;

/// What became of one entry.
pub(crate) enum Outcome {
    /// A directory entry, given its metadata at the end.
    Dir(Item),
    /// A symlink fetched and checked, placed at the end.
    Link(LinkToPlace),
    /// A file downloaded into place; the bytes received.
    Downloaded(u64),
    /// A file already there with the same content.
    Unchanged,
    /// A file that differs, kept (`--no-clobber`); its path.
    Kept(String),
    /// A file (or, with an empty path, an entry that could not be read) that failed.
    Failed(Failure),
}

/// A symlink fetched and checked, placed after every file is written.
pub(crate) struct LinkToPlace {
    /// Its path under DEST.
    pub path: String,
    /// The raw target.
    pub target: Vec<u8>,
    /// mtime to give the link.
    pub mtime_ns: Option<i64>,
}

/// Restores one file or symlink entry: checks its name, decides what to
/// do ([`decide`]) and does it.
pub(crate) async fn restore_file(
    fetcher: &Fetcher,
    dest: &Dest,
    prefix: &str,
    item: Item,
    no_clobber: bool,
) -> Outcome {
    if let Err(e) = safe_path::validate(&item.path) {
        return Outcome::Failed(Failure {
            path: item.path,
            error: e.to_string(),
        });
    }
    let key = join_key(prefix, &item.path);
    let shown = crate::fs::names::local(dest.path(), &item.path);
    let action = match decide(fetcher, dest, &key, &shown, &item, no_clobber).await {
        Ok(action) => action,
        Err(e) => return failed(item.path, &e),
    };
    let fetched = match action {
        Action::Keep => return Outcome::Kept(item.path),
        Action::Touch { dir, name, same } => {
            return match touch(dest, &dir, &name, &item.path, same) {
                Ok(()) => Outcome::Unchanged,
                Err(e) => failed(item.path, &e),
            };
        }
        Action::Fetch(found) => fetch(fetcher, dest, &key, &shown, &item, found).await,
    };
    match fetched {
        Ok(Fetched::File(bytes)) => Outcome::Downloaded(bytes),
        Ok(Fetched::Link { target, mtime_ns }) => Outcome::Link(LinkToPlace {
            path: item.path,
            target,
            mtime_ns,
        }),
        Err(e) => failed(item.path, &e),
    }
}

/// A failed file, with its error as the user sees it.
fn failed(path: String, error: &dyn std::fmt::Display) -> Outcome {
    Outcome::Failed(Failure {
        path,
        error: error.to_string(),
    })
}

/// Gives a file found the same its recorded mtime (and mode, special bits
/// filtered), through the handle it was compared through; a symlink's own
/// time by name.
fn touch(dest: &Dest, dir: &Dir, name: &OsStr, path: &str, same: Local) -> std::io::Result<()> {
    match same {
        Local::Same {
            mtime_ns, file: None, ..
        } => set_link_time(dir, name, mtime_ns),
        Local::Same {
            mtime_ns,
            mode,
            file: Some(file),
        } => {
            let mode = mode.map(|m| dest.modes.apply(path, m));
            set_file_times_and_mode(&file, mtime_ns, mode)
        }
        Local::Missing | Local::Differs => Ok(()),
    }
}

/// Fetches `item` into place, creating the directories on the way when
/// [`decide`] found one missing.
async fn fetch(
    fetcher: &Fetcher,
    dest: &Dest,
    key: &str,
    shown: &Path,
    item: &Item,
    found: Option<(std::sync::Arc<Dir>, std::ffi::OsString)>,
) -> Result<Fetched, FetchError> {
    let (dir, name) = match found {
        Some(found) => found,
        None => dest.make_parent(&item.path)?,
    };
    let fetch = Fetch {
        key,
        item,
        dir: &dir,
        name: &name,
        shown,
        modes: &dest.modes,
    };
    fetcher.fetch(fetch).await
}

/// Places the fetched symlinks, one by one, once all files are written:
/// a link made earlier could otherwise stand where a later (hostile)
/// entry expects a directory. Each one's directory is reached again
/// without following links, so a link placed earlier is refused as a
/// component. Returns how many were placed; each failure is added to `failures`.
pub(crate) fn place_links(dest: &Dest, links: Vec<LinkToPlace>, failures: &mut Vec<Failure>) -> u64 {
    let mut placed = 0;
    for link in links {
        let shown = crate::fs::names::local(dest.path(), &link.path);
        let result = match dest.find_parent(&link.path) {
            Ok(Some((dir, name))) => place_link(&dir, &name, &shown, &link.target, link.mtime_ns),
            Ok(None) => Err(std::io::Error::other("its directory vanished during the restore")),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => placed += 1,
            Err(e) => failures.push(Failure {
                path: link.path,
                error: e.to_string(),
            }),
        }
    }
    placed
}

/// Puts a symlink at `name` in `dir` (reached without following links;
/// `shown` is its path, for messages): made under a temporary name and
/// renamed over whatever file or link is there; a directory in the way is
/// refused, never replaced. When another restore's sweep removes the
/// temporary link before the rename, another is made.
///
/// # Errors
/// The system's, or a message for a directory in the way.
pub fn place_link(
    dir: &Dir,
    name: &OsStr,
    shown: &Path,
    target: &[u8],
    mtime_ns: Option<i64>,
) -> std::io::Result<()> {
    if dir.symlink_metadata(name).is_ok_and(|md| md.is_dir()) {
        return Err(std::io::Error::other(format!(
            "'{}' is a directory; not replacing it with a symlink",
            shown.display()
        )));
    }
    #[cfg(unix)]
    {
        let mut attempts = 0;
        loop {
            let tmp = crate::fs::own::temp_name("link-");
            dir.symlink_contents(crate::fs::names::os_string(target.to_vec()), &tmp)?;
            let placed = set_link_time(dir, &tmp, mtime_ns).and_then(|()| dir.rename(&tmp, dir, name));
            match placed {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => {
                    let _ = dir.remove_file(&tmp);
                    return Err(e);
                }
                Ok(()) => return Ok(()),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (target, mtime_ns);
        Err(std::io::Error::other(
            "symlinks are not supported on this platform",
        ))
    }
}
