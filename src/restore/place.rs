//! Carrying out each file's [`Action`] (set the metadata of a file found
//! the same, keep one that differs, or fetch it into place), then, once
//! every file is written, placing the symlinks (`place_links`); the
//! directories get their modes and mtimes after that, deepest first
//! ([`Dest::finish_dirs`]), since writing files and links changes them.
//!
//! In a dry run (a [`Dest`] opened for listing) the same decisions are
//! listed instead of carried out, here where they would be carried out
//! (see [`crate::restore::dry`]): a fetch becomes a `download` line and
//! counts as if it succeeded, with the size the source announced; a file
//! found the same gets a `touch` line if its mtime or mode would change;
//! a symlink is still set aside, and checked at the end as it would be
//! placed.

use std::ffi::OsStr;
use std::path::Path;

use crate::fs::confine::Dir;
use crate::fs::safe_path;
use crate::fs::scan::EntryKind;
use crate::report::Failure;
use crate::restore::decide::{Action, Local, decide};
use crate::restore::dest::Dest;
use crate::restore::dry::{self, Planned, download_line};
use crate::restore::fetch::{Fetch, FetchError, Fetched, Fetcher};
use crate::restore::meta::{cap_mtime_ns, differs, now_of, set_file_times_and_mode, set_link_time};
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
    /// A file that differs, kept (`--no-clobber`); its path, and DEST's
    /// own spelling of it when that differs (a DEST that folds).
    Kept(String, Option<String>),
    /// A file (or, with an empty path, an entry that could not be read) that failed.
    Failed(Failure),
    /// An entry refused before anything was written for it: on DEST, it
    /// would land on an earlier key's file or directory (see [`super::fold`]).
    Clash(super::fold::Refused),
}

/// A symlink fetched and checked, placed after every file is written.
pub(crate) struct LinkToPlace {
    /// Its path under DEST.
    pub path: String,
    /// The raw target (empty in a dry run, which fetches no body).
    pub target: Vec<u8>,
    /// The target's length in bytes (in a dry run, as the source announced it).
    pub size: u64,
    /// mtime to give the link.
    pub mtime_ns: Option<i64>,
    /// Whether it replaces a file or link that differs (for a dry run's line).
    pub overwrite: bool,
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
    if let Err(e) = safe_path::validate_mapped(&item.path, dest.maps_windows_names()) {
        return Outcome::Failed(Failure {
            path: item.path,
            error: e.to_string(),
        });
    }
    let key = join_key(prefix, &item.path);
    let shown = dest.shown(&item.path);
    let action = match decide(fetcher, dest, &key, &shown, &item, no_clobber).await {
        Ok(action) => action,
        Err(e) => return failed(item.path, &e),
    };
    let (fetched, overwrite) = match action {
        Action::Keep { spelled } => {
            if let Some(planned) = dest.planned() {
                let note = spelled
                    .as_ref()
                    .map(|s| format!("; DEST spells it '{}'", dry::name(s)))
                    .unwrap_or_default();
                planned.line(
                    &item.path,
                    format!("keep {} (differs, --no-clobber{note})", dry::name(&item.path)),
                );
            }
            return Outcome::Kept(item.path, spelled.map(|s| dry::name(&s).into_owned()));
        }
        Action::Touch { dir, name, same } => {
            return match touch(dest, &dir, &name, &item.path, same) {
                Ok(()) => Outcome::Unchanged,
                Err(e) => failed(item.path, &e),
            };
        }
        Action::Fetch {
            at,
            overwrite,
            spelled,
        } => match dest.planned() {
            Some(planned) => return plan_fetch(dest, planned, item, at.is_none(), (overwrite, spelled)),
            None => (
                fetch(fetcher, dest, (prefix, &key), &shown, &item, at).await,
                overwrite,
            ),
        },
    };
    match fetched {
        Ok(Fetched::File(bytes)) => Outcome::Downloaded(bytes),
        Ok(Fetched::Link { target, mtime_ns }) => Outcome::Link(LinkToPlace {
            path: item.path,
            size: target.len() as u64,
            target,
            mtime_ns,
            overwrite,
        }),
        Err(e) => failed(item.path, &e),
    }
}

/// A dry run's fetch: the directories it would create, and a `download`
/// line (a symlink's comes when it would be placed, see [`place_links`]);
/// counted as received whole.
fn plan_fetch(
    dest: &Dest,
    planned: &Planned,
    item: Item,
    parent_missing: bool,
    (overwrite, spelled): (bool, Option<String>),
) -> Outcome {
    if parent_missing {
        dest.plan_parent(&item.path);
    }
    if item.kind == EntryKind::Symlink {
        return Outcome::Link(LinkToPlace {
            path: item.path,
            target: Vec::new(),
            size: item.size,
            mtime_ns: item.mtime_ns,
            overwrite,
        });
    }
    let line = match spelled {
        // DEST's copy of the key, spelled otherwise: replaced, and respelled.
        Some(s) => format!(
            "download {} (overwrite '{}')",
            dry::name(&item.path),
            dry::name(&s)
        ),
        None => download_line(&item.path, false, overwrite),
    };
    planned.line(&item.path, line);
    Outcome::Downloaded(item.size)
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
/// time by name. In a dry run, a `touch` line when that would change them.
fn touch(dest: &Dest, dir: &Dir, name: &OsStr, path: &str, same: Local) -> std::io::Result<()> {
    let planned = dest.planned();
    let change = match same {
        Local::Same {
            mtime_ns, file: None, ..
        } => match planned {
            None => return set_link_time(dir, name, mtime_ns),
            Some(_) => differs((cap_mtime_ns(&dir.symlink_metadata(name)?)?, 0), mtime_ns, None),
        },
        Local::Same {
            mtime_ns,
            mode,
            file: Some(file),
        } => {
            let mode = mode.map(|m| dest.modes.apply(path, m));
            // Only what DEST keeps is compared: a run after a restore onto
            // exFAT finds nothing to set.
            let change = dest
                .holds
                .keeps
                .differs(now_of(&file.metadata()?), mtime_ns, mode);
            match planned {
                None if change => return set_file_times_and_mode(&file, mtime_ns, mode),
                None => return Ok(()),
                Some(_) => change,
            }
        }
        Local::Missing | Local::Differs => false,
    };
    if let (Some(planned), true) = (planned, change) {
        planned.line(path, format!("touch {}", dry::name(path)));
    }
    Ok(())
}

/// Fetches `item` into place, creating the directories on the way when
/// [`decide`] found one missing.
async fn fetch(
    fetcher: &Fetcher,
    dest: &Dest,
    (prefix, key): (&str, &str),
    shown: &Path,
    item: &Item,
    found: Option<(std::sync::Arc<Dir>, std::ffi::OsString)>,
) -> Result<Fetched, FetchError> {
    let (dir, name) = match found {
        Some(found) => found,
        None => dest.make_parent(&item.path)?,
    };
    let fetch = Fetch {
        prefix,
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
        let shown = dest.shown(&link.path);
        let result = match (dest.find_parent(&link.path), dest.planned()) {
            (Ok(found), Some(planned)) => plan_link(planned, found, &shown, &link),
            (Ok(Some((dir, name))), None) => place_link(&dir, &name, &shown, &link.target, link.mtime_ns),
            (Ok(None), None) => Err(std::io::Error::other("its directory vanished during the restore")),
            (Err(e), _) => Err(e.into()),
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

/// A dry run's [`place_link`]: refused as it would be (a directory there,
/// or one the restore would make there), else a `download` line.
fn plan_link(
    planned: &Planned,
    found: Option<(std::sync::Arc<Dir>, std::ffi::OsString)>,
    shown: &Path,
    link: &LinkToPlace,
) -> std::io::Result<()> {
    let dir_there = found.is_some_and(|(dir, name)| dir.symlink_metadata(&name).is_ok_and(|md| md.is_dir()));
    if dir_there || planned.makes(&link.path) {
        return Err(dir_in_the_way(shown));
    }
    planned.line(&link.path, download_line(&link.path, true, link.overwrite));
    Ok(())
}

/// The error of a symlink whose name is a directory.
fn dir_in_the_way(shown: &Path) -> std::io::Error {
    std::io::Error::other(format!(
        "'{}' is a directory; not replacing it with a symlink",
        shown.display()
    ))
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
        return Err(dir_in_the_way(shown));
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
    #[cfg(windows)]
    {
        place_windows_link(dir, name, target, mtime_ns)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (target, mtime_ns);
        Err(std::io::Error::other(
            "symlinks are not supported on this platform",
        ))
    }
}

/// Windows' error code for a call the process lacks the privilege for
/// (`ERROR_PRIVILEGE_NOT_HELD`): making a symlink without the "Create
/// symbolic links" privilege (an administrator's, or any user's with
/// Developer Mode on).
#[cfg(windows)]
const ERROR_PRIVILEGE_NOT_HELD: i32 = 1314;

/// [`place_link`] on Windows: the target's `/` become `\`, and the link
/// is a directory link when the target (taken from `dir`) is a directory
/// there, else a file link; made under a temporary name and renamed. Lacking
/// the privilege, or a system that reports a link made that is not there
/// (wine 8 does), is one message saying so, not an OS error code.
#[cfg(windows)]
fn place_windows_link(dir: &Dir, name: &OsStr, target: &[u8], mtime_ns: Option<i64>) -> std::io::Result<()> {
    let Ok(text) = std::str::from_utf8(target) else {
        return Err(std::io::Error::other(
            "its target is not UTF-8, which a Windows symlink cannot hold; not restored",
        ));
    };
    let target = std::path::PathBuf::from(text.replace('/', "\\"));
    let tmp = crate::fs::own::temp_name("link-");
    let made = if dir.is_dir(&target) {
        dir.symlink_dir(&target, &tmp)
    } else {
        dir.symlink_file(&target, &tmp)
    };
    match made {
        Err(e) if e.raw_os_error() == Some(ERROR_PRIVILEGE_NOT_HELD) => {
            return Err(std::io::Error::other(
                "not restored: making a symlink on Windows needs the \"Create symbolic links\" privilege \
                 (run as an administrator, or turn Developer Mode on)",
            ));
        }
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    if !dir
        .symlink_metadata(&tmp)
        .is_ok_and(|md| md.file_type().is_symlink())
    {
        let _ = dir.remove_file(&tmp);
        return Err(std::io::Error::other(
            "not restored: the system reported the symlink made, but there is none (wine does this)",
        ));
    }
    let placed = set_link_time(dir, &tmp, mtime_ns).and_then(|()| dir.rename(&tmp, dir, name));
    if placed.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    placed
}
