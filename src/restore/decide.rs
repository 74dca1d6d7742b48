//! Deciding, for one file, what the restore does before anything is
//! fetched: compare what DEST holds under its name with what the backup
//! recorded (`compare_local`), then choose ([`decide`]): leave it (only
//! its mtime and mode set), keep it (`--no-clobber`), or fetch it. The
//! plan is a value ([`Action`]); [`crate::restore::place`] carries it out,
//! or, in a dry run, lists it (the one decision serves both).
//!
//! The local file is reached without following links (its directory through
//! [`Dest`], the file itself opened no-follow), and its hash and metadata
//! come from that one handle.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};

use crate::fs::confine::Dir;
use crate::fs::scan::EntryKind;
use crate::restore::dest::Dest;
use crate::restore::fetch::{FetchError, Fetcher, ReadAt};
use crate::restore::source::Item;

/// How a local file compares with the remote one.
#[derive(Debug)]
pub enum Local {
    /// Nothing there.
    Missing,
    /// Same content; only metadata may need setting.
    Same {
        /// mtime to set.
        mtime_ns: Option<i64>,
        /// mode to set (as recorded: special bits not yet filtered).
        mode: Option<u32>,
        /// The file, opened without following a link, to set them through
        /// (`None` for a symlink, whose own time is set by name).
        file: Option<File>,
    },
    /// Something else is there.
    Differs,
}

/// What the restore does with one file, decided before any download.
#[derive(Debug)]
pub enum Action {
    /// The same content is there: set its mtime and mode only.
    Touch {
        /// Its directory, reached without following links.
        dir: Arc<Dir>,
        /// Its name there.
        name: OsString,
        /// What it matched: the metadata to set, and the handle to set it through.
        same: Local,
    },
    /// Other content is there and `--no-clobber` keeps it.
    Keep {
        /// DEST's own spelling of it when it differs from the key's
        /// ([`spelled_otherwise`]; looked up in a restore too, for the
        /// few files kept, so its "kept" line names it as the dry run does).
        spelled: Option<String>,
    },
    /// Fetch it.
    Fetch {
        /// Its directory and name when every directory on the way exists
        /// (`None`: they are created first).
        at: Option<(Arc<Dir>, OsString)>,
        /// Whether something that differs is there, to be replaced.
        overwrite: bool,
        /// In a dry run, DEST's own spelling of what is replaced when it
        /// differs from the key's ([`spelled_otherwise`]).
        spelled: Option<String>,
    },
}

/// Decides what to do with `item` (a checked path), stored under `key`
/// and shown to the user as `shown`.
///
/// # Errors
/// A directory on the way is a link or a file ([`FetchError::Confine`]), a
/// directory stands where the file goes, the local file cannot be read,
/// or (listing restores) the store's HEAD failed.
pub async fn decide(
    fetcher: &Fetcher,
    dest: &Dest,
    key: &str,
    shown: &Path,
    item: &Item,
    no_clobber: bool,
) -> Result<Action, FetchError> {
    // Usually a cache lookup; the first file of a directory walks to it
    // (a few system calls, too brief to hand to another thread).
    let found = dest.find_parent(&item.path)?;
    let Some((dir, name)) = found else {
        return Ok(Action::Fetch {
            at: None,
            overwrite: false,
            spelled: None,
        });
    };
    Ok(
        match compare_local(fetcher, key, &dir, &name, shown, item).await? {
            same @ Local::Same { .. } => Action::Touch { dir, name, same },
            Local::Differs if no_clobber => Action::Keep {
                spelled: spelled_as(dest, &dir, &name),
            },
            Local::Differs => Action::Fetch {
                overwrite: true,
                spelled: spelled_otherwise(dest, &dir, &name),
                at: Some((dir, name)),
            },
            Local::Missing => Action::Fetch {
                overwrite: false,
                spelled: None,
                at: Some((dir, name)),
            },
        },
    )
}

/// In a dry run onto a DEST that folds: the key text of the name `dir`
/// lists for `name` when it spells it otherwise (a file DEST holds as
/// `CASE.TXT` for the key `Case.txt`); `None` otherwise.
pub fn spelled_otherwise(dest: &Dest, dir: &Dir, name: &OsStr) -> Option<String> {
    dest.planned()?;
    spelled_as(dest, dir, name)
}

/// [`spelled_otherwise`] in a restore too (for a file kept).
fn spelled_as(dest: &Dest, dir: &Dir, name: &OsStr) -> Option<String> {
    let found = crate::restore::fold::spelled_otherwise(dir, name, dest.holds.folding)?;
    Some(crate::restore::fold::key_text(
        dest.maps_windows_names(),
        Path::new(&found),
    ))
}

/// A failed local step on `shown`.
fn local(what: &'static str, shown: &Path, source: std::io::Error) -> FetchError {
    FetchError::Local {
        what,
        path: shown.to_path_buf(),
        cause: source,
    }
}

/// Compares what DEST holds at `name` in `dir` (reached without following
/// links; `shown` is its path, for messages) with the remote entry,
/// without downloading it. The local file is opened without following a
/// link, and its hash and metadata come from that handle.
///
/// # Errors
/// [`FetchError::DirInTheWay`], [`FetchError::Local`] when it cannot be
/// read, [`FetchError::Store`] when the HEAD of a listed object fails.
async fn compare_local(
    fetcher: &Fetcher,
    key: &str,
    dir: &Dir,
    name: &OsStr,
    shown: &Path,
    item: &Item,
) -> Result<Local, FetchError> {
    let md = match dir.symlink_metadata(name) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Local::Missing),
        Err(source) => return Err(local("checking", shown, source)),
    };
    if md.is_dir() {
        return Err(FetchError::DirInTheWay(shown.to_path_buf()));
    }
    if item.kind == EntryKind::Symlink {
        let same = md.file_type().is_symlink()
            && item.blake3.as_ref().is_some_and(|expected| {
                dir.read_link_contents(name).is_ok_and(|t| {
                    blake3::hash(t.as_os_str().as_encoded_bytes()).to_hex().as_str() == expected.as_str()
                })
            });
        return Ok(if same {
            Local::Same {
                mtime_ns: item.mtime_ns,
                mode: None,
                file: None,
            }
        } else {
            Local::Differs
        });
    }
    if !md.is_file() || md.len() != item.size {
        return Ok(Local::Differs);
    }
    let Some((file, md)) = open_regular(dir, name).map_err(|e| local("reading", shown, e))? else {
        return Ok(Local::Differs);
    };
    if md.len() != item.size {
        return Ok(Local::Differs);
    }
    // What we know of the remote file: from the manifest, else from its metadata.
    let (blake3, mtime, mode) = if item.from_manifest {
        (item.blake3.clone(), item.mtime_ns, item.mode)
    } else {
        let head = fetcher.store().head(key, None).await.map_err(FetchError::Store)?;
        (head.blake3, head.mtime_ns.or(head.last_modified_ns), head.mode)
    };
    let (file, same) = match blake3 {
        Some(expected) => {
            let (file, actual) = tokio::task::spawn_blocking(move || {
                let mut h = blake3::Hasher::new();
                h.update_reader(ReadAt::new(&file))?;
                Ok::<_, std::io::Error>((file, h.finalize().to_hex().to_string()))
            })
            .await
            .map_err(|e| local("reading", shown, std::io::Error::other(e)))?
            .map_err(|e| local("reading", shown, e))?;
            (file, actual == expected)
        }
        // No hash to compare: size and mtime, as rsync does.
        None => (file, mtime == Some(crate::fs::scan::mtime_ns(&md))),
    };
    // A hard link shares its mode and times with every other name of the
    // file, maybe one outside DEST: setting them here would change that
    // one too. Such a file is replaced (a new file renamed over this name)
    // unless it already has what the restore would set.
    if same && shares_changed_metadata(&md, mtime, mode) {
        return Ok(Local::Differs);
    }
    Ok(if same {
        Local::Same {
            mtime_ns: mtime,
            mode,
            file: Some(file),
        }
    } else {
        Local::Differs
    })
}

/// Whether `md` is a file with other names (link count above 1) whose
/// mtime (ns) or mode (the low 12 bits) differs from what a restore sets.
#[cfg(unix)]
fn shares_changed_metadata(md: &std::fs::Metadata, mtime_ns: Option<i64>, mode: Option<u32>) -> bool {
    use std::os::unix::fs::MetadataExt;
    md.nlink() > 1
        && (mtime_ns.is_some_and(|t| t != crate::fs::scan::mtime_ns(md))
            || mode.is_some_and(|m| m & 0o7777 != md.mode() & 0o7777))
}

/// Windows: a restore sets no mode there, and its times are set on the
/// name's own handle; hard links are rare enough to treat as unlinked.
#[cfg(not(unix))]
fn shares_changed_metadata(_md: &std::fs::Metadata, _mtime_ns: Option<i64>, _mode: Option<u32>) -> bool {
    false
}

/// Opens `name` for reading without following a link (nor blocking on a
/// FIFO swapped in since it was checked); `None` when it is not a regular file.
fn open_regular(dir: &Dir, name: &OsStr) -> std::io::Result<Option<(File, std::fs::Metadata)>> {
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true);
    opts.follow(FollowSymlinks::No);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt;
        opts.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = match dir.open_with(name, &opts) {
        Ok(f) => f.into_std(),
        // A link swapped in since the check (ELOOP): not the file compared.
        Err(_) if dir.symlink_metadata(name).is_ok_and(|md| !md.is_file()) => return Ok(None),
        Err(e) => return Err(e),
    };
    let md = file.metadata()?;
    Ok(md.is_file().then_some((file, md)))
}
